"""The cluster adjacency graph that the balancer grows contiguous territories on.

Two clusters are adjacent when

* ``h3_neighbor``: their footprints touch: a member cell of one is in the
  ``grid_disk(cell, 1)`` of a member cell of the other (a shared cell counts);
* ``within_reach``: otherwise, their centroids are within ``neighbor_minutes``
  of each other by the travel provider (the shorter of the two directions);
* ``natural_neighbor``: otherwise, the two centroids are natural neighbours
  (an edge of the Delaunay triangulation of the region's centroids, on a
  local equirectangular projection) within ``natural_neighbor_minutes``.  In
  sparse country clusters lie farther apart than ``neighbor_minutes``; without
  these edges the graph there would be a tree, and contiguous territories on a
  tree can hardly be balanced;
* ``nearest_link``: added by ``ensure_connected`` to join the graph's
  components with the shortest centroid-to-centroid links.

* ``region_link``: with ``link_regions``, the single shortest link from an
  offshore region to the rest of the graph.

Connection is done per *region* first, so that links never cross an ocean
where land links exist: the contiguous US (the default region for every
centroid not in a box below), Alaska, Hawaii, Puerto Rico with the US Virgin
Islands, Guam with the Northern Mariana Islands, and American Samoa.  Inside
each region the graph is connected.  Links are chosen like a minimum spanning
tree over the components: candidate links are each centroid's 16 nearest
centroids (great-circle); components still apart after that are joined by
Borůvka rounds with exact nearest-outside-point queries.

Offshore regions hold too few providers to make a territory of their own, and
in practice a mainland rep flies there (Seattle covers Alaska, Los Angeles or
San Francisco covers Hawaii, Miami covers Puerto Rico).  So by default
(``link_regions=True``) each region is then joined to the rest by its shortest
``region_link``, and the whole graph is connected: the balancer can only give
an offshore region to the territory at the other end of that link.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import Delaunay, QhullError
from sklearn.neighbors import BallTree

from territory_pipeline import schemas
from territory_pipeline.geography.h3index import grid_disk_cells
from territory_pipeline.geography.travel import (
    EARTH_RADIUS_MILES,
    HaversineTravelEstimate,
    TravelTimeProvider,
    haversine_miles,
    max_straight_line_miles,
    paired_travel,
)

# (region, lat_min, lat_max, lon_min, lon_max); first match wins, else 'CONUS'
REGION_BOXES: tuple[tuple[str, float, float, float, float], ...] = (
    ("AK", 51.0, 72.0, -180.0, -129.0),
    ("AK", 51.0, 72.0, 170.0, 180.0),  # western Aleutians
    ("HI", 18.0, 23.0, -161.0, -154.0),
    ("PR_VI", 17.5, 18.7, -68.0, -64.3),
    ("GU_MP", 13.0, 21.0, 144.0, 147.0),
    ("AS", -15.0, -10.0, -172.0, -168.0),
)
_CANDIDATE_NEIGHBOURS = 16
_REASON_RANK = {"h3_neighbor": 0, "within_reach": 1, "natural_neighbor": 2, "nearest_link": 3, "region_link": 4}


def region_of(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Region label per point: 'CONUS', 'AK', 'HI', 'PR_VI', 'GU_MP' or 'AS'."""
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    out = np.full(lat.shape, "CONUS", dtype=object)
    unset = np.ones(lat.shape, dtype=bool)
    for name, lat0, lat1, lon0, lon1 in REGION_BOXES:
        inside = unset & (lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1)
        out[inside] = name
        unset &= ~inside
    return out


