"""Provider universe from the NPPES monthly Data Dissemination file (bulk path).

``read_nppes`` streams the national ``npidata_pfile`` (10.8 GB, ~9.7M rows) with a
lazy polars ``scan_csv`` (all strings, only the ~70 needed columns) in batches, so
it runs in bounded memory, and returns the target providers in the ``PROVIDERS``
contract together with rejects, secondary practice locations, facility rows and
stats.

Rules (see docs/data-sources.md §2):

* **Header** names are matched case-, space- and punctuation-insensitively
  (``nppes_layout.normalize_header``); ``Provider Gender Code`` (pre-2025) and
  ``Provider Sex Code`` are the same column.  A missing required column raises
  ``NppesFormatError``.
* **Stubs**: rows with a blank Entity Type Code and a deactivation date are
  deactivated NPIs; they are excluded and counted (``stub_rows``).
* **Active** = deactivation date null, or reactivation date not null and
  reactivation >= deactivation.  Other rows are excluded and counted (``inactive``);
  reactivated rows are kept and counted (``reactivated``).
* **Primary taxonomy** = the code whose Primary Taxonomy Switch is ``Y``, in any of
  the 15 slots.  A provider is a **target when its primary code is a target code**;
  a target code held only in a secondary slot does not make a target.  A row with
  no ``Y`` switch that holds a target code in some slot is rejected
  (``no_primary_taxonomy``), since its primary cannot be resolved.
* **Entity type** ``1`` = individual, ``2`` = organization; organizations are kept
  only with ``include_organizations`` (else counted in ``organizations_excluded``).
  Any other non-blank value (e.g. ``1.0`` from a pandas re-export) is rejected as
  ``invalid_entity_type`` for would-be targets.
* **Address**: the first practice location (columns 28-35), never the mailing
  address.  IDs and ZIPs stay strings.
* **One row per NPI**: duplicates are resolved by file precedence (monthly first,
  then weekly files in order of their date range), then the latest of Last Update /
  Deactivation / Reactivation date, then the later row; the losers are counted
  (``duplicate_rows`` within a file, ``weekly_rows_applied`` for weekly winners).
  A weekly deactivation stub therefore removes a provider.
* **Secondary locations** come from the monthly ``pl_pfile`` (or the bundle's own),
  for the final providers only; a weekly bundle's ``pl_pfile`` is not applied.
* **Facilities**: active organizations holding an ASC (261QA1903X) or hospital
  (``HOSPITAL_TAXONOMY_CODES``) code in any slot, with their practice address key,
  for ``practice_setting.derive_practice_setting``.
* **Rejects** (only for rows that would otherwise be targets): ``invalid_npi``,
  ``invalid_entity_type``, ``unknown_taxonomy`` (primary code not in the taxonomy
  reference), ``no_primary_taxonomy``, ``missing_zip``, ``malformed_zip``,
  ``non_us_address`` (country not US/blank, or state not in ``US_STATES``).
* **Corrupt input** (short rows anywhere in a fully quoted file, an unterminated
  quote, a truncated or ragged last line, a missing required column, a zip CRC
  failure) raises ``NppesFormatError`` naming the file.  Limitation: a row with
  *extra* fields in the middle of the file is not detected, because polars skips
  the fields beyond the projected columns (a full field count would double the
  read time).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from territory_pipeline import schemas
from territory_pipeline.universe.nppes_layout import (
    LEADING_COLUMNS,
    PL_PFILE_HEADER,
    TAXONOMY_SLOTS,
    normalize_header,
    primary_switch_column,
    taxonomy_code_column,
    taxonomy_group_column,
)
from territory_pipeline.universe.practice_setting import address_key_expr
from territory_pipeline.universe.validation import US_STATES, valid_npi_expr

ASC_TAXONOMY_CODES: frozenset[str] = frozenset({"261QA1903X"})
# NUCC "Hospitals" grouping: acute, critical access, children's, rural, women's, chronic disease,
# long-term care, military, rehabilitation and special hospitals (not psychiatric or religious).
HOSPITAL_TAXONOMY_CODES: frozenset[str] = frozenset(
    {
        "282N00000X", "282NC2000X", "282NC0060X", "282NR1301X", "282NW0100X", "281P00000X", "281PC2000X",
        "282E00000X", "286500000X", "2865M2000X", "2865X1600X", "283X00000X", "283XC2000X", "284300000X",
    }
)

# internal name -> published header (matched through normalize_header)
_MAIN_FIELDS: dict[str, str] = {
    "npi": LEADING_COLUMNS[0],
    "entity_code": LEADING_COLUMNS[1],
    "organization_name": LEADING_COLUMNS[4],
    "last_name": LEADING_COLUMNS[5],
    "first_name": LEADING_COLUMNS[6],
    "middle_name": LEADING_COLUMNS[7],
    "credential": LEADING_COLUMNS[10],
    "address_line_1": LEADING_COLUMNS[28],
    "address_line_2": LEADING_COLUMNS[29],
    "city": LEADING_COLUMNS[30],
    "state": LEADING_COLUMNS[31],
    "postal_code": LEADING_COLUMNS[32],
    "country_code": LEADING_COLUMNS[33],
    "phone": LEADING_COLUMNS[34],
    "enumeration_date": LEADING_COLUMNS[36],
    "last_update_date": LEADING_COLUMNS[37],
    "deactivation_date": LEADING_COLUMNS[39],
    "reactivation_date": LEADING_COLUMNS[40],
    "sex": LEADING_COLUMNS[41],
    **{f"tax_code_{n}": taxonomy_code_column(n) for n in range(1, TAXONOMY_SLOTS + 1)},
    **{f"tax_switch_{n}": primary_switch_column(n) for n in range(1, TAXONOMY_SLOTS + 1)},
    **{f"tax_group_{n}": taxonomy_group_column(n) for n in range(1, TAXONOMY_SLOTS + 1)},
    "is_sole_proprietor": "Is Sole Proprietor",
    "is_organization_subpart": "Is Organization Subpart",
    "parent_organization_lbn": "Parent Organization LBN",
}
_PL_FIELDS: dict[str, str] = dict(
    zip(
        ["npi", "address_line_1", "address_line_2", "city", "state", "postal_code", "country_code", "phone"],
        PL_PFILE_HEADER[:8],
        strict=True,
    )
)
_CODES = [f"tax_code_{n}" for n in range(1, TAXONOMY_SLOTS + 1)]
_CLASSIFY_FIELDS = ["entity_code"]
_DATE_FORMAT = "%m/%d/%Y"
# Rows per streamed batch (the engine's default is ~2k rows, i.e. thousands of tiny
# per-batch splits on the national file); 50k rows of ~75 columns stay a few MB.
_BATCH_ROWS = 50_000
_CANARY = "_last_field"
# row categories in the narrow per-row frame
_STUB, _INACTIVE, _NON_TARGET, _ORG_EXCLUDED, _CANDIDATE = range(5)
_CATEGORY_NAMES = {_STUB: "stub_rows", _INACTIVE: "inactive", _NON_TARGET: "non_target", _ORG_EXCLUDED: "organizations_excluded"}


class NppesFormatError(ValueError):
    """An NPPES file is truncated, corrupt, or not in the published layout."""


@dataclass(frozen=True)
class NppesResult:
    """Output of :func:`read_nppes`."""

    providers: pl.DataFrame  # schemas.PROVIDERS
    rejects: pl.DataFrame  # schemas.REJECTS
    secondary_locations: pl.DataFrame  # schemas.SECONDARY_LOCATIONS
    facilities: pl.DataFrame  # npi, organization_name, facility_type, facility_taxonomy_code, address_line_1, city, state, zip5, address_key
    stats: dict = field(default_factory=dict)


# --- locating and checking files -------------------------------------------------------------


def _zip_member(archive: zipfile.ZipFile, prefix: str, source: Path) -> zipfile.ZipInfo | None:
    members = [
        info
        for info in archive.infolist()
        if Path(info.filename).name.lower().startswith(prefix)
        and info.filename.lower().endswith(".csv")
        and "fileheader" not in info.filename.lower()
    ]
    if len(members) > 1:
        raise NppesFormatError(f"{source}: several {prefix}*.csv members: {[m.filename for m in members]}")
    return members[0] if members else None


def _extract(source: Path, prefix: str, extract_dir: Path | None, required: bool) -> Path | None:
    """Extract the ``prefix*.csv`` member of a bundle zip (CRC-checked) and return its path."""
    try:
        with zipfile.ZipFile(source) as archive:
            info = _zip_member(archive, prefix, source)
            if info is None:
                if required:
                    raise NppesFormatError(f"{source}: no {prefix}*.csv member in the zip")
                return None
            target_dir = extract_dir or source.with_name(source.stem + "_extracted")
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / Path(info.filename).name
            if target.exists() and target.stat().st_size == info.file_size:
                return target  # extracted (and CRC-checked) by an earlier run
            partial = target.with_name(target.name + ".part")
            with archive.open(info) as member, partial.open("wb") as out:
                shutil.copyfileobj(member, out, 1 << 22)
            partial.replace(target)
            return target
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, NppesFormatError):
            raise
        raise NppesFormatError(f"{source}: corrupt zip ({exc})") from exc


def _resolve(source: Path, prefix: str, extract_dir: Path | None, required: bool = True) -> Path | None:
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(source)
    if zipfile.is_zipfile(source):
        return _extract(source, prefix, extract_dir, required)
    return source


def _header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        line = handle.readline()
    if not line.strip():
        raise NppesFormatError(f"{path}: empty file, no header row")
    return next(csv.reader([line]))


def _map_columns(path: Path, header: list[str], wanted: dict[str, str]) -> dict[str, str]:
    """internal name -> the file's actual header text, or NppesFormatError naming missing columns."""
    by_key = {normalize_header(h): h for h in header}
    mapped, missing = {}, []
    for internal, published in wanted.items():
        actual = by_key.get(normalize_header(published))
        if actual is None:
            missing.append(published)
        else:
            mapped[internal] = actual
    if missing:
        raise NppesFormatError(f"{path}: missing required column(s) {missing}")
    return mapped


