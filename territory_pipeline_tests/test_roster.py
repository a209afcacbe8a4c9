"""The rep roster: reading, placing reps at home bases, and applying rep events."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline.geography.zip_reference import zip_centroids
from territory_pipeline.operations.events import Event, EventFile, read_event_file
from territory_pipeline.operations.roster import (
    RosterError,
    apply_rep_events,
    place_roster,
    read_roster,
)
from territory_pipeline.schemas import REPS

PHOENIX = (33.4557, -112.0686)  # ZIP 85004 in the zipcodes package
CHICAGO = (41.8858, -87.6181)  # ZIP 60601
ALLSTON = (42.3535, -71.1329)  # ZIP 02134


@pytest.fixture(scope="module")
def zips() -> pl.DataFrame:
    return zip_centroids()


def _roster_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "reps.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _event(event_id: str, event_type: str, row: int = 1, **fields) -> Event:
    return Event(event_id, event_type, dt.date(2025, 1, 1), "reps.csv", row, {"event_type": event_type, **fields})


@pytest.fixture()
def placed(zips: pl.DataFrame) -> pl.DataFrame:
    roster = pl.DataFrame(
        {
            "rep_id": ["R1", "R2", "R3"],
            "rep_name": ["Ann Able", "Bo Baker", "Cy Cole"],
            "home_zip": ["85004", "60601", "02134"],
            "capacity": ["1", "0.5", None],
        }
    )
    out, problems = place_roster(roster, zips)
    assert problems == []
    return out


# --- read_roster ------------------------------------------------------------------


def test_read_roster_normalizes_headers_and_keeps_text(tmp_path: Path) -> None:
    path = _roster_file(tmp_path, " Rep_ID ,REP_NAME,Home_Zip,capacity\nR1,Ann,02134,1\n")
    frame = read_roster(path)
    assert frame.columns == ["rep_id", "rep_name", "home_zip", "capacity"]
    assert frame.row(0) == ("R1", "Ann", "02134", "1")  # the leading zero survives
    assert all(dtype == pl.Utf8 for dtype in frame.dtypes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rep_id,home_zip\nR1,85004\n", "lacks column(s) rep_name"),
        ("name,zip\nAnn,85004\n", "lacks column(s) rep_id, rep_name"),
        ("rep_id,rep_name,home_latitude\nR1,Ann,33.4\n", "needs home_zip or home_latitude/home_longitude"),
    ],
)
def test_read_roster_missing_columns(tmp_path: Path, text: str, message: str) -> None:
    path = _roster_file(tmp_path, text)
    with pytest.raises(RosterError) as info:
        read_roster(path)
    assert message in str(info.value)
    assert path in str(info.value)


def test_read_roster_accepts_coordinates_without_zip(tmp_path: Path) -> None:
    frame = read_roster(_roster_file(tmp_path, "rep_id,rep_name,home_latitude,home_longitude\nR1,Ann,33.4,-112.0\n"))
    assert frame.height == 1


def test_read_roster_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="cannot read the rep roster"):
        read_roster(str(tmp_path / "absent.csv"))


# --- place_roster -----------------------------------------------------------------


def test_place_roster_uses_zip_centroids_and_given_coordinates(tmp_path: Path, zips: pl.DataFrame) -> None:
    roster = read_roster(
        _roster_file(
            tmp_path,
            "rep_id,rep_name,home_zip,home_latitude,home_longitude,capacity\n"
            "R2, Bo Baker ,60601-1234,,,0.5\n"
            "R1,Ann Able,85004,,,\n"
            "R3,Cy Cole,2134,,,2\n"
            "R4,Di Dunn,85004,40.0,-100.0,1.5\n"
            "R5,Ed Elm,,35.0,-90.0,\n",
        )
    )
    out, problems = place_roster(roster, zips)
    assert problems == []
    assert out.schema == pl.Schema(REPS)
    assert out["rep_id"].to_list() == ["R1", "R2", "R3", "R4", "R5"]
    rows = {r["rep_id"]: r for r in out.iter_rows(named=True)}
    assert (rows["R1"]["home_latitude"], rows["R1"]["home_longitude"]) == pytest.approx(PHOENIX)
    assert rows["R2"]["home_zip"] == "60601"  # ZIP+4 cut to five digits
    assert (rows["R2"]["home_latitude"], rows["R2"]["home_longitude"]) == pytest.approx(CHICAGO)
    assert rows["R2"]["rep_name"] == "Bo Baker"
    assert rows["R3"]["home_zip"] == "02134"  # leading zero restored
    assert (rows["R3"]["home_latitude"], rows["R3"]["home_longitude"]) == pytest.approx(ALLSTON)
    # given coordinates win over the ZIP centroid
    assert (rows["R4"]["home_latitude"], rows["R4"]["home_longitude"]) == (40.0, -100.0)
    assert (rows["R5"]["home_latitude"], rows["R5"]["home_longitude"]) == (35.0, -90.0)
    assert [rows[r]["capacity"] for r in ("R1", "R2", "R3", "R4", "R5")] == [1.0, 0.5, 2.0, 1.5, 1.0]


def test_place_roster_reports_every_problem(zips: pl.DataFrame) -> None:
    roster = pl.DataFrame(
        {
            "rep_id": ["R1", "R1", "R2", "R3", "R4", "R5", None, ""],
            "rep_name": ["A", "A2", "B", "C", "D", "E", "F", "G"],
            "home_zip": ["85004", "85004", "00000", "85004", "85004", "85004", "85004", "85004"],
            "capacity": [None, None, None, "lots", "0", "2.5", "9", None],
        }
    )
    out, problems = place_roster(roster, zips)
    text = " | ".join(problems)
    assert "duplicate rep_id: R1" in text
    assert "2 roster row(s) without a rep_id" in text
    assert "capacity must be a number in (0, 2] for: R3 ('lots'), R4 ('0'), R5 ('2.5'), (no rep_id) ('9')" in text
    assert "no home base (unknown home_zip and no coordinates) for: R2 (00000)" in text
    assert len(problems) == 4
    assert out.height == roster.height  # reported, not dropped


def test_place_roster_without_problems_on_repeated_calls_is_deterministic(zips: pl.DataFrame) -> None:
    roster = pl.DataFrame({"rep_id": ["b", "a"], "rep_name": ["B", "A"], "home_zip": ["60601", "85004"]})
    first, _ = place_roster(roster, zips)
    second, _ = place_roster(roster.reverse(), zips)
    assert first.equals(second)
    assert first["rep_id"].to_list() == ["a", "b"]


# --- apply_rep_events -------------------------------------------------------------


def test_join_with_zip_and_with_coordinates(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [
        _event("j1", "rep_joined", rep_id="R9", rep_name="Nina", home_zip="60601", capacity="0.75"),
        _event("j2", "rep_joined", row=2, rep_id="R8", rep_name="Otto", home_latitude="36.1", home_longitude="-115.2"),
        _event("j3", "rep_joined", row=3, rep_id="R7", rep_name="Pia", home_zip=2134),  # JSON number
    ]
    roster, moves, log = apply_rep_events(placed, events, zips)
    assert roster["rep_id"].to_list() == ["R1", "R2", "R3", "R7", "R8", "R9"]
    rows = {r["rep_id"]: r for r in roster.iter_rows(named=True)}
    assert rows["R9"]["home_zip"] == "60601"
    assert (rows["R9"]["home_latitude"], rows["R9"]["home_longitude"]) == pytest.approx(CHICAGO)
    assert rows["R9"]["capacity"] == 0.75
    assert (rows["R8"]["home_latitude"], rows["R8"]["home_longitude"], rows["R8"]["home_zip"]) == (36.1, -115.2, None)
    assert rows["R8"]["capacity"] == 1.0
    assert rows["R7"]["home_zip"] == "02134"
    assert (rows["R7"]["home_latitude"], rows["R7"]["home_longitude"]) == pytest.approx(ALLSTON)
    assert moves.height == 0
    assert [e["applied"] for e in log] == [True, True, True]
    assert roster.schema == pl.Schema(REPS)


def test_join_not_applied_for_existing_rep_or_unknown_zip(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [
        _event("j1", "rep_joined", rep_id="R1", rep_name="Impostor", home_zip="60601"),
        _event("j2", "rep_joined", row=2, rep_id="R9", rep_name="Nina", home_zip="00000"),
    ]
    roster, _, log = apply_rep_events(placed, events, zips)
    assert roster.equals(placed)
    assert [(e["event_id"], e["applied"]) for e in log] == [("j1", False), ("j2", False)]
    assert log[0]["note"] == "rep already on the roster"
    assert "home ZIP 00000 is unknown" in log[1]["note"]


def test_leave_drops_the_rep_and_its_account_moves(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [
        _event("t1", "territory_change", rep_id="R2", npis="1234567893|1245319599"),
        _event("t2", "territory_change", row=2, rep_id="R1", npis="1003000126"),
        _event("l1", "rep_left", row=3, rep_id="R2"),
    ]
    roster, moves, log = apply_rep_events(placed, events, zips)
    assert roster["rep_id"].to_list() == ["R1", "R3"]
    assert moves.rows() == [("1003000126", "R1")]
    assert all(e["applied"] for e in log)


def test_capacity_change(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    roster, _, log = apply_rep_events(placed, [_event("c1", "capacity_change", rep_id="R3", capacity="0.6")], zips)
    assert dict(roster.select("rep_id", "capacity").iter_rows()) == {"R1": 1.0, "R2": 0.5, "R3": 0.6}
    assert log == [{"event_id": "c1", "event_type": "capacity_change", "rep_id": "R3", "applied": True, "note": ""}]


def test_territory_change_moves_home_and_accounts(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [
        _event("t1", "territory_change", rep_id="R1", home_zip="60601", npis=["1245319599", "1234567893"]),
        # a later move of the same account wins
        _event("t2", "territory_change", row=2, rep_id="R3", npis="1234567893"),
    ]
    roster, moves, log = apply_rep_events(placed, events, zips)
    r1 = roster.filter(pl.col("rep_id") == "R1").row(0, named=True)
    assert r1["home_zip"] == "60601"
    assert (r1["home_latitude"], r1["home_longitude"]) == pytest.approx(CHICAGO)
    assert moves.rows() == [("1234567893", "R3"), ("1245319599", "R1")]
    assert moves.schema == pl.Schema({"npi": pl.Utf8, "rep_id": pl.Utf8})
    assert all(e["applied"] for e in log)


def test_territory_change_to_unknown_zip_changes_nothing(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    event = _event("t1", "territory_change", rep_id="R1", home_zip="00000", npis="1234567893")
    roster, moves, log = apply_rep_events(placed, [event], zips)
    assert roster.equals(placed)
    assert moves.height == 0  # logged as not applied, so no half-application
    assert log[0]["applied"] is False
    assert "home ZIP 00000 is unknown" in log[0]["note"]


def test_events_for_unknown_reps_are_logged_not_applied(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [
        _event("l1", "rep_left", rep_id="R404"),
        _event("c1", "capacity_change", row=2, rep_id="R404", capacity="1.2"),
        _event("t1", "territory_change", row=3, rep_id="R404", npis="1234567893"),
    ]
    roster, moves, log = apply_rep_events(placed, events, zips)
    assert roster.equals(placed)
    assert moves.height == 0
    assert [(e["event_id"], e["applied"], e["note"]) for e in log] == [
        ("l1", False, "rep is not on the roster"),
        ("c1", False, "rep is not on the roster"),
        ("t1", False, "rep is not on the roster"),
    ]


def test_events_apply_in_order_leave_then_rejoin(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [
        _event("l1", "rep_left", rep_id="R1"),
        _event("c1", "capacity_change", row=2, rep_id="R1", capacity="0.5"),
        _event("j1", "rep_joined", row=3, rep_id="R1", rep_name="Ann Again", home_zip="60601"),
    ]
    roster, _, log = apply_rep_events(placed, events, zips)
    r1 = roster.filter(pl.col("rep_id") == "R1").row(0, named=True)
    assert r1["rep_name"] == "Ann Again"
    assert r1["capacity"] == 1.0
    assert [e["applied"] for e in log] == [True, False, True]


def test_everyone_leaves_gives_an_empty_roster_in_contract(placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    events = [_event(f"l{i}", "rep_left", row=i, rep_id=r) for i, r in enumerate(["R1", "R2", "R3"], start=1)]
    roster, moves, _ = apply_rep_events(placed, events, zips)
    assert roster.height == 0
    assert roster.schema == pl.Schema(REPS)
    assert moves.height == 0


def test_events_read_from_a_file_apply(tmp_path: Path, placed: pl.DataFrame, zips: pl.DataFrame) -> None:
    folder = tmp_path / "reps"
    folder.mkdir()
    path = folder / "e.csv"
    path.write_text(
        "event_type,rep_id,rep_name,home_zip,capacity,npis\n"
        "rep_joined,R4,Dee,85004,,\n"
        "territory_change,R4,,,,1234567893;1245319599\n"
        "capacity_change,R2,,,1.5,\n"
    )
    events = read_event_file(EventFile(path, "reps", path.stat().st_mtime_ns))
    roster, moves, log = apply_rep_events(placed, events, zips)
    assert dict(roster.select("rep_id", "capacity").iter_rows()) == {"R1": 1.0, "R2": 1.5, "R3": 1.0, "R4": 1.0}
    assert moves.rows() == [("1234567893", "R4"), ("1245319599", "R4")]
    assert [e["event_id"] for e in log] == ["e.csv:1", "e.csv:2", "e.csv:3"]


def test_place_roster_reports_bad_or_half_coordinates(zips: pl.DataFrame) -> None:
    roster = pl.DataFrame(
        {
            "rep_id": ["R1", "R2", "R3", "R4", "R5"],
            "rep_name": ["A", "B", "C", "D", "E"],
            "home_zip": ["85004"] * 5,
            "home_latitude": ["north", "95", "33.0", None, "33.0"],
            "home_longitude": ["-112", "-112", None, "-112", "-112.5"],
        }
    )
    out, problems = place_roster(roster, zips)
    # a bad coordinate is reported, never silently replaced by the ZIP centroid
    assert problems == ["home_latitude and home_longitude must both be given as numbers within range for: R1, R2, R3, R4"]
    assert out.filter(pl.col("rep_id") == "R5").select("home_latitude", "home_longitude").row(0) == (33.0, -112.5)
