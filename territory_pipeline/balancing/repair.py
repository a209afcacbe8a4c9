"""Least-move repair of a rebalanced plan, as an integer program.

After a rep leaves or joins, the disruption bar compares the opportunity a plan
moves with the least move that restores balance.  The local search builds its
moves one at a time and in chains, and a chain can shift weight around a ring of
territories further than balance needs.  This module re-solves the plan's moves
exactly: a mixed-integer program (HiGHS, through ``scipy.optimize.milp``) over every
unlocked atom (the *zone*; locked atoms and each territory's root are held):

* a binary ``x[a, t]`` for each zone atom ``a`` and each territory ``t`` it could
  join: its previous territory, its current one, or one holding a neighbour (now or
  before);
* every atom in one territory; every territory's opportunity within its band and
  its provider count within the secondary band (shortfalls and excesses at a
  penalty, so the program always has an answer);
* heavy metros span at most their parts' count of territories;
* **contiguity** by distance layers (the sufficient condition of redistricting
  models, Validi, Buchanan & Lykhovyd 2022): each territory keeps a root, its core
  (of the atoms it still holds, the one deepest inside it before); steps from the
  root are counted through the territory as it is, then outwards through the zone,
  and an atom may be in ``t`` only if a neighbour one layer closer to ``t``'s root
  is in ``t`` too.  The plan given satisfies this, and so does every answer: each
  atom has a path down the layers to its root.  (A plan given with a territory in
  pieces keeps them; an answer with more split territories than the plan is refused.)
* the objective: the opportunity moved away from its previous territory, a small
  term for compactness (a move's change of squared distance to the centres) and a
  small reward for an account's existing relationship.

The plan given satisfies every constraint, so an answer is taken only when it costs
less (unless a heavy metro of the plan spans more territories than its parts).  HiGHS runs with a node limit (deterministic: the same inputs give the same
answer); the engine gives it the time left before its own deadline, so only a run that
reaches its time limit can depend on the machine's speed (and is flagged ``timed_out``, as
when the searches are cut short).  No dagster here.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .partition import PartitionProblem, _native_stdout_silenced, metro_spans_over

_COMPACTNESS = 0.02  # x weight x change of (distance / typical radius)^2, against 1 x weight moved
_RELATIONSHIP = 0.25  # reward x strength x weight for keeping an account with its rep
_BALANCE_PENALTY = 1000.0  # per unit of opportunity beyond a territory's band
_SECONDARY_PENALTY = 2.0  # per provider beyond its band, in mean provider weights


def _split_territories(problem: PartitionProblem, labels: np.ndarray) -> int:
    """How many territories are in more than one connected piece."""
    n = problem.n
    src = np.repeat(np.arange(n), np.diff(problem.indptr))
    same = labels[src] == labels[problem.indices]
    _, comp = connected_components(
        coo_matrix((np.ones(int(same.sum())), (src[same], problem.indices[same])), shape=(n, n)), directed=False
    )
    pieces = np.bincount(np.unique(np.column_stack([labels, comp]), axis=0)[:, 0], minlength=problem.k)
    return int((pieces > 1).sum())


def _depth(problem: PartitionProblem, labels: np.ndarray) -> np.ndarray:
    """Each atom's steps from the border of its territory (0 on the border)."""
    from collections import deque

    ip, ix = problem.indptr, problem.indices
    src = np.repeat(np.arange(problem.n), np.diff(ip))
    depth = np.full(problem.n, -1, dtype=np.int64)
    border = np.unique(src[labels[src] != labels[ix]])
    depth[border] = 0
    queue = deque(border.tolist())
    while queue:
        a = queue.popleft()
        for b in ix[ip[a] : ip[a + 1]]:
            if depth[b] < 0 and labels[b] == labels[a]:
                depth[b] = depth[a] + 1
                queue.append(int(b))
    depth[depth < 0] = 0  # a territory without a border (alone in its component)
    return depth


