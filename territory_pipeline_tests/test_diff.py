"""What moved between two alignments: provider changes, the per-territory summary, the markdown."""

from __future__ import annotations

import polars as pl
import pytest

from territory_pipeline.operations.diff import (
    CHANGES_SCHEMA,
    alignment_changes,
    changes_markdown,
    territory_change_summary,
)


def _alignment(rows: list[tuple[str, str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"npi": pl.Utf8, "territory_id": pl.Utf8, "rep_id": pl.Utf8, "opportunity_score": pl.Float64},
        orient="row",
    )


PREVIOUS = _alignment(
    [
        ("1000000001", "T1", "R1", 10.0),
        ("1000000002", "T1", "R1", 20.0),
        ("1000000003", "T2", "R2", 30.0),  # moves T2 -> T1 (rebalance)
        ("1000000004", "T2", "R2", 40.0),  # stays
        ("1000000005", "T3", "R3", 50.0),  # R3 leaves: T3 dissolved, moves to T2
        ("1000000006", "T3", "R3", 60.0),  # R3 leaves, moves to T1 and is locked there
        ("1000000007", "T1", "R1", 70.0),  # departs the universe
        ("1000000008", "T1", "R1", 80.0),  # moves T1 -> T2 (rebalance)
    ]
)
CURRENT = _alignment(
    [
        ("1000000001", "T1", "R1", 11.0),
        ("1000000002", "T1", "R1", 20.0),
        ("1000000003", "T1", "R1", 33.0),
        ("1000000004", "T2", "R2", 40.0),
        ("1000000005", "T2", "R2", 55.0),
        ("1000000006", "T1", "R1", 66.0),
        ("1000000008", "T2", "R2", 88.0),
        ("1000000009", "T2", "R2", 9.0),  # new
    ]
)
TERRITORIES = pl.DataFrame(
    {"territory_id": ["T1", "T2"], "rep_id": ["R1", "R2"], "opportunity_score": [130.0, 192.0], "provider_count": [4, 4]}
)


@pytest.fixture()
def changes() -> pl.DataFrame:
    return alignment_changes(PREVIOUS, CURRENT, departed_reps={"R3"}, locked_npis={"1000000006"})


def test_changes_classify_moved_new_departed(changes: pl.DataFrame) -> None:
    assert changes.schema == pl.Schema(CHANGES_SCHEMA)
    rows = {r["npi"]: r for r in changes.iter_rows(named=True)}
    assert {n: r["change_type"] for n, r in rows.items()} == {
        "1000000003": "moved",
        "1000000005": "moved",
        "1000000006": "moved",
        "1000000008": "moved",
        "1000000009": "new",
        "1000000007": "departed",
    }
    # unchanged providers (even with a new score) are not listed
    assert "1000000001" not in rows and "1000000004" not in rows
    assert (rows["1000000003"]["from_territory_id"], rows["1000000003"]["to_territory_id"]) == ("T2", "T1")
    assert (rows["1000000003"]["from_rep_id"], rows["1000000003"]["to_rep_id"]) == ("R2", "R1")
    assert rows["1000000003"]["opportunity_score"] == 33.0  # the current score
    assert (rows["1000000009"]["from_territory_id"], rows["1000000009"]["to_territory_id"]) == (None, "T2")
    assert (rows["1000000007"]["from_territory_id"], rows["1000000007"]["to_territory_id"]) == ("T1", None)
    assert rows["1000000007"]["opportunity_score"] == 70.0  # the last known score
    # sorted by change type, then NPI
    assert changes.select("change_type", "npi").rows() == sorted(changes.select("change_type", "npi").rows())


def test_change_reasons(changes: pl.DataFrame) -> None:
    reasons = dict(changes.select("npi", "reason").iter_rows())
    assert reasons == {
        "1000000003": "moved to restore balance",
        "1000000005": "previous rep left; territory shared out",
        "1000000006": "account locked to its rep",  # the lock wins over the departed rep
        "1000000008": "moved to restore balance",
        "1000000009": "provider entered the target universe",
        "1000000007": "provider left the target universe (inactive, moved away or no longer a target)",
    }


def test_reasons_without_departed_reps_or_locks() -> None:
    changes = alignment_changes(PREVIOUS, CURRENT)
    moved = changes.filter(pl.col("change_type") == "moved")
    assert set(moved["reason"].to_list()) == {"moved to restore balance"}


def test_first_alignment_makes_every_provider_new() -> None:
    for previous in (None, PREVIOUS.clear()):
        changes = alignment_changes(previous, CURRENT)
        assert changes.height == CURRENT.height
        assert set(changes["change_type"].to_list()) == {"new"}
        assert changes["npi"].to_list() == sorted(CURRENT["npi"].to_list())
        assert changes["from_territory_id"].null_count() == CURRENT.height


def test_identical_alignments_have_no_changes() -> None:
    changes = alignment_changes(PREVIOUS, PREVIOUS.sample(fraction=1.0, shuffle=True, seed=3))
    assert changes.height == 0
    assert changes.schema == pl.Schema(CHANGES_SCHEMA)


def test_summary_counts_and_balances(changes: pl.DataFrame) -> None:
    summary = territory_change_summary(changes, TERRITORIES)
    assert summary["territory_id"].to_list() == ["T1", "T2", "T3"]
    rows = {r["territory_id"]: r for r in summary.iter_rows(named=True)}
    assert (rows["T1"]["providers_gained"], rows["T1"]["providers_lost"]) == (2, 1)  # 3 and 6 in, 8 out
    assert (rows["T2"]["providers_gained"], rows["T2"]["providers_lost"]) == (2, 1)  # 5 and 8 in, 3 out
    assert (rows["T3"]["providers_gained"], rows["T3"]["providers_lost"]) == (0, 2)
    assert rows["T1"]["opportunity_gained"] == pytest.approx(33.0 + 66.0)
    assert rows["T1"]["opportunity_lost"] == pytest.approx(88.0)
    assert rows["T3"]["opportunity_lost"] == pytest.approx(55.0 + 66.0)
    assert (rows["T2"]["new_providers"], rows["T1"]["departed_providers"]) == (1, 1)
    assert rows["T1"]["new_providers"] == rows["T2"]["departed_providers"] == 0
    # every move is gained by one territory and lost by another
    assert summary["providers_gained"].sum() == summary["providers_lost"].sum() == 4
    assert summary["opportunity_gained"].sum() == pytest.approx(summary["opportunity_lost"].sum())
    assert summary["dissolved"].to_list() == [False, False, True]
    assert rows["T3"]["rep_id"] is None and rows["T3"]["provider_count"] is None
    assert rows["T1"]["rep_id"] == "R1" and rows["T1"]["provider_count"] == 4
    for column in ("providers_gained", "providers_lost", "new_providers", "departed_providers"):
        assert summary.schema[column] == pl.Int64


def test_summary_of_territories_without_changes() -> None:
    summary = territory_change_summary(alignment_changes(PREVIOUS, PREVIOUS), TERRITORIES)
    assert summary["territory_id"].to_list() == ["T1", "T2"]
    assert summary.select("providers_gained", "providers_lost", "new_providers", "departed_providers").sum().row(0) == (0, 0, 0, 0)
    assert summary["opportunity_gained"].to_list() == [0.0, 0.0]
    assert not summary["dissolved"].any()


def test_markdown_reports_totals_territories_and_moves(changes: pl.DataFrame) -> None:
    summary = territory_change_summary(changes, TERRITORIES)
    text = changes_markdown(summary, changes, title="Alignment 2025-04-01 vs 2025-01-01")
    assert text.startswith("# Alignment 2025-04-01 vs 2025-01-01\n")
    assert text.endswith("\n")
    assert "- providers moved: 4 (242.0 opportunity)" in text  # 33 + 55 + 66 + 88
    assert "- new providers: 1" in text
    assert "- departed providers: 1" in text
    assert "| T1 | R1 | 2 | 1 | 99.0 | 88.0 | 0 | 1 |" in text
    assert "| T3 (dissolved) | - | 0 | 2 | 0.0 | 121.0 | 0 | 0 |" in text
    assert "## Who moved (first 4 of 4)" in text
    moved_lines = [line for line in text.splitlines() if line.startswith("| 10000000")]
    # biggest opportunity first
    assert moved_lines == [
        "| 1000000008 | T1 | T2 | 88.00 | moved to restore balance |",
        "| 1000000006 | T3 | T1 | 66.00 | account locked to its rep |",
        "| 1000000005 | T3 | T2 | 55.00 | previous rep left; territory shared out |",
        "| 1000000003 | T2 | T1 | 33.00 | moved to restore balance |",
    ]


def test_markdown_limits_the_moved_rows(changes: pl.DataFrame) -> None:
    summary = territory_change_summary(changes, TERRITORIES)
    text = changes_markdown(summary, changes, title="t", max_rows=2)
    assert "## Who moved (first 2 of 4)" in text
    assert "| 1000000008 |" in text and "| 1000000006 |" in text
    assert "| 1000000003 |" not in text


def test_markdown_without_moves_has_no_moved_section() -> None:
    changes = alignment_changes(None, CURRENT)
    summary = territory_change_summary(changes, TERRITORIES)
    text = changes_markdown(summary, changes, title="First alignment")
    assert "- providers moved: 0 (0.0 opportunity)" in text
    assert "- new providers: 8" in text
    assert "Who moved" not in text
    assert "| T2 | R2 | 0 | 0 | 0.0 | 0.0 | 4 | 0 |" in text


def test_markdown_with_an_unscored_moved_provider() -> None:
    previous = _alignment([("1000000001", "T1", "R1", 5.0), ("1000000002", "T1", "R1", 1.0)])
    current = _alignment([("1000000001", "T2", "R2", None), ("1000000002", "T2", "R2", None)]).with_columns(
        pl.col("opportunity_score").cast(pl.Float64)
    )
    changes = alignment_changes(previous, current)
    # with no current score, the last known score is kept
    assert changes["opportunity_score"].to_list() == [5.0, 1.0]
    unscored = changes.with_columns(pl.lit(None, dtype=pl.Float64).alias("opportunity_score"))
    text = changes_markdown(territory_change_summary(unscored, TERRITORIES), unscored, title="t")
    assert "| 1000000001 | T1 | T2 | - | moved to restore balance |" in text
    assert "- providers moved: 2 (0.0 opportunity)" in text
