"""Cluster adjacency: touching footprints, drive-time reach, connection per region."""

from __future__ import annotations

import h3
import networkx as nx
import numpy as np
import polars as pl
import pytest

from test_clustering import add_provider, make_npi, providers_frame
from territory_pipeline import schemas
from territory_pipeline.geography.adjacency import build_adjacency, region_of
from territory_pipeline.geography.clustering import ClusterSettings, cluster_providers
from territory_pipeline.geography.h3index import add_h3_cells
from territory_pipeline.geography.travel import haversine_miles


def _graph(adjacency: pl.DataFrame, reasons: set[str] | None = None) -> nx.Graph:
    g = nx.Graph()
    for a, b, _, reason in adjacency.iter_rows():
        if reasons is None or reason in reasons:
            g.add_edge(a, b)
    return g


def _assert_well_formed(adjacency: pl.DataFrame) -> None:
    assert adjacency.columns == list(schemas.CLUSTER_ADJACENCY)
    assert adjacency.filter(pl.col("cluster_id") == pl.col("neighbor_cluster_id")).height == 0
    assert adjacency.equals(adjacency.sort("cluster_id", "neighbor_cluster_id"))
    assert adjacency.select("cluster_id", "neighbor_cluster_id").n_unique() == adjacency.height
    mirrored = adjacency.select(
        pl.col("neighbor_cluster_id").alias("cluster_id"), pl.col("cluster_id").alias("neighbor_cluster_id"),
        "distance_miles", "reason").sort("cluster_id", "neighbor_cluster_id")
    assert mirrored.equals(adjacency)


def _clustered(frame: pl.DataFrame, method: str = "metro"):
    result = cluster_providers(frame, ClusterSettings(method=method))
    return result, add_h3_cells(frame, 7)


def test_touching_footprints_give_h3_neighbor_edges() -> None:
    frame = providers_frame({"phoenix": 60})
    lat, lon = frame.row(0)[1:3]
    cell = h3.latlng_to_cell(lat, lon, 7)
    outside = sorted(set(h3.grid_disk(cell, 1)) - set(add_h3_cells(frame, 7)["h3_cell"]))
    n_lat, n_lon = h3.cell_to_latlng(outside[0])
    frame = add_provider(frame, 500, n_lat, n_lon)  # no metro: becomes a pseudo-metro touching Phoenix
    result, geocoded = _clustered(frame)
    adjacency = build_adjacency(result.clusters, result.provider_clusters, geocoded, neighbor_minutes=0.0,
                                ensure_connected=False)
    _assert_well_formed(adjacency)
    pseudo = result.provider_clusters.filter(pl.col("npi") == make_npi(500))["cluster_id"].item()
    row = adjacency.filter((pl.col("cluster_id") == "M-38060") & (pl.col("neighbor_cluster_id") == pseudo))
    assert row["reason"].to_list() == ["h3_neighbor"]
    centroids = result.clusters.filter(pl.col("cluster_id").is_in(["M-38060", pseudo])).sort("cluster_id")
    expected = haversine_miles(*centroids.select("centroid_latitude", "centroid_longitude").rows()[0],
                               *centroids.select("centroid_latitude", "centroid_longitude").rows()[1])
    assert row["distance_miles"].item() == pytest.approx(expected)


def test_within_reach_depends_on_neighbor_minutes() -> None:
    frame = providers_frame({"phoenix": 40, "tucson": 30})
    result, geocoded = _clustered(frame)
    short = build_adjacency(result.clusters, result.provider_clusters, geocoded, neighbor_minutes=90,
                            ensure_connected=False)
    assert short.height == 0  # about 180 estimated minutes apart
    long = build_adjacency(result.clusters, result.provider_clusters, geocoded, neighbor_minutes=200,
                           ensure_connected=False)
    assert long.rows() == [
        ("M-38060", "M-46060", pytest.approx(long["distance_miles"][0]), "within_reach"),
        ("M-46060", "M-38060", pytest.approx(long["distance_miles"][0]), "within_reach"),
    ]
    assert 100 < long["distance_miles"][0] < 115


