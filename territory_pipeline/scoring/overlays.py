"""Existing-customer and competitive-presence overlays: load and validate.

Both loaders read every CSV value as text, validate each row and return
``(matched, report)``.  Nothing vanishes: a row that cannot be used is in the
report (``schemas.REJECTS`` columns: source, npi, reason, detail, raw_record)
with a machine-readable reason, and a missing required column raises a
``ValueError`` naming it.

Customers file (TERRITORY_CUSTOMERS_FILE), keyed by NPI:
    npi, account_status, revenue (or units), product (optional)
    - ``revenue`` is read after removing spaces, a leading ``$`` and thousands
      commas; a blank value is 0 (a prospect has no revenue yet).  When the file
      has ``units`` and no ``revenue``, units are used: set
      ``customer_share.potential_revenue_per_point`` in units then.
    - Revenue counts toward the provider's share whatever the status (a lost
      account should carry 0); the status decides who counts as a customer for
      penetration (``customer_share.customer_statuses``).
    - Rows of one NPI are aggregated: revenue summed, products joined with
      ``|``, and the status kept by priority active > prospect > lost >
      churned > any other (alphabetical).  Each aggregated NPI gets an
      informational report row ``duplicate_npi_aggregated``.
    - Reasons: missing_npi, invalid_npi, non_numeric_revenue, negative_revenue,
      missing_account_status, unknown_npi (NPI not in the providers frame).

Competitors file, keyed per row by NPI or by practice address:
    npi and/or address_line_1 + zip5 (or postal_code), competitor (optional)
    - A row with an NPI matches that provider; a row without one matches every
      provider whose normalized practice address (address_line_1 upper-cased,
      punctuation removed, spaces collapsed) and zip5 are equal.
    - Reasons: missing_key, invalid_npi, malformed_zip, unknown_npi,
      unknown_address.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from territory_pipeline.universe.addresses import address_key_expr

from territory_pipeline.schemas import REJECTS
from territory_pipeline.universe.validation import valid_npi_expr

CUSTOMER_COLUMNS: dict[str, pl.DataType] = {
    "npi": pl.Utf8,
    "account_status": pl.Utf8,
    "revenue": pl.Float64,
    "product": pl.Utf8,
    "source_rows": pl.Int64,
}
COMPETITOR_COLUMNS: dict[str, pl.DataType] = {
    "npi": pl.Utf8,
    "address_line_1": pl.Utf8,
    "zip5": pl.Utf8,
    "competitor": pl.Utf8,
    "match_basis": pl.Utf8,  # 'npi' | 'address'
}
STATUS_PRIORITY: tuple[str, ...] = ("active", "prospect", "lost", "churned")


def normalized_address_expr(address: str = "address_line_1", zip5: str = "zip5") -> pl.Expr:
    """Practice-address key (see ``universe/addresses.py``), null when either part is blank."""
    return address_key_expr(address, zip5)


def read_csv_as_text(path: str | Path, what: str) -> pl.DataFrame:
    """Read a CSV with every value as text and lower-cased, stripped headers."""
    file_path = Path(path)
    if not file_path.is_file():
        raise FileNotFoundError(f"{what} file not found: {file_path}")
    try:
        frame = pl.read_csv(file_path, infer_schema=False)
    except pl.exceptions.NoDataError as exc:
        raise ValueError(f"{what} file {file_path} is empty (no header row)") from exc
    return frame.rename({c: c.strip().lower() for c in frame.columns})


def load_customers(path: str | Path, providers: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Load and validate the existing-customer CSV (see the module docstring).

    When ``providers`` is given, NPIs not in it are reported as ``unknown_npi``.
    Returns ``(matched, report)``: ``matched`` has one row per NPI with
    :data:`CUSTOMER_COLUMNS`, sorted by NPI; ``report`` has ``schemas.REJECTS``
    columns.
    """
    return validate_customers(read_csv_as_text(path, "customers"), providers)


