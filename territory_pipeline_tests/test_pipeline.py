"""End to end: a whole quarter materialized into a temporary DuckDB, then re-run."""

from __future__ import annotations

import dagster as dg
import duckdb
import polars as pl
import pytest

QUARTER = "2026-07-01"

TABLES = (
    "taxonomy_reference",
    "sales_reps",
    "providers",
    "provider_rejects",
    "geocoded_providers",
    "clusters",
    "provider_clusters",
    "cluster_adjacency",
    "provider_scores",
    "scored_clusters",
    "territories",
    "territory_assignments",
    "plan_metrics",
    "alignment_changes",
)


def load_defs() -> dg.Definitions:
    from territory_pipeline.definitions import defs

    return defs()


def run_quarter(instance, partition=QUARTER, run_config=None):
    job = load_defs().resolve_job_def("quarterly_refresh_job")
    return job.execute_in_process(partition_key=partition, instance=instance, run_config=run_config, raise_on_error=False)


def snapshot(db_path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return {t: conn.sql(f"select * from {t} order by all").pl() for t in TABLES}  # noqa: S608 - test-only, fixed names


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """One full quarter, shared by the tests of this module (it takes a while)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("pipeline")
    for var, value in {
        "TERRITORY_DUCKDB_PATH": root / "territory.duckdb",
        "TERRITORY_OUTPUT_DIR": root / "outputs",
        "TERRITORY_EVENTS_DIR": root / "events",
        "TERRITORY_GENERATED_DIR": root / "generated",
        "TERRITORY_CACHE_DIR": root / "cache",
    }.items():
        mp.setenv(var, str(value))
    with dg.instance_for_test() as instance:
        result = run_quarter(instance)
        first = snapshot(root / "territory.duckdb")
        rerun = run_quarter(instance)
        second = snapshot(root / "territory.duckdb")
        yield {"result": result, "rerun": rerun, "first": first, "second": second, "root": root, "instance": instance}
    mp.undo()


def test_whole_quarter_succeeds_with_every_check(materialized):
    result = materialized["result"]
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    names = {e.check_name for e in evaluations}
    assert {"imbalance_within_tolerance", "every_provider_assigned_once", "territories_contiguous", "every_rep_has_territory"} <= names
    by_name = {e.check_name: e for e in evaluations}
    assert by_name["every_provider_assigned_once"].passed
    assert by_name["territories_contiguous"].passed
    assert by_name["every_rep_has_territory"].passed


def test_every_table_carries_the_quarter(materialized):
    for table, frame in materialized["first"].items():
        assert frame.height > 0, table
        assert frame.schema["refresh_quarter"] == pl.Date, table
        assert frame["refresh_quarter"].unique().to_list() == [pl.Series([QUARTER]).str.to_date()[0]], table


def test_providers_are_active_targets_once_at_practice_location(materialized):
    providers = materialized["first"]["providers"]
    assert providers["npi"].is_unique().all()
    assert set(providers["taxonomy_code"].unique()) <= {"207XS0117X", "207T00000X", "207X00000X"}
    assert (providers["entity_type"] == "individual").all()
    assert 2000 <= providers.height <= 4000
    assert providers["state"].n_unique() >= 40
    rejects = materialized["first"]["provider_rejects"]
    assert {"invalid_npi", "malformed_zip"} <= set(rejects["reason"].unique())


def test_territories_balance_the_opportunity(materialized):
    first = materialized["first"]
    territories = first["territories"]
    reps = first["sales_reps"]
    assert territories.height == reps.height == 20
    assert set(territories["rep_id"]) == set(reps["rep_id"])
    assignments = first["territory_assignments"]
    scores = first["provider_scores"]
    assert assignments["npi"].is_unique().all()
    assert set(assignments["npi"]) == set(scores["npi"])
    assert territories["opportunity_score"].sum() == pytest.approx(scores["opportunity_score"].sum(), rel=1e-9)
    imbalance = (territories["deviation"].abs()).max()
    assert imbalance <= 0.20


def test_engine_beats_the_field_greedy_on_the_sample(materialized):
    """The stored plan against the largest-first greedy on the same stored units."""
    from territory_pipeline.balancing import BalanceSettings, greedy_balance
    from territory_pipeline.operations.alignment import engine_inputs

    first = materialized["first"]
    strip = {t: first[t].drop("refresh_quarter") for t in ("scored_clusters", "clusters", "cluster_adjacency", "provider_scores", "geocoded_providers", "sales_reps")}
    inputs = engine_inputs(strip["scored_clusters"], strip["clusters"], strip["cluster_adjacency"], strip["provider_scores"], strip["geocoded_providers"])
    reps = strip["sales_reps"].select("rep_id", "rep_name", "home_latitude", "home_longitude", "capacity")
    greedy = greedy_balance(inputs.units, reps, adjacency=inputs.adjacency, providers=inputs.providers, settings=BalanceSettings())
    metrics = first["plan_metrics"]
    values = dict(zip(metrics["metric"], metrics["value"]))
    assert values["imbalance"] < greedy.metrics["imbalance"]
    assert values["imbalance"] < 0.20
    assert values["disconnected_territories"] == 0
    assert values["granularity_bound"] <= values["best_partition_bound"] + 1e-12 <= values["imbalance"] + 1e-12


def test_rerun_gives_the_same_rows(materialized):
    assert materialized["rerun"].success
    first, second = materialized["first"], materialized["second"]
    for table in TABLES:
        if table == "alignment_changes":
            continue  # the re-run's diff is against the first run's alignment
        a, b = first[table], second[table]
        if table == "geocoded_providers":
            # the re-run reads every address from the geocode cache, and says so
            assert b["geocode_from_cache"].all()
            a, b = a.drop("geocode_from_cache"), b.drop("geocode_from_cache")
        assert a.equals(b), table


def test_exports_and_map_written(materialized):
    folder = materialized["root"] / "outputs" / QUARTER
    export = pl.read_csv(folder / "territory_assignments.csv", infer_schema=False)
    assert export.height == materialized["first"]["territory_assignments"].height
    assert {"npi", "provider_name", "address_line_1", "territory_id", "rep_id", "rep_name"} <= set(export.columns)
    assert (folder / "territory_assignments.parquet").exists()
    assert (folder / "territories.csv").exists()
    assert (folder / "territory_map.html").stat().st_size > 10_000
    assert (folder / "alignment_changes.md").read_text().startswith("# Alignment")
