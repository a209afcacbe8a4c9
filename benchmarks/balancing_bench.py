"""Balancing benchmark: the engine against the largest-first greedy and the open peers.

Every method is run on the same final units (the engine's units after heavy
metros are cut into H3 parts) and the same adjacency, and scored by the same
``evaluate_plan``.  Peers:

* greedy: the field's largest-first greedy (territory_pipeline.balancing.greedy);
* k-means-constrained: unit centroids, cluster sizes (unit counts, not weights)
  within ±10% of n/K: it balances counts and ignores contiguity;
* spopt RegionKMeansHeuristic (data = weight, contiguity from the adjacency) and
  spopt MaxPHeuristic (floor = 90% of the target; it picks its own number of
  regions, scored against that many territories).  Both are slow, so they run on
  the sample-sized universe only.

Usage: .venv/bin/python benchmarks/balancing_bench.py [--national] [--million]
       .venv/bin/python benchmarks/balancing_bench.py --seeds 0-7 [--size 50000,200]
Prints a markdown table per universe; "vs greedy" is the ratio of imbalance.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from territory_pipeline.balancing import (
    BalanceSettings,
    balance,
    evaluate_plan,
    greedy_balance,
)
from territory_pipeline.balancing.geometry import project
from territory_pipeline.balancing.synthetic import make_instance


def _score(
    name: str,
    plan_units,
    adjacency,
    providers,
    labels: np.ndarray,
    seconds: float,
    note: str = "",
) -> dict:
    regions = int(labels.max()) + 1
    reps = pl.DataFrame({"rep_id": [f"P{i:04d}" for i in range(regions)]})
    asg = pl.DataFrame(
        {"unit_id": plan_units["unit_id"], "rep_id": [f"P{i:04d}" for i in labels]}
    )
    _, m = evaluate_plan(plan_units, asg, reps, adjacency, providers=providers)
    return {"method": name, "regions": regions, **m, "seconds": seconds, "note": note}


def run_universe(
    n_providers: int, n_reps: int, peers: bool, seed: int = 0, only_greedy: bool = False
) -> list[dict]:
    inst = make_instance(n_providers, n_reps, seed=seed, homes=False)
    rows = []
    settings = BalanceSettings(seed=seed)
    started = time.perf_counter()
    plan = balance(inst.units, inst.reps, providers=inst.providers, settings=settings)
    engine_s = time.perf_counter() - started
    units, adjacency = plan.units, plan.adjacency
    prov = plan.provider_assignments.join(
        inst.providers.select("npi", "latitude", "longitude", "weight"), on="npi"
    )
    rows.append(
        {
            "method": "engine",
            "regions": n_reps,
            **plan.metrics,
            "seconds": engine_s,
            "within_tolerance": int((plan.territories["deviation"].abs() <= settings.tolerance + 1e-12).sum()),
            "note": f"start {plan.metrics['start']}, {plan.metrics['atoms']} atoms",
        }
    )

    if only_greedy:
        started = time.perf_counter()
        greedy = greedy_balance(units, inst.reps, adjacency=adjacency, providers=prov)
        rows.append(
            {
                "method": "greedy (largest-first)",
                "regions": n_reps,
                **greedy.metrics,
                "seconds": time.perf_counter() - started,
                "note": "",
            }
        )
        return rows
    started = time.perf_counter()
    free_settings = BalanceSettings(
        seed=seed, keep_metros_whole=False, whole_metro_parts=False
    )
    free = balance(
        units, inst.reps, adjacency=adjacency, providers=prov, settings=free_settings
    )
    rows.append(
        {
            "method": "engine, metros may split",
            "regions": n_reps,
            **free.metrics,
            "seconds": time.perf_counter() - started,
            "note": f"{free.metrics['atoms']} atoms",
        }
    )

    started = time.perf_counter()
    greedy = greedy_balance(units, inst.reps, adjacency=adjacency, providers=prov)
    rows.append(
        {
            "method": "greedy (largest-first)",
            "regions": n_reps,
            **greedy.metrics,
            "seconds": time.perf_counter() - started,
            "note": "",
        }
    )

    xy = project(units["latitude"].to_numpy(), units["longitude"].to_numpy())
    n = len(units)
    from k_means_constrained import KMeansConstrained

    started = time.perf_counter()
    kmc = KMeansConstrained(
        n_clusters=n_reps,
        size_min=int(0.9 * n / n_reps),
        size_max=int(np.ceil(1.1 * n / n_reps)),
        random_state=seed,
        n_init=1,
        max_iter=100,
    )
    labels = kmc.fit_predict(xy)
    rows.append(
        _score(
            "k-means-constrained",
            units,
            adjacency,
            prov,
            labels,
            time.perf_counter() - started,
            "balances unit counts",
        )
    )
    if peers:
        import libpysal
        from spopt.region import MaxPHeuristic, RegionKMeansHeuristic

        ids = units["unit_id"].to_list()
        index = {u: i for i, u in enumerate(ids)}
        neigh: dict[int, list[int]] = {i: [] for i in range(n)}
        for a, b in adjacency.iter_rows():
            neigh[index[a]].append(index[b])
        w = libpysal.weights.W(neigh, silence_warnings=True)
        weight = units["weight"].to_numpy()
        started = time.perf_counter()
        rkm = RegionKMeansHeuristic(weight.reshape(-1, 1), n_reps, w, seed=seed)
        rkm.solve()
        rows.append(
            _score(
                "spopt RegionKMeans",
                units,
                adjacency,
                prov,
                np.asarray(rkm.labels_),
                time.perf_counter() - started,
                "optimises similarity, not balance",
            )
        )
        import geopandas as gpd

        gdf = gpd.GeoDataFrame(
            {"weight": weight, "attr": weight},
            geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]),
        )
        started = time.perf_counter()
        floor = 0.9 * weight.sum() / n_reps
        mp = MaxPHeuristic(
            gdf,
            w,
            ["attr"],
            "weight",
            floor,
            top_n=2,
            max_iterations_construction=20,
            max_iterations_sa=2,
        )
        mp.solve()
        labels = np.asarray(mp.labels_)
        # MaxP labels start at 1 and leave units below the floor unassigned (0): they get their own region
        labels = np.unique(labels, return_inverse=True)[1].reshape(-1)
        rows.append(
            _score(
                "spopt MaxP (floor 90%)",
                units,
                adjacency,
                prov,
                labels,
                time.perf_counter() - started,
                "picks its own region count",
            )
        )
    return rows


def table(title: str, rows: list[dict]) -> str:
    base = next(r for r in rows if r["method"].startswith("greedy"))
    out = [
        f"### {title}",
        "",
        (
            "| method | regions | imbalance | vs greedy | max/min | cv | bound | neighbourhood bound | compact mi | "
            "inertia mi² | metro splits (beyond) | disconnected | provider imb. | seconds | note |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            r["imbalance"] / base["imbalance"]
            if base["imbalance"] > 0
            else float("nan")
        )
        out.append(
            f"| {r['method']} | {r['regions']} | {r['imbalance']:.3f} | {ratio:.2f} | {r['max_min_ratio']:.2f} | "
            f"{r['cv']:.3f} | {r['granularity_bound']:.3f} | {r['neighbourhood_bound']:.3f} | "
            f"{r['compactness_mean_miles']:.1f} | {r['inertia_sq_miles']:,.0f} | "
            f"{r['metro_splits']} ({r['metros_split_beyond_bound']}) | {r['disconnected_territories']} | "
            f"{r['provider_imbalance']:.3f} | {r['seconds']:.1f} | {r['note']} |"
        )
    return "\n".join(out)


def seed_table(seeds: list[int], n_providers: int = 3000, n_reps: int = 20) -> str:
    """Engine against the greedy on one universe size drawn from several seeds (the engine's
    neighbourhood bound and its territories within the tolerance alongside)."""
    out = [
        f"### Universes of {n_providers:,} providers, {n_reps} territories by seed: engine vs greedy",
        "",
        (
            "| seed | engine imbalance | neighbourhood bound | engine within ±5% | greedy imbalance | "
            "engine compact mi | greedy compact mi | engine inertia mi² | greedy inertia mi² | engine s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    sums = np.zeros(4)
    for seed in seeds:
        engine, greedy = run_universe(n_providers, n_reps, peers=False, seed=seed, only_greedy=True)
        sums += [
            engine["compactness_mean_miles"],
            greedy["compactness_mean_miles"],
            engine["inertia_sq_miles"],
            greedy["inertia_sq_miles"],
        ]
        out.append(
            f"| {seed} | {engine['imbalance']:.3f} | {engine['neighbourhood_bound']:.3f} | "
            f"{engine['within_tolerance']} of {n_reps} | {greedy['imbalance']:.3f} | "
            f"{engine['compactness_mean_miles']:.1f} | {greedy['compactness_mean_miles']:.1f} | "
            f"{engine['inertia_sq_miles']:,.0f} | {greedy['inertia_sq_miles']:,.0f} | {engine['seconds']:.1f} |"
        )
    m = sums / len(seeds)
    out.append(f"| mean | | | | | {m[0]:.1f} | {m[1]:.1f} | {m[2]:,.0f} | {m[3]:,.0f} | |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--national",
        action="store_true",
        help="also run 50,000 providers / 200 territories",
    )
    parser.add_argument(
        "--million",
        action="store_true",
        help="also run 1,000,000 providers / 300 (engine, greedy)",
    )
    parser.add_argument(
        "--seeds",
        help="instead: the universe drawn from these seeds, engine vs greedy (e.g. 0-7)",
    )
    parser.add_argument(
        "--size",
        default="3000,20",
        help="with --seeds: PROVIDERS,REPS of the universe (default 3000,20; e.g. 50000,200)",
    )
    args = parser.parse_args()
    if args.seeds:
        lo, _, hi = args.seeds.partition("-")
        n_providers, n_reps = (int(x) for x in args.size.split(","))
        print(seed_table(list(range(int(lo), int(hi or lo) + 1)), n_providers, n_reps))
        return
    print(
        table(
            "Sample universe: 3,000 providers, 20 territories",
            run_universe(3000, 20, peers=True),
        )
    )
    if args.national:
        print()
        print(
            table(
                "National: 50,000 providers, 200 territories (spopt skipped: too slow)",
                run_universe(50_000, 200, peers=False),
            )
        )
    if args.million:
        print()
        print(
            table(
                "National: 1,000,000 providers, 300 territories",
                run_universe(1_000_000, 300, peers=False, only_greedy=True),
            )
        )


if __name__ == "__main__":
    main()
