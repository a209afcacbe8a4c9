"""Geocode provider practice addresses with a fallback chain and a cross-quarter cache.

Chain, per distinct address (``address_key``):

1. **cache** -- a cached row is reused when it is good enough for the run
   (see *Cache reuse rule*);
2. **census** (``geocoder="census"`` only) -- the Census batch geocoder; a
   ``Match`` inside the US gives method ``census`` with quality ``exact`` or
   ``non_exact``; ``No_Match``, ``Tie``, a match outside the US or a batch that
   failed after retries fall through;
3. **ZCTA centroid** (when a Gazetteer frame is given) -- method
   ``zcta_centroid``, quality ``zip5_centroid``;
4. **ZIP centroid** from the ``zipcodes`` package -- method ``zip_centroid``,
   quality ``zip5_centroid``;
5. **reject** -- reason ``outside_us`` when a coordinate was found but lies
   outside the US boxes (CONUS, AK incl. the Aleutians west of 180°, HI, PR/VI,
   GU/MP, AS), otherwise ``unknown_zip``.

``county_fips`` comes from the Census geographies answer, else from the ZIP's
county in the ``zipcodes`` reference.

Address key
    ``normalize_address(line_1, city, state, zip5)``: each part upper-cased,
    every run of characters other than A-Z/0-9 turned into one space, trimmed;
    in line 1 common USPS words are abbreviated (STREET -> ST, AVENUE -> AVE,
    SUITE -> STE, NORTH -> N ...; see ``STREET_ABBREVIATIONS``); only the first
    5 digits of the ZIP are kept; parts are joined with ``|``.  Line 2 (suite)
    is not part of the key: it does not move the point.

Cache reuse rule
    * ``geocoder="zip"``: any cached row that has a coordinate (method
      ``census``, ``zcta_centroid`` or ``zip_centroid``) is reused.
    * ``geocoder="census"``: a cached ``census`` row is reused; a cached
      fallback (centroid or rejected) row is reused only when the Census
      geocoder itself answered No_Match / Tie / a point outside the US for it
      (``census_status``) less than ``census_retry_quarters`` quarters before
      the current one.  A centroid row from a ``zip`` run, or one written after
      a failed batch, is never enough for a census run.
    * A rejected address is cached only when the Census geocoder answered for
      it (so a census run does not ask again every quarter).
    ``cache_updates`` holds one row per address geocoded afresh in this run;
    ``merge_cache`` upserts them into the stored cache.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import polars as pl

from territory_pipeline.universe.addresses import ABBREVIATIONS, clean_text_expr, normalize_street_expr

from territory_pipeline.geography.census_geocoder import (
    CENSUS_RESULT_COLUMNS,
    CensusBatchGeocoder,
    CensusGeocoderError,
)
from territory_pipeline.geography.zip_reference import zip_centroids
from territory_pipeline.schemas import REJECTS

log = logging.getLogger(__name__)

GEOCODE_CACHE: dict[str, pl.DataType] = {
    "address_key": pl.Utf8,
    "latitude": pl.Float64,  # null for a cached reject
    "longitude": pl.Float64,
    "geocode_method": pl.Utf8,  # 'census' | 'zcta_centroid' | 'zip_centroid' | 'none' (rejected)
    "geocode_quality": pl.Utf8,  # 'exact' | 'non_exact' | 'zip5_centroid' | the reject reason
    "county_fips": pl.Utf8,
    "matched_address": pl.Utf8,  # the Census matched address, else null
    "census_status": pl.Utf8,  # 'Match' | 'No_Match' | 'Tie' | 'outside_us' | 'error' | null (not asked)
    "geocoded_at": pl.Utf8,  # ISO 8601 UTC
    "first_quarter": pl.Utf8,  # the quarter whose run geocoded the address
}

STREET_ABBREVIATIONS = ABBREVIATIONS  # shared with every stage (universe/addresses.py)

# (lat_min, lat_max, lon_min, lon_max)
US_BOUNDING_BOXES: dict[str, tuple[float, float, float, float]] = {
    "conus": (24.3, 49.5, -125.0, -66.8),
    "alaska": (51.0, 71.6, -180.0, -129.9),
    "aleutians_west_of_180": (51.0, 53.1, 172.0, 180.0),
    "hawaii": (18.8, 28.5, -178.5, -154.7),
    "puerto_rico_virgin_islands": (17.6, 18.6, -68.0, -64.5),
    "guam_northern_mariana": (13.2, 20.6, 144.5, 146.1),
    "american_samoa": (-14.6, -11.0, -171.2, -168.1),
}

ADDRESS_COLUMNS = ("npi", "address_line_1", "city", "state", "zip5")
_CENSUS_DECLINED = ("No_Match", "Tie", "outside_us")
_LOCATED = ("census", "zcta_centroid", "zip_centroid")


@dataclass
class GeocodeResult:
    """What one geocoding run returns.

    geocoded: the located provider rows (input columns plus latitude, longitude,
        geocode_method, geocode_quality, geocode_from_cache, county_fips), in input order.
    cache_updates: GEOCODE_CACHE rows for addresses geocoded afresh.
    rejects: REJECTS rows (source 'geocode', reason 'unknown_zip' | 'outside_us').
    stats: counts, see ``geocode_providers``.
    """

    geocoded: pl.DataFrame
    cache_updates: pl.DataFrame
    rejects: pl.DataFrame
    stats: dict[str, float | int] = field(default_factory=dict)




def address_key_expr(
    address_line_1: str = "address_line_1", city: str = "city", state: str = "state", zip5: str = "zip5"
) -> pl.Expr:
    """Vectorized ``normalize_address`` over four columns (see the module docstring)."""
    line = normalize_street_expr(address_line_1)
    zip_part = pl.col(zip5).cast(pl.Utf8).fill_null("").str.replace_all(r"\D", "").str.slice(0, 5)
    return pl.concat_str([line, clean_text_expr(pl.col(city)), clean_text_expr(pl.col(state)), zip_part], separator="|")


def normalize_address(address_line_1: str | None, city: str | None, state: str | None, zip5: str | None) -> str:
    """The cache key of one address, e.g. ``'100 N MAIN ST STE 2|PHOENIX|AZ|85004'``."""
    frame = pl.DataFrame(
        {"address_line_1": [address_line_1], "city": [city], "state": [state], "zip5": [zip5]},
        schema={c: pl.Utf8 for c in ("address_line_1", "city", "state", "zip5")},
    )
    return frame.select(address_key_expr()).item()


def inside_us_expr(latitude: str = "latitude", longitude: str = "longitude") -> pl.Expr:
    """True when the point lies in one of ``US_BOUNDING_BOXES`` (null coordinates -> False)."""
    lat, lon = pl.col(latitude), pl.col(longitude)
    inside = pl.lit(False)
    for lat_min, lat_max, lon_min, lon_max in US_BOUNDING_BOXES.values():
        inside = inside | (lat.is_between(lat_min, lat_max) & lon.is_between(lon_min, lon_max))
    return inside.fill_null(False)


def quarter_index_expr(expr: pl.Expr) -> pl.Expr:
    """``year * 4 + quarter - 1`` from 'YYYYQn', 'YYYY-Qn' or an ISO date 'YYYY-MM-DD'; null otherwise."""
    text = expr.cast(pl.Utf8).str.strip_chars().str.to_uppercase()
    year = text.str.extract(r"^(\d{4})", 1).cast(pl.Int64)
    quarter = text.str.extract(r"^\d{4}-?Q([1-4])$", 1).cast(pl.Int64)
    month = text.str.extract(r"^\d{4}-(\d{2})-\d{2}$", 1).cast(pl.Int64)
    from_month = pl.when(month.is_between(1, 12)).then((month - 1) // 3 + 1)
    return year * 4 + pl.coalesce(quarter, from_month) - 1


def quarter_index(quarter: str) -> int:
    """Quarter number of a quarter string; raises ValueError for an unknown form."""
    value = pl.select(quarter_index_expr(pl.lit(quarter))).item()
    if value is None:
        raise ValueError(f"quarter {quarter!r} is not 'YYYYQn', 'YYYY-Qn' or 'YYYY-MM-DD'")
    return int(value)


def merge_cache(cache: pl.DataFrame | None, updates: pl.DataFrame) -> pl.DataFrame:
    """Upsert ``updates`` into ``cache`` by address_key; sorted by address_key."""
    frames = [_conform_cache(updates)]
    if cache is not None:
        frames.insert(0, _conform_cache(cache))
    return pl.concat(frames).unique(subset="address_key", keep="last", maintain_order=True).sort("address_key")


def _conform_cache(cache: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("address_key", "latitude", "longitude", "geocode_method") if c not in cache.columns]
    if missing:
        raise ValueError(f"geocode cache lacks columns {missing}")
    return cache.select(
        [pl.col(c).cast(t) if c in cache.columns else pl.lit(None, dtype=t).alias(c) for c, t in GEOCODE_CACHE.items()]
    )


def geocode_providers(
    providers: pl.DataFrame,
    *,
    geocoder: Literal["zip", "census"] = "zip",
    cache: pl.DataFrame | None = None,
    census: CensusBatchGeocoder | None = None,
    zcta: pl.DataFrame | None = None,
    quarter: str,
    census_retry_quarters: int = 4,
    geocoded_at: str | None = None,
) -> GeocodeResult:
    """Locate every provider row; never fails on one bad address.

    ``providers`` needs npi, address_line_1, city, state, zip5.  ``zcta`` is a
    ``load_zcta_gazetteer`` frame.  ``quarter`` (e.g. '2025Q3' or '2025-07-01')
    stamps new cache rows and ages census No_Match answers.  ``geocoded_at``
    defaults to now (UTC, ISO 8601).

    stats (counts of distinct addresses unless noted): rows (provider rows),
    addresses, cache_hits, cache_hit_rate (cache_hits / addresses, 1.0 when
    there are none), census_requested, census_matched (inside the US),
    census_no_match, census_tie, census_outside_us, census_failed (addresses in
    batches that failed), zcta_centroid and zip_centroid (fresh this run),
    rejected, rejected_rows (provider rows), batches, seconds.
    """
    started = time.perf_counter()
    missing = [c for c in ADDRESS_COLUMNS if c not in providers.columns]
    if missing:
        raise ValueError(f"providers frame lacks columns {missing}")
    if geocoder not in ("zip", "census"):
        raise ValueError(f"geocoder must be 'zip' or 'census', not {geocoder!r}")
    if geocoder == "census" and census is None:
        raise ValueError("geocoder='census' needs a CensusBatchGeocoder (census=...)")
    current_quarter = quarter_index(quarter)
    stamp = geocoded_at or datetime.now(UTC).replace(microsecond=0).isoformat()
    stats: dict[str, float | int] = {
        key: 0
        for key in (
            "census_requested",
            "census_matched",
            "census_no_match",
            "census_tie",
            "census_outside_us",
            "census_failed",
            "batches",
        )
    }

    keyed = providers.with_row_index("_row").with_columns(address_key_expr().alias("address_key"))
    addresses = (
        keyed.unique(subset="address_key", keep="first", maintain_order=True)
        .select(
            "address_key",
            pl.col("address_line_1").cast(pl.Utf8).alias("_street"),
            pl.col("city").cast(pl.Utf8).alias("_city"),
            pl.col("state").cast(pl.Utf8).alias("_state"),
            pl.col("zip5").cast(pl.Utf8).str.replace_all(r"\D", "").str.slice(0, 5).alias("_zip5"),
        )
        .sort("address_key")
    )

    hits, misses = _split_cache(addresses, cache, geocoder, current_quarter, census_retry_quarters)
    fresh = misses.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("latitude"),
        pl.lit(None, dtype=pl.Float64).alias("longitude"),
        pl.lit(None, dtype=pl.Utf8).alias("geocode_method"),
        pl.lit(None, dtype=pl.Utf8).alias("geocode_quality"),
        pl.lit(None, dtype=pl.Utf8).alias("county_fips"),
        pl.lit(None, dtype=pl.Utf8).alias("matched_address"),
        pl.lit(None, dtype=pl.Utf8).alias("census_status"),
    )
    if geocoder == "census" and census is not None and fresh.height:
        fresh = _census_stage(fresh, census, stats)
    fresh = _centroid_stage(fresh, zcta)
    fresh_methods = fresh["geocode_method"]
    stats["zcta_centroid"] = int((fresh_methods == "zcta_centroid").sum())
    stats["zip_centroid"] = int((fresh_methods == "zip_centroid").sum())

    fresh_cache = fresh.with_columns(
        pl.lit(stamp).alias("geocoded_at"),
        pl.lit(quarter).alias("first_quarter"),
    )
    cache_updates = (
        fresh_cache.filter(pl.col("geocode_method").is_in(_LOCATED) | pl.col("census_status").is_in(_CENSUS_DECLINED))
        .select(list(GEOCODE_CACHE))
        .sort("address_key")
    )

    resolved = pl.concat(
        [
            hits.select(
                "address_key", "latitude", "longitude", "geocode_method", "geocode_quality", "county_fips"
            ).with_columns(pl.lit(True).alias("geocode_from_cache")),
            fresh.select(
                "address_key", "latitude", "longitude", "geocode_method", "geocode_quality", "county_fips"
            ).with_columns(pl.lit(False).alias("geocode_from_cache")),
        ]
    )
    geo_cols = ["latitude", "longitude", "geocode_method", "geocode_quality", "geocode_from_cache", "county_fips"]
    joined = keyed.drop([c for c in geo_cols if c in keyed.columns]).join(resolved, on="address_key", how="left")
    joined = joined.sort("_row")
    located = joined.filter(pl.col("geocode_method").is_in(_LOCATED))
    rejected = joined.filter(~pl.col("geocode_method").is_in(_LOCATED))
    geocoded = located.drop("_row", "address_key")
    rejects = _rejects(rejected)

    address_count = addresses.height
    stats.update(
        rows=providers.height,
        addresses=address_count,
        cache_hits=hits.height,
        cache_hit_rate=(hits.height / address_count) if address_count else 1.0,
        rejected=int(
            (~hits["geocode_method"].is_in(_LOCATED)).sum() + (~fresh["geocode_method"].is_in(_LOCATED)).sum()
        ),
        rejected_rows=rejects.height,
        seconds=round(time.perf_counter() - started, 3),
    )
    return GeocodeResult(geocoded=geocoded, cache_updates=cache_updates, rejects=rejects, stats=stats)


def _split_cache(
    addresses: pl.DataFrame,
    cache: pl.DataFrame | None,
    geocoder: str,
    current_quarter: int,
    census_retry_quarters: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(hits with cached columns, misses) under the cache reuse rule."""
    if cache is None or cache.height == 0:
        return addresses.clear().join(_conform_cache(pl.DataFrame(schema=GEOCODE_CACHE)), on="address_key"), addresses
    stored = _conform_cache(cache).unique(subset="address_key", keep="last", maintain_order=True)
    age = current_quarter - quarter_index_expr(pl.col("first_quarter"))
    if geocoder == "zip":
        reusable = pl.col("geocode_method").is_in(_LOCATED)
    else:
        reusable = (pl.col("geocode_method") == "census") | (
            pl.col("census_status").is_in(_CENSUS_DECLINED) & (age >= 0) & (age < census_retry_quarters)
        )
    candidates = addresses.join(stored, on="address_key", how="left").with_columns(
        (pl.col("geocode_method").is_not_null() & reusable).fill_null(False).alias("_reuse")
    )
    hits = candidates.filter(pl.col("_reuse")).drop("_reuse")
    misses = candidates.filter(~pl.col("_reuse")).select(addresses.columns)
    return hits, misses


