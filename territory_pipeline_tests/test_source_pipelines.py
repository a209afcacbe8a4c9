"""The provider universe from each source through the Dagster assets: sample, NPPES file, API.

The API case runs against a local NPI Registry mimic (no internet)."""

import json

import dagster as dg
import duckdb
import polars as pl
import pytest
from npi_registry_mimic import NpiRegistryMimic, Taxonomy, make_universe

QUARTER = "2026-07-01"
UNIVERSE = [dg.AssetKey(k) for k in ("taxonomy_reference", "providers", "provider_rejects", "provider_secondary_locations")]
SPINE = Taxonomy("207XS0117X", "Orthopaedic Surgery", "Orthopaedic Surgery of the Spine")
UROLOGY = Taxonomy("208800000X", "Urology")


def materialize_universe(instance):
    from territory_pipeline.definitions import defs

    job = defs().resolve_job_def("quarterly_refresh_job")
    return job.execute_in_process(partition_key=QUARTER, instance=instance, asset_selection=UNIVERSE, raise_on_error=False)


def providers_of(db):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.sql("select * exclude (refresh_quarter) from providers order by npi").pl()


def test_nppes_file_source_gives_the_sample_universe(pipeline_env, monkeypatch):
    from territory_pipeline.settings import Settings
    from territory_pipeline.universe.provider_sources import sample_dir
    from territory_pipeline.universe.sample_data import generate_sample

    with dg.instance_for_test() as instance:
        assert materialize_universe(instance).success
        from_sample = providers_of(pipeline_env["duckdb"])
        settings = Settings.from_env()
        files = generate_sample(sample_dir(settings), seed=settings.sample_seed, target_providers=settings.sample_providers)
        monkeypatch.setenv("TERRITORY_PROVIDER_SOURCE", "nppes")
        monkeypatch.setenv("NPPES_SOURCE", str(files.npidata_path))
        assert materialize_universe(instance).success
        from_file = providers_of(pipeline_env["duckdb"])
    assert from_file.columns == from_sample.columns
    assert from_file["source"].unique().to_list() == ["nppes"]
    assert from_file.drop("source").equals(from_sample.drop("source"))
    manifest = files.manifest
    assert from_file.height == manifest["row_counts"]["target_individual"]
    bad = {npi for npis in manifest["bad_npis"].values() for npi in npis}
    assert not bad & set(from_file["npi"])


def test_api_source_pulls_past_the_cap_and_rebuilds_from_stored_responses(pipeline_env, monkeypatch):
    wanted = make_universe(1500, taxonomy=SPINE, state="AZ", zip3_prefixes=["850", "852", "857"], seed=3)
    others = make_universe(50, taxonomy=UROLOGY, state="AZ", zip3_prefixes=["850"], seed=4, npi_offset=20_000_000)
    monkeypatch.setenv("TERRITORY_PROVIDER_SOURCE", "api")
    monkeypatch.setenv("NPI_REGISTRY_STATES", "AZ")
    monkeypatch.setenv("NPI_REGISTRY_RATE", "1000")
    with NpiRegistryMimic(wanted + others) as mimic, dg.instance_for_test() as instance:
        monkeypatch.setenv("NPI_REGISTRY_URL", mimic.url)
        result = materialize_universe(instance)
        assert result.success
        requests_first = len(mimic.requests)
        providers = providers_of(pipeline_env["duckdb"])
        meta = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("providers"))
        metadata = meta.step_materialization_data.materialization.metadata
        assert metadata["api_queries"].value > 3  # the capped queries were split
        assert requests_first > 8
        expected = sorted(p["number"] for p in wanted)
        assert providers["npi"].to_list() == expected
        assert providers["source"].unique().to_list() == ["api"]
        assert (providers["taxonomy_code"] == "207XS0117X").all()
        # A re-run rebuilds from the responses stored for the quarter: no API call.
        assert materialize_universe(instance).success
        assert len(mimic.requests) == requests_first
        assert providers_of(pipeline_env["duckdb"]).equals(providers)
        # Other settings than the stored pull answered: the API is asked again.
        monkeypatch.setenv("NPI_REGISTRY_STATES", "AZ,NM")
        assert materialize_universe(instance).success
        assert len(mimic.requests) > requests_first
        assert any(r["params"].get("state") == "NM" for r in mimic.requests)
    with duckdb.connect(str(pipeline_env["duckdb"]), read_only=True) as conn:
        stored = conn.sql("select response_json from npi_registry_responses").pl()
    assert stored.height > 0 and all("results" in json.loads(r) for r in stored["response_json"])


def test_unreachable_api_fails_clearly_and_keeps_the_previous_partition(pipeline_env, monkeypatch):
    with dg.instance_for_test() as instance:
        assert materialize_universe(instance).success
        before = providers_of(pipeline_env["duckdb"])
        monkeypatch.setenv("TERRITORY_PROVIDER_SOURCE", "api")
        monkeypatch.setenv("NPI_REGISTRY_URL", "http://127.0.0.1:9/api/")  # discard port: connection refused
        monkeypatch.setenv("NPI_REGISTRY_STATES", "AZ")
        monkeypatch.setenv("NPI_REGISTRY_MAX_RETRIES", "1")
        result = materialize_universe(instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "NpiRegistryUnavailable" in str(failure.event_specific_data.error) or "unavailable" in str(failure.event_specific_data.error).lower()
    assert providers_of(pipeline_env["duckdb"]).equals(before)
