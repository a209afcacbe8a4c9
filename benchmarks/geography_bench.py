"""Benchmark: H3 indexing and provider clustering at national scale.

Cases (each runs in a fresh spawned process, so its peak RSS is its own):

* H3 indexing of 1,000,000 providers at ZIP centroids and of 1,000,000
  distinct points: ``add_h3_cells`` with the polars-h3 backend, with the h3
  fallback (loop over distinct coordinates), a polars-h3 expression on every
  row, and the baseline: a plain ``h3.latlng_to_cell`` loop over every point.
* DBSCAN (eps 10 mi, min 3, haversine, ball tree) alone and the whole
  density clustering (``cluster_providers``: DBSCAN, noise rule, reach cap,
  summary) of 50,000 and 500,000 providers on deduplicated coordinates,
  against the baseline of one point per provider (50,000 only; 500,000 with
  ``--full``: about 100 s and 9.5 GB).
* Drive-time clustering (150 min) and the adjacency graph, for scale.

Providers sit at the centroids of ~30,000 real US ZIP codes (the ``zipcodes``
package, STANDARD ZIPs), drawn with a skewed (log-normal) weight per ZIP, as
ZIP-centroid geocoding produces; ``--rooftop-share`` moves a share of them by
up to ~1 mile to mimic address-level geocodes.

Run: ``.venv/bin/python benchmarks/geography_bench.py [--full]``.
Prints a markdown table with ratios against each group's baseline.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing; spawned workers inherit it


def make_providers(n: int, seed: int = 42, rooftop_share: float = 0.0) -> pl.DataFrame:
    """``n`` providers at US ZIP centroids (deterministic for ``seed``)."""
    import zipcodes

    zips = [z for z in zipcodes.list_all() if z["zip_code_type"] == "STANDARD" and z["active"] and z["lat"]]
    coords = np.array([(float(z["lat"]), float(z["long"])) for z in zips])
    rng = np.random.default_rng(seed)
    weight = rng.lognormal(0.0, 1.2, len(coords))
    pick = rng.choice(len(coords), size=n, p=weight / weight.sum())
    lat, lon = coords[pick, 0].copy(), coords[pick, 1].copy()
    moved = rng.random(n) < rooftop_share
    lat[moved] += rng.normal(0, 0.01, moved.sum())
    lon[moved] += rng.normal(0, 0.01, moved.sum())
    return pl.DataFrame({
        "npi": [f"{1_000_000_000 + i}" for i in range(n)],
        "latitude": np.round(lat, 6),
        "longitude": np.round(lon, 6),
        "cbsa_code": pl.Series([None] * n, dtype=pl.Utf8),
        "cbsa_title": pl.Series([None] * n, dtype=pl.Utf8),
        "metro_source": "none",
    })


class PeakRss:
    """Samples this process's RSS every 5 ms; ``peak_gb`` is the peak above the start."""

    def __init__(self) -> None:
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self.start = self.peak = self._proc.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_gb(self) -> float:
        return (self.peak - self.start) / 1e9