def test_ensure_connected_links_components_by_a_minimum_spanning_forest() -> None:
    frame = providers_frame()
    result, geocoded = _clustered(frame)
    loose = build_adjacency(result.clusters, result.provider_clusters, geocoded, ensure_connected=False)
    adjacency = build_adjacency(result.clusters, result.provider_clusters, geocoded)
    _assert_well_formed(adjacency)
    graph = _graph(adjacency)
    assert set(graph.nodes) == set(result.clusters["cluster_id"]) and nx.is_connected(graph)
    assert nx.number_connected_components(_graph(loose)) + (
        result.clusters.height - _graph(loose).number_of_nodes()) > 1
    links = adjacency.filter(
        (pl.col("reason") == "nearest_link") & (pl.col("cluster_id") < pl.col("neighbor_cluster_id")))
    # Dallas joins through Albuquerque, its nearest metro, never straight to Phoenix
    assert ("M-10740", "M-19100") in set(links.select("cluster_id", "neighbor_cluster_id").rows())
    dallas_phoenix = (pl.col("cluster_id") == "M-19100") & (pl.col("neighbor_cluster_id") == "M-38060")
    assert adjacency.filter(dallas_phoenix).height == 0
    # total link length equals the minimum spanning tree over the components
    centroids = {r[0]: (r[1], r[2]) for r in result.clusters.select("cluster_id", "centroid_latitude",
                                                                     "centroid_longitude").iter_rows()}
    base = _graph(loose)
    base.add_nodes_from(centroids)
    comps = list(nx.connected_components(base))
    complete = nx.Graph()
    for i in range(len(comps)):
        for j in range(i + 1, len(comps)):
            complete.add_edge(i, j, weight=min(haversine_miles(*centroids[a], *centroids[b])
                                               for a in comps[i] for b in comps[j]))
    mst = nx.minimum_spanning_tree(complete).size(weight="weight")
    assert links["distance_miles"].sum() == pytest.approx(mst)


def _hand_clusters(points: list[tuple[str, float, float]]):
    ids = [p[0] for p in points]
    clusters = pl.DataFrame({"cluster_id": ids, "centroid_latitude": [p[1] for p in points],
                             "centroid_longitude": [p[2] for p in points]})
    npis = [make_npi(i + 1) for i in range(len(points))]
    provider_clusters = pl.DataFrame({"npi": npis, "cluster_id": ids})
    geocoded = add_h3_cells(pl.DataFrame({"npi": npis, "latitude": clusters["centroid_latitude"],
                                          "longitude": clusters["centroid_longitude"]}), 7)
    return clusters, provider_clusters, geocoded


def test_large_components_are_joined_by_their_exact_closest_pair() -> None:
    rng = np.random.default_rng(4)
    points = [(f"P{i:02d}", 33.45 + rng.normal(0, 0.1), -112.07 + rng.normal(0, 0.1)) for i in range(20)]
    points += [(f"D{i:02d}", 32.78 + rng.normal(0, 0.1), -96.80 + rng.normal(0, 0.1)) for i in range(20)]
    adjacency = build_adjacency(*_hand_clusters(points), neighbor_minutes=90)
    _assert_well_formed(adjacency)
    links = adjacency.filter(
        (pl.col("reason") == "nearest_link") & (pl.col("cluster_id") < pl.col("neighbor_cluster_id")))
    assert links.height == 1
    best = min((haversine_miles(a[1], a[2], b[1], b[2]), *sorted((a[0], b[0])))
               for a in points[:20] for b in points[20:])
    assert links.row(0)[:3] == (best[1], best[2], pytest.approx(best[0]))
    assert nx.is_connected(_graph(adjacency))


def test_regions_stay_apart_but_each_is_connected() -> None:
    points = [("CONUS-PHX", 33.45, -112.07), ("CONUS-DAL", 32.78, -96.80), ("HI-HNL", 21.31, -157.86),
              ("HI-HILO", 19.71, -155.08), ("AK-ANC", 61.22, -149.90), ("PR-SJU", 18.47, -66.11)]
    assert list(region_of(np.array([p[1] for p in points]), np.array([p[2] for p in points]))) == [
        "CONUS", "CONUS", "HI", "HI", "AK", "PR_VI"]
    adjacency = build_adjacency(*_hand_clusters(points), link_regions=False)
    _assert_well_formed(adjacency)
    pairs = set(adjacency.filter(pl.col("cluster_id") < pl.col("neighbor_cluster_id"))
                .select("cluster_id", "neighbor_cluster_id").rows())
    assert pairs == {("CONUS-DAL", "CONUS-PHX"), ("HI-HILO", "HI-HNL")}


