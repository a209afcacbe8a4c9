"""Clustering of geocoded providers: metro, density (DBSCAN) and drive-time methods."""

from __future__ import annotations

import h3
import numpy as np
import polars as pl
import pytest

from osrm_mimic import OsrmMimic
from territory_pipeline import schemas
from territory_pipeline.geography.clustering import ClusterSettings, cluster_providers
from territory_pipeline.geography.h3index import add_h3_cells
from territory_pipeline.geography.travel import HaversineTravelEstimate, OsrmTravelTime, haversine_miles
from territory_pipeline.universe.validation import npi_check_digit

# (latitude, longitude, cbsa_code, cbsa_title, spread in degrees)
CITIES = {
    "phoenix": (33.4484, -112.0740, "38060", "Phoenix-Mesa-Chandler, AZ", 0.12),
    "tucson": (32.2226, -110.9747, "46060", "Tucson, AZ", 0.06),
    "albuquerque": (35.0844, -106.6504, "10740", "Albuquerque, NM", 0.06),
    "dallas": (32.7767, -96.7970, "19100", "Dallas-Fort Worth-Arlington, TX", 0.15),
}


def make_npi(serial: int) -> str:
    body = f"1{serial:08d}"
    return body + npi_check_digit(body)


def providers_frame(counts: dict[str, int] | None = None, seed: int = 11, zips_per_city: int = 25) -> pl.DataFrame:
    """Providers at ZIP-centroid-like coordinates (several providers per coordinate) around real metros."""
    counts = counts or {"phoenix": 120, "tucson": 50, "albuquerque": 40, "dallas": 90}
    rng = np.random.default_rng(seed)
    rows = []
    for city, n in counts.items():
        lat0, lon0, cbsa, title, spread = CITIES[city]
        zips = np.round(np.column_stack([rng.normal(lat0, spread, zips_per_city),
                                         rng.normal(lon0, spread, zips_per_city)]), 6)
        for k in rng.integers(0, zips_per_city, n):
            rows.append((make_npi(len(rows) + 1), float(zips[k, 0]), float(zips[k, 1]), cbsa, title, "official"))
    return pl.DataFrame(rows, schema=["npi", "latitude", "longitude", "cbsa_code", "cbsa_title", "metro_source"],
                        orient="row")


def add_provider(frame: pl.DataFrame, serial: int, lat: float, lon: float, cbsa: str | None = None,
                 title: str | None = None) -> pl.DataFrame:
    row = pl.DataFrame([(make_npi(serial), lat, lon, cbsa, title, "official" if cbsa else "none")],
                       schema=frame.schema, orient="row")
    return pl.concat([frame, row])


def members_of(result, npi: str) -> set[str]:
    pc = result.provider_clusters
    cid = pc.filter(pl.col("npi") == npi)["cluster_id"].item()
    return set(pc.filter(pl.col("cluster_id") == cid)["npi"])


def city_npis(frame: pl.DataFrame, cbsa: str) -> set[str]:
    return set(frame.filter(pl.col("cbsa_code") == cbsa)["npi"])


def cluster_of(result, npis: set[str]) -> set[str]:
    return set(result.provider_clusters.filter(pl.col("npi").is_in(sorted(npis)))["cluster_id"])


def assert_partition(frame: pl.DataFrame, result) -> None:
    pc = result.provider_clusters
    assert pc.columns == list(schemas.PROVIDER_CLUSTERS)
    assert pc.height == frame.height and pc["npi"].n_unique() == frame.height
    assert set(pc["npi"]) == set(frame["npi"])
    assert set(pc["cluster_id"]) == set(result.clusters["cluster_id"])
    counts = dict(pc.group_by("cluster_id").len().iter_rows())
    assert counts == dict(result.clusters.select("cluster_id", "member_count").iter_rows())
    assert result.clusters.columns[: len(schemas.CLUSTERS)] == list(schemas.CLUSTERS)
    assert result.clusters.schema["h3_cells"] == pl.List(pl.Utf8)


def test_density_separates_phoenix_and_tucson_and_records_cluster_facts() -> None:
    frame = providers_frame()
    result = cluster_providers(frame, ClusterSettings(method="density", dbscan_eps_miles=10.0))
    assert_partition(frame, result)
    phoenix, tucson = city_npis(frame, "38060"), city_npis(frame, "46060")
    assert len(cluster_of(result, phoenix)) == 1 and len(cluster_of(result, tucson)) == 1
    assert cluster_of(result, phoenix) != cluster_of(result, tucson)
    row = result.clusters.filter(pl.col("cluster_id") == cluster_of(result, phoenix).pop()).row(0, named=True)
    ph = frame.filter(pl.col("npi").is_in(sorted(phoenix)))
    assert row["cbsa_code"] == "38060" and row["cbsa_title"].startswith("Phoenix") and row["metro_source"] == "official"
    assert row["centroid_latitude"] == pytest.approx(ph["latitude"].mean())
    assert row["h3_cells"] == sorted(set(add_h3_cells(ph, 7)["h3_cell"]))
    far = haversine_miles(row["centroid_latitude"], row["centroid_longitude"], ph["latitude"], ph["longitude"]).max()
    assert row["reach_miles"] == pytest.approx(far * 1.25)
    assert row["reach_minutes"] == pytest.approx(far * 1.25 / 45.0 * 60.0)
    ids = result.clusters.sort("member_count", descending=True)["cluster_id"].to_list()
    assert ids[0] == "D-0001" and all(i.startswith("D-") for i in ids)
    assert result.clusters.filter(pl.col("cluster_id") == "D-0001")["cbsa_code"].item() == "38060"