def _footprint_pairs(provider_clusters: pl.DataFrame, geocoded: pl.DataFrame) -> pl.DataFrame:
    """Cluster pairs (a < b) whose member cells touch."""
    if "h3_cell" not in geocoded.columns:
        raise ValueError("geocoded providers need an 'h3_cell' column (geography.h3index.add_h3_cells)")
    joined = provider_clusters.join(geocoded.select("npi", "h3_cell"), on="npi", how="left")
    no_cell = joined.filter(pl.col("h3_cell").is_null())
    if no_cell.height:
        raise ValueError(
            f"{no_cell.height} clustered providers have no h3_cell in the geocoded frame, "
            f"e.g. npi {no_cell['npi'].head(3).to_list()}"
        )
    cell_cluster = joined.select("h3_cell", "cluster_id").unique()
    disk = grid_disk_cells(cell_cluster["h3_cell"], 1)
    return (
        disk.join(cell_cluster, on="h3_cell")
        .join(cell_cluster.rename({"h3_cell": "neighbor_cell", "cluster_id": "neighbor_cluster_id"}),
              on="neighbor_cell")
        .filter(pl.col("cluster_id") < pl.col("neighbor_cluster_id"))
        .select("cluster_id", "neighbor_cluster_id")
        .unique()
        .with_columns(pl.lit("h3_neighbor").alias("reason"))
    )


def _reach_pairs(
    ids: np.ndarray, coords: np.ndarray, travel: TravelTimeProvider, neighbor_minutes: float
) -> pl.DataFrame:
    """Cluster pairs (a < b) whose centroids are within ``neighbor_minutes``."""
    radius = max_straight_line_miles(travel, neighbor_minutes) * (1 + 1e-9) / EARTH_RADIUS_MILES
    hits = BallTree(np.radians(coords), metric="haversine").query_radius(np.radians(coords), r=radius)
    src = np.repeat(np.arange(len(coords)), [len(h) for h in hits])
    dst = np.concatenate(hits) if len(hits) else np.empty(0, dtype=np.int64)
    keep = src < dst
    src, dst = src[keep], dst[keep]
    _, there = paired_travel(travel, coords[src], coords[dst])
    _, back = paired_travel(travel, coords[dst], coords[src])
    close = np.minimum(there, back) <= neighbor_minutes
    return pl.DataFrame(
        {"cluster_id": ids[src[close]], "neighbor_cluster_id": ids[dst[close]]},
        schema={"cluster_id": pl.Utf8, "neighbor_cluster_id": pl.Utf8},
    ).with_columns(pl.lit("within_reach").alias("reason"))


def _natural_neighbor_pairs(
    ids: np.ndarray, coords: np.ndarray, travel: TravelTimeProvider, max_minutes: float
) -> pl.DataFrame:
    """Delaunay edges (a < b) per region, kept when within ``max_minutes`` of travel."""
    pairs: list[np.ndarray] = []
    regions = region_of(coords[:, 0], coords[:, 1])
    for region in sorted(set(regions)):
        members = np.flatnonzero(regions == region)
        points = np.unique(coords[members], axis=0)
        if len(points) < 3:
            continue
        lat0 = np.radians(coords[members, 0].mean())
        xy = np.column_stack([coords[members, 1] * np.cos(lat0), coords[members, 0]])
        try:
            triangles = Delaunay(xy).simplices
        except QhullError:  # all centroids on one line: the reach and nearest links suffice
            continue
        edges = np.vstack([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [0, 2]]])
        edges = np.unique(np.sort(members[edges], axis=1), axis=0)
        pairs.append(edges)
    if not pairs:
        return pl.DataFrame(schema={"cluster_id": pl.Utf8, "neighbor_cluster_id": pl.Utf8, "reason": pl.Utf8})
    edges = np.vstack(pairs)
    _, there = paired_travel(travel, coords[edges[:, 0]], coords[edges[:, 1]])
    _, back = paired_travel(travel, coords[edges[:, 1]], coords[edges[:, 0]])
    close = np.minimum(there, back) <= max_minutes
    return pl.DataFrame(
        {"cluster_id": ids[edges[close, 0]], "neighbor_cluster_id": ids[edges[close, 1]]},
        schema={"cluster_id": pl.Utf8, "neighbor_cluster_id": pl.Utf8},
    ).with_columns(pl.lit("natural_neighbor").alias("reason"))


