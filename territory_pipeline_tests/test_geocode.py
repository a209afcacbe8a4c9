"""Geocoding fallback chain, cache reuse and the offline ZIP reference."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pytest
from census_geocoder_mimic import CensusGeocoderMimic, MimicMatch

from territory_pipeline.geography.census_geocoder import CensusBatchGeocoder
from territory_pipeline.geography.geocode import (
    GEOCODE_CACHE,
    geocode_providers,
    merge_cache,
    normalize_address,
    quarter_index,
)
from territory_pipeline.geography.zip_reference import (
    county_fips_for,
    load_zcta_gazetteer,
    zip_centroids,
)
from territory_pipeline.schemas import REJECTS

STAMP = "2025-01-15T00:00:00+00:00"


def _providers() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "npi": ["1000000001", "1000000002", "1000000003", "1000000004", "1000000005", "1000000006", "1000000007"],
            "address_line_1": [
                "1 N Central Ave",  # census Match, exact
                "1 North Central Avenue",  # same address spelled out: one lookup
                "50 E Camelback Rd",  # census Match, non-exact
                "2 W Main St",  # Tie -> ZIP centroid
                "10 Elm St",  # No_Match, ZIP in the ZCTA frame -> ZCTA centroid
                "5 Far Away Rd",  # Match far outside the US -> ZIP centroid
                "9 Nowhere Ln",  # No_Match and unknown ZIP -> reject
            ],
            "city": ["Phoenix", "PHOENIX", "Phoenix", "Mesa", "Tucson", "Tucson", "Nowhere"],
            "state": ["AZ", "AZ", "AZ", "AZ", "AZ", "AZ", "AZ"],
            "zip5": ["85004", "85004", "85012", "85201", "85701", "85705", "00000"],
            "provider_name": ["A", "B", "C", "D", "E", "F", "G"],
        }
    )


def _mimic() -> CensusGeocoderMimic:
    mimic = CensusGeocoderMimic()
    mimic.add_match("1 N Central Ave", "Phoenix", "AZ", "85004", MimicMatch(longitude=-112.0737, latitude=33.4484))
    mimic.add_match(
        "50 E Camelback Rd",
        "Phoenix",
        "AZ",
        "85012",
        MimicMatch(longitude=-112.07, latitude=33.509, match_type="Non_Exact"),
    )
    mimic.add_match("5 Far Away Rd", "Tucson", "AZ", "85705", MimicMatch(longitude=-0.1276, latitude=51.5072))
    mimic.add_tie("2 W Main St", "Mesa", "AZ", "85201")
    return mimic


def _zcta() -> pl.DataFrame:
    return pl.DataFrame({"zip5": ["85701"], "latitude": [32.2165], "longitude": [-110.9709]})


def test_normalize_address_collapses_spelling_variants() -> None:
    key = normalize_address("100 North Main Street, Suite #2", " phoenix ", "az", "85004-1234")
    assert key == "100 N MAIN ST STE 2|PHOENIX|AZ|85004"
    assert normalize_address("100 N. Main St. Ste 2", "Phoenix", "AZ", "850041234") == key
    assert normalize_address("102 N Main St Ste 2", "Phoenix", "AZ", "85004") != key
    assert normalize_address(None, None, None, None) == "|||"


def test_quarter_forms() -> None:
    assert quarter_index("2025Q3") == quarter_index("2025-07-01") == quarter_index("2025-q3") == 2025 * 4 + 2
    with pytest.raises(ValueError, match="quarter"):
        quarter_index("summer 2025")


def test_zip_run_uses_centroids_and_rejects_unknown_zip() -> None:
    result = geocode_providers(_providers(), geocoder="zip", quarter="2025Q1", geocoded_at=STAMP)
    geocoded = result.geocoded
    assert geocoded.height == 6
    assert set(geocoded["geocode_method"]) == {"zip_centroid"}
    assert set(geocoded["geocode_quality"]) == {"zip5_centroid"}
    assert not geocoded["geocode_from_cache"].any()
    phoenix = geocoded.filter(pl.col("npi") == "1000000001").row(0, named=True)
    reference = zip_centroids().filter(pl.col("zip5") == "85004").row(0, named=True)
    assert (phoenix["latitude"], phoenix["longitude"]) == (reference["latitude"], reference["longitude"])
    assert phoenix["county_fips"] == "04013" and phoenix["provider_name"] == "A"
    assert result.rejects.schema == pl.Schema(REJECTS)
    assert result.rejects.select("npi", "reason", "source").rows() == [("1000000007", "unknown_zip", "geocode")]
    assert json.loads(result.rejects["raw_record"][0])["zip5"] == "00000"
    # rejects are not cached by a zip run; every located address is
    assert result.cache_updates.height == 5 and result.cache_updates.schema == pl.Schema(GEOCODE_CACHE)
    assert result.stats["rows"] == 7 and result.stats["addresses"] == 6 and result.stats["zip_centroid"] == 5
    assert result.stats["rejected"] == 1 and result.stats["census_requested"] == 0


def test_census_run_fallback_chain() -> None:
    with _mimic() as mimic:
        census = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0)
        result = geocode_providers(
            _providers(), geocoder="census", census=census, zcta=_zcta(), quarter="2025Q1", geocoded_at=STAMP
        )
        sent = mimic.addresses_seen
    by_npi = {row["npi"]: row for row in result.geocoded.iter_rows(named=True)}
    assert sent == 6  # the two spellings of 1 N Central Ave are one address
    assert by_npi["1000000001"]["geocode_method"] == "census" and by_npi["1000000001"]["geocode_quality"] == "exact"
    assert by_npi["1000000001"]["latitude"] == pytest.approx(33.4484)
    assert by_npi["1000000002"]["latitude"] == pytest.approx(33.4484)
    assert by_npi["1000000001"]["county_fips"] == "04013"  # from the census geographies
    assert by_npi["1000000003"]["geocode_quality"] == "non_exact"
    assert (by_npi["1000000004"]["geocode_method"], by_npi["1000000004"]["geocode_quality"]) == (
        "zip_centroid",
        "zip5_centroid",
    )
    assert by_npi["1000000005"]["geocode_method"] == "zcta_centroid"
    assert by_npi["1000000005"]["latitude"] == pytest.approx(32.2165)
    assert by_npi["1000000005"]["county_fips"] == "04019"  # from the ZIP reference
    # the London point from a Match falls back to the ZIP centroid, in Arizona
    far = by_npi["1000000006"]
    assert far["geocode_method"] == "zip_centroid" and 31 < far["latitude"] < 37
    assert result.rejects.select("npi", "reason").rows() == [("1000000007", "unknown_zip")]
    stats = result.stats
    assert (stats["census_requested"], stats["census_matched"], stats["census_no_match"]) == (6, 2, 2)
    assert (stats["census_tie"], stats["census_outside_us"], stats["batches"]) == (1, 1, 1)
    assert (stats["zcta_centroid"], stats["zip_centroid"], stats["rejected"]) == (1, 2, 1)
    statuses = dict(result.cache_updates.select("address_key", "census_status").iter_rows())
    assert statuses[normalize_address("9 Nowhere Ln", "Nowhere", "AZ", "00000")] == "No_Match"
    assert statuses[normalize_address("5 Far Away Rd", "Tucson", "AZ", "85705")] == "outside_us"
    assert result.cache_updates["first_quarter"].unique().to_list() == ["2025Q1"]


def test_second_run_hits_the_cache_and_a_changed_address_is_regeocoded() -> None:
    with _mimic() as mimic:
        census = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0)
        first = geocode_providers(_providers(), geocoder="census", census=census, zcta=_zcta(), quarter="2025Q1")
        cache = merge_cache(None, first.cache_updates)
        attempts_after_first = mimic.attempts
        second = geocode_providers(
            _providers(), geocoder="census", census=census, zcta=_zcta(), cache=cache, quarter="2025Q2"
        )
        attempts_after_second = mimic.attempts
        moved = _providers().with_columns(
            pl.when(pl.col("npi") == "1000000003")
            .then(pl.lit("60 E Camelback Rd"))
            .otherwise(pl.col("address_line_1"))
            .alias("address_line_1")
        )
        third = geocode_providers(moved, geocoder="census", census=census, zcta=_zcta(), cache=cache, quarter="2025Q2")
        last_request = mimic.requests[-1].rows
    assert attempts_after_second == attempts_after_first  # nothing new was asked
    assert second.stats["cache_hit_rate"] == 1.0 and second.stats["census_requested"] == 0
    assert second.geocoded["geocode_from_cache"].all()
    assert second.cache_updates.height == 0
    compare = ["npi", "latitude", "longitude", "geocode_method", "geocode_quality", "county_fips"]
    assert second.geocoded.select(compare).equals(first.geocoded.select(compare))
    assert second.rejects.select("npi", "reason").rows() == first.rejects.select("npi", "reason").rows()
    assert [row[1] for row in last_request] == ["60 E Camelback Rd"]
    assert third.stats["cache_hits"] == 5 and third.stats["census_requested"] == 1
    assert not third.geocoded.filter(pl.col("npi") == "1000000003")["geocode_from_cache"][0]


def test_census_run_is_not_satisfied_by_zip_centroid_cache() -> None:
    zip_run = geocode_providers(_providers(), geocoder="zip", quarter="2025Q1")
    with _mimic() as mimic:
        census = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0)
        upgraded = geocode_providers(
            _providers(), geocoder="census", census=census, cache=zip_run.cache_updates, quarter="2025Q2"
        )
        sent = mimic.addresses_seen
    assert sent == 6 and upgraded.stats["cache_hits"] == 0
    assert upgraded.geocoded.filter(pl.col("npi") == "1000000001")["geocode_method"][0] == "census"
    # ... while a zip run happily reuses census rows
    cache = merge_cache(zip_run.cache_updates, upgraded.cache_updates)
    again = geocode_providers(_providers(), geocoder="zip", cache=cache, quarter="2025Q3")
    assert again.stats["cache_hits"] == 5
    assert again.geocoded.filter(pl.col("npi") == "1000000001")["geocode_method"][0] == "census"


def test_census_no_match_is_retried_after_the_retry_window() -> None:
    with _mimic() as mimic:
        census = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0)
        first = geocode_providers(_providers(), geocoder="census", census=census, quarter="2025Q1")
        within = geocode_providers(
            _providers(), geocoder="census", census=census, cache=first.cache_updates, quarter="2025Q4"
        )
        later = geocode_providers(
            _providers(), geocoder="census", census=census, cache=first.cache_updates, quarter="2026Q1"
        )
    assert within.stats["census_requested"] == 0
    # the 4 declined addresses (Tie, 2x No_Match, outside-US match) are asked again after 4 quarters
    assert later.stats["census_requested"] == 4 and later.stats["cache_hits"] == 2


def test_failed_batch_falls_back_and_is_not_trusted_later() -> None:
    with _mimic() as mimic:
        mimic.fail_next(*([503] * 4))  # two batches x two tries
        census = CensusBatchGeocoder(base_url=mimic.base_url, backoff_seconds=0, max_retries=1, batch_size=4)
        result = geocode_providers(_providers(), geocoder="census", census=census, quarter="2025Q1")
        retry = geocode_providers(
            _providers(), geocoder="census", census=census, cache=result.cache_updates, quarter="2025Q1"
        )
    assert result.stats["batches"] == 2 and result.stats["census_failed"] == 6
    assert set(result.geocoded["geocode_method"]) == {"zip_centroid"}
    assert result.rejects["reason"].to_list() == ["unknown_zip"]
    assert set(result.cache_updates["census_status"]) == {"error"}
    assert retry.stats["census_requested"] == 6 and retry.stats["census_matched"] == 2


def test_outside_us_zip_and_missing_fields_become_rejects() -> None:
    odd = pl.DataFrame(
        {
            "npi": ["1000000010", "1000000011", "1000000012"],
            "address_line_1": ["1 Capitol Rd", None, "3 Main St"],
            "city": ["Majuro", None, "Phoenix"],
            "state": ["MH", None, "AZ"],
            "zip5": ["96960", None, "85004"],
        }
    )
    result = geocode_providers(odd, geocoder="zip", quarter="2025Q1")
    assert result.geocoded["npi"].to_list() == ["1000000012"]
    assert dict(result.rejects.select("npi", "reason").iter_rows()) == {
        "1000000010": "outside_us",
        "1000000011": "unknown_zip",
    }
    with pytest.raises(ValueError, match="lacks columns"):
        geocode_providers(odd.drop("zip5"), quarter="2025Q1")
    with pytest.raises(ValueError, match="CensusBatchGeocoder"):
        geocode_providers(odd, geocoder="census", quarter="2025Q1")


def test_output_is_deterministic() -> None:
    one = geocode_providers(_providers(), geocoder="zip", zcta=_zcta(), quarter="2025Q1", geocoded_at=STAMP)
    two = geocode_providers(_providers(), geocoder="zip", zcta=_zcta(), quarter="2025Q1", geocoded_at=STAMP)
    assert one.geocoded.equals(two.geocoded) and one.cache_updates.equals(two.cache_updates)
    assert one.rejects.equals(two.rejects)


def test_merge_cache_upserts_by_key() -> None:
    old = pl.DataFrame(
        {
            "address_key": ["A", "B"],
            "latitude": [1.0, 2.0],
            "longitude": [1.0, 2.0],
            "geocode_method": ["zip_centroid"] * 2,
        }
    )
    new = pl.DataFrame(
        {"address_key": ["B", "C"], "latitude": [3.0, 4.0], "longitude": [3.0, 4.0], "geocode_method": ["census"] * 2}
    )
    merged = merge_cache(old, new)
    assert merged.columns == list(GEOCODE_CACHE)
    assert merged.select("address_key", "latitude", "geocode_method").rows() == [
        ("A", 1.0, "zip_centroid"),
        ("B", 3.0, "census"),
        ("C", 4.0, "census"),
    ]


def test_zip_centroids_county_match_rate() -> None:
    zips = zip_centroids()
    named = zips.filter(pl.col("county_name").is_not_null())
    rate = named["county_fips"].is_not_null().mean()
    print(f"county FIPS match rate: {rate:.4%} of {named.height} ZIPs with a county name")
    assert rate > 0.995
    assert zips["zip5"].is_unique().all() and zips["zip5"].str.contains(r"^\d{5}$").all()
    assert zips.filter((pl.col("latitude") == 0) & (pl.col("longitude") == 0)).height == 0
    assert county_fips_for("St. Mary's County", "MD") == "24037"
    assert county_fips_for("Richmond city", "VA") == "51760"
    assert county_fips_for("Richmond County", "VA") == "51159"
    assert county_fips_for("Municipality of Anchorage", "AK") == "02020"
    assert county_fips_for("Dona Ana County", "NM") == "35013"
    assert county_fips_for("No Such County", "AZ") is None


def test_load_zcta_gazetteer_strips_padding(tmp_path: Path) -> None:
    path = tmp_path / "2024_Gaz_zcta_national.txt"
    header = "GEOID\tALAND\tAWATER\tALAND_SQMI\tAWATER_SQMI\tINTPTLAT\tINTPTLONG" + " " * 88
    lines = [
        "00601\t166659883\t799293\t64.348\t0.309\t18.180555\t-66.749961" + " " * 60,
        "85004\t4290000\t0\t1.656\t0.000\t33.451\t-112.070" + " " * 60,
    ]
    path.write_text("\n".join([header, *lines]) + "\n")
    frame = load_zcta_gazetteer(path)
    assert frame.rows() == [("00601", 18.180555, -66.749961), ("85004", 33.451, -112.07)]
    archive = tmp_path / "2024_Gaz_zcta_national.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(path, arcname=path.name)
    assert load_zcta_gazetteer(archive).equals(frame)
    path.write_text(f"{header}\n601\t1\t0\t1\t0\t18.1\t-66.7\n")
    with pytest.raises(ValueError, match="bad GEOID"):
        load_zcta_gazetteer(path)
    path.write_text("ZIP\tLAT\tLON\n85004\t33.4\t-112.0\n")
    with pytest.raises(ValueError, match="not a ZCTA Gazetteer"):
        load_zcta_gazetteer(path)