def test_noise_rule_attaches_near_point_and_isolates_far_point() -> None:
    frame = providers_frame({"phoenix": 80, "tucson": 30})
    east = frame.filter(pl.col("cbsa_code") == "38060").sort("longitude")["longitude"].max()
    near_lat = frame.filter(pl.col("longitude") == east)["latitude"][0]
    frame = add_provider(frame, 900, near_lat, east + 0.3)  # about 17 miles beyond the metro's edge
    frame = add_provider(frame, 901, 35.5, -114.5)  # Mohave desert, far from both
    nearest = cluster_providers(frame, ClusterSettings(method="density", noise_reach_miles=30.0))
    assert_partition(frame, nearest)
    assert members_of(nearest, make_npi(900)) >= city_npis(frame, "38060")
    assert members_of(nearest, make_npi(901)) == {make_npi(901)}
    assert nearest.stats["noise_locations_attached"] == 1 and nearest.stats["singleton_locations"] == 1
    singleton = cluster_providers(frame, ClusterSettings(method="density", noise_rule="singleton"))
    assert members_of(singleton, make_npi(900)) == {make_npi(900)}
    assert singleton.stats["noise_locations_attached"] == 0


def test_deduplicated_dbscan_gives_the_same_clusters_as_one_point_per_provider() -> None:
    frame = providers_frame({"phoenix": 150, "tucson": 60, "albuquerque": 40}, zips_per_city=40)
    frame = add_provider(frame, 950, 34.2, -111.3)
    frame = add_provider(frame, 951, 34.2, -111.3)  # two isolated providers sharing a coordinate
    dedup = cluster_providers(frame, ClusterSettings(dbscan_eps_miles=4.0, dbscan_min_samples=5))
    plain = cluster_providers(frame, ClusterSettings(dbscan_eps_miles=4.0, dbscan_min_samples=5, deduplicate=False))
    assert dedup.stats["locations"] < plain.stats["locations"] == frame.height
    assert dedup.stats["clusters"] > 3  # a non-trivial partition
    assert dedup.provider_clusters.equals(plain.provider_clusters)
    assert dedup.clusters.equals(plain.clusters)
    assert members_of(plain, make_npi(950)) == {make_npi(950), make_npi(951)}


def test_density_chaining_is_capped_by_max_reach() -> None:
    # a corridor of ZIP points every 4 miles from Phoenix towards Tucson: DBSCAN chains it into one cluster
    steps = np.linspace(0, 1, 30)
    rows = []
    for k, t in enumerate(steps):
        lat = 33.4484 + t * (32.2226 - 33.4484)
        lon = -112.0740 + t * (-110.9747 + 112.0740)
        for j in range(3):
            rows.append((make_npi(3 * k + j + 1), lat, lon, None, None, "none"))
    frame = pl.DataFrame(rows, schema=["npi", "latitude", "longitude", "cbsa_code", "cbsa_title", "metro_source"],
                         orient="row")
    loose = cluster_providers(frame, ClusterSettings(max_reach_minutes=500.0))
    assert loose.stats["clusters"] == 1 and loose.stats["clusters_split_for_reach"] == 0
    capped = cluster_providers(frame, ClusterSettings(max_reach_minutes=30.0))
    assert_partition(frame, capped)
    assert capped.stats["clusters_split_for_reach"] >= 1 and capped.stats["clusters"] >= 3
    assert capped.clusters["reach_minutes"].max() <= 30.0
    assert capped.clusters["cbsa_code"].null_count() == capped.clusters.height
    assert set(capped.clusters["metro_source"]) == {"none"}


