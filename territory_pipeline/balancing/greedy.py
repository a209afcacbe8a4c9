"""The field's largest-first greedy (the baseline of territory-design.md), scored like the engine.

Total the opportunity; targets mu_k as in the engine.  Territories are built
one after another (reps in rep_id order): each starts from the heaviest
unassigned unit and keeps adding the heaviest adjacent unassigned unit that
still fits under (1+τ)·mu_k, until it reaches (1-τ)·mu_k or nothing adjacent
fits.  Units left at the end (the "adjust by hand" step of the field) go, the
heaviest first, to the lightest adjacent territory.  It does not split units
or keep metros whole on purpose; it is evaluated with the same
:func:`.metrics.evaluate_plan` as the engine.
"""

from __future__ import annotations

import heapq
import time

import numpy as np
import polars as pl

from .geometry import to_csr
from .inputs import (
    edges_frame,
    normalize_adjacency,
    normalize_providers,
    normalize_reps,
    normalize_units,
    territory_id,
)
from .metrics import evaluate_plan
from .model import BalanceSettings, Plan


def greedy_labels(
    weight: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    tolerance: float,
) -> np.ndarray:
    """Territory index per unit by the largest-first greedy (see module docstring)."""
    n, k = len(weight), len(targets)
    labels = np.full(n, -1, dtype=np.int64)
    load = np.zeros(k)
    order = np.lexsort((np.arange(n), -weight))
    pos = 0
    for t in range(k):
        while pos < n and labels[order[pos]] >= 0:
            pos += 1
        if pos >= n:
            break
        seed = int(order[pos])
        labels[seed] = t
        load[t] = weight[seed]
        heap = [
            (-weight[v], int(v))
            for v in indices[indptr[seed] : indptr[seed + 1]]
            if labels[v] < 0
        ]
        heapq.heapify(heap)
        while heap and load[t] < (1 - tolerance) * targets[t]:
            _, u = heapq.heappop(heap)
            if labels[u] >= 0 or load[t] + weight[u] > (1 + tolerance) * targets[t]:
                continue
            labels[u] = t
            load[t] += weight[u]
            for v in indices[indptr[u] : indptr[u + 1]]:
                if labels[v] < 0:
                    heapq.heappush(heap, (-weight[v], int(v)))
    # leftovers: heaviest first, to the lightest adjacent territory
    heap = []
    for u in np.nonzero(labels < 0)[0]:
        if any(labels[v] >= 0 for v in indices[indptr[u] : indptr[u + 1]]):
            heap.append((-weight[u], int(u)))
    heapq.heapify(heap)
    while heap:
        _, u = heapq.heappop(heap)
        if labels[u] >= 0:
            continue
        near = [
            int(labels[v]) for v in indices[indptr[u] : indptr[u + 1]] if labels[v] >= 0
        ]
        t = min(near, key=lambda x: (load[x] / targets[x], x))
        labels[u] = t
        load[t] += weight[u]
        for v in indices[indptr[u] : indptr[u + 1]]:
            if labels[v] < 0:
                heapq.heappush(heap, (-weight[v], int(v)))
    return labels


def greedy_balance(
    units: pl.DataFrame,
    reps: pl.DataFrame,
    *,
    adjacency: pl.DataFrame | None = None,
    providers: pl.DataFrame | None = None,
    settings: BalanceSettings = BalanceSettings(),
) -> Plan:
    """Largest-first greedy plan over ``units`` (same inputs and Plan as :func:`balance`)."""
    started = time.perf_counter()
    units = normalize_units(units)
    reps = normalize_reps(reps)
    prov = (
        normalize_providers(providers, units["unit_id"])
        if providers is not None
        else None
    )
    edges = normalize_adjacency(adjacency, units, settings.adjacency_max_edge_miles)
    indptr, indices = to_csr(len(units), edges)
    cap = reps["capacity"].to_numpy()
    w = units["weight"].to_numpy()
    targets = w.sum() * cap / cap.sum()
    labels = greedy_labels(w, indptr, indices, targets, settings.tolerance)
    rep_ids = np.array(reps["rep_id"].to_list(), dtype=object)[labels]
    assignments = pl.DataFrame(
        {
            "unit_id": units["unit_id"],
            "territory_id": [territory_id(r) for r in rep_ids],
            "rep_id": rep_ids.tolist(),
        },
        schema={"unit_id": pl.Utf8, "territory_id": pl.Utf8, "rep_id": pl.Utf8},
    )
    adjacency_out = edges_frame(units["unit_id"], edges)
    territories, metrics = evaluate_plan(
        units, assignments, reps, adjacency_out, providers=prov, settings=settings
    )
    provider_assignments = None
    if prov is not None:
        provider_assignments = (
            prov.select("npi", "unit_id", pl.col("weight").alias("opportunity_score"))
            .join(assignments, on="unit_id", how="left")
            .select("npi", "unit_id", "territory_id", "rep_id", "opportunity_score")
            .sort("npi")
        )
    metrics["seconds"] = time.perf_counter() - started
    return Plan(
        assignments, provider_assignments, territories, metrics, units, adjacency_out
    )