def run_case(case: str, n: int, rooftop_share: float) -> dict:
    """Build the input, then time one case; returns seconds, peak RSS and notes."""
    import h3
    import polars_h3

    from sklearn.cluster import DBSCAN

    from territory_pipeline.geography.adjacency import build_adjacency
    from territory_pipeline.geography.clustering import ClusterSettings, cluster_providers
    from territory_pipeline.geography.h3index import add_h3_cells
    from territory_pipeline.geography.travel import EARTH_RADIUS_MILES

    if case.endswith("_unique"):  # every point distinct: rooftop geocodes, no ZIP centroid repeats
        rng = np.random.default_rng(7)
        frame = pl.DataFrame({"latitude": rng.uniform(25.0, 49.0, n), "longitude": rng.uniform(-124.0, -67.0, n)})
        case = case.removesuffix("_unique")
    else:
        frame = make_providers(n, rooftop_share=rooftop_share)
    distinct = frame.select("latitude", "longitude").n_unique()
    note = f"{distinct:,} distinct coordinates"
    if case == "adjacency":
        clustered = cluster_providers(frame, ClusterSettings(method="density"))
        geocoded = add_h3_cells(frame, 7)
    # warm up once (loads the polars-h3 plugin and h3), as a long-running pipeline process would be
    warm = frame.head(10).select("latitude", "longitude")
    add_h3_cells(warm, 7)
    add_h3_cells(warm, 7, backend="h3")
    with PeakRss() as mem:
        t0 = time.perf_counter()
        if case == "h3_polars_rows":
            out = frame.select(polars_h3.int_to_str(polars_h3.latlng_to_cell("latitude", "longitude", 7)))
        elif case == "h3_polars":
            out = add_h3_cells(frame, 7, backend="polars-h3")
        elif case == "h3_fallback":
            out = add_h3_cells(frame, 7, backend="h3")
        elif case == "h3_loop":
            out = [h3.latlng_to_cell(a, b, 7) for a, b in zip(frame["latitude"].to_list(),
                                                                frame["longitude"].to_list(), strict=True)]
        elif case in ("density_dedup", "density_plain"):
            result = cluster_providers(frame, ClusterSettings(method="density",
                                                              deduplicate=case == "density_dedup"))
        elif case in ("dbscan_plain", "dbscan_dedup"):  # the DBSCAN call alone, as clustering makes it
            if case == "dbscan_dedup":
                spots = frame.group_by("latitude", "longitude").len().sort("latitude", "longitude")
                points, weight = spots.select("latitude", "longitude").to_numpy(), spots["len"].to_numpy()
            else:
                points, weight = frame.select("latitude", "longitude").to_numpy(), None
            labels = DBSCAN(eps=10.0 / EARTH_RADIUS_MILES, min_samples=3, metric="haversine",
                            algorithm="ball_tree").fit(np.radians(points), sample_weight=weight).labels_
            sizes = np.bincount(labels[labels >= 0], weights=None if weight is None else weight[labels >= 0])
            note += f"; {len(sizes):,} clusters, largest {sizes.max() / n:.1%}"
        elif case == "drive_time":
            result = cluster_providers(frame, ClusterSettings(method="drive_time"))
        elif case == "adjacency":
            out = build_adjacency(clustered.clusters, clustered.provider_clusters, geocoded)
        else:
            raise ValueError(case)
        seconds = time.perf_counter() - t0
    if case.startswith(("density", "drive")):
        s = result.stats
        note += (f"; {s['clusters']:,} clusters, largest {s['largest_cluster_share']:.1%}, "
                 f"max reach {s['max_reach_minutes']:.0f} min")
        if "clusters_split_for_reach" in s:
            note += (f"; before the reach cap: {s['dbscan_clusters']:,} DBSCAN clusters, largest "
                     f"{s['largest_dbscan_cluster_share']:.1%}; {s['clusters_split_for_reach']} split for reach")
        digest = result.provider_clusters["cluster_id"].hash().sum()
    elif case == "adjacency":
        note += f"; {clustered.clusters.height:,} clusters, {out.height // 2:,} edges"
        digest = None
    else:
        digest = None
    return {"seconds": seconds, "peak_gb": mem.peak_gb, "note": note, "digest": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also run the 500k one-point-per-provider DBSCAN")
    parser.add_argument("--rooftop-share", type=float, default=0.0)
    args = parser.parse_args()
    groups = [
        ("H3 indexing, 1,000,000 providers at ZIP centroids", "h3_loop", [
            ("h3 loop per point (baseline)", "h3_loop", 1_000_000),
            ("polars-h3 expression on every row", "h3_polars_rows", 1_000_000),
            ("add_h3_cells, h3 fallback (loop per distinct coordinate)", "h3_fallback", 1_000_000),
            ("add_h3_cells, polars-h3 (default: distinct coordinates, joined back)", "h3_polars", 1_000_000),
        ]),
        ("H3 indexing, 1,000,000 distinct points", "h3_loop", [
            ("h3 loop per point (baseline)", "h3_loop_unique", 1_000_000),
            ("add_h3_cells, h3 fallback", "h3_fallback_unique", 1_000_000),
            ("add_h3_cells, polars-h3 (default: every row)", "h3_polars_unique", 1_000_000),
        ]),
        ("DBSCAN call alone (eps 10 mi, min 3), 50,000 providers", "dbscan_plain", [
            ("one point per provider (baseline)", "dbscan_plain", 50_000),
            ("deduplicated + sample_weight", "dbscan_dedup", 50_000),
        ]),
        ("DBSCAN call alone, 500,000 providers", "dbscan_plain" if args.full else "dbscan_dedup", [
            *([("one point per provider (baseline)", "dbscan_plain", 500_000)] if args.full else []),
            ("deduplicated + sample_weight", "dbscan_dedup", 500_000),
        ]),
        ("cluster_providers(method='density'), 50,000 providers", "density_plain", [
            ("one point per provider (baseline)", "density_plain", 50_000),
            ("deduplicated + sample_weight (default)", "density_dedup", 50_000),
        ]),
        ("cluster_providers(method='density'), 500,000 providers",
         "density_plain" if args.full else "density_dedup", [
            *([("one point per provider (baseline)", "density_plain", 500_000)] if args.full else []),
            ("deduplicated + sample_weight (default)", "density_dedup", 500_000),
        ]),
        ("Drive-time clustering (150 min) and adjacency", "drive_time", [
            ("drive_time, 50,000 providers", "drive_time", 50_000),
            ("drive_time, 500,000 providers", "drive_time", 500_000),
            ("build_adjacency on density clusters of 500,000", "adjacency", 500_000),
        ]),
    ]
    ctx = mp.get_context("spawn")
    print(f"cores: {os.cpu_count()}, rooftop share {args.rooftop_share}\n")
    print("| case | n | time (s) | × baseline time | peak RSS increase (GB) | notes |")
    print("|---|---|---|---|---|---|")
    for title, baseline_case, cases in groups:
        print(f"| **{title}** | | | | | |")
        base = None
        digests = {}
        for label, case, n in cases:
            with ctx.Pool(1, maxtasksperchild=1) as pool:
                res = pool.apply(run_case, (case, n, args.rooftop_share))
            if case.removesuffix("_unique") == baseline_case:
                base = res["seconds"]
            ratio = f"{res['seconds'] / base:.3f}" if base else "—"
            if res["digest"] is not None:
                digests[case] = res["digest"]
            print(f"| {label} | {n:,} | {res['seconds']:.2f} | {ratio} | {res['peak_gb']:.3f} | {res['note']} |",
                  flush=True)
        if len(set(digests.values())) > 1 and {"density_dedup", "density_plain"} <= set(digests):
            print("| (dedup and baseline partitions DIFFER) | | | | | |")
        elif {"density_dedup", "density_plain"} <= set(digests):
            print("| (dedup and baseline give identical cluster assignments) | | | | | |")


if __name__ == "__main__":
    main()