def _census_stage(fresh: pl.DataFrame, census: CensusBatchGeocoder, stats: dict[str, float | int]) -> pl.DataFrame:
    """Ask the Census geocoder for the addresses that have a street; fill census results."""
    askable = fresh.with_row_index("_id").filter(pl.col("_street").str.strip_chars().str.len_chars().fill_null(0) > 0)
    request = askable.select(
        pl.col("_id").cast(pl.Utf8).alias("id"),
        pl.col("_street").alias("street"),
        pl.col("_city").alias("city"),
        pl.col("_state").alias("state"),
        pl.col("_zip5").alias("zip"),
    )
    stats["census_requested"] = request.height
    answers: list[pl.DataFrame] = []
    failed_ids: list[str] = []
    for batch in census.batches(request):
        stats["batches"] += 1
        try:
            answers.append(census.geocode_batch(batch))
        except CensusGeocoderError as exc:
            log.warning("falling back to centroids: %s", exc)
            failed_ids.extend(batch["id"].to_list())
    stats["census_failed"] = len(failed_ids)
    if not answers and not failed_ids:
        return fresh
    answer = pl.concat(answers) if answers else pl.DataFrame(schema=CENSUS_RESULT_COLUMNS)
    answer = answer.with_columns(inside_us_expr().alias("_inside"))
    stats["census_matched"] = int(((answer["match"] == "Match") & answer["_inside"]).sum())
    stats["census_outside_us"] = int(((answer["match"] == "Match") & ~answer["_inside"]).sum())
    stats["census_no_match"] = int((answer["match"] == "No_Match").sum())
    stats["census_tie"] = int((answer["match"] == "Tie").sum())
    matched = pl.col("match") == "Match"
    good = matched & pl.col("_inside")
    outcome = pl.concat(
        [
            answer.select(
                pl.col("id").alias("_cid"),
                pl.when(good).then(pl.col("latitude")).alias("_c_lat"),
                pl.when(good).then(pl.col("longitude")).alias("_c_lon"),
                pl.when(good).then(pl.lit("census")).alias("_c_method"),
                pl.when(good)
                .then(pl.when(pl.col("match_type") == "Exact").then(pl.lit("exact")).otherwise(pl.lit("non_exact")))
                .alias("_c_quality"),
                pl.when(good).then(pl.col("county_fips")).alias("_c_county"),
                pl.when(matched).then(pl.col("matched_address")).alias("_c_matched"),
                pl.when(matched & ~pl.col("_inside"))
                .then(pl.lit("outside_us"))
                .otherwise(pl.col("match"))
                .alias("_c_status"),
            ),
            pl.DataFrame({"_cid": failed_ids, "_c_status": ["error"] * len(failed_ids)}),
        ],
        how="diagonal_relaxed",
    )
    merged = (
        fresh.with_row_index("_id")
        .with_columns(pl.col("_id").cast(pl.Utf8).alias("_cid"))
        .join(outcome, on="_cid", how="left")
    )
    return merged.select(
        fresh.columns[: fresh.columns.index("latitude")]
        + [
            pl.col("_c_lat").alias("latitude"),
            pl.col("_c_lon").alias("longitude"),
            pl.col("_c_method").alias("geocode_method"),
            pl.col("_c_quality").alias("geocode_quality"),
            pl.col("_c_county").alias("county_fips"),
            pl.col("_c_matched").alias("matched_address"),
            pl.col("_c_status").alias("census_status"),
        ]
    )


