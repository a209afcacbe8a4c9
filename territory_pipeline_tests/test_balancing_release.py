"""A holder of two heavy metros' pieces gives one up, so a territory with room may join.

Where heavy metros meet and each spans its part count, no territory outside may take a
cell of any of them: the holders carry the whole cluster between them.  In the fixture,
metro A (limit 2) is held by territories 0 (most of it) and 1 (two cells), metro B (limit 1)
by territory 1; both are at +8% and every other territory at -4%, within the tolerance, so
the searches, the hand-over (for territories under the tolerance) and the relocation have
nothing to do.  ``partition.release`` gives territory 1's two cells of A to territory 0, so
A spans one territory and territory 2 may take A's cells from 0.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from territory_pipeline.balancing.partition import (
    SearchParams,
    metro_spans_over,
    release,
)
from territory_pipeline_tests.test_balancing import (
    _connected_labels,
    _deviations,
    _grid_problem,
)
from territory_pipeline_tests.test_balancing_helpers import other_moves

NX = 14
LAYOUT = np.array(
    [
        [0, 0, 0, 0, 0, 1, 1, 3, 3, 3, 4, 4, 5, 5],
        [0, 0, 0, 0, 0, 1, 1, 3, 3, 3, 4, 4, 5, 5],
        [0, 0, 0, 0, 1, 1, 1, 3, 3, 3, 4, 4, 5, 5],
        [0, 0, 0, 0, 1, 1, 1, 3, 3, 3, 4, 4, 5, 5],
        [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5],
    ]
).ravel()
A_OF_1 = [2 * NX + 4, 3 * NX + 4]  # territory 1's two cells of metro A


def _cluster():
    """Targets 10; territory 0 holds 10.8 of metro A, territory 1 1.0 of A and 9.8 of metro B,
    the four others 9.6 of units outside metros each."""
    group = np.full(LAYOUT.size, -1, dtype=np.int64)
    group[LAYOUT == 0] = 0
    group[A_OF_1] = 0
    b = (LAYOUT == 1) & (group < 0)
    group[b] = 1
    w = np.zeros(LAYOUT.size)
    w[LAYOUT == 0] = 10.8 / 18
    w[A_OF_1] = 0.5
    w[b] = 9.8 / 8
    for t in (2, 3, 4, 5):
        w[LAYOUT == t] = 9.6 / (LAYOUT == t).sum()
    problem = replace(_grid_problem(NX, 5, 6, w), group=group, group_limit=np.array([2, 1]))
    return problem, LAYOUT.copy()



def _params():
    return SearchParams(deadline=time.perf_counter() + 60)


def test_the_fixture_is_a_cluster_the_other_moves_leave_alone():
    problem, labels = _cluster()
    dev = _deviations(problem, labels)
    assert np.allclose(dev, [0.08, 0.08, -0.04, -0.04, -0.04, -0.04])
    assert _connected_labels(problem, labels) and metro_spans_over(problem, labels) == 0
    for name, out in other_moves(problem, labels, skip=("release",)).items():
        assert np.abs(_deviations(problem, out)).max() > 0.07, name


def test_releasing_a_piece_lets_a_territory_with_room_join_the_metro():
    problem, labels = _cluster()
    out, kept = release(problem, labels, _params())
    assert kept == 1
    assert np.abs(_deviations(problem, out)).max() <= 0.05
    assert _connected_labels(problem, out)
    assert metro_spans_over(problem, out) == 0
    a = problem.group == 0
    assert 1 not in set(out[a].tolist())  # territory 1 gave its piece of A up
    assert 2 in set(out[a].tolist())  # and territory 2 joined A
    assert set(out[problem.group == 1].tolist()) == {1}  # B untouched


def test_release_is_deterministic():
    problem, labels = _cluster()
    assert np.array_equal(release(problem, labels, _params())[0], release(problem, labels, _params())[0])


def test_a_holder_with_locked_units_keeps_its_piece():
    problem, labels = _cluster()
    locked = np.full(problem.n, -1, dtype=np.int64)
    locked[A_OF_1[0]] = 1
    out, kept = release(replace(problem, locked=locked), labels, _params())
    assert kept == 0 and np.array_equal(out, labels)


def test_without_heavy_metros_nothing_is_released():
    problem, labels = _cluster()
    plain = replace(problem, group=np.empty(0, dtype=np.int64), group_limit=np.empty(0, dtype=np.int64))
    out, kept = release(plain, labels, _params())
    assert kept == 0 and np.array_equal(out, labels)
