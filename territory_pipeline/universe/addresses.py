"""One normalization of practice addresses, shared by every stage.

The street line is upper-cased, every run of characters other than letters
and digits becomes one space, and common street words are abbreviated
(STREET -> ST, SUITE -> STE, NORTH -> N, ...).  The practice-address key joins
it with the 5-digit ZIP: ``"123 N. Main Street, Suite 4"`` at ``85004-1234``
gives ``"123 N MAIN ST STE 4|85004"``.  The key is null (None) when the street
is blank or the ZIP is not five digits, so blank addresses never match each
other.  Practice setting, practice size, competitor matching and market
events all use this key; the geocode cache adds city and state to it.
"""

from __future__ import annotations

import re

import polars as pl

ABBREVIATIONS: dict[str, str] = {
    "STREET": "ST",
    "AVENUE": "AVE",
    "ROAD": "RD",
    "DRIVE": "DR",
    "BOULEVARD": "BLVD",
    "LANE": "LN",
    "COURT": "CT",
    "PLACE": "PL",
    "PARKWAY": "PKWY",
    "HIGHWAY": "HWY",
    "FREEWAY": "FWY",
    "EXPRESSWAY": "EXPY",
    "CIRCLE": "CIR",
    "TERRACE": "TER",
    "SQUARE": "SQ",
    "TRAIL": "TRL",
    "CENTER": "CTR",
    "SUITE": "STE",
    "BUILDING": "BLDG",
    "FLOOR": "FL",
    "APARTMENT": "APT",
    "ROOM": "RM",
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
    "NORTHEAST": "NE",
    "NORTHWEST": "NW",
    "SOUTHEAST": "SE",
    "SOUTHWEST": "SW",
}


def normalize_street(line: str | None) -> str:
    """The normalized street line of one address ('' when blank)."""
    if not line:
        return ""
    words = re.sub(r"[^A-Z0-9]+", " ", str(line).upper()).split()
    return " ".join(ABBREVIATIONS.get(w, w) for w in words)


def _zip5(value) -> str:
    if isinstance(value, int):  # a JSON number loses its leading zeros
        return f"{value:05d}"
    return "" if value is None else str(value).strip()[:5]


def address_key(line: str | None, zip5) -> str | None:
    """The practice-address key of one address, or None when it cannot be keyed."""
    street, zip_code = normalize_street(line), _zip5(zip5)
    if not street or not re.fullmatch(r"\d{5}", zip_code):
        return None
    return f"{street}|{zip_code}"


def clean_text_expr(expr: pl.Expr) -> pl.Expr:
    """Upper-case, and every run of non-alphanumerics as one space, trimmed."""
    return expr.cast(pl.Utf8).fill_null("").str.to_uppercase().str.replace_all(r"[^A-Z0-9]+", " ").str.strip_chars()


def normalize_street_expr(col: str = "address_line_1") -> pl.Expr:
    """Vectorized ``normalize_street``."""
    # Doubling the single spaces and padding the ends gives every word its own
    # " WORD ", so one literal multi-pattern pass abbreviates whole words only.
    padded = pl.concat_str([pl.lit(" "), clean_text_expr(pl.col(col)).str.replace_all(" ", "  ", literal=True), pl.lit(" ")])
    return (
        padded.str.replace_many([f" {w} " for w in ABBREVIATIONS], [f" {s} " for s in ABBREVIATIONS.values()])
        .str.replace_all(r" +", " ")
        .str.strip_chars()
    )


def address_key_expr(line: str = "address_line_1", zip_col: str = "zip5") -> pl.Expr:
    """Vectorized ``address_key``: null when the street is blank or the ZIP is not 5 digits."""
    street = normalize_street_expr(line)
    zip_code = pl.col(zip_col).cast(pl.Utf8).fill_null("").str.strip_chars().str.slice(0, 5)
    usable = (street.str.len_chars() > 0) & zip_code.str.contains(r"^\d{5}$")
    return pl.when(usable).then(pl.concat_str([street, pl.lit("|"), zip_code])).otherwise(None)