def _check_tail(path: Path, n_columns: int) -> None:
    """The last line must be complete: newline-terminated, balanced quotes, full field count."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - (1 << 16)))
        tail = handle.read()
    if not tail.endswith(b"\n"):
        raise NppesFormatError(f"{path}: truncated file, the last line has no line end")
    lines = tail.rstrip(b"\r\n").rsplit(b"\n", 1)
    last = lines[-1].decode("utf-8", errors="replace")
    if last.count('"') % 2:
        raise NppesFormatError(f"{path}: unterminated quote in the last line")
    fields = next(csv.reader(io.StringIO(last)), [])
    if len(fields) != n_columns and len(lines) > 1:
        raise NppesFormatError(f"{path}: the last line has {len(fields)} fields, the header has {n_columns}")


def _file_date_key(path: Path) -> tuple[str, str]:
    """(start, end) of the date range in an NPPES file name, as YYYYMMDD strings."""
    name = path.name
    match = re.search(r"(\d{8})-(\d{8})", name)
    if match:
        return match.group(1), match.group(2)
    match = re.search(r"(\d{2})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})", name)
    if match:
        m1, d1, y1, m2, d2, y2 = match.groups()
        return f"20{y1}{m1}{d1}", f"20{y2}{m2}{d2}"
    raise ValueError(f"{path}: cannot order a weekly file without a date range in its name")


# --- scanning ------------------------------------------------------------------------------------


def _clean(name: str) -> pl.Expr:
    value = pl.col(name).str.strip_chars()
    return pl.when(value.str.len_bytes() > 0).then(value).alias(name)


def _date(name: str) -> pl.Expr:
    return pl.col(name).str.strip_chars().str.to_date(_DATE_FORMAT, strict=False)


def _scan(path: Path, precedence: int, target_codes: Sequence[str], facility_codes: Sequence[str], include_organizations: bool) -> tuple[pl.LazyFrame, bool]:
    header = _header(path)
    mapped = _map_columns(path, header, _MAIN_FIELDS)
    _check_tail(path, len(header))
    with path.open("rb") as handle:
        handle.readline()
        quoted = handle.read(1) == b'"'
    select = [pl.col(actual).alias(internal) for internal, actual in mapped.items()]
    if quoted:  # a short row leaves the last column null (a quoted empty value is "")
        select.append(pl.col(header[-1]).is_null().alias(_CANARY))
    lf = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy").select(select)
    # Only the columns that classify every row are cleaned here; the rest after filtering.
    lf = lf.with_row_index("_row").with_columns(_clean(c) for c in _CLASSIFY_FIELDS)
    # Codes and switches are compared raw (published values carry no padding); blanks never match.
    primary = pl.coalesce([pl.when(pl.col(f"tax_switch_{n}") == "Y").then(pl.col(f"tax_code_{n}")) for n in range(1, TAXONOMY_SLOTS + 1)])
    primary = pl.when(primary.str.len_bytes() > 0).then(primary)
    any_target = pl.any_horizontal([pl.col(c).is_in(list(target_codes)) for c in _CODES]).fill_null(False)
    any_facility = pl.any_horizontal([pl.col(c).is_in(list(facility_codes)) for c in _CODES]).fill_null(False)
    deact, react = _date("deactivation_date"), _date("reactivation_date")
    lf = lf.with_columns(
        _primary=primary,
        _prec=pl.lit(precedence, pl.UInt8),
        _deact=deact,
        _active=deact.is_null() | (react.is_not_null() & (react >= deact)).fill_null(False),
        _row_date=pl.max_horizontal(_date("last_update_date"), deact, react),
    )
    is_stub = pl.col("entity_code").is_null() & pl.col("_deact").is_not_null()
    wants = pl.col("_primary").is_in(list(target_codes)).fill_null(False) | (pl.col("_primary").is_null() & any_target)
    category = (
        pl.when(is_stub).then(pl.lit(_STUB))
        .when(~pl.col("_active")).then(pl.lit(_INACTIVE))
        .when(~wants).then(pl.lit(_NON_TARGET))
        .when((pl.col("entity_code") == "2") & pl.lit(not include_organizations)).then(pl.lit(_ORG_EXCLUDED))
        .otherwise(pl.lit(_CANDIDATE))
        .cast(pl.UInt8)
    )
    lf = lf.with_columns(
        _category=category,
        _facility=(pl.col("entity_code") == "2").fill_null(False) & pl.col("_active") & any_facility,
    )
    return lf, quoted


_NARROW = [
    pl.col("npi").cast(pl.UInt64, strict=False).alias("_npi64"),
    "_prec",
    "_row",
    pl.col("_row_date").cast(pl.Int32).alias("_row_date"),
    "_category",
    (pl.col("_deact").is_not_null() & pl.col("_active") & pl.col("entity_code").is_not_null()).alias("_reactivated"),
]


def _collect(path: Path, precedence: int, target_codes, facility_codes, include_organizations) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One streaming pass: (narrow frame of every row, wide frame of candidate and facility rows)."""
    lf, quoted = _scan(path, precedence, target_codes, facility_codes, include_organizations)
    narrow_parts, wide_parts, short_rows = [], [], 0
    try:
        for batch in lf.collect_batches(chunk_size=_BATCH_ROWS):
            narrow_parts.append(batch.select(_NARROW))
            wide_parts.append(batch.filter((pl.col("_category") == _CANDIDATE) | pl.col("_facility")))
            if quoted:
                short_rows += int(batch[_CANARY].sum())
    except pl.exceptions.PolarsError as exc:
        raise NppesFormatError(f"{path}: malformed CSV ({str(exc).splitlines()[0]})") from exc
    if short_rows:
        raise NppesFormatError(f"{path}: {short_rows} row(s) have fewer fields than the header (ragged or truncated rows)")
    wide = pl.concat(wide_parts) if wide_parts else lf.clear().collect()
    narrow = pl.concat(narrow_parts) if narrow_parts else lf.clear().collect().select(_NARROW)
    wide = wide.drop(_CANARY, strict=False).with_columns(_clean(c) for c in _MAIN_FIELDS if c not in _CLASSIFY_FIELDS)
    return narrow, wide


