"""Lower bounds and reference values reported beside every plan.

* :func:`granularity_bound` is a rigorous lower bound on the imbalance
  (largest |w_k - mu_k| / mu_k) of *any* assignment of whole units to the
  territories, geographic or not.  Pigeonhole argument: among the j*K + 1
  heaviest units some territory receives at least j + 1, so its weight is at
  least the sum of the j + 1 lightest of them; it must then deviate by at least
  that sum / mu_max - 1 (mu_max = largest target).  j = 0 is the classic
  "heaviest unit" bound.  Fewer units than territories forces a deviation of 1.
* :func:`best_partition_bound` is the imbalance of the best non-geographic
  partition found by LPT (largest unit first into the territory that stays
  least full relative to its target) followed by pairwise move/swap
  improvement.  It is an upper bound on the optimal non-geographic imbalance
  and therefore only an *estimate* of the lower bound for geographic plans:
  the true optimum lies between ``granularity_bound`` and this value.
* :func:`least_move` is a rigorous lower bound on the opportunity that must
  change rep to bring every territory within tolerance, given the previous
  assignment.
"""

from __future__ import annotations

import heapq

import numpy as np


def granularity_bound(
    weights: np.ndarray, targets: np.ndarray, max_j: int = 8
) -> float:
    """Pigeonhole lower bound on the imbalance of any partition of ``weights`` (see module doc)."""
    w = np.sort(np.asarray(weights, dtype=float))[::-1]
    k = len(targets)
    if k == 0 or w.sum() <= 0:
        return 0.0
    if len(w) < k:
        return 1.0
    mu_max = float(np.max(targets))
    best = 0.0
    for j in range(max_j + 1):
        top = j * k + 1
        if top > len(w):
            break
        load = w[top - j - 1 : top].sum()  # the j+1 lightest among the top j*K+1
        best = max(best, load / mu_max - 1.0)
    return max(best, 0.0)


def best_partition_bound(
    weights: np.ndarray, targets: np.ndarray, improve_rounds: int = 200
) -> float:
    """Imbalance of the best non-geographic partition found by LPT + local improvement."""
    w = np.asarray(weights, dtype=float)
    mu = np.asarray(targets, dtype=float)
    k = len(mu)
    if k == 0 or w.sum() <= 0:
        return 0.0
    if len(w) < k:
        return 1.0
    order = np.lexsort((np.arange(len(w)), -w))
    load = np.zeros(k)
    heap = [(0.0, t) for t in range(k)]
    members: list[list[int]] = [[] for _ in range(k)]
    for i in order:
        _, t = heapq.heappop(heap)
        load[t] += w[i]
        members[t].append(int(i))
        heapq.heappush(heap, (load[t] / mu[t], t))
    for _ in range(improve_rounds):
        dev = load / mu - 1.0
        hi, lo = int(np.argmax(dev)), int(np.argmin(dev))
        cur = max(abs(dev[hi]), abs(dev[lo]))
        best = None
        for i in members[hi]:  # move one unit hi -> lo
            nh, nl = (load[hi] - w[i]) / mu[hi] - 1, (load[lo] + w[i]) / mu[lo] - 1
            val = max(abs(nh), abs(nl))
            if val < cur - 1e-12 and (best is None or val < best[0]):
                best = (val, i, None)
        if len(members[hi]) * len(members[lo]) <= 40000:
            for i in members[hi]:  # swap a pair
                for j in members[lo]:
                    d = w[i] - w[j]
                    if d <= 0:
                        continue
                    nh, nl = (load[hi] - d) / mu[hi] - 1, (load[lo] + d) / mu[lo] - 1
                    val = max(abs(nh), abs(nl))
                    if val < cur - 1e-12 and (best is None or val < best[0]):
                        best = (val, i, j)
        if best is None:
            break
        _, i, j = best
        members[hi].remove(i)
        members[lo].append(i)
        load[hi] -= w[i]
        load[lo] += w[i]
        if j is not None:
            members[lo].remove(j)
            members[hi].append(j)
            load[lo] -= w[j]
            load[hi] += w[j]
    return float(np.max(np.abs(load / mu - 1.0)))


def least_move(
    start_weights: np.ndarray,
    orphan_weight: float,
    targets: np.ndarray,
    tolerance: float,
) -> float:
    """Least opportunity that must change rep to put every territory within ±tolerance.

    ``start_weights[k]`` is the weight territory k keeps from the previous plan
    (0 for a new rep) and ``orphan_weight`` the weight whose previous rep is
    gone (or that had none): it moves whatever happens.  Territories above
    (1+τ)μ_k must shed their excess (over), territories below (1-τ)μ_k must
    gain the shortfall (under), which orphans can fill; so the least move is
    orphan + max(over, under - orphan, 0).
    """
    w0 = np.asarray(start_weights, dtype=float)
    mu = np.asarray(targets, dtype=float)
    over = np.maximum(0.0, w0 - (1 + tolerance) * mu).sum()
    under = np.maximum(0.0, (1 - tolerance) * mu - w0).sum()
    return float(orphan_weight + max(over, under - orphan_weight, 0.0))


def least_move_flow(
    start_weights: np.ndarray,
    targets: np.ndarray,
    tolerance: float,
    edges: np.ndarray,
    sources: np.ndarray,
) -> float | None:
    """Least move when weight can only pass between neighbouring territories (an estimate).

    Nodes are the previous plan's territories (index < len(targets): current
    reps, with ``start_weights``) plus departed reps (the rest of ``sources``,
    whose orphaned weight must all leave).  Each unit of weight crossing one
    boundary is one unit moved, so the least move is a min-cost flow with
    unit edge costs in which every current territory ends within ±tolerance.
    ``edges`` are undirected node pairs; ``sources[i]`` is the weight a
    departed node i must send out (0 for current reps).  Solved as a linear
    programme (HiGHS); None when no flow meets the tolerance.  It ignores the
    lumpiness of units, so it estimates rather than bounds the contiguous least
    move.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    k = len(targets)
    n = len(sources)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(e) == 0:
        return None
    arcs = np.vstack([e, e[:, ::-1]])
    m = len(arcs)
    # net inflow of node v = sum(f into v) - sum(f out of v)
    rows = np.concatenate([arcs[:, 1], arcs[:, 0]])
    cols = np.concatenate([np.arange(m), np.arange(m)])
    vals = np.concatenate([np.ones(m), -np.ones(m)])
    a = coo_matrix((vals, (rows, cols)), shape=(n, m)).tocsr()
    w0 = np.zeros(n)
    w0[:k] = start_weights
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    lo[:k] = (1 - tolerance) * targets - w0[:k]
    hi[:k] = (1 + tolerance) * targets - w0[:k]
    gone = np.arange(n) >= k
    lo[gone] = hi[gone] = -sources[gone]
    # inflow >= lo  ->  -A f <= -lo ;  inflow <= hi  ->  A f <= hi
    a_ub = [-a[np.isfinite(lo) & ~gone], a[np.isfinite(hi) & ~gone]]
    b_ub = [-lo[np.isfinite(lo) & ~gone], hi[np.isfinite(hi) & ~gone]]
    from scipy.sparse import vstack

    res = linprog(
        np.ones(m),
        A_ub=vstack(a_ub),
        b_ub=np.concatenate(b_ub),
        A_eq=a[gone] if gone.any() else None,
        b_eq=-sources[gone] if gone.any() else None,
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        return None
    # orphaned weight that stays put is impossible, so count at least the orphans
    return float(max(res.fun, sources[gone].sum()))