def _layers(
    problem: PartitionProblem, labels: np.ndarray, roots: np.ndarray, zone: np.ndarray, needed: np.ndarray
) -> dict[int, np.ndarray]:
    """Per ``needed`` territory, each atom's steps from its root: through the territory first,
    then outwards through the zone (an atom there is one layer beyond its nearest-layer
    neighbour); -1 unreached.  One array per territory that has candidates, so a national
    zone does not allocate territories x atoms."""
    from collections import deque

    n = problem.n
    ip, ix = problem.indptr, problem.indices
    layer: dict[int, np.ndarray] = {}
    for t in np.nonzero(needed)[0]:
        lt = layer.setdefault(int(t), np.full(n, -1, dtype=np.int32))
        lt[roots[t]] = 0
        queue = deque([int(roots[t])])
        buckets: dict[int, list[int]] = {0: [int(roots[t])]}
        while queue:
            a = queue.popleft()
            for b in ix[ip[a] : ip[a + 1]]:
                if lt[b] < 0 and labels[b] == t:
                    lt[b] = lt[a] + 1
                    buckets.setdefault(int(lt[b]), []).append(int(b))
                    queue.append(int(b))
        level, top = 0, max(buckets)
        while level <= top:
            for a in buckets.get(level, []):
                for b in ix[ip[a] : ip[a + 1]]:
                    if lt[b] < 0 and zone[b]:
                        lt[b] = level + 1
                        buckets.setdefault(level + 1, []).append(int(b))
                        top = max(top, level + 1)
            level += 1
    return layer


def _solve(c, a_rows, lower, upper, integrality, node_limit, time_limit):
    """min c.x over lo <= A x <= hi (HiGHS through scipy); x, or None without a solution."""
    row_lo, a_mat, row_hi = a_rows
    with _native_stdout_silenced():  # scipy's HiGHS prints a stray debug line now and then
        res = milp(
            c,
            constraints=LinearConstraint(a_mat.tocsr(), row_lo, row_hi),
            integrality=integrality,
            bounds=Bounds(lower, upper),
            options={"node_limit": node_limit, "time_limit": time_limit, "mip_rel_gap": 1e-3},
        )
    return res.x


