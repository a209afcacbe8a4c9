"""Fresh plans are redrawn as balanced location-allocations (Hess et al.): more compact, as balanced.

The local search moves boundary atoms only, so a plan keeps the shape of its start (long
bisection strips stay strips).  ``_transport_start`` redraws a plan around its own centres with
a transportation program (each atom to a near centre at least weight x squared distance, every
load at its target), then keeps each territory's heaviest connected piece and grows the rest
back; the engine finishes both plans and keeps the better one.  A finished regional plan is then
compacted when ``compaction_rounds`` asks (``_compact``): an integer program moves boundaries
towards the nearer centre at no loss of balance, repeated as the centres move.
"""

from __future__ import annotations

import numpy as np
import pytest

from territory_pipeline.balancing import BalanceSettings, balance, greedy_balance
from territory_pipeline.balancing.engine import _plan_score, _transport_start
from territory_pipeline.balancing.synthetic import make_instance
from territory_pipeline_tests.test_balancing import _connected_labels, _grid_problem


def _inertia(problem, labels) -> float:
    return _plan_score(problem, labels, 0.05)[2]


def _stripes(nx_: int, ny: int, k: int) -> np.ndarray:
    """Vertical strips of equal width: balanced, connected and far from compact."""
    cols = np.tile(np.arange(nx_), ny)
    return (cols * k) // nx_


def _corner_voronoi(nx_: int, ny: int) -> np.ndarray:
    """Four territories around seeds crowded into one corner: connected, far off balance and shape."""
    seeds = np.array([(0, 0), (0, 3), (3, 0), (3, 3)], dtype=float)
    xy = np.array([(c, r) for r in range(ny) for c in range(nx_)], dtype=float)
    return np.argmin(((xy[:, None, :] - seeds[None]) ** 2).sum(axis=2), axis=1)


