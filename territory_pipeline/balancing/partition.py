"""Core graph partitioner: seeded region growing, then boundary-move local search.

Works on plain numpy arrays so that the engine can use it both for the main
balancing (atoms = whole metros, units, metro parts) and for cutting a heavy
metro into parts along its H3 cells.

Objective minimised by the local search, summed over territories k (d_k is the
signed relative deviation (w_k - mu_k) / mu_k):

    balance_weight * d_k^2 + excess_weight * max(0, |d_k| - margin * tau)^2
  + hard_weight * max(0, |d_k| - tau)
  + secondary_weight * (max(0, |p_k| - margin2 * tau2)^2 + max(0, |h_k| - margin2 * tau2)^2)

with p_k, h_k the provider-count and workload deviations.  The hard term puts
the tolerance first: beyond ±tau every 1% of excess costs 1.0, more than the
provider-count or workload balance (where workload includes travel it often
cannot be balanced at all) that moving a unit of ordinary weight could buy, so
those terms no longer push territories past the tolerance; only a very light
unit carrying many providers can still cross it, by at most its own weight.
Plus per-atom terms:
compactness (weight x squared distance to the territory centroid, scaled by
the mean squared radius), relationship loss and disruption (weight of atoms
leaving their previous territory).  A move takes a boundary atom from its
territory A to an adjacent territory B; it is applied only if the exact change
of the objective is negative and A stays connected (A's neighbours of the atom
still reach each other without it).  Every applied move strictly lowers the
objective, so the search terminates.

When no single move helps, compound moves are tried, each kept only when the
whole objective drops: ejection chains along a path of territories, then pair
re-growth (two adjacent territories re-split along a connected sweep of their
union).  :func:`polish` is a large-neighbourhood search on top: a territory
beyond the margin and its neighbours up to two hops away are cut afresh by
seeded bisections, each improved by :func:`improve`.  Atoms with a ``group``
(units of a split heavy metro) only join territories already holding an atom of
their group, so a metro is never spread over more territories than it had.
"""

from __future__ import annotations

import heapq
import math
import os
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import pairwise

import numpy as np
from scipy.spatial import cKDTree

_EPS = 1e-12


