"""Stage 1, the provider universe: taxonomy, reps and providers."""


from pathlib import Path

import dagster as dg
import polars as pl

from territory_pipeline.defs.metadata import markdown_table, numeric_metadata, table_metadata
from territory_pipeline.defs.partitions import event_cutoff, quarterly_partitions
from territory_pipeline.defs.resources import PipelineSettings, TerritoryDatabase
from territory_pipeline.geography.zip_reference import zip_centroids
from territory_pipeline.operations.events import scan_events
from territory_pipeline.operations.roster import RosterError, apply_rep_events, place_roster, read_roster
from territory_pipeline.schemas import REJECTS, conform
from territory_pipeline.storage.partitions import partition_transaction, quarter_date, read_partition
from territory_pipeline.universe import provider_sources
from territory_pipeline.universe.sample_data import generate_sample

KINDS = {"duckdb", "polars"}


@dg.asset(
    partitions_def=quarterly_partitions,
    group_name="universe",
    kinds=KINDS,
    description=(
        "The NUCC Health Care Provider Taxonomy used this quarter (code, classification, specialization, "
        "display name). From NUCC_TAXONOMY_SOURCE when set, else the built-in subset covering the default "
        "spine universe and the facility codes used for practice setting."
    ),
)
def taxonomy_reference(
    context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    cfg = settings.to_settings()
    taxonomy = provider_sources.taxonomy_for(cfg)
    targets = provider_sources.target_codes(cfg, taxonomy)
    frame = taxonomy.with_columns(pl.col("code").is_in(targets).alias("is_target")).sort("code")
    quarter = quarter_date(context.partition_key)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("taxonomy_reference", frame)
    return dg.MaterializeResult(
        metadata={
            **table_metadata("taxonomy_reference", frame),
            "target_codes": dg.MetadataValue.md(markdown_table(frame.filter("is_target").select("code", "classification", "specialization", "display_name"))),
            "source": dg.MetadataValue.text(cfg.nucc_taxonomy_source or "built-in subset"),
        }
    )


@dg.asset(
    partitions_def=quarterly_partitions,
    group_name="universe",
    kinds=KINDS,
    description=(
        "The rep roster of the quarter: TERRITORY_REPS_FILE (default the sample roster of 20 reps) with "
        "every valid rep event in TERRITORY_EVENTS_DIR/reps applied in order (joined, left, territory "
        "change, capacity change). Also writes rep_event_log, one row per event applied or skipped."
    ),
)
def sales_reps(
    context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    reps_path = cfg.reps_file
    if not reps_path:
        sample = generate_sample(provider_sources.sample_dir(cfg), seed=cfg.sample_seed, target_providers=cfg.sample_providers)
        reps_path = str(sample.reps_path)
    zips = zip_centroids()
    roster, problems = place_roster(read_roster(reps_path), zips)
    if problems:
        raise RosterError(f"rep roster {reps_path}: " + "; ".join(problems))
    scan = scan_events(Path(cfg.events_dir), "reps", before=event_cutoff(context.partition_key))
    roster, account_moves, log = apply_rep_events(roster, scan.events, zips)
    for name, reason in scan.malformed:
        context.log.warning(f"skipped malformed rep event file {name}: {reason}")
        log.append({"event_id": f"file:{name}", "event_type": "malformed_file", "rep_id": None, "applied": False, "note": reason})
    if roster.height == 0:
        raise RosterError("the roster is empty after applying rep events: no territory can be drawn")
    event_log = pl.DataFrame(
        log, schema={"event_id": pl.Utf8, "event_type": pl.Utf8, "rep_id": pl.Utf8, "applied": pl.Boolean, "note": pl.Utf8}
    )
    moves = account_moves.rename({"rep_id": "locked_rep_id"})
    roster = roster.join(
        moves.group_by("locked_rep_id").agg(pl.col("npi").sort().str.join("|").alias("locked_npis")),
        left_on="rep_id",
        right_on="locked_rep_id",
        how="left",
    ).sort("rep_id")
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("sales_reps", roster)
        tx.replace("rep_event_log", event_log)
    return dg.MaterializeResult(
        metadata={
            **table_metadata("sales_reps", roster),
            "roster_file": dg.MetadataValue.path(reps_path),
            "reps": dg.MetadataValue.int(roster.height),
            "events_applied": dg.MetadataValue.int(int(event_log.filter("applied").height)),
            "malformed_event_files": dg.MetadataValue.int(len(scan.malformed)),
            "roster": dg.MetadataValue.md(markdown_table(roster.drop("locked_npis"), max_rows=40)),
        }
    )


class UniverseConfig(dg.Config):
    max_reject_share: float = 0.05  # WARN when more of the candidate rows than this are rejected


@dg.multi_asset(
    partitions_def=quarterly_partitions,
    group_name="universe",
    check_specs=[
        dg.AssetCheckSpec(
            "reject_share_below_limit",
            asset="provider_rejects",
            description=(
                "Rejected rows / (providers + rejected rows). WARN above UniverseConfig.max_reject_share (default 5%): "
                "a sign of a truncated or mis-shaped source file."
            ),
        )
    ],
    specs=[
        dg.AssetSpec(
            "providers",
            deps=["taxonomy_reference"],
            kinds=KINDS,
            description=(
                "The target provider universe: one row per active target provider at its primary practice "
                "location (never the mailing address), from TERRITORY_PROVIDER_SOURCE (sample, nppes or api), "
                "selected by NUCC taxonomy, practice setting and, when given, procedure fit."
            ),
        ),
        dg.AssetSpec(
            "provider_rejects",
            deps=["taxonomy_reference"],
            kinds=KINDS,
            description="Rows that could not become providers, with source, reason and the raw record.",
        ),
        dg.AssetSpec(
            "provider_secondary_locations",
            deps=["taxonomy_reference"],
            kinds=KINDS,
            description="Other practice locations of the target providers (NPPES pl_pfile or API practiceLocations).",
        ),
    ],
)
def provider_universe(
    context: dg.AssetExecutionContext, config: UniverseConfig, database: TerritoryDatabase, settings: PipelineSettings
):
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    with database.connection() as conn:
        taxonomy = read_partition(conn, "taxonomy_reference", quarter)
        cached_responses = (
            read_partition(conn, "npi_registry_responses", quarter) if cfg.provider_source == "api" else None
        )
    if taxonomy.height == 0:
        raise RuntimeError(f"taxonomy_reference has no rows for {context.partition_key}: materialize it first")
    targets = taxonomy.filter("is_target")["code"].to_list()
    universe = provider_sources.load_universe(
        cfg,
        taxonomy.drop("is_target"),
        targets,
        cached_api_responses=cached_responses,
        log=context.log.info,
    )
    rejects = conform(universe.rejects, REJECTS).select(list(REJECTS)).sort("source", "reason", "npi", nulls_last=True)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("providers", universe.providers)
        tx.replace("provider_rejects", rejects)
        tx.replace("provider_secondary_locations", universe.secondary_locations)
        if universe.api_responses is not None:
            tx.replace("npi_registry_responses", universe.api_responses)
    reasons = rejects.group_by("reason").len().sort("reason")
    reject_share = rejects.height / max(1, rejects.height + universe.providers.height)
    stats = numeric_metadata(universe.stats)
    yield dg.MaterializeResult(
        asset_key="providers",
        metadata={
            **table_metadata("providers", universe.providers),
            **stats,
            "source": dg.MetadataValue.text(cfg.provider_source),
            "by_state": dg.MetadataValue.md(
                markdown_table(universe.providers.group_by("state").len().sort("len", "state", descending=[True, False]), max_rows=15)
            ),
            "by_taxonomy": dg.MetadataValue.md(
                markdown_table(universe.providers.group_by("taxonomy_code", "taxonomy_display_name").len().sort("taxonomy_code"))
            ),
            "by_setting": dg.MetadataValue.md(markdown_table(universe.providers.group_by("practice_setting").len().sort("practice_setting"))),
        },
    )
    yield dg.MaterializeResult(
        asset_key="provider_rejects",
        metadata={
            **table_metadata("provider_rejects", rejects),
            "rejects_by_reason": dg.MetadataValue.md(markdown_table(reasons)),
            "reject_share": dg.MetadataValue.float(reject_share),
        },
    )
    yield dg.MaterializeResult(
        asset_key="provider_secondary_locations",
        metadata=table_metadata("provider_secondary_locations", universe.secondary_locations),
    )
    yield dg.AssetCheckResult(
        check_name="reject_share_below_limit",
        asset_key="provider_rejects",
        passed=reject_share <= config.max_reject_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reject_share": reject_share, "limit": config.max_reject_share, "rejects": rejects.height, "providers": universe.providers.height},
    )
