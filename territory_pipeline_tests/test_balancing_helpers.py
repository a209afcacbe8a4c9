"""Instance builders shared by the balancing tests (no tests here)."""

from __future__ import annotations

import numpy as np
import polars as pl


def grid_instance(
    nx: int,
    ny: int,
    k: int,
    weight: np.ndarray | None = None,
    cbsa: dict[tuple[int, int], str] | None = None,
    capacity: list[float] | None = None,
) -> dict[str, pl.DataFrame]:
    """Units on an nx x ny lattice (about 7 miles apart), 4-neighbour adjacency, one provider each."""
    rows = []
    for r in range(ny):
        for c in range(nx):
            rows.append(
                {
                    "unit_id": f"g{r:02d}_{c:02d}",
                    "weight": float(weight[r, c]) if weight is not None else 1.0,
                    "provider_count": 1,
                    "latitude": 40.0 + 0.1 * r,
                    "longitude": -100.0 + 0.13 * c,
                    "cbsa_code": (cbsa or {}).get((r, c)),
                }
            )
    units = pl.DataFrame(rows, schema_overrides={"cbsa_code": pl.Utf8})
    edges = []
    for r in range(ny):
        for c in range(nx):
            if c + 1 < nx:
                edges.append((f"g{r:02d}_{c:02d}", f"g{r:02d}_{c + 1:02d}"))
            if r + 1 < ny:
                edges.append((f"g{r:02d}_{c:02d}", f"g{r + 1:02d}_{c:02d}"))
    a, b = zip(*edges)
    adjacency = pl.DataFrame(
        {"unit_id": list(a) + list(b), "neighbor_unit_id": list(b) + list(a)}
    )
    providers = units.select(
        pl.format("{}", pl.int_range(1_000_000_000, 1_000_000_000 + pl.len())).alias(
            "npi"
        ),
        "unit_id",
        "latitude",
        "longitude",
        "weight",
    )
    reps = pl.DataFrame(
        {
            "rep_id": [f"R{i:02d}" for i in range(k)],
            "rep_name": [f"Rep {i}" for i in range(k)],
            "home_latitude": [None] * k,
            "home_longitude": [None] * k,
            "capacity": capacity or [1.0] * k,
        },
        schema_overrides={"home_latitude": pl.Float64, "home_longitude": pl.Float64},
    )
    return {
        "units": units,
        "adjacency": adjacency,
        "providers": providers,
        "reps": reps,
    }


def other_moves(problem, labels: np.ndarray, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """What each compound move of the local search makes of ``labels`` (for fixtures built so
    that only the move under test helps): the search itself, minimax moves, hand-over,
    relocation, release, donation and the re-cut of neighbourhoods with heavy-metro cells,
    less those named in ``skip``."""
    import time

    from territory_pipeline.balancing.partition import (
        SearchParams,
        donate,
        handover,
        improve,
        minmax_moves,
        polish,
        release,
        relocate,
    )

    def params():
        return SearchParams(deadline=time.perf_counter() + 60)

    moves = {
        "improve": lambda: improve(problem, labels, params())[0],
        "minmax": lambda: minmax_moves(problem, labels, 0.05, deadline=time.perf_counter() + 60)[0],
        "handover": lambda: handover(problem, labels, params())[0],
        "relocate": lambda: relocate(problem, labels, params())[0],
        "release": lambda: release(problem, labels, params())[0],
        "donate": lambda: donate(problem, labels, params())[0],
        "polish": lambda: polish(problem, labels, params(), 0, minmax=True, with_groups=True, hops=3, max_region=20)[0],
    }
    return {name: move() for name, move in moves.items() if name not in skip}
