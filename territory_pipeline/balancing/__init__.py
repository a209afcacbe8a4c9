"""Territory balancing: contiguous, metro-preserving territories balanced on opportunity.

Public API: :func:`balance` (the engine), :func:`greedy_balance` (the field's
largest-first baseline), :func:`evaluate_plan` (the shared metrics),
:class:`BalanceSettings` and :class:`Plan`, plus the bounds in :mod:`.bounds`.
"""

from .bounds import (
    best_partition_bound,
    granularity_bound,
    least_move,
    neighbourhood_bound,
)
from .engine import balance
from .greedy import greedy_balance
from .metrics import TERRITORY_COLUMNS, evaluate_plan
from .model import BalanceSettings, Plan

__all__ = [
    "TERRITORY_COLUMNS",
    "BalanceSettings",
    "Plan",
    "balance",
    "best_partition_bound",
    "evaluate_plan",
    "granularity_bound",
    "greedy_balance",
    "least_move",
    "neighbourhood_bound",
]