def _centroid_stage(fresh: pl.DataFrame, zcta: pl.DataFrame | None) -> pl.DataFrame:
    """Fill rows without a census point from ZCTA, then ZIP centroids; mark the rest rejected."""
    zips = zip_centroids().select(
        pl.col("zip5").alias("_zip5"),
        pl.col("latitude").alias("_z_lat"),
        pl.col("longitude").alias("_z_lon"),
        pl.col("county_fips").alias("_z_county"),
    )
    frame = fresh.join(zips, on="_zip5", how="left")
    if zcta is not None:
        missing = [c for c in ("zip5", "latitude", "longitude") if c not in zcta.columns]
        if missing:
            raise ValueError(f"zcta frame lacks columns {missing}")
        frame = frame.join(
            zcta.select(
                pl.col("zip5").alias("_zip5"), pl.col("latitude").alias("_t_lat"), pl.col("longitude").alias("_t_lon")
            ).unique(subset="_zip5", keep="first"),
            on="_zip5",
            how="left",
        )
    else:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("_t_lat"), pl.lit(None, dtype=pl.Float64).alias("_t_lon")
        )
    has_census = pl.col("geocode_method") == "census"
    zcta_ok = inside_us_expr("_t_lat", "_t_lon")
    zip_ok = inside_us_expr("_z_lat", "_z_lon")
    any_point = pl.col("_t_lat").is_not_null() | pl.col("_z_lat").is_not_null()
    method = (
        pl.when(has_census.fill_null(False))
        .then(pl.lit("census"))
        .when(zcta_ok)
        .then(pl.lit("zcta_centroid"))
        .when(zip_ok)
        .then(pl.lit("zip_centroid"))
        .otherwise(pl.lit("none"))
    )
    frame = frame.with_columns(method.alias("_method"))
    m = pl.col("_method")
    return frame.select(
        fresh.columns[: fresh.columns.index("latitude")]
        + [
            pl.when(m == "census")
            .then(pl.col("latitude"))
            .when(m == "zcta_centroid")
            .then(pl.col("_t_lat"))
            .when(m == "zip_centroid")
            .then(pl.col("_z_lat"))
            .alias("latitude"),
            pl.when(m == "census")
            .then(pl.col("longitude"))
            .when(m == "zcta_centroid")
            .then(pl.col("_t_lon"))
            .when(m == "zip_centroid")
            .then(pl.col("_z_lon"))
            .alias("longitude"),
            m.alias("geocode_method"),
            pl.when(m == "census")
            .then(pl.col("geocode_quality"))
            .when(m.is_in(["zcta_centroid", "zip_centroid"]))
            .then(pl.lit("zip5_centroid"))
            .when(any_point)
            .then(pl.lit("outside_us"))
            .otherwise(pl.lit("unknown_zip"))
            .alias("geocode_quality"),
            pl.when(m == "none").then(None).otherwise(pl.coalesce("county_fips", "_z_county")).alias("county_fips"),
            pl.col("matched_address"),
            pl.col("census_status"),
        ]
    )


def _rejects(rejected: pl.DataFrame) -> pl.DataFrame:
    """REJECTS rows for provider rows that could not be located."""
    if rejected.height == 0:
        return pl.DataFrame(schema=REJECTS)
    records = []
    for row in rejected.select("npi", "address_line_1", "city", "state", "zip5", "geocode_quality").iter_rows(
        named=True
    ):
        reason = row["geocode_quality"] or "unknown_zip"
        address = {k: row[k] for k in ("npi", "address_line_1", "city", "state", "zip5")}
        if reason == "outside_us":
            detail = f"every coordinate found for ZIP {row['zip5']!r} lies outside the US bounding boxes"
        else:
            detail = f"ZIP {row['zip5']!r} is not in the ZIP reference and no geocoder located the address"
        records.append(
            {
                "source": "geocode",
                "npi": row["npi"],
                "reason": reason,
                "detail": detail,
                "raw_record": json.dumps(address, sort_keys=True),
            }
        )
    return pl.DataFrame(records, schema=REJECTS)
