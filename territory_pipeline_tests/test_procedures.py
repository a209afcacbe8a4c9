"""Procedure fit from the Medicare by-provider-and-service file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from territory_pipeline import schemas
from territory_pipeline.universe.procedures import apply_procedure_fit, load_procedure_volumes

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
REAL_SAMPLE = REFERENCE / "real-samples" / "mup_phy_provider_service_2023_sample.csv"

HEADER_2023 = (
    "Rndrng_NPI,Rndrng_Prvdr_Last_Org_Name,Rndrng_Prvdr_First_Name,Rndrng_Prvdr_MI,Rndrng_Prvdr_Crdntls,"
    "Rndrng_Prvdr_Ent_Cd,Rndrng_Prvdr_St1,Rndrng_Prvdr_St2,Rndrng_Prvdr_City,Rndrng_Prvdr_State_Abrvtn,"
    "Rndrng_Prvdr_State_FIPS,Rndrng_Prvdr_Zip5,Rndrng_Prvdr_RUCA,Rndrng_Prvdr_RUCA_Desc,Rndrng_Prvdr_Cntry,"
    "Rndrng_Prvdr_Type,Rndrng_Prvdr_Mdcr_Prtcptg_Ind,HCPCS_Cd,HCPCS_Desc,HCPCS_Drug_Ind,Place_Of_Srvc,Tot_Benes,"
    "Tot_Srvcs,Tot_Bene_Day_Srvcs,Avg_Sbmtd_Chrg,Avg_Mdcr_Alowd_Amt,Avg_Mdcr_Pymt_Amt,Avg_Mdcr_Stdzd_Amt"
)


def line(npi: str, hcpcs: str, place: str, benes: str, services: str, gender: str | None = None) -> str:
    fields = [npi, "Spine", "Ana", "", "M.D.", "I", "1 Main St", "", "Denver", "CO", "08", "80218", "1",
              '"Metropolitan area core: primary flow within an urbanized area of 50,000 and greater"', "US",
              "Orthopedic Surgery", "Y", hcpcs, '"Injection procedure, sacroiliac joint"', "N", place, benes, services,
              benes, "500.5", "120.25", "95.1", "96.0"]
    if gender is not None:
        fields.insert(5, gender)
    return ",".join(fields)


def write(tmp_path: Path, lines: list[str], header: str = HEADER_2023) -> Path:
    path = tmp_path / "MUP_PHY_R25_P05_V20_D23_Prov_Svc.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_hand_written_file_sums_codes_and_places(tmp_path: Path) -> None:
    path = write(tmp_path, [
        line("1000000001", "62323", "O", "40", "52.5"),
        line("1000000001", "62323", "F", "12", "13"),
        line("1000000001", "27096", "F", "11", "11"),
        line("1000000001", "99213", "O", "300", "800"),
        line("1000000002", "27096", "O", "11", "12"),
    ])
    volumes = load_procedure_volumes(path, ["62323", "27096"], min_volume=20)
    assert volumes.rows() == [
        ("1000000001", 76.5, 63.0, "27096|62323", True),
        ("1000000002", 12.0, 11.0, "27096", False),
    ]


def test_older_release_with_gender_column(tmp_path: Path) -> None:
    header = HEADER_2023.replace("Rndrng_Prvdr_Crdntls,", "Rndrng_Prvdr_Crdntls,Rndrng_Prvdr_Gndr,").lower()
    path = write(tmp_path, [line("1000000001", "62323", "O", "40", "41", gender="F")], header=header)
    assert load_procedure_volumes(path, ["62323"])["procedure_services"].to_list() == [41.0]


def test_bad_inputs_raise(tmp_path: Path) -> None:
    bad_number = write(tmp_path, [line("1000000001", "62323", "O", "40", "*")])
    with pytest.raises(ValueError, match="non-numeric.*1000000001"):
        load_procedure_volumes(bad_number, ["62323"])
    not_mup = tmp_path / "other.csv"
    not_mup.write_text("NPI,code\n1,2\n")
    with pytest.raises(ValueError, match="Rndrng_NPI"):
        load_procedure_volumes(not_mup, ["62323"])
    with pytest.raises(ValueError, match="no HCPCS"):
        load_procedure_volumes(bad_number, [])


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="shared reference files absent")
def test_real_sample() -> None:
    volumes = load_procedure_volumes(REAL_SAMPLE, ["27096", "62323"], min_volume=50)
    # NPI 1003000142 billed 27096 (23 services, 22 beneficiaries) and 62323 (52 services, 43 beneficiaries)
    assert volumes.rows() == [("1003000142", 75.0, 65.0, "27096|62323", True)]


def test_apply_procedure_fit(tmp_path: Path) -> None:
    providers = schemas.conform(
        pl.DataFrame({"npi": ["1000000003", "1000000001", "1000000002"], "source": ["nppes"] * 3}), schemas.PROVIDERS
    )
    volumes = load_procedure_volumes(
        write(tmp_path, [line("1000000001", "62323", "O", "40", "52"), line("1000000002", "62323", "O", "11", "12")]),
        ["62323"],
    )
    kept, excluded = apply_procedure_fit(providers, volumes, min_volume=20)
    assert kept.columns == list(schemas.PROVIDERS)
    assert kept.select("npi", "procedure_services", "procedure_beneficiaries").rows() == [("1000000001", 52.0, 40.0)]
    assert excluded.select("npi", "procedure_services", "reason").rows() == [
        ("1000000003", 0.0, "below_procedure_volume"),
        ("1000000002", 12.0, "below_procedure_volume"),
    ]
    assert "none reported or suppressed" in excluded["detail"][0]
    assert excluded["detail"][1] == "12.0 Medicare services for 62323 < minimum 20"
