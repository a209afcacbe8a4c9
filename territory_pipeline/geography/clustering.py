"""Group geocoded providers into clusters: the units that territories are built from.

Three methods (``ClusterSettings.method``):

``metro``
    One cluster per CBSA (``cbsa_code``; official or approximate).  Providers
    without a metro are grouped by their H3 resolution-5 cell (about 250 km²),
    a pseudo-metro ``M-NONE-<cell>``.  Ids: ``M-<cbsa_code>``.
``density``
    DBSCAN with the haversine metric (ball tree), ``eps`` in miles, on
    *deduplicated* coordinates with ``sample_weight`` = providers per
    coordinate (about 50× faster than one point per provider and the same
    clusters).  Noise points are attached to the nearest clustered point within
    ``noise_reach_miles`` (``noise_rule='nearest'``) or become singletons.
    DBSCAN *chains*: on a national universe, dense corridors link up into one
    cluster spanning thousands of miles (one cluster held 99.95% of 500 k
    providers).  So every cluster whose reach (drive time from its weighted
    centroid to its farthest member) exceeds ``max_reach_minutes`` is split by
    weighted k-means (seeded) into ``ceil((reach / max_reach)²)`` parts, and the
    parts are checked again until every cluster fits.  Ids: ``D-0001``...
``drive_time``
    Greedy facility location: repeatedly choose as centre the unassigned
    location that covers the most unassigned provider weight within
    ``drive_time_minutes``, assign the covered locations, repeat until every
    location is assigned; then move each location to the nearest chosen centre
    that covers it.  Candidate pairs come from a ball-tree radius query with the
    travel provider's straight-line bound, so the travel provider is asked only
    about pairs that can be in reach.  Ids: ``T-0001``...

Numbered ids are ordered by descending member count, then centroid latitude,
longitude and the smallest member NPI, so they are deterministic and the input
row order does not matter.  Centroids are plain means of member latitude and
longitude (adequate for clusters of a few hundred miles; not for clusters
straddling the antimeridian).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.cluster import DBSCAN, KMeans
from sklearn.neighbors import BallTree

from territory_pipeline import schemas
from territory_pipeline.geography.h3index import add_h3_cells
from territory_pipeline.geography.travel import (
    EARTH_RADIUS_MILES,
    HaversineTravelEstimate,
    TravelTimeProvider,
    max_straight_line_miles,
    paired_travel,
)

METHODS = ("metro", "density", "drive_time")
NOISE_RULES = ("nearest", "singleton")
REQUIRED_COLUMNS = ("npi", "latitude", "longitude", "cbsa_code", "cbsa_title", "metro_source")
#: Extra columns of the clusters frame, after the contract's: the point that
#: reach is measured from (the weighted centroid, or the drive-time centre).
CENTER_COLUMNS = ("center_latitude", "center_longitude")
_PAIR_BLOCK = 2_000_000  # candidate pairs evaluated per travel call in drive_time


@dataclass(frozen=True)
class ClusterSettings:
    """How providers are clustered; see the module docstring for each method."""

    method: str = "density"
    dbscan_eps_miles: float = 10.0
    dbscan_min_samples: int = 3  # weighted: providers, not coordinates
    noise_rule: str = "nearest"
    noise_reach_miles: float = 30.0
    drive_time_minutes: float = 150.0
    h3_resolution: int = 7
    max_reach_minutes: float = 180.0  # density clusters reaching farther are split
    deduplicate: bool = True  # cluster distinct coordinates weighted by providers
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"cluster method must be one of {METHODS}, got {self.method!r}")
        if self.noise_rule not in NOISE_RULES:
            raise ValueError(f"noise_rule must be one of {NOISE_RULES}, got {self.noise_rule!r}")
        for name in ("dbscan_eps_miles", "drive_time_minutes", "max_reach_minutes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.noise_reach_miles < 0:
            raise ValueError(f"noise_reach_miles must be >= 0, got {self.noise_reach_miles!r}")
        if self.dbscan_min_samples < 1:
            raise ValueError(f"dbscan_min_samples must be >= 1, got {self.dbscan_min_samples!r}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be 0..15, got {self.h3_resolution!r}")


@dataclass(frozen=True)
class ClusterResult:
    """``clusters`` (schemas.CLUSTERS + center columns), ``provider_clusters`` and run statistics."""

    clusters: pl.DataFrame
    provider_clusters: pl.DataFrame
    stats: dict[str, object] = field(default_factory=dict)


def _validate(geocoded: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in geocoded.columns]
    if missing:
        raise ValueError(f"geocoded providers lack columns {missing}")
    if geocoded["npi"].null_count():
        raise ValueError(f"{geocoded['npi'].null_count()} providers have a null npi")
    dupes = geocoded.filter(pl.col("npi").is_duplicated())["npi"].unique().sort()
    if dupes.len():
        raise ValueError(f"{dupes.len()} npis appear more than once, e.g. {dupes.head(3).to_list()}")
    no_coords = geocoded.filter(pl.col("latitude").is_null() | pl.col("longitude").is_null())
    if no_coords.height:
        raise ValueError(
            f"{no_coords.height} providers have no coordinates (geocode or reject them first), "
            f"e.g. npi {no_coords['npi'].head(3).to_list()}"
        )


def _to_xyz(coords: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(coords[:, 0]), np.radians(coords[:, 1])
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _weighted_center(coords: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.average(coords, axis=0, weights=weights)


def _split_far_reaching(
    coords: np.ndarray, weights: np.ndarray, labels: np.ndarray, travel: TravelTimeProvider,
    max_minutes: float, seed: int,
) -> tuple[np.ndarray, int]:
    """Split every group whose drive time from its weighted centroid exceeds ``max_minutes``.

    Returns new labels (0..k-1) and the number of groups that had to be split.
    """
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = np.split(order, bounds)
    # one vectorized pass measures every group; only the far-reaching ones go through the loop
    dense = np.unique(labels, return_inverse=True)[1].reshape(-1)
    total = np.bincount(dense, weights=weights)
    centers = np.column_stack([np.bincount(dense, weights=weights * coords[:, k]) / total for k in (0, 1)])
    _, minutes = paired_travel(travel, centers[dense], coords)
    reach = np.full(len(total), -np.inf)
    np.maximum.at(reach, dense, minutes)
    done = [g for g in groups if reach[dense[g[0]]] <= max_minutes]
    pending = [g for g in reversed(groups) if not reach[dense[g[0]]] <= max_minutes]
    n_split = 0
    while pending:
        members = pending.pop()
        distinct, inverse = np.unique(coords[members], axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(distinct) <= 1:
            done.append(members)
            continue
        center = _weighted_center(coords[members], weights[members])
        _, minutes = travel.matrix(center[None, :], coords[members])
        reach = float(minutes.max())
        if reach <= max_minutes:
            done.append(members)
            continue
        n_split += 1
        parts = len(distinct) if not math.isfinite(reach) else math.ceil((reach / max_minutes) ** 2)
        parts = int(min(len(distinct), max(2, parts)))
        # k-means on distinct coordinates, weighted, so the split is the same with or without deduplication
        km = KMeans(n_clusters=parts, random_state=seed, n_init=1).fit(
            _to_xyz(distinct), sample_weight=np.bincount(inverse, weights=weights[members])
        )
        part_of = km.labels_[inverse]
        for part in np.unique(part_of)[::-1]:
            pending.append(members[part_of == part])
    new = np.empty_like(labels)
    for k, members in enumerate(done):
        new[members] = k
    return new, n_split


def _density_labels(
    coords: np.ndarray, weights: np.ndarray, settings: ClusterSettings, travel: TravelTimeProvider
) -> tuple[np.ndarray, dict[str, object]]:
    radians = np.radians(coords)
    db = DBSCAN(
        eps=settings.dbscan_eps_miles / EARTH_RADIUS_MILES,
        min_samples=settings.dbscan_min_samples,
        metric="haversine",
        algorithm="ball_tree",
    ).fit(radians, sample_weight=weights)
    labels = db.labels_.astype(np.int64)
    noise = np.flatnonzero(labels == -1)
    clustered = np.flatnonzero(labels >= 0)
    attached = 0
    if len(noise) and settings.noise_rule == "nearest" and len(clustered):
        dist, idx = BallTree(radians[clustered], metric="haversine").query(radians[noise], k=1)
        near = dist[:, 0] * EARTH_RADIUS_MILES <= settings.noise_reach_miles
        labels[noise[near]] = labels[clustered[idx[near, 0]]]
        attached = int(near.sum())
        noise = noise[~near]
    # each remaining noise coordinate is a singleton (providers sharing it stay together)
    next_label = int(labels.max()) + 1 if labels.size else 0
    if len(noise):
        spot = np.unique(coords[noise], axis=0, return_inverse=True)[1].reshape(-1)
        labels[noise] = next_label + spot
    before_split = np.bincount(labels, weights=weights).max() / weights.sum()
    labels, n_split = _split_far_reaching(
        coords, weights, labels, travel, settings.max_reach_minutes, settings.seed
    )
    return labels, {
        "dbscan_clusters": int(db.labels_.max()) + 1 if db.labels_.size else 0,
        "noise_locations_attached": attached,
        "singleton_locations": int(len(np.unique(coords[noise], axis=0))) if len(noise) else 0,
        "largest_dbscan_cluster_share": float(before_split),  # chaining shows here, before the reach cap
        "clusters_split_for_reach": n_split,
    }


def _coverage(
    coords: np.ndarray, travel: TravelTimeProvider, minutes_limit: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists (indptr, indices, minutes) of the locations each location reaches in time."""
    radius = max_straight_line_miles(travel, minutes_limit) * (1 + 1e-9) / EARTH_RADIUS_MILES
    radians = np.radians(coords)
    neighbours = BallTree(radians, metric="haversine").query_radius(radians, r=radius)
    counts = np.fromiter((len(n) for n in neighbours), dtype=np.int64, count=len(neighbours))
    kept_idx: list[np.ndarray] = []
    kept_min: list[np.ndarray] = []
    kept_counts = np.zeros(len(coords), dtype=np.int64)
    start = 0
    while start < len(coords):
        stop = start + 1
        total = counts[start]
        while stop < len(coords) and total + counts[stop] <= _PAIR_BLOCK:
            total += counts[stop]
            stop += 1
        src = np.repeat(np.arange(start, stop), counts[start:stop])
        dst = np.concatenate([np.sort(n) for n in neighbours[start:stop]])
        _, minutes = paired_travel(travel, coords[src], coords[dst])
        ok = (minutes <= minutes_limit) | (src == dst)
        kept_idx.append(dst[ok])
        kept_min.append(np.where(src == dst, 0.0, minutes)[ok])
        kept_counts[start:stop] = np.bincount(src[ok] - start, minlength=stop - start)
        start = stop
    indptr = np.concatenate([[0], np.cumsum(kept_counts)])
    return indptr, np.concatenate(kept_idx), np.concatenate(kept_min)


