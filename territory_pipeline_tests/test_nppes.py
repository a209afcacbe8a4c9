"""NPPES bulk reader: hand-written rows in the real quoting style (every value quoted, MM/DD/YYYY)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline import schemas
from territory_pipeline.universe.nppes import NppesFormatError, read_nppes
from territory_pipeline.universe.nppes_layout import NPIDATA_HEADER, PL_PFILE_HEADER
from territory_pipeline.universe.taxonomy import BUILTIN_TAXONOMY, load_taxonomy
from territory_pipeline.universe.validation import npi_check_digit

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
SPINE = ["207X00000X", "207XS0117X", "207T00000X"]


def npi(body: str) -> str:
    return body + npi_check_digit(body)


def row(number: str, entity: str = "1", taxonomies=(("207X00000X", "Y"),), **fields: str) -> dict[str, str]:
    """One npidata row keyed by header; taxonomies = ((code, switch), ...) filling slots 1..n."""
    values = {name: "" for name in NPIDATA_HEADER}
    values.update(
        {
            "NPI": number,
            "Entity Type Code": entity,
            "Provider Last Name (Legal Name)": "WIEBE" if entity == "1" else "",
            "Provider First Name": "DAVID" if entity == "1" else "",
            "Provider Middle Name": "A" if entity == "1" else "",
            "Provider Credential Text": "M.D." if entity == "1" else "",
            "Provider Organization Name (Legal Business Name)": "" if entity == "1" else "KEARNEY REGIONAL MEDICAL CENTER",
            "Provider First Line Business Mailing Address": "PO BOX 2168",
            "Provider Business Mailing Address City Name": "KEARNEY",
            "Provider Business Mailing Address State Name": "NE",
            "Provider Business Mailing Address Postal Code": "688482168",
            "Provider Business Mailing Address Country Code (If outside U.S.)": "US",
            "Provider First Line Business Practice Location Address": "3500 CENTRAL AVE",
            "Provider Business Practice Location Address City Name": "KEARNEY",
            "Provider Business Practice Location Address State Name": "NE",
            "Provider Business Practice Location Address Postal Code": "688472944",
            "Provider Business Practice Location Address Country Code (If outside U.S.)": "US",
            "Provider Business Practice Location Address Telephone Number": "3088652512",
            "Provider Enumeration Date": "05/23/2005",
            "Last Update Date": "07/08/2007",
            "Provider Sex Code": "M" if entity == "1" else "",
            "Is Sole Proprietor": "N" if entity == "1" else "",
            "Is Organization Subpart": "" if entity == "1" else "N",
        }
    )
    for slot, (code, switch) in enumerate(taxonomies, start=1):
        values[f"Healthcare Provider Taxonomy Code_{slot}"] = code
        values[f"Provider License Number_{slot}"] = f"L{slot}"
        values[f"Provider License Number State Code_{slot}"] = "NE"
        values[f"Healthcare Provider Primary Taxonomy Switch_{slot}"] = switch
    values.update(fields)
    return values


def stub(number: str, deactivated: str = "06/14/2011") -> dict[str, str]:
    values = {name: "" for name in NPIDATA_HEADER}
    values.update({"NPI": number, "NPI Deactivation Date": deactivated})
    return values


def quoted(values) -> str:
    return ",".join('"' + v + '"' for v in values)


def write(path: Path, rows: list[dict[str, str]], header=NPIDATA_HEADER, eol: str = "\r\n") -> Path:
    lines = [quoted(header)] + [quoted(r[h] for h in NPIDATA_HEADER) for r in rows]
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


A = npi("123456789")  # target, Y in slot 1
B = npi("123456790")  # target, Y in slot 3 (non-first)
C = npi("123456791")  # non-target (207R primary, spine code in a secondary slot)
D = npi("123456792")  # deactivation stub
E = npi("123456793")  # deactivated then reactivated: active
F = npi("123456794")  # deactivated, not reactivated
G = npi("123456795")  # organization with a target primary code
H = npi("123456796")  # hospital organization at A's address
BOSTON = npi("123456797")  # ZIP with a leading zero


def base_rows() -> list[dict[str, str]]:
    return [
        row(A, **{"Provider Business Practice Location Address Telephone Number": "3088652512"}),
        row(B, taxonomies=(("207R00000X", "N"), ("207X00000X", "N"), ("207XS0117X", "Y")),
            **{"Healthcare Provider Taxonomy Group_3": "193400000X SINGLE SPECIALTY  GROUP"}),
        row(C, taxonomies=(("207R00000X", "Y"), ("207T00000X", "N"))),
        stub(D),
        row(E, taxonomies=(("207T00000X", "Y"),), **{"NPI Deactivation Date": "01/01/2012", "NPI Reactivation Date": "02/01/2013"}),
        row(F, **{"NPI Deactivation Date": "01/01/2012"}),
        row(G, entity="2"),
        row(H, entity="2", taxonomies=(("282N00000X", "Y"), ("261QA1903X", "N")),
            **{"Provider First Line Business Practice Location Address": "3500 Central Ave."}),
        row(BOSTON, **{"Provider Business Practice Location Address Postal Code": "021155000",
                       "Provider Business Practice Location Address State Name": "MA",
                       "Provider Business Practice Location Address City Name": "BOSTON"}),
    ]


def test_targets_stubs_activity_and_contract(tmp_path: Path) -> None:
    path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    result = read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)
    providers = result.providers
    assert providers.columns[: len(schemas.PROVIDERS)] == list(schemas.PROVIDERS)
    assert providers.schema["npi"] == pl.Utf8 and providers.schema["enumeration_date"] == pl.Date
    assert providers["npi"].to_list() == sorted([A, B, E, BOSTON])
    by_npi = {r["npi"]: r for r in providers.iter_rows(named=True)}
    b = by_npi[B]
    assert b["taxonomy_code"] == "207XS0117X"
    assert b["taxonomy_display_name"] == "Orthopaedic Surgery of the Spine Physician"
    assert b["all_taxonomy_codes"] == "207R00000X|207X00000X|207XS0117X"
    assert b["taxonomy_group"] == "193400000X SINGLE SPECIALTY  GROUP"
    a = by_npi[A]
    assert a["provider_name"] == "WIEBE, DAVID A" and a["entity_type"] == "individual" and a["sex"] == "M"
    assert a["address_line_1"] == "3500 CENTRAL AVE"  # practice location, not the PO box mailing address
    assert a["postal_code"] == "688472944" and a["zip5"] == "68847" and a["phone"] == "3088652512"
    assert str(a["enumeration_date"]) == "2005-05-23" and a["source"] == "nppes"
    assert by_npi[BOSTON]["zip5"] == "02115" and by_npi[BOSTON]["postal_code"] == "021155000"
    stats = result.stats
    assert stats["rows_read"] == 9
    assert stats["stub_rows"] == 1 and stats["inactive"] == 1 and stats["reactivated"] == 1
    assert stats["organizations_excluded"] == 1  # G
    assert stats["non_target"] == 2  # C (spine code only in a secondary slot) and hospital H
    assert stats["targets"] == 4 and stats["rejects"] == {}
    assert result.rejects.is_empty()
    # the hospital organization is reported as a facility with a normalized address key
    facilities = result.facilities
    assert facilities["npi"].to_list() == [H]
    assert facilities.row(0, named=True)["facility_type"] == "hospital"
    assert facilities.row(0, named=True)["address_key"] == "3500 CENTRAL AVE|68847"


def test_include_organizations(tmp_path: Path) -> None:
    path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    result = read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY, include_organizations=True)
    org = result.providers.filter(pl.col("npi") == G).row(0, named=True)
    assert org["entity_type"] == "organization"
    assert org["provider_name"] == "KEARNEY REGIONAL MEDICAL CENTER"
    assert result.stats["organizations_excluded"] == 0


def test_each_reject_reason(tmp_path: Path) -> None:
    bad_luhn = A[:9] + str((int(A[9]) + 1) % 10)
    rows = [
        row(bad_luhn),
        row(npi("123456801"), **{"Provider Business Practice Location Address Postal Code": "6884"}),
        row(npi("123456802"), **{"Provider Business Practice Location Address Postal Code": ""}),
        row(npi("123456803"), **{"Provider Business Practice Location Address Country Code (If outside U.S.)": "AA",
                                  "Provider Business Practice Location Address State Name": "GEORGIA"}),
        row(npi("123456804"), **{"Provider Business Practice Location Address State Name": "GAS"}),
        row(npi("123456805"), taxonomies=(("2086S0129X", "Y"),)),
        row(npi("123456806"), taxonomies=(("207X00000X", "X"), ("207R00000X", "X"))),
        row(npi("123456807"), entity="1.0"),
        row(npi("123456808"), taxonomies=(("207R00000X", "Y"),), **{"Provider Business Practice Location Address Postal Code": "1"}),
    ]
    path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", rows)
    result = read_nppes(path, target_codes=[*SPINE, "2086S0129X"], taxonomy=BUILTIN_TAXONOMY, source_label="nppes")
    reasons = dict(result.rejects.select("npi", "reason").iter_rows())
    assert reasons == {
        bad_luhn: "invalid_npi",
        npi("123456801"): "malformed_zip",
        npi("123456802"): "missing_zip",
        npi("123456803"): "non_us_address",
        npi("123456804"): "non_us_address",
        npi("123456805"): "unknown_taxonomy",  # the built-in fallback does not cover 2086S0129X
        npi("123456806"): "no_primary_taxonomy",
        npi("123456807"): "invalid_entity_type",
    }  # the non-target row with a bad ZIP is not rejected, only counted
    assert result.stats["rejects"] == {"invalid_entity_type": 1, "invalid_npi": 1, "malformed_zip": 1, "missing_zip": 1,
                                       "no_primary_taxonomy": 1, "non_us_address": 2, "unknown_taxonomy": 1}
    assert result.stats["non_target"] == 1 and result.providers.is_empty()
    assert result.rejects.columns == list(schemas.REJECTS)
    assert set(result.rejects["source"]) == {"nppes"}
    raw = json.loads(result.rejects.filter(pl.col("reason") == "malformed_zip")["raw_record"][0])
    assert raw["postal_code"] == "6884" and raw["npi"] == npi("123456801")
    detail = result.rejects.filter(pl.col("reason") == "unknown_taxonomy")["detail"][0]
    assert "2086S0129X" in detail


def test_gender_header_variant_odd_header_case_and_bom(tmp_path: Path) -> None:
    header = [
        "Provider Gender Code" if h == "Provider Sex Code" else (f"  {h.upper()} " if h.startswith("Provider Business Practice") else h)
        for h in NPIDATA_HEADER
    ]
    header[0] = "npi"
    path = write(tmp_path / "npidata_pfile_20050523-20230409.csv", base_rows(), header=header, eol="\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # with a UTF-8 byte-order mark
    result = read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)
    assert result.providers["npi"].to_list() == sorted([A, B, E, BOSTON])
    assert set(result.providers["sex"]) == {"M"}
    assert set(result.providers["city"]) == {"KEARNEY", "BOSTON"}


def test_duplicate_npi_keeps_latest_update(tmp_path: Path) -> None:
    rows = base_rows() + [row(A, **{"Last Update Date": "03/04/2024", "Provider First Line Business Practice Location Address": "1 NEW ST"})]
    rows.append(row(B, taxonomies=(("207R00000X", "Y"),), **{"Last Update Date": "01/02/2025"}))  # B stopped being a target
    path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", rows)
    result = read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)
    assert result.stats["duplicate_rows"] == 2
    assert result.providers.filter(pl.col("npi") == A)["address_line_1"].to_list() == ["1 NEW ST"]
    assert B not in result.providers["npi"].to_list()


def test_weekly_files_applied_in_date_order(tmp_path: Path) -> None:
    monthly = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    new = npi("123456900")
    week1 = write(
        tmp_path / "npidata_pfile_20261110-20261116.csv",
        [row(A, **{"Provider First Line Business Practice Location Address": "10 FIRST WEEK RD", "Last Update Date": "11/12/2026"}),
         row(new, taxonomies=(("207T00000X", "Y"),)), stub(E, "11/13/2026")],
    )
    week2 = write(
        tmp_path / "npidata_pfile_20261117-20261123.csv",
        [row(A, **{"Provider First Line Business Practice Location Address": "20 SECOND WEEK RD", "Last Update Date": "11/18/2026"})],
    )
    result = read_nppes(monthly, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY, weekly_files=[week2, week1])
    providers = result.providers
    assert providers.filter(pl.col("npi") == A)["address_line_1"].to_list() == ["20 SECOND WEEK RD"]
    assert new in providers["npi"].to_list()
    assert E not in providers["npi"].to_list()  # the weekly deactivation stub removes the provider
    assert result.stats["weekly_rows_read"] == 4
    assert result.stats["weekly_rows_applied"] == 3  # A (week 2), new, E's stub
    assert result.stats["duplicate_rows"] == 0


def write_pl(path: Path, rows: list[list[str]]) -> Path:
    lines = [quoted(PL_PFILE_HEADER)] + [quoted(r) for r in rows]
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def test_secondary_locations_from_pl_pfile(tmp_path: Path) -> None:
    monthly = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    pl_file = write_pl(
        tmp_path / "pl_pfile_20050523-20261109.csv",
        [
            [A, "200 WEST ST", "SUITE 4", "HASTINGS", "NE", "689011234", "US", "4024611000", "", ""],
            [C, "1 ELSEWHERE", "", "OMAHA", "NE", "68102", "US", "", "", ""],
            [A, "9 EAST RD", "", "GRAND ISLAND", "NE", "68801", "US", "", "", ""],
        ],
    )
    result = read_nppes(monthly, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY, pl_pfile=pl_file)
    sec = result.secondary_locations
    assert sec.columns == list(schemas.SECONDARY_LOCATIONS)
    assert sec.select("npi", "location_seq", "address_line_1", "address_line_2", "zip5").rows() == [
        (A, 1, "200 WEST ST", "SUITE 4", "68901"),
        (A, 2, "9 EAST RD", None, "68801"),
    ]


def test_zip_bundle_matches_csv(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    pl_path = write_pl(tmp_path / "pl_pfile_20050523-20261109.csv", [[A, "200 WEST ST", "", "HASTINGS", "NE", "68901", "US", "", "", ""]])
    bundle = tmp_path / "NPPES_Data_Dissemination_November_2026_V2.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("npidata_pfile_20050523-20261109_FileHeader.csv", quoted(NPIDATA_HEADER) + "\r\n")
        archive.write(csv_path, "NPIDATA_PFILE_20050523-20261109.csv")
        archive.write(pl_path, "pl_pfile_20050523-20261109.csv")
        archive.writestr("pl_pfile_20050523-20261109_fileheader.csv", quoted(PL_PFILE_HEADER) + "\r\n")
    from_zip = read_nppes(bundle, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY, extract_dir=tmp_path / "x")
    from_csv = read_nppes(csv_path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)
    assert from_zip.providers.equals(from_csv.providers)
    assert from_zip.secondary_locations["npi"].to_list() == [A]


def test_zip_with_bad_crc_raises(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "src.csv", base_rows())
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as archive:
        archive.write(csv_path, "npidata_pfile_20050523-20261109.csv")
    data = bytearray(bundle.read_bytes())
    position = data.find(b"3500 CENTRAL AVE")
    data[position] = ord("4")  # corrupt a stored byte: the CRC no longer matches
    bundle.write_bytes(bytes(data))
    with pytest.raises(NppesFormatError, match="bundle.zip.*CRC"):
        read_nppes(bundle, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY, extract_dir=tmp_path / "x")


@pytest.mark.parametrize("damage", ["truncated", "short_row", "long_row", "open_quote", "no_npi"])
def test_corrupt_files_raise(tmp_path: Path, damage: str) -> None:
    path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    text = path.read_bytes().decode()
    lines = text.split("\r\n")
    if damage == "truncated":
        path.write_bytes(text[: len(text) - 700].encode())
    elif damage == "short_row":
        lines[2] = lines[2].rsplit(",", 5)[0]
        path.write_bytes("\r\n".join(lines).encode())
    elif damage == "long_row":
        lines[-2] = lines[-2] + ',"EXTRA"'  # caught by the tail check (projected scans skip extra fields)
        path.write_bytes("\r\n".join(lines).encode())
    elif damage == "open_quote":
        lines[3] = lines[3].replace('"KEARNEY"', '"KEARNEY', 1)
        path.write_bytes("\r\n".join(lines).encode())
    else:
        lines[0] = lines[0].replace('"NPI"', '"NPI_NUMBER"', 1)
        path.write_bytes("\r\n".join(lines).encode())
    with pytest.raises(NppesFormatError, match="npidata_pfile_20050523-20261109.csv"):
        read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)


def test_deterministic(tmp_path: Path) -> None:
    path = write(tmp_path / "npidata_pfile_20050523-20261109.csv", base_rows())
    first = read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)
    second = read_nppes(path, target_codes=SPINE, taxonomy=BUILTIN_TAXONOMY)
    assert first.providers.equals(second.providers) and first.facilities.equals(second.facilities)


@pytest.mark.skipif(not (REFERENCE / "real-samples").exists(), reason="shared reference files absent")
def test_real_pandas_reexport_sample() -> None:
    """Real rows re-exported by pandas: unquoted, '1.0' entity codes, ZIPs as floats.

    The reader does not crash; '1.0'/'2.0' entity codes are not the published '1'/'2',
    so would-be targets are rejected as invalid_entity_type instead of guessed.
    """
    taxonomy = load_taxonomy(REFERENCE / "nucc_taxonomy_251.csv")
    path = REFERENCE / "real-samples" / "nppes_npidata_first1000_pandas_reexport.csv"
    result = read_nppes(path, target_codes=["207X00000X", "207RC0000X"], taxonomy=taxonomy)
    stats = result.stats
    assert stats["rows_read"] == 1000
    assert stats["stub_rows"] == 79  # documented: 79 of the first 1,000 rows are stubs
    assert result.providers.is_empty()
    assert set(result.rejects["reason"]) == {"invalid_entity_type"}
    assert {"1679576722", "1588667638"} <= set(result.rejects["npi"])  # WIEBE (207X00000X), PILCHER (207RC0000X)
    assert stats["rows_read"] == (stats["stub_rows"] + stats["inactive"] + stats["non_target"]
                                  + stats["organizations_excluded"] + result.rejects.height + stats["targets"])