# --- assembling ---------------------------------------------------------------------------------


def _losers(narrow: pl.DataFrame) -> pl.DataFrame:
    """(_prec, _row, same_file) of rows superseded by another row of the same NPI."""
    dup = narrow.filter(pl.col("_npi64").is_not_null() & pl.col("_npi64").is_duplicated())
    if dup.is_empty():
        return pl.DataFrame(schema={"_prec": pl.UInt8, "_row": pl.UInt32, "_same_file": pl.Boolean})
    ranked = dup.sort(["_npi64", "_prec", "_row_date", "_row"], nulls_last=False).with_columns(
        _is_winner=pl.col("_row").cum_count().over("_npi64") == pl.len().over("_npi64"),
        _winner_prec=pl.col("_prec").last().over("_npi64"),
    )
    return ranked.filter(~pl.col("_is_winner")).select(
        "_prec", pl.col("_row").cast(pl.UInt32), (pl.col("_prec") == pl.col("_winner_prec")).alias("_same_file")
    )


def _reject_reason(taxonomy_codes: list[str]) -> pl.Expr:
    zip_ok = pl.col("postal_code").str.contains(r"^\d{5}(\d{4})?$").fill_null(False)
    country_ok = pl.col("country_code").is_null() | (pl.col("country_code") == "US")
    state_ok = pl.col("state").is_in(sorted(US_STATES)).fill_null(False)
    return (
        pl.when(~valid_npi_expr("npi")).then(pl.lit("invalid_npi"))
        .when(~pl.col("entity_code").is_in(["1", "2"]).fill_null(False)).then(pl.lit("invalid_entity_type"))
        .when(pl.col("_primary").is_null()).then(pl.lit("no_primary_taxonomy"))
        .when(~pl.col("_primary").is_in(taxonomy_codes)).then(pl.lit("unknown_taxonomy"))
        .when(pl.col("postal_code").is_null()).then(pl.lit("missing_zip"))
        .when(~zip_ok).then(pl.lit("malformed_zip"))
        .when(~country_ok | ~state_ok).then(pl.lit("non_us_address"))
    )


