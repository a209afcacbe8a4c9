"""CensusBatchGeocoder against the local Census geocoder mimic."""

from __future__ import annotations

import polars as pl
import pytest
import requests
from census_geocoder_mimic import CensusGeocoderMimic, MimicMatch

from territory_pipeline.geography.census_geocoder import (
    MAX_BATCH_SIZE,
    CensusBatchGeocoder,
    CensusGeocoderError,
    parse_batch_response,
)


def _addresses() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["p1", "p2", "p3", "p4", "p5"],
            "street": ["1 N Central Ave", "2 W Main St", "10 Nowhere Rd", "50 E Camelback Rd, Suite 100", "7 Elm St"],
            "city": ["Phoenix", "Mesa", "Nowhere", "Phoenix", None],
            "state": ["AZ", "AZ", "AZ", "AZ", "AZ"],
            "zip": ["85004", "85201", "85999", "85012", "85701"],
        }
    )


def _mimic(**kwargs: object) -> CensusGeocoderMimic:
    mimic = CensusGeocoderMimic(**kwargs)
    mimic.add_match(
        "1 N Central Ave",
        "Phoenix",
        "AZ",
        "85004",
        MimicMatch(longitude=-112.0737, latitude=33.4484, matched_address="1 N CENTRAL AVE, PHOENIX, AZ, 85004"),
    )
    mimic.add_match(
        "50 E Camelback Rd, Suite 100",
        "Phoenix",
        "AZ",
        "85012",
        MimicMatch(longitude=-112.07, latitude=33.509, match_type="Non_Exact", side="R", county="013", tract="109300"),
    )
    mimic.add_tie("2 W Main St", "Mesa", "AZ", "85201")
    return mimic


def test_geographies_batch_parses_every_row_kind_in_input_order() -> None:
    with _mimic() as mimic:
        client = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0)
        result = client.geocode(_addresses())
        seen = mimic.requests
    assert result["id"].to_list() == ["p1", "p2", "p3", "p4", "p5"]
    assert result["match"].to_list() == ["Match", "Tie", "No_Match", "Match", "No_Match"]
    first = result.row(0, named=True)
    # "lon,lat" is x first: latitude must not come out as -112
    assert first["latitude"] == pytest.approx(33.4484) and first["longitude"] == pytest.approx(-112.0737)
    assert first["match_type"] == "Exact" and first["matched_address"].startswith("1 N CENTRAL AVE")
    assert first["state_fips"] == "04" and first["county_fips"] == "04013" and first["block"] == "1001"
    fourth = result.row(3, named=True)
    assert fourth["match_type"] == "Non_Exact" and fourth["side"] == "R" and fourth["tract"] == "109300"
    assert result.filter(pl.col("match") != "Match")["latitude"].null_count() == 3
    # one multipart request with the form fields, the CSV kept 5 fields a row
    assert len(seen) == 1
    assert seen[0].path == "/geocoder/geographies/addressbatch"
    assert seen[0].fields == {"benchmark": "Public_AR_Current", "vintage": "Current_Current"}
    rows = {row[0]: row for row in seen[0].rows}
    assert rows["p4"][1] == "50 E Camelback Rd, Suite 100"  # comma inside a quoted field
    assert rows["p5"] == ["p5", "7 Elm St", "", "AZ", "85701"]  # empty city keeps its comma


def test_locations_returntype_and_padded_short_rows() -> None:
    with _mimic(pad_short_rows=True) as mimic:
        client = CensusBatchGeocoder(base_url=mimic.base_url, returntype="locations", backoff_seconds=0)
        result = client.geocode(_addresses())
        seen = mimic.requests
    assert seen[0].path == "/geocoder/locations/addressbatch"
    assert "vintage" not in seen[0].fields
    assert result["match"].to_list() == ["Match", "Tie", "No_Match", "Match", "No_Match"]
    assert result["county_fips"].null_count() == 5  # no geographies with 'locations'
    assert result["latitude"][0] == pytest.approx(33.4484)


def test_batches_never_exceed_batch_size() -> None:
    addresses = pl.DataFrame(
        {
            "id": [f"a{i:02d}" for i in range(7)],
            "street": [f"{i} Main St" for i in range(7)],
            "city": ["Phoenix"] * 7,
            "state": ["AZ"] * 7,
            "zip": ["85004"] * 7,
        }
    )
    messages: list[str] = []
    with _mimic() as mimic:
        client = CensusBatchGeocoder(base_url=mimic.base_url, batch_size=3, backoff_seconds=0, progress=messages.append)
        result = client.geocode(addresses)
        sizes = [len(r.rows) for r in mimic.requests]
    assert sizes == [3, 3, 1]
    assert [m.split(" (")[0] for m in messages] == [f"census geocoder: batch {i}/3" for i in (1, 2, 3)]
    assert result["id"].to_list() == addresses["id"].to_list()
    assert set(result["match"]) == {"No_Match"}
    with pytest.raises(ValueError, match="batch_size"):
        CensusBatchGeocoder(batch_size=MAX_BATCH_SIZE + 1)


