"""Alignment bookkeeping: locks, the realignment mode, alignment ids, per-provider reasons,
and the engine inputs assembled from the stored stages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline.operations.alignment import (
    AlignmentInputError,
    alignment_id,
    assignment_reasons,
    choose_mode,
    engine_inputs,
    read_locks,
)


def _locks_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "locks.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- read_locks -----------------------------------------------------------------------


def test_read_locks_merges_file_and_account_moves_later_wins(tmp_path: Path) -> None:
    path = _locks_file(tmp_path, " NPI , Rep_ID ,note\n1000000003,R1,x\n1000000001, R2 ,y\n1000000002,R1,z\n1000000003,R3,again\n")
    moves = pl.DataFrame({"npi": ["1000000002", "1000000009"], "rep_id": ["R4", "R4"]})
    locks = read_locks(path, moves)
    assert locks.columns == ["npi", "rep_id"]
    assert locks.rows() == [
        ("1000000001", "R2"),  # values are trimmed
        ("1000000002", "R4"),  # the account move wins over the file
        ("1000000003", "R3"),  # within the file, the later row wins
        ("1000000009", "R4"),
    ]


def test_read_locks_keeps_npis_as_text(tmp_path: Path) -> None:
    locks = read_locks(_locks_file(tmp_path, "npi,rep_id\n0000000001,007\n"))
    assert locks.rows() == [("0000000001", "007")]


def test_read_locks_with_nothing_given() -> None:
    assert read_locks(None) is None
    assert read_locks("", pl.DataFrame(schema={"npi": pl.Utf8, "rep_id": pl.Utf8})) is None


def test_read_locks_only_account_moves() -> None:
    moves = pl.DataFrame({"rep_id": ["R2", "R1"], "npi": ["1000000002", "1000000001"], "extra": [1, 2]})
    assert read_locks(None, moves).rows() == [("1000000001", "R1"), ("1000000002", "R2")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("npi,owner\n1000000001,R1\n", "needs npi and rep_id columns"),
        ("rep_id,zip\nR1,85004\n", "needs npi and rep_id columns"),
        ("unit_id,rep_id\nC1,R1\n", "needs npi and rep_id columns"),
        ("npi,rep_id\n1000000001,R1\n,R2\n1000000003,\n", "line(s) 3, 4 lack an npi or a rep_id"),
    ],
)
def test_read_locks_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = _locks_file(tmp_path, text)
    with pytest.raises(AlignmentInputError) as info:
        read_locks(path)
    assert message in str(info.value)
    assert path in str(info.value)


def test_read_locks_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(AlignmentInputError, match="cannot read the locks file"):
        read_locks(str(tmp_path / "absent.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(AlignmentInputError, match="cannot read the locks file"):
        read_locks(str(empty))


# --- choose_mode and alignment_id ----------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "quarter", "has_previous", "expected"),
    [
        ("auto", dt.date(2025, 1, 1), True, "full"),  # the annual month
        ("auto", dt.date(2025, 4, 1), True, "micro"),
        ("auto", dt.date(2025, 4, 1), False, "full"),  # nothing to keep
        ("micro", dt.date(2025, 4, 1), False, "full"),
        ("micro", dt.date(2025, 1, 1), True, "micro"),  # explicit request wins over the calendar
        ("full", dt.date(2025, 7, 1), True, "full"),
    ],
)
def test_choose_mode(requested: str, quarter: dt.date, has_previous: bool, expected: str) -> None:
    assert choose_mode(requested, quarter, has_previous, annual_month=1) == expected


def test_choose_mode_other_annual_month_and_bad_mode() -> None:
    assert choose_mode("auto", dt.date(2025, 7, 1), True, annual_month=7) == "full"
    assert choose_mode("auto", dt.date(2025, 1, 1), True, annual_month=7) == "micro"
    with pytest.raises(ValueError, match="mode must be one of"):
        choose_mode("partial", dt.date(2025, 1, 1), False, annual_month=1)


def test_alignment_id() -> None:
    assert alignment_id(dt.date(2025, 4, 1), "scheduled") == "2025-04-01/scheduled"
    assert alignment_id(dt.date(2025, 4, 1), "rep_event", "reps.csv:3") == "2025-04-01/rep_event/reps.csv:3"


# --- assignment_reasons -------------------------------------------------------------------

CLUSTERS = pl.DataFrame({"cluster_id": ["C1", "C2"], "cbsa_title": ["Phoenix-Mesa-Chandler, AZ", None]})


def _assignments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "npi": ["1000000001", "1000000002", "1000000003", "1000000004", "1000000005"],
            "territory_id": ["T1", "T1", "T2", "T2", "T1"],
            "rep_id": ["R1", "R1", "R2", "R2", "R1"],
            "cluster_id": ["C1", "C2", "C1", "C2", "C1"],
            "unit_id": ["C1", "C2", "C1", "C2", "C1"],
            "opportunity_score": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )


def test_reasons_for_a_micro_alignment() -> None:
    previous = pl.DataFrame(
        {"npi": ["1000000001", "1000000002", "1000000003", "1000000004"], "rep_id": ["R1", "R9", "R1", "R1"]}
    )
    locks = pl.DataFrame({"npi": ["1000000004"], "rep_id": ["R2"]})
    out = assignment_reasons(_assignments(), previous, locks, {"R9"}, CLUSTERS)
    assert out.columns == [*_assignments().columns, "assignment_reason"]
    assert out.drop("assignment_reason").equals(_assignments())
    assert dict(out.select("npi", "assignment_reason").iter_rows()) == {
        "1000000001": "kept with the previous rep; cluster C1 (Phoenix-Mesa-Chandler, AZ)",
        "1000000002": "previous rep R9 left; cluster C2 (no metro) shared out to a neighbour",
        "1000000003": "moved from rep R1 to restore balance; cluster C1 (Phoenix-Mesa-Chandler, AZ)",
        "1000000004": "account locked to rep R2",
        "1000000005": "new provider, placed with its cluster C1 (Phoenix-Mesa-Chandler, AZ)",
    }


def test_reasons_for_a_full_alignment() -> None:
    for previous in (None, pl.DataFrame(schema={"npi": pl.Utf8, "rep_id": pl.Utf8})):
        out = assignment_reasons(_assignments(), previous, None, set(), CLUSTERS)
        reasons = out["assignment_reason"].to_list()
        assert reasons[0] == "full alignment: cluster C1 (Phoenix-Mesa-Chandler, AZ) grown from the rep's base"
        assert reasons[1] == "full alignment: cluster C2 (no metro) grown from the rep's base"
        assert all(r.startswith("full alignment: ") for r in reasons)


def test_locks_win_in_a_full_alignment_too() -> None:
    locks = pl.DataFrame({"npi": ["1000000002"], "rep_id": ["R1"]})
    out = assignment_reasons(_assignments(), None, locks, set(), CLUSTERS)
    assert out.filter(pl.col("npi") == "1000000002")["assignment_reason"].item() == "account locked to rep R1"
    assert out.height == 5


# --- engine_inputs ---------------------------------------------------------------------------


def _stages() -> dict[str, pl.DataFrame]:
    return {
        "scored_clusters": pl.DataFrame({"cluster_id": ["C2", "C1"], "opportunity_score": [5.0, 7.0], "provider_count": [1, 2]}),
        "clusters": pl.DataFrame(
            {
                "cluster_id": ["C1", "C2"],
                "centroid_latitude": [33.4, 33.5],
                "centroid_longitude": [-112.0, -111.9],
                "cbsa_code": ["38060", "38060"],
                "h3_cells": [["a"], ["b"]],
            }
        ),
        "adjacency": pl.DataFrame({"cluster_id": ["C2", "C1"], "neighbor_cluster_id": ["C1", "C2"]}),
        "provider_scores": pl.DataFrame(
            {"npi": ["1000000003", "1000000001", "1000000002"], "cluster_id": ["C2", "C1", "C1"], "opportunity_score": [5.0, 3.0, 4.0]}
        ),
        "geocoded": pl.DataFrame(
            {
                "npi": ["1000000001", "1000000002", "1000000003"],
                "latitude": [33.4, 33.41, 33.5],
                "longitude": [-112.0, -112.01, -111.9],
                "h3_cell": ["a", "a", "b"],
                "cbsa_code": ["38060"] * 3,
            }
        ),
    }


def test_engine_inputs_builds_units_providers_and_edges() -> None:
    inputs = engine_inputs(**_stages())
    assert inputs.units.columns == ["unit_id", "latitude", "longitude", "cbsa_code", "h3_cells", "weight", "provider_count"]
    assert inputs.units.select("unit_id", "weight", "provider_count").rows() == [("C1", 7.0, 2), ("C2", 5.0, 1)]
    assert inputs.providers.select("npi", "unit_id", "weight").rows() == [
        ("1000000001", "C1", 3.0),
        ("1000000002", "C1", 4.0),
        ("1000000003", "C2", 5.0),
    ]
    assert inputs.adjacency.rows() == [("C1", "C2"), ("C2", "C1")]


def test_engine_inputs_errors() -> None:
    stages = _stages()
    stages["geocoded"] = stages["geocoded"].head(2)
    with pytest.raises(AlignmentInputError, match="1 scored providers have no geocoded location"):
        engine_inputs(**stages)
    stages = _stages()
    stages["clusters"] = stages["clusters"].clear()
    with pytest.raises(AlignmentInputError, match="clusters has no rows for this quarter"):
        engine_inputs(**stages)


def test_guardrails_name_every_blocking_failure() -> None:
    from territory_pipeline.operations.alignment import guardrails

    scores = pl.DataFrame({"npi": ["1", "2", "3"]})
    reps = pl.DataFrame({"rep_id": ["R1", "R2", "R3"]})
    territories = pl.DataFrame(
        {"territory_id": ["T-R1", "T-R2", "T-R3"], "rep_id": ["R1", "R2", "R3"], "provider_count": [2, 1, 0], "is_contiguous": [True, False, True]}
    )
    bad = guardrails({"imbalance": 0.25}, territories, pl.DataFrame({"npi": ["1", "1", "9"]}), scores, reps, 0.05)
    assert (bad.duplicated, bad.unassigned, bad.unknown) == (1, 2, 1)
    assert bad.idle_reps == ["R3"] and bad.disconnected == ["T-R2"]
    assert bad.blocking_failures == [
        "imbalance 25.0% >= 20%",
        "providers not assigned exactly once",
        "a rep without a territory",
        "disconnected territories",
    ]
    good = guardrails(
        {"imbalance": 0.12, "metros_split_beyond_bound": 1},
        territories.with_columns(pl.lit(1).alias("provider_count"), pl.lit(True).alias("is_contiguous")),
        pl.DataFrame({"npi": ["1", "2", "3"]}),
        scores,
        reps,
        0.05,
    )
    assert good.blocking_failures == []  # a WARN-level imbalance and a metro split do not block
    assert good.metros_split_beyond_bound == 1