_REJECT_DETAIL = {
    "invalid_npi": ("NPI {} fails the format or Luhn check", "npi"),
    "invalid_entity_type": ("Entity Type Code {} is not '1' or '2'", "entity_code"),
    "no_primary_taxonomy": ("no primary taxonomy switch 'Y'; codes {}", "_all_codes"),
    "unknown_taxonomy": ("primary taxonomy {} is not in the taxonomy reference", "_primary"),
    "missing_zip": ("practice location postal code is blank{}", None),
    "malformed_zip": ("practice location postal code {} is not 5 or 9 digits", "postal_code"),
    "non_us_address": ("practice location country {} / state {} is not a US state", None),
}


def _detail_expr() -> pl.Expr:
    expr = pl.lit(None, pl.Utf8)
    for reason, (template, column) in _REJECT_DETAIL.items():
        if reason == "non_us_address":
            text = pl.format(template, pl.col("country_code").fill_null("US"), pl.col("state").fill_null("(blank)"))
        elif column is None:
            text = pl.lit(template.format(""))
        else:
            text = pl.format(template, pl.col(column).fill_null("(blank)"))
        expr = pl.when(pl.col("reason") == reason).then(text).otherwise(expr)
    return expr


def _providers(candidates: pl.DataFrame, taxonomy: pl.DataFrame, source_label: str) -> pl.DataFrame:
    tax = taxonomy.select(
        pl.col("code").alias("_primary"),
        pl.col("classification").alias("taxonomy_classification"),
        pl.col("specialization").alias("taxonomy_specialization"),
        pl.col("display_name").alias("taxonomy_display_name"),
    )
    primary_group = pl.coalesce(
        [pl.when(pl.col(f"tax_switch_{n}") == "Y").then(pl.col(f"tax_group_{n}")) for n in range(1, TAXONOMY_SLOTS + 1)]
        + [pl.col(f"tax_group_{n}") for n in range(1, TAXONOMY_SLOTS + 1)]
    )
    individual = pl.col("entity_code") == "1"
    person = pl.concat_str(
        [pl.col("last_name").fill_null(""), pl.lit(", "), pl.col("first_name").fill_null(""),
         pl.when(pl.col("middle_name").is_not_null()).then(pl.lit(" ") + pl.col("middle_name")).otherwise(pl.lit(""))]
    )
    frame = candidates.join(tax, on="_primary", how="left").select(
        "npi",
        pl.when(individual).then(pl.lit("individual")).otherwise(pl.lit("organization")).alias("entity_type"),
        pl.when(individual).then(person).otherwise(pl.col("organization_name")).alias("provider_name"),
        "last_name", "first_name", "middle_name", "credential", "organization_name", "sex",
        pl.col("_primary").alias("taxonomy_code"),
        "taxonomy_classification", "taxonomy_specialization", "taxonomy_display_name",
        pl.col("_all_codes").alias("all_taxonomy_codes"),
        primary_group.alias("taxonomy_group"),
        "address_line_1", "address_line_2", "city", "state", "postal_code",
        pl.col("postal_code").str.slice(0, 5).alias("zip5"),
        pl.col("country_code").fill_null("US"),
        "phone",
        _date("enumeration_date").alias("enumeration_date"),
        _date("last_update_date").alias("last_update_date"),
        "is_sole_proprietor", "is_organization_subpart", "parent_organization_lbn",
        pl.lit(source_label).alias("source"),
    )
    return schemas.conform(frame, schemas.PROVIDERS).sort("npi")