def least_move_repair(
    problem: PartitionProblem,
    labels: np.ndarray,
    tolerance: float | np.ndarray,
    *,
    secondary_tolerance: float = 0.15,
    objective: str = "moved",
    node_limit: int = 500,
    time_limit: float = 20.0,
) -> np.ndarray:
    """``labels`` with its zone re-solved to move the least (see the module docstring).

    ``problem.previous`` holds each atom's previous territory (-1: orphaned); with
    ``previous`` equal to ``labels`` the program brings territories beyond their band back into
    it, moving the least (the engine's last step for national plans, :func:`.engine._settle`).
    ``tolerance``: one for all territories or one per territory.  ``objective="inertia"`` minimises the
    moment of inertia instead (weight x squared distance to the centroids of ``labels``;
    the engine's compaction of fresh plans, with ``previous`` set to ``labels``).
    Returns new labels (connected territories when ``labels``' were), or ``labels``
    itself when nothing moved or no better answer was found.
    """
    n, k = problem.n, problem.k
    prev, w, pr = problem.previous, problem.weight, problem.providers
    ip, ix = problem.indptr, problem.indices
    if objective == "moved" and not ((labels != prev) | (prev < 0)).any():
        dev = np.abs(np.bincount(labels, weights=w, minlength=k) / problem.targets - 1.0)
        if (dev <= np.broadcast_to(np.asarray(tolerance, dtype=float), (k,))).all():
            return labels  # nothing moved and nothing to restore
    zone = problem.locked < 0
    src = np.repeat(np.arange(n), np.diff(ip))
    # candidates: previous, current, and the territories of neighbours (now or before)
    cand = np.zeros((n, k), dtype=bool)
    zi = np.nonzero(zone)[0]
    cand[zi, labels[zi]] = True
    had = zone & (prev >= 0)
    cand[np.nonzero(had)[0], prev[had]] = True
    e = zone[src]
    cand[src[e], labels[ix[e]]] = True
    keep_prev = e & (prev[ix] >= 0)
    cand[src[keep_prev], prev[ix[keep_prev]]] = True

    # roots: each territory's core, the atom it held before that lay deepest inside it (most
    # steps from its border then), the heaviest on ties; outside the zone when it can be
    # (a territory entirely in the zone keeps its root); a new rep's territory: the atom
    # nearest their home, else its deepest atom now
    depth_before = _depth(problem, prev)
    depth_now = _depth(problem, labels)
    fixed_t = np.where(zone, -1, labels)
    roots = np.full(k, -1, dtype=np.int64)
    for t in range(k):
        members = np.nonzero(labels == t)[0]
        if len(members) == 0:
            return labels
        kept = members[prev[members] == t]
        depth = depth_before
        if len(kept) == 0:
            kept, depth = members, depth_now
        if (fixed_t[kept] == t).any():
            kept = kept[fixed_t[kept] == t]
            a = int(kept[np.lexsort((kept, -w[kept], -depth[kept]))[0]])
        elif depth is depth_now and not np.isnan(problem.bases[t]).any():
            # a new rep's territory keeps the atom nearest their home, where it started
            near = np.hypot(*(problem.xy[kept] - problem.bases[t]).T)
            a = int(kept[np.lexsort((kept, near))[0]])
        else:
            a = int(kept[np.lexsort((kept, -w[kept], -depth[kept]))[0]])
        roots[t] = a
        zone[a] = False
        fixed_t[a] = t
    aa, tt = np.nonzero(cand & zone[:, None])
    m = len(aa)
    var = np.full((n, k), -1, dtype=np.int64)
    var[aa, tt] = np.arange(m)

    # objective: moves cost their weight, scaled by their change of squared distance to the centres
    tw_now = np.maximum(np.bincount(labels, weights=w, minlength=k), 1e-12)
    centres = np.column_stack(
        [np.bincount(labels, weights=w * problem.xy[:, d], minlength=k) / tw_now for d in range(2)]
    )
    d2 = ((problem.xy[aa] - centres[tt]) ** 2).sum(axis=1)
    own = np.where(prev[aa] >= 0, prev[aa], labels[aa])
    d2_own = ((problem.xy[aa] - centres[own]) ** 2).sum(axis=1)
    d2_all = ((problem.xy - centres[labels]) ** 2).sum(axis=1)
    radius2 = float((d2_all * w).sum() / max(w.sum(), 1e-12)) or 1.0
    moved = tt != prev[aa]
    cost = np.where(moved, w[aa] * np.maximum(1.0 + _COMPACTNESS * (d2 - d2_own) / radius2, 0.5), 0.0)
    cost = cost + 1e-9 * w[aa] * d2 / radius2  # ties go to the more compact answer
    if objective == "inertia":
        cost = w[aa] * d2 / radius2
    if len(problem.relationship_keys):
        keys = aa.astype(np.int64) * k + tt
        pos = np.minimum(np.searchsorted(problem.relationship_keys, keys), len(problem.relationship_keys) - 1)
        hit = problem.relationship_keys[pos] == keys
        cost[hit] -= _RELATIONSHIP * problem.relationship_values[pos[hit]] * float(problem.targets.mean())

    # fixed totals
    out = ~zone
    fw = np.bincount(labels[out], weights=w[out], minlength=k)
    fp = np.bincount(labels[out], weights=pr[out], minlength=k)
    p_total = float(pr.sum())
    ptarget = problem.targets / max(float(problem.targets.sum()), 1e-12) * p_total

    # within the tolerance after rounding; one tolerance per territory may be given
    band = np.broadcast_to(np.asarray(tolerance, dtype=float), (k,)) * (1 - 1e-7)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []
    nrow = 0

    def add(r, c_, v, low, high):
        nonlocal nrow
        rows.append(np.asarray(r) + nrow)
        cols.append(np.asarray(c_))
        vals.append(np.asarray(v, dtype=float))
        lo.append(np.atleast_1d(np.asarray(low, dtype=float)))
        hi.append(np.atleast_1d(np.asarray(high, dtype=float)))
        nrow += len(np.atleast_1d(low))

    zatoms = np.nonzero(zone)[0]
    zpos = np.full(n, -1, dtype=np.int64)
    zpos[zatoms] = np.arange(len(zatoms))
    add(zpos[aa], np.arange(m), np.ones(m), np.ones(len(zatoms)), np.ones(len(zatoms)))
    slack0 = m
    n_slack = 4 * k
    for t in range(k):
        sel = np.nonzero(tt == t)[0]
        s = slack0 + 4 * t
        add(
            np.zeros(len(sel) + 2, dtype=np.int64),
            np.concatenate([sel, [s, s + 1]]),
            np.concatenate([w[aa[sel]], [1.0, -1.0]]),
            (1 - band[t]) * problem.targets[t] - fw[t],
            (1 + band[t]) * problem.targets[t] - fw[t],
        )
        if p_total > 0:
            add(
                np.zeros(len(sel) + 2, dtype=np.int64),
                np.concatenate([sel, [s + 2, s + 3]]),
                np.concatenate([pr[aa[sel]], [1.0, -1.0]]),
                (1 - secondary_tolerance) * ptarget[t] - fp[t],
                (1 + secondary_tolerance) * ptarget[t] - fp[t],
            )
    mean_w = float(w.sum()) / p_total if p_total > 0 else 0.0
    slack_cost = np.tile(
        [_BALANCE_PENALTY, _BALANCE_PENALTY, _SECONDARY_PENALTY * mean_w, _SECONDARY_PENALTY * mean_w], k
    )
    # heavy metros: span at most their parts' count of territories
    n_group = 0
    y_lower = np.zeros(0)
    if len(problem.group_limit) and (problem.group >= 0).any():
        g = problem.group
        gl = len(problem.group_limit)
        held_fixed = np.zeros((gl, k), dtype=bool)
        fx = out & (g >= 0)
        held_fixed[g[fx], labels[fx]] = True
        gvar = aa[g[aa] >= 0]
        pairs = np.zeros((gl, k), dtype=bool)
        pairs[g[gvar], tt[g[aa] >= 0]] = True
        pairs |= held_fixed
        gg, gt = np.nonzero(pairs)
        n_group = len(gg)
        ypos = np.full((gl, k), -1, dtype=np.int64)
        ypos[gg, gt] = m + n_slack + np.arange(n_group)
        y_lower = held_fixed[gg, gt].astype(float)
        held = np.nonzero(g[aa] >= 0)[0]
        add(
            np.repeat(np.arange(len(held)), 2),
            np.column_stack([held, ypos[g[aa[held]], tt[held]]]).ravel(),
            np.tile([1.0, -1.0], len(held)),
            np.full(len(held), -np.inf),
            np.zeros(len(held)),
        )
        add(gg, m + n_slack + np.arange(n_group), np.ones(n_group), np.full(gl, -np.inf), problem.group_limit)
    c = np.concatenate([cost, slack_cost, np.zeros(n_group)])
    nv = m + n_slack + n_group
    lower = np.concatenate([np.zeros(m + n_slack), y_lower])
    upper = np.concatenate([np.ones(m), np.full(n_slack, np.inf), np.ones(n_group)])
    integrality = np.concatenate([np.ones(m), np.zeros(n_slack), np.ones(n_group)])

    def as_x(lab: np.ndarray) -> np.ndarray:
        x = np.zeros(nv)
        x[:m] = lab[aa] == tt
        tw = np.bincount(lab, weights=w, minlength=k)
        tp = np.bincount(lab, weights=pr, minlength=k)
        s = slack0 + 4 * np.arange(k)
        x[s] = np.maximum((1 - band) * problem.targets - tw, 0)
        x[s + 1] = np.maximum(tw - (1 + band) * problem.targets, 0)
        if p_total > 0:
            x[s + 2] = np.maximum((1 - secondary_tolerance) * ptarget - tp, 0)
            x[s + 3] = np.maximum(tp - (1 + secondary_tolerance) * ptarget, 0)
        if n_group:
            x[m + n_slack :] = np.maximum(y_lower, 0)
            held = np.nonzero((problem.group[aa] >= 0) & (x[:m] > 0.5))[0]
            x[ypos[problem.group[aa[held]], tt[held]]] = 1.0
        return x

    # contiguity by layers: hops from the root through the territory as it is, then outwards;
    # an atom may be in t only with a neighbour one layer closer to t's root in t as well
    layer = _layers(problem, labels, roots, zone, np.bincount(tt, minlength=k) > 0)
    ct_rows, ct_cols, ct_vals = [], [], []
    fixed_rows: list[int] = []
    for i in range(m):
        a, t = int(aa[i]), int(tt[i])
        la = layer[t][a]
        nb = ix[ip[a] : ip[a + 1]]
        closer = nb[(layer[t][nb] >= 0) & (layer[t][nb] < la)]
        if (fixed_t[closer] == t).any():
            continue
        v = var[closer, t]
        v = v[v >= 0]
        r = len(ct_rows) and ct_rows[-1] + 1
        ct_rows.extend([r] * (len(v) + 1))
        ct_cols.extend([i, *v.tolist()])
        ct_vals.extend([1.0] + [-1.0] * len(v))
    # an atom held outside the zone keeps a neighbour closer to its root in its territory
    touching = np.zeros(n, dtype=bool)
    touching[ix[zone[src]]] = True
    for f in np.nonzero(touching & (fixed_t >= 0))[0]:
        t = int(fixed_t[f])
        if f == roots[t] or t not in layer or layer[t][f] < 0:
            continue
        nb = ix[ip[f] : ip[f + 1]]
        closer = nb[(layer[t][nb] >= 0) & (layer[t][nb] < layer[t][f])]
        if (fixed_t[closer] == t).any():
            continue
        v = var[closer, t]
        v = v[v >= 0]
        r = len(ct_rows) and ct_rows[-1] + 1
        # 1 <= sum of x[b, t]  as  -sum x[b, t] <= -1
        ct_rows.extend([r] * len(v))
        ct_cols.extend(v.tolist())
        ct_vals.extend([-1.0] * len(v))
        fixed_rows.append(r)
    if ct_rows:
        count = ct_rows[-1] + 1
        bound = np.zeros(count)
        bound[fixed_rows] = -1.0
        add(np.array(ct_rows), np.array(ct_cols), np.array(ct_vals), np.full(count, -np.inf), bound)
    # the plan given satisfies every constraint: an answer must cost less to be taken.  Unless
    # a heavy metro spans more territories than its parts (reps left since it was split): then
    # the plan is no answer at all, and any answer is taken (the engine ranks it)
    incumbent = np.inf if metro_spans_over(problem, labels) else float(c @ as_x(labels))
    a_mat = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nrow, nv))
    x = _solve(c, (np.concatenate(lo), a_mat, np.concatenate(hi)), lower, upper, integrality, node_limit, time_limit)
    if x is None or (np.isfinite(incumbent) and float(c @ x) >= incumbent - 1e-9 * max(abs(incumbent), 1.0)):
        return labels
    trial = labels.copy()
    on = x[:m] > 0.5
    trial[aa[on]] = tt[on]
    # the layers keep every territory connected to its root; a guard all the same (a plan given
    # with a territory in pieces keeps them): never return more pieces than were given
    if _split_territories(problem, trial) > _split_territories(problem, labels):
        return labels
    return trial
