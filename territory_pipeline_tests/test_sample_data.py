"""Tests of the embedded NPPES-format sample and rep roster (territory_pipeline.universe.sample_data)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import zipcodes
from scipy.stats import spearmanr

from territory_pipeline.universe.nppes_layout import (
    NPIDATA_HEADER,
    PL_PFILE_HEADER,
    TAXONOMY_SLOTS,
    license_state_column,
    primary_switch_column,
    taxonomy_code_column,
    taxonomy_group_column,
)
from territory_pipeline.universe.sample_data import (
    DEFAULT_SEED,
    DEFAULT_TARGET_TAXONOMY_CODES,
    GENERATOR_VERSION,
    MANIFEST_FILENAME,
    NPIDATA_FILENAME,
    PL_PFILE_FILENAME,
    REPS_FILENAME,
    STATES_50_DC,
    SampleFiles,
    generate_sample,
)
from territory_pipeline.universe.validation import NON_MAPPABLE_STATES, npi_check_digit_valid

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
PRACTICE = "Provider Business Practice Location Address"
PRACTICE_LINE1 = "Provider First Line Business Practice Location Address"
MAILING_LINE1 = "Provider First Line Business Mailing Address"
COUNTRY = f"{PRACTICE} Country Code (If outside U.S.)"
DATE_COLUMNS = ("Provider Enumeration Date", "Last Update Date", "NPI Deactivation Date", "NPI Reactivation Date",
                "Certification Date")
PHONE_COLUMNS = tuple(c for c in NPIDATA_HEADER if "Telephone Number" in c or "Fax Number" in c)
# Census 2020 apportionment/resident population (thousands), an independent yardstick for the spread.
CENSUS_2020_THOUSANDS = {
    "AL": 5024, "AK": 733, "AZ": 7152, "AR": 3012, "CA": 39538, "CO": 5774, "CT": 3606, "DE": 990, "DC": 690,
    "FL": 21538, "GA": 10712, "HI": 1455, "ID": 1839, "IL": 12813, "IN": 6786, "IA": 3190, "KS": 2938,
    "KY": 4506, "LA": 4658, "ME": 1362, "MD": 6177, "MA": 7030, "MI": 10077, "MN": 5706, "MS": 2961,
    "MO": 6155, "MT": 1084, "NE": 1962, "NV": 3105, "NH": 1378, "NJ": 9289, "NM": 2118, "NY": 20201,
    "NC": 10439, "ND": 779, "OH": 11799, "OK": 3959, "OR": 4237, "PA": 13003, "RI": 1097, "SC": 5118,
    "SD": 887, "TN": 6911, "TX": 29146, "UT": 3272, "VT": 643, "VA": 8631, "WA": 7705, "WV": 1794,
    "WI": 5894, "WY": 577,
}
ZIP_INFO = {z["zip_code"]: z for z in zipcodes.list_all()}


def _col(name: str) -> int:
    return NPIDATA_HEADER.index(name)


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _miles(a: dict, b: dict) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (float(a["lat"]), float(a["long"]), float(b["lat"]), float(b["long"])))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 3958.8 * math.asin(math.sqrt(h))


def _primary(row: list[str]) -> tuple[int, str] | None:
    """(slot, code) of the 'Y' switch, or None."""
    hits = [(n, row[_col(taxonomy_code_column(n))]) for n in range(1, TAXONOMY_SLOTS + 1)
            if row[_col(primary_switch_column(n))] == "Y"]
    assert len(hits) <= 1, f"NPI {row[0]} has several primary switches"
    return hits[0] if hits else None


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleFiles:
    return generate_sample(tmp_path_factory.mktemp("default_sample"))


@pytest.fixture(scope="module")
def rows(sample: SampleFiles) -> list[list[str]]:
    table = _read(sample.npidata_path)
    assert tuple(table[0]) == NPIDATA_HEADER
    return table[1:]


@pytest.fixture(scope="module")
def bad_npis(sample: SampleFiles) -> set[str]:
    return {npi for npis in sample.manifest["bad_npis"].values() for npi in npis}


@pytest.fixture(scope="module")
def good_rows(rows: list[list[str]], bad_npis: set[str]) -> list[list[str]]:
    """Active rows (not stubs) without a deliberate defect."""
    return [r for r in rows if r[_col("Entity Type Code")] and r[0] not in bad_npis]


@pytest.fixture(scope="module")
def targets(good_rows: list[list[str]]) -> list[list[str]]:
    return [r for r in good_rows if r[1] == "1" and _primary(r)[1] in DEFAULT_TARGET_TAXONOMY_CODES]


def test_defaults_and_file_names(sample: SampleFiles) -> None:
    assert DEFAULT_TARGET_TAXONOMY_CODES == ("207XS0117X", "207T00000X", "207X00000X")
    assert sample.npidata_path.name == "npidata_pfile_20050523-20260608.csv" == NPIDATA_FILENAME
    assert sample.pl_pfile_path.name == "pl_pfile_20050523-20260608.csv" == PL_PFILE_FILENAME
    assert sample.reps_path.name == "sample_reps.csv" == REPS_FILENAME
    assert sample.manifest_path.name == MANIFEST_FILENAME
    on_disk = json.loads(sample.manifest_path.read_text(encoding="utf-8"))
    assert on_disk == sample.manifest
    assert on_disk["seed"] == DEFAULT_SEED and on_disk["target_providers"] == 3000
    assert on_disk["generator_version"] == GENERATOR_VERSION
    assert not list(sample.npidata_path.parent.glob("*.tmp"))


def test_header_matches_layout_and_reference(sample: SampleFiles) -> None:
    with sample.npidata_path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert len(header) == 330 and tuple(header) == NPIDATA_HEADER
    reference = REFERENCE / "nppes_npidata_header.csv"
    if reference.is_file():
        with reference.open(newline="", encoding="utf-8-sig") as f:
            assert header == next(csv.reader(f))


@pytest.mark.parametrize("which,width", [("npidata_path", 330), ("pl_pfile_path", 10)])
def test_every_value_is_double_quoted(sample: SampleFiles, which: str, width: int) -> None:
    raw = getattr(sample, which).read_bytes().decode("utf-8")
    assert "\r" not in raw and raw.endswith("\n")
    lines = raw.split("\n")[:-1]
    assert len(lines) > 10
    for line in lines:
        assert line.startswith('"') and line.endswith('"'), line[:80]
        fields = next(csv.reader([line]))
        assert len(fields) == width
        assert line == ",".join('"' + v.replace('"', '""') + '"' for v in fields)
    assert '""' in lines[1], "empty values are written as a quoted empty string"


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    names = (NPIDATA_FILENAME, PL_PFILE_FILENAME, REPS_FILENAME, MANIFEST_FILENAME)
    a = generate_sample(tmp_path / "a", seed=7, target_providers=300)
    b = generate_sample(tmp_path / "b", seed=7, target_providers=300)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.manifest == b.manifest
    c = generate_sample(tmp_path / "c", seed=8, target_providers=300)
    assert c.npidata_path.read_bytes() != a.npidata_path.read_bytes()
    assert c.pl_pfile_path.read_bytes() != a.pl_pfile_path.read_bytes()
    assert c.manifest["row_counts"]["target_individual"] == 300


def test_reuses_matching_sample_and_regenerates_otherwise(tmp_path: Path) -> None:
    first = generate_sample(tmp_path, seed=3, target_providers=200)
    stamp = first.npidata_path.stat().st_mtime_ns
    original = first.npidata_path.read_bytes()
    again = generate_sample(tmp_path, seed=3, target_providers=200)
    assert again.npidata_path.stat().st_mtime_ns == stamp, "a matching sample is not rewritten"
    assert again.manifest == first.manifest

    first.npidata_path.write_bytes(original[:-200])  # a truncated file fails its checksum
    repaired = generate_sample(tmp_path, seed=3, target_providers=200)
    assert repaired.npidata_path.read_bytes() == original

    bigger = generate_sample(tmp_path, seed=3, target_providers=250)
    assert bigger.manifest["target_providers"] == 250
    assert json.loads(bigger.manifest_path.read_text())["row_counts"]["target_individual"] == 250
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("kwargs", [{"target_providers": 5}, {"target_providers": 100.0}, {"seed": -1}])
def test_invalid_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="target_providers|seed"):
        generate_sample(tmp_path, **kwargs)


def test_manifest_counts_match_file(sample: SampleFiles, rows: list[list[str]], targets: list[list[str]]) -> None:
    counts = sample.manifest["row_counts"]
    assert counts["total"] == len(rows)
    assert counts["target_individual"] == len(targets) == 3000
    stubs = [r for r in rows if not r[1]]
    assert counts["stub"] == sample.manifest["stub_npis_count"] == len(stubs)
    orgs = Counter(r[_col(taxonomy_code_column(1))] for r in rows if r[1] == "2")
    assert orgs["282N00000X"] == counts["hospital"] > 0
    assert orgs["261QA1903X"] == counts["asc"] > 0
    assert counts["bad"] == len(sample.manifest["bad_rows"])
    assert sum(v for k, v in counts.items() if k != "total") == len(rows)
    assert 0.3 <= counts["non_target_individual"] / counts["target_individual"] <= 0.5
    by_code = Counter(_primary(r)[1] for r in targets)
    assert dict(by_code) == sample.manifest["target_by_taxonomy"]
    assert set(by_code) == set(DEFAULT_TARGET_TAXONOMY_CODES)


def test_stub_rows_hold_only_npi_and_deactivation_date(sample: SampleFiles, rows: list[list[str]]) -> None:
    stubs = [r for r in rows if not r[1]]
    assert 0.05 <= len(stubs) / len(rows) <= 0.08
    allowed = {_col("NPI"), _col("NPI Deactivation Date")}
    for r in stubs:
        assert r[0] and re.fullmatch(r"\d\d/\d\d/\d{4}", r[_col("NPI Deactivation Date")])
        assert all(v == "" for i, v in enumerate(r) if i not in allowed), r[0]


def test_reactivated_npis_are_active(sample: SampleFiles, rows: list[list[str]]) -> None:
    by_npi = {r[0]: r for r in rows}
    reactivated = sample.manifest["reactivated_npis"]
    assert len(reactivated) >= 20
    for npi in reactivated:
        r = by_npi[npi]
        assert r[1] in ("1", "2")
        deact = r[_col("NPI Deactivation Date")]
        react = r[_col("NPI Reactivation Date")]
        key = lambda d: (d[6:], d[:2], d[3:5])  # noqa: E731 - MM/DD/YYYY sort key
        assert key(r[_col("Provider Enumeration Date")]) < key(deact) < key(react)
        assert key(react) <= key(r[_col("Last Update Date")])
    with_deactivation = {r[0] for r in rows if r[1] and r[_col("NPI Deactivation Date")]}
    assert with_deactivation == set(reactivated)


def test_primary_switch_and_taxonomy_slots(good_rows: list[list[str]]) -> None:
    slots = Counter()
    repeated_code_other_state = 0
    for r in good_rows:
        slot, code = _primary(r)
        slots[slot] += 1
        switches = {r[_col(primary_switch_column(n))] for n in range(1, TAXONOMY_SLOTS + 1)}
        assert switches <= {"Y", "N", "X", ""}
        codes = [(r[_col(taxonomy_code_column(n))], r[_col(license_state_column(n))]) for n in range(1, 16)]
        codes = [c for c in codes if c[0]]
        if len({c for c, _ in codes}) < len(codes) and len({s for _, s in codes}) > 1:
            repeated_code_other_state += 1
    assert slots[1] > len(good_rows) / 2
    assert sum(v for k, v in slots.items() if k > 1) >= 100, "the 'Y' switch is often outside slot 1"
    assert repeated_code_other_state >= 100
    all_switches = Counter(r[_col(primary_switch_column(n))] for r in good_rows for n in range(1, 16))
    assert all_switches["N"] > 0 and all_switches["X"] > 0
    pain_primary = [r for r in good_rows if _primary(r)[1] == "208VP0014X"]
    pain_any = [r for r in good_rows if "208VP0014X" in r]
    assert not pain_primary and len(pain_any) >= 20


def test_npis_unique_and_luhn_valid_except_the_deliberate_ones(sample: SampleFiles, rows: list[list[str]]) -> None:
    npis = [r[0] for r in rows]
    assert len(npis) == len(set(npis))
    assert all(re.fullmatch(r"[12]\d{9}", n) for n in npis)
    failing = sorted(n for n in npis if not npi_check_digit_valid(n))
    assert failing == sorted(sample.manifest["bad_npis"]["invalid_npi"])
    assert 1 <= len(failing) <= 3


def test_deliberate_bad_rows_are_present_and_defective(sample: SampleFiles, rows: list[list[str]],
                                                       bad_npis: set[str]) -> None:
    by_npi = {r[0]: r for r in rows}
    reasons = sample.manifest["bad_npis"]
    assert set(reasons) >= {"invalid_npi", "malformed_zip", "foreign_address", "unknown_taxonomy"}
    assert 6 <= len(bad_npis) <= 12
    nucc_path = REFERENCE / "nucc_taxonomy_251.csv"
    nucc = {line.split(",", 1)[0] for line in nucc_path.read_text(encoding="utf-8").splitlines()[1:]} \
        if nucc_path.is_file() else None
    for reason, npis in reasons.items():
        for npi in npis:
            r = by_npi[npi]
            postal = r[_col(f"{PRACTICE} Postal Code")]
            state = r[_col(f"{PRACTICE} State Name")]
            if reason == "invalid_npi":
                assert not npi_check_digit_valid(npi)
            elif reason == "malformed_zip":
                assert not re.fullmatch(r"\d{5}(\d{4})?", postal)
            elif reason == "foreign_address":
                assert r[_col(COUNTRY)] not in ("", "US") and state not in STATES_50_DC
            elif reason == "unknown_taxonomy":
                code = _primary(r)[1]
                assert nucc is None or code not in nucc
                assert code not in DEFAULT_TARGET_TAXONOMY_CODES
            elif reason == "non_mappable_state":
                assert state in NON_MAPPABLE_STATES
            else:
                pytest.fail(f"unexpected reason {reason}")
    if nucc is not None:
        used = {r[_col(taxonomy_code_column(n))] for r in rows if r[0] not in bad_npis for n in range(1, 16)}
        assert used - {""} <= nucc


def test_good_rows_are_at_real_zip_codes(good_rows: list[list[str]]) -> None:
    nine = 0
    for r in good_rows:
        postal = r[_col(f"{PRACTICE} Postal Code")]
        assert re.fullmatch(r"\d{5}(\d{4})?", postal), postal
        nine += len(postal) == 9
        info = ZIP_INFO[postal[:5]]
        assert info["state"] == r[_col(f"{PRACTICE} State Name")] and info["state"] in STATES_50_DC
        assert info["city"].upper() == r[_col(f"{PRACTICE} City Name")]
        assert r[_col(COUNTRY)] == "US"
    assert 0.85 <= nine / len(good_rows) < 1.0, "mostly 9-digit ZIPs, a few 5-digit ones"


def test_values_use_nppes_formats(good_rows: list[list[str]]) -> None:
    for r in good_rows:
        for c in DATE_COLUMNS:
            v = r[_col(c)]
            assert v == "" or re.fullmatch(r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/(200[5-9]|20[12]\d)", v), (c, v)
        assert r[_col("Provider Enumeration Date")] and r[_col("Last Update Date")]
        for c in PHONE_COLUMNS:
            assert r[_col(c)] == "" or re.fullmatch(r"[2-9]\d{9}", r[_col(c)]), (c, r[_col(c)])
    individuals = [r for r in good_rows if r[1] == "1"]
    assert {r[_col("Provider Sex Code")] for r in individuals} == {"M", "F"}
    assert {r[_col("Is Sole Proprietor")] for r in individuals} == {"Y", "N", "X"}
    assert all(r[_col("Is Organization Subpart")] == "" for r in individuals)
    credentials = Counter(r[_col("Provider Credential Text")] for r in individuals)
    assert {"MD", "M.D.", "DO"} <= set(credentials)
    assert all(r[_col("Provider Last Name (Legal Name)")] and r[_col("Provider First Name")] for r in individuals)


def test_organizations_groups_and_subparts(good_rows: list[list[str]]) -> None:
    orgs = [r for r in good_rows if r[1] == "2"]
    assert all(r[_col("Provider Organization Name (Legal Business Name)")] for r in orgs)
    assert all(r[_col("Provider Last Name (Legal Name)")] == "" and r[_col("Is Sole Proprietor")] == "" for r in orgs)
    subparts = Counter(r[_col("Is Organization Subpart")] for r in orgs)
    assert set(subparts) == {"Y", "N"}
    for r in orgs:
        parent = r[_col("Parent Organization LBN")]
        assert bool(parent) == (r[_col("Is Organization Subpart")] == "Y")
    groups = Counter(r[_col(taxonomy_group_column(1))][:10] for r in orgs if r[_col(taxonomy_group_column(1))])
    assert groups["193400000X"] > 0 and groups["193200000X"] > 0
    names = [r[_col("Provider Organization Name (Legal Business Name)")] for r in orgs]
    assert len(names) == len(set(names))
    assert any(n.endswith("SURGERY CENTER LLC") for n in names)
    assert any("REGIONAL MEDICAL CENTER" in n for n in names)
    assert any("SPINE & ORTHOPAEDIC ASSOCIATES PLLC" in n for n in names)


def test_practice_setting_derivable_from_shared_addresses(sample: SampleFiles, good_rows: list[list[str]],
                                                          targets: list[list[str]]) -> None:
    def key(r: list[str]) -> tuple[str, ...]:
        return (r[_col(PRACTICE_LINE1)], r[_col(f"{PRACTICE} City Name")], r[_col(f"{PRACTICE} State Name")],
                r[_col(f"{PRACTICE} Postal Code")])

    facility = {key(r): _primary(r)[1] for r in good_rows
                if r[1] == "2" and _primary(r)[1] in ("282N00000X", "261QA1903X")}
    settings = Counter({"282N00000X": "hospital", "261QA1903X": "asc"}.get(facility.get(key(r)), "office")
                       for r in targets)
    assert dict(settings) == sample.manifest["target_practice_settings"]
    assert settings["hospital"] >= 300 and settings["asc"] >= 100 and settings["office"] >= 1000
    shared_codes = {facility[key(r)] for r in targets if key(r) in facility}
    assert shared_codes == {"282N00000X", "261QA1903X"}


def test_mailing_address_often_differs_from_practice(good_rows: list[list[str]]) -> None:
    differs = [r for r in good_rows if (r[_col(MAILING_LINE1)], r[_col("Provider Business Mailing Address Postal Code")])
               != (r[_col(PRACTICE_LINE1)], r[_col(f"{PRACTICE} Postal Code")])]
    assert len(differs) / len(good_rows) >= 0.25
    assert sum(r[_col(MAILING_LINE1)].startswith("PO BOX") for r in differs) >= 200
    other_city = [r for r in differs if r[_col("Provider Business Mailing Address City Name")]
                  != r[_col(f"{PRACTICE} City Name")]]
    assert len(other_city) >= 200
    assert not any(r[_col(PRACTICE_LINE1)].startswith("PO BOX") for r in good_rows)


def test_providers_spread_like_the_population(targets: list[list[str]]) -> None:
    per_state = Counter(r[_col(f"{PRACTICE} State Name")] for r in targets)
    assert len(per_state) >= 40
    top6 = {s for s, _ in per_state.most_common(6)}
    assert {"CA", "TX", "FL", "NY"} <= top6
    states = sorted(CENSUS_2020_THOUSANDS)
    rho = spearmanr([per_state.get(s, 0) for s in states], [CENSUS_2020_THOUSANDS[s] for s in states]).statistic
    assert rho >= 0.85
    zips = {r[_col(f"{PRACTICE} Postal Code")][:5] for r in targets}
    assert len(zips) >= 1000


def test_pl_pfile_secondary_locations(sample: SampleFiles, targets: list[list[str]]) -> None:
    table = _read(sample.pl_pfile_path)
    assert tuple(table[0]) == PL_PFILE_HEADER
    locations = table[1:]
    assert len(locations) == sample.manifest["pl_pfile_rows"]
    primary_zip = {r[0]: r[_col(f"{PRACTICE} Postal Code")][:5] for r in targets}
    per_npi = Counter(r[0] for r in locations)
    assert set(per_npi) <= set(primary_zip)
    assert 0.07 <= len(per_npi) / len(targets) <= 0.13
    assert set(per_npi.values()) <= {1, 2, 3} and max(per_npi.values()) >= 2
    for r in locations:
        zip5 = r[5][:5]
        assert re.fullmatch(r"\d{5}(\d{4})?", r[5]) and r[6] == "US"
        assert ZIP_INFO[zip5]["state"] == r[4]
        assert zip5 != primary_zip[r[0]]
        assert _miles(ZIP_INFO[zip5], ZIP_INFO[primary_zip[r[0]]]) <= 60
    assert [r[0] for r in locations] == sorted(r[0] for r in locations)


def test_rep_roster(sample: SampleFiles, targets: list[list[str]]) -> None:
    with sample.reps_path.open(newline="", encoding="utf-8") as f:
        reps = list(csv.DictReader(f))
    assert list(reps[0]) == ["rep_id", "rep_name", "home_zip", "capacity"]
    assert len(reps) == 20 and len({r["rep_id"] for r in reps}) == 20
    assert all(r["rep_name"].strip() for r in reps)
    homes = [ZIP_INFO[r["home_zip"]] for r in reps]
    assert all(h["zip_code_type"] == "STANDARD" and h["active"] and h["state"] in STATES_50_DC for h in homes)
    assert len({(h["city"], h["state"]) for h in homes}) == 20
    for a, b in itertools.combinations(homes, 2):
        assert _miles(a, b) > 45, (a["city"], b["city"])
    assert Counter(r["capacity"] for r in reps) == {"1.0": 19, "0.5": 1}
    rep_states = Counter(h["state"] for h in homes)
    assert len(rep_states) >= 10 and rep_states["CA"] >= 2 and rep_states["TX"] >= 2
    # Most target providers live within 150 miles of some rep.
    target_zips = [ZIP_INFO[r[_col(f"{PRACTICE} Postal Code")][:5]] for r in targets[:600]]
    near = sum(min(_miles(z, h) for h in homes) <= 150 for z in target_zips)
    assert near / len(target_zips) >= 0.6
