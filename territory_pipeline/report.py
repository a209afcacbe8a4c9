"""Print a quarter's territories and plan metrics from DuckDB (read-only).

    python -m territory_pipeline.report 2026-07-01
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import polars as pl

from territory_pipeline.settings import Settings
from territory_pipeline.storage.partitions import quarter_date, read_partition


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        quarter = quarter_date(argv[0])
        settings = Settings.from_env()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not Path(settings.duckdb_path).exists():
        print(f"no database at {settings.duckdb_path}: run the main job first", file=sys.stderr)
        return 1
    try:
        with duckdb.connect(settings.duckdb_path, read_only=True) as conn:
            territories = read_partition(conn, "territories", quarter)
            metrics = read_partition(conn, "plan_metrics", quarter)
            providers = read_partition(conn, "territory_assignments", quarter)
    except duckdb.IOException as exc:
        print(f"cannot read {settings.duckdb_path} (is a run writing to it?): {exc}", file=sys.stderr)
        return 1
    if territories.height == 0:
        print(f"no territories for {argv[0]} in {settings.duckdb_path}", file=sys.stderr)
        return 1
    columns = [c for c in ("territory_id", "rep_name", "opportunity_score", "target_score", "deviation", "provider_count", "mean_travel_miles", "is_contiguous") if c in territories.columns]
    with pl.Config(tbl_rows=territories.height + 1, tbl_cols=len(columns), tbl_hide_dataframe_shape=True, float_precision=3):
        print(f"Territories for refresh quarter {argv[0]} ({providers.height} providers) in {settings.duckdb_path}")
        print(territories.select(columns))
        shown = metrics.filter(pl.col("value").is_not_null()).select("metric", "value")
        print(shown)
    status = dict(metrics.filter(pl.col("text").is_not_null()).select("metric", "text").rows()).get("alignment_status", "live")
    if status != "live":
        print(f"This plan failed a blocking guardrail ({status}): it is not exported and not the live alignment.")
        return 1
    print(f"Exports and map: {settings.quarter_output_dir(argv[0])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
