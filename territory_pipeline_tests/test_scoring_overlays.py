"""Customer and competitor overlays: validation, nothing vanishes, effect on scores."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline import schemas
from territory_pipeline.scoring import (
    check_score_integrity,
    load_competitors,
    load_customers,
    score_providers,
    scoring_config_from_dict,
)
from territory_pipeline_tests.test_scoring import make_npi, make_providers


def small_providers() -> pl.DataFrame:
    """Six office surgeons in two clusters; two share an address."""
    rows = [
        dict(npi=make_npi(1), address_line_1="10 Main St", zip5="10001", cluster_id="A"),
        dict(npi=make_npi(2), address_line_1="10 Main St", zip5="10001", cluster_id="A"),
        dict(npi=make_npi(3), address_line_1="20 Oak Ave", zip5="10002", cluster_id="A"),
        dict(npi=make_npi(4), address_line_1="30 Pine Rd", zip5="20001", cluster_id="B", practice_setting="asc"),
        dict(npi=make_npi(5), address_line_1="40 Elm Ct", zip5="20002", cluster_id="B", practice_setting="hospital"),
        dict(npi=make_npi(6), address_line_1="50 Birch Ln", zip5="20003", cluster_id="B"),
    ]
    return make_providers(rows)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- customers file --------------------------------------------------------------------------


def test_customers_file_validation_reports_every_problem_row(tmp_path):
    lines = [
        "NPI,Account_Status,Revenue,Product",
        f"{make_npi(1)},active,1000,Cage",
        f'{make_npi(1)},prospect,"$2,500.50",Screws',  # duplicate NPI: aggregated
        f"{make_npi(2)},Prospect,,",  # blank revenue reads as 0
        f"{make_npi(3)},active,-5,Cage",  # negative
        f"{make_npi(4)},active,lots,Cage",  # not a number
        f"{make_npi(90)},active,100,Cage",  # not in providers
        "1234567890,active,100,Cage",  # fails the check digit
        ",active,100,Cage",  # no NPI
        f"{make_npi(5)},,100,Cage",  # no status
    ]
    path = write(tmp_path / "customers.csv", "\n".join(lines) + "\n")
    matched, report = load_customers(path, small_providers())
    assert report.columns == list(schemas.REJECTS)
    assert matched.rows() == [
        (make_npi(1), "active", 3500.5, "Cage|Screws", 2),
        (make_npi(2), "prospect", 0.0, None, 1),
    ]
    reasons = dict(zip(report["reason"], report["npi"], strict=True))
    assert reasons == {
        "duplicate_npi_aggregated": make_npi(1),
        "negative_revenue": make_npi(3),
        "non_numeric_revenue": make_npi(4),
        "unknown_npi": make_npi(90),
        "invalid_npi": "1234567890",
        "missing_npi": None,
        "missing_account_status": make_npi(5),
    }
    assert set(report["source"]) == {"customers"}
    bad = report.filter(pl.col("reason") == "non_numeric_revenue").row(0, named=True)
    assert json.loads(bad["raw_record"]) == {
        "npi": make_npi(4),
        "account_status": "active",
        "revenue": "lots",
        "product": "Cage",
    }
    assert "'lots' is not a number" in bad["detail"]
    # nothing vanishes: every data line is a matched source row or a problem row
    problems = report.filter(pl.col("reason") != "duplicate_npi_aggregated").height
    assert matched["source_rows"].sum() + problems == len(lines) - 1


def test_customers_without_providers_skip_only_the_unknown_npi_check(tmp_path):
    path = write(tmp_path / "c.csv", f"npi,account_status,revenue\n{make_npi(90)},active,5\n")
    matched, report = load_customers(path)
    assert matched["npi"].to_list() == [make_npi(90)] and report.height == 0


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("npi,revenue", "'account_status'"),
        ("account_status,revenue", "'npi'"),
        ("npi,account_status,product", "'revenue' (or 'units')"),
    ],
)
def test_customers_missing_column_is_named(tmp_path, header, missing):
    path = write(tmp_path / "c.csv", header + "\n")
    with pytest.raises(ValueError, match=missing.replace("(", r"\(").replace(")", r"\)")):
        load_customers(path)


def test_customers_units_column_and_file_errors(tmp_path):
    path = write(tmp_path / "units.csv", f"npi,account_status,units\n{make_npi(1)},active,12\n")
    matched, _ = load_customers(path)
    assert matched["revenue"].to_list() == [12.0]
    with pytest.raises(FileNotFoundError, match="customers file not found"):
        load_customers(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="empty"):
        load_customers(write(tmp_path / "empty.csv", ""))


def test_customer_share_changes_scores_as_documented(tmp_path):
    providers = small_providers()
    base = score_providers(providers).provider_scores
    potential = dict(zip(base["npi"], base["potential_revenue"], strict=True))
    lines = [
        "npi,account_status,revenue,product",
        f"{make_npi(1)},active,{potential[make_npi(1)] * 0.25},Cage",
        f"{make_npi(4)},active,{potential[make_npi(4)] * 3},Cage",  # above potential: share clipped to 1
        f"{make_npi(5)},prospect,0,",
        f"{make_npi(99)},active,10,Cage",
    ]
    path = write(tmp_path / "customers.csv", "\n".join(lines) + "\n")
    result = score_providers(providers, customers=path)
    scores = {r["npi"]: r for r in result.provider_scores.iter_rows(named=True)}
    before = {r["npi"]: r for r in base.iter_rows(named=True)}
    assert scores[make_npi(1)]["share"] == pytest.approx(0.25)
    assert scores[make_npi(1)]["opportunity_score"] == pytest.approx(0.75 * before[make_npi(1)]["opportunity_score"])
    assert scores[make_npi(1)]["contrib_customer_share"] == pytest.approx(-0.25 * before[make_npi(1)]["potential"])
    assert scores[make_npi(4)]["share"] == 1.0 and scores[make_npi(4)]["opportunity_score"] == 0.0
    assert scores[make_npi(5)]["customer_status"] == "prospect" and scores[make_npi(5)]["share"] == 0.0
    assert scores[make_npi(6)]["customer_status"] == "none"
    for npi in (make_npi(2), make_npi(3), make_npi(5), make_npi(6)):
        assert scores[npi]["opportunity_score"] == before[npi]["opportunity_score"]
    clusters = {r["cluster_id"]: r for r in result.scored_clusters.iter_rows(named=True)}
    assert clusters["A"]["customer_count"] == 1 and clusters["A"]["penetration"] == pytest.approx(1 / 3)
    assert clusters["B"]["customer_count"] == 1  # the prospect is not a customer
    b_potential = sum(before[n]["potential_revenue"] for n in (make_npi(4), make_npi(5), make_npi(6)))
    assert clusters["B"]["market_share"] == pytest.approx(potential[make_npi(4)] * 3 / b_potential)
    assert result.report.filter(pl.col("source") == "customers")["reason"].to_list() == ["unknown_npi"]
    ok, details = check_score_integrity(result.provider_scores, result.scored_clusters)
    assert ok, details
    # revenue per point is the scale of share: doubling it halves the share
    doubled = scoring_config_from_dict({"customer_share": {"potential_revenue_per_point": 500000}})
    again = score_providers(providers, doubled, customers=path).provider_scores
    assert again.filter(pl.col("npi") == make_npi(1))["share"].item() == pytest.approx(0.125)
    # prospects count as customers when configured so
    statuses = scoring_config_from_dict({"customer_share": {"customer_statuses": ["active", "prospect"]}})
    counted = score_providers(providers, statuses, customers=path).scored_clusters
    assert counted.filter(pl.col("cluster_id") == "B")["customer_count"].item() == 2


def test_customers_given_as_a_frame_are_validated_too():
    frame = pl.DataFrame(
        {"npi": [make_npi(1), make_npi(77)], "account_status": ["active", "active"], "revenue": [10.0, -1.0]}
    )
    result = score_providers(small_providers(), customers=frame)
    assert result.report.filter(pl.col("source") == "customers")["reason"].to_list() == ["negative_revenue"]
    assert result.provider_scores.filter(pl.col("npi") == make_npi(1))["our_revenue"].item() == 10.0


# --- competitors file -----------------------------------------------------------------------


def test_competitors_by_npi_and_by_address(tmp_path):
    lines = [
        "npi,address_line_1,postal_code,competitor",
        f"{make_npi(3)},,,Rival Spine",
        ",10 MAIN ST.,100019999,Rival Ortho",  # the address of providers 1 and 2, 9-digit zip
        ",99 Nowhere Rd,10001,Rival Ortho",  # no provider there
        f"{make_npi(88)},,,Rival Spine",  # not in providers
        "12345,,,Rival",  # malformed NPI
        ",10 Main St,1001,Rival",  # malformed zip
        ",,,Rival",  # no key at all
    ]
    path = write(tmp_path / "competitors.csv", "\n".join(lines) + "\n")
    providers = small_providers()
    matched, report = load_competitors(path, providers)
    assert matched.select("npi", "zip5", "match_basis").rows() == [
        (make_npi(3), None, "npi"),
        (None, "10001", "address"),
    ]
    assert sorted(report["reason"].to_list()) == sorted(
        ["unknown_address", "unknown_npi", "invalid_npi", "malformed_zip", "missing_key"]
    )
    base = score_providers(providers).provider_scores
    result = score_providers(providers, competitors=path)
    scores = result.provider_scores
    present = dict(zip(scores["npi"], scores["competitor_present"], strict=True))
    assert [n for n, p in present.items() if p] == [make_npi(1), make_npi(2), make_npi(3)]
    ratio = (scores["opportunity_score"] / base["opportunity_score"]).to_list()
    assert ratio == pytest.approx([0.85, 0.85, 0.85, 1.0, 1.0, 1.0])
    # only the competition contribution and the ones after it in the order move
    hit = scores.filter(pl.col("competitor_present"))
    before = base.filter(pl.col("npi").is_in(hit["npi"].implode()))
    for column in (
        "contrib_base_potential",
        "contrib_specialty",
        "contrib_practice_size",
        "contrib_procedure_volume",
        "contrib_customer_share",
    ):
        assert hit[column].equals(before[column])
    assert (hit["contrib_competition"] < 0).all()
    assert result.scored_clusters.filter(pl.col("cluster_id") == "A")["competitor_count"].item() == 3
    assert set(result.report.filter(pl.col("source") == "competitors")["reason"]) == set(report["reason"])
    # a conquest bonus instead of a discount
    conquest = scoring_config_from_dict({"competition": {"present_multiplier": 1.1}})
    bonus = score_providers(providers, conquest, competitors=path).provider_scores
    assert (bonus["opportunity_score"] / base["opportunity_score"]).to_list() == pytest.approx([1.1] * 3 + [1.0] * 3)


def test_competitors_missing_key_columns_is_an_error(tmp_path):
    path = write(tmp_path / "c.csv", "address_line_1,competitor\n1 Main St,Rival\n")
    with pytest.raises(ValueError, match="'npi' or columns 'address_line_1' and 'zip5'"):
        load_competitors(path)


def test_two_competitor_rows_on_one_provider_apply_the_multiplier_once():
    frame = pl.DataFrame({"npi": [make_npi(4), make_npi(4)], "competitor": ["Rival A", "Rival B"]})
    result = score_providers(small_providers(), competitors=frame)
    row = result.provider_scores.filter(pl.col("npi") == make_npi(4)).row(0, named=True)
    assert row["competitor_count"] == 2 and row["factor_competition"] == 0.85
    assert result.scored_clusters.filter(pl.col("cluster_id") == "B")["competitor_count"].item() == 1