@dataclass
class PartitionProblem:
    """A weighted graph to cut into K connected territories with given targets."""

    weight: np.ndarray  # (n,) opportunity
    providers: np.ndarray  # (n,) provider counts (float)
    xy: np.ndarray  # (n, 2) projected miles
    indptr: np.ndarray
    indices: np.ndarray
    targets: np.ndarray  # (K,) opportunity targets
    bases: np.ndarray  # (K, 2) rep bases (projected), NaN when unknown
    locked: np.ndarray  # (n,) territory index or -1
    previous: np.ndarray  # (n,) previous territory index or -1
    relationship_keys: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )  # atom*K+k, sorted
    relationship_values: np.ndarray = field(
        default_factory=lambda: np.empty(0)
    )  # strength x weight / mean target
    group: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )  # (n,) heavy-metro index or -1: such an atom may only join a territory already holding its metro
    group_limit: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )  # (groups,) most territories a heavy metro may span (empty: only its current holders)
    call_hours: float = 0.0  # visits x call time per provider
    travel_hours_per_mile: float = 0.0  # visits x circuity / mph per provider

    @property
    def n(self) -> int:
        return len(self.weight)

    @property
    def k(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class SearchParams:
    """Weights of the local-search objective (see module docstring)."""

    tolerance: float = 0.05
    secondary_tolerance: float = 0.15
    balance_weight: float = 1.0
    excess_weight: float = 200.0
    margin: float = 0.5
    hard_weight: float = 100.0
    secondary_weight: float = 0.3
    secondary_margin: float = 0.8
    compactness_weight: float = 0.05
    relationship_weight: float = 0.5
    disruption_weight: float = 0.0
    max_rounds: int = 5000
    stall_rounds: int = 25  # stop after this many rounds without a new best objective
    pair_moves: bool = True  # re-split pairs of territories when chains are stuck
    deadline: float = math.inf  # time.perf_counter() value


def choose_seeds(problem: PartitionProblem, homes: np.ndarray, seed: int) -> np.ndarray:
    """One seed atom per territory (-1 when there are fewer atoms than territories).

    A territory with locked atoms is seeded at its locked atom nearest its home;
    a rep with a home at the nearest free atom; the others at the atoms nearest
    the remaining centres of a weighted k-means (seeded, so deterministic).
    """
    from sklearn.cluster import KMeans

    n, k = problem.n, problem.k
    seeds = np.full(k, -1, dtype=np.int64)
    used = np.zeros(n, dtype=bool)
    used[problem.locked >= 0] = True
    tree = cKDTree(problem.xy)
    has_home = ~np.isnan(homes).any(axis=1)
    for t in range(k):
        own = np.nonzero(problem.locked == t)[0]
        if len(own):
            ref = homes[t] if has_home[t] else problem.xy[own].mean(axis=0)
            seeds[t] = own[np.argmin(np.hypot(*(problem.xy[own] - ref).T))]

    def nearest_free(point: np.ndarray) -> int:
        kq = min(n, 16)
        while True:
            _, idx = tree.query(point, k=kq)
            for i in np.atleast_1d(idx):
                if i < n and not used[i]:
                    return int(i)
            if kq >= n:
                return -1
            kq = min(n, kq * 4)

    for t in range(k):
        if seeds[t] < 0 and has_home[t]:
            s = nearest_free(homes[t])
            if s >= 0:
                seeds[t], used[s] = s, True
    todo = [t for t in range(k) if seeds[t] < 0]
    if todo and (~used).any():
        free = np.nonzero(~used)[0]
        m = min(k, len(free))
        w = problem.weight[free]
        km = KMeans(n_clusters=m, n_init=1, max_iter=60, random_state=seed)
        km.fit(problem.xy[free], sample_weight=w if w.sum() > 0 else None)
        centres = [c for c in km.cluster_centers_]
        placed = [problem.xy[seeds[t]] for t in range(k) if seeds[t] >= 0]
        for p in placed:  # drop the centre each existing seed already covers
            if len(centres) <= len(todo):
                break
            d = [float(np.hypot(*(c - p))) for c in centres]
            centres.pop(int(np.argmin(d)))
        for t, c in zip(todo, centres):
            s = nearest_free(c)
            if s >= 0:
                seeds[t], used[s] = s, True
    return seeds


def grow(
    problem: PartitionProblem, labels: np.ndarray, anchors: np.ndarray
) -> np.ndarray:
    """Balanced multi-source region growing from the assigned atoms of ``labels``.

    The territory with the lowest fill (w_k / mu_k) always grows next, taking
    its unassigned frontier atom nearest its anchor point.  A heavy-metro atom
    (``problem.group``) joins a territory not yet holding its metro only while
    the metro spans fewer territories than its limit (``problem.group_limit``);
    atoms left over by that rule are grown in a second pass without it.
    Returns new labels where every atom reachable from a territory is assigned.
    """
    labels = _grow(problem, labels, anchors, True)
    if (labels < 0).any() and len(problem.group_limit):
        labels = _grow(problem, labels, anchors, False)
    return labels


def _grow(
    problem: PartitionProblem, labels: np.ndarray, anchors: np.ndarray, limit_groups: bool
) -> np.ndarray:
    labels = labels.copy()
    k = problem.k
    w, xy, indptr, indices = problem.weight, problem.xy, problem.indptr, problem.indices
    limited = limit_groups and len(problem.group_limit) > 0
    if limited:
        group, glimit = problem.group, problem.group_limit
        holders: list[set[int]] = [set() for _ in range(len(glimit))]
        for u in np.nonzero((labels >= 0) & (group >= 0))[0]:
            holders[group[u]].add(int(labels[u]))
    tw = np.bincount(labels[labels >= 0], weights=w[labels >= 0], minlength=k).astype(
        float
    )
    heaps: list[list[tuple[float, int]]] = [[] for _ in range(k)]
    assigned = np.nonzero(labels >= 0)[0]
    for u in assigned:
        t = labels[u]
        for v in indices[indptr[u] : indptr[u + 1]]:
            if labels[v] < 0:
                heaps[t].append((float(np.hypot(*(xy[v] - anchors[t]))), int(v)))
    for h in heaps:
        heapq.heapify(h)
    tg = problem.targets
    order = [
        (tw[t] / tg[t] if tg[t] > 0 else math.inf, t) for t in range(k) if heaps[t]
    ]
    heapq.heapify(order)
    while order:
        _, t = heapq.heappop(order)
        h = heaps[t]
        while h and labels[h[0][1]] >= 0:
            heapq.heappop(h)
        if limited:
            while h and group[h[0][1]] >= 0:
                g = group[h[0][1]]
                if t in holders[g] or len(holders[g]) < glimit[g]:
                    holders[g].add(t)
                    break
                heapq.heappop(h)  # the metro is held by as many territories as it may be
                while h and labels[h[0][1]] >= 0:
                    heapq.heappop(h)
        if not h:
            continue
        _, u = heapq.heappop(h)
        labels[u] = t
        tw[t] += w[u]
        ax, ay = anchors[t]
        for v in indices[indptr[u] : indptr[u + 1]]:
            if labels[v] < 0:
                heapq.heappush(h, (math.hypot(xy[v, 0] - ax, xy[v, 1] - ay), int(v)))
        heapq.heappush(order, (tw[t] / tg[t] if tg[t] > 0 else math.inf, t))
    return labels


class _State:
    """Incremental bookkeeping of territory totals for the local search."""

    def __init__(
        self, problem: PartitionProblem, labels: np.ndarray, params: SearchParams
    ):
        self.p = problem
        self.params = params
        self.labels = labels
        k = problem.k
        self.tw = np.bincount(labels, weights=problem.weight, minlength=k).astype(float)
        self.tp = np.bincount(labels, weights=problem.providers, minlength=k).astype(
            float
        )
        self.count = np.bincount(labels, minlength=k)
        grouped = (
            problem.group >= 0 if len(problem.group) else np.zeros(problem.n, bool)
        )
        self.gcount = np.zeros(
            (int(problem.group.max()) + 1 if grouped.any() else 0, k)
        )
        if grouped.any():
            np.add.at(self.gcount, (problem.group[grouped], labels[grouped]), 1)
        # territories holding each heavy metro, kept up to date by apply (allowed asks for
        # it once per candidate move: counting it afresh each time took a fifth of a
        # national rebalance)
        self.holders = (self.gcount > 0).sum(axis=1)
        # each territory's count of changes, so what depends on its atoms only can be reused
        self.version = np.zeros(k, dtype=np.int64)
        self._cuts: dict[tuple[int, int], tuple[int, list[int]]] = {}
        total_w = problem.weight.sum()
        share = problem.targets / total_w if total_w > 0 else np.full(k, 1.0 / k)
        self.share = share
        self.ptarget = share * problem.providers.sum()
        self.mu_bar = float(problem.targets.mean()) or 1.0
        self.use_secondary = problem.providers.sum() > 0 and params.secondary_weight > 0
        # plain-float copies for the one-move arithmetic (list indexing beats array indexing)
        self._weight = problem.weight.astype(float).tolist()
        self._providers = problem.providers.astype(float).tolist()
        self._x, self._y = problem.xy[:, 0].tolist(), problem.xy[:, 1].tolist()
        self._targets = problem.targets.astype(float).tolist()
        self._ptarget = self.ptarget.astype(float).tolist()
        # the labels as a list, kept in step by apply (the graph searches read one label at a
        # time, where list indexing costs a fraction of array indexing)
        self.lab = labels.tolist()
        self.refresh()
        d2 = ((problem.xy - self.centres[labels]) ** 2).sum(axis=1)
        r2 = float((d2 * problem.weight).sum() / max(total_w, _EPS))
        self.r2 = r2 if r2 > 0 else 1.0

    def refresh(self) -> None:
        """Recompute centroids, bases and workload totals (once per round)."""
        p, labels, k = self.p, self.labels, self.p.k
        wsum = np.bincount(labels, weights=p.weight, minlength=k)
        cnt = np.maximum(np.bincount(labels, minlength=k), 1)
        cx = np.bincount(labels, weights=p.weight * p.xy[:, 0], minlength=k)
        cy = np.bincount(labels, weights=p.weight * p.xy[:, 1], minlength=k)
        ux = np.bincount(labels, weights=p.xy[:, 0], minlength=k) / cnt
        uy = np.bincount(labels, weights=p.xy[:, 1], minlength=k) / cnt
        safe = wsum > 0
        self.centres = np.column_stack(
            [
                np.where(safe, cx / np.where(safe, wsum, 1), ux),
                np.where(safe, cy / np.where(safe, wsum, 1), uy),
            ]
        )
        self.bases = np.where(np.isnan(p.bases), self.centres, p.bases)
        self.wl_atom = self._workload(np.arange(p.n), labels)
        self.twl = np.bincount(labels, weights=self.wl_atom, minlength=k)
        self.wtarget = self.share * self.twl.sum()

    def _workload(self, u: np.ndarray, t: np.ndarray) -> np.ndarray:
        p = self.p
        dist = np.hypot(*(p.xy[u] - self.bases[t]).T)
        return p.providers[u] * (p.call_hours + p.travel_hours_per_mile * dist)

    def _fbal(self, d: np.ndarray) -> np.ndarray:
        q = self.params
        ex = np.maximum(0.0, np.abs(d) - q.margin * q.tolerance)
        out = q.balance_weight * d * d + q.excess_weight * ex * ex
        if q.hard_weight:
            out = out + q.hard_weight * np.maximum(0.0, np.abs(d) - q.tolerance)
        return out

    def _fsec(self, d: np.ndarray) -> np.ndarray:
        q = self.params
        ex = np.maximum(0.0, np.abs(d) - q.secondary_margin * q.secondary_tolerance)
        return q.secondary_weight * ex * ex

    def delta(self, u: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact objective change of moving atoms u from a to b (vectorised, one atom each)."""
        p = self.p
        la = self._workload(u, a) if self.use_workload else 0.0
        lb = self._workload(u, b) if self.use_workload else 0.0
        return self._totals_delta(
            p.weight[u], p.providers[u], la, lb, a, b
        ) + self._atom_terms(u, a, b)

    def chunk_delta(self, chunk: list[int], a: int, b: int) -> float:
        """Exact objective change of moving the atoms of ``chunk`` together from a to b.

        Asked for every cut atom the search meets, mostly with a few atoms: the sums run in
        plain floats (numpy's sum of fewer than eight numbers adds them in order, so the
        result is the same to the last bit as :meth:`delta`'s array arithmetic); the
        per-atom terms of longer chunks are summed by numpy, as before."""
        p, q = self.p, self.params
        x, pc, la, lb = self._chunk_totals(chunk, a, b, self.use_workload)
        if len(chunk) >= 8 or (q.relationship_weight and len(p.relationship_keys)):
            terms = float(self._atom_terms(np.array(chunk), a, b).sum())
        else:
            terms = 0.0
            for u in chunk:
                terms += self._atom_terms1(u, a, b)
        return float(self._pair_delta(x, pc, la, lb, a, b) + terms)

    def _chunk_totals(self, chunk: list[int], a: int, b: int, workload: bool) -> tuple[float, float, float, float]:
        """The weight, providers and workload (in a, in b; 0 without ``workload``) of the atoms of
        ``chunk``: in plain floats under eight atoms (numpy adds so few in order, so the sums
        are the same to the last bit), by numpy above."""
        if len(chunk) >= 8:
            p, c = self.p, np.array(chunk)
            la = float(self._workload(c, a).sum()) if workload else 0.0
            lb = float(self._workload(c, b).sum()) if workload else 0.0
            return float(p.weight[c].sum()), float(p.providers[c].sum()), la, lb
        x = pc = la = lb = 0.0
        for u in chunk:
            x += self._weight[u]
            pc += self._providers[u]
        if workload:
            for u in chunk:
                la += self._workload1(u, a)
            for u in chunk:
                lb += self._workload1(u, b)
        return x, pc, la, lb

    def _workload1(self, u: int, t: int) -> float:
        """:meth:`_workload` of one atom in territory t (the same arithmetic)."""
        p = self.p
        dist = float(np.hypot(self._x[u] - self.bases[t, 0], self._y[u] - self.bases[t, 1]))
        return self._providers[u] * (p.call_hours + p.travel_hours_per_mile * dist)

    def _fbal1(self, d: float) -> float:
        """:meth:`_fbal` of one deviation."""
        q = self.params
        ex = max(0.0, abs(d) - q.margin * q.tolerance)
        out = q.balance_weight * d * d + q.excess_weight * ex * ex
        if q.hard_weight:
            out = out + q.hard_weight * max(0.0, abs(d) - q.tolerance)
        return out

    def _fsec1(self, d: float) -> float:
        """:meth:`_fsec` of one deviation."""
        q = self.params
        ex = max(0.0, abs(d) - q.secondary_margin * q.secondary_tolerance)
        return q.secondary_weight * ex * ex

    def _pair_delta(self, x: float, pc: float, la: float, lb: float, a: int, b: int) -> float:
        """:meth:`_totals_delta` of one move of weight x, pc providers and workload la (in a)
        / lb (in b) from a to b, in plain floats."""
        tg = self._targets
        twa, twb = float(self.tw[a]), float(self.tw[b])
        fb = self._fbal1
        out = (
            fb((twa - x - tg[a]) / tg[a])
            + fb((twb + x - tg[b]) / tg[b])
            - fb((twa - tg[a]) / tg[a])
            - fb((twb - tg[b]) / tg[b])
        )
        if self.use_secondary:
            fs = self._fsec1
            pa, pb = max(self._ptarget[a], _EPS), max(self._ptarget[b], _EPS)
            tpa, tpb = float(self.tp[a]), float(self.tp[b])
            out += fs((tpa - pc - pa) / pa) + fs((tpb + pc - pb) / pb) - fs((tpa - pa) / pa) - fs((tpb - pb) / pb)
            if self.use_workload:
                wa, wb = max(float(self.wtarget[a]), _EPS), max(float(self.wtarget[b]), _EPS)
                wla, wlb = float(self.twl[a]), float(self.twl[b])
                out += fs((wla - la - wa) / wa) + fs((wlb + lb - wb) / wb) - fs((wla - wa) / wa) - fs((wlb - wb) / wb)
        return out

    def _atom_terms1(self, u: int, a: int, b: int) -> float:
        """:meth:`_atom_terms` of one atom, without relationships (the same arithmetic)."""
        p, q = self.p, self.params
        xs = self._weight[u] / self.mu_bar
        out = 0.0
        if q.compactness_weight:
            x, y = self._x[u], self._y[u]
            ca, cb = self.centres[a], self.centres[b]
            dxa, dya = x - float(ca[0]), y - float(ca[1])
            dxb, dyb = x - float(cb[0]), y - float(cb[1])
            da = dxa * dxa + dya * dya
            db = dxb * dxb + dyb * dyb
            out += q.compactness_weight * xs * (db - da) / self.r2
        if q.disruption_weight:
            prev = int(p.previous[u])
            out += q.disruption_weight * xs * (prev >= 0) * (float(prev != b) - float(prev != a))
        return out

    @property
    def use_workload(self) -> bool:
        return self.use_secondary and (
            self.p.call_hours > 0 or self.p.travel_hours_per_mile > 0
        )

    def _totals_delta(self, x, pc, la, lb, a, b) -> np.ndarray:
        tg = self.p.targets
        out = (
            self._fbal((self.tw[a] - x - tg[a]) / tg[a])
            + self._fbal((self.tw[b] + x - tg[b]) / tg[b])
            - self._fbal((self.tw[a] - tg[a]) / tg[a])
            - self._fbal((self.tw[b] - tg[b]) / tg[b])
        )
        if self.use_secondary:
            pa, pb = (
                np.maximum(self.ptarget[a], _EPS),
                np.maximum(self.ptarget[b], _EPS),
            )
            out += (
                self._fsec((self.tp[a] - pc - pa) / pa)
                + self._fsec((self.tp[b] + pc - pb) / pb)
                - self._fsec((self.tp[a] - pa) / pa)
                - self._fsec((self.tp[b] - pb) / pb)
            )
        if self.use_workload:
            wa, wb = (
                np.maximum(self.wtarget[a], _EPS),
                np.maximum(self.wtarget[b], _EPS),
            )
            out += (
                self._fsec((self.twl[a] - la - wa) / wa)
                + self._fsec((self.twl[b] + lb - wb) / wb)
                - self._fsec((self.twl[a] - wa) / wa)
                - self._fsec((self.twl[b] - wb) / wb)
            )
        return out

    def _atom_terms(self, u: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-atom terms: compactness, disruption, relationships."""
        p, q = self.p, self.params
        xs = p.weight[u] / self.mu_bar
        out = np.zeros(len(u))
        if q.compactness_weight:
            da = ((p.xy[u] - self.centres[a]) ** 2).sum(axis=1)
            db = ((p.xy[u] - self.centres[b]) ** 2).sum(axis=1)
            out += q.compactness_weight * xs * (db - da) / self.r2
        if q.disruption_weight:
            prev = p.previous[u]
            known = prev >= 0
            out += (
                q.disruption_weight
                * xs
                * known
                * ((prev != b).astype(float) - (prev != a).astype(float))
            )
        if q.relationship_weight and len(p.relationship_keys):
            out += q.relationship_weight * (
                self._rel(u * p.k + a) - self._rel(u * p.k + b)
            )
        return out

    def total(self) -> float:
        """Current objective (centres fixed since the last refresh)."""
        p = self.p
        tg = p.targets
        out = self._fbal((self.tw - tg) / tg).sum()
        if self.use_secondary:
            pt = np.maximum(self.ptarget, _EPS)
            out += self._fsec((self.tp - pt) / pt).sum()
        if self.use_workload:
            wt = np.maximum(self.wtarget, _EPS)
            out += self._fsec((self.twl - wt) / wt).sum()
        u = np.arange(p.n)
        lab = self.labels
        xs = p.weight / self.mu_bar
        q = self.params
        if q.compactness_weight:
            out += (
                q.compactness_weight
                * (xs * ((p.xy - self.centres[lab]) ** 2).sum(axis=1)).sum()
                / self.r2
            )
        if q.disruption_weight:
            out += (
                q.disruption_weight
                * (xs * ((p.previous >= 0) & (p.previous != lab))).sum()
            )
        if q.relationship_weight and len(p.relationship_keys):
            out -= q.relationship_weight * self._rel(u * p.k + lab).sum()
        return float(out)

    def _rel(self, keys: np.ndarray) -> np.ndarray:
        rk, rv = self.p.relationship_keys, self.p.relationship_values
        pos = np.minimum(np.searchsorted(rk, keys), len(rk) - 1)
        return np.where(rk[pos] == keys, rv[pos], 0.0)

    def allowed(self, u: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether atoms u may join territories b (a heavy-metro atom only joins a holder of its metro)."""
        if not len(self.gcount):
            return np.ones(len(u), dtype=bool)
        g = self.p.group[u]
        ok = (g < 0) | (self.gcount[np.maximum(g, 0), b] > 0)
        if len(self.p.group_limit):
            gi = np.maximum(g, 0)
            ok |= (g >= 0) & (self.holders[gi] < self.p.group_limit[gi])
        return ok

    def chunk_allowed(self, chunk: list[int], b: int) -> bool:
        """Whether all atoms of ``chunk`` may join territory b (:meth:`allowed`, atom by atom:
        asked for every candidate move, mostly of one atom, where array calls cost more)."""
        if not len(self.gcount):
            return True
        group, limit = self.p.group, self.p.group_limit
        for x in chunk:
            g = group[x]
            if g < 0 or self.gcount[g, b] > 0:
                continue
            if not len(limit) or self.holders[g] >= limit[g]:
                return False
        return True

    def cut_off(self, u: int, a: int, nbrs: list[list[int]]) -> list[int]:
        """:func:`_cut_off` of atom u from territory a (by weight), remembered until a changes:
        the search meets the same cut atoms round after round."""
        version = int(self.version[a])
        known = self._cuts.get((u, a))
        if known is not None and known[0] == version:
            return known[1]
        rest = _cut_off(u, a, self.lab, nbrs, self.p.weight)
        self._cuts[(u, a)] = (version, rest)
        return rest

    def apply(self, chunk: list[int], a: int, b: int) -> None:
        """Move the atoms of ``chunk`` from a to b, updating the totals."""
        p = self.p
        c = np.array(chunk)
        self.version[a] += 1
        self.version[b] += 1
        if len(self.gcount):
            g = p.group[c]
            g = g[g >= 0]
            if len(g) and a != b:
                ug = np.unique(g)
                before = (self.gcount[ug, a] > 0).astype(np.int64) + (self.gcount[ug, b] > 0)
                np.add.at(self.gcount[:, a], g, -1)
                np.add.at(self.gcount[:, b], g, 1)
                self.holders[ug] += (self.gcount[ug, a] > 0).astype(np.int64) + (self.gcount[ug, b] > 0) - before
        x, pc, la, lb = self._chunk_totals(chunk, a, b, True)
        self.tw[a] -= x
        self.tw[b] += x
        self.tp[a] -= pc
        self.tp[b] += pc
        self.count[a] -= len(c)
        self.count[b] += len(c)
        self.twl[a] -= la
        self.twl[b] += lb
        self.labels[c] = b
        lab = self.lab
        for u in chunk:
            lab[u] = b


def stays_connected(u: int, a: int, labels: np.ndarray, nbrs: list[list[int]]) -> bool:
    """True when removing atom u from territory a keeps u's neighbours in a mutually reachable."""
    return _cut_off(u, a, labels, nbrs, None) == []


def _cut_off(
    u: int, a: int, labels: np.ndarray | list[int], nbrs: list[list[int]], weight: np.ndarray | None
) -> list[int] | None:
    """Atoms of territory a that removing u would separate from a's heaviest remaining part.

    Returns [] when a stays connected; None when asked only for connectivity
    (weight None) and it would not stay connected.
    """
    ring = [v for v in nbrs[u] if labels[v] == a]
    if len(ring) <= 1:
        return []
    # fast path: u's neighbours in a linked among themselves (the usual case on a Delaunay or
    # H3 graph) keep a connected, since every path to u in a ends at one of them
    if _connected(ring, nbrs):
        return []
    found = _ring_parts(u, a, ring, labels, nbrs, weight)
    if found is None:
        return []
    if weight is None:
        return None
    return sorted(y for part in found for y in part)


def _ring_parts(
    u: int, a: int, ring: list[int], labels: np.ndarray | list[int], nbrs: list[list[int]], weight: np.ndarray | None
) -> list[list[int]] | None:
    """Territory a without u, searched from each of u's neighbours in a at once.

    The searches take one step each in turn and merge where they meet, so the work is
    bounded by the lighter parts rather than by a.  None when all of ``ring`` meet (a stays
    connected).  Without ``weight``: [[]] once one part is searched to its end (a falls
    apart).  With it: the parts to cut off, once every part but one is searched to its end
    and the last has grown clearly heavier than each of them (it is then the heaviest,
    whatever else it holds); on a near tie every part is searched to its end and all but the
    heaviest (exact sums; ties: the part with the lowest atom) are cut off.
    """
    owner: dict[int, int] = {u: -1}
    root = list(range(len(ring)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    queues: dict[int, deque] = {}
    members: dict[int, list[int]] = {}
    for i, r in enumerate(ring):
        if r in owner:  # listed twice
            continue
        owner[r] = i
        queues[i] = deque([r])
        members[i] = [r]
    done: list[list[int]] = []
    while len(queues) > 1:
        for i in list(queues):
            if i not in queues:
                continue  # merged into another search this turn
            queue = queues[i]
            for y in nbrs[queue.popleft()]:
                if labels[y] != a:
                    continue
                j = owner.get(y)
                if j is None:
                    owner[y] = i
                    queue.append(y)
                    members[i].append(y)
                    continue
                if j == i or j < 0:  # i is a root: its own atoms need no find
                    continue
                j = find(j)
                if j == i:
                    continue
                # two searches met: one part (the one with more atoms absorbs the other)
                big, small = (i, j) if len(members[i]) >= len(members[j]) else (j, i)
                root[small] = big
                queues[big].extend(queues.pop(small))
                members[big].extend(members.pop(small))
                if not done and len(queues) == 1:
                    return None
                i = big
                queue = queues[i]
            if not queue:
                done.append(members.pop(i))
                del queues[i]
                if weight is None:
                    return [[]]
                if len(queues) <= 1:
                    break
    if not done:  # u's neighbours in a were one search from the start
        return None
    if weight is None:
        return [[]]
    if queues:
        # the last part, grown until it clearly outweighs the others (or to its end)
        heaviest = max(float(weight[part].sum()) for part in done)
        margin = 1e-9 * max(heaviest, 1.0)
        (i, queue), = queues.items()
        grown = members[i]
        mass = float(weight[grown].sum())
        while queue:
            if mass > heaviest + margin:
                return done
            for y in nbrs[queue.popleft()]:
                if labels[y] == a and y not in owner:
                    owner[y] = i
                    queue.append(y)
                    grown.append(y)
                    mass += float(weight[y])
        done.append(grown)
    keep = max(range(len(done)), key=lambda i: (math.fsum(weight[done[i]]), -min(done[i])))
    return [part for i, part in enumerate(done) if i != keep]


def _path_moves(
    state: _State,
    nbrs: list[list[int]],
    movable: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    max_chunk: int,
    max_depth: int = 8,
    max_starts: int = 24,
) -> int:
    """Ejection chains: shift weight from an off-target territory along a path of territories.

    For each territory beyond the margin (worst first), a breadth-first search on
    the territory graph finds the reachable territory deviating most the other
    way; along the path each territory passes one boundary atom (closest in
    weight to the amount to shift, keeping the donor connected) to the next.
    The chain is kept only when the whole objective decreases.  Returns the
    number of chains applied.
    """
    p, labels, q = state.p, state.labels, state.params
    k = p.k
    cut = labels[src] != labels[dst]
    tpairs = np.unique(labels[src[cut]] * k + labels[dst[cut]])
    tadj: list[list[int]] = [[] for _ in range(k)]
    for key in tpairs.tolist():
        tadj[key // k].append(key % k)
    dev = state.tw / p.targets - 1.0
    applied = 0
    for a in np.argsort(-np.abs(dev), kind="stable")[:max_starts].tolist():
        dev = state.tw / p.targets - 1.0
        if abs(dev[a]) <= q.margin * q.tolerance:
            break
        sign = 1.0 if dev[a] > 0 else -1.0
        parent = {a: -1}
        depth = {a: 0}
        frontier = [a]
        for level in range(1, max_depth + 1):
            nxt = []
            for t in frontier:
                for v in tadj[t]:
                    if v not in parent:
                        parent[v] = t
                        depth[v] = level
                        nxt.append(v)
            frontier = nxt
        # with a previous plan every hop moves someone's accounts: prefer the nearest end
        near_first = q.disruption_weight > 0
        ends = sorted(
            (depth[v] if near_first else 0, sign * dev[v], v)
            for v in parent
            if v != a and sign * dev[v] < sign * dev[a] - q.tolerance * 0.5
        )
        for _, _, best in ends[:3]:
            if _try_chain(state, a, best, parent, sign, nbrs, movable, max_chunk):
                applied += 1
                break
    return applied


def _try_chain(
    state: _State,
    a: int,
    best: int,
    parent: dict[int, int],
    sign: float,
    nbrs: list[list[int]],
    movable: np.ndarray,
    max_chunk: int,
) -> bool:
    """Apply one ejection chain between a and best; undo it unless the objective drops."""
    p, labels = state.p, state.labels
    path = [best]
    while parent[path[-1]] != -1:
        path.append(parent[path[-1]])
    path.reverse()  # a ... best
    if sign < 0:
        path.reverse()  # weight flows from the heavy end
    amount = min(abs(state.tw[a] - p.targets[a]), abs(state.tw[best] - p.targets[best]))
    before = state.total()
    done: list[tuple[list[int], int, int]] = []
    ok = True
    for x, y in pairwise(path):
        members = np.nonzero(labels == x)[0]
        if len(members) <= 1:
            ok = False
            break
        lab = state.lab
        border = [m for m in members.tolist() if movable[m] and any(lab[v] == y for v in nbrs[m])]
        border.sort(key=lambda m: (abs(p.weight[m] - amount), m))
        choice = None
        for m in border[:6]:
            rest = state.cut_off(m, x, nbrs)
            if len(rest) > max_chunk or (rest and (~movable[rest]).any()):
                continue
            chunk = [m, *rest]
            if not state.chunk_allowed(chunk, y):
                continue
            gap = abs(p.weight[chunk].sum() - amount)
            if choice is None or gap < choice[0]:
                choice = (gap, chunk)
        if choice is None or len(choice[1]) >= len(members):
            ok = False
            break
        state.apply(choice[1], x, y)
        done.append((choice[1], x, y))
    if ok and state.total() < before - _EPS:
        return True
    for chunk, x, y in reversed(done):
        state.apply(chunk, y, x)
    return False


def _territory_graph(
    labels: np.ndarray, src: np.ndarray, dst: np.ndarray, k: int
) -> list[list[int]]:
    """Adjacency lists of the territories (sorted)."""
    cut = labels[src] != labels[dst]
    tpairs = np.unique(labels[src[cut]] * k + labels[dst[cut]])
    tadj: list[list[int]] = [[] for _ in range(k)]
    for key in tpairs.tolist():
        tadj[key // k].append(key % k)
    return tadj


def _sweep_order(
    atoms: np.ndarray, xy: np.ndarray, nbrs: list[list[int]], direction: np.ndarray
) -> list[int]:
    """``atoms`` in sweep order: growing from the atom lowest along ``direction``,
    always taking the frontier atom lowest along it, so every prefix is connected."""
    inside = set(atoms.tolist())
    key = {int(a): float(xy[a] @ direction) for a in atoms}
    start = min(inside, key=lambda a: (key[a], a))
    heap = [(key[start], start)]
    queued = {start}
    order: list[int] = []
    while heap:
        _, u = heapq.heappop(heap)
        order.append(u)
        for v in nbrs[u]:
            if v in inside and v not in queued:
                queued.add(v)
                heapq.heappush(heap, (key[v], v))
    return order


def _connected(rest: list[int], nbrs: list[list[int]]) -> bool:
    """Whether the atoms ``rest`` form one connected piece."""
    inside = set(rest)
    seen = {rest[0]}
    stack = [rest[0]]
    while stack:
        x = stack.pop()
        for y in nbrs[x]:
            if y in inside and y not in seen:
                seen.add(y)
                stack.append(y)
    return len(seen) == len(inside)


def _pair_regrow(
    state: _State,
    nbrs: list[list[int]],
    movable: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    max_atoms: int,
    max_starts: int = 24,
) -> int:
    """Re-split pairs of adjacent territories jointly along sweeps of their union.

    For each territory beyond the margin (worst first) and each neighbour, the
    union of the two is swept from one side along a few directions (the line
    between their centroids, turned by up to ±1 rad); every sweep prefix whose
    rest stays connected is a candidate split, and the candidate best balancing
    the two is applied when the whole objective drops (locks and metro holding
    respected).  Returns the number of pairs re-split.
    """
    p, labels, q = state.p, state.labels, state.params
    k = p.k
    tadj = _territory_graph(labels, src, dst, k)
    dev = state.tw / p.targets - 1.0
    applied = 0
    for a in np.argsort(-np.abs(dev), kind="stable")[:max_starts].tolist():
        dev = state.tw / p.targets - 1.0
        if abs(dev[a]) <= q.margin * q.tolerance:
            break
        for b in sorted(tadj[a], key=lambda t: (dev[t] * np.sign(dev[a]), t)):
            members = np.nonzero((labels == a) | (labels == b))[0]
            if len(members) > max_atoms or len(members) < 2:
                continue
            if _regrow(state, a, b, members, nbrs, movable):
                applied += 1
                break
    return applied


def _regrow(
    state: _State,
    a: int,
    b: int,
    members: np.ndarray,
    nbrs: list[list[int]],
    movable: np.ndarray,
) -> bool:
    """Try the sweep splits of territories a and b; apply the best one if it lowers the objective."""
    p, labels = state.p, state.labels
    w, tg = p.weight, p.targets
    ca, cb = state.centres[a], state.centres[b]
    base = ca - cb
    if not np.any(base):
        base = np.array([1.0, 0.0])
    base = base / np.hypot(*base)
    total_w = float(w[members].sum())
    current = float(
        state._fbal(
            np.array([state.tw[a] / tg[a] - 1.0, state.tw[b] / tg[b] - 1.0])
        ).sum()
    )
    fixed_a = members[~movable[members] & (labels[members] == a)]
    fixed_b = members[~movable[members] & (labels[members] == b)]
    candidates = []
    for turn in (0.0, 0.5, -0.5, 1.0, -1.0):
        c, s_ = math.cos(turn), math.sin(turn)
        # a's side grows from the end farthest from b (lowest along -direction)
        d = -np.array([c * base[0] - s_ * base[1], s_ * base[0] + c * base[1]])
        order = _sweep_order(members, p.xy, nbrs, d)
        if len(order) < len(members):  # a and b no longer touch
            return False
        acc = np.cumsum(w[order])[:-1]
        score = state._fbal((acc - tg[a]) / tg[a]) + state._fbal(
            (total_w - acc - tg[b]) / tg[b]
        )
        for j in np.nonzero(score < current - _EPS)[0].tolist():
            candidates.append((float(score[j]), turn, j + 1, order))
    candidates.sort(key=lambda r: r[:3])
    tried = 0
    for score, _, size, order in candidates[:40]:
        if tried >= 3:
            break
        prefix = order[:size]
        if not _connected(order[size:], nbrs):
            continue
        side_a = np.zeros(p.n, dtype=bool)
        side_a[prefix] = True
        if not side_a[fixed_a].all() or side_a[fixed_b].any():
            continue
        to_a = [int(u) for u in members if side_a[u] and labels[u] == b]
        to_b = [int(u) for u in members if not side_a[u] and labels[u] == a]
        if (to_a and not state.chunk_allowed(to_a, a)) or (
            to_b and not state.chunk_allowed(to_b, b)
        ):
            continue
        tried += 1
        before = state.total()
        if to_a:
            state.apply(to_a, b, a)
        if to_b:
            state.apply(to_b, a, b)
        if state.total() < before - _EPS:
            return True
        if to_b:
            state.apply(to_b, b, a)
        if to_a:
            state.apply(to_a, a, b)
    return False


def _stuck_moves(
    state: _State,
    nbrs: list[list[int]],
    movable: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    max_chunk: int,
) -> int:
    """Compound moves once no single move helps: ejection chains, then pair re-splits."""
    done = _path_moves(state, nbrs, movable, src, dst, max_chunk)
    if done == 0 and state.params.pair_moves:
        done = _pair_regrow(state, nbrs, movable, src, dst, 4 * max_chunk)
    return done


def improve(
    problem: PartitionProblem, labels: np.ndarray, params: SearchParams
) -> tuple[np.ndarray, int, int]:
    """Boundary-move local search with ejection chains and pair re-growth; returns (labels, rounds, moves)."""
    labels = labels.copy()
    n, k = problem.n, problem.k
    if k <= 1 or n <= 1:
        return labels, 0, 0
    indptr, indices = problem.indptr, problem.indices
    src = np.repeat(np.arange(n), np.diff(indptr))
    dst = indices
    nbrs = neighbour_lists(problem)
    movable = problem.locked < 0
    state = _State(problem, labels, params)
    max_chunk = max(8, 2 * n // k)
    rounds = moves = 0
    best, since = math.inf, 0
    for rounds in range(1, params.max_rounds + 1):
        if time.perf_counter() > params.deadline:
            break
        current = state.total()
        if current < best - 1e-9 * max(1.0, abs(best)):
            best, since = current, 0
        else:
            since += 1
            if since >= params.stall_rounds:
                break
        cut = labels[src] != labels[dst]
        keys = np.unique(src[cut] * k + labels[dst[cut]])
        u, b = keys // k, keys % k
        a = labels[u]
        ok = movable[u] & (state.count[a] > 1) & state.allowed(u, b)
        u, a, b = u[ok], a[ok], b[ok]
        if len(u) == 0:
            break
        g = state.delta(u, a, b)
        good = np.nonzero(g < -_EPS)[0]
        if len(good) == 0:
            chains = _stuck_moves(state, nbrs, movable, src, dst, max_chunk)
            moves += chains
            if chains == 0:
                break
            state.refresh()
            continue
        pending = good[np.lexsort((u[good], g[good]))]
        applied = 0
        for _ in range(
            6
        ):  # passes: exact gains hold while a move's two territories are untouched
            touched = np.zeros(k, dtype=bool)
            deferred = []
            lab = state.lab
            for i in pending.tolist():
                ui, ai, bi = int(u[i]), int(a[i]), int(b[i])
                if lab[ui] != ai:
                    continue
                if touched[ai] or touched[bi]:
                    deferred.append(i)
                    continue
                if state.count[ai] <= 1 or not any(lab[v] == bi for v in nbrs[ui]):
                    continue
                rest = state.cut_off(ui, ai, nbrs)
                chunk = [ui]
                if rest:  # u is a cut atom: move it with the part it would cut off, if that pays
                    if len(rest) > max_chunk or (~movable[rest]).any():
                        continue
                    chunk = [ui, *rest]
                    if state.chunk_delta(chunk, ai, bi) >= -_EPS:
                        continue
                if not state.chunk_allowed(chunk, bi):
                    continue
                state.apply(chunk, ai, bi)
                touched[ai] = touched[bi] = True
                applied += 1
            if not deferred:
                break
            later = np.array(deferred)
            later = later[labels[u[later]] == a[later]]
            if len(later) == 0:
                break
            g2 = state.delta(u[later], a[later], b[later])
            keep = g2 < -_EPS
            later, g2 = later[keep], g2[keep]
            pending = later[np.lexsort((u[later], g2))]
        moves += applied
        if applied == 0:
            chains = _stuck_moves(state, nbrs, movable, src, dst, max_chunk)
            moves += chains
            if chains == 0:
                break
        state.refresh()
    return labels, rounds, moves


def polish(
    problem: PartitionProblem,
    labels: np.ndarray,
    params: SearchParams,
    seed: int,
    max_starts: int = 24,
    tries: int = 4,
    hops: int = 2,
    max_region: int = 12,
    minmax: bool = False,
    with_groups: bool = False,
) -> tuple[np.ndarray, int]:
    """Large-neighbourhood search: re-partition each off-target territory with its neighbours.

    For each territory beyond the margin (worst first) that has no locked or
    heavy-metro atoms, the atoms of it and of its neighbours without such atoms
    are cut afresh into the same territories ``tries`` times (recursive
    bisection, the first straight, the others with seeded random turns, each
    improved by :func:`improve`); the best cut replaces the old one when the
    whole objective drops (with ``minmax``: when the region's largest excess
    over the tolerance drops, or stays and the objective drops).  With
    ``with_groups``, territories holding heavy-metro atoms are re-cut too, and a
    cut is kept only if each heavy metro spans at most its part count.  Regions
    are matched back to the
    territories that overlap them most (among equal targets).  Returns (labels,
    regions re-cut).
    """
    labels = labels.copy()
    n, k = problem.n, problem.k
    if k <= 1 or n <= 1:
        return labels, 0
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(n), np.diff(problem.indptr))
    dst = problem.indices
    fixed = problem.locked >= 0
    if len(problem.group) and not with_groups:
        fixed |= problem.group >= 0
    state = _State(problem, labels, params)
    q = params
    recut = 0
    version = np.zeros(k, dtype=np.int64)  # bumped whenever a territory is re-cut
    # territory -> its region and the region's versions when re-cutting it failed
    failed: dict[int, tuple] = {}
    for _ in range(3):
        changed = 0
        tadj = _territory_graph(labels, src, dst, k)
        stiff = np.bincount(labels[fixed], minlength=k) > 0
        dev = state.tw / problem.targets - 1.0
        for a in np.argsort(-np.abs(dev), kind="stable")[:max_starts].tolist():
            if time.perf_counter() > q.deadline:
                return labels, recut
            dev = state.tw / problem.targets - 1.0
            if abs(dev[a]) <= q.margin * q.tolerance:
                break
            if stiff[a]:
                continue
            region = _region(a, tadj, stiff, hops, max_region)
            seen = (tuple(region.tolist()), tuple(version[region].tolist()))
            if len(region) < 2 or failed.get(a) == seen:
                continue
            atoms = np.nonzero(np.isin(labels, region))[0]
            sub, local = _subproblem(problem, atoms, region)
            limits = None
            if with_groups and len(problem.group):
                # a heavy metro may span, inside the region, its limit less its holders outside
                g_in = problem.group[atoms]
                limits = region_limits(problem, state.gcount > 0, region)
            before = _region_score(state, region, minmax)
            old = labels[atoms].copy()
            best = None
            for i in range(tries):
                start = bisect(sub, np.arange(len(region)), rng if i else None)
                if (
                    np.bincount(start[start >= 0], minlength=len(region)) == 0
                ).any() or (start < 0).any():
                    continue
                if (sub.previous >= 0).any():  # rebalancing: cut regions named as they were
                    start = _match_overlap(start, local[old], sub)
                lab, _, _ = improve(
                    sub, start, replace(q, max_rounds=200, pair_moves=False)
                )
                lab = _match_overlap(lab, local[old], sub)
                if limits is not None:
                    held = g_in >= 0
                    spans = np.zeros(len(limits), dtype=np.int64)
                    pairs = np.unique(np.column_stack([g_in[held], lab[held]]), axis=0)
                    np.add.at(spans, pairs[:, 0], 1)
                    if (spans > limits).any():
                        continue
                _relabel(state, atoms, region[lab])
                after = _region_score(state, region, minmax)
                if _lower(after, before) and (best is None or _lower(after, best[0])):
                    best = (after, region[lab].copy())
                _relabel(state, atoms, old)
            if best is None:
                failed[a] = seen
            else:
                _relabel(state, atoms, best[1])
                version[region] += 1
                changed += 1
                tadj = _territory_graph(labels, src, dst, k)
        recut += changed
        if changed == 0:
            break
        state.refresh()
    return labels, recut


def handover(
    problem: PartitionProblem,
    labels: np.ndarray,
    params: SearchParams,
    hops: int = 2,
    max_region: int = 20,
    max_starts: int = 24,
) -> tuple[np.ndarray, int]:
    """Let a territory hemmed in by heavy metros take a holder's whole piece of one.

    A heavy metro already spread over its part count cannot reach a new
    territory cell by cell.  For each of the ``max_starts`` territories most
    under their target beyond the tolerance, t, each heavy metro t borders but
    does not hold, and each holder h of it whose other atoms stay connected
    without it: h's whole piece goes to t when t borders it (and t with the
    piece is connected); otherwise it goes to another holder bordering the
    piece while t takes one bordering cell from a territory of the
    neighbourhood (without such a cell, nothing is tried).  Either way the
    metro keeps its number of territories.  Then the neighbourhood (``hops``
    around t, h and the receiver included) is improved with the metro cells
    free to move between holders (and to a new territory while a metro spans
    fewer than its limit).  The hand-over is kept when the neighbourhood's
    largest excess over the tolerance drops (or stays and the objective drops).
    Territories with locked atoms take no part.  Returns (labels, hand-overs
    kept).
    """
    if problem.k <= 1 or not len(problem.group) or not len(problem.group_limit):
        return labels.copy(), 0
    group = problem.group

    def trials(t: int, ctx: _Repair):
        labels, nbrs, state, stiff = ctx.labels, ctx.nbrs, ctx.state, ctx.stiff
        mine = np.nonzero(labels == t)[0]
        touching = sorted(
            {
                int(group[v])
                for u in mine.tolist()
                for v in nbrs[u]
                if labels[v] != t and group[v] >= 0 and state.gcount[group[v], t] == 0
            }
        )
        for g, h, to in _handovers(t, touching, labels, group, state, nbrs, mine, stiff):
            region = _region(t, ctx.tadj, stiff, hops, max_region)
            extra = [x for x in dict.fromkeys((h, to)) if x not in region]
            region = np.concatenate([region, np.array(extra, dtype=np.int64)])
            trial = labels.copy()
            trial[(labels == h) & (group == g)] = to
            if to != t:
                # t joins the metro at once (one bordering cell of a territory in the region),
                # so h cannot take the free place back; without such a cell, no hand-over
                joined = False
                for v in sorted({v for x in mine.tolist() for v in nbrs[x] if group[v] == g}):
                    owner = int(trial[v])
                    if (
                        owner in region
                        and state.count[owner] > 1
                        and stays_connected(v, owner, trial, nbrs)
                    ):
                        trial[v] = t
                        joined = True
                        break
                if not joined:
                    continue
            yield region, trial

    return _repair(problem, labels, params, max_starts, trials)


def release(
    problem: PartitionProblem,
    labels: np.ndarray,
    params: SearchParams,
    hops: int = 2,
    max_region: int = 20,
    max_starts: int = 24,
) -> tuple[np.ndarray, int]:
    """Let a territory over its target give up its whole piece of a heavy metro to another holder.

    Where heavy metros meet, a territory can hold pieces of two of them, and with every metro
    at its part count no territory outside may take a cell of any: the holders carry the
    cluster's whole weight between them, each over its target (the 1M synthetic universe:
    seven territories holding the ten parts of four metros, each at +7.3% to +7.9%).  For each
    of the ``max_starts`` territories most over their target beyond the tolerance, o, and each
    heavy-metro piece o holds besides other atoms (lightest first; o's rest stays connected):
    the piece goes to a holder of the same metro bordering it (connected with it), so the metro
    spans one territory fewer and a territory with room may join it; then the neighbourhood
    (``hops`` around o, the receiver included) is improved with the metro cells free to move
    between holders and to one new territory.  Kept when the neighbourhood's largest excess
    over the tolerance drops (or stays and the objective drops).  Territories with locked atoms
    take no part.  Returns (labels, releases kept).
    """
    if problem.k <= 1 or not len(problem.group) or not len(problem.group_limit):
        return labels.copy(), 0
    group, w = problem.group, problem.weight

    def trials(o: int, ctx: _Repair):
        labels, nbrs, state, stiff = ctx.labels, ctx.nbrs, ctx.state, ctx.stiff
        held = np.nonzero(state.gcount[:, o] > 0)[0].tolist()
        pieces = sorted((float(w[(labels == o) & (group == g)].sum()), g) for g in held)
        for _, g in pieces:
            piece = np.nonzero((labels == o) & (group == g))[0]
            rest = np.nonzero((labels == o) & (group != g))[0]
            if not len(rest) or not _connected(rest.tolist(), nbrs):
                continue
            near = sorted({int(labels[v]) for u in piece.tolist() for v in nbrs[u]} - {o})
            h = _receiving_holder(g, piece, near, labels, state, nbrs, stiff)
            if h is None:
                continue
            region = _region(o, ctx.tadj, stiff, hops, max_region)
            if h not in region:
                region = np.append(region, h)
            trial = labels.copy()
            trial[piece] = h
            yield region, trial

    return _repair(problem, labels, params, max_starts, trials, over=True)


def donate(
    problem: PartitionProblem,
    labels: np.ndarray,
    params: SearchParams,
    max_starts: int = 24,
    max_trials: int = 6,
) -> tuple[np.ndarray, int]:
    """Let a territory over its target give a whole light metro to a holder of a heavy metro,
    the metro's holders then sharing its cells anew.

    A territory of two whole light metros that border only lumps (other light metros, or
    heavy metros each at its part count) has no single move that helps: giving one metro to
    a heavy metro's holder overloads that holder, which no exchange of one piece fixes (the
    50k synthetic universe: metros of 0.77 and 0.52 of a target in one territory, +28.9%,
    next to a metro of 1.90 held by two territories at -5%; with the 0.52 metro and 0.69 of
    the heavy one in one of them, the other holding the remaining 1.21, the worst of the
    three is the 0.77 metro alone, -23%).  For each of the ``max_starts`` territories most
    over their target beyond the tolerance, t, and each whole light atom a of t (its rest
    staying connected) bordering a territory h that holds heavy-metro cells (without locked
    atoms): a goes to h, then the territories t, h and every holder of h's heavy metros are
    improved together with the metros' cells free to move between their holders.  The
    ``max_trials`` candidates leaving t nearest its target are tried; the first that lowers
    the region's largest excess over the tolerance (or keeps it and lowers the objective)
    is kept.  Returns (labels, donations kept).
    """
    if problem.k <= 1 or not len(problem.group) or not len(problem.group_limit):
        return labels.copy(), 0
    group, w = problem.group, problem.weight

    def trials(t: int, ctx: _Repair):
        labels, nbrs, state, stiff = ctx.labels, ctx.nbrs, ctx.state, ctx.stiff
        candidates = []
        for a in np.nonzero((labels == t) & (group < 0) & (w > 0))[0].tolist():
            near = sorted({int(labels[v]) for v in nbrs[a]} - {t})
            near = [h for h in near if not stiff[h] and (state.gcount[:, h] > 0).any()]
            if not near or not stays_connected(a, t, labels, nbrs):
                continue
            left = abs((state.tw[t] - w[a]) / problem.targets[t] - 1.0)
            candidates.extend((left, a, h) for h in near)
        for _, a, h in sorted(candidates)[:max_trials]:
            held = np.nonzero(state.gcount[:, h] > 0)[0]
            holders = np.nonzero((state.gcount[held] > 0).any(axis=0))[0].tolist()
            region = np.array(list(dict.fromkeys([t, h, *holders])), dtype=np.int64)
            trial = labels.copy()
            trial[a] = h
            yield region, trial, np.array([a])

    return _repair(problem, labels, params, max_starts, trials, over=True)


def _handovers(
    t: int,
    touching: list[int],
    labels: np.ndarray,
    group: np.ndarray,
    state: _State,
    nbrs: list[list[int]],
    mine: np.ndarray,
    stiff: np.ndarray,
) -> list[tuple[int, int, int]]:
    """(metro, holder, receiver) hand-overs worth trying for territory t.

    The holder must keep a connected rest.  Its piece goes to t when it
    borders t (t becomes a holder), else to another holder bordering the piece
    (the metro then spans one territory fewer, so t can take cells of it).
    """
    out = []
    for g in touching:
        for h in np.nonzero(state.gcount[g] > 0)[0].tolist():
            piece = np.nonzero((labels == h) & (group == g))[0]
            rest = np.nonzero((labels == h) & (group != g))[0]
            if stiff[h] or not len(rest) or not _connected(rest.tolist(), nbrs):
                continue
            near = sorted({int(labels[v]) for u in piece.tolist() for v in nbrs[u]} - {h})
            if t in near and _connected(mine.tolist() + piece.tolist(), nbrs):
                out.append((g, h, t))
                continue
            h1 = _receiving_holder(g, piece, near, labels, state, nbrs, stiff)
            if h1 is not None:
                out.append((g, h, h1))
    return out


def _receiving_holder(
    g: int,
    piece: np.ndarray,
    near: list[int],
    labels: np.ndarray,
    state: _State,
    nbrs: list[list[int]],
    stiff: np.ndarray,
) -> int | None:
    """The first territory of ``near`` (those bordering ``piece``) that already holds heavy metro
    g, has no locked atoms and stays connected with the piece; None without one."""
    for h in near:
        if not stiff[h] and state.gcount[g, h] > 0 and _connected(
            np.nonzero(labels == h)[0].tolist() + piece.tolist(), nbrs
        ):
            return h
    return None


def relocate(
    problem: PartitionProblem,
    labels: np.ndarray,
    params: SearchParams,
    hops: int = 3,
    max_region: int = 40,
    max_starts: int = 8,
    max_over: int = 3,
) -> tuple[np.ndarray, int]:
    """Move a territory from a neighbourhood that has one too many to one with weight to spare.

    Exchanges between neighbours keep the number of territories in every
    neighbourhood, so a cluster of heavy metros cut into their part counts can
    hold more territories than its weight needs (each short of its target).
    For each territory t under its target beyond the tolerance (most under
    first, without locked atoms) whose neighbourhood is short by at least half
    a target: t's atoms join the territories of that neighbourhood they border
    (heavy-metro atoms only holders of their metro, or a new holder while the
    metro spans fewer than its limit), and t is re-created by cutting in two,
    along its long axis, the most over territory that can be cut of one of the
    ``max_over`` neighbourhoods (``hops`` around a territory) with the most
    weight to spare (at least half a target); both neighbourhoods are then
    improved together.  Kept when their largest excess over the tolerance
    drops (or stays and the objective drops).  Returns (labels, relocations
    kept).
    """
    n, k = problem.n, problem.k
    if k < 3 or n < k + 1:
        return labels.copy(), 0
    group = problem.group if len(problem.group) else np.full(n, -1, dtype=np.int64)
    limit = problem.group_limit

    def trials(t: int, ctx: _Repair):
        state, stiff, tadj, nbrs = ctx.state, ctx.stiff, ctx.tadj, ctx.nbrs

        def spare(region: np.ndarray) -> float:
            return float((state.tw[region] - problem.targets[region]).sum())

        near = _region(t, tadj, stiff, hops, max_region)
        if spare(near) > -0.5 * problem.targets[t]:
            return  # the neighbourhood does not hold a territory too many
        emptied = ctx.labels.copy()
        # only into the neighbourhood (never a territory with locked units, or one beyond it)
        if not _dissolve(t, emptied, nbrs, group, limit, state.tw / problem.targets, set(near.tolist())):
            return
        dev = state.tw / problem.targets - 1.0
        regions = {
            o: _region(o, tadj, stiff, hops, max_region)
            for o in range(k)
            if dev[o] > 0 and not stiff[o] and o not in near
        }
        surplus = {o: spare(r) for o, r in regions.items()}
        for o in sorted(surplus, key=lambda o: (-surplus[o], o))[:max_over]:
            if surplus[o] < 0.5 * problem.targets[t]:
                return  # no neighbourhood has weight to spare for a territory
            trial = emptied.copy()
            members = [x for x in regions[o].tolist() if x not in near and not stiff[x]]
            # the most over territory of that neighbourhood that can be cut becomes t's other half
            order = sorted(members, key=lambda x: (-dev[x], x))
            if any(_halve(x, t, trial, problem, nbrs, group, limit) for x in order):
                yield np.unique(np.concatenate([near, regions[o]])), trial

    return _repair(problem, labels, params, max_starts, trials)


@dataclass
class _Repair:
    """What the candidate generators of :func:`_repair` see: current labels, state and graphs."""

    labels: np.ndarray
    state: _State
    nbrs: list[list[int]]
    stiff: np.ndarray
    tadj: list[list[int]]


def _repair(
    problem: PartitionProblem,
    labels: np.ndarray,
    params: SearchParams,
    max_starts: int,
    trials,
    over: bool = False,
) -> tuple[np.ndarray, int]:
    """Up to three rounds over the ``max_starts`` territories most under their target
    (with ``over``: most over it).

    For each territory t still under (over) its target beyond the tolerance (without
    locked atoms), the (region, trial labels) pairs ``trials(t, ctx)`` yields are
    tried in turn by :func:`_try_region`; the first kept ends t's turn.  Stops
    after a round that keeps nothing.  Returns (labels, moves kept).
    """
    labels = labels.copy()
    n, k = problem.n, problem.k
    src = np.repeat(np.arange(n), np.diff(problem.indptr))
    dst = problem.indices
    state = _State(problem, labels, params)
    ctx = _Repair(
        labels=labels,
        state=state,
        nbrs=neighbour_lists(problem),
        stiff=np.bincount(labels[problem.locked >= 0], minlength=k) > 0,
        tadj=[],
    )
    sub_params = replace(params, max_rounds=200, pair_moves=False)
    kept = 0
    for _ in range(3):
        changed = 0
        ctx.tadj = _territory_graph(labels, src, dst, k)
        sign = -1.0 if over else 1.0  # walk from the far end of the band
        dev = sign * (state.tw / problem.targets - 1.0)
        for t in np.argsort(dev, kind="stable")[:max_starts].tolist():
            if time.perf_counter() > params.deadline:
                return labels, kept
            if sign * (state.tw[t] / problem.targets[t] - 1.0) >= -params.tolerance:
                break
            if ctx.stiff[t]:
                continue
            for region, trial, *pinned in trials(t, ctx):
                if _try_region(problem, state, region, trial, sub_params, *pinned):
                    changed += 1
                    ctx.tadj = _territory_graph(labels, src, dst, k)
                    break
        kept += changed
        if changed == 0:
            break
        state.refresh()
    return labels, kept


def _try_region(
    problem: PartitionProblem,
    state: _State,
    region: np.ndarray,
    trial: np.ndarray,
    params: SearchParams,
    pinned: np.ndarray | None = None,
) -> bool:
    """Improve the territories ``region`` from the labels ``trial``; keep the result if it is better.

    Heavy metros may span, inside the region, their limit less their holders
    outside it; locked atoms stay, and the atoms ``pinned`` keep their territory
    of ``trial`` (the improvement minimises a sum, which would often undo the
    trial's point).
    Better: the region's largest excess over the tolerance drops, or stays and
    the objective drops.  Updates ``state`` (and its labels) only when kept.
    """
    labels = state.labels
    atoms = np.nonzero(np.isin(labels, region))[0]
    sub, local = _subproblem(problem, atoms, region, holders=state.gcount > 0)
    if pinned is not None and len(pinned):
        sub = replace(sub, locked=np.where(np.isin(atoms, pinned), local[trial[atoms]], sub.locked))
    before = _region_score(state, region, True)
    old = labels[atoms].copy()
    lab, _, _ = improve(sub, local[trial[atoms]], params)
    _relabel(state, atoms, region[lab])
    if _lower(_region_score(state, region, True), before):
        return True
    _relabel(state, atoms, old)
    return False


def _dissolve(
    t: int,
    labels: np.ndarray,
    nbrs: list[list[int]],
    group: np.ndarray,
    limit: np.ndarray,
    load: np.ndarray,
    into: set[int],
) -> bool:
    """Give every atom of territory t to a territory of ``into`` it borders (the least loaded), in place.

    A heavy-metro atom joins a holder of its metro, or another territory while
    the metro (without t) spans fewer than its limit.  Each atom joins a
    territory it touches, so all stay connected.  False when some atom has no
    such neighbour (``labels`` is then partly changed: pass a copy).
    """
    left = np.nonzero(labels == t)[0].tolist()
    holders: dict[int, set[int]] = {}

    def spans(g: int) -> set[int]:
        if g not in holders:
            holders[g] = set(np.unique(labels[group == g]).tolist()) - {t}
        return holders[g]

    while left:
        rest = []
        for u in left:
            g = int(group[u])
            options = sorted({int(labels[v]) for v in nbrs[u]} & into - {t})
            if g >= 0 and len(limit):
                options = [b for b in options if b in spans(g) or len(spans(g)) < limit[g]]
            if not options:
                rest.append(u)
                continue
            b = min(options, key=lambda x: (load[x], x))
            labels[u] = b
            if g >= 0:
                spans(g).add(b)
        if len(rest) == len(left):
            return False
        left = rest
    return True


def _halve(
    o: int,
    t: int,
    labels: np.ndarray,
    problem: PartitionProblem,
    nbrs: list[list[int]],
    group: np.ndarray,
    limit: np.ndarray,
) -> bool:
    """Cut territory o in two along its long axis; the first half (by weight) becomes t, in place.

    Both halves must be connected and no heavy metro may then span more than
    its limit; tries both ends of the axis.  False when neither cut works.
    """
    atoms = np.nonzero(labels == o)[0]
    if len(atoms) < 2:
        return False
    w = problem.weight[atoms]
    axis = _long_axis(w, problem.xy[atoms])
    half = w.sum() / 2
    for direction in (axis, -axis):
        order = _sweep_order(atoms, problem.xy, nbrs, direction)
        acc, cut = 0.0, 0
        for cut, u in enumerate(order, start=1):
            acc += problem.weight[u]
            if acc >= half:
                break
        cut = min(cut, len(order) - 1)
        first, rest = order[:cut], order[cut:]
        if not rest or not _connected(rest, nbrs):
            continue
        trial = labels.copy()
        trial[first] = t
        groups = np.unique(group[first][group[first] >= 0])
        if len(limit) and any(
            len(np.unique(trial[group == g])) > limit[g] for g in groups.tolist()
        ):
            continue
        labels[first] = t
        return True
    return False


def _long_axis(w: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Unit vector along which the points ``xy`` (weights ``w``) spread most (weighted principal axis)."""
    centred = xy - xy.mean(axis=0)
    vals, vecs = np.linalg.eigh((centred * (w[:, None] + 1e-9)).T @ centred)
    return vecs[:, int(np.argmax(vals))]


def _region_score(state: _State, region: np.ndarray, minmax: bool) -> tuple[float, float]:
    """(the region's largest deviation beyond the tolerance when ``minmax``, else 0; the objective)."""
    if not minmax:
        return (0.0, state.total())
    worst = float(np.max(np.abs(state.tw[region] / state.p.targets[region] - 1.0)))
    return (round(max(0.0, worst - state.params.tolerance), 9), state.total())


def _lower(x: tuple[float, float], y: tuple[float, float]) -> bool:
    """Lexicographically lower, with a tolerance on each part."""
    if x[0] < y[0] - 1e-9:
        return True
    return abs(x[0] - y[0]) <= 1e-9 and x[1] < y[1] - 1e-9


def _region(
    a: int, tadj: list[list[int]], stiff: np.ndarray, hops: int, limit: int
) -> np.ndarray:
    """Territory a and the non-stiff territories within ``hops`` of it (breadth first, at most ``limit``)."""
    region = [a]
    seen = {a}
    frontier = [a]
    for _ in range(hops):
        nxt = []
        for t in frontier:
            for v in tadj[t]:
                if v not in seen and not stiff[v] and len(region) < limit:
                    seen.add(v)
                    region.append(v)
                    nxt.append(v)
        frontier = nxt
    return np.array(region, dtype=np.int64)


def _subproblem(
    problem: PartitionProblem, atoms: np.ndarray, region: np.ndarray, holders: np.ndarray | None = None
) -> tuple[PartitionProblem, np.ndarray]:
    """The problem restricted to ``atoms`` and the territories ``region``, locked atoms and the
    previous plan mapped to local territories.  With ``holders`` (heavy metros x territories,
    True where held) each heavy metro may span, inside the region, its limit less its holders
    outside it (:func:`region_limits`).

    Returns the sub-problem and the local index of every territory (-1 outside the region).
    """
    index = np.full(problem.n, -1, dtype=np.int64)
    index[atoms] = np.arange(len(atoms))
    # each atom's edges in the order of the full graph, those to atoms outside dropped
    starts = problem.indptr[atoms]
    counts = problem.indptr[atoms + 1] - starts
    offsets = np.cumsum(counts) - counts
    pos = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(offsets, counts) + np.repeat(starts, counts)
    rows = np.repeat(np.arange(len(atoms), dtype=np.int64), counts)
    cols = index[problem.indices[pos]]
    inside = cols >= 0
    rows, cols = rows[inside], cols[inside]
    order = np.lexsort((cols, rows))
    rows_a, cols_a = rows[order], cols[order]
    indptr = np.zeros(len(atoms) + 1, dtype=np.int64)
    np.add.at(indptr, rows_a + 1, 1)
    indptr = np.cumsum(indptr)
    terr = np.full(problem.k, -1, dtype=np.int64)
    terr[region] = np.arange(len(region))
    sub = PartitionProblem(
        weight=problem.weight[atoms],
        providers=problem.providers[atoms],
        xy=problem.xy[atoms],
        indptr=indptr,
        indices=cols_a,
        targets=problem.targets[region],
        bases=problem.bases[region],
        locked=np.where(problem.locked[atoms] >= 0, terr[np.maximum(problem.locked[atoms], 0)], -1),
        previous=np.where(problem.previous[atoms] >= 0, terr[np.maximum(problem.previous[atoms], 0)], -1),
        call_hours=problem.call_hours,
        travel_hours_per_mile=problem.travel_hours_per_mile,
    )
    if holders is not None and len(problem.group):
        sub = replace(sub, group=problem.group[atoms], group_limit=region_limits(problem, holders, region))
    return sub, terr


def region_limits(problem: PartitionProblem, holders: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Each heavy metro's limit inside the territories ``region``: its limit less the territories
    outside the region holding it (``holders``: heavy metros x territories, True where held)."""
    outside = holders.copy()
    outside[:, region] = False
    return problem.group_limit - outside.sum(axis=1)


def contract(problem: PartitionProblem, key: np.ndarray) -> tuple[PartitionProblem, np.ndarray]:
    """The problem with the atoms of equal ``key`` merged into one (weights and providers summed,
    weighted centroid, the union of their edges); returns it and each atom's merged index.

    No locks, previous plan, relationships or heavy-metro groups are kept: the caller
    contracts what must move together and checks those on the atoms afterwards."""
    _, lump = np.unique(key, return_inverse=True)
    m = int(lump.max()) + 1 if len(lump) else 0
    w = np.bincount(lump, weights=problem.weight, minlength=m)
    xy = np.column_stack(
        [
            np.bincount(lump, weights=problem.weight * problem.xy[:, d], minlength=m) / np.maximum(w, 1e-12)
            for d in range(2)
        ]
    )
    plain = w <= 0  # weightless lumps: the plain mean
    if plain.any():
        count = np.bincount(lump, minlength=m)
        for d in range(2):
            xy[plain, d] = np.bincount(lump, weights=problem.xy[:, d], minlength=m)[plain] / count[plain]
    src = np.repeat(np.arange(problem.n), np.diff(problem.indptr))
    a, b = lump[src], lump[problem.indices]
    pairs = np.unique(np.column_stack([a, b])[a != b], axis=0)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.add.at(indptr, pairs[:, 0] + 1, 1)
    merged = replace(
        problem,
        weight=w,
        providers=np.bincount(lump, weights=problem.providers, minlength=m),
        xy=xy,
        indptr=np.cumsum(indptr),
        indices=pairs[:, 1].astype(np.int64),
        locked=np.full(m, -1, dtype=np.int64),
        previous=np.full(m, -1, dtype=np.int64),
        relationship_keys=np.empty(0, dtype=np.int64),
        relationship_values=np.empty(0),
        group=np.empty(0, dtype=np.int64),
        group_limit=np.empty(0, dtype=np.int64),
    )
    return merged, lump


def _match_overlap(
    lab: np.ndarray, old: np.ndarray, sub: PartitionProblem
) -> np.ndarray:
    """Relabel sub-regions to the territories (of equal target) whose current atoms they share most."""
    from scipy.optimize import linear_sum_assignment

    m = sub.k
    overlap = np.zeros((m, m))
    np.add.at(overlap, (lab, old), sub.weight + _EPS)
    mapping = np.arange(m)
    for value in np.unique(sub.targets):
        group = np.nonzero(sub.targets == value)[0]
        if len(group) < 2:
            continue
        rows, cols = linear_sum_assignment(-overlap[np.ix_(group, group)])
        mapping[group[rows]] = group[cols]
    return mapping[lab]


def _relabel(state: _State, atoms: np.ndarray, new: np.ndarray) -> None:
    """Give ``atoms`` the territories ``new`` through the state's incremental updates."""
    labels = state.labels
    cur = labels[atoms]
    diff = cur != new
    pairs: dict[tuple[int, int], list[int]] = {}
    for u, x, y in zip(atoms[diff].tolist(), cur[diff].tolist(), new[diff].tolist()):
        pairs.setdefault((x, y), []).append(u)
    for (x, y), chunk in sorted(pairs.items()):
        state.apply(chunk, x, y)


def bisect(
    problem: PartitionProblem,
    order: np.ndarray,
    rng: np.random.Generator | None = None,
    atoms: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Recursive coordinate bisection on the graph: K connected regions of near-target weight.

    ``order`` lists the territory indices; each split sends the first half of
    the list to one side, whose weight share is the share of its targets.  A
    side is grown from the extreme atom along the principal axis, taking the
    frontier atom lowest on that axis until it holds its share; pieces of the
    other side cut off by it join it, so both sides stay connected.  Returns
    labels (territory index per atom); territories get no atom only when there
    are fewer atoms than territories.  With ``rng``, each cutting axis is turned
    by a random angle of up to ±0.6 rad (for restarts).  ``atoms`` (a connected
    subset) and ``labels`` (filled in place) restrict the cut to part of the graph.
    """
    n = problem.n
    labels = np.full(n, -1, dtype=np.int64) if labels is None else labels
    src = np.repeat(np.arange(n), np.diff(problem.indptr))
    dst = problem.indices
    start = np.arange(n) if atoms is None else np.asarray(atoms, dtype=np.int64)
    stack = [(start, np.asarray(order, dtype=np.int64))]
    while stack:
        atoms, terr = stack.pop()
        if len(terr) == 1 or len(atoms) <= 1:
            labels[atoms] = terr[0]
            continue
        if len(atoms) < len(terr):
            labels[atoms] = terr[: len(atoms)]
            continue
        half = len(terr) // 2
        t1, t2 = problem.targets[terr[:half]].sum(), problem.targets[terr[half:]].sum()
        turn = float(rng.uniform(-0.6, 0.6)) if rng is not None else 0.0
        side1 = _grow_side(problem, atoms, t1 / (t1 + t2), src, dst, turn)
        mask = np.zeros(n, dtype=bool)
        mask[side1] = True
        rest = atoms[~mask[atoms]]
        stack.append((rest, terr[half:]))
        stack.append((np.sort(side1), terr[:half]))
    return labels


def _grow_side(
    problem: PartitionProblem,
    atoms: np.ndarray,
    share: float,
    src: np.ndarray,
    dst: np.ndarray,
    turn: float,
) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = problem.n
    w, xy = problem.weight[atoms], problem.xy[atoms]
    total = w.sum()
    want = share * total
    centred = xy - xy.mean(axis=0)
    axis = _long_axis(w, xy)
    c, s_ = np.cos(turn), np.sin(turn)
    axis = np.array([c * axis[0] - s_ * axis[1], s_ * axis[0] + c * axis[1]])
    if axis[0] < 0 or (axis[0] == 0 and axis[1] < 0):
        axis = -axis
    proj = centred @ axis
    inside = np.zeros(n, dtype=bool)
    inside[atoms] = True
    key = np.full(n, np.inf)
    key[atoms] = proj
    start = int(atoms[np.lexsort((atoms, proj))[0]])
    taken = np.zeros(n, dtype=bool)
    heap = [(key[start], start)]
    queued = {start}
    acc = 0.0
    side: list[int] = []
    indptr, indices, weight = problem.indptr, problem.indices, problem.weight
    while heap and len(side) < len(atoms) - 1:
        _, u = heapq.heappop(heap)
        x = weight[u]
        if acc + x > want and abs(acc + x - want) >= abs(acc - want) and side:
            break
        taken[u] = True
        side.append(u)
        acc += x
        for v in indices[indptr[u] : indptr[u + 1]]:
            if inside[v] and v not in queued:
                queued.add(int(v))
                heapq.heappush(heap, (key[v], int(v)))
    # the other side must stay connected: its pieces other than the heaviest join this side
    other = inside & ~taken
    e = other[src] & other[dst]
    g = coo_matrix((np.ones(int(e.sum())), (src[e], dst[e])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    oi = np.nonzero(other)[0]
    if len(oi):
        cw = np.bincount(comp[oi], weights=weight[oi])
        main = int(np.argmax(cw))
        extra = oi[comp[oi] != main]
        side.extend(extra.tolist())
    return np.array(side, dtype=np.int64)


def metro_spans_over(problem: PartitionProblem, labels: np.ndarray) -> int:
    """How many territories the heavy metros span beyond their parts' counts (0 without limits)."""
    if not len(problem.group_limit):
        return 0
    held = problem.group >= 0
    pairs = np.unique(np.column_stack([problem.group[held], labels[held]]), axis=0)
    spans = np.bincount(pairs[:, 0], minlength=len(problem.group_limit))
    return int(np.maximum(spans - problem.group_limit, 0).sum())


def neighbour_lists(problem: PartitionProblem) -> list[list[int]]:
    """Each atom's neighbours, as Python lists (for the connectivity checks)."""
    ip, ix = problem.indptr, problem.indices
    return [ix[ip[i] : ip[i + 1]].tolist() for i in range(problem.n)]


def return_moves(
    problem: PartitionProblem, labels: np.ndarray, tolerance: float
) -> tuple[np.ndarray, int]:
    """Send moved atoms back to their previous territory wherever balance allows it.

    A search that weighs disruption against balance can end having moved more
    than it needed (weight passed along a chain, then partly back).  Each atom
    whose territory differs from its previous one (previous territory still
    present, atom not locked) returns there when that territory borders it,
    its current territory stays connected and non-empty without it, heavy-metro
    holding allows it (as in the local search), and neither territory ends
    beyond ``tolerance`` -- or beyond its own current deviation when it is
    already further off.  So no territory's deviation leaves the tolerance or
    grows beyond it, and the opportunity moved only drops.  Heaviest atoms are
    tried first; passes repeat until nothing returns.  Returns (labels, atoms
    returned).
    """
    state = _State(problem, labels.copy(), SearchParams(tolerance=tolerance))
    labels, tw = state.labels, state.tw
    prev, w, tg, k = problem.previous, problem.weight, problem.targets, problem.k
    nbrs = neighbour_lists(problem)
    limit = np.maximum(tolerance, np.abs(tw / tg - 1.0))
    returned = 0
    changed = True
    while changed:
        changed = False
        moved = np.nonzero((prev >= 0) & (prev < k) & (prev != labels) & (problem.locked < 0))[0]
        for u in moved[np.argsort(-w[moved], kind="stable")].tolist():
            a, b = int(labels[u]), int(prev[u])
            if a == b or not any(labels[v] == b for v in nbrs[u]):
                continue
            if abs((tw[a] - w[u]) / tg[a] - 1.0) > limit[a] + _EPS:
                continue
            if abs((tw[b] + w[u]) / tg[b] - 1.0) > limit[b] + _EPS:
                continue
            if not state.chunk_allowed([u], b):
                continue
            if state.count[a] <= 1 or not stays_connected(u, a, labels, nbrs):
                continue
            state.apply([u], a, b)
            for t in (a, b):
                limit[t] = max(tolerance, min(limit[t], abs(tw[t] / tg[t] - 1.0)))
            returned += 1
            changed = True
    return labels, returned


def flow_moves(
    problem: PartitionProblem,
    labels: np.ndarray,
    arcs: np.ndarray,
    flow: np.ndarray,
    deadline: float = math.inf,
    overshoot: float = 0.0,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Carry weight between neighbouring territories as a flow says.

    For each arc (a, b) with flow f (largest first), territory a hands b
    boundary atoms, starting at their common border and growing inward
    (nearest b's weighted centre first), while the weight still to carry falls:
    an atom is taken when it leaves less to carry than before (weight above
    zero and below twice what is left, plus ``overshoot`` x b's target: a lump
    that overshoots the flow within a tolerance band is passed on by the next
    solve, where a border made only of heavy cut atoms would carry nothing);
    an atom whose removal would cut a apart
    goes with the piece it would cut off, when the two together qualify.  a
    stays connected and non-empty, locked atoms stay, heavy-metro holding is
    respected (as in the local search).  So weight passed along a chain
    (a -> b -> c, each arc carried with the giver's own border atoms) moves in
    one go, where each single move alone would make a neighbour worse.  Stops
    at ``deadline``.  Returns (labels, atoms moved, weight carried along each arc).
    """
    state = _State(problem, labels.copy(), SearchParams())
    labels = state.labels
    w, xy = problem.weight, problem.xy
    nbrs = neighbour_lists(problem)
    moved = 0
    carried = np.zeros(len(flow))
    for i in np.argsort(-np.asarray(flow), kind="stable").tolist():
        if time.perf_counter() > deadline:
            break
        a, b, need = int(arcs[i, 0]), int(arcs[i, 1]), float(flow[i])
        if need <= _EPS:
            continue
        spare = overshoot * problem.targets[b]
        inside = labels == b
        centre = (xy[inside] * w[inside, None]).sum(axis=0) / max(w[inside].sum(), _EPS)
        if not w[inside].sum() > 0:
            centre = xy[inside].mean(axis=0) if inside.any() else xy.mean(axis=0)
        heap: list[tuple[float, int]] = []
        queued: set[int] = set()
        frontier = [v for u in np.nonzero(inside)[0].tolist() for v in nbrs[u]]
        while frontier or (heap and need > _EPS):
            for v in frontier:
                if v not in queued and labels[v] == a:
                    queued.add(v)
                    heapq.heappush(heap, (float(np.hypot(*(xy[v] - centre))), v))
            frontier = []
            if not heap or need <= _EPS:
                break
            _, u = heapq.heappop(heap)
            if labels[u] != a or problem.locked[u] >= 0 or not w[u] < 2 * need + spare:
                continue
            # an atom whose removal would cut a apart takes the cut-off piece along
            chunk = [u, *state.cut_off(u, a, nbrs)]
            lump = float(w[chunk].sum())
            if not _EPS < lump < 2 * need + spare or state.count[a] <= len(chunk):
                queued.discard(u)  # may come free once a neighbour has gone
                continue
            if (problem.locked[chunk] >= 0).any() or not state.chunk_allowed(chunk, b):
                continue
            state.apply(chunk, a, b)
            need -= lump
            carried[i] += lump
            moved += len(chunk)
            frontier = [v for x in chunk for v in nbrs[x]]
    return labels, moved, carried


def minmax_moves(
    problem: PartitionProblem,
    labels: np.ndarray,
    tolerance: float,
    max_moves: int = 10_000,
    deadline: float = math.inf,
) -> tuple[np.ndarray, int]:
    """Single moves that lower the larger deviation of the two territories they touch.

    The local search minimises a sum, so it can leave a territory beyond the
    tolerance next to one move that would lower the worse of the two
    deviations (the other side then pays more in squares).  Worst territory
    first, every territory beyond ``tolerance`` tries the boundary atoms it
    could take (when under target) or give (when over): the move must keep the
    giver connected and non-empty, respect locks and heavy-metro holding, and
    lower max(|d_giver|, |d_taker|); the best such move is applied and the scan
    restarts.  Each move replaces the larger of two deviations by smaller ones,
    so the sorted deviations fall lexicographically and the imbalance never
    grows.  Stops after ``max_moves`` or at ``deadline`` (a time.perf_counter()
    value).  A territory whose scan found no such move is not scanned again until
    it or a neighbouring territory changes (its candidates depend on nothing else;
    a heavy metro gaining or losing a holder changes who may take its atoms
    anywhere, so it clears every such mark): the same moves, without rescanning
    every territory beyond the tolerance after each one.  Returns (labels, moves
    applied).
    """
    state = _State(problem, labels.copy(), SearchParams(tolerance=tolerance))
    labels, tw = state.labels, state.tw
    w, tg, k = problem.weight, problem.targets, problem.k
    group = problem.group if len(problem.group) else None
    nbrs = neighbour_lists(problem)
    members: list[set[int]] = [set() for _ in range(k)]
    for u, t in enumerate(labels.tolist()):
        members[t].add(u)
    stuck = np.zeros(k, dtype=bool)  # scanned without a move since its neighbourhood last changed
    moves = 0
    while moves < max_moves and time.perf_counter() < deadline:
        dev = tw / tg - 1.0
        best = None
        for t in np.argsort(-np.abs(dev), kind="stable").tolist():
            if abs(dev[t]) <= tolerance:
                break
            if stuck[t]:
                continue
            take = dev[t] < 0  # under target: take an atom from a neighbour, else give one
            pairs = {
                (v, int(labels[v])) if take else (u, int(labels[v]))
                for u in members[t]
                for v in nbrs[u]
                if labels[v] != t
            }
            found = []
            for order, (u, other) in enumerate(sorted(pairs)):
                a, b = (other, t) if take else (t, other)
                if problem.locked[u] >= 0 or state.count[a] <= 1 or not state.chunk_allowed([u], b):
                    continue
                after = max(abs((tw[a] - w[u]) / tg[a] - 1.0), abs((tw[b] + w[u]) / tg[b] - 1.0))
                if after < max(abs(dev[a]), abs(dev[b])) - 1e-9:
                    found.append((after, u, order, a, b))
            # the best move keeping the giver connected: the graph search only for the leaders
            for after, u, _, a, b in sorted(found):
                if stays_connected(u, a, labels, nbrs):
                    best = (after, u, a, b)
                    break
            if best is not None:
                break
            stuck[t] = True
        if best is None:
            break
        _, u, a, b = best
        g = int(group[u]) if group is not None else -1
        held = int(state.holders[g]) if g >= 0 else 0
        state.apply([u], a, b)
        members[a].discard(u)
        members[b].add(u)
        moves += 1
        if g >= 0 and int(state.holders[g]) != held:
            stuck[:] = False
        else:
            stuck[a] = stuck[b] = False
            for x in members[a] | members[b]:
                for v in nbrs[x]:
                    stuck[labels[v]] = False
    return labels, moves


@cache
def _libc():
    """The process's C library (None where it cannot be loaded, off POSIX systems)."""
    import ctypes

    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def _c_flush() -> None:
    """Flush the C library's stdio buffers (where the solver's printf output waits)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "fflush"):
        libc.fflush(None)


@contextmanager
def _native_stdout_silenced():
    """Silence the process's native stdout (file descriptor 1) for a solve.

    The HiGHS build inside scipy prints a stray debug line
    (``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();``)
    with C ``printf`` during some MIP solves, whatever its output options
    (ERGO-Code/HiGHS#2783); it would land in run logs.  Python's stdout and the
    C library's buffers are flushed before the redirect (so nothing written
    earlier is lost), and the C buffers again before fd 1 is restored (so the
    solver's buffered lines go to the null device).  The redirect is
    process-wide: other threads' native output during a solve is dropped too.
    """
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError, OSError):  # no stdout, or closed
        pass
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1: nothing to silence
        saved = None
    if saved is not None:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:  # no null device: leave the output alone
            os.close(saved)
            saved = None
    if saved is None:
        yield
        return
    try:
        _c_flush()
        os.dup2(null, 1)
        yield
    finally:
        _c_flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def restore_moves(
    problem: PartitionProblem,
    labels: np.ndarray,
    tolerance: float,
    max_solves: int = 20,
    exact_solves: int = 8,
    node_limit: int = 100,
    deadline: float = math.inf,
) -> tuple[np.ndarray, int]:
    """Return the largest set of moved atoms to their previous territory at once.

    :func:`return_moves` sends atoms back one at a time, so it cannot undo a
    reshuffle: after a neighbourhood re-cut, territory A holds atoms that were
    B's and B holds atoms that were A's, and each return alone would push A or
    B beyond the tolerance while both together keep them balanced.  This picks
    the returns jointly, as an integer program (HiGHS through
    :func:`scipy.optimize.milp`): x_u = 1 returns moved atom u (previous
    territory still present, not locked, weight above zero) to its previous
    territory; maximise the opportunity returned, with every territory's final
    weight within the tolerance of its target, or no further off on either
    side than it is now; an atom returns only next to its previous territory
    as it will be (a neighbour that stays there, returns there too, or was
    moved there and stays); a heavy-metro atom returns only to a territory
    already holding its metro (so a territory made only of returning atoms is
    not considered).  Territories are checked for connectivity on each
    solution; a territory found in pieces adds a cut and the program is solved
    again: for an atom a of the stray piece and an atom m of the main piece
    (atoms that cannot leave where there are some), a and m are not both in
    the territory, or an atom on the piece's border is (a vertex-separator
    inequality, valid for every connected solution); an emptied territory
    needs one of the atoms that may be in it.  These exact cuts can take many solves to converge, so after
    ``exact_solves`` solves the returns that made a piece (into it, or out of
    the territory at its border) are given up instead, and at most
    ``max_solves`` solves are made.  ``node_limit`` and a 1% optimality gap
    bound each solve by work, not time, so the result does not depend on the
    machine's speed, unless ``deadline`` (a time.perf_counter() value) comes
    first.  Returns (labels, atoms returned); the labels are unchanged when no
    connected solution is found.
    """
    from scipy import sparse
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse.csgraph import connected_components

    labels = np.asarray(labels)
    prev, w, tg, k, n = problem.previous, problem.weight, problem.targets, problem.k, problem.n
    cand = (prev >= 0) & (prev < k) & (prev != labels) & (problem.locked < 0) & (w > 0)
    if len(problem.group) and (problem.group >= 0).any():
        held = problem.group >= 0
        holds = np.zeros((int(problem.group.max()) + 1, k), dtype=bool)
        holds[problem.group[held], labels[held]] = True
        g = np.maximum(problem.group, 0)
        cand &= ~held | holds[g, np.clip(prev, 0, k - 1)]
    var = np.nonzero(cand)[0]
    m = len(var)
    if m == 0:
        return labels.copy(), 0
    index = np.full(n, -1)
    index[var] = np.arange(m)
    fixed = index < 0
    tw = np.bincount(labels, weights=w, minlength=k)
    lo = np.minimum(tg * (1 - tolerance), tw) - tw
    hi = np.maximum(tg * (1 + tolerance), tw) - tw
    # territory balance: the change of t is what returns into t less what returns out of it
    rows: list[np.ndarray] = [np.concatenate([prev[var], labels[var]])]
    cols: list[np.ndarray] = [np.concatenate([np.arange(m), np.arange(m)])]
    vals: list[np.ndarray] = [np.concatenate([w[var], -w[var]])]
    lower: list[float] = (lo - 1e-9).tolist()
    upper: list[float] = (hi + 1e-9).tolist()

    def add_row(j: np.ndarray, coef: np.ndarray, high: float) -> None:
        rows.append(np.full(len(j), len(upper)))
        cols.append(np.asarray(j))
        vals.append(np.asarray(coef, dtype=float))
        lower.append(-np.inf)
        upper.append(high)

    # an atom returns only next to its previous territory as it will be:
    # x_u <= sum(x_v: v returns to b) + sum(1 - x_v: v was moved into b)
    indptr, indices = problem.indptr, problem.indices
    for i, u in enumerate(var.tolist()):
        b = int(prev[u])
        nb = indices[indptr[u] : indptr[u + 1]]
        if ((labels[nb] == b) & fixed[nb]).any():
            continue
        nb = nb[~fixed[nb]]
        into, stay = nb[prev[nb] == b], nb[labels[nb] == b]
        add_row(
            np.concatenate([[i], index[into], index[stay]]),
            np.concatenate([[1.0], -np.ones(len(into)), np.ones(len(stay))]),
            float(len(stay)),
        )
    edges = np.column_stack([np.repeat(np.arange(n), np.diff(indptr)), indices])

    def ends_in(v: int, t: int) -> tuple[float, dict[int, float]]:
        """Atom v ends in territory t, as a constant plus x terms."""
        j = int(index[v])
        if j < 0:
            return (1.0 if labels[v] == t else 0.0), {}
        if prev[v] == t:
            return 0.0, {j: 1.0}
        if labels[v] == t:
            return 1.0, {j: -1.0}
        return 0.0, {}

    def add_at_least_one(terms: list[tuple[float, dict[int, float]]]) -> None:
        """Add the row sum(terms) >= 1, each term a constant plus x terms."""
        const, coef = 0.0, {}
        for c, d in terms:
            const += c
            for j, v in d.items():
                coef[j] = coef.get(j, 0.0) + v
        j = np.fromiter(coef, dtype=np.int64, count=len(coef))
        add_row(j, -np.fromiter(coef.values(), dtype=float, count=len(coef)), const - 1.0)

    def leaves(v: int, t: int) -> tuple[float, dict[int, float]]:
        c, d = ends_in(v, t)
        return 1.0 - c, {j: -x for j, x in d.items()}

    ub = np.ones(m)
    for solve in range(max_solves):
        if time.perf_counter() > deadline:
            break
        matrix = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(upper), m)
        )
        options = {"node_limit": node_limit, "presolve": False, "mip_rel_gap": 0.01}
        if math.isfinite(deadline):
            options["time_limit"] = max(deadline - time.perf_counter(), 0.1)
        with _native_stdout_silenced():
            result = milp(
                -w[var],
                integrality=np.ones(m),
                bounds=Bounds(0, ub),
                constraints=[LinearConstraint(matrix, np.array(lower), np.array(upper))],
                options=options,
            )
        if result.x is None:
            return labels.copy(), 0
        x = np.round(result.x).astype(bool)
        if not x.any():
            return labels.copy(), 0
        new = labels.copy()
        new[var[x]] = prev[var[x]]
        same = new[edges[:, 0]] == new[edges[:, 1]]
        graph = sparse.csr_matrix(
            (np.ones(int(same.sum())), (edges[same, 0], edges[same, 1])), shape=(n, n)
        )
        _, comp = connected_components(graph, directed=False)
        order = np.argsort(new, kind="stable")
        start = np.searchsorted(new[order], np.arange(k + 1))
        # atoms that do not return in this solution (fixed ones never do)
        staying = np.ones(n, dtype=bool)
        staying[var[x]] = False
        found = added = given_up = 0
        for t in np.unique(np.concatenate([prev[var[x]], labels[var[x]]])).tolist():
            inside = order[start[t] : start[t + 1]]
            if not len(inside):  # emptied: some atom that may be in t must end there
                may = var[(labels[var] == t) | (prev[var] == t)]
                add_at_least_one([ends_in(int(v), t) for v in may.tolist()])
                found += 1
                added += 1
                continue
            parts = np.unique(comp[inside])
            if len(parts) <= 1:
                continue
            at = np.searchsorted(parts, comp[inside])
            # the main piece holds the most atoms that cannot leave, then that stay, then weight
            big = float(w.sum()) + 1.0
            anchor = np.bincount(
                at,
                weights=fixed[inside] * big * big + staying[inside] * big + w[inside],
                minlength=len(parts),
            )
            main = parts[int(np.argmax(anchor))]
            mains = inside[comp[inside] == main]
            # m: an atom of the main piece, one that cannot leave when there is one
            m_atom = int(mains[np.argmax(fixed[mains] * big + w[mains])])
            for c in parts.tolist():
                if c == main:
                    continue
                piece = inside[comp[inside] == c]
                found += 1
                border = np.unique(
                    np.concatenate([indices[indptr[v] : indptr[v + 1]] for v in piece.tolist()])
                )
                border = border[(new[border] != t) & ~fixed[border]]
                if solve >= exact_solves:
                    # the exact cuts converge slowly on some plans: from here on the returns
                    # that made the piece (returned into it, or left t at its border) are
                    # given up, so the solves end within max_solves
                    gone = np.concatenate([index[piece[~fixed[piece]]], index[border]])
                    gone = gone[x[gone]]
                    given_up += len(gone)
                    ub[gone] = 0.0
                    continue
                # a and m both in t need a path between them, through the piece's border:
                # (1 - y_a) + (1 - y_m) + sum(y_s: s on the border) >= 1  (y: ends in t)
                a_atom = int(piece[np.argmax(fixed[piece] * big + w[piece])])
                add_at_least_one(
                    [leaves(a_atom, t), leaves(m_atom, t)] + [ends_in(int(v), t) for v in border.tolist()]
                )
                added += 1
        if not found:
            return new, int(x.sum())
        if not added and not given_up:
            break
    return labels.copy(), 0
