"""The code location loads, with every asset, check, job, schedule and sensor."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import dagster as dg

from territory_pipeline.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_with_every_stage():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    keys = {k.to_user_string() for k in definitions.resolve_all_asset_keys()}
    assert {
        "taxonomy_reference",
        "sales_reps",
        "providers",
        "provider_rejects",
        "geocoded_providers",
        "clusters",
        "cluster_adjacency",
        "provider_scores",
        "scored_clusters",
        "territories",
        "territory_assignments",
        "plan_metrics",
        "alignment_changes",
        "territory_exports",
        "territory_map",
    } <= keys
    checks = {k.name for k in definitions.resolve_asset_graph().asset_check_keys}
    assert {"imbalance_within_tolerance", "every_provider_assigned_once", "territories_contiguous", "geocode_match_rate_above_floor"} <= checks
    for job in ("quarterly_refresh_job", "rep_rebalance_job", "market_rebalance_job"):
        assert definitions.resolve_job_def(job)
    assert definitions.resolve_schedule_def("quarterly_refresh_schedule")
    assert definitions.resolve_sensor_def("rep_turnover_sensor")
    assert definitions.resolve_sensor_def("market_event_sensor")


def test_every_asset_has_description_group_and_kinds():
    for spec in defs().resolve_all_asset_specs():
        assert spec.description, spec.key
        assert spec.group_name in {"universe", "geography", "scoring", "balancing", "operations"}, spec.key
        assert spec.kinds, spec.key


def test_schedule_runs_the_quarter_that_just_closed():
    definitions = defs()
    schedule = definitions.resolve_schedule_def("quarterly_refresh_schedule")
    repository = definitions.get_repository_def()
    for tick, expected in (((2026, 10, 1), "2026-07-01"), ((2027, 1, 1), "2026-10-01"), ((2026, 4, 1), "2026-01-01")):
        when = dt.datetime(*tick, 6, 0, tzinfo=dt.timezone.utc)
        ctx = dg.build_schedule_context(scheduled_execution_time=when, repository_def=repository)
        requests = schedule.evaluate_tick(ctx).run_requests
        assert [r.partition_key for r in requests] == [expected]
        assert requests[0].run_key == f"quarterly-refresh-{expected}"


def test_dg_check_defs_passes_from_the_repository_root():
    dg_cli = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg_cli), "check", "defs"], cwd=ROOT, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "DAGSTER_HOME": str(ROOT)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower()


def test_settings_resource_mirrors_every_setting():
    from dataclasses import fields

    from territory_pipeline.defs.resources import PipelineSettings
    from territory_pipeline.settings import ENVIRONMENT, Settings

    settings_fields = {f.name for f in fields(Settings)}
    assert set(PipelineSettings.model_fields) == settings_fields - {"duckdb_path"}
    assert {name for name, _ in ENVIRONMENT.values()} == settings_fields
    custom = Settings(provider_source="api", taxonomy_codes=("207T00000X",), h3_resolution=6, cluster_method="metro")
    assert PipelineSettings.from_settings(custom).to_settings() == custom
