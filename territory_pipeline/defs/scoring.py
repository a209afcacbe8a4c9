"""Stage 4, scoring: weighted opportunity per provider and per cluster."""


from pathlib import Path

import dagster as dg
import polars as pl

from territory_pipeline.defs.metadata import markdown_table, table_metadata
from territory_pipeline.defs.partitions import event_cutoff, quarterly_partitions
from territory_pipeline.defs.resources import PipelineSettings, TerritoryDatabase
from territory_pipeline.operations.events import scan_events
from territory_pipeline.operations.market import apply_market_events
from territory_pipeline.schemas import REJECTS, conform
from territory_pipeline.scoring import check_score_integrity, load_scoring_config, markdown_summary, score_providers
from territory_pipeline.storage.partitions import partition_transaction, quarter_date, read_partition

KINDS = {"duckdb", "polars"}


@dg.multi_asset(
    partitions_def=quarterly_partitions,
    group_name="scoring",
    specs=[
        dg.AssetSpec(
            "provider_scores",
            deps=["geocoded_providers", "provider_clusters"],
            kinds=KINDS,
            description=(
                "Weighted opportunity per provider, counted once at the primary location, with one contrib_* column "
                "per factor (specialty, practice size, procedure volume, practice type, setting, customer share, "
                "competition) that add up to the score. Weights from TERRITORY_SCORING_CONFIG or the shipped "
                "defaults; market events in TERRITORY_EVENTS_DIR/market are applied first."
            ),
        ),
        dg.AssetSpec(
            "scored_clusters",
            deps=["geocoded_providers", "provider_clusters", "clusters"],
            kinds=KINDS,
            description="Weighted opportunity per cluster with the same breakdown, penetration and market share.",
        ),
        dg.AssetSpec(
            "scoring_report",
            deps=["geocoded_providers", "provider_clusters"],
            kinds=KINDS,
            description="Problem rows of the scoring inputs (unknown NPI in the customer file, negative revenue, ...), with the reason.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "scores_add_up_and_count_each_provider_once",
            asset="provider_scores",
            blocking=True,
            description=(
                "The sum of provider scores equals the sum of cluster scores (relative 1e-9), every breakdown adds up "
                "to its score, and no NPI appears twice (ERROR otherwise)."
            ),
        )
    ],
)
def opportunity_scores(context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings):
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    with database.connection() as conn:
        geocoded = read_partition(conn, "geocoded_providers", quarter)
        memberships = read_partition(conn, "provider_clusters", quarter)
    if geocoded.height == 0 or memberships.height == 0:
        raise RuntimeError(f"geocoded_providers/provider_clusters have no rows for {context.partition_key}: materialize them first")
    scan = scan_events(Path(cfg.events_dir), "market", before=event_cutoff(context.partition_key))
    providers, market_log = apply_market_events(geocoded, scan.events)
    for name, reason in scan.malformed:
        context.log.warning(f"skipped malformed market event file {name}: {reason}")
    providers = providers.join(memberships, on="npi", how="left")
    weights = load_scoring_config(cfg.scoring_config or None)
    result = score_providers(
        providers,
        weights,
        customers=cfg.customers_file or None,
        competitors=cfg.competitors_file or None,
    )
    report = conform(result.report, REJECTS).select(list(REJECTS))
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("provider_scores", result.provider_scores)
        tx.replace("scored_clusters", result.scored_clusters)
        tx.replace("scoring_report", report)
    summary_md = markdown_summary(result)
    scores = result.provider_scores["opportunity_score"]
    yield dg.MaterializeResult(
        asset_key="provider_scores",
        metadata={
            **table_metadata("provider_scores", result.provider_scores),
            "total_opportunity": float(scores.sum()),
            "mean_score": float(scores.mean() or 0.0),
            "weights_source": dg.MetadataValue.text(cfg.scoring_config or "shipped defaults (scoring/default_weights.yaml)"),
            "market_events_applied": sum(1 for e in market_log if e["applied"]),
            "summary": dg.MetadataValue.md(summary_md),
        },
    )
    yield dg.MaterializeResult(asset_key="scored_clusters", metadata=table_metadata("scored_clusters", result.scored_clusters))
    yield dg.MaterializeResult(
        asset_key="scoring_report",
        metadata={**table_metadata("scoring_report", report), "by_reason": dg.MetadataValue.md(markdown_table(report.group_by("source", "reason").len().sort("source", "reason")))},
    )
    ok, details = check_score_integrity(result.provider_scores, result.scored_clusters)
    yield dg.AssetCheckResult(
        check_name="scores_add_up_and_count_each_provider_once",
        asset_key="provider_scores",
        passed=ok,
        metadata={k: v for k, v in details.items() if isinstance(v, (int, float, str, bool))},
    )
