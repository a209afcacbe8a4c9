"""Re-planning the neighbourhood of a territory made of whole light metros (national plans).

A territory holding two whole metros that together exceed its target, bordered by
territories of small pieces, cannot shed either metro to a neighbour without pushing that
neighbour far beyond its own target, so no exchange between neighbours lowers its
deviation (the 1M synthetic universe's worst territory was such a case).
``engine._replan_regions`` plans its neighbourhood again from scratch.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from territory_pipeline.balancing import BalanceSettings
from territory_pipeline.balancing.engine import _replan_regions
from territory_pipeline.balancing.partition import (
    SearchParams,
    grow,
    improve,
    metro_spans_over,
    minmax_moves,
)
from territory_pipeline_tests.test_balancing import (
    _connected_labels,
    _deviations,
    _grid_problem,
)

NX, NY, K = 14, 10, 6
LUMPS = (5 * NX + 6, 5 * NX + 7)  # two neighbouring metros in the middle of the grid



def _two_metro_plan():
    """A 14 x 10 grid of small pieces (0.25) and two whole metros of 0.62 and 0.47 of a target;
    territory 0 holds the two metros alone (+9%), the others were grown from the corners and
    the top edge and balanced around it (connected, within 4%)."""
    w = np.full(NX * NY, 0.25)
    w[list(LUMPS)] = (4.36, 3.30)
    problem = _grid_problem(NX, NY, K, w)
    seeds = np.full(problem.n, -1)
    seeds[list(LUMPS)] = 0
    corners = [0, NX - 1, (NY - 1) * NX, NY * NX - 1, NX // 2]
    seeds[corners] = np.arange(1, K)
    start = grow(problem, seeds, problem.xy[[LUMPS[0], *corners]])
    locked = np.full(problem.n, -1)
    locked[list(LUMPS)] = 0
    labels, _, _ = improve(replace(problem, locked=locked), start, SearchParams(deadline=time.perf_counter() + 30))
    return problem, labels


def test_the_fixture_is_a_territory_of_two_metros_that_no_exchange_fixes():
    problem, labels = _two_metro_plan()
    dev = _deviations(problem, labels)
    assert np.nonzero(labels == 0)[0].tolist() == list(LUMPS)
    assert dev[0] > 0.08 and np.abs(dev[1:]).max() < 0.05
    assert _connected_labels(problem, labels)
    # the searches' own exchanges leave it where it is
    evened, _ = minmax_moves(problem, labels, 0.05, deadline=time.perf_counter() + 30)
    searched, _, _ = improve(problem, labels, SearchParams(deadline=time.perf_counter() + 30))
    assert np.abs(_deviations(problem, evened)).max() > 0.08
    assert np.abs(_deviations(problem, searched)).max() > 0.05


def test_the_neighbourhood_planned_again_is_within_the_tolerance():
    problem, labels = _two_metro_plan()
    out, changed = _replan_regions(problem, labels, BalanceSettings(), time.perf_counter() + 60)
    assert changed > 0
    assert np.abs(_deviations(problem, out)).max() <= 0.05
    assert _connected_labels(problem, out)
    assert (np.bincount(out, minlength=K) > 0).all()
    assert out[LUMPS[0]] != out[LUMPS[1]]  # the two metros now in different territories


def test_replanning_is_deterministic():
    problem, labels = _two_metro_plan()
    first, _ = _replan_regions(problem, labels, BalanceSettings(), time.perf_counter() + 60)
    second, _ = _replan_regions(problem, labels, BalanceSettings(), time.perf_counter() + 60)
    assert np.array_equal(first, second)


def test_territories_with_locked_pieces_are_left_alone():
    problem, labels = _two_metro_plan()
    corner = NY * NX - 1
    t = int(labels[corner])
    locked = np.full(problem.n, -1)
    locked[corner] = t
    out, _ = _replan_regions(replace(problem, locked=locked), labels, BalanceSettings(), time.perf_counter() + 60)
    assert np.array_equal(out == t, labels == t)
    assert np.abs(_deviations(problem, out)).max() < _deviations(problem, labels)[0]
    assert _connected_labels(problem, out)


def test_a_heavy_metro_keeps_its_holders():
    # the five left columns are a heavy metro's cells, held by two territories now and limited
    # to two; planned again cell by cell they would be spread over three (the cells of each
    # holder move together, then trade between the holders)
    problem, labels = _two_metro_plan()
    cells = np.nonzero(np.arange(problem.n) % NX < 5)[0]
    holders = np.unique(labels[cells])
    group = np.full(problem.n, -1, dtype=np.int64)
    group[cells] = 0
    limited = replace(problem, group=group, group_limit=np.array([len(holders)]))
    out, changed = _replan_regions(limited, labels, BalanceSettings(), time.perf_counter() + 60)
    assert changed > 0
    assert metro_spans_over(limited, out) == 0
    assert len(np.unique(out[cells])) <= len(holders)
    assert np.abs(_deviations(problem, out)).max() < _deviations(problem, labels)[0]
    assert _connected_labels(problem, out)


def test_a_balanced_plan_is_returned_unchanged():
    problem, labels = _two_metro_plan()
    out, _ = _replan_regions(problem, labels, BalanceSettings(), time.perf_counter() + 60)
    again, changed = _replan_regions(problem, out, BalanceSettings(), time.perf_counter() + 60)
    assert changed == 0 and np.array_equal(again, out)


def test_contracting_sums_the_pieces_and_joins_their_edges():
    from territory_pipeline.balancing.partition import contract

    problem = _grid_problem(3, 2, 2, np.arange(1.0, 7.0))  # 1 2 3 / 4 5 6
    merged, lump = contract(problem, np.array([0, 0, 1, 2, 2, 1]))
    assert lump.tolist() == [0, 0, 1, 2, 2, 1]
    assert merged.weight.tolist() == [3.0, 9.0, 9.0]
    assert merged.providers.tolist() == [2.0, 2.0, 2.0]
    # lump 0 = atoms 0, 1 (x 0 and 7, weights 1 and 2): weighted centroid x = 14 / 3
    assert np.allclose(merged.xy[0], [14.0 / 3.0, 0.0])
    nbrs = [sorted(merged.indices[merged.indptr[i] : merged.indptr[i + 1]].tolist()) for i in range(3)]
    assert nbrs == [[1, 2], [0, 2], [0, 1]]