def _connecting_links(coords: np.ndarray, edges: np.ndarray) -> list[tuple[int, int]]:
    """Shortest links (index pairs) that join the components of one region's graph."""
    n = len(coords)
    radians = np.radians(coords)

    def components(extra: list[tuple[int, int]]) -> np.ndarray:
        pairs = np.vstack([edges.reshape(-1, 2), np.asarray(extra, dtype=np.int64).reshape(-1, 2)])
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        return connected_components(graph, directed=False)[1]

    comp = components([])
    if comp.max() == 0:
        return []
    # 1) minimum spanning forest over components with each centroid's nearest candidates
    k = min(_CANDIDATE_NEIGHBOURS + 1, n)
    dist, idx = BallTree(radians, metric="haversine").query(radians, k=k)
    src = np.repeat(np.arange(n), k)
    dst = idx.reshape(-1)
    miles = dist.reshape(-1) * EARTH_RADIUS_MILES
    cross = comp[src] != comp[dst]
    links: list[tuple[int, int]] = []
    if cross.any():
        s, d, m = src[cross], dst[cross], miles[cross]
        lo, hi = np.minimum(s, d), np.maximum(s, d)
        ca, cb = np.minimum(comp[s], comp[d]), np.maximum(comp[s], comp[d])
        # keep the shortest candidate per component pair (ties: smallest point indices)
        order = np.lexsort((hi, lo, m, cb, ca))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (ca[order][1:] != ca[order][:-1]) | (cb[order][1:] != cb[order][:-1])
        pick = order[first]
        n_comp = comp.max() + 1
        # tiny offset so that zero-distance links are still edges of the sparse graph
        graph = coo_matrix((m[pick] + 1e-9, (ca[pick], cb[pick])), shape=(n_comp, n_comp))
        forest = minimum_spanning_tree(graph.tocsr()).tocoo()
        chosen = {
            (int(a), int(b)): (int(x), int(y))
            for a, b, x, y in zip(ca[pick], cb[pick], lo[pick], hi[pick], strict=True)
        }
        for a, b in sorted(zip(forest.row.tolist(), forest.col.tolist(), strict=True)):
            links.append(chosen[(min(a, b), max(a, b))])
        comp = components(links)
    # 2) Borůvka rounds with exact nearest points outside each component
    while comp.max() > 0:
        round_links = set()
        for c in range(comp.max() + 1):
            inside = np.flatnonzero(comp == c)
            outside = np.flatnonzero(comp != c)
            d, j = BallTree(radians[outside], metric="haversine").query(radians[inside], k=1)
            best_row = int(np.lexsort((outside[j[:, 0]], inside, d[:, 0]))[0])
            s, t = int(inside[best_row]), int(outside[j[best_row, 0]])
            round_links.add((min(s, t), max(s, t)))
        links.extend(sorted(round_links))
        comp = components(links)
    return links


