"""Market events (new ASC, practice acquisition) applied to the provider universe,
and the shared address normalization they match on."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline.operations.events import Event, scan_events
from territory_pipeline.operations.market import apply_market_events
from territory_pipeline.schemas import PROVIDERS, conform
from territory_pipeline.universe.addresses import (
    address_key,
    address_key_expr,
    normalize_street,
    normalize_street_expr,
)


def _providers() -> pl.DataFrame:
    rows = [
        # npi, address_line_1, zip5, setting, subpart, parent
        ("1000000001", "100 North Central Avenue, Suite 200", "85004", "office", "N", None),
        ("1000000002", "100 N. Central Ave Ste 200", "85004", "office", "N", None),
        ("1000000003", "100 N Central Ave Ste 200", "85012", "office", "N", None),  # other ZIP
        ("1000000004", "100 N Central Ave Ste 201", "85004", "hospital", "N", None),  # other suite
        ("1000000005", "1 W. Oak Street", "02134", "office", "N", None),
        ("1000000006", "1 West Oak St.", "02134", "office", "Y", "Old System"),
        ("1000000007", None, None, "office", "N", None),
    ]
    frame = pl.DataFrame(
        rows,
        schema=["npi", "address_line_1", "zip5", "practice_setting", "is_organization_subpart", "parent_organization_lbn"],
        orient="row",
    ).with_columns(pl.lit("nppes_taxonomy").alias("practice_setting_source"))
    return conform(frame, PROVIDERS)


def _event(event_id: str, event_type: str, **fields) -> Event:
    return Event(event_id, event_type, dt.date(2025, 2, 1), "market.json", 1, {"event_type": event_type, **fields})


def test_new_asc_matches_the_normalized_address_only() -> None:
    providers = _providers()
    event = _event("asc1", "new_asc", address_line_1="100 n central avenue  ste. 200", zip5="85004-3301")
    out, log = apply_market_events(providers, [event])
    settings = dict(out.select("npi", "practice_setting").iter_rows())
    assert settings == {
        "1000000001": "asc",
        "1000000002": "asc",
        "1000000003": "office",
        "1000000004": "hospital",
        "1000000005": "office",
        "1000000006": "office",
        "1000000007": "office",
    }
    sources = dict(out.select("npi", "practice_setting_source").iter_rows())
    assert sources["1000000001"] == sources["1000000002"] == "market_event:asc1"
    assert sources["1000000004"] == "nppes_taxonomy"
    assert log == [
        {"event_id": "asc1", "event_type": "new_asc", "providers_affected": 2, "applied": True, "note": ""}
    ]
    # only the event's columns change; the frame keeps its columns and rows
    assert out.columns == providers.columns
    untouched = [c for c in providers.columns if c not in ("practice_setting", "practice_setting_source")]
    assert out.select(untouched).equals(providers.select(untouched))


def test_acquisition_by_npis() -> None:
    event = _event("acq1", "practice_acquisition", acquirer="Banner Health", npis=["1000000003", 1000000004])
    out, log = apply_market_events(_providers(), [event])
    rows = {r["npi"]: r for r in out.iter_rows(named=True)}
    for npi in ("1000000003", "1000000004"):
        assert rows[npi]["is_organization_subpart"] == "Y"
        assert rows[npi]["parent_organization_lbn"] == "Banner Health"
    assert rows["1000000001"]["is_organization_subpart"] == "N"
    assert rows["1000000001"]["parent_organization_lbn"] is None
    assert rows["1000000006"]["parent_organization_lbn"] == "Old System"
    # acquisitions do not touch the setting
    assert rows["1000000004"]["practice_setting"] == "hospital"
    assert log[0]["providers_affected"] == 2 and log[0]["applied"] is True


def test_acquisition_by_address_with_a_numeric_zip() -> None:
    # a JSON event may carry the ZIP as a number, losing its leading zero
    event = _event("acq2", "practice_acquisition", acquirer="Mass General Brigham", address_line_1="1 West Oak Street", zip5=2134)
    out, log = apply_market_events(_providers(), [event])
    parents = dict(out.select("npi", "parent_organization_lbn").iter_rows())
    assert parents["1000000005"] == parents["1000000006"] == "Mass General Brigham"
    assert [n for n, p in parents.items() if p == "Mass General Brigham"] == ["1000000005", "1000000006"]
    assert log[0]["providers_affected"] == 2


def test_event_matching_nothing_is_logged_not_applied() -> None:
    providers = _providers()
    events = [
        _event("asc9", "new_asc", address_line_1="999 Nowhere Rd", zip5="85004"),
        _event("acq9", "practice_acquisition", acquirer="X", npis="1999999999"),
    ]
    out, log = apply_market_events(providers, events)
    assert out.equals(providers)
    assert [(e["event_id"], e["providers_affected"], e["applied"], e["note"]) for e in log] == [
        ("asc9", 0, False, "no provider matched"),
        ("acq9", 0, False, "no provider matched"),
    ]


def test_later_events_win_and_each_is_logged() -> None:
    events = [
        _event("a", "practice_acquisition", acquirer="First", npis="1000000001|1000000002"),
        _event("b", "practice_acquisition", acquirer="Second", npis="1000000002"),
        _event("c", "new_asc", address_line_1="1 W Oak St", zip5="02134"),
    ]
    out, log = apply_market_events(_providers(), events)
    parents = dict(out.select("npi", "parent_organization_lbn").iter_rows())
    assert parents["1000000001"] == "First"
    assert parents["1000000002"] == "Second"
    assert [e["providers_affected"] for e in log] == [2, 1, 2]
    assert out.filter(pl.col("practice_setting") == "asc")["npi"].to_list() == ["1000000005", "1000000006"]


def test_events_from_files_apply(tmp_path: Path) -> None:
    folder = tmp_path / "market"
    folder.mkdir()
    (folder / "asc.csv").write_text("event_id,event_type,address_line_1,zip5\nx1,new_asc,\"1 West Oak Street\",02134\n")
    (folder / "acq.json").write_text(json.dumps({"events": [{"event_id": "x2", "event_type": "practice_acquisition", "acquirer": "Y", "npis": ["1000000007"]}]}))
    scan = scan_events(tmp_path, "market")
    assert scan.malformed == []
    out, log = apply_market_events(_providers(), scan.events)
    assert sorted(e["event_id"] for e in log) == ["x1", "x2"]
    assert out.filter(pl.col("practice_setting") == "asc").height == 2
    assert out.filter(pl.col("parent_organization_lbn") == "Y")["npi"].to_list() == ["1000000007"]


# --- the address key ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("123 N. Main Street, Suite 4", "123 N MAIN ST STE 4"),
        ("  500 west   Camelback rd.  ", "500 W CAMELBACK RD"),
        ("1 Northern Avenue", "1 NORTHERN AVE"),  # whole words only
        ("7 Streeter Parkway #B", "7 STREETER PKWY B"),
        ("", ""),
        (None, ""),
    ],
)
def test_python_and_polars_normalization_agree(line: str | None, expected: str) -> None:
    assert normalize_street(line) == expected
    frame = pl.DataFrame({"address_line_1": [line]}, schema={"address_line_1": pl.Utf8})
    assert frame.select(normalize_street_expr()).item() == expected


def test_address_key_forms() -> None:
    assert address_key("123 N. Main Street, Suite 4", "85004") == "123 N MAIN ST STE 4|85004"
    assert address_key("1 Oak St", "02134-1234") == "1 OAK ST|02134"
    assert address_key("1 Oak St", 2134) == "1 OAK ST|02134"
    # Blank streets and missing or malformed ZIPs get no key, so they never match each other.
    assert address_key("1 Oak St", None) is None
    assert address_key("...", "85004") is None
    assert address_key("1 Oak St", "8500") is None
    frame = pl.DataFrame({"address_line_1": ["1 Oak Street", None, "2 Elm"], "zip5": ["021341234", "85004", None]})
    assert frame.select(address_key_expr()).to_series().to_list() == ["1 OAK ST|02134", None, None]