def _facilities(wide: pl.DataFrame) -> pl.DataFrame:
    def first_code(codes: Iterable[str]) -> pl.Expr:
        return pl.coalesce([pl.when(pl.col(c).is_in(sorted(codes))).then(pl.col(c)) for c in _CODES])

    hospital, asc = first_code(HOSPITAL_TAXONOMY_CODES), first_code(ASC_TAXONOMY_CODES)
    primary_type = (
        pl.when(pl.col("_primary").is_in(sorted(HOSPITAL_TAXONOMY_CODES))).then(pl.lit("hospital"))
        .when(pl.col("_primary").is_in(sorted(ASC_TAXONOMY_CODES))).then(pl.lit("asc"))
    )
    frame = wide.filter(pl.col("_facility")).select(
        "npi",
        "organization_name",
        pl.coalesce(primary_type, pl.when(hospital.is_not_null()).then(pl.lit("hospital")).otherwise(pl.lit("asc"))).alias("facility_type"),
        pl.coalesce(pl.when(pl.col("_primary").is_in(sorted(HOSPITAL_TAXONOMY_CODES | ASC_TAXONOMY_CODES))).then(pl.col("_primary")), hospital, asc).alias("facility_taxonomy_code"),
        "address_line_1", "city", "state",
        pl.col("postal_code").str.slice(0, 5).alias("zip5"),
    )
    return frame.with_columns(address_key=address_key_expr("address_line_1", "zip5")).sort("npi")


