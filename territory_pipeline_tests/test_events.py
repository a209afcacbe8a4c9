"""Rep and market event files: parsing, validation, malformed files, ordering, effective dates."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from territory_pipeline.operations.events import (
    Event,
    EventFile,
    MalformedEventFile,
    list_event_files,
    npis_of,
    read_event_file,
    scan_events,
)


def _noon_utc(day: dt.date) -> int:
    """A timestamp (ns) at noon UTC on ``day``: its UTC date is ``day`` whatever the local zone."""
    return int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def _write(events_dir: Path, kind: str, name: str, text: str, *, day: dt.date = dt.date(2025, 1, 10)) -> Path:
    folder = events_dir / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    stamp = _noon_utc(day)
    os.utime(path, ns=(stamp, stamp))
    return path


def _file(path: Path, kind: str) -> EventFile:
    return EventFile(path, kind, path.stat().st_mtime_ns)


# --- good files -----------------------------------------------------------------


def test_rep_csv_with_every_event_type(tmp_path: Path) -> None:
    text = (
        "event_id,event_type,effective_date,rep_id,rep_name,home_zip,capacity,npis\n"
        "j1,rep_joined,2025-01-02,R9,Nina Nine,85004,0.5,\n"
        "l1,rep_left,2025-01-03,R2,,,,\n"
        "t1,territory_change,2025-01-04,R1,,,,1234567893|1245319599\n"
        "c1,capacity_change,2025-01-05,R1,,,1.5,\n"
    )
    path = _write(tmp_path, "reps", "q1.csv", text)
    events = read_event_file(_file(path, "reps"))
    assert [e.event_type for e in events] == ["rep_joined", "rep_left", "territory_change", "capacity_change"]
    assert [e.event_id for e in events] == ["j1", "l1", "t1", "c1"]
    assert [e.row for e in events] == [1, 2, 3, 4]
    assert all(e.file_name == "q1.csv" for e in events)
    assert events[0].effective_date == dt.date(2025, 1, 2)
    assert events[0].get("home_zip") == "85004"
    assert events[0].get("capacity") == "0.5"
    # blank CSV cells read as missing
    assert events[1].get("rep_name") is None
    assert events[1].get("rep_name", "x") == "x"
    assert npis_of(events[2]) == ["1234567893", "1245319599"]
    assert events[3].get("capacity") == "1.5"


def test_csv_values_and_header_are_stripped_and_bom_accepted(tmp_path: Path) -> None:
    text = "\ufeff event_type , rep_id ,capacity\n capacity_change , R1 , 1.25 \n"
    path = _write(tmp_path, "reps", "c.csv", text)
    (event,) = read_event_file(_file(path, "reps"))
    assert event.event_type == "capacity_change"
    assert event.get("rep_id") == "R1"
    assert event.get("capacity") == "1.25"
    # no event_id: the id is <file name>:<row>
    assert event.event_id == "c.csv:1"


@pytest.mark.parametrize(
    "payload",
    [
        {"event_type": "new_asc", "address_line_1": "100 Main St", "zip5": "85004", "event_id": "a1"},
        [{"event_type": "new_asc", "address_line_1": "100 Main St", "zip5": "85004", "event_id": "a1"}],
        {"events": [{"event_type": "new_asc", "address_line_1": "100 Main St", "zip5": "85004", "event_id": "a1"}]},
    ],
    ids=["object", "list", "events-key"],
)
def test_market_json_shapes(tmp_path: Path, payload) -> None:
    path = _write(tmp_path, "market", "m.json", json.dumps(payload))
    (event,) = read_event_file(_file(path, "market"))
    assert event.event_id == "a1"
    assert event.event_type == "new_asc"
    assert event.get("address_line_1") == "100 Main St"


def test_market_json_acquisition_by_npis_and_by_address(tmp_path: Path) -> None:
    payload = [
        {"event_type": "practice_acquisition", "acquirer": "Banner Health", "npis": [1234567893, "1245319599"]},
        {"event_type": "practice_acquisition", "acquirer": "HonorHealth", "address_line_1": "1 Oak Ave", "zip5": "85251"},
    ]
    path = _write(tmp_path, "market", "acq.json", json.dumps(payload))
    by_npis, by_address = read_event_file(_file(path, "market"))
    assert npis_of(by_npis) == ["1234567893", "1245319599"]
    assert by_npis.event_id == "acq.json:1"
    assert by_address.event_id == "acq.json:2"
    assert npis_of(by_address) == []
    assert by_address.get("acquirer") == "HonorHealth"


def test_npis_of_accepts_semicolons_and_spaces(tmp_path: Path) -> None:
    event = Event("e", "territory_change", dt.date(2025, 1, 1), "f.csv", 1, {"npis": " 1234567893 ; 1245319599|| "})
    assert npis_of(event) == ["1234567893", "1245319599"]


def test_rep_joined_with_coordinates_only_is_valid(tmp_path: Path) -> None:
    payload = {"event_type": "rep_joined", "rep_id": "R7", "rep_name": "Sam", "home_latitude": 33.45, "home_longitude": -112.07}
    path = _write(tmp_path, "reps", "j.json", json.dumps(payload))
    (event,) = read_event_file(_file(path, "reps"))
    assert event.get("home_latitude") == 33.45


# --- malformed files --------------------------------------------------------------

MALFORMED_REPS = {
    "bad.json": ('{"event_type": "rep_left", "rep_id": ', "not valid JSON"),
    "scalar.json": ("[1, 2]", "JSON must be an object"),
    "noheader.csv": ("rep_id,rep_name\nR1,Ann\n", "event_type column"),
    "unknown.csv": ("event_type,rep_id\nrep_promoted,R1\n", "'rep_promoted' is not one of"),
    "market_type.csv": ("event_type,address_line_1,zip5\nnew_asc,1 Main St,85004\n", "'new_asc' is not one of"),
    "noid.csv": ("event_type,rep_name\nrep_left,Ann\n", "rep_left event needs rep_id"),
    "joinbase.csv": ("event_type,rep_id,rep_name\nrep_joined,R1,Ann\n", "home_zip or home_latitude"),
    "joinname.csv": ("event_type,rep_id,home_zip\nrep_joined,R1,85004\n", "needs rep_name"),
    "cap_text.csv": ("event_type,rep_id,capacity\ncapacity_change,R1,lots\n", "'lots' is not a number"),
    "cap_range.csv": ("event_type,rep_id,capacity\ncapacity_change,R1,2.5\n", "must be in (0, 2]"),
    "cap_zero.csv": ("event_type,rep_id,capacity\ncapacity_change,R1,0\n", "must be in (0, 2]"),
    "cap_missing.csv": ("event_type,rep_id,capacity\ncapacity_change,R1,\n", "needs capacity"),
    "join_cap.csv": ("event_type,rep_id,rep_name,home_zip,capacity\nrep_joined,R1,Ann,85004,half\n", "'half' is not a number"),
    "join_lat.csv": (
        "event_type,rep_id,rep_name,home_latitude,home_longitude\nrep_joined,R1,Ann,north,-112\n",
        "home_latitude 'north' is not a number",
    ),
    "join_lon.csv": (
        "event_type,rep_id,rep_name,home_latitude,home_longitude\nrep_joined,R1,Ann,33.4,-212\n",
        "home_longitude -212.0 is out of range",
    ),
    "change.csv": ("event_type,rep_id\nterritory_change,R1\n", "territory_change needs npis"),
    "date.csv": ("event_type,rep_id,effective_date\nrep_left,R1,03/15/2025\n", "'03/15/2025' is not YYYY-MM-DD"),
    "dup.csv": ("event_id,event_type,rep_id\ne1,rep_left,R1\ne1,rep_left,R2\n", "'e1' appears twice"),
    "empty.json": ("[]", "holds no event"),
    "header_only.csv": ("event_type,rep_id\n", "holds no event"),
    "extra.csv": ("event_type,rep_id\nrep_left,R1,surplus\n", "more fields than the header"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_REPS))
def test_malformed_rep_file_raises_with_reason(tmp_path: Path, name: str) -> None:
    text, reason = MALFORMED_REPS[name]
    path = _write(tmp_path, "reps", name, text)
    with pytest.raises(MalformedEventFile) as info:
        read_event_file(_file(path, "reps"))
    assert reason in str(info.value)
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"event_type": "new_asc", "address_line_1": "1 Main St"}, "new_asc event needs zip5"),
        ({"event_type": "practice_acquisition", "npis": ["1234567893"]}, "needs acquirer"),
        ({"event_type": "practice_acquisition", "acquirer": "X", "address_line_1": "1 Main"}, "needs npis or address_line_1 and zip5"),
        ({"event_type": "rep_left", "rep_id": "R1"}, "'rep_left' is not one of"),
    ],
)
def test_malformed_market_file(tmp_path: Path, payload: dict, reason: str) -> None:
    path = _write(tmp_path, "market", "m.json", json.dumps(payload))
    with pytest.raises(MalformedEventFile, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_event_file(_file(path, "market"))


def test_undecodable_file_is_malformed(tmp_path: Path) -> None:
    folder = tmp_path / "reps"
    folder.mkdir()
    path = folder / "latin.csv"
    path.write_bytes(b"event_type,rep_id,rep_name,home_zip\nrep_joined,R1,Jos\xe9,85004\n")
    with pytest.raises(MalformedEventFile, match="cannot be read"):
        read_event_file(_file(path, "reps"))


def test_scan_reports_malformed_files_and_keeps_going(tmp_path: Path) -> None:
    _write(tmp_path, "reps", "01_good.csv", "event_id,event_type,rep_id\na,rep_left,R1\n")
    _write(tmp_path, "reps", "02_bad.json", "{not json")
    _write(tmp_path, "reps", "03_unknown.csv", "event_id,event_type,rep_id\nb,rep_fired,R2\n")
    # the second row is invalid: the whole file is skipped, not half applied
    _write(tmp_path, "reps", "04_half.csv", "event_id,event_type,rep_id\nc,rep_left,R3\nd,rep_left,\n")
    _write(tmp_path, "reps", "05_reuse.csv", "event_id,event_type,rep_id\ne,rep_left,R4\na,rep_left,R5\n")
    _write(tmp_path, "reps", "06_good.json", json.dumps({"event_id": "f", "event_type": "rep_left", "rep_id": "R6"}))
    scan = scan_events(tmp_path, "reps")
    assert [e.event_id for e in scan.events] == ["a", "f"]
    assert [name for name, _ in scan.malformed] == ["02_bad.json", "03_unknown.csv", "04_half.csv", "05_reuse.csv"]
    reasons = dict(scan.malformed)
    assert "not valid JSON" in reasons["02_bad.json"]
    assert "rep_fired" in reasons["03_unknown.csv"]
    assert "row 2" in reasons["04_half.csv"] and "needs rep_id" in reasons["04_half.csv"]
    assert "'a' was already used" in reasons["05_reuse.csv"]


def test_reused_id_is_judged_against_earlier_file_names_not_later(tmp_path: Path) -> None:
    # the file sorting first by name keeps the id; the later one is malformed
    _write(tmp_path, "reps", "b.csv", "event_id,event_type,rep_id\nx,rep_left,R1\n", day=dt.date(2025, 1, 1))
    _write(tmp_path, "reps", "a.csv", "event_id,event_type,rep_id\nx,rep_left,R2\n", day=dt.date(2025, 1, 9))
    scan = scan_events(tmp_path, "reps")
    assert [(e.file_name, e.get("rep_id")) for e in scan.events] == [("a.csv", "R2")]
    assert [name for name, _ in scan.malformed] == ["b.csv"]


def test_malformed_file_ids_do_not_block_a_later_file(tmp_path: Path) -> None:
    _write(tmp_path, "reps", "a.csv", "event_id,event_type,rep_id\nx,rep_left,R1\ny,rep_left,\n")
    _write(tmp_path, "reps", "b.csv", "event_id,event_type,rep_id\nx,rep_left,R1\n")
    scan = scan_events(tmp_path, "reps")
    assert [e.file_name for e in scan.events] == ["b.csv"]
    assert [name for name, _ in scan.malformed] == ["a.csv"]


# --- ordering and effective dates --------------------------------------------------


def test_events_ordered_by_effective_date_then_file_then_row(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "reps",
        "b.csv",
        "event_id,event_type,rep_id,effective_date\n"
        "b1,rep_left,R1,2025-02-01\n"
        "b2,rep_left,R2,2025-01-15\n"
        "b3,rep_left,R3,2025-01-15\n",
    )
    _write(
        tmp_path,
        "reps",
        "a.json",
        json.dumps(
            [
                {"event_id": "a1", "event_type": "rep_left", "rep_id": "R4", "effective_date": "2025-01-15"},
                {"event_id": "a2", "event_type": "rep_left", "rep_id": "R5", "effective_date": "2025-03-01T09:30:00"},
            ]
        ),
    )
    scan = scan_events(tmp_path, "reps")
    assert [e.event_id for e in scan.events] == ["a1", "b2", "b3", "b1", "a2"]
    assert scan.events[-1].effective_date == dt.date(2025, 3, 1)
    assert scan.malformed == []


def test_effective_date_defaults_to_file_mtime_day(tmp_path: Path) -> None:
    _write(tmp_path, "reps", "late.csv", "event_id,event_type,rep_id\nlate,rep_left,R1\n", day=dt.date(2025, 3, 31))
    _write(tmp_path, "reps", "early.csv", "event_id,event_type,rep_id\nearly,rep_left,R2\n", day=dt.date(2025, 1, 5))
    _write(
        tmp_path,
        "reps",
        "explicit.csv",
        "event_id,event_type,rep_id,effective_date\nexp,rep_left,R3,2025-02-10\n",
        day=dt.date(2025, 6, 1),
    )
    scan = scan_events(tmp_path, "reps")
    assert [(e.event_id, e.effective_date) for e in scan.events] == [
        ("early", dt.date(2025, 1, 5)),
        ("exp", dt.date(2025, 2, 10)),
        ("late", dt.date(2025, 3, 31)),
    ]


def test_before_filters_by_effective_date(tmp_path: Path) -> None:
    _write(tmp_path, "reps", "q1.csv", "event_id,event_type,rep_id\nq1,rep_left,R1\n", day=dt.date(2025, 3, 31))
    _write(tmp_path, "reps", "q2.csv", "event_id,event_type,rep_id\nq2,rep_left,R2\n", day=dt.date(2025, 4, 1))
    _write(
        tmp_path,
        "reps",
        "dated.csv",
        "event_id,event_type,rep_id,effective_date\nold,rep_left,R3,2024-12-31\nnew,rep_left,R4,2025-04-02\n",
        day=dt.date(2025, 1, 1),
    )
    q1_end = dt.date(2025, 4, 1)
    assert [e.event_id for e in scan_events(tmp_path, "reps", before=q1_end).events] == ["old", "q1"]
    assert [e.event_id for e in scan_events(tmp_path, "reps", before=dt.date(2025, 1, 1)).events] == ["old"]
    assert [e.event_id for e in scan_events(tmp_path, "reps").events] == ["old", "q1", "q2", "new"]


def test_ids_of_future_events_still_count_as_used(tmp_path: Path) -> None:
    _write(tmp_path, "reps", "a.csv", "event_id,event_type,rep_id,effective_date\nx,rep_left,R1,2026-01-01\n")
    _write(tmp_path, "reps", "b.csv", "event_id,event_type,rep_id,effective_date\nx,rep_left,R2,2025-01-01\n")
    scan = scan_events(tmp_path, "reps", before=dt.date(2025, 4, 1))
    assert scan.events == []
    assert [name for name, _ in scan.malformed] == ["b.csv"]


# --- the folder -------------------------------------------------------------------


def test_list_event_files_ignores_hidden_other_suffixes_and_folders(tmp_path: Path) -> None:
    _write(tmp_path, "reps", "b.csv", "event_type,rep_id\nrep_left,R1\n", day=dt.date(2025, 1, 2))
    _write(tmp_path, "reps", "a.JSON", '{"event_type": "rep_left", "rep_id": "R1"}', day=dt.date(2025, 1, 3))
    _write(tmp_path, "reps", ".b.csv.tmp", "partial", day=dt.date(2025, 1, 1))
    _write(tmp_path, "reps", ".hidden.csv", "event_type,rep_id\nrep_left,R1\n", day=dt.date(2025, 1, 1))
    _write(tmp_path, "reps", "notes.txt", "hello", day=dt.date(2025, 1, 1))
    _write(tmp_path, "reps", "data.xlsx", "x", day=dt.date(2025, 1, 1))
    (tmp_path / "reps" / "sub.csv").mkdir()
    _write(tmp_path, "market", "m.csv", "event_type,address_line_1,zip5\nnew_asc,1 Main St,85004\n")
    files = list_event_files(tmp_path, "reps")
    assert [f.path.name for f in files] == ["b.csv", "a.JSON"]  # oldest first
    assert all(f.kind == "reps" for f in files)
    assert [f.path.name for f in list_event_files(tmp_path, "market")] == ["m.csv"]
    scan = scan_events(tmp_path, "reps")
    # ordered by effective date (the mtime day), so b.csv (2 Jan) before a.JSON (3 Jan)
    assert [(e.file_name, e.effective_date) for e in scan.events] == [
        ("b.csv", dt.date(2025, 1, 2)),
        ("a.JSON", dt.date(2025, 1, 3)),
    ]
    assert scan.malformed == []


def test_list_event_files_missing_folder_and_unknown_kind(tmp_path: Path) -> None:
    assert list_event_files(tmp_path, "reps") == []
    assert scan_events(tmp_path, "market").events == []
    with pytest.raises(ValueError, match="unknown event kind 'customers'"):
        list_event_files(tmp_path, "customers")


def test_cursor_key_orders_by_mtime_then_name(tmp_path: Path) -> None:
    day = dt.date(2025, 5, 1)
    _write(tmp_path, "reps", "z.csv", "event_type,rep_id\nrep_left,R1\n", day=day)
    _write(tmp_path, "reps", "y.csv", "event_type,rep_id\nrep_left,R1\n", day=day)
    _write(tmp_path, "reps", "x.csv", "event_type,rep_id\nrep_left,R1\n", day=dt.date(2025, 5, 2))
    files = list_event_files(tmp_path, "reps")
    assert [f.path.name for f in files] == ["y.csv", "z.csv", "x.csv"]
    assert files[0].cursor_key == (_noon_utc(day), "y.csv")
    assert files[0].cursor_key < files[1].cursor_key < files[2].cursor_key
    # a rewritten file moves past the others
    stamp = _noon_utc(dt.date(2025, 5, 3))
    os.utime(tmp_path / "reps" / "y.csv", ns=(stamp, stamp))
    assert [f.path.name for f in list_event_files(tmp_path, "reps")] == ["z.csv", "x.csv", "y.csv"]


def test_event_equality_ignores_fields_and_order_key() -> None:
    a = Event("e1", "rep_left", dt.date(2025, 1, 1), "f.csv", 2, {"rep_id": "R1"})
    b = Event("e1", "rep_left", dt.date(2025, 1, 1), "f.csv", 2, {"rep_id": "R9"})
    assert a == b
    assert a.order_key == (dt.date(2025, 1, 1), "f.csv", 2)