def build_adjacency(
    clusters: pl.DataFrame,
    provider_clusters: pl.DataFrame,
    geocoded: pl.DataFrame,
    *,
    travel: TravelTimeProvider | None = None,
    neighbor_minutes: float = 90.0,
    natural_neighbor_minutes: float | None = 240.0,
    ensure_connected: bool = True,
    link_regions: bool = True,
) -> pl.DataFrame:
    """The cluster adjacency graph as a schemas.CLUSTER_ADJACENCY frame.

    ``clusters`` needs ``cluster_id``, ``centroid_latitude`` and
    ``centroid_longitude``; ``provider_clusters`` maps ``npi`` to
    ``cluster_id``; ``geocoded`` gives each ``npi`` its ``h3_cell``.  Every
    edge appears in both directions, with no self loops, one row per ordered
    pair (reason priority: h3_neighbor, within_reach, natural_neighbor,
    nearest_link, region_link), sorted by
    ``cluster_id`` then ``neighbor_cluster_id``.  ``distance_miles`` is the
    great-circle distance between centroids.  With ``ensure_connected`` each
    region (see :func:`region_of`) forms one connected component, and with
    ``link_regions`` as well the regions are joined into one graph.
    """
    if neighbor_minutes < 0:
        raise ValueError(f"neighbor_minutes must be >= 0, got {neighbor_minutes}")
    travel = travel or HaversineTravelEstimate()
    for name, frame, cols in (
        ("clusters", clusters, ("cluster_id", "centroid_latitude", "centroid_longitude")),
        ("provider_clusters", provider_clusters, ("npi", "cluster_id")),
        ("geocoded", geocoded, ("npi",)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    nodes = clusters.select("cluster_id", "centroid_latitude", "centroid_longitude").sort("cluster_id")
    if nodes["cluster_id"].is_duplicated().any():
        raise ValueError("clusters has duplicate cluster_id values")
    unknown = provider_clusters.join(nodes, on="cluster_id", how="anti")
    if unknown.height:
        raise ValueError(f"provider_clusters names {unknown['cluster_id'].n_unique()} cluster ids absent "
                         f"from clusters, e.g. {unknown['cluster_id'].unique().sort().head(3).to_list()}")
    if nodes.height == 0:
        return schemas.empty(schemas.CLUSTER_ADJACENCY)
    ids = nodes["cluster_id"].to_numpy().astype(object)
    coords = nodes.select("centroid_latitude", "centroid_longitude").to_numpy()

    edges = pl.concat([
        _footprint_pairs(provider_clusters.select("npi", "cluster_id"), geocoded),
        _reach_pairs(ids, coords, travel, neighbor_minutes),
        *([_natural_neighbor_pairs(ids, coords, travel, natural_neighbor_minutes)] if natural_neighbor_minutes else []),
    ])
    if ensure_connected:
        index = {cid: i for i, cid in enumerate(ids)}
        regions = region_of(coords[:, 0], coords[:, 1])
        pairs = edges.select(
            pl.col("cluster_id").replace_strict(index, return_dtype=pl.Int64),
            pl.col("neighbor_cluster_id").replace_strict(index, return_dtype=pl.Int64),
        ).to_numpy().reshape(-1, 2)
        links = []
        for region in sorted(set(regions)):
            members = np.flatnonzero(regions == region)
            local = np.full(len(ids), -1, dtype=np.int64)
            local[members] = np.arange(len(members))
            inner = pairs[(local[pairs[:, 0]] >= 0) & (local[pairs[:, 1]] >= 0)]
            for s, d in _connecting_links(coords[members], local[inner]):
                a, b = sorted((ids[members[s]], ids[members[d]]))
                links.append((a, b))
        if links:
            edges = pl.concat([edges, pl.DataFrame(links, schema=["cluster_id", "neighbor_cluster_id"],
                                                   orient="row").with_columns(pl.lit("nearest_link").alias("reason"))])
        if link_regions and len(set(regions)) > 1:
            joined = np.vstack([pairs, np.array([(index[a], index[b]) for a, b in links], dtype=np.int64).reshape(-1, 2)])
            bridges = [tuple(sorted((ids[s_], ids[d_]))) for s_, d_ in _connecting_links(coords, joined)]
            if bridges:
                edges = pl.concat([edges, pl.DataFrame(bridges, schema=["cluster_id", "neighbor_cluster_id"],
                                                       orient="row").with_columns(pl.lit("region_link").alias("reason"))])
    both = pl.concat([
        edges,
        edges.select(pl.col("neighbor_cluster_id").alias("cluster_id"),
                     pl.col("cluster_id").alias("neighbor_cluster_id"), "reason"),
    ])
    both = (
        both.with_columns(pl.col("reason").replace_strict(_REASON_RANK, return_dtype=pl.Int32).alias("_rank"))
        .sort("cluster_id", "neighbor_cluster_id", "_rank")
        .unique(["cluster_id", "neighbor_cluster_id"], keep="first", maintain_order=True)
        .drop("_rank")
    )
    located = both.join(nodes, on="cluster_id").join(
        nodes.rename({"cluster_id": "neighbor_cluster_id", "centroid_latitude": "_lat2",
                      "centroid_longitude": "_lon2"}), on="neighbor_cluster_id")
    distance = haversine_miles(located["centroid_latitude"].to_numpy(), located["centroid_longitude"].to_numpy(),
                               located["_lat2"].to_numpy(), located["_lon2"].to_numpy())
    out = located.with_columns(pl.Series("distance_miles", distance)).select(
        "cluster_id", "neighbor_cluster_id", "distance_miles", "reason")
    return schemas.conform(out, schemas.CLUSTER_ADJACENCY).sort("cluster_id", "neighbor_cluster_id")
