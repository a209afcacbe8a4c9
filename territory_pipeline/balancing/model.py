"""Settings and result types of the balancing engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class BalanceSettings:
    """Knobs of :func:`territory_pipeline.balancing.balance` (all have sensible defaults).

    tolerance: allowed relative deviation of opportunity per territory (±5%).
    secondary_tolerance: allowed deviation of provider count and workload (±15%).
    seed: seeds k-means seeding; the same seed and inputs give identical plans.
    visit_frequency_per_quarter, call_minutes, travel_mph, circuity: the workload
        model, hours per quarter = providers × visits × (call + one-way travel
        from the rep base, great-circle miles × circuity / mph).
    restarts: number of starting partitions tried (alternating recursive
        bisection and home-seeded growth); the best plan is kept.  None: 8
        when there are at most 2,000 pieces to assign (whole light metros,
        units, heavy-metro parts: a regional team, seconds), else 4 (national
        universes, where each start costs several seconds).
    max_iterations: cap on local-search rounds per start; time_limit_seconds:
        wall-clock cap (a safety net: when it cuts a run short, the plan is
        flagged ``timed_out`` and is no longer guaranteed reproducible).
    split_heavy_units: split metros / units heavier than (1+τ)μ along H3 cells.
    keep_metros_whole: treat each metro lighter than (1+τ)μ as one indivisible
        atom (False: its units move freely, trading metro integrity for balance).
    whole_metro_parts: keep each part of a heavy metro as one atom (False:
        the parts' H3 cells move freely).
    h3_split_resolution: first H3 resolution tried for those splits;
    h3_max_resolution: finest resolution used when cells are still too heavy.
    adjacency_max_edge_miles: longest Delaunay edge kept when adjacency is built
        from centroids (components are then joined by their nearest links).
    compactness_weight, relationship_weight: weights of those objective terms.
    disruption_weight: penalty per unit of opportunity moved away from its
        previous rep (used only when ``previous`` is given).
    compaction_rounds: rounds of the integer-program compaction of a fresh regional
        plan (up to 2,000 pieces; 0: off).  Each round re-solves every piece for the
        least moment of inertia with every territory connected, metros whole and no
        territory further from its target than before (or a fifth of the tolerance).
        Off by default: on the sample (seeds 0-5) 3 rounds shortened the mean distance
        by 2.5% (136 to 133 miles; 2-4% on 3k synthetic universes), but the compacted
        sample plans rebalanced worse after single-rep departures (10 of 80 beyond
        1.5x the least move instead of 3, two left beyond ±5%).
    """

    tolerance: float = 0.05
    secondary_tolerance: float = 0.15
    seed: int = 0
    visit_frequency_per_quarter: float = 3.0
    call_minutes: float = 30.0
    travel_mph: float = 45.0
    circuity: float = 1.25
    restarts: int | None = None
    max_iterations: int = 5000
    time_limit_seconds: float = 120.0
    split_heavy_units: bool = True
    keep_metros_whole: bool = True
    whole_metro_parts: bool = True
    h3_split_resolution: int = 7
    h3_max_resolution: int = 10
    adjacency_max_edge_miles: float = 75.0
    compactness_weight: float = 0.05
    relationship_weight: float = 0.5
    disruption_weight: float = 1.0
    compaction_rounds: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if not 0 < self.secondary_tolerance < 1:
            raise ValueError(
                f"secondary_tolerance must be in (0, 1), got {self.secondary_tolerance}"
            )
        if self.travel_mph <= 0 or self.circuity <= 0:
            raise ValueError("travel_mph and circuity must be positive")
        if self.compaction_rounds < 0:
            raise ValueError(f"compaction_rounds must be >= 0, got {self.compaction_rounds}")
        if not 0 <= self.h3_split_resolution <= self.h3_max_resolution <= 15:
            raise ValueError("need 0 <= h3_split_resolution <= h3_max_resolution <= 15")


@dataclass(frozen=True)
class Plan:
    """A territory alignment and its evaluation.

    unit_assignments: unit_id, territory_id, rep_id (one row per final unit; a
        split unit appears as '<unit>#<k>' parts).
    provider_assignments: npi, unit_id, territory_id, rep_id, opportunity_score
        (None when no providers were given).
    territories: one row per rep, see ``metrics.TERRITORY_COLUMNS``.
    metrics: plan-level measures, see :func:`metrics.evaluate_plan`.
    units: the final units balanced (after splits) with their metro and centroid.
    adjacency: unit_id, neighbor_unit_id over the final units (symmetric).
    """

    unit_assignments: pl.DataFrame
    provider_assignments: pl.DataFrame | None
    territories: pl.DataFrame
    metrics: dict[str, Any]
    units: pl.DataFrame
    adjacency: pl.DataFrame
