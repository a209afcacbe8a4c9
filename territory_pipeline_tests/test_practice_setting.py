"""Practice setting from NPPES facilities at the same address and CMS affiliation files."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline import schemas
from territory_pipeline.universe.practice_setting import (
    address_key_expr,
    derive_practice_setting,
    filter_by_setting,
    load_doctors_clinicians,
    load_facility_affiliations,
)

DAC_HEADER = [
    "NPI", "Ind_PAC_ID", "Ind_enrl_ID", "Provider Last Name", "Provider First Name", "Provider Middle Name", "suff",
    "gndr", "Cred", "Med_sch", "Grd_yr", "pri_spec", "sec_spec_1", "sec_spec_2", "sec_spec_3", "sec_spec_4",
    "sec_spec_all", "Telehlth", "Facility Name", "org_pac_id", "num_org_mem", "adr_ln_1", "adr_ln_2", "ln_2_sprs",
    "City/Town", "State", "ZIP Code", "Telephone Number", "ind_assgn", "grp_assgn", "adrs_id",
]
AFFILIATION_HEADER = [
    "NPI", "Ind_PAC_ID", "Provider Last Name", "Provider First Name", "Provider Middle Name", "suff", "facility_type",
    "Facility Affiliations Certification Number", "Facility Type Certification Number",
]


def providers() -> pl.DataFrame:
    rows = {
        "npi": ["1000000001", "1000000002", "1000000003", "1000000004", "1000000005"],
        "address_line_1": ["3500 Central Ave.", "12 SURGERY CTR DR", "1 OFFICE PARK", "9 MAIN ST", "77 MEDICAL PKWY"],
        "zip5": ["68847", "30308", "80218", "60611", "75246"],
        "source": ["nppes"] * 5,
    }
    return schemas.conform(pl.DataFrame(rows), schemas.PROVIDERS)


def facilities() -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "npi": ["1900000001", "1900000002", "1900000003", "1900000004"],
            "facility_type": ["hospital", "asc", "asc", "hospital"],
            "address_line_1": ["3500 CENTRAL AVE", "12 Surgery Ctr. Dr", "77 MEDICAL PKWY", "77  medical pkwy"],
            "zip5": ["68847", "30308", "75246", "75246"],
        }
    )
    return frame.with_columns(address_key=address_key_expr("address_line_1", "zip5"))


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(h, "") for h in header])
    return path


def test_address_key_normalization() -> None:
    frame = pl.DataFrame({"a": ["3500 Central Ave.", " 3500  CENTRAL-AVE "], "z": ["688472944", "68847"]})
    assert frame.select(address_key_expr("a", "z").alias("k"))["k"].to_list() == ["3500 CENTRAL AVE|68847"] * 2


def test_facility_at_address_then_default_office() -> None:
    result = derive_practice_setting(providers(), facilities())
    got = dict(zip(result["npi"], zip(result["practice_setting"], result["practice_setting_source"], strict=True), strict=True))
    assert got["1000000001"] == ("hospital", "nppes_facility_at_address")
    assert got["1000000002"] == ("asc", "nppes_facility_at_address")
    assert got["1000000003"] == ("office", "default_office")
    assert got["1000000005"] == ("hospital", "nppes_facility_at_address")  # hospital beats ASC at one address
    assert result.columns[: len(schemas.PROVIDERS)] == list(schemas.PROVIDERS)
    assert result["npi"].to_list() == providers()["npi"].to_list()


def test_affiliation_files_and_precedence(tmp_path: Path) -> None:
    aff_path = write_csv(
        tmp_path / "Facility_Affiliation.csv",
        AFFILIATION_HEADER,
        [
            {"NPI": "1000000003", "facility_type": "Hospital", "Facility Affiliations Certification Number": "060001"},
            {"NPI": "1000000003", "facility_type": "Nursing home", "Facility Affiliations Certification Number": "065123"},
            {"NPI": "1000000002", "facility_type": "Hospital", "Facility Affiliations Certification Number": "110010"},
            {"NPI": "1000000004", "facility_type": "Home health agency", "Facility Affiliations Certification Number": "147001"},
        ],
    )
    affiliations = load_facility_affiliations(aff_path)
    assert affiliations.rows() == [
        ("1000000002", "Hospital", "Hospital", "110010", 1, True),
        ("1000000003", "Hospital", "Hospital|Nursing home", "060001|065123", 2, True),
        ("1000000004", "Home health agency", "Home health agency", "147001", 1, False),
    ]
    result = derive_practice_setting(providers(), facilities(), affiliations=affiliations)
    got = dict(zip(result["npi"], zip(result["practice_setting"], result["practice_setting_source"], strict=True), strict=True))
    assert got["1000000003"] == ("hospital", "cms_facility_affiliation")
    assert got["1000000002"] == ("asc", "nppes_facility_at_address")  # the ASC at the address wins over the affiliation
    assert got["1000000004"] == ("office", "default_office")  # a home health agency is not a hospital


def test_doctors_clinicians_collapse_current_and_old_headers(tmp_path: Path) -> None:
    current = write_csv(
        tmp_path / "DAC_NationalDownloadableFile.csv",
        DAC_HEADER,
        [
            {"NPI": "1000000001", "org_pac_id": "2345", "num_org_mem": "12", "Facility Name": "SMALL ORTHO PC", "pri_spec": "ORTHOPEDIC SURGERY"},
            {"NPI": "1000000001", "org_pac_id": "1234", "num_org_mem": "240", "Facility Name": "BIG HEALTH GROUP", "pri_spec": "ORTHOPEDIC SURGERY"},
            {"NPI": "1000000001", "org_pac_id": "1234", "num_org_mem": "240", "Facility Name": "BIG HEALTH GROUP", "adrs_id": "X2"},
            {"NPI": "1000000004", "org_pac_id": "", "num_org_mem": "", "Facility Name": "", "pri_spec": "NEUROSURGERY"},
        ],
    )
    doctors = load_doctors_clinicians(current)
    assert doctors.select("npi", "org_pac_id", "num_org_mem", "facility_name", "org_count").rows() == [
        ("1000000001", "1234", 240, "BIG HEALTH GROUP", 2),
        ("1000000004", None, None, None, 0),
    ]
    old_header = ["npi", "lst_nm", "frst_nm", "org_nm", "org_pac_id", "num_org_mem", "hosp_afl_1", "hosp_afl_2", "pri_spec"]
    old = write_csv(
        tmp_path / "old.csv",
        old_header,
        [{"npi": "1000000003", "org_nm": "OLD GROUP", "org_pac_id": "99", "num_org_mem": "3", "hosp_afl_1": "060001", "hosp_afl_2": "060002"}],
    )
    old_doctors = load_doctors_clinicians(old)
    assert old_doctors.row(0, named=True)["hospital_ccns"] == "060001|060002"
    assert old_doctors.row(0, named=True)["facility_name"] == "OLD GROUP"
    result = derive_practice_setting(providers(), facilities(), doctors=old_doctors)
    row = result.filter(pl.col("npi") == "1000000003").row(0, named=True)
    assert (row["practice_setting"], row["practice_setting_source"]) == ("hospital", "cms_doctors_hospital_affiliation")
    assert row["group_name"] == "OLD GROUP" and row["num_org_mem"] == 3


def test_missing_columns_raise(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", ["NPI", "something"], [{"NPI": "1"}])
    with pytest.raises(ValueError, match="facility_type"):
        load_facility_affiliations(path)
    with pytest.raises(ValueError, match="org_pac_id"):
        load_doctors_clinicians(path)


def test_filter_by_setting_reports_excluded() -> None:
    derived = derive_practice_setting(providers(), facilities())
    kept, excluded = filter_by_setting(derived, ["hospital", "asc"])
    assert sorted(kept["npi"]) == ["1000000001", "1000000002", "1000000005"]
    assert sorted(excluded["npi"]) == ["1000000003", "1000000004"]
    assert set(excluded["reason"]) == {"practice_setting_not_selected"}
    assert excluded["detail"][0] == "practice setting office (default_office) not in hospital, asc"
    with pytest.raises(ValueError, match="unknown practice setting"):
        filter_by_setting(derived, ["clinic"])
    with pytest.raises(ValueError, match="derive_practice_setting"):
        filter_by_setting(providers(), ["office"])
