"""Procedure fit from Medicare Physician & Other Practitioners by Provider and Service.

The CMS CSV (2023 release: 28 columns; older releases add ``Rndrng_Prvdr_Gndr``)
has one row per rendering NPI x HCPCS code x place of service.  Values are read as
strings; ``Tot_Srvcs`` may be fractional.  Rows with fewer than 11 beneficiaries
are suppressed by CMS, so an NPI missing from the file may still perform the
procedure at low volume.

``procedure_beneficiaries`` is the sum of ``Tot_Benes`` over the matched rows: a
beneficiary seen for two codes or two places of service is counted twice, so it
is an upper bound on distinct beneficiaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import polars as pl

_COLUMNS = {"npi": "Rndrng_NPI", "hcpcs": "HCPCS_Cd", "benes": "Tot_Benes", "services": "Tot_Srvcs"}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_procedure_volumes(path: Path, hcpcs_codes: Iterable[str], min_volume: float = 0.0) -> pl.DataFrame:
    """Per-NPI Medicare volume for ``hcpcs_codes`` from the by-provider-and-service CSV.

    Returns ``(npi, procedure_services, procedure_beneficiaries, hcpcs_codes,
    meets_min_volume)`` sorted by npi, one row per NPI with at least one matching
    row; ``hcpcs_codes`` is the '|'-joined sorted codes matched and
    ``meets_min_volume`` is ``procedure_services >= min_volume``.  Headers match
    case-insensitively.  Raises ``ValueError`` for a missing column or a
    non-numeric ``Tot_Srvcs`` / ``Tot_Benes`` value in a matched row.
    """
    codes = sorted({c.strip().upper() for c in hcpcs_codes})
    if not codes:
        raise ValueError("no HCPCS codes given")
    header = pl.scan_csv(path, infer_schema=False, n_rows=0).collect_schema().names()
    by_key = {_norm(h.lstrip("\ufeff")): h for h in header}
    missing = [col for col in _COLUMNS.values() if _norm(col) not in by_key]
    if missing:
        raise ValueError(f"{path}: not a Medicare by-provider-and-service file, missing column(s) {missing}")
    rows = (
        pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
        .select(pl.col(by_key[_norm(src)]).str.strip_chars().alias(dst) for dst, src in _COLUMNS.items())
        .filter(pl.col("hcpcs").str.to_uppercase().is_in(codes))
        .collect()
    )
    numbers = rows.select(
        "npi",
        "hcpcs",
        pl.col("services").cast(pl.Float64, strict=False).alias("services_f"),
        pl.col("benes").cast(pl.Float64, strict=False).alias("benes_f"),
        "services",
        "benes",
    )
    bad = numbers.filter(pl.col("services_f").is_null() | pl.col("benes_f").is_null())
    if bad.height:
        first = bad.row(0, named=True)
        raise ValueError(
            f"{path}: {bad.height} matched row(s) with non-numeric Tot_Srvcs/Tot_Benes, e.g. NPI {first['npi']} "
            f"{first['hcpcs']}: Tot_Srvcs={first['services']!r} Tot_Benes={first['benes']!r}"
        )
    return (
        numbers.group_by("npi")
        .agg(
            procedure_services=pl.col("services_f").sum(),
            procedure_beneficiaries=pl.col("benes_f").sum(),
            hcpcs_codes=pl.col("hcpcs").str.to_uppercase().unique().sort().str.join("|"),
        )
        .with_columns(meets_min_volume=pl.col("procedure_services") >= min_volume)
        .sort("npi")
    )


def apply_procedure_fit(
    providers: pl.DataFrame, volumes: pl.DataFrame, min_volume: float
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fill ``procedure_services`` / ``procedure_beneficiaries`` and split on ``min_volume``.

    Providers absent from ``volumes`` get 0.0 (no unsuppressed Medicare rows for the
    codes).  Returns ``(kept, excluded)``; ``excluded`` holds providers with
    ``procedure_services < min_volume`` plus ``reason`` ('below_procedure_volume')
    and ``detail``.  Row order is preserved.
    """
    filled = providers.drop("procedure_services", "procedure_beneficiaries", strict=False).join(
        volumes.select("npi", "procedure_services", "procedure_beneficiaries", pl.col("hcpcs_codes").alias("_codes")),
        on="npi",
        how="left",
        maintain_order="left",
    )
    filled = filled.with_columns(
        pl.col("procedure_services").fill_null(0.0), pl.col("procedure_beneficiaries").fill_null(0.0)
    )
    ordered = [c for c in providers.columns if c in filled.columns] + [
        c for c in ("procedure_services", "procedure_beneficiaries") if c not in providers.columns
    ]
    below = pl.col("procedure_services") < min_volume
    excluded = filled.filter(below).with_columns(
        reason=pl.lit("below_procedure_volume"),
        detail=pl.format(
            "{} Medicare services for {} < minimum {}",
            "procedure_services",
            pl.col("_codes").fill_null("the target codes (none reported or suppressed)"),
            pl.lit(str(min_volume)),
        ),
    )
    return filled.filter(~below).select(ordered), excluded.select(ordered + ["reason", "detail"])