def validate_customers(raw: pl.DataFrame, providers: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate customer records already in a frame (same rules as :func:`load_customers`)."""
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    value_column = "revenue" if "revenue" in raw.columns else ("units" if "units" in raw.columns else None)
    for required in ("npi", "account_status"):
        if required not in raw.columns:
            raise ValueError(f"customers: missing required column '{required}' (columns: {', '.join(raw.columns)})")
    if value_column is None:
        raise ValueError(
            f"customers: missing required column 'revenue' (or 'units') (columns: {', '.join(raw.columns)})"
        )
    rows = _with_raw_record(raw).with_columns(
        pl.col("npi").cast(pl.Utf8).str.strip_chars().alias("_npi"),
        pl.col("account_status").cast(pl.Utf8).str.strip_chars().str.to_lowercase().alias("_status"),
        pl.col(value_column).cast(pl.Utf8).str.strip_chars().alias("_value_text"),
        (
            pl.col("product").cast(pl.Utf8).str.strip_chars() if "product" in raw.columns else pl.lit(None, pl.Utf8)
        ).alias("_product"),
        (pl.col("source_rows").cast(pl.Int64) if "source_rows" in raw.columns else pl.lit(1, pl.Int64)).alias(
            "_source_rows"
        ),
    )
    cleaned = pl.col("_value_text").str.replace(r"^\$", "").str.replace_all(",", "").str.strip_chars()
    rows = rows.with_columns(
        pl.when(pl.col("_value_text").is_null() | (pl.col("_value_text") == ""))
        .then(pl.lit(0.0))
        .otherwise(cleaned.cast(pl.Float64, strict=False))
        .alias("_value")
    )
    known = _known_npis(providers)
    blank_npi = pl.col("_npi").is_null() | (pl.col("_npi") == "")
    non_numeric = pl.col("_value").is_null() | pl.col("_value").is_nan() | pl.col("_value").is_infinite()
    reason = (
        pl.when(blank_npi)
        .then(pl.lit("missing_npi"))
        .when(~valid_npi_expr("_npi"))
        .then(pl.lit("invalid_npi"))
        .when(non_numeric)
        .then(pl.lit("non_numeric_revenue"))
        .when(pl.col("_value") < 0)
        .then(pl.lit("negative_revenue"))
        .when(pl.col("_status").is_null() | (pl.col("_status") == ""))
        .then(pl.lit("missing_account_status"))
    )
    if known is not None:
        reason = reason.when(~pl.col("_npi").is_in(known.implode())).then(pl.lit("unknown_npi"))
    rows = rows.with_columns(reason.otherwise(None).alias("_reason"))
    detail = (
        pl.when(pl.col("_reason") == "missing_npi")
        .then(pl.lit("the npi column is blank"))
        .when(pl.col("_reason") == "invalid_npi")
        .then(pl.format("'{}' is not a valid 10-digit NPI (format or check digit)", pl.col("_npi")))
        .when(pl.col("_reason") == "non_numeric_revenue")
        .then(pl.format("{} '{}' is not a number", pl.lit(value_column), pl.col("_value_text")))
        .when(pl.col("_reason") == "negative_revenue")
        .then(pl.format("{} {} is negative", pl.lit(value_column), pl.col("_value_text")))
        .when(pl.col("_reason") == "missing_account_status")
        .then(pl.lit("the account_status column is blank"))
        .otherwise(pl.format("NPI {} is not in the providers frame", pl.col("_npi")))
    )
    problems = rows.filter(pl.col("_reason").is_not_null()).select(
        pl.lit("customers").alias("source"),
        pl.col("_npi").alias("npi"),
        pl.col("_reason").alias("reason"),
        detail.alias("detail"),
        pl.col("_raw_record").alias("raw_record"),
    )
    good = rows.filter(pl.col("_reason").is_null())
    priority = {status: rank for rank, status in enumerate(STATUS_PRIORITY)}
    good = good.with_columns(
        pl.col("_status").replace_strict(priority, default=len(STATUS_PRIORITY), return_dtype=pl.Int32).alias("_rank")
    )
    matched = (
        good.sort(["_npi", "_rank", "_status", "_row"])
        .group_by("_npi", maintain_order=True)
        .agg(
            pl.col("_status").first().alias("account_status"),
            pl.col("_value").sum().alias("revenue"),
            pl.col("_product")
            .filter(pl.col("_product").is_not_null() & (pl.col("_product") != ""))
            .unique()
            .sort()
            .str.join("|")
            .alias("product"),
            pl.col("_source_rows").sum().alias("source_rows"),
            pl.len().alias("_rows"),
            pl.col("_raw_record").str.join(",").alias("_records"),
        )
        .rename({"_npi": "npi"})
    )
    duplicates = matched.filter(pl.col("_rows") > 1).select(
        pl.lit("customers").alias("source"),
        pl.col("npi"),
        pl.lit("duplicate_npi_aggregated").alias("reason"),
        pl.format(
            "{} rows aggregated: {} summed to {}, status '{}' kept",
            pl.col("_rows"),
            pl.lit(value_column),
            pl.col("revenue"),
            pl.col("account_status"),
        ).alias("detail"),
        pl.format("[{}]", pl.col("_records")).alias("raw_record"),
    )
    matched = matched.with_columns(
        pl.when(pl.col("product") == "").then(None).otherwise(pl.col("product")).alias("product")
    ).select([pl.col(c).cast(t) for c, t in CUSTOMER_COLUMNS.items()])
    return matched.sort("npi"), _sorted_report(pl.concat([problems, duplicates]))


def load_competitors(path: str | Path, providers: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Load and validate the competitive-presence CSV (see the module docstring).

    When ``providers`` is given, rows matching no provider (by NPI or address)
    are reported as ``unknown_npi`` / ``unknown_address``.  Returns
    ``(matched, report)``: ``matched`` has one row per usable input row with
    :data:`COMPETITOR_COLUMNS`; ``report`` has ``schemas.REJECTS`` columns.
    """
    return validate_competitors(read_csv_as_text(path, "competitors"), providers)


def validate_competitors(raw: pl.DataFrame, providers: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate competitor records already in a frame (same rules as :func:`load_competitors`)."""
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    zip_column = "zip5" if "zip5" in raw.columns else ("postal_code" if "postal_code" in raw.columns else None)
    has_address = "address_line_1" in raw.columns and zip_column is not None
    if "npi" not in raw.columns and not has_address:
        raise ValueError(
            "competitors: missing required column 'npi' or columns 'address_line_1' and 'zip5' (or 'postal_code') "
            f"(columns: {', '.join(raw.columns)})"
        )

    def text(name: str | None) -> pl.Expr:
        if name is None or name not in raw.columns:
            return pl.lit(None, pl.Utf8)
        return pl.col(name).cast(pl.Utf8).str.strip_chars()

    rows = _with_raw_record(raw).with_columns(
        text("npi").alias("_npi"),
        text("address_line_1").alias("_address"),
        text(zip_column).alias("_zip_text"),
        text("competitor").alias("_competitor"),
    )
    rows = rows.with_columns(
        pl.when(pl.col("_npi") == "").then(None).otherwise(pl.col("_npi")).alias("_npi"),
        pl.col("_zip_text").str.replace_all("-", "").alias("_zip_digits"),
    ).with_columns(
        pl.when(pl.col("_zip_digits").str.contains(r"^\d{5}(\d{4})?$"))
        .then(pl.col("_zip_digits").str.slice(0, 5))
        .otherwise(None)
        .alias("_zip5")
    )
    rows = rows.with_columns(normalized_address_expr("_address", "_zip5").alias("_address_key"))
    has_npi = pl.col("_npi").is_not_null()
    address_given = (pl.col("_address").fill_null("") != "") & (pl.col("_zip_text").fill_null("") != "")
    reason = (
        pl.when(has_npi & ~valid_npi_expr("_npi"))
        .then(pl.lit("invalid_npi"))
        .when(~has_npi & ~address_given)
        .then(pl.lit("missing_key"))
        .when(~has_npi & pl.col("_zip5").is_null())
        .then(pl.lit("malformed_zip"))
        .when(~has_npi & pl.col("_address_key").is_null())
        .then(pl.lit("missing_key"))
    )
    if providers is not None:
        known_npis = _known_npis(providers)
        known_keys = providers.select(normalized_address_expr().alias("k")).drop_nulls()["k"].unique()
        reason = (
            reason.when(has_npi & ~pl.col("_npi").is_in(known_npis.implode()))
            .then(pl.lit("unknown_npi"))
            .when(~has_npi & ~pl.col("_address_key").is_in(known_keys.implode()))
            .then(pl.lit("unknown_address"))
        )
    rows = rows.with_columns(reason.otherwise(None).alias("_reason"))
    detail = (
        pl.when(pl.col("_reason") == "invalid_npi")
        .then(pl.format("'{}' is not a valid 10-digit NPI (format or check digit)", pl.col("_npi")))
        .when(pl.col("_reason") == "missing_key")
        .then(pl.lit("the row has neither an npi nor an address_line_1 with a zip"))
        .when(pl.col("_reason") == "malformed_zip")
        .then(pl.format("zip '{}' is not 5 or 9 digits", pl.col("_zip_text")))
        .when(pl.col("_reason") == "unknown_npi")
        .then(pl.format("NPI {} is not in the providers frame", pl.col("_npi")))
        .otherwise(pl.format("no provider practices at '{}'", pl.col("_address_key")))
    )
    problems = rows.filter(pl.col("_reason").is_not_null()).select(
        pl.lit("competitors").alias("source"),
        pl.col("_npi").alias("npi"),
        pl.col("_reason").alias("reason"),
        detail.alias("detail"),
        pl.col("_raw_record").alias("raw_record"),
    )
    matched = (
        rows.filter(pl.col("_reason").is_null())
        .sort("_row")
        .select(
            pl.col("_npi").alias("npi"),
            pl.col("_address").alias("address_line_1"),
            pl.col("_zip5").alias("zip5"),
            pl.col("_competitor").alias("competitor"),
            pl.when(has_npi).then(pl.lit("npi")).otherwise(pl.lit("address")).alias("match_basis"),
        )
    )
    return matched.select([pl.col(c).cast(t) for c, t in COMPETITOR_COLUMNS.items()]), _sorted_report(problems)


def _with_raw_record(raw: pl.DataFrame) -> pl.DataFrame:
    """Add ``_row`` (0-based data row) and ``_raw_record`` (the row as JSON)."""
    columns = raw.columns
    return raw.with_row_index("_row").with_columns(
        pl.struct([pl.col(c).cast(pl.Utf8) for c in columns]).struct.json_encode().alias("_raw_record")
    )


def _known_npis(providers: pl.DataFrame | None) -> pl.Series | None:
    if providers is None:
        return None
    if "npi" not in providers.columns:
        raise ValueError("providers: missing required column 'npi'")
    return providers["npi"].cast(pl.Utf8).drop_nulls().unique()


def _sorted_report(report: pl.DataFrame) -> pl.DataFrame:
    report = (
        report.select([pl.col(c).cast(t) for c, t in REJECTS.items()])
        if report.height
        else pl.DataFrame(schema=REJECTS)
    )
    return report.sort(["source", "reason", "npi", "raw_record"], nulls_last=True)
