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
* :func:`neighbourhood_bound` is a rigorous lower bound for *connected* plans
  that keep light metros whole: the territory holding a metro must be a
  connected set of whole metros (and parts of heavy ones) around it, and where
  metros are lumps no such set may come near the target; and a heavy metro's
  holders (at most its part count) must carry its whole weight, with only as
  much from outside as its neighbours can spare.
* :func:`least_move` is a rigorous lower bound on the opportunity that must
  change rep to bring every territory within tolerance, given the previous
  assignment.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass

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
    solved = least_move_arcs(start_weights, targets, tolerance, edges, sources)
    if solved is None:
        return None
    _, flow = solved
    gone = np.asarray(sources, dtype=float)[len(targets) :].sum()
    # orphaned weight that stays put is impossible, so count at least the orphans
    return float(max(flow.sum(), gone))


def least_move_arcs(
    start_weights: np.ndarray,
    targets: np.ndarray,
    tolerance: float,
    edges: np.ndarray,
    sources: np.ndarray,
    closed: np.ndarray | None = None,
    shut_arcs: set[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The min-cost flow of :func:`least_move_flow`: (arcs (m, 2) as (from, to), flow (m,)).

    ``closed`` (optional, one flag per current territory) marks territories that
    may receive weight but not give any (all their units are locked); one already
    above its band may stay where it is.  ``shut_arcs`` (optional) are (from, to)
    pairs that may carry nothing.  None when no flow meets the tolerance.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    k = len(targets)
    sources = np.asarray(sources, dtype=float)
    n = len(sources)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(e) == 0:
        return None
    arcs = np.vstack([e, e[:, ::-1]])
    if closed is not None:
        shut = np.zeros(n, dtype=bool)
        shut[:k] = closed
        arcs = arcs[~shut[arcs[:, 0]]]
        if len(arcs) == 0:
            return None
    if shut_arcs:
        arcs = arcs[[(int(x), int(y)) not in shut_arcs for x, y in arcs]]
        if len(arcs) == 0:
            return None
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
    if closed is not None:
        hi[:k] = np.where(closed, np.maximum(hi[:k], 0.0), hi[:k])
    gone = np.arange(n) >= k
    lo[gone] = hi[gone] = -sources[gone]
    # inflow >= lo  ->  -A f <= -lo ;  inflow <= hi  ->  A f <= hi
    a_ub = [-a[np.isfinite(lo) & ~gone], a[np.isfinite(hi) & ~gone]]
    b_ub = [-lo[np.isfinite(lo) & ~gone], hi[np.isfinite(hi) & ~gone]]
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
    return arcs, np.asarray(res.x)


@dataclass(frozen=True)
class NeighbourhoodBound:
    """A lower bound from the neighbourhood of one group (see :func:`neighbourhood_bound`)."""

    value: float
    root: int  # the group that sets the bound (-1 when the bound is 0)
    neighbours: tuple[int, ...]  # its neighbouring groups, lightest first
    checked: int  # groups whose neighbourhood was searched
    unsure: int  # searches cut short (counted as feasible, which keeps the bound valid)


class _Unsure(Exception):
    pass


def neighbourhood_bound(
    weights: np.ndarray,
    parts: np.ndarray,
    edges: np.ndarray,
    targets: np.ndarray,
    budget: int = 3000,
    max_depth: int = 300,
    floor: float = 0.02,
) -> NeighbourhoodBound:
    """Lower bound on the imbalance of connected plans that keep light groups whole.

    Groups are metros (or units outside metros).  A light group (``parts[g] ==
    0``) is never split; a heavy group (``parts[g] = p >= 1``) spans at most p
    territories.  In any connected plan of imbalance D, the territory holding a
    light group M is a connected set of groups containing M whose weight lies
    within [(1-D)T, (1+D)T] for its target T, where a heavy group H inside it
    contributes some share x with W_H - (p-1)(1+D)T_max <= x <= min(W_H,
    (1+D)T) (the other p-1 territories hold at most (1+D)T_max each).  So if
    no connected set around M can reach that window, the imbalance exceeds D.
    The bound is the largest such D over all light groups, found by bisection
    on D per group (feasibility grows with D).  Connected sets are enumerated
    exactly (each once: extend by a frontier group, then exclude it) unless a
    greedy growth (lightest frontier group first) already reaches the window,
    pruned
    once their least weight exceeds (1+D)T_max; a heavy group passes on all of
    its neighbours (a relaxation).  A search that exceeds ``budget`` steps or
    ``max_depth`` groups counts as feasible, so the result stays a valid lower
    bound; it is tight where metros are lumps, which is where it matters.
    Groups whose greedy growth reaches the window at D = ``floor`` are not
    searched, so a bound below ``floor`` is not resolved (the result is then at
    most ``floor``, still a valid lower bound).

    A heavy group H (weight W, at most p territories) is a root too: its holders
    carry all of W.  A holder of nothing but H's atoms holds between
    (1-D)T_min and (1+D)T_max of it; a holder of anything else as well holds a
    neighbouring group of H, so at least the least share E of any neighbour
    (a light one whole, a heavy one as above), and at most (1+D)T_max - E of H.
    If no count of such holders, p at most, can carry W, the imbalance exceeds
    D: a heavy metro of 4.74 targets in at most 5 territories, bordered only by
    heavy metros whose holders have no room to spare, leaves its holders at
    0.948 of a target, 5.2% under (closed form per D; no search).
    """
    w = np.asarray(weights, dtype=float)
    parts = np.asarray(parts, dtype=np.int64)
    mu = np.unique(np.asarray(targets, dtype=float))
    n = len(w)
    if n == 0 or len(mu) == 0 or w.sum() <= 0:
        return NeighbourhoodBound(0.0, -1, (), 0, 0)
    t_max = float(mu.max())
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for a, b in np.asarray(edges, dtype=np.int64).reshape(-1, 2).tolist():
        if a != b:
            nbrs[a].add(b)
            nbrs[b].add(a)
    order_nb = [sorted(s, key=lambda g: (w[g], g)) for s in nbrs]
    heavy = parts > 0
    unsure = 0

    def share(g: int, d: float) -> tuple[float, float]:
        if not heavy[g]:
            return w[g], w[g]
        lo = max(0.0, w[g] - (parts[g] - 1) * (1 + d) * t_max)
        return lo, min(w[g], (1 + d) * t_max)

    last: list = [None, None]  # the imbalance of the last shares() and its lists

    def shares(d: float) -> tuple[list[float], list[float]]:
        # :func:`share` of every group at once, for the greedy growth that looks them up
        # millions of times (the same arithmetic); the screening asks one d throughout, a
        # bisection one per step, so only the last is kept
        if last[0] != d:
            lo = np.where(heavy, np.maximum(0.0, w - (parts - 1) * (1 + d) * t_max), w)
            hi = np.where(heavy, np.minimum(w, (1 + d) * t_max), w)
            last[:] = [d, (lo.tolist(), hi.tolist())]
        return last[1]

    targets_sorted = mu.tolist()
    single = targets_sorted[0] if len(targets_sorted) == 1 else None

    def hits(lo: float, hi: float, d: float) -> bool:
        # some target T with lo <= (1+d)T and hi >= (1-d)T: the least T >= lo/(1+d) must do
        if single is not None:  # one target: the same test without the search
            if single < lo / (1 + d) - 1e-12:
                return False
            return d >= 1 or hi >= (1 - d) * single - 1e-12
        i = bisect.bisect_left(targets_sorted, lo / (1 + d) - 1e-12)
        if i == len(targets_sorted):
            return False
        return d >= 1 or hi >= (1 - d) * targets_sorted[i] - 1e-12

    def witness(root: int, d: float, top: float) -> tuple[set[int], float, float] | None:
        # grow a connected set from root, lightest frontier group first, skipping those that
        # overshoot; any set it reaches inside the window proves feasibility (steps are small
        # where groups are small, so this settles most groups without enumeration)
        lo = hi = w[root]
        inside = {root}
        least, most = shares(d)
        heap = [(least[x], x) for x in order_nb[root]]
        heapq.heapify(heap)
        queued = set(order_nb[root]) | inside
        while heap:
            vlo, v = heapq.heappop(heap)
            if lo + vlo > top:
                break  # every other frontier group is at least as heavy
            lo, hi = lo + vlo, hi + most[v]
            inside.add(v)
            if hits(lo, hi, d):
                return inside, lo, hi
            for x in order_nb[v]:
                if x not in queued:
                    queued.add(x)
                    heapq.heappush(heap, (least[x], x))
        return None

    def feasible(root: int, d: float) -> bool:
        top = (1 + d) * t_max + 1e-12
        steps = [0]

        def extend(lo: float, hi: float, inside: set[int], ext: list[int], banned: set[int]) -> bool:
            if hits(lo, hi, d):
                return True
            steps[0] += 1
            if steps[0] > budget or len(inside) > max_depth:
                raise _Unsure
            ext = list(ext)
            while ext:
                v = ext.pop()
                vlo, vhi = share(v, d)
                if lo + vlo <= top:
                    seen = inside | banned | set(ext) | {v}
                    grow = ext + [x for x in order_nb[v] if x not in seen]
                    if extend(lo + vlo, hi + vhi, inside | {v}, grow, banned):
                        return True
                banned = banned | {v}
            return False

        if witness(root, d, top) is not None:
            return True
        # heaviest candidates are popped first: lumps reach the window in few steps
        try:
            return extend(w[root], w[root], {root}, list(order_nb[root]), set())
        except _Unsure:
            nonlocal unsure
            unsure += 1
            return True

    # Screening at D = floor.  A connected set inside the window is a witness for every
    # group in it, and a witness plus one more neighbouring group is a witness for that group
    # while its weight stays inside.  Groups are visited breadth first so that most extend a
    # neighbour's witness; greedy growth builds a fresh one otherwise.  Only groups with no
    # witness (metros among lumps) are searched exactly: the others cannot raise the bound
    # above floor.
    top_floor = (1 + floor) * t_max + 1e-12
    owner = np.full(n, -1, dtype=np.int64)  # index into sums of a witness containing the group
    sums: list[tuple[float, float]] = []
    roots = []
    for g in _breadth_first(order_nb):
        if heavy[g] or w[g] <= 0 or owner[g] >= 0:
            continue
        if hits(w[g], w[g], floor):
            sums.append((w[g], w[g]))
            owner[g] = len(sums) - 1
            continue
        for x in order_nb[g]:
            if owner[x] >= 0:
                lo, hi = sums[owner[x]]
                if hits(lo + w[g], hi + w[g], floor):
                    sums.append((lo + w[g], hi + w[g]))
                    owner[g] = len(sums) - 1
                    break
        if owner[g] >= 0:
            continue
        found = witness(g, floor, top_floor)
        if found is None:
            roots.append(g)
            continue
        members, lo, hi = found
        sums.append((lo, hi))
        for x in members:
            if owner[x] < 0:
                owner[x] = len(sums) - 1
    t_min = float(mu.min())

    def holders_fit(g: int, d: float) -> bool:
        # heavy group g: at most parts[g] territories hold all of it.  One holding only g's
        # atoms holds between (1-d)T_min and (1+d)T_max of it; one holding anything else too
        # holds some neighbouring group, so at least the least share of a neighbour
        # (share(x, d)[0]: a light group whole, a heavy one what its other holders cannot
        # carry), and at most (1+d)T_max less that of g.  Some count of each must add up to g.
        top = (1 + d) * t_max + 1e-12
        extra = min((share(x, d)[0] for x in order_nb[g]), default=math.inf)
        mixed = max(0.0, top - extra)
        low = (1 - d) * t_min - 1e-12
        return any(
            pure * low <= w[g] <= pure * top + (parts[g] - pure) * mixed
            for pure in range(int(parts[g]) + 1)
        )

    best, best_root = 0.0, -1
    candidates = [(g, feasible) for g in roots]
    candidates += [(g, holders_fit) for g in range(n) if heavy[g] and w[g] > 0]
    for g, fits in candidates:
        if fits(g, best + 1e-4 if best_root >= 0 else best):
            continue  # not (meaningfully) above the bound so far
        lo, hi = best, 1.0
        while hi - lo > 1e-4:
            mid = (lo + hi) / 2
            if fits(g, mid):
                hi = mid
            else:
                lo = mid
        best, best_root = lo, g  # lo is infeasible: the bound stays a lower bound
    if best_root < 0:
        return NeighbourhoodBound(0.0, -1, (), len(roots), unsure)
    return NeighbourhoodBound(best, best_root, tuple(order_nb[best_root]), len(roots), unsure)


def _breadth_first(nbrs: list[list[int]]) -> list[int]:
    """All nodes in breadth-first order, each component from its lowest index."""
    seen = np.zeros(len(nbrs), dtype=bool)
    out: list[int] = []
    for start in range(len(nbrs)):
        if seen[start]:
            continue
        seen[start] = True
        queue = [start]
        for v in queue:
            out.append(v)
            for x in nbrs[v]:
                if not seen[x]:
                    seen[x] = True
                    queue.append(x)
    return out
