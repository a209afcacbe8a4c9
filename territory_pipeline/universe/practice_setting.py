"""Practice setting of each provider: 'hospital', 'asc' or 'office'.

Precedence (first that applies wins), recorded in ``practice_setting_source``:

1. ``nppes_facility_at_address``: an NPPES organization with a hospital or ASC
   taxonomy (``nppes.read_nppes(...).facilities``) has the same address key as the
   provider's practice location.  Address key = ``address_line_1`` uppercased with
   every run of punctuation/space collapsed to one space, plus ``|`` and ZIP5.  When
   both a hospital and an ASC share the address, 'hospital' wins.
2. ``cms_facility_affiliation``: the CMS Facility Affiliations file lists a
   ``Hospital`` (or long-term care hospital) affiliation for the NPI.
3. ``cms_doctors_hospital_affiliation``: an older Doctors and Clinicians file lists a
   ``hosp_afl_N`` hospital CCN for the NPI.
4. ``default_office``: nothing above applies.

The facility at the address is the most direct evidence of where the provider
practises, so it takes precedence over a CMS affiliation (an affiliated surgeon
may still practise from an office or an ASC).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from territory_pipeline.universe.addresses import address_key_expr

SETTINGS: tuple[str, ...] = ("hospital", "asc", "office")
HOSPITAL_AFFILIATION_TYPES: frozenset[str] = frozenset({"hospital", "long-term care hospital"})


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _read_aliased(path: Path, aliases: dict[str, tuple[str, ...]], required: tuple[str, ...]) -> pl.DataFrame:
    """Read a CMS CSV as strings (only the aliased columns), renaming the first header matching each alias list."""
    raw = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
    header = raw.collect_schema().names()
    by_key = {_norm(c.lstrip("\ufeff")): c for c in header}
    renames: dict[str, str] = {}
    for target, names in aliases.items():
        for name in names:
            if _norm(name) in by_key:
                renames[by_key[_norm(name)]] = target
                break
    missing = [t for t in required if t not in renames.values()]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (header: {header[:12]}...)")
    stripped = {dst: pl.col(src).str.strip_chars() for src, dst in renames.items()}
    return raw.select(pl.when(value.str.len_bytes() > 0).then(value).alias(dst) for dst, value in stripped.items()).collect()


def load_facility_affiliations(path: Path) -> pl.DataFrame:
    """CMS Facility Affiliations CSV (dataset 27ea-46a8) collapsed to one row per NPI.

    Returns ``(npi, facility_type, facility_types, facility_ccns, affiliation_count,
    hospital_affiliated)``: ``facility_type`` is 'Hospital' when any affiliation is a
    hospital, else the first type alphabetically; ``facility_types`` and
    ``facility_ccns`` are sorted, '|'-joined distinct values.  Headers match
    case-insensitively, CSV or API spelling.
    """
    frame = _read_aliased(
        path,
        {
            "npi": ("NPI",),
            "facility_type": ("facility_type", "Facility Type"),
            "ccn": ("Facility Affiliations Certification Number", "facility_affiliations_certification_number"),
        },
        required=("npi", "facility_type"),
    ).filter(pl.col("npi").is_not_null())
    if "ccn" not in frame.columns:
        frame = frame.with_columns(ccn=pl.lit(None, pl.Utf8))
    is_hospital = pl.col("facility_type").str.to_lowercase().is_in(sorted(HOSPITAL_AFFILIATION_TYPES))
    return (
        frame.group_by("npi")
        .agg(
            hospital_affiliated=is_hospital.any(),
            facility_types=pl.col("facility_type").drop_nulls().unique().sort().str.join("|"),
            facility_ccns=pl.col("ccn").drop_nulls().unique().sort().str.join("|"),
            affiliation_count=pl.len(),
            _first_type=pl.col("facility_type").drop_nulls().sort().first(),
        )
        .with_columns(
            facility_type=pl.when(pl.col("hospital_affiliated")).then(pl.lit("Hospital")).otherwise(pl.col("_first_type"))
        )
        .select("npi", "facility_type", "facility_types", "facility_ccns", "affiliation_count", "hospital_affiliated")
        .sort("npi")
    )


def load_doctors_clinicians(path: Path) -> pl.DataFrame:
    """CMS Doctors and Clinicians national file (mj5m-pzi6) collapsed to one row per NPI.

    The file has one row per clinician x enrollment x group x address.  Per NPI the
    group with the most members (``num_org_mem``; ties -> smallest ``org_pac_id``) is
    kept.  Returns ``(npi, org_pac_id, num_org_mem, facility_name, pri_spec,
    org_count, hospital_ccns)``; ``org_count`` is the number of distinct groups and
    ``hospital_ccns`` the '|'-joined ``hosp_afl_1..5`` of older vintages (null
    otherwise).  Current and pre-2022 headers (``org_nm``) are accepted.
    """
    aliases = {
        "npi": ("NPI",),
        "org_pac_id": ("org_pac_id",),
        "num_org_mem": ("num_org_mem",),
        "facility_name": ("Facility Name", "org_nm", "facility_name"),
        "pri_spec": ("pri_spec",),
        **{f"hosp_afl_{n}": (f"hosp_afl_{n}",) for n in range(1, 6)},
    }
    frame = _read_aliased(path, aliases, required=("npi", "org_pac_id", "num_org_mem")).filter(pl.col("npi").is_not_null())
    hosp = [c for c in frame.columns if c.startswith("hosp_afl_")]
    ccns = pl.concat_list(hosp).list.drop_nulls() if hosp else pl.lit([], pl.List(pl.Utf8))
    frame = frame.with_columns(
        _ccns=ccns,
        num_org_mem=pl.col("num_org_mem").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False),
    )
    for optional in ("facility_name", "pri_spec"):
        if optional not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Utf8).alias(optional))
    ordered = frame.sort(["npi", "num_org_mem", "org_pac_id"], descending=[False, True, False], nulls_last=True)
    return (
        ordered.group_by("npi", maintain_order=True)
        .agg(
            pl.col("org_pac_id").first(),
            pl.col("num_org_mem").first(),
            pl.col("facility_name").first(),
            pl.col("pri_spec").first(),
            org_count=pl.col("org_pac_id").drop_nulls().n_unique(),
            hospital_ccns=pl.col("_ccns").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique().sort().str.join("|"),
        )
        .with_columns(pl.col("hospital_ccns").replace("", None))
        .sort("npi")
    )


def derive_practice_setting(
    providers: pl.DataFrame,
    facilities: pl.DataFrame,
    affiliations: pl.DataFrame | None = None,
    doctors: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Fill ``practice_setting`` and ``practice_setting_source`` (see the module docstring).

    ``facilities`` needs ``address_key`` and ``facility_type`` ('hospital'|'asc');
    ``affiliations`` is ``load_facility_affiliations`` output; ``doctors`` is
    ``load_doctors_clinicians`` output, whose practice-size columns (``org_pac_id``,
    ``num_org_mem``, ``group_name``) are added to the providers.  Row order and count
    are preserved.
    """
    at_address = (
        facilities.filter(pl.col("address_key").is_not_null())
        .group_by("address_key")
        .agg(_facility_setting=pl.when((pl.col("facility_type") == "hospital").any()).then(pl.lit("hospital")).otherwise(pl.lit("asc")))
    )
    frame = providers.drop("practice_setting", "practice_setting_source", strict=False).with_columns(
        _key=address_key_expr("address_line_1", "zip5")
    )
    frame = frame.join(at_address, left_on="_key", right_on="address_key", how="left", maintain_order="left")
    hospital_npis: pl.Series = pl.Series("npi", [], pl.Utf8)
    if affiliations is not None:
        hospital_npis = affiliations.filter(pl.col("hospital_affiliated"))["npi"]
    doctor_hospital_npis: pl.Series = pl.Series("npi", [], pl.Utf8)
    if doctors is not None:
        doctor_hospital_npis = doctors.filter(pl.col("hospital_ccns").is_not_null())["npi"]
        frame = frame.drop("org_pac_id", "num_org_mem", "group_name", strict=False).join(
            doctors.select("npi", "org_pac_id", "num_org_mem", pl.col("facility_name").alias("group_name")),
            on="npi",
            how="left",
            maintain_order="left",
        )
    affiliated = pl.col("npi").is_in(hospital_npis.implode())
    doctor_affiliated = pl.col("npi").is_in(doctor_hospital_npis.implode())
    setting = (
        pl.when(pl.col("_facility_setting").is_not_null()).then(pl.col("_facility_setting"))
        .when(affiliated | doctor_affiliated).then(pl.lit("hospital"))
        .otherwise(pl.lit("office"))
    )
    source = (
        pl.when(pl.col("_facility_setting").is_not_null()).then(pl.lit("nppes_facility_at_address"))
        .when(affiliated).then(pl.lit("cms_facility_affiliation"))
        .when(doctor_affiliated).then(pl.lit("cms_doctors_hospital_affiliation"))
        .otherwise(pl.lit("default_office"))
    )
    out = frame.with_columns(practice_setting=setting, practice_setting_source=source).drop("_key", "_facility_setting")
    ordered = [c for c in providers.columns if c in out.columns] + [c for c in out.columns if c not in providers.columns]
    return out.select(ordered)


def filter_by_setting(providers: pl.DataFrame, settings: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split providers into (kept, excluded) by ``practice_setting``.

    ``excluded`` holds the other rows plus ``reason`` ('practice_setting_not_selected')
    and ``detail``.  Raises ``ValueError`` for an unknown setting name or when
    ``practice_setting`` has not been derived.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown practice setting(s) {unknown}; choose from {list(SETTINGS)}")
    if "practice_setting" not in providers.columns or providers["practice_setting"].null_count():
        raise ValueError("practice_setting is missing: run derive_practice_setting first")
    selected = pl.col("practice_setting").is_in(list(settings))
    excluded = providers.filter(~selected).with_columns(
        reason=pl.lit("practice_setting_not_selected"),
        detail=pl.format("practice setting {} ({}) not in {}", "practice_setting", "practice_setting_source", pl.lit(", ".join(settings))),
    )
    return providers.filter(selected), excluded
