"""Geometry helpers for balancing: projection, distances, hulls and adjacency graphs.

Coordinates are projected with a spherical Albers equal-area conic (the usual
contiguous-US parameters: standard parallels 29.5°N and 45.5°N, origin 23°N
96°W), in miles.  Areas measured in it are true areas; distances in it are
within a few percent of great-circle distances over the lower 48 states, which
is all the graph building and the compactness terms need.  Reported travel
distances use the haversine formula instead.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, Delaunay, QhullError

EARTH_RADIUS_MILES = 3958.8
_PHI1, _PHI2, _PHI0, _LAM0 = np.radians([29.5, 45.5, 23.0, -96.0])
_N = (np.sin(_PHI1) + np.sin(_PHI2)) / 2.0
_C = np.cos(_PHI1) ** 2 + 2.0 * _N * np.sin(_PHI1)
_RHO0 = EARTH_RADIUS_MILES * np.sqrt(_C - 2.0 * _N * np.sin(_PHI0)) / _N


def project(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Project degrees to Albers equal-area (x, y) miles; returns an (n, 2) array."""
    phi = np.radians(np.asarray(latitude, dtype=np.float64))
    lam = np.radians(np.asarray(longitude, dtype=np.float64))
    rho = EARTH_RADIUS_MILES * np.sqrt(_C - 2.0 * _N * np.sin(phi)) / _N
    theta = _N * (lam - _LAM0)
    return np.column_stack([rho * np.sin(theta), _RHO0 - rho * np.cos(theta)])


def haversine_miles(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in miles between arrays of points (broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_MILES * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def hull_area(xy: np.ndarray) -> float:
    """Area (square miles) of the convex hull of projected points; 0 when degenerate."""
    pts = np.unique(np.round(xy, 6), axis=0)
    if len(pts) < 3:
        return 0.0
    try:
        return float(ConvexHull(pts).volume)
    except QhullError:
        return 0.0


def delaunay_edges(xy: np.ndarray) -> np.ndarray:
    """Undirected Delaunay edges (i < j) over points; duplicate points are chained together.

    Falls back to the complete graph for fewer than four distinct points or a
    degenerate (collinear) set, which is only ever small or one-dimensional.
    """
    n = len(xy)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    uniq, first, inverse = np.unique(
        np.round(xy, 6), axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    edges: list[np.ndarray] = []
    # duplicates: chain each duplicate to the first point at the same location
    dup = np.nonzero(np.arange(n) != first[inverse])[0]
    if len(dup):
        edges.append(np.column_stack([first[inverse[dup]], dup]))
    m = len(uniq)
    if m >= 2:
        simplex_edges = None
        if m >= 4:
            try:
                tri = Delaunay(uniq)
                s = tri.simplices
                simplex_edges = np.vstack([s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]])
            except QhullError:
                simplex_edges = None
        if simplex_edges is None:
            if m > 3000:
                order = np.lexsort((uniq[:, 1], uniq[:, 0]))
                simplex_edges = np.column_stack([order[:-1], order[1:]])
            else:
                ii, jj = np.triu_indices(m, 1)
                simplex_edges = np.column_stack([ii, jj])
        edges.append(first[simplex_edges])
    if not edges:
        return np.empty((0, 2), dtype=np.int64)
    e = np.vstack(edges).astype(np.int64)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0)


def connect_components(
    n: int, edges: np.ndarray, xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Add the shortest links that make the graph connected (Kruskal over Delaunay edges).

    The Euclidean minimum spanning tree is a subgraph of the Delaunay
    triangulation, so the shortest Delaunay edges between components are the
    nearest links.  Returns (all edges, added edges), both (i < j).
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if n <= 1:
        return edges, np.empty((0, 2), dtype=np.int64)
    ncomp, comp = _components(n, edges)
    if ncomp == 1:
        return edges, np.empty((0, 2), dtype=np.int64)
    cand = delaunay_edges(xy)
    cand = cand[comp[cand[:, 0]] != comp[cand[:, 1]]]
    length = np.hypot(*(xy[cand[:, 0]] - xy[cand[:, 1]]).T)
    order = np.lexsort((cand[:, 1], cand[:, 0], length))
    parent = list(range(ncomp))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    added = []
    for idx in order:
        i, j = cand[idx]
        ra, rb = find(comp[i]), find(comp[j])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            added.append((int(min(i, j)), int(max(i, j))))
            ncomp -= 1
            if ncomp == 1:
                break
    add = np.array(added, dtype=np.int64).reshape(-1, 2)
    return np.unique(np.vstack([edges, add]), axis=0), add


def _components(n: int, edges: np.ndarray) -> tuple[int, np.ndarray]:
    if len(edges) == 0:
        return n, np.arange(n)
    g = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    ncomp, comp = connected_components(g, directed=False)
    return int(ncomp), comp


def proximity_edges(
    xy: np.ndarray, max_edge_miles: float, sparse_factor: float = 3.0
) -> np.ndarray:
    """Delaunay edges that are short, then nearest links joining components.

    An edge is kept when it is no longer than ``max_edge_miles`` or than
    ``sparse_factor`` times the nearest-neighbour distance of its lonelier end
    (so isolated rural points keep a few neighbours instead of hanging on one link).
    """
    e = delaunay_edges(xy)
    if len(e):
        length = np.hypot(*(xy[e[:, 0]] - xy[e[:, 1]]).T)
        nn = np.full(len(xy), np.inf)
        np.minimum.at(nn, e[:, 0], np.where(length > 0, length, np.inf))
        np.minimum.at(nn, e[:, 1], np.where(length > 0, length, np.inf))
        nn[~np.isfinite(nn)] = 0.0
        local = sparse_factor * np.maximum(nn[e[:, 0]], nn[e[:, 1]])
        e = e[(length <= max_edge_miles) | (length <= local)]
    full, _ = connect_components(len(xy), e, xy)
    return full


def to_csr(n: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric CSR (indptr, indices) from undirected edges, neighbours sorted."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    key = np.unique(src * n + dst)
    src, dst = key // n, key % n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, src + 1, 1)
    return np.cumsum(indptr), dst.astype(np.int64)