def test_offshore_regions_join_the_mainland_by_their_shortest_link() -> None:
    points = [("CONUS-PHX", 33.45, -112.07), ("CONUS-DAL", 32.78, -96.80), ("CONUS-SEA", 47.61, -122.33),
              ("CONUS-MIA", 25.76, -80.19), ("HI-HNL", 21.31, -157.86), ("HI-HILO", 19.71, -155.08),
              ("AK-ANC", 61.22, -149.90), ("PR-SJU", 18.47, -66.11)]
    adjacency = build_adjacency(*_hand_clusters(points))
    _assert_well_formed(adjacency)
    assert nx.is_connected(_graph(adjacency))
    bridges = set(adjacency.filter((pl.col("reason") == "region_link") & (pl.col("cluster_id") < pl.col("neighbor_cluster_id")))
                  .select("cluster_id", "neighbor_cluster_id").rows())
    # Anchorage to Seattle, San Juan to Miami, and Hawaii by its shortest crossing (Hilo-Seattle,
    # about 2,680 miles, beats Honolulu-Phoenix, about 2,900).
    assert bridges == {("AK-ANC", "CONUS-SEA"), ("CONUS-MIA", "PR-SJU"), ("CONUS-SEA", "HI-HILO")}


def test_shuffled_input_gives_identical_adjacency() -> None:
    frame = add_provider(providers_frame(), 990, 34.0, -111.5)
    result, geocoded = _clustered(frame, "density")
    first = build_adjacency(result.clusters, result.provider_clusters, geocoded)
    second = build_adjacency(result.clusters.sample(fraction=1.0, shuffle=True, seed=2),
                             result.provider_clusters.sample(fraction=1.0, shuffle=True, seed=3),
                             geocoded.sample(fraction=1.0, shuffle=True, seed=4))
    assert first.equals(second) and first.height > 0


def test_bad_input_raises() -> None:
    clusters, provider_clusters, geocoded = _hand_clusters([("A", 33.4, -112.0), ("B", 32.2, -110.9)])
    with pytest.raises(ValueError, match="h3_cell"):
        build_adjacency(clusters, provider_clusters, geocoded.drop("h3_cell"))
    with pytest.raises(ValueError, match="no h3_cell"):
        build_adjacency(clusters, provider_clusters, geocoded.head(1))
    with pytest.raises(ValueError, match="absent from clusters"):
        build_adjacency(clusters.head(1), provider_clusters, geocoded)
    with pytest.raises(ValueError, match="duplicate cluster_id"):
        build_adjacency(pl.concat([clusters, clusters]), provider_clusters, geocoded)
    assert build_adjacency(clusters.head(0), provider_clusters.head(0), geocoded).height == 0


def test_natural_neighbours_keep_sparse_country_from_becoming_a_tree() -> None:
    # Phoenix-Tucson about 105 miles, Phoenix-Prescott about 80, Tucson-Prescott about 180:
    # all beyond the 90-minute reach, so only Delaunay neighbours within 240 minutes join them.
    points = [("PHX", 33.45, -112.07), ("TUS", 32.22, -110.97), ("PRE", 34.54, -112.47), ("FLG", 35.20, -111.65)]
    adjacency = build_adjacency(*_hand_clusters(points))
    _assert_well_formed(adjacency)
    pairs = {
        (a, b): reason
        for a, b, reason in adjacency.filter(pl.col("cluster_id") < pl.col("neighbor_cluster_id"))
        .select("cluster_id", "neighbor_cluster_id", "reason")
        .rows()
    }
    assert pairs[("PHX", "TUS")] == "natural_neighbor"
    assert pairs[("PHX", "PRE")] == "natural_neighbor"
    assert pairs[("FLG", "PRE")] in ("natural_neighbor", "within_reach")
    assert ("PRE", "TUS") not in pairs  # a Delaunay edge, but beyond 240 minutes
    without = build_adjacency(*_hand_clusters(points), natural_neighbor_minutes=None)
    assert set(without["reason"]) <= {"h3_neighbor", "within_reach", "nearest_link"}
    assert without.height < adjacency.height
