"""Validation of identifiers and addresses shared by every provider source."""

from __future__ import annotations

import re

import polars as pl

US_STATES: frozenset[str] = frozenset(
    """AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC
    ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR VI GU AS MP""".split()
)
# Military and outlying codes that cannot be placed on a territory map.
NON_MAPPABLE_STATES: frozenset[str] = frozenset({"AA", "AE", "AP", "UM", "FM", "MH", "PW"})

_NPI_RE = re.compile(r"^[12]\d{9}$")
_ZIP_RE = re.compile(r"^\d{5}(\d{4})?$")


def npi_check_digit_valid(npi: str | None) -> bool:
    """Luhn check of a 10-digit NPI with the card-issuer prefix 80840.

    Per the CMS standard the check digit is computed over ``80840`` followed by
    the first nine digits, which is equivalent to adding 24 to the doubled-digit
    sum of the nine digits.
    """
    if npi is None or not _NPI_RE.match(npi):
        return False
    digits = [int(c) for c in npi[:9]]
    total = 24
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


def npi_check_digit(first_nine: str) -> str:
    """The check digit that makes ``first_nine + digit`` a valid NPI."""
    for d in "0123456789":
        if npi_check_digit_valid(first_nine + d):
            return d
    raise ValueError(f"no check digit for {first_nine!r}")  # unreachable for 9 digits


def valid_npi_expr(col: str = "npi") -> pl.Expr:
    """Vectorized NPI validity (format and Luhn with prefix 80840)."""
    c = pl.col(col)
    fmt = c.str.contains(r"^[12]\d{9}$").fill_null(False)
    total = pl.lit(24)
    for pos in range(9):
        d = c.str.slice(pos, 1).cast(pl.Int32, strict=False)
        # positions counted from the right of the 9-digit body: pos 8 is doubled
        if (8 - pos) % 2 == 0:
            d = d * 2
            d = pl.when(d > 9).then(d - 9).otherwise(d)
        total = total + d
    check = c.str.slice(9, 1).cast(pl.Int32, strict=False)
    return fmt & (((10 - total % 10) % 10) == check).fill_null(False)


def zip_is_valid(value: str | None) -> bool:
    return value is not None and bool(_ZIP_RE.match(value))


def valid_zip_expr(col: str = "postal_code") -> pl.Expr:
    return pl.col(col).str.contains(r"^\d{5}(\d{4})?$").fill_null(False)
