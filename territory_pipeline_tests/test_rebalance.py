"""Operations end to end: a rep leaves, the sensor launches one rebalance that shares out only
the affected territory, passes the checks, writes the diff and new exports; the same event
again does nothing more.  Also a market event, and a blocking guardrail stopping the exports."""

import json

import dagster as dg
import duckdb
import networkx as nx
import polars as pl
import pytest

from territory_pipeline.defs.automation import current_quarter_key, market_event_sensor, rep_turnover_sensor

QUARTER = current_quarter_key()  # the live alignment that rep and market events change


def defs():
    from territory_pipeline.definitions import defs as load

    return load()


def read(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.sql(sql).pl()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("rebalance")
    env = {
        "TERRITORY_DUCKDB_PATH": root / "territory.duckdb",
        "TERRITORY_OUTPUT_DIR": root / "outputs",
        "TERRITORY_EVENTS_DIR": root / "events",
        "TERRITORY_GENERATED_DIR": root / "generated",
        "TERRITORY_CACHE_DIR": root / "cache",
    }
    for var, value in env.items():
        mp.setenv(var, str(value))
    with dg.instance_for_test() as instance:
        result = defs().resolve_job_def("quarterly_refresh_job").execute_in_process(partition_key=QUARTER, instance=instance)
        assert result.success
        yield {"root": root, "db": root / "territory.duckdb", "instance": instance, "events": root / "events", "env": env}
    mp.undo()


@pytest.fixture(autouse=True)
def _world_environment(request, monkeypatch):
    """Tests using the shared world see its settings (the conftest fixture clears them per test)."""
    if "world" in request.fixturenames:
        for var, value in request.getfixturevalue("world")["env"].items():
            monkeypatch.setenv(var, str(value))


def run_request(world, request, job):
    return (
        defs()
        .resolve_job_def(job)
        .execute_in_process(
            partition_key=request.partition_key, run_config=request.run_config, instance=world["instance"], tags=request.tags, raise_on_error=False
        )
    )


def test_rep_left_shares_out_only_the_affected_territory(world):
    db = world["db"]
    before = read(db, "select npi, territory_id, rep_id from territory_assignments order by npi")
    territories_before = read(db, "select territory_id, rep_id from territories order by 1")
    # on the sample plan this rep's departure is absorbed within the two-hop locality (REP07's,
    # the 7th, is not: the plan widens, the branch below)
    leaving = territories_before["rep_id"][7]
    (world["events"] / "reps").mkdir(parents=True)
    (world["events"] / "reps" / "leaver.json").write_text(json.dumps({"event_id": "left-1", "event_type": "rep_left", "rep_id": leaving}))

    tick = rep_turnover_sensor(dg.build_sensor_context(cursor=None))
    assert len(tick.run_requests) == 1
    request = tick.run_requests[0]
    assert request.partition_key == QUARTER
    result = run_request(world, request, "rep_rebalance_job")
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["every_provider_assigned_once"].passed and checks["territories_contiguous"].passed

    after = read(db, "select npi, territory_id, rep_id from territory_assignments order by npi")
    assert after.height == before.height
    assert leaving not in set(after["rep_id"])
    moved = before.join(after, on="npi", suffix="_after").filter(pl.col("rep_id") != pl.col("rep_id_after"))
    orphans = before.filter(pl.col("rep_id") == leaving).height
    assert set(moved.filter(pl.col("rep_id") == leaving)["npi"]) == set(before.filter(pl.col("rep_id") == leaving)["npi"])
    # Far territories keep their providers: most reps are untouched.
    untouched = [
        rep
        for rep in set(before["rep_id"]) - {leaving}
        if set(before.filter(pl.col("rep_id") == rep)["npi"]) <= set(after.filter(pl.col("rep_id") == rep)["npi"])
        and not moved.filter(pl.col("rep_id") == rep).height
    ]
    # Territories three or more steps from the departed one on the territory graph keep everything.
    edges = read(db, "select cluster_id, neighbor_cluster_id from cluster_adjacency")
    clusters = read(db, "select npi, cluster_id from provider_clusters")
    owner = before.join(clusters, on="npi").select("cluster_id", "rep_id").unique()
    graph = nx.Graph()
    for a, b in edges.join(owner, on="cluster_id").join(owner.rename({"cluster_id": "neighbor_cluster_id", "rep_id": "rep_b"}), on="neighbor_cluster_id").select("rep_id", "rep_b").unique().rows():
        if a != b:
            graph.add_edge(a, b)
    steps = nx.single_source_shortest_path_length(graph, leaving)
    # The new targets are higher (one rep fewer); a far territory still within tolerance of its
    # new target has no reason to change, so it must keep every provider.
    weights = read(db, "select rep_id, sum(opportunity_score) as w from alignment_assignment_history where alignment_id like '%quarterly_refresh' group by rep_id")
    targets = dict(read(db, "select rep_id, target_score from territories").rows())
    fitting = {rep for rep, w in weights.rows() if rep in targets and abs(w - targets[rep]) <= 0.05 * targets[rep]}
    # (A heavy metro split between reps is re-divided as one piece, so its reps are not counted.)
    shared = before.join(clusters, on="npi").group_by("cluster_id").agg(pl.col("rep_id").unique()).filter(pl.col("rep_id").list.len() > 1)
    in_split_metro = set(shared["rep_id"].explode().to_list())
    far = ({rep for rep, d in steps.items() if d >= 3} & fitting) - in_split_metro
    metrics = read(db, "select metric, value from plan_metrics")
    values = dict(zip(metrics["metric"], metrics["value"]))
    assert far
    if values["locality_steps"] == 2:  # the configured locality restored the balance
        assert far <= set(untouched)
    else:  # it widened because the configured locality left the plan beyond the tolerance
        assert values["locality_configured_imbalance"] > 0.05
        assert values["locality_steps"] in (3, 4, 0)
    assert values["moved_provider_share"] * before.height >= orphans
    assert values["imbalance"] < 0.20  # not a blocking imbalance: the exports are written
    # Moved at most 1.5x the least contiguous move that restores balance.
    assert values["disruption_ratio_flow"] <= 1.5

    changes = read(db, "select * from alignment_changes")
    left_rows = changes.filter(pl.col("from_rep_id") == leaving)
    assert left_rows.height == orphans
    assert left_rows["reason"].str.contains("left").all()
    export = pl.read_csv(world["root"] / "outputs" / QUARTER / "territory_assignments.csv", infer_schema=False)
    assert leaving not in set(export["rep_id"])
    history = read(db, "select alignment_id, trigger, previous_alignment_id from alignment_history order by created_at")
    assert history["trigger"].to_list() == ["quarterly_refresh", "rep_event"]
    assert history["previous_alignment_id"][1] == history["alignment_id"][0]

    # The same event dropped twice does nothing more.
    again = rep_turnover_sensor(dg.build_sensor_context(cursor=tick.cursor))
    assert not again.run_requests


def test_a_new_rep_gets_a_territory_carved_from_neighbours(world):
    db = world["db"]
    before = read(db, "select npi, rep_id from territory_assignments order by npi")
    (world["events"] / "reps" / "joiner.json").write_text(
        json.dumps({"event_id": "join-1", "event_type": "rep_joined", "rep_id": "REP21", "rep_name": "Ana Diaz", "home_zip": "85004"})
    )
    cursor = json.dumps({"mtime_ns": 0, "name": ""})
    requests = [r for r in rep_turnover_sensor(dg.build_sensor_context(cursor=cursor)).run_requests if r.run_key == "rep-event-join-1"]
    assert len(requests) == 1
    result = run_request(world, requests[0], "rep_rebalance_job")
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    after = read(db, "select npi, rep_id from territory_assignments order by npi")
    gained = after.filter(pl.col("rep_id") == "REP21")
    assert gained.height > 0
    donors = set(before.join(gained, on="npi", suffix="_after")["rep_id"])
    territories = read(db, "select rep_id, deviation, base_latitude, base_longitude from territories")
    assert "REP21" in set(territories["rep_id"])
    assert len(donors) < 19  # carved from some territories, not from all
    assert read(db, "select text from plan_metrics where metric = 'alignment_status'")["text"].to_list() == ["live"]


def test_new_asc_rescores_its_providers(world):
    db = world["db"]
    office = read(db, "select g.npi, g.address_line_1, g.zip5 from geocoded_providers g join provider_scores s using (npi) where s.practice_setting = 'office' order by g.npi limit 1")
    npi, address, zip5 = office.row(0)
    before = read(db, f"select opportunity_score, contrib_setting from provider_scores where npi = '{npi}'")  # noqa: S608
    (world["events"] / "market").mkdir(parents=True, exist_ok=True)
    (world["events"] / "market" / "asc.json").write_text(json.dumps({"event_id": "asc-1", "event_type": "new_asc", "address_line_1": address, "zip5": zip5}))
    tick = market_event_sensor(dg.build_sensor_context(cursor=None))
    assert [r.run_key for r in tick.run_requests] == ["market-event-asc-1"]
    result = run_request(world, tick.run_requests[0], "market_rebalance_job")
    assert result.success
    after = read(db, f"select practice_setting, opportunity_score, contrib_setting from provider_scores where npi = '{npi}'")  # noqa: S608
    assert after["practice_setting"][0] == "asc"
    assert after["opportunity_score"][0] != pytest.approx(before["opportunity_score"][0])


def test_a_blocking_guardrail_stops_the_exports(tmp_path, pipeline_env, monkeypatch):
    """Half the providers locked to one rep: imbalance ≥ 20% is a blocking ERROR, so no exports."""
    from territory_pipeline.universe.sample_data import generate_sample
    from territory_pipeline.settings import Settings
    from territory_pipeline.universe.provider_sources import sample_dir

    settings = Settings.from_env()
    sample = generate_sample(sample_dir(settings), seed=settings.sample_seed, target_providers=settings.sample_providers)
    providers = pl.read_csv(sample.npidata_path, infer_schema=False).select(pl.col("NPI").alias("npi"))
    locks = tmp_path / "locks.csv"
    providers.head(2500).with_columns(pl.lit("REP01").alias("rep_id")).write_csv(locks)
    monkeypatch.setenv("TERRITORY_LOCKS_FILE", str(locks))
    with dg.instance_for_test() as instance:
        result = defs().resolve_job_def("quarterly_refresh_job").execute_in_process(partition_key=QUARTER, instance=instance, raise_on_error=False)
    assert not result.success
    imbalance = next(e for e in result.get_asset_check_evaluations() if e.check_name == "imbalance_within_tolerance")
    assert not imbalance.passed and imbalance.severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "territories" in materialized and "territory_exports" not in materialized
    assert not (pipeline_env["outputs"] / QUARTER / "territory_assignments.csv").exists()
    db = pipeline_env["duckdb"]
    assert read(db, "select status from alignment_history")["status"].to_list() == ["blocked"]
    # Materialized alone, the exports refuse the blocked plan.
    with dg.instance_for_test() as instance:
        alone = defs().resolve_job_def("quarterly_refresh_job").execute_in_process(
            partition_key=QUARTER, instance=instance, asset_selection=[dg.AssetKey("territory_exports")], raise_on_error=False
        )
    assert not alone.success
    assert "blocking guardrail" in str(next(e for e in alone.all_events if e.is_step_failure).event_specific_data.error)
    assert not (pipeline_env["outputs"] / QUARTER / "territory_assignments.csv").exists()
    # Without the locks the next run starts afresh: a blocked plan is never the live alignment.
    monkeypatch.delenv("TERRITORY_LOCKS_FILE")
    with dg.instance_for_test() as instance:
        again = defs().resolve_job_def("quarterly_refresh_job").execute_in_process(partition_key=QUARTER, instance=instance)
    assert again.success
    history = read(db, "select status, mode, previous_alignment_id from alignment_history")
    assert history.rows() == [("live", "full", None)]
    assert (pipeline_env["outputs"] / QUARTER / "territory_assignments.csv").exists()


@pytest.mark.parametrize("seed", [1, 4])
def test_the_sample_quarter_meets_the_tolerance_at_other_seeds(world, seed):
    """Seeds 1 and 4 ended at 6.0-6.1% (a near miss left by the search path); a regional plan
    that misses by less than half the tolerance is run again from other seeds."""
    import datetime as dt

    from territory_pipeline.balancing import BalanceSettings, balance
    from territory_pipeline.operations.alignment import engine_inputs
    from territory_pipeline.storage.partitions import read_partition

    quarter = dt.date.fromisoformat(QUARTER)
    names = ["scored_clusters", "clusters", "cluster_adjacency", "provider_scores", "geocoded_providers", "sales_reps"]
    with duckdb.connect(str(world["db"]), read_only=True) as conn:
        t = {name: read_partition(conn, name, quarter) for name in names}
    inputs = engine_inputs(t["scored_clusters"], t["clusters"], t["cluster_adjacency"], t["provider_scores"], t["geocoded_providers"])
    reps = t["sales_reps"].select("rep_id", "rep_name", "home_latitude", "home_longitude", "capacity")
    plan = balance(inputs.units, reps, adjacency=inputs.adjacency, providers=inputs.providers, settings=BalanceSettings(seed=seed))
    assert plan.metrics["imbalance"] <= 0.05
    assert plan.metrics["disconnected_territories"] == 0 and plan.metrics["metros_split_beyond_bound"] == 0