def test_a_lopsided_plan_is_redrawn_into_compact_blocks_of_equal_weight():
    problem = _grid_problem(16, 16, 4)
    start = _corner_voronoi(16, 16)
    labels = _transport_start(problem, start)
    assert _connected_labels(problem, labels)
    assert np.bincount(labels, minlength=4).tolist() == [64, 64, 64, 64]
    # the optimum is four 8x8 quadrants; strips (4x16) have 2.1x their moment of inertia
    quadrants = ((np.arange(256) // 16) // 8) * 2 + (np.arange(256) % 16) // 8
    assert _inertia(problem, labels) <= 1.05 * _inertia(problem, quadrants)
    blocks = labels.reshape(16, 16)
    for t in range(4):
        rows, cols = np.nonzero(blocks == t)
        assert rows.max() - rows.min() < 10 and cols.max() - cols.min() < 10


def test_strips_of_a_uniform_grid_are_a_fixed_point():
    # centres on one line: every atom's nearest centre is its own strip's, so the alternation
    # keeps them (location-allocation finds a local optimum; the engine keeps the better plan)
    problem = _grid_problem(16, 16, 4)
    strips = _stripes(16, 16, 4)
    assert np.array_equal(_transport_start(problem, strips), strips)


def test_weights_not_counts_are_balanced():
    # the left half is three times as heavy: the heavy side holds three of four territories
    weight = np.ones((12, 12))
    weight[:, :6] = 3.0
    problem = _grid_problem(12, 12, 4, weight=weight)
    labels = _transport_start(problem, _corner_voronoi(12, 12))
    tw = np.bincount(labels, weights=problem.weight, minlength=4)
    assert np.abs(tw / problem.targets - 1).max() <= 0.1
    assert _connected_labels(problem, labels)


def test_locked_atoms_keep_their_territory_and_every_territory_stays_connected():
    problem = _grid_problem(12, 12, 3)
    locked = problem.locked.copy()
    locked[[0, 143, 70]] = [2, 0, 1]  # corners and centre given to unlikely territories
    problem.locked = locked
    start = np.minimum(_corner_voronoi(12, 12), 2)
    start[locked >= 0] = locked[locked >= 0]
    labels = _transport_start(problem, start)
    assert (labels[locked >= 0] == locked[locked >= 0]).all()
    assert _connected_labels(problem, labels)
    assert (np.bincount(labels, minlength=3) > 0).all()


def test_a_plan_already_compact_and_balanced_is_kept():
    problem = _grid_problem(8, 8, 4)
    quadrants = ((np.arange(64) // 8) // 4) * 2 + (np.arange(64) % 8) // 4
    assert np.array_equal(_transport_start(problem, quadrants), quadrants)


def test_redrawing_is_deterministic_and_leaves_its_input_alone():
    rng = np.random.default_rng(3)
    problem = _grid_problem(14, 10, 5, weight=rng.uniform(0.5, 1.5, size=(10, 14)))
    start = _corner_voronoi(14, 10)
    start[start == 3] = 4 * (np.arange(140)[start == 3] % 2)
    copy = start.copy()
    first = _transport_start(problem, start)
    assert np.array_equal(start, copy)
    assert np.array_equal(first, _transport_start(problem, start))


@pytest.mark.parametrize("seed", [3, 5])
def test_the_sample_sized_plan_is_more_compact_than_the_greedy_and_within_tolerance(seed):
    # before the redrawing the engine's plan for seed 5 was less compact than the greedy's
    # (133.6 against 122.2 miles); seed 3 redraws too
    inst = make_instance(3000, 20, seed=seed, homes=False)
    plan = balance(inst.units, inst.reps, providers=inst.providers, settings=BalanceSettings(seed=seed))
    m = plan.metrics
    assert m["start"].endswith("+transport")
    assert m["imbalance"] <= 0.05 and m["disconnected_territories"] == 0
    assert m["metros_split_beyond_bound"] == 0
    prov = plan.provider_assignments.join(
        inst.providers.select("npi", "latitude", "longitude", "weight"), on="npi"
    )
    greedy = greedy_balance(plan.units, inst.reps, adjacency=plan.adjacency, providers=prov).metrics
    assert m["compactness_mean_miles"] < greedy["compactness_mean_miles"]
    assert m["inertia_sq_miles"] < greedy["inertia_sq_miles"]


def _random_plans():
    from territory_pipeline_tests.test_balancing import _random_locked_plan

    for seed in range(8):
        problem, labels, _, k = _random_locked_plan(np.random.default_rng(seed), 8, 0.5, 1.5)
        yield problem, labels, k


def _imbalance(problem, labels, k) -> float:
    return float(np.abs(np.bincount(labels, weights=problem.weight, minlength=k) / problem.targets - 1).max())


def test_compaction_lowers_the_inertia_and_never_the_balance():
    # bisection plans of 9x9 random weights (some atoms locked): the integer program over the
    # whole plan moves boundaries to the nearer centre while every territory keeps within the
    # territory ends further from its target than it was or than a fifth of the tolerance
    import time

    from territory_pipeline.balancing.engine import _compact

    gains = []
    for problem, labels, k in _random_plans():
        out, changed = _compact(problem, labels, BalanceSettings(compaction_rounds=3), time.perf_counter() + 60)
        assert _connected_labels(problem, out)
        held = problem.locked >= 0
        assert (out[held] == problem.locked[held]).all()
        assert _imbalance(problem, out, k) <= _imbalance(problem, labels, k) + 1e-9
        before = np.abs(np.bincount(labels, weights=problem.weight, minlength=k) / problem.targets - 1)
        after = np.abs(np.bincount(out, weights=problem.weight, minlength=k) / problem.targets - 1)
        assert (after <= np.maximum(before, 0.01) + 1e-9).all()
        assert _inertia(problem, out) <= _inertia(problem, labels)
        assert changed == int((out != labels).sum())
        gains.append(1 - _inertia(problem, out) / _inertia(problem, labels))
    # every plan gains, several by 5% or more (2-16% when measured)
    assert min(gains) > 0 and sum(g >= 0.05 for g in gains) >= 3


def test_compaction_is_deterministic():
    import time

    from territory_pipeline.balancing.engine import _compact

    problem, labels, _ = next(_random_plans())
    first, _ = _compact(problem, labels, BalanceSettings(compaction_rounds=3), time.perf_counter() + 60)
    second, _ = _compact(problem, labels.copy(), BalanceSettings(compaction_rounds=3), time.perf_counter() + 60)
    assert first.tolist() == second.tolist()


def test_compaction_rounds_make_a_sample_sized_plan_more_compact_at_no_loss_of_balance():
    # seed 1 (measured: inertia 3.1% less, the 3% asked before, mean distance 113.5 -> 111.4 miles, 3.47% -> 3.34%;
    # seed 0's plan, since the transportation step became a min-cost flow, is one compaction
    # cannot improve)
    inst = make_instance(3000, 20, seed=1, homes=False)
    plain = balance(inst.units, inst.reps, providers=inst.providers, settings=BalanceSettings(seed=1))
    compact = balance(
        inst.units, inst.reps, providers=inst.providers, settings=BalanceSettings(seed=1, compaction_rounds=3)
    )
    assert compact.metrics["inertia_sq_miles"] < 0.97 * plain.metrics["inertia_sq_miles"]
    assert compact.metrics["compactness_mean_miles"] < plain.metrics["compactness_mean_miles"]
    assert compact.metrics["imbalance"] <= plain.metrics["imbalance"] + 1e-9
    assert compact.metrics["disconnected_territories"] == 0
    assert compact.metrics["metros_split_beyond_bound"] == 0
    with pytest.raises(ValueError, match="compaction_rounds"):
        BalanceSettings(compaction_rounds=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_transportation_flow_reaches_the_linear_programs_optimum(seed):
    # the redrawing's transportation problem is solved as an integer min-cost flow: its shares
    # meet every atom's weight and every territory's target and cost what the LP optimum costs
    # (but for the integer rounding of weights and costs); a territory its candidates cannot
    # fill falls short at the penalty, as in the LP
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    from territory_pipeline.balancing.engine import _transport_shares

    rng = np.random.default_rng(seed)
    n, k, c = 300, 7, 3
    w = rng.gamma(1.5, 1.0, n)
    w[:4] = 0.0  # weightless atoms: their nearest candidate
    targets = np.full(k, w.sum() / k)
    d2 = np.sort(rng.random((n, c)) * 5, axis=1)
    idx = np.array([rng.choice(k - 1, c, replace=False) for _ in range(n)])  # territory k-1: no candidate
    share = _transport_shares(w, targets, idx, d2)
    assert share.shape == (n, c) and (share >= 0).all()
    assert (share[:4] == [1.0] + [0.0] * (c - 1)).all()
    sent = share.sum(axis=1)
    units = 2.0**36 / w.sum()
    assert np.allclose(sent[4:], w[4:] * units, rtol=0, atol=1.0)
    load = np.bincount(idx.ravel(), weights=share.ravel(), minlength=k) / units
    assert load[k - 1] == 0.0
    # the LP in weight units: x[i, j] the weight of atom i sent to candidate j, slack per territory
    m = n * c
    rows = np.concatenate([np.repeat(np.arange(n), c), n + idx.ravel(), n + np.arange(k), n + np.arange(k)])
    cols = np.concatenate([np.arange(m), np.arange(m), m + np.arange(k), m + k + np.arange(k)])
    vals = np.concatenate([np.ones(m), np.ones(m), np.ones(k), -np.ones(k)])
    a_eq = coo_matrix((vals, (rows, cols)), shape=(n + k, m + 2 * k))
    scale = d2[w > 0].max()
    cost = np.concatenate([(d2 / scale).ravel(), np.full(2 * k, 10.0)])
    lp = linprog(cost, A_eq=a_eq, b_eq=np.concatenate([w, targets]), bounds=(0, None), method="highs")
    flow_cost = float(((share / units) * d2 / scale).sum()) + 10.0 * float(np.abs(load - targets).sum())
    assert lp.status == 0
    assert flow_cost == pytest.approx(lp.fun, rel=1e-5)
