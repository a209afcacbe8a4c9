"""A rep event's rebalance widens beyond its locality while the plan is beyond the tolerance,
keeping the first plan within it, else the closest (then the one moving least)."""

from __future__ import annotations

from types import SimpleNamespace

from territory_pipeline.operations.alignment import (
    EngineLocks,
    locality_widths,
    widen_until_balanced,
)


def _plan(imbalance: float, moved: float):
    return SimpleNamespace(metrics={"imbalance": imbalance, "moved_opportunity_share": moved})


def _widen(results: dict[int, tuple[float, float]], locality: int = 2, movable=frozenset({"REP01"})):
    asked = []

    def plan_for(steps):
        asked.append(steps)
        return _plan(*results[steps]), EngineLocks(None, None, None if steps == 0 else set(movable))

    return widen_until_balanced(plan_for, locality, 0.05), asked


def test_a_rep_event_widens_while_beyond_the_tolerance():
    assert locality_widths(2) == [2, 3, 4, 0] and locality_widths(0) == [0]
    # the first width within the tolerance is kept
    chosen, asked = _widen({2: (0.08, 0.10), 3: (0.049, 0.12), 4: (0.03, 0.2), 0: (0.02, 0.3)})
    assert asked == [2, 3] and chosen.steps == 3 and chosen.plan.metrics["imbalance"] == 0.049
    # none within: the closest in 0.5% steps, then the one moving least
    chosen, asked = _widen({2: (0.09, 0.10), 3: (0.071, 0.12), 4: (0.074, 0.11), 0: (0.08, 0.3)})
    assert asked == [2, 3, 4, 0] and chosen.steps == 4
    # a plan within the tolerance at the first width: nothing else is tried
    chosen, asked = _widen({2: (0.04, 0.10)})
    assert asked == [2] and chosen.steps == 2 and len(chosen.tried) == 1
    # no locality rule (movable None): one plan, whatever its balance
    chosen, asked = _widen({0: (0.3, 0.1)}, locality=0)
    assert asked == [0] and chosen.plan.metrics["imbalance"] == 0.3
