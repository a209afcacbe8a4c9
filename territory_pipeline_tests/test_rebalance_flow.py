"""Rebalancing carries the least-move flow out.

* ``flow_moves`` realises a flow between neighbouring territories with boundary atoms, so a
  surplus reaches a territory two borders away in one go (where each single move alone makes a
  neighbour worse); it keeps territories connected, locked atoms and heavy-metro holding.
* ``grow`` lets a heavy metro's atoms join a new territory only while the metro spans fewer
  territories than its parts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from territory_pipeline.balancing.partition import (
    SearchParams,
    bisect,
    flow_moves,
    grow,
    improve,
)
from territory_pipeline_tests.test_balancing import (
    _connected_labels,
    _grid_problem,
    _random_locked_plan,
)


def _line(labels: list[int], k: int):
    problem = _grid_problem(len(labels), 1, k)
    return problem, np.array(labels)


def test_flow_moves_carry_a_surplus_two_borders_away():
    # 12 unit atoms on a line, three territories of target 4 holding 6, 4 and 2
    problem, labels = _line([0] * 6 + [1] * 4 + [2] * 2, 3)
    arcs, flow = np.array([[0, 1], [1, 2]]), np.array([2.0, 2.0])
    out, moved, carried = flow_moves(problem, labels, arcs, flow)
    assert out.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert moved == 4 and carried.tolist() == [2.0, 2.0]
    # the engine's flow start solves the flow itself and gets there too
    from territory_pipeline.balancing.engine import _flow_start

    assert _flow_start(problem, labels, 0.0).tolist() == out.tolist()


def test_flow_moves_keep_locks_and_heavy_metro_holding():
    problem, labels = _line([0] * 6 + [1] * 4 + [2] * 2, 3)
    arcs, flow = np.array([[0, 1], [1, 2]]), np.array([2.0, 2.0])
    # atom 5, territory 0's only atom on the border with 1, is locked: 0 gives nothing
    locked = replace(problem, locked=np.array([-1] * 5 + [0] + [-1] * 6))
    out, _, carried = flow_moves(locked, labels, arcs, flow)
    assert carried.tolist() == [0.0, 2.0] and out[:6].tolist() == [0] * 6
    # atoms 3-5 are a heavy metro held by territory 0 alone, limited to one territory
    group = np.array([-1] * 3 + [0] * 3 + [-1] * 6)
    held = replace(problem, group=group, group_limit=np.array([1]))
    assert flow_moves(held, labels, arcs, flow)[2].tolist() == [0.0, 2.0]
    # limited to two territories, territory 1 may become its second holder
    assert flow_moves(replace(held, group_limit=np.array([2])), labels, arcs, flow)[2].tolist() == [2.0, 2.0]


def test_flow_moves_do_not_sweep_weightless_atoms_along():
    # atoms 2-7 weigh nothing: taking them carries nothing, so they stay where they are
    problem = _grid_problem(10, 1, 2, weight=np.array([3, 3, 0, 0, 0, 0, 0, 0, 1, 1], dtype=float))
    labels = np.array([0] * 8 + [1] * 2)
    out, moved, carried = flow_moves(problem, labels, np.array([[0, 1]]), np.array([1.0]))
    assert moved == 0 and carried.tolist() == [0.0] and out.tolist() == labels.tolist()


def test_a_rebalance_keeps_heavy_metros_within_their_parts():
    from territory_pipeline.balancing.engine import _rebalance_key

    # a metro (atoms 0-5) limited to two territories but spread over three ranks below one
    # within its limit, however balanced and however little moved
    problem, _ = _line([0] * 9, 3)
    problem = replace(
        problem,
        group=np.array([0] * 6 + [-1] * 3),
        group_limit=np.array([2]),
        previous=np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]),
    )
    spread = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    kept = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    assert _rebalance_key(problem, spread, 0.05)[0] == 1
    assert _rebalance_key(problem, kept, 0.05)[0] == 0
    assert _rebalance_key(problem, kept, 0.05) < _rebalance_key(problem, spread, 0.05)


def test_flow_moves_never_cut_a_territory_apart_nor_carry_twice_the_flow():
    from territory_pipeline.balancing.engine import _flow_start

    rng = np.random.default_rng(3)
    balanced = 0
    for case in range(20):
        problem, labels, weight, k = _random_locked_plan(rng, 6, 0.3, 1.7)
        locked = problem.locked
        cap = rng.uniform(0.8, 1.2, k)  # targets move (capacities change)
        problem = replace(problem, targets=weight.sum() * cap / cap.sum())
        out = _flow_start(problem, labels, 0.025)
        assert _connected_labels(problem, out) and len(set(out.tolist())) == k, case
        assert np.all(out[locked >= 0] == labels[locked >= 0])
        before = np.abs(np.bincount(labels, weights=weight, minlength=k) / problem.targets - 1).max()
        after = np.abs(np.bincount(out, weights=weight, minlength=k) / problem.targets - 1).max()
        balanced += after < before
    assert balanced >= 15


def test_flow_moves_carry_at_most_flow_plus_one_atom_per_arc():
    rng = np.random.default_rng(8)
    for case in range(20):
        weight = rng.uniform(0.3, 1.7, 8 * 8)
        problem = _grid_problem(8, 8, 4, weight=weight)
        labels = bisect(problem, np.arange(4), rng)
        pairs = {(int(labels[u]), int(labels[v])) for u in range(64) for v in problem.indices[problem.indptr[u] : problem.indptr[u + 1]] if labels[u] != labels[v]}
        arcs = np.array(sorted(pairs))
        flow = rng.uniform(0.0, 3.0, len(arcs))
        out, moved, carried = flow_moves(problem, labels, arcs, flow)
        assert np.all(carried < 2 * flow + 1e-12) and np.all(carried <= flow + weight.max()), case
        assert _connected_labels(problem, out)
        assert moved >= int((out != labels).sum())  # an atom may pass through two territories


def test_grow_holds_a_heavy_metro_to_its_limit():
    # territory 0 holds atoms 0-2 (atom 2 is in the metro), 1 holds 6-8; 3-5 (the metro) are orphaned
    problem, _ = _line([0] * 9, 2)
    labels = np.array([0, 0, 0, -1, -1, -1, 1, 1, 1])
    anchors = np.array([[0.0, 0.0], [56.0, 0.0]])
    group = np.array([-1, -1, 0, 0, 0, 0, -1, -1, -1])
    limited = replace(problem, group=group, group_limit=np.array([1]))
    assert grow(limited, labels, anchors).tolist() == [0] * 6 + [1] * 3
    # a limit of two lets territory 1 (the emptier one) take its side of the metro
    shared = grow(replace(limited, group_limit=np.array([2])), labels, anchors)
    assert shared.tolist() in ([0] * 4 + [1] * 5, [0] * 5 + [1] * 4)
    # atom 6 (in the metro, held by territory 0 alone) is reachable only from territory 1: the
    # first pass leaves it, the second grows it anyway (nothing stays unassigned)
    labels = np.array([0, 0, 0, 0, 0, 1, -1, 1, 1])
    cut = replace(limited, group=np.array([0, -1, -1, -1, -1, -1, 0, -1, -1]))
    from territory_pipeline.balancing.partition import _grow

    assert _grow(cut, labels, anchors, True)[6] == -1
    assert grow(cut, labels, anchors).tolist() == [0] * 5 + [1] * 4


def test_improve_from_a_flow_start_keeps_what_the_flow_carried():
    # the local search, weighing disruption, does not undo a balanced flow start
    problem, labels = _line([0] * 6 + [1] * 4 + [2] * 2, 3)
    problem = replace(problem, previous=labels.copy())
    out, _, _ = flow_moves(problem, labels, np.array([[0, 1], [1, 2]]), np.array([2.0, 2.0]))
    params = SearchParams(secondary_weight=0.0, balance_weight=0.05, excess_weight=1500.0, margin=0.88,
                          hard_weight=0.0, disruption_weight=1.0, pair_moves=False)
    after, _, _ = improve(problem, out.copy(), params)
    assert after.tolist() == out.tolist()
    assert np.bincount(after, minlength=3).tolist() == [4, 4, 4]
    assert pytest.approx(4.0) == float((after != labels).sum())


def test_a_rep_leaving_a_shared_heavy_metro_is_rebalanced_on_its_cells():
    import polars as pl

    from territory_pipeline.balancing import BalanceSettings, balance
    from territory_pipeline.balancing.synthetic import make_instance

    # 3,000 providers, 40 reps: three heavy metros are split between reps.  R002 holds a part of
    # one; when R002 leaves, searching on whole metro parts ended at 7.4% (its part is a lump no
    # neighbour can take whole); on the metro's cells the plan is back within ±5%.
    inst = make_instance(3000, 40, seed=0, homes=False)
    settings = BalanceSettings(seed=0)
    fresh = balance(inst.units, inst.reps, providers=inst.providers, settings=settings)
    previous = fresh.provider_assignments.select("npi", "rep_id")
    metros = (
        fresh.provider_assignments.join(inst.units.select("unit_id", "cbsa_code"), on="unit_id")
        .filter(pl.col("cbsa_code").is_not_null())
        .group_by("cbsa_code")
        .agg(pl.col("rep_id").n_unique().alias("reps"), pl.col("rep_id").unique().alias("holders"))
        .filter(pl.col("reps") > 1)
    )
    assert "R002" in set(metros["holders"].explode().to_list())
    roster = inst.reps.filter(pl.col("rep_id") != "R002")
    plan = balance(inst.units, roster, providers=inst.providers, previous=previous, settings=settings)
    m = plan.metrics
    assert m["imbalance"] <= 0.05
    assert m["disconnected_territories"] == 0 and m["metros_split_beyond_bound"] == 0
    # 1.65x (1.69x before the least-move repair; a heavy-metro holder among 40 reps: beyond the
    # 1.5x bar, see README; 1.77x on the plan compacted with compaction_rounds=3)
    assert m["moved_opportunity_share"] <= 1.7 * m["least_move_flow_share"]
    assert "R002" not in set(plan.provider_assignments["rep_id"].to_list())


def test_a_neighbourhood_recut_knows_where_its_atoms_were():
    from territory_pipeline.balancing.partition import _subproblem

    # the re-cut of territories 1 and 2 searches a sub-problem: the atoms' previous territories
    # must come along (as local indices), or the search inside it ignores disruption
    problem, _ = _line([0] * 4 + [1] * 4 + [2] * 4, 3)
    previous = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, -1])
    problem = replace(problem, previous=previous)
    atoms = np.arange(4, 12)
    sub, local = _subproblem(problem, atoms, np.array([1, 2]))
    assert local.tolist() == [-1, 0, 1]
    assert sub.previous.tolist() == [0, 0, 0, 1, 1, 1, 1, -1]
    # an atom whose previous territory lies outside the region has none inside it
    sub, _ = _subproblem(problem, np.arange(0, 8), np.array([0, 1]))
    assert sub.previous.tolist() == [0, 0, 0, 1, 1, 1, 1, -1]
    sub, _ = _subproblem(problem, np.arange(4, 12), np.array([2, 1]))
    assert sub.previous.tolist() == [1, 1, 1, 0, 0, 0, 0, -1]


@pytest.mark.parametrize("seed", range(4))
def test_a_sub_problem_keeps_exactly_the_edges_among_its_atoms(seed):
    # the sub-problem's graph is the induced subgraph on its atoms, in their order, each row's
    # neighbours sorted (what the searches inside it iterate over)
    from scipy.sparse import csr_matrix

    from territory_pipeline.balancing.partition import _subproblem
    from territory_pipeline_tests.test_balancing import _grid_problem

    rng = np.random.default_rng(seed)
    problem = _grid_problem(15, 12, 6, weight=rng.uniform(0.5, 2.0, 180))
    full = csr_matrix((np.ones(len(problem.indices)), problem.indices, problem.indptr), shape=(180, 180))
    for size in (1, 2, 30, 120, 180):
        atoms = rng.choice(180, size=size, replace=False)
        if seed % 2:
            atoms = np.sort(atoms)
        sub, _ = _subproblem(problem, atoms, np.arange(6))
        want = full[atoms][:, atoms].tocsr()
        want.sort_indices()
        assert sub.indptr.tolist() == want.indptr.tolist()
        assert sub.indices.tolist() == want.indices.tolist()
        assert sub.weight.tolist() == problem.weight[atoms].tolist()


def test_the_flow_reference_counts_a_departed_rep_holding_only_parts_of_units():
    # the departed rep A held a minority of unit U1 (the cells of a heavy metro's unit were split
    # between territories); its weight must still be passed on, to the rep holding most of U1
    import polars as pl

    from territory_pipeline.balancing import evaluate_plan

    units = pl.DataFrame(
        {
            "unit_id": ["U1", "U2", "U3"],
            "weight": [4.0, 2.0, 4.0],
            "provider_count": [2, 1, 1],
            "latitude": [40.0, 40.0, 40.0],
            "longitude": [-100.0, -99.9, -99.8],
            "cbsa_code": [None, None, None],
        },
        schema_overrides={"cbsa_code": pl.Utf8},
    )
    adjacency = pl.DataFrame({"unit_id": ["U1", "U2", "U2", "U3"], "neighbor_unit_id": ["U2", "U1", "U3", "U2"]})
    providers = pl.DataFrame(
        {
            "npi": ["1", "2", "3", "4"],
            "unit_id": ["U1", "U1", "U2", "U3"],
            "latitude": [40.0, 40.0, 40.0, 40.0],
            "longitude": [-100.0, -100.0, -99.9, -99.8],
            "weight": [1.0, 3.0, 2.0, 4.0],
        }
    )
    previous = pl.DataFrame({"npi": ["1", "2", "3", "4"], "rep_id": ["A", "B", "B", "C"]})
    reps = pl.DataFrame(
        {"rep_id": ["B", "C"], "rep_name": ["B", "C"], "home_latitude": [None, None], "home_longitude": [None, None], "capacity": [1.0, 1.0]},
        schema_overrides={"home_latitude": pl.Float64, "home_longitude": pl.Float64},
    )
    assignments = pl.DataFrame({"unit_id": ["U1", "U2", "U3"], "rep_id": ["B", "C", "C"]})
    _, m = evaluate_plan(units, assignments, reps, adjacency, providers=providers, previous=previous)
    # targets 5: A's 1 goes to B (6), which passes 0.75 on to C (4 -> 4.75, within 5%): 1.75 of 10
    assert m["least_move_flow_share"] == pytest.approx(0.175)
    assert m["moved_opportunity_share"] == pytest.approx(0.3)  # A's 1 and U2's 2
    assert m["disruption_ratio_flow"] == pytest.approx(0.3 / 0.175)


def test_a_lump_may_overshoot_the_flow_within_a_tolerance_band():
    # a line of weights 5,5,5,2.4 | 1,1 (targets 9.7): the flow asks territory 0 for 1.1 across a
    # border atom of 2.4, more than twice the flow, so alone it carries nothing; with an overshoot
    # of 0.02 x the target (0.19) still nothing (2.4 > 2.2 + 0.19); with 0.05 (0.49) the lump
    # passes (in a rebalance, the next flow solve passes any excess on)
    weight = np.array([5.0, 5.0, 5.0, 2.4, 1.0, 1.0])
    problem = _grid_problem(6, 1, 2, weight=weight)
    labels = np.array([0, 0, 0, 0, 1, 1])
    arcs, flow = np.array([[0, 1]]), np.array([1.1])
    assert flow_moves(problem, labels, arcs, flow)[2].tolist() == [0.0]
    assert flow_moves(problem, labels, arcs, flow, overshoot=0.02)[2].tolist() == [0.0]
    out, moved, carried = flow_moves(problem, labels, arcs, flow, overshoot=0.05)
    assert carried.tolist() == [2.4] and moved == 1 and out.tolist() == [0, 0, 0, 1, 1, 1]
