"""Stage 6, operations: the diff against the previous alignment, CRM exports and the map."""


import dagster as dg
import polars as pl

from territory_pipeline.defs.metadata import markdown_table, table_metadata
from territory_pipeline.defs.partitions import quarterly_partitions
from territory_pipeline.defs.resources import PipelineSettings, TerritoryDatabase
from territory_pipeline.operations.alignment import assignment_details
from territory_pipeline.operations.diff import alignment_changes as diff_alignments
from territory_pipeline.operations.diff import changes_markdown, territory_change_summary
from territory_pipeline.operations.exports import (
    atomic_write_text,
    clean_stale_temporaries,
    crm_assignments,
    write_table_files,
)
from territory_pipeline.storage.partitions import partition_transaction, query, quarter_date, read_partition
from territory_pipeline.visuals import render_territory_map

KINDS = {"duckdb", "polars"}


def _current_alignment(conn, quarter):
    metrics = read_partition(conn, "plan_metrics", quarter)
    if metrics.height == 0:
        raise RuntimeError(f"no alignment for {quarter}: materialize territories first")
    alignment = metrics["alignment_id"][0]
    history = query(conn, "alignment_history", "history").filter(pl.col("alignment_id") == alignment)
    return alignment, history.row(0, named=True)


@dg.multi_asset(
    partitions_def=quarterly_partitions,
    group_name="operations",
    specs=[
        dg.AssetSpec(
            "alignment_changes",
            deps=["territory_assignments", "territories"],
            kinds=KINDS,
            description=(
                "What moved since the previous alignment: one row per provider moved, new or departed, with "
                "from/to territory and rep, opportunity and the reason. A markdown summary is written to "
                "<output>/<quarter>/alignment_changes.md."
            ),
        ),
        dg.AssetSpec(
            "territory_change_summary",
            deps=["territory_assignments", "territories"],
            kinds=KINDS,
            description="Per territory: providers and opportunity gained and lost, new and departed providers.",
        ),
    ],
)
def alignment_diff(context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings):
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    with database.connection() as conn:
        alignment, row = _current_alignment(conn, quarter)
        current = read_partition(conn, "territory_assignments", quarter)
        territories = read_partition(conn, "territories", quarter)
        reps = read_partition(conn, "sales_reps", quarter)
        previous_id = row["previous_alignment_id"]
        previous = query(conn, "alignment_assignment_history", "select_alignment", [previous_id]) if previous_id else None
    departed = set(previous["rep_id"].unique().to_list()) - set(reps["rep_id"].to_list()) if previous is not None else set()
    locked = set(current.filter(pl.col("assignment_reason").str.starts_with("account locked"))["npi"].to_list())
    changes = diff_alignments(previous, current, departed_reps=departed, locked_npis=locked)
    summary = territory_change_summary(changes, territories)
    title = f"Alignment {alignment} against {previous_id or 'nothing (first alignment)'}"
    report = changes_markdown(summary, changes, title=title)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("alignment_changes", changes.with_columns(pl.lit(alignment).alias("alignment_id")))
        tx.replace("territory_change_summary", summary.with_columns(pl.lit(alignment).alias("alignment_id")))
    path = atomic_write_text(cfg.quarter_output_dir(context.partition_key) / "alignment_changes.md", report)
    moved = changes.filter(pl.col("change_type") == "moved")
    yield dg.MaterializeResult(
        asset_key="alignment_changes",
        metadata={
            **table_metadata("alignment_changes", changes),
            "providers_moved": moved.height,
            "opportunity_moved": float(moved["opportunity_score"].sum()),
            "previous_alignment_id": dg.MetadataValue.text(previous_id or "none"),
            "report_file": dg.MetadataValue.path(str(path)),
            "summary": dg.MetadataValue.md(report if len(report) < 20000 else report[:20000]),
        },
    )
    yield dg.MaterializeResult(asset_key="territory_change_summary", metadata=table_metadata("territory_change_summary", summary))


@dg.asset(
    partitions_def=quarterly_partitions,
    group_name="operations",
    deps=["territory_assignments", "territories", "alignment_changes"],
    kinds={"csv", "parquet"},
    description=(
        "Files a CRM can import, under <TERRITORY_OUTPUT_DIR>/<quarter>/: territory_assignments.csv/.parquet "
        "(NPI, provider, address, territory, rep) and territories.csv/.parquet. Written atomically (write, then "
        "rename). Not produced when a blocking guardrail check fails."
    ),
)
def territory_exports(context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings) -> dg.MaterializeResult:
    cfg = settings.to_settings()
    detail, territories = _alignment(database, context.partition_key)
    folder = cfg.quarter_output_dir(context.partition_key)
    removed = clean_stale_temporaries(folder)
    export = crm_assignments(detail)
    summary = territories.select([c for c in territories.columns if not isinstance(territories.schema[c], pl.List)])
    files = write_table_files(folder, "territory_assignments", export) + write_table_files(folder, "territories", summary)
    return dg.MaterializeResult(
        metadata={
            "folder": dg.MetadataValue.path(str(folder)),
            "files": dg.MetadataValue.md("\n".join(f"- `{p.name}`" for p in files)),
            "assignment_rows": export.height,
            "territory_rows": summary.height,
            "stale_temporaries_removed": removed,
            "preview": dg.MetadataValue.md(markdown_table(export, max_rows=10)),
        }
    )


@dg.asset(
    partitions_def=quarterly_partitions,
    group_name="operations",
    deps=["territory_assignments", "territories"],
    kinds={"html"},
    description=(
        "The interactive territory map, <TERRITORY_OUTPUT_DIR>/<quarter>/territory_map.html: territories in "
        "distinct colours, rep bases, providers (or H3 cells for large universes) with tooltips and a legend of "
        "score and deviation. Opens offline."
    ),
)
def territory_map(context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings) -> dg.MaterializeResult:
    cfg = settings.to_settings()
    detail, territories = _alignment(database, context.partition_key)
    folder = cfg.quarter_output_dir(context.partition_key)
    removed = clean_stale_temporaries(folder)
    html = render_territory_map(detail, territories, folder / ".territory_map.html.tmp", title=f"Territories {context.partition_key}")
    path = html.replace(folder / "territory_map.html")  # atomic: a reader never sees half a map
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "providers": detail.height,
            "territories": territories.height,
            "stale_temporaries_removed": removed,
        }
    )


def _alignment(database: TerritoryDatabase, partition_key: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The quarter's assignments with provider and rep details, and its territories."""
    quarter = quarter_date(partition_key)
    with database.connection() as conn:
        assignments = read_partition(conn, "territory_assignments", quarter)
        providers = read_partition(conn, "geocoded_providers", quarter)
        territories = read_partition(conn, "territories", quarter)
        reps = read_partition(conn, "sales_reps", quarter)
        metrics = read_partition(conn, "plan_metrics", quarter)
    if assignments.height == 0:
        raise RuntimeError(f"no territory assignments for {partition_key}: materialize territories first")
    status = dict(metrics.filter(pl.col("metric") == "alignment_status").select("metric", "text").rows()).get("alignment_status")
    if status == "blocked":
        raise RuntimeError(
            f"the stored plan for {partition_key} failed a blocking guardrail (see plan_metrics and the territories "
            "checks): it is not exported or mapped; the files keep the last plan that passed"
        )
    return assignment_details(assignments, providers, reps), territories