def _drive_time_labels(
    coords: np.ndarray, weights: np.ndarray, settings: ClusterSettings, travel: TravelTimeProvider
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Labels per location and the centre location index of each label."""
    indptr, indices, minutes = _coverage(coords, travel, settings.drive_time_minutes)
    n = len(coords)
    assigned = np.zeros(n, dtype=bool)
    weights = weights.astype(np.int64)

    def key(i: int) -> tuple[int, float, int]:
        # most open weight first; among equals the most central (least weighted minutes), then index
        rows = slice(indptr[i], indptr[i + 1])
        open_rows = ~assigned[indices[rows]]
        cover_w = weights[indices[rows]][open_rows]
        return -int(cover_w.sum()), float((cover_w * minutes[rows][open_rows]).sum()), i

    heap = [key(i) for i in range(n)]
    heapq.heapify(heap)
    centers: list[int] = []
    while heap:
        stored = heapq.heappop(heap)
        i = stored[2]
        if assigned[i]:
            continue
        fresh = key(i)
        if fresh[0] != stored[0]:  # stale: gains only fall, so re-queue with the fresh value
            heapq.heappush(heap, fresh)
            continue
        # gain unchanged means no covered location was taken, so the cost is fresh too
        cover = indices[indptr[i]:indptr[i + 1]]
        assigned[cover] = True
        centers.append(i)
    # move every location to the nearest chosen centre that reaches it (ties: earlier centre)
    center_rank = np.full(n, -1, dtype=np.int64)
    center_rank[centers] = np.arange(len(centers))
    src = np.repeat(np.arange(n), np.diff(indptr))
    from_center = center_rank[src] >= 0
    pairs = np.column_stack([indices[from_center], minutes[from_center], center_rank[src[from_center]]])
    order = np.lexsort((pairs[:, 2], pairs[:, 1], pairs[:, 0]))
    pairs = pairs[order]
    first = np.concatenate([[True], pairs[1:, 0] != pairs[:-1, 0]])
    labels = np.empty(n, dtype=np.int64)
    labels[pairs[first, 0].astype(np.int64)] = pairs[first, 2].astype(np.int64)
    labels[centers] = np.arange(len(centers))  # a centre always stays in its own cluster
    return labels, np.asarray(centers, dtype=np.int64), {"coverage_pairs": int(len(indices))}


def _majority_metro(members: pl.DataFrame) -> pl.DataFrame:
    """The (cbsa_code, cbsa_title, metro_source) held by most members of each cluster."""
    return (
        members.group_by("_key", "cbsa_code")
        .agg(pl.len().alias("_n"), pl.col("cbsa_title").drop_nulls().min(), pl.col("metro_source").drop_nulls().min())
        .sort(["_key", "_n", "cbsa_code"], descending=[False, True, False], nulls_last=True)
        .group_by("_key", maintain_order=True)
        .first()
        .drop("_n")
    )


def _summarize(
    members: pl.DataFrame, method: str, travel: TravelTimeProvider, centers: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build the clusters and provider_clusters frames from members keyed by ``_key``.

    ``centers`` (``_key``, ``center_latitude``, ``center_longitude``) overrides
    the weighted centroid as the point reach is measured from.
    """
    base = members.group_by("_key").agg(
        pl.col("latitude").mean().alias("centroid_latitude"),
        pl.col("longitude").mean().alias("centroid_longitude"),
        pl.len().cast(pl.Int64).alias("member_count"),
        pl.col("_cell").drop_nulls().unique().sort().alias("h3_cells"),
        pl.col("npi").min().alias("_first_npi"),
    )
    if centers is None:
        base = base.with_columns(
            pl.col("centroid_latitude").alias("center_latitude"),
            pl.col("centroid_longitude").alias("center_longitude"),
        )
    else:
        base = base.join(centers, on="_key", how="left")
    spots = members.select("_key", "latitude", "longitude").unique().join(
        base.select("_key", "center_latitude", "center_longitude"), on="_key"
    ).sort("_key", "latitude", "longitude")
    miles, minutes = paired_travel(
        travel,
        spots.select("center_latitude", "center_longitude").to_numpy(),
        spots.select("latitude", "longitude").to_numpy(),
    )
    reach = (
        spots.select("_key")
        .with_columns(pl.Series("_mi", miles), pl.Series("_min", minutes))
        .group_by("_key")
        .agg(pl.col("_mi").max().alias("reach_miles"), pl.col("_min").max().alias("reach_minutes"))
    )
    table = base.join(_majority_metro(members), on="_key").join(reach, on="_key")
    if method == "metro":
        table = table.with_columns(("M-" + pl.col("_key")).alias("cluster_id"))
    else:
        prefix = {"density": "D", "drive_time": "T"}[method]
        width = max(4, len(str(table.height)))
        table = table.sort(
            ["member_count", "centroid_latitude", "centroid_longitude", "_first_npi"],
            descending=[True, False, False, False],
        ).with_columns(
            (pl.lit(f"{prefix}-") + (pl.int_range(pl.len()) + 1).cast(pl.Utf8).str.zfill(width)).alias("cluster_id")
        )
    table = table.with_columns(pl.lit(method).alias("method"))
    clusters = schemas.conform(
        table.select(*schemas.CLUSTERS, *CENTER_COLUMNS), schemas.CLUSTERS
    ).sort("cluster_id")
    provider_clusters = schemas.conform(
        members.join(table.select("_key", "cluster_id"), on="_key").select("npi", "cluster_id"),
        schemas.PROVIDER_CLUSTERS,
    ).sort("npi")
    return clusters, provider_clusters


def cluster_providers(
    geocoded: pl.DataFrame, settings: ClusterSettings | None = None, travel: TravelTimeProvider | None = None
) -> ClusterResult:
    """Cluster geocoded providers; every provider lands in exactly one cluster.

    ``geocoded`` needs ``npi`` (unique), ``latitude``, ``longitude`` (no nulls),
    ``cbsa_code``, ``cbsa_title`` and ``metro_source``.  ``travel`` defaults
    to :class:`HaversineTravelEstimate`; it measures reach, the density reach
    cap and the drive-time coverage.  Returns :class:`ClusterResult` with
    ``clusters`` (schemas.CLUSTERS plus ``center_latitude``/``center_longitude``,
    sorted by ``cluster_id``), ``provider_clusters`` (schemas.PROVIDER_CLUSTERS,
    sorted by ``npi``) and ``stats``.
    """
    settings = settings or ClusterSettings()
    travel = travel or HaversineTravelEstimate()
    _validate(geocoded)
    members = add_h3_cells(
        geocoded.select(
            pl.col("npi").cast(pl.Utf8),
            pl.col("latitude").cast(pl.Float64),
            pl.col("longitude").cast(pl.Float64),
            pl.col("cbsa_code").cast(pl.Utf8),
            pl.col("cbsa_title").cast(pl.Utf8),
            pl.col("metro_source").cast(pl.Utf8),
        ).sort("npi"),  # a canonical row order makes every float sum independent of the input order
        settings.h3_resolution,
        out="_cell",
    )
    stats: dict[str, object] = {"method": settings.method, "providers": members.height}
    if members.height == 0:
        stats.update(locations=0, clusters=0)
        clusters = schemas.empty(schemas.CLUSTERS).with_columns(
            pl.lit(None, dtype=pl.Float64).alias(name) for name in CENTER_COLUMNS)
        return ClusterResult(clusters, schemas.empty(schemas.PROVIDER_CLUSTERS), stats)
    centers = None
    if settings.method == "metro":
        pseudo = add_h3_cells(members.select("latitude", "longitude"), 5, out="c")["c"]
        members = members.with_columns(
            pl.coalesce(pl.col("cbsa_code"), pl.lit("NONE-") + pseudo).alias("_key")
        )
        stats["locations"] = members.select("latitude", "longitude").n_unique()
    else:
        if settings.deduplicate:
            locations = members.group_by("latitude", "longitude").agg(pl.len().alias("_w")).sort(
                "latitude", "longitude")
            locations = locations.with_row_index("_loc")
            members = members.join(locations.select("latitude", "longitude", "_loc"),
                                   on=["latitude", "longitude"], how="left")
        else:
            members = members.sort("latitude", "longitude", "npi").with_row_index("_loc")
            locations = members.select("_loc", "latitude", "longitude", pl.lit(1).alias("_w"))
        coords = locations.select("latitude", "longitude").to_numpy()
        weights = locations["_w"].to_numpy().astype(np.float64)
        stats["locations"] = len(coords)
        if settings.method == "density":
            labels, extra = _density_labels(coords, weights, settings, travel)
        else:
            labels, center_idx, extra = _drive_time_labels(coords, weights, settings, travel)
            centers = pl.DataFrame({
                "_key": np.arange(len(center_idx), dtype=np.int64).astype(str),
                "center_latitude": coords[center_idx, 0],
                "center_longitude": coords[center_idx, 1],
            })
        stats.update(extra)
        members = members.with_columns(
            pl.Series("_key", labels[members["_loc"].to_numpy()].astype(str))
        )
    clusters, provider_clusters = _summarize(members, settings.method, travel, centers)
    stats.update(
        clusters=clusters.height,
        largest_cluster_share=float(clusters["member_count"].max()) / members.height,
        max_reach_minutes=float(clusters["reach_minutes"].max()),
        single_member_clusters=int((clusters["member_count"] == 1).sum()),
    )
    return ClusterResult(clusters, provider_clusters, stats)
