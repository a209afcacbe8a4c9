"""Rebalancing benchmark: every single-rep departure of a materialized quarter.

For each rep of the quarter's roster, the rep leaves and the engine rebalances
the plan the way the rep-turnover sensor's run does (territories more than
``--steps`` hops from the departed one are frozen unless their new target
pushes them out of the tolerance; the area widens hop by hop, then to the
whole plan, while the plan stays beyond the tolerance).  Baselines computed in the same
process for the same departure:

* the least move when weight can only pass between neighbouring territories
  (``least_move_flow_share``, a min-cost flow): the bar is at most 1.5x it;
* a fresh plan for the new roster (no previous alignment), which ignores
  disruption: how much a re-cut from scratch would move.

With ``--synthetic PROVIDERS,REPS`` the first ``--departures`` reps of a
synthetic universe leave instead (no locality rule: the whole plan may change,
as in a quarterly refresh in micro mode).

Usage (after ./quickstart.sh, which materializes data/territory.duckdb):
  .venv/bin/python benchmarks/rebalance_bench.py [--duckdb PATH] [--quarter 2026-07-01] [--seeds 0,1]
  .venv/bin/python benchmarks/rebalance_bench.py --synthetic 1000000,300 --seeds 0 --departures 2
Prints one markdown row per seed (means over the departures) and the worst departures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from territory_pipeline.balancing import BalanceSettings, balance
from territory_pipeline.balancing.synthetic import make_instance
from territory_pipeline.operations.alignment import (
    engine_inputs,
    engine_locks,
    widen_until_balanced,
)
from territory_pipeline.storage.partitions import read_partition

TABLES = [
    "scored_clusters",
    "clusters",
    "cluster_adjacency",
    "provider_scores",
    "geocoded_providers",
    "sales_reps",
    "provider_clusters",
]


def load(path: Path, quarter: dt.date) -> dict[str, pl.DataFrame]:
    if not path.exists():
        sys.exit(f"{path} not found: run ./quickstart.sh first (or pass --duckdb)")
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = {name: read_partition(conn, name, quarter) for name in TABLES}
    if tables["sales_reps"].height == 0:
        sys.exit(f"no sales_reps rows for {quarter} in {path}")
    return tables


def moved_share(before: pl.DataFrame, after: pl.DataFrame) -> float:
    joined = before.join(after.select("npi", pl.col("rep_id").alias("after")), on="npi")
    total = float(joined["opportunity_score"].sum())
    return float(joined.filter(pl.col("rep_id") != pl.col("after"))["opportunity_score"].sum()) / total


def run_seed(t: dict[str, pl.DataFrame], seed: int, steps: int) -> list[dict]:
    inputs = engine_inputs(
        t["scored_clusters"], t["clusters"], t["cluster_adjacency"], t["provider_scores"], t["geocoded_providers"]
    )
    reps = t["sales_reps"].select("rep_id", "rep_name", "home_latitude", "home_longitude", "capacity")
    settings = BalanceSettings(seed=seed)
    fresh = balance(inputs.units, reps, adjacency=inputs.adjacency, providers=inputs.providers, settings=settings)
    previous = fresh.provider_assignments.select("npi", "rep_id")
    before = fresh.provider_assignments.select("npi", "rep_id", "opportunity_score")
    rows = []
    for rep in reps["rep_id"].to_list():
        roster = reps.filter(pl.col("rep_id") != rep)
        started = time.perf_counter()

        def plan_for(width: int, roster=roster, rep=rep):
            locks = engine_locks(
                locks_file=None,
                reps=roster,
                providers=inputs.providers,
                previous=previous,
                event_reps={rep},
                geocoded=t["geocoded_providers"],
                provider_clusters=t["provider_clusters"],
                adjacency=t["cluster_adjacency"],
                locality_steps=width,
                tolerance=settings.tolerance,
            )
            plan = balance(
                inputs.units,
                roster,
                adjacency=inputs.adjacency,
                providers=inputs.providers,
                locks=locks.all,
                previous=previous,
                settings=settings,
            )
            return plan, locks

        chosen = widen_until_balanced(plan_for, steps, settings.tolerance)
        plan, width = chosen.plan, chosen.steps
        seconds = time.perf_counter() - started
        replan = balance(inputs.units, roster, adjacency=inputs.adjacency, providers=inputs.providers, settings=settings)
        rows.append(departure_row(seed, rep, width, plan, replan, before, seconds))
    return rows


def departure_row(seed: int, rep: str, width: int, plan, replan, before: pl.DataFrame, seconds: float) -> dict:
    m = plan.metrics
    return {
        "seed": seed,
        "rep": rep,
        "width": width,
        "imbalance": m["imbalance"],
        "moved": m["moved_opportunity_share"],
        "least_flow": m["least_move_flow_share"],
        "ratio_flow": m["disruption_ratio_flow"],
        "replan_moved": moved_share(before, replan.provider_assignments),
        "replan_imbalance": replan.metrics["imbalance"],
        "seconds": seconds,
    }


def run_synthetic(n_providers: int, n_reps: int, seed: int, departures: int) -> list[dict]:
    """The first ``departures`` reps of a synthetic universe leave one at a time (no locality
    rule: the whole plan may change, as in a quarterly refresh in micro mode)."""
    inst = make_instance(n_providers, n_reps, seed=seed, homes=False)
    settings = BalanceSettings(seed=seed)
    fresh = balance(inst.units, inst.reps, providers=inst.providers, settings=settings)
    print(f"synthetic {n_providers:,} providers / {n_reps} reps, seed {seed}: fresh plan {fresh.metrics['imbalance']:.1%}")
    previous = fresh.provider_assignments.select("npi", "rep_id")
    before = fresh.provider_assignments.select("npi", "rep_id", "opportunity_score")
    rows = []
    for rep in inst.reps["rep_id"].to_list()[:departures]:
        roster = inst.reps.filter(pl.col("rep_id") != rep)
        started = time.perf_counter()
        plan = balance(inst.units, roster, providers=inst.providers, previous=previous, settings=settings)
        seconds = time.perf_counter() - started
        # past the time limit the search is cut short and the plan depends on machine speed
        print(
            f"{rep} leaves: engine {plan.metrics['seconds']:.1f} s of {settings.time_limit_seconds:.0f}, "
            f"timed out: {plan.metrics['timed_out']}"
        )
        replan = balance(inst.units, roster, providers=inst.providers, settings=settings)
        rows.append(departure_row(seed, rep, 0, plan, replan, before, seconds))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duckdb", type=Path, default=Path("data/territory.duckdb"))
    ap.add_argument("--quarter", default="2026-07-01")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=2, help="locality hops (0: the whole plan may change)")
    ap.add_argument("--synthetic", help="PROVIDERS,REPS: a synthetic universe instead of the quarter (e.g. 1000000,300)")
    ap.add_argument("--departures", type=int, default=3, help="with --synthetic: how many reps leave, one at a time")
    args = ap.parse_args()
    rows = []
    if args.synthetic:
        n_providers, n_reps = (int(x) for x in args.synthetic.split(","))
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += run_synthetic(n_providers, n_reps, seed, args.departures)
        print(f"\nSingle-rep departures, synthetic {n_providers:,} / {n_reps}, whole plan\n")
    else:
        t = load(args.duckdb, dt.date.fromisoformat(args.quarter))
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += run_seed(t, seed, args.steps)
        print(f"Single-rep departures, {args.duckdb} {args.quarter}, locality {args.steps} hops\n")
    frame = pl.DataFrame(rows)
    print(
        "| seed | departures | > 1.5x flow least move | mean / max ratio to flow | mean moved | "
        "fresh re-plan moved (ratio) | mean imbalance after | within ±5% | s per rebalance |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, part in frame.group_by("seed", maintain_order=True):
        ratio = part["ratio_flow"].fill_null(np.nan).to_numpy()
        moved, replan = part["moved"].mean(), part["replan_moved"].mean()
        print(
            f"| {seed[0]} | {part.height} | {int((ratio > 1.5).sum())} | {np.nanmean(ratio):.2f} / {np.nanmax(ratio):.2f} | "
            f"{moved:.1%} | {replan:.1%} ({replan / moved:.1f}x) | {part['imbalance'].mean():.1%} | "
            f"{int((part['imbalance'] <= 0.05).sum())} | {part['seconds'].mean():.1f} |"
        )
    worst = frame.sort("ratio_flow", descending=True, nulls_last=True).head(5)
    print("\nWorst departures:\n")
    print("| seed | rep leaving | hops | imbalance after | moved | flow least move | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in worst.iter_rows(named=True):
        print(
            f"| {r['seed']} | {r['rep']} | {r['width']} | {r['imbalance']:.1%} | {r['moved']:.1%} | "
            f"{r['least_flow']:.1%} | {r['ratio_flow']:.2f} |"
        )


if __name__ == "__main__":
    main()