def test_drive_time_members_within_limit_and_albuquerque_apart() -> None:
    frame = providers_frame()
    frame = add_provider(frame, 960, 32.8795, -111.7574, "APX-CASA", "Casa Grande (approximate)")
    settings = ClusterSettings(method="drive_time", drive_time_minutes=150.0)
    result = cluster_providers(frame, settings)
    assert_partition(frame, result)
    est = HaversineTravelEstimate()
    joined = result.provider_clusters.join(frame, on="npi").join(result.clusters, on="cluster_id")
    _, minutes = est.paired(joined.select("center_latitude", "center_longitude").to_numpy(),
                            joined.select("latitude", "longitude").to_numpy())
    assert minutes.max() <= 150.0
    assert result.clusters["reach_minutes"].max() <= 150.0
    abq = cluster_of(result, city_npis(frame, "10740"))
    assert not abq & cluster_of(result, city_npis(frame, "38060") | city_npis(frame, "46060"))
    assert not abq & cluster_of(result, city_npis(frame, "19100"))
    assert all(i.startswith("T-") for i in result.clusters["cluster_id"])
    # every cluster's centre is one of its members' locations
    for row in result.clusters.iter_rows(named=True):
        mem = joined.filter(pl.col("cluster_id") == row["cluster_id"])
        assert ((mem["latitude"] == row["center_latitude"]) & (mem["longitude"] == row["center_longitude"])).any()


def test_drive_time_with_short_limit_splits_metros_and_uses_osrm() -> None:
    frame = providers_frame({"phoenix": 60, "tucson": 20}, zips_per_city=12)
    with OsrmMimic(factor=1.3, mph=40.0) as mimic:
        osrm = OsrmTravelTime(mimic.url)
        result = cluster_providers(frame, ClusterSettings(method="drive_time", drive_time_minutes=20.0), osrm)
        assert mimic.coordinate_counts
    assert_partition(frame, result)
    assert result.clusters["reach_minutes"].max() <= 20.0 + 0.1  # mimic rounds seconds to 0.1
    assert result.stats["clusters"] > 2


def test_metro_groups_by_cbsa_and_pseudo_metros_by_res5_cell() -> None:
    frame = providers_frame()
    frame = add_provider(frame, 970, 34.5400, -112.4685)  # Prescott area, no metro given
    frame = add_provider(frame, 971, 34.5401, -112.4684)
    result = cluster_providers(frame, ClusterSettings(method="metro"))
    assert_partition(frame, result)
    ids = set(result.clusters["cluster_id"])
    pseudo = f"M-NONE-{h3.latlng_to_cell(34.5400, -112.4685, 5)}"
    assert ids == {"M-38060", "M-46060", "M-10740", "M-19100", pseudo}
    for cbsa in ("38060", "46060", "10740", "19100"):
        assert cluster_of(result, city_npis(frame, cbsa)) == {f"M-{cbsa}"}
    row = result.clusters.filter(pl.col("cluster_id") == pseudo).row(0, named=True)
    assert row["member_count"] == 2 and row["cbsa_code"] is None and row["metro_source"] == "none"


def test_majority_metro_wins_within_a_cluster() -> None:
    frame = providers_frame({"tucson": 40})
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("APX-X")).otherwise(pl.col("cbsa_code")).alias("cbsa_code"))
    result = cluster_providers(frame, ClusterSettings(method="density", dbscan_eps_miles=30.0))
    assert result.clusters.height == 1 and result.clusters["cbsa_code"].item() == "46060"


@pytest.mark.parametrize("method", ["metro", "density", "drive_time"])
def test_same_input_shuffled_gives_identical_frames(method: str) -> None:
    frame = providers_frame()
    frame = add_provider(frame, 980, 34.0, -111.5)
    settings = ClusterSettings(method=method, max_reach_minutes=40.0, drive_time_minutes=60.0)
    first = cluster_providers(frame, settings)
    second = cluster_providers(frame.sample(fraction=1.0, shuffle=True, seed=5), settings)
    assert first.clusters.equals(second.clusters)
    assert first.provider_clusters.equals(second.provider_clusters)
    assert first.stats == second.stats


def test_bad_input_and_settings_raise() -> None:
    frame = providers_frame({"tucson": 5})
    with pytest.raises(ValueError, match="more than once"):
        cluster_providers(pl.concat([frame, frame.head(1)]))
    with pytest.raises(ValueError, match="no coordinates"):
        cluster_providers(frame.with_columns(pl.lit(None, pl.Float64).alias("latitude")))
    with pytest.raises(ValueError, match="lack columns"):
        cluster_providers(frame.drop("cbsa_code"))
    with pytest.raises(ValueError, match="cluster method"):
        ClusterSettings(method="kmeans")
    with pytest.raises(ValueError, match="noise_rule"):
        ClusterSettings(noise_rule="drop")
    with pytest.raises(ValueError, match="dbscan_eps_miles"):
        ClusterSettings(dbscan_eps_miles=0)
    empty = cluster_providers(frame.head(0))
    assert empty.clusters.height == 0 and empty.provider_clusters.columns == list(schemas.PROVIDER_CLUSTERS)
    assert empty.clusters.columns == [*schemas.CLUSTERS, "center_latitude", "center_longitude"]