def _secondary_locations(path: Path, npis: pl.Series, source_label: str) -> pl.DataFrame:
    header = _header(path)
    mapped = _map_columns(path, header, _PL_FIELDS)
    _check_tail(path, len(header))
    lf = (
        pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
        .select(pl.col(actual).alias(internal) for internal, actual in mapped.items())
        .with_row_index("_row")
        .with_columns(_clean(c) for c in _PL_FIELDS)
        .filter(pl.col("npi").is_in(npis.implode()))
    )
    try:
        frame = lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise NppesFormatError(f"{path}: malformed CSV ({str(exc).splitlines()[0]})") from exc
    frame = frame.sort("npi", "_row").with_columns(
        location_seq=(pl.col("_row").cum_count().over("npi")).cast(pl.Int32),
        zip5=pl.col("postal_code").str.slice(0, 5),
        source=pl.lit(source_label),
    )
    return schemas.conform(frame, schemas.SECONDARY_LOCATIONS).select(list(schemas.SECONDARY_LOCATIONS)).sort("npi", "location_seq")


def read_nppes(
    npidata: Path,
    *,
    target_codes: Iterable[str],
    taxonomy: pl.DataFrame,
    include_organizations: bool = False,
    pl_pfile: Path | None = None,
    weekly_files: Sequence[Path] = (),
    source_label: str = "nppes",
    extract_dir: Path | None = None,
) -> NppesResult:
    """Read the NPPES monthly file (zip bundle or extracted ``npidata_pfile`` CSV) into target providers.

    ``target_codes`` are NUCC codes (see ``taxonomy.resolve_target_codes``); ``taxonomy``
    is the reference frame from ``taxonomy.load_taxonomy`` (or ``BUILTIN_TAXONOMY``).
    ``pl_pfile`` gives secondary practice locations; when ``npidata`` is a bundle zip and
    ``pl_pfile`` is None, the bundle's own ``pl_pfile`` is used.  ``weekly_files`` (CSV or
    weekly zips) are applied on top in order of their file-name date range.  Zip members
    are extracted (CRC-checked) into ``extract_dir`` (default: ``<zip stem>_extracted``
    beside the zip).  See the module docstring for the rules.
    """
    started = time.perf_counter()
    target_codes = sorted({c.strip().upper() for c in target_codes})
    taxonomy_codes = taxonomy["code"].to_list()
    facility_codes = sorted(HOSPITAL_TAXONOMY_CODES | ASC_TAXONOMY_CODES)
    main_path = _resolve(Path(npidata), "npidata_pfile", extract_dir)
    if pl_pfile is None and zipfile.is_zipfile(npidata):
        pl_path = _resolve(Path(npidata), "pl_pfile", extract_dir, required=False)
    else:
        pl_path = _resolve(Path(pl_pfile), "pl_pfile", extract_dir) if pl_pfile is not None else None
    weekly_paths = sorted(
        (_resolve(Path(w), "npidata_pfile", extract_dir) for w in weekly_files), key=_file_date_key
    )

    narrow_parts, wide_parts = [], []
    for precedence, path in enumerate([main_path, *weekly_paths]):
        narrow, wide = _collect(path, precedence, target_codes, facility_codes, include_organizations)
        narrow_parts.append(narrow)
        wide_parts.append(wide)
    narrow = pl.concat(narrow_parts)
    wide = pl.concat(wide_parts)

    losers = _losers(narrow)
    keys = ["_prec", "_row"]
    winners_narrow = narrow.join(losers, on=keys, how="anti")
    wide = wide.join(losers, on=keys, how="anti")

    candidates = wide.filter(pl.col("_category") == _CANDIDATE).with_columns(
        _all_codes=pl.concat_list(_CODES).list.drop_nulls().list.unique(maintain_order=True).list.join("|"),
    ).with_columns(reason=_reject_reason(taxonomy_codes))
    kept = candidates.filter(pl.col("reason").is_null())
    rejected = candidates.filter(pl.col("reason").is_not_null())
    raw_fields = list(_MAIN_FIELDS)
    rejects = rejected.select(
        pl.lit(source_label).alias("source"),
        "npi",
        "reason",
        _detail_expr().alias("detail"),
        pl.struct(raw_fields).struct.json_encode().alias("raw_record"),
    )
    rejects = schemas.conform(rejects, schemas.REJECTS).sort("reason", "npi", "raw_record", nulls_last=True)

    providers = _providers(kept, taxonomy, source_label)
    facilities = _facilities(wide)
    if pl_path is not None:
        secondary = _secondary_locations(pl_path, providers["npi"], source_label)
    else:
        secondary = schemas.empty(schemas.SECONDARY_LOCATIONS)

    counts = dict(winners_narrow.group_by("_category").len().iter_rows())
    stats: dict = {
        "rows_read": int(narrow.filter(pl.col("_prec") == 0).height),
        "weekly_rows_read": int(narrow.filter(pl.col("_prec") > 0).height),
        "weekly_rows_applied": int(winners_narrow.filter(pl.col("_prec") > 0).height),
        "duplicate_rows": int(losers["_same_file"].sum()),
        **{name: int(counts.get(code, 0)) for code, name in _CATEGORY_NAMES.items()},
        "reactivated": int(winners_narrow["_reactivated"].sum()),
        "targets": providers.height,
        "rejects": {k: v for k, v in sorted(rejected.group_by("reason").len().iter_rows())},
        "seconds": round(time.perf_counter() - started, 3),
    }
    return NppesResult(providers=providers, rejects=rejects, secondary_locations=secondary, facilities=facilities, stats=stats)

