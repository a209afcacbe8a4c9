"""Geography through the assets: the Census geocoder (local mimic) with its cache, official
metros from the reference files, and each clustering method."""

import dagster as dg
import duckdb
import polars as pl
import pytest
from census_geocoder_mimic import CensusGeocoderMimic, MimicMatch

QUARTER = "2026-07-01"
KEYS = (
    "taxonomy_reference",
    "providers",
    "provider_rejects",
    "provider_secondary_locations",
    "metro_reference",
    "geocoded_providers",
    "geocode_rejects",
    "clusters",
    "provider_clusters",
    "cluster_adjacency",
)


def run(instance, keys=KEYS):
    from territory_pipeline.definitions import defs

    job = defs().resolve_job_def("quarterly_refresh_job")
    return job.execute_in_process(
        partition_key=QUARTER, instance=instance, asset_selection=[dg.AssetKey(k) for k in keys], raise_on_error=False
    )


def table(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.sql(sql).pl()


def metadata(result, key):
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key))
    return event.step_materialization_data.materialization.metadata


def test_census_geocoder_with_cache(pipeline_env, monkeypatch):
    db = pipeline_env["duckdb"]
    with dg.instance_for_test() as instance, CensusGeocoderMimic() as mimic:
        assert run(instance, KEYS[:4]).success
        sample = table(db, "select npi, address_line_1, city, state, zip5 from providers order by npi limit 25")
        for i, (npi, street, city, state, zip5) in enumerate(sample.iter_rows()):
            mimic.add_match(street, city, state, zip5, MimicMatch(longitude=-112.0 - i / 1000, latitude=33.4 + i / 1000))
        monkeypatch.setenv("TERRITORY_GEOCODER", "census")
        monkeypatch.setenv("CENSUS_GEOCODER_URL", mimic.base_url)
        first = run(instance)
        assert first.success
        seen = mimic.addresses_seen
        assert seen > 1000  # every distinct practice address went to the batch geocoder once
        geocoded = table(db, "select npi, latitude, longitude, geocode_method, geocode_quality from geocoded_providers")
        assert geocoded["geocode_method"].null_count() == 0 and geocoded["geocode_quality"].null_count() == 0
        census = geocoded.filter(pl.col("geocode_method") == "census")
        assert set(sample["npi"]) <= set(census["npi"])
        assert set(census["geocode_quality"]) <= {"exact", "non_exact"}
        assert set(geocoded.filter(pl.col("geocode_method") != "census")["geocode_method"]) == {"zip_centroid"}
        # A later run of the quarter geocodes nothing new.
        second = run(instance)
        assert second.success
        assert mimic.addresses_seen == seen
        assert metadata(second, "geocoded_providers")["cache_hit_rate"].value == pytest.approx(1.0)


def test_official_metros_from_reference_files(pipeline_env, monkeypatch, reference_dir):
    monkeypatch.setenv("CBSA_DELINEATION_SOURCE", str(reference_dir / "cbsa_list1_2023.csv"))
    monkeypatch.setenv("HUD_ZIP_CBSA_SOURCE", str(reference_dir / "hud_zip_cbsa_122024.csv"))
    monkeypatch.setenv("TERRITORY_CLUSTER_METHOD", "metro")
    with dg.instance_for_test() as instance:
        result = run(instance)
    assert result.success
    db = pipeline_env["duckdb"]
    geocoded = table(db, "select zip5, county_fips, cbsa_code, cbsa_title, metro_source from geocoded_providers")
    official = geocoded.filter(pl.col("metro_source") == "official")
    assert official.height / geocoded.height > 0.85
    assert not official["cbsa_code"].str.starts_with("APX").any()
    phoenix = geocoded.filter(pl.col("zip5").str.starts_with("850") & (pl.col("metro_source") == "official"))
    assert phoenix.height and set(phoenix["cbsa_code"]) == {"38060"}
    assert geocoded["county_fips"].null_count() / geocoded.height < 0.02
    clusters = table(db, "select cluster_id, method, cbsa_code from clusters")
    assert set(clusters["method"]) == {"metro"}
    assert clusters.filter(pl.col("cbsa_code") == "38060")["cluster_id"].to_list() == ["M-38060"]
    refs = table(db, "select distinct vintage from ref_cbsa_delineation")
    assert refs.height == 1


@pytest.mark.parametrize("method", ["density", "drive_time"])
def test_each_clustering_method_puts_every_provider_in_one_cluster(pipeline_env, monkeypatch, method):
    monkeypatch.setenv("TERRITORY_CLUSTER_METHOD", method)
    with dg.instance_for_test() as instance:
        result = run(instance)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["every_provider_in_one_cluster"].passed
    db = pipeline_env["duckdb"]
    clusters = table(db, "select * from clusters")
    assert set(clusters["method"]) == {method}
    memberships = table(db, "select npi, cluster_id from provider_clusters")
    providers = table(db, "select npi from geocoded_providers")
    assert memberships["npi"].is_unique().all() and set(memberships["npi"]) == set(providers["npi"])
    if method == "drive_time":
        assert clusters["reach_minutes"].max() <= 150 + 1e-6
    adjacency = table(db, "select cluster_id, neighbor_cluster_id from cluster_adjacency")
    import networkx as nx

    graph = nx.Graph(adjacency.rows())
    graph.add_nodes_from(clusters["cluster_id"])
    assert nx.is_connected(graph)
