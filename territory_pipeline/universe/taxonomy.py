"""The NUCC Health Care Provider Taxonomy code set: loading and target-code resolution.

``load_taxonomy`` reads the official NUCC CSV (CRLF, quoted fields with embedded
commas and ``<br/>`` HTML in Notes) from a local path or from its official URL.

``BUILTIN_TAXONOMY`` is a small fallback used when no NUCC file is configured, so
the pipeline can run offline.  It covers ONLY the codes listed in
``BUILTIN_TAXONOMY_CODES`` (the default spine targets, the other orthopaedic
specializations, the pain / PM&R codes, the ASC / hospital facility codes and the
two group codes), copied verbatim from NUCC v25.1 (Code, Grouping, Classification,
Specialization, Display Name, Section).  Definitions and notes are left null: they
are NUCC text not needed by the pipeline.  Any other code is unknown to the
fallback: ``resolve_target_codes`` raises ``ValueError`` for it, and the NPPES
reader rejects rows whose primary code it cannot resolve (``unknown_taxonomy``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

NUCC_TAXONOMY_URL = "https://www.nucc.org/images/stories/CSV/nucc_taxonomy_251.csv"

TAXONOMY_COLUMNS: dict[str, str] = {
    "Code": "code",
    "Grouping": "grouping",
    "Classification": "classification",
    "Specialization": "specialization",
    "Definition": "definition",
    "Notes": "notes",
    "Display Name": "display_name",
    "Section": "section",
}

_PHYSICIANS = "Allopathic & Osteopathic Physicians"
_BUILTIN_ROWS: tuple[tuple[str, str, str, str | None, str, str], ...] = (
    # code, grouping, classification, specialization, display name, section  (NUCC v25.1)
    ("207X00000X", _PHYSICIANS, "Orthopaedic Surgery", None, "Orthopaedic Surgery Physician", "Individual"),
    ("207XS0114X", _PHYSICIANS, "Orthopaedic Surgery", "Adult Reconstructive Orthopaedic Surgery",
     "Adult Reconstructive Orthopaedic Surgery Physician", "Individual"),
    ("207XX0004X", _PHYSICIANS, "Orthopaedic Surgery", "Foot and Ankle Surgery",
     "Orthopaedic Foot and Ankle Surgery Physician", "Individual"),
    ("207XS0106X", _PHYSICIANS, "Orthopaedic Surgery", "Hand Surgery", "Orthopaedic Hand Surgery Physician", "Individual"),
    ("207XS0117X", _PHYSICIANS, "Orthopaedic Surgery", "Orthopaedic Surgery of the Spine",
     "Orthopaedic Surgery of the Spine Physician", "Individual"),
    ("207XX0801X", _PHYSICIANS, "Orthopaedic Surgery", "Orthopaedic Trauma", "Orthopaedic Trauma Physician", "Individual"),
    ("207XP3100X", _PHYSICIANS, "Orthopaedic Surgery", "Pediatric Orthopaedic Surgery",
     "Pediatric Orthopaedic Surgery Physician", "Individual"),
    ("207XX0005X", _PHYSICIANS, "Orthopaedic Surgery", "Sports Medicine",
     "Sports Medicine (Orthopaedic Surgery) Physician", "Individual"),
    ("207T00000X", _PHYSICIANS, "Neurological Surgery", None, "Neurological Surgery Physician", "Individual"),
    ("208VP0014X", _PHYSICIANS, "Pain Medicine", "Interventional Pain Medicine",
     "Interventional Pain Medicine Physician", "Individual"),
    ("208VP0000X", _PHYSICIANS, "Pain Medicine", "Pain Medicine", "Pain Medicine Physician", "Individual"),
    ("207LP2900X", _PHYSICIANS, "Anesthesiology", "Pain Medicine", "Pain Medicine (Anesthesiology) Physician", "Individual"),
    ("2081P2900X", _PHYSICIANS, "Physical Medicine & Rehabilitation", "Pain Medicine",
     "Pain Medicine (Physical Medicine & Rehabilitation) Physician", "Individual"),
    ("208100000X", _PHYSICIANS, "Physical Medicine & Rehabilitation", None,
     "Physical Medicine & Rehabilitation Physician", "Individual"),
    ("2084P2900X", _PHYSICIANS, "Psychiatry & Neurology", "Pain Medicine",
     "Pain Medicine (Psychiatry & Neurology) Physician", "Individual"),
    ("261QA1903X", "Ambulatory Health Care Facilities", "Clinic/Center", "Ambulatory Surgical",
     "Ambulatory Surgical Clinic/Center", "Non-Individual"),
    ("282N00000X", "Hospitals", "General Acute Care Hospital", None, "General Acute Care Hospital", "Non-Individual"),
    ("193200000X", "Group", "Multi-Specialty", None, "Multi-Specialty Group", "Individual"),
    ("193400000X", "Group", "Single Specialty", None, "Single Specialty Group", "Individual"),
)

BUILTIN_TAXONOMY: pl.DataFrame = pl.DataFrame(
    {
        "code": [r[0] for r in _BUILTIN_ROWS],
        "grouping": [r[1] for r in _BUILTIN_ROWS],
        "classification": [r[2] for r in _BUILTIN_ROWS],
        "specialization": [r[3] for r in _BUILTIN_ROWS],
        "definition": [None] * len(_BUILTIN_ROWS),
        "notes": [None] * len(_BUILTIN_ROWS),
        "display_name": [r[4] for r in _BUILTIN_ROWS],
        "section": [r[5] for r in _BUILTIN_ROWS],
    },
    schema={name: pl.Utf8 for name in TAXONOMY_COLUMNS.values()},
).sort("code")
BUILTIN_TAXONOMY_CODES: frozenset[str] = frozenset(BUILTIN_TAXONOMY["code"])


class TaxonomyFormatError(ValueError):
    """The taxonomy file is not a NUCC taxonomy CSV."""


def load_taxonomy(path_or_url: str | Path | None, cache_dir: Path | None = None) -> pl.DataFrame:
    """Load the NUCC taxonomy CSV into ``(code, grouping, classification, specialization,
    definition, notes, display_name, section)``, all strings, sorted by code.

    ``path_or_url`` is a local path, an ``http(s)://`` URL (downloaded once into
    ``cache_dir`` through :func:`territory_pipeline.universe.downloads.download`), or
    ``None`` for :data:`BUILTIN_TAXONOMY`.  Raises ``TaxonomyFormatError`` when a
    column is missing or a code is duplicated.
    """
    if path_or_url is None:
        return BUILTIN_TAXONOMY
    text = str(path_or_url)
    if text.startswith(("http://", "https://")):
        from territory_pipeline.universe.downloads import download

        if cache_dir is None:
            raise ValueError("cache_dir is required to download the NUCC taxonomy from a URL")
        path = download(text, Path(cache_dir) / text.rstrip("/").rsplit("/", 1)[-1])
    else:
        path = Path(path_or_url)
    raw = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    raw = raw.rename({c: c.strip().lstrip("\ufeff") for c in raw.columns})
    missing = [c for c in TAXONOMY_COLUMNS if c not in raw.columns]
    if missing:
        raise TaxonomyFormatError(f"{path}: not a NUCC taxonomy CSV, missing columns {missing}")
    frame = raw.select(
        pl.col(src).str.strip_chars().replace("", None).alias(dst) for src, dst in TAXONOMY_COLUMNS.items()
    ).filter(pl.col("code").is_not_null())
    duplicated = frame.filter(pl.col("code").is_duplicated())["code"].unique().sort().to_list()
    if duplicated:
        raise TaxonomyFormatError(f"{path}: duplicated taxonomy codes {duplicated}")
    return frame.sort("code")


def resolve_target_codes(
    taxonomy: pl.DataFrame,
    codes: Iterable[str] = (),
    classifications: Iterable[str] = (),
    specializations: Iterable[str] = (),
) -> list[str]:
    """The sorted, distinct taxonomy codes named by codes, classifications and specializations.

    A classification (e.g. ``"Orthopaedic Surgery"``) selects its base code and every
    specialization under it; a specialization name selects the codes with that
    specialization.  Names match case-insensitively.  Unknown codes or names raise
    ``ValueError`` listing all of them.
    """
    known = set(taxonomy["code"].to_list())
    selected: set[str] = set()
    unknown: list[str] = []
    for code in codes:
        code = code.strip().upper()
        if code in known:
            selected.add(code)
        else:
            unknown.append(f"code {code!r}")
    for column, names in (("classification", classifications), ("specialization", specializations)):
        lowered = taxonomy.select("code", pl.col(column).str.to_lowercase().alias("key"))
        for name in names:
            hits = lowered.filter(pl.col("key") == name.strip().lower())["code"].to_list()
            if hits:
                selected.update(hits)
            else:
                unknown.append(f"{column} {name!r}")
    if unknown:
        hint = " (the built-in fallback covers only a few codes; configure the NUCC file)" if known <= BUILTIN_TAXONOMY_CODES else ""
        raise ValueError(f"unknown taxonomy {', '.join(unknown)}{hint}")
    return sorted(selected)