def test_mimic_enforces_the_10000_record_limit() -> None:
    payload = "".join(f"{i},{i} Main St,Phoenix,AZ,85004\n" for i in range(MAX_BATCH_SIZE + 1))
    with _mimic() as mimic:
        response = requests.post(
            mimic.base_url + "locations/addressbatch",
            data={"benchmark": "Public_AR_Current"},
            files={"addressFile": ("a.csv", payload.encode(), "text/csv")},
            timeout=30,
        )
    assert response.status_code == 400
    assert "10,000" in response.text


def test_transient_errors_are_retried() -> None:
    with _mimic() as mimic:
        mimic.fail_next(500, 503, "drop")
        client = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0, max_retries=4)
        result = client.geocode(_addresses())
        attempts = mimic.attempts
    assert attempts == 4
    assert result["match"].to_list() == ["Match", "Tie", "No_Match", "Match", "No_Match"]


def test_timeouts_are_retried() -> None:
    with _mimic(slow_seconds=1.5) as mimic:
        mimic.fail_next("slow")
        client = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0, timeout=0.5)
        result = client.geocode(_addresses())
        attempts = mimic.attempts
    assert attempts == 2
    assert result["match"][0] == "Match"


def test_batch_failing_after_retries_names_the_batch() -> None:
    with _mimic() as mimic:
        mimic.fail_next(503, 503, 503, 503)
        client = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0, max_retries=2)
        with pytest.raises(CensusGeocoderError, match="'p1'..'p5'") as caught:
            client.geocode(_addresses())
        attempts = mimic.attempts
    assert attempts == 3
    assert (caught.value.first_id, caught.value.last_id) == ("p1", "p5")


def test_client_errors_are_not_retried() -> None:
    with _mimic() as mimic:
        client = CensusBatchGeocoder(base_url=mimic.base_url, benchmark="No_Such_Benchmark", backoff_seconds=0)
        with pytest.raises(CensusGeocoderError, match="HTTP 400"):
            client.geocode(_addresses())
        attempts = mimic.attempts
    assert attempts == 1


def test_unreachable_service_is_a_geocoder_error() -> None:
    client = CensusBatchGeocoder(base_url="http://127.0.0.1:9/geocoder/", backoff_seconds=0, max_retries=1, timeout=2)
    with pytest.raises(CensusGeocoderError, match="after 2 tries"):
        client.geocode(_addresses())
    with pytest.raises(CensusGeocoderError, match="request failed"):
        CensusBatchGeocoder(base_url="nothttp://x/", backoff_seconds=0).geocode(_addresses())


def test_bad_input_and_malformed_answers_raise() -> None:
    duplicated = _addresses().with_columns(pl.lit("same").alias("id"))
    with pytest.raises(ValueError, match="duplicate ids"):
        CensusBatchGeocoder().geocode(duplicated)
    with pytest.raises(ValueError, match="lacks columns"):
        CensusBatchGeocoder().geocode(_addresses().drop("zip"))
    with pytest.raises(ValueError, match="lon,lat"):
        parse_batch_response('"1","a","Match","Exact","A","-112.07","1","L"\n')
    with pytest.raises(ValueError, match="unknown match value"):
        parse_batch_response('"1","a","Maybe"\n')
    with pytest.raises(ValueError, match="1 missing"):
        parse_batch_response('"1","a","No_Match"\n', expected_ids=["1", "2"])


def test_parse_real_format_example() -> None:
    text = (
        '"0","1600 Pennsylvania Ave NW, Washington, DC, 20500","Match","Exact",'
        '"1600 PENNSYLVANIA AVE NW, WASHINGTON, DC, 20500","-77.03535,38.898754","76225813","L","11","001","980000","1034"\n'
        '"1","Nowhere St, Nowhere, ZZ","No_Match"\n'
        '"2","1 Main St, Anytown, CA","Tie"\n'
    )
    frame = parse_batch_response(text, expected_ids=["0", "1", "2"])
    row = frame.row(0, named=True)
    assert (row["latitude"], row["longitude"]) == (38.898754, -77.03535)
    assert row["county_fips"] == "11001" and row["tiger_line_id"] == "76225813"
    assert frame["match"].to_list() == ["Match", "No_Match", "Tie"]
