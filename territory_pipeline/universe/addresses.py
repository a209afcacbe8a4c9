"""One normalization of practice addresses, shared by every stage.

The key is the upper-cased first address line with punctuation removed, runs
of spaces collapsed and common street words abbreviated, joined with the
5-digit ZIP: ``"123 N. Main Street, Suite 4" + "85004"`` gives
``"123 N MAIN ST STE 4|85004"``.
"""

from __future__ import annotations

import re

import polars as pl

ABBREVIATIONS: dict[str, str] = {
    "STREET": "ST",
    "AVENUE": "AVE",
    "BOULEVARD": "BLVD",
    "ROAD": "RD",
    "DRIVE": "DR",
    "LANE": "LN",
    "COURT": "CT",
    "PLACE": "PL",
    "PARKWAY": "PKWY",
    "HIGHWAY": "HWY",
    "SUITE": "STE",
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
}


def normalize_street(line: str | None) -> str:
    if not line:
        return ""
    text = re.sub(r"[^A-Z0-9 ]", " ", line.upper())
    words = [ABBREVIATIONS.get(w, w) for w in text.split()]
    return " ".join(words)


def address_key(line: str | None, zip5: str | None) -> str:
    if isinstance(zip5, int):  # a JSON number loses its leading zeros
        zip5 = f"{zip5:05d}"
    zip_text = "" if zip5 is None else str(zip5).strip()
    return f"{normalize_street(line)}|{zip_text[:5]}"


def normalize_street_expr(col: str = "address_line_1") -> pl.Expr:
    expr = pl.col(col).fill_null("").str.to_uppercase().str.replace_all(r"[^A-Z0-9 ]", " ")
    expr = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    for word, short in ABBREVIATIONS.items():
        expr = expr.str.replace_all(rf"\b{word}\b", short)
    return expr


def address_key_expr(line: str = "address_line_1", zip_col: str = "zip5") -> pl.Expr:
    return pl.concat_str([normalize_street_expr(line), pl.lit("|"), pl.col(zip_col).fill_null("").str.slice(0, 5)])
