"""Opportunity scoring: the formula, the breakdown, practice type/size, counting once."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from territory_pipeline import schemas
from territory_pipeline.scoring import (
    CLUSTER_SCORE_COLUMNS,
    CONTRIBUTION_COLUMNS,
    PROVIDER_SCORE_COLUMNS,
    check_score_integrity,
    explain_provider,
    load_scoring_config,
    markdown_summary,
    score_providers,
    scoring_config_from_dict,
)
from territory_pipeline.universe.validation import npi_check_digit

CLUSTERED = {**schemas.GEOCODED_PROVIDERS, "cluster_id": pl.Utf8}
CONTRIB = list(CONTRIBUTION_COLUMNS.values())


def make_npi(i: int) -> str:
    """A valid NPI (Luhn with prefix 80840) numbered ``i``."""
    body = f"1{i:08d}"
    return body + npi_check_digit(body)


def make_providers(rows: list[dict[str, Any]], extra: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Providers frame in the clustered contract, plus optional CMS columns."""
    defaults = {"entity_type": "individual", "taxonomy_code": "207X00000X", "practice_setting": "office", "state": "NY"}
    full = [{**defaults, **r} for r in rows]
    for r in full:
        r.setdefault("postal_code", r.get("zip5"))
    schema = {**CLUSTERED, **(extra or {})}
    frame = pl.DataFrame(full, schema={k: schema[k] for k in {k for r in full for k in r}}, strict=False)
    return schemas.conform(frame, schema)


def example_territories() -> pl.DataFrame:
    """100 system-employed hospital surgeons (cluster SYS) and 80 independent ASC surgeons (cluster ASC)."""
    rows = []
    for i in range(100):  # five hospital campuses of one system, CMS group of 450
        rows.append(
            dict(
                npi=make_npi(i),
                practice_setting="hospital",
                address_line_1=f"{i % 5 + 1} Medical Center Dr",
                zip5="10001",
                cluster_id="SYS",
                org_pac_id="4587912345",
                num_org_mem=450.0,
                procedure_services=150.0,
            )
        )
    for i in range(80):  # sixteen independent ASCs with five surgeons each
        rows.append(
            dict(
                npi=make_npi(1000 + i),
                practice_setting="asc",
                address_line_1=f"{i % 16 + 1} Surgery Center Way",
                zip5="20001",
                cluster_id="ASC",
                is_sole_proprietor="N",
                procedure_services=150.0,
            )
        )
    return make_providers(rows, {"org_pac_id": pl.Utf8, "num_org_mem": pl.Float64})


def customers_at_share(result_without_customers, shares: dict[str, float]) -> pl.DataFrame:
    """Customer records giving each provider the share of its cluster in ``shares``."""
    return result_without_customers.provider_scores.select(
        "npi",
        pl.lit("active").alias("account_status"),
        (pl.col("potential_revenue") * pl.col("cluster_id").replace_strict(shares, return_dtype=pl.Float64))
        .cast(pl.Utf8)
        .alias("revenue"),
    )


def assert_breakdowns_add_up(result) -> None:
    for frame in (result.provider_scores, result.scored_clusters):
        error = frame.select((pl.sum_horizontal(CONTRIB) - pl.col("opportunity_score")).abs().max()).item()
        scale = max(1.0, frame["opportunity_score"].abs().max())
        assert error <= 1e-9 * scale


# --- the example and the breakdown --------------------------------------------------------


def test_system_at_40pct_share_scores_below_independent_asc_at_5pct():
    providers = example_territories()
    base = score_providers(providers)
    result = score_providers(providers, customers=customers_at_share(base, {"SYS": 0.40, "ASC": 0.05}))
    clusters = {r["cluster_id"]: r for r in result.scored_clusters.iter_rows(named=True)}
    assert clusters["SYS"]["provider_count"] == 100 and clusters["ASC"]["provider_count"] == 80
    assert clusters["SYS"]["opportunity_score"] < clusters["ASC"]["opportunity_score"]
    assert clusters["SYS"]["market_share"] == pytest.approx(0.40)
    assert clusters["ASC"]["market_share"] == pytest.approx(0.05)
    assert clusters["SYS"]["penetration"] == 1.0
    scores = result.provider_scores
    assert set(scores.filter(pl.col("cluster_id") == "SYS")["practice_type"]) == {"system"}
    assert set(scores.filter(pl.col("cluster_id") == "ASC")["practice_type"]) == {"independent"}
    # the share itself drives the SYS cluster down by 40% of its potential x adjustments
    sys_row = scores.filter(pl.col("cluster_id") == "SYS").row(0, named=True)
    assert sys_row["share"] == pytest.approx(0.40)
    assert sys_row["contrib_customer_share"] == pytest.approx(-0.40 * sys_row["potential"])
    # raw provider count says the opposite
    assert clusters["SYS"]["provider_count"] > clusters["ASC"]["provider_count"]


def test_hand_computed_score_for_one_provider():
    providers = make_providers(
        [
            dict(
                npi=make_npi(1),
                taxonomy_code="207XS0117X",
                practice_setting="asc",
                address_line_1="5 Oak St",
                zip5="30301",
                cluster_id="C1",
                procedure_services=1000.0,
                num_org_mem=12.0,
                org_pac_id="X1",
            )
        ],
        {"num_org_mem": pl.Float64, "org_pac_id": pl.Utf8},
    )
    row = score_providers(providers).provider_scores.row(0, named=True)
    size = 1 + 0.10 * math.log(12)
    volume = math.log1p(1000) / math.log1p(100)
    expected = 1.0 * 1.0 * size * volume * 1.0 * 1.0 * 1.0 * 1.2
    assert row["opportunity_score"] == pytest.approx(expected, rel=1e-12)
    assert row["practice_size"] == 12 and row["practice_size_source"] == "cms_num_org_mem"
    assert row["practice_type"] == "independent" and row["practice_type_source"] == "cms_group_size"
    assert row["contrib_setting"] == pytest.approx(expected - expected / 1.2, rel=1e-12)
    assert row["contrib_practice_size"] == pytest.approx(size - 1.0, rel=1e-12)


def test_breakdowns_add_up_for_every_provider_and_cluster():
    providers = mixed_providers()
    result = score_providers(providers, competitors=pl.DataFrame({"npi": [make_npi(7), make_npi(12)]}))
    assert_breakdowns_add_up(result)
    ok, details = check_score_integrity(result.provider_scores, result.scored_clusters)
    assert ok, details
    assert details["relative_difference"] <= 1e-9
    assert result.provider_scores.columns == list(PROVIDER_SCORE_COLUMNS)
    assert result.scored_clusters.columns == list(CLUSTER_SCORE_COLUMNS)


def mixed_providers() -> pl.DataFrame:
    """Providers across three clusters with every setting, several codes and volumes."""
    codes = ["207X00000X", "207XS0117X", "207T00000X", "363A00000X", "208VP0014X", "999900000X"]
    settings = ["hospital", "asc", "office", None]
    rows = []
    for i in range(40):
        rows.append(
            dict(
                npi=make_npi(500 + i),
                taxonomy_code=codes[i % len(codes)],
                practice_setting=settings[i % 4],
                address_line_1=f"{i % 7} Elm Street",
                zip5=f"{30300 + i % 3}",
                cluster_id=f"C{i % 3}",
                procedure_services=None if i % 5 == 0 else float(i * 13),
            )
        )
    return make_providers(rows)


@pytest.mark.parametrize(
    "order",
    [
        None,
        ["setting", "practice_type", "competition", "customer_share", "procedure_volume", "practice_size", "specialty"],
    ],
)
def test_attribution_order_changes_the_explanation_not_the_score(order):
    providers = mixed_providers()
    default = score_providers(providers)
    cfg = load_scoring_config(None) if order is None else scoring_config_from_dict({"attribution_order": order})
    other = score_providers(providers, cfg)
    assert other.provider_scores["opportunity_score"].to_list() == pytest.approx(
        default.provider_scores["opportunity_score"].to_list(), rel=1e-12
    )
    assert_breakdowns_add_up(other)


# --- one weight changes only what it should -------------------------------------------------


def test_changing_the_asc_weight_changes_only_asc_setting_contribution_and_total():
    providers = mixed_providers()
    before = score_providers(providers).provider_scores
    after = score_providers(providers, scoring_config_from_dict({"setting": {"weights": {"asc": 1.5}}})).provider_scores
    is_asc = before["practice_setting"] == "asc"
    assert is_asc.sum() > 0 and (~is_asc).sum() > 0
    assert before.filter(~is_asc).equals(after.filter(~is_asc))
    b, a = before.filter(is_asc), after.filter(is_asc)
    changed = {c for c in before.columns if not b[c].equals(a[c])}
    assert changed == {"opportunity_score", "contrib_setting", "factor_setting"}
    assert (a["opportunity_score"] / b["opportunity_score"]).to_list() == pytest.approx([1.5 / 1.2] * a.height)


def test_changing_a_specialty_weight_touches_only_that_code_and_later_contributions():
    providers = mixed_providers()
    before = score_providers(providers).provider_scores
    cfg = scoring_config_from_dict({"specialty": {"weights": {"207T00000X": 0.5}}})
    after = score_providers(providers, cfg).provider_scores
    is_code = before["taxonomy_code"] == "207T00000X"
    assert before.filter(~is_code).equals(after.filter(~is_code))
    b, a = before.filter(is_code), after.filter(is_code)
    assert b["contrib_base_potential"].equals(a["contrib_base_potential"])
    assert a["opportunity_score"].to_list() == pytest.approx((b["opportunity_score"] * 0.5).to_list())
    assert a["specialty_weight"].unique().to_list() == [0.5]


def test_unlisted_code_gets_the_default_weight_and_it_is_tunable():
    providers = mixed_providers()
    result = score_providers(providers, scoring_config_from_dict({"specialty": {"default_weight": 0.9}}))
    unlisted = result.provider_scores.filter(pl.col("taxonomy_code") == "999900000X")
    assert unlisted.height > 0 and unlisted["specialty_weight"].unique().to_list() == [0.9]


def test_replace_default_weights_drops_the_shipped_codes():
    cfg = scoring_config_from_dict({"specialty": {"replace_default_weights": True, "weights": {"207RC0000X": 1.0}}})
    assert dict(cfg.specialty_weights) == {"207RC0000X": 1.0}
    merged = scoring_config_from_dict({"specialty": {"weights": {"207RC0000X": 1.0}}})
    assert merged.specialty_weights["207RC0000X"] == 1.0 and merged.specialty_weights["207X00000X"] == 0.8


# --- practice type, size, volume -------------------------------------------------------------------


def test_practice_type_rule_and_source():
    rows = [
        # an organization subpart and an individual at its address
        dict(
            npi=make_npi(1),
            entity_type="organization",
            is_organization_subpart="Y",
            address_line_1="1 Main St.",
            zip5="40001",
            cluster_id="A",
            taxonomy_code="261QA1903X",
        ),
        dict(npi=make_npi(2), address_line_1="1 MAIN ST", zip5="40001", cluster_id="A"),
        # a hospital organization at an address, and an office surgeon there
        dict(
            npi=make_npi(3),
            entity_type="organization",
            taxonomy_code="282N00000X",
            address_line_1="9 Care Blvd",
            zip5="40002",
            cluster_id="A",
            is_organization_subpart="N",
        ),
        dict(npi=make_npi(4), address_line_1="9  Care Blvd", zip5="40002", cluster_id="A"),
        # an organization naming a parent
        dict(
            npi=make_npi(5),
            entity_type="organization",
            parent_organization_lbn="BIG HEALTH SYSTEM",
            address_line_1="3 Pine Rd",
            zip5="40003",
            cluster_id="A",
            is_organization_subpart="N",
        ),
        # large CMS group, small CMS group, hospital affiliation, sole proprietor, nothing
        dict(
            npi=make_npi(6),
            address_line_1="7 Ash Ave",
            zip5="40004",
            cluster_id="A",
            org_pac_id="G1",
            num_org_mem=250.0,
        ),
        dict(
            npi=make_npi(7), address_line_1="8 Ash Ave", zip5="40004", cluster_id="A", org_pac_id="G2", num_org_mem=4.0
        ),
        dict(npi=make_npi(8), address_line_1="9 Ash Ave", zip5="40004", cluster_id="A", hospital_affiliated=True),
        dict(npi=make_npi(9), address_line_1="10 Ash Ave", zip5="40004", cluster_id="A", is_sole_proprietor="Y"),
        dict(npi=make_npi(10), address_line_1="11 Ash Ave", zip5="40004", cluster_id="A", is_sole_proprietor="N"),
        dict(npi=make_npi(11), address_line_1="12 Ash Ave", zip5="40004", cluster_id="A", practice_setting="hospital"),
    ]
    extra = {"org_pac_id": pl.Utf8, "num_org_mem": pl.Float64, "hospital_affiliated": pl.Boolean}
    providers = make_providers(rows, extra)
    scores = score_providers(providers).provider_scores
    got = {r["npi"]: (r["practice_type"], r["practice_type_source"]) for r in scores.iter_rows(named=True)}
    assert got == {
        make_npi(1): ("system", "nppes_subpart"),
        make_npi(2): ("system", "nppes_parent_org_at_address"),
        make_npi(3): ("system", "nppes_hospital_at_address"),
        make_npi(4): ("system", "nppes_hospital_at_address"),
        make_npi(5): ("system", "nppes_parent_org"),
        make_npi(6): ("system", "cms_group_size"),
        make_npi(7): ("independent", "cms_group_size"),
        make_npi(8): ("system", "cms_hospital_affiliation"),
        make_npi(9): ("independent", "nppes_sole_proprietor"),
        make_npi(10): ("independent", "no_system_signal"),
        make_npi(11): ("system", "practice_setting_hospital"),
    }
    no_affiliation = scoring_config_from_dict({"practice_type": {"use_hospital_affiliation": False}})
    row = (
        score_providers(providers, no_affiliation)
        .provider_scores.filter(pl.col("npi") == make_npi(8))
        .row(0, named=True)
    )
    assert (row["practice_type"], row["practice_type_source"]) == ("independent", "no_system_signal")
    threshold = scoring_config_from_dict({"practice_type": {"system_group_min_members": 300}})
    row = score_providers(providers, threshold).provider_scores.filter(pl.col("npi") == make_npi(6)).row(0, named=True)
    assert (row["practice_type"], row["practice_type_source"]) == ("independent", "cms_group_size")


def test_practice_size_counts_providers_at_the_normalized_address_unless_num_org_mem_given():
    rows = [
        dict(npi=make_npi(1), address_line_1="100 N. Main St, Ste 2", zip5="50001", cluster_id="A"),
        dict(npi=make_npi(2), address_line_1="100 N MAIN ST STE 2", zip5="50001", cluster_id="A"),
        dict(npi=make_npi(3), address_line_1="100 n main st ste 2", zip5="50001", cluster_id="B"),
        dict(npi=make_npi(4), address_line_1="100 N MAIN ST STE 2", zip5="50002", cluster_id="A"),
        dict(npi=make_npi(5), address_line_1="100 N MAIN ST STE 2", zip5="50001", cluster_id="A", num_org_mem=40.0),
        dict(npi=make_npi(6), address_line_1=None, zip5="50001", cluster_id="A"),
    ]
    scores = score_providers(make_providers(rows, {"num_org_mem": pl.Float64})).provider_scores
    got = {r["npi"]: (r["practice_size"], r["practice_size_source"]) for r in scores.iter_rows(named=True)}
    assert got[make_npi(1)] == (4.0, "address_count")
    assert got[make_npi(3)] == (4.0, "address_count")
    assert got[make_npi(4)] == (1.0, "address_count")
    assert got[make_npi(5)] == (40.0, "cms_num_org_mem")
    assert got[make_npi(6)] == (1.0, "no_address")


def test_size_and_volume_factors_saturate():
    rows = [
        dict(
            npi=make_npi(i),
            address_line_1=f"{i} Birch Ln",
            zip5="60001",
            cluster_id="A",
            num_org_mem=members,
            procedure_services=services,
        )
        for i, (members, services) in enumerate([(1.0, 0.0), (10.0, 100.0), (5000.0, 1e6), (None, None)])
    ]
    scores = score_providers(make_providers(rows, {"num_org_mem": pl.Float64})).provider_scores.sort("npi")
    size = scores["factor_practice_size"].to_list()
    volume = scores["factor_procedure_volume"].to_list()
    assert size[0] == pytest.approx(1.0) and size[1] == pytest.approx(1 + 0.1 * math.log(10)) and size[2] == 1.5
    assert volume == pytest.approx([0.25, 1.0, 2.0, 1.0])


# --- counting once and integrity ----------------------------------------------------------------------


def test_provider_at_several_locations_counts_once_at_the_primary_one():
    rows = [
        dict(npi=make_npi(1), address_line_1="1 Primary Rd", zip5="70001", cluster_id="A", location_seq=None),
        dict(npi=make_npi(1), address_line_1="2 Secondary Rd", zip5="70002", cluster_id="B", location_seq=1),
        dict(npi=make_npi(2), address_line_1="3 Other Rd", zip5="70002", cluster_id="B", location_seq=None),
    ]
    result = score_providers(make_providers(rows, {"location_seq": pl.Int64}))
    assert result.provider_scores["npi"].to_list() == [make_npi(1), make_npi(2)]
    assert result.provider_scores.filter(pl.col("npi") == make_npi(1))["cluster_id"].item() == "A"
    dup = result.report.filter(pl.col("reason") == "duplicate_npi_location")
    assert dup.height == 1 and dup["npi"].item() == make_npi(1) and "Secondary" in dup["raw_record"].item()
    assert result.scored_clusters["provider_count"].to_list() == [1, 1]
    ok, details = check_score_integrity(result.provider_scores, result.scored_clusters)
    assert ok, details


def test_rows_without_npi_or_cluster_are_reported_not_dropped():
    rows = [
        dict(npi=make_npi(1), address_line_1="1 Primary Rd", zip5="70001", cluster_id="A"),
        dict(npi=make_npi(2), address_line_1="1 Primary Rd", zip5="70001", cluster_id=None),
        dict(npi=None, address_line_1="1 Primary Rd", zip5="70001", cluster_id="A"),
    ]
    result = score_providers(make_providers(rows))
    assert result.provider_scores["npi"].to_list() == [make_npi(1)]
    assert sorted(result.report["reason"].to_list()) == ["missing_cluster_id", "missing_npi"]
    # the unclustered provider still practises at the address and counts for practice size;
    # the row without an NPI is not an identifiable provider and does not
    assert result.provider_scores["practice_size"].item() == 2.0


def test_integrity_check_catches_duplicates_and_mismatches():
    result = score_providers(mixed_providers())
    doubled = pl.concat([result.provider_scores, result.provider_scores.head(1)])
    ok, details = check_score_integrity(doubled, result.scored_clusters)
    assert not ok and details["duplicate_npi_count"] == 1 and details["duplicate_npis"] == [doubled["npi"][0]]
    tampered = result.scored_clusters.with_columns(
        pl.when(pl.col("cluster_id") == "C1")
        .then(pl.col("opportunity_score") + 0.5)
        .otherwise(pl.col("opportunity_score"))
        .alias("opportunity_score")
    )
    ok, details = check_score_integrity(result.provider_scores, tampered)
    assert not ok and details["mismatched_clusters"] == ["C1"] and details["clusters_breakdown_not_adding_up"] == 1
    broken = result.provider_scores.with_columns((pl.col("contrib_setting") + 1e-3).alias("contrib_setting"))
    ok, details = check_score_integrity(broken, result.scored_clusters)
    assert not ok and details["providers_breakdown_not_adding_up"] == broken.height


# --- bad provider input, determinism, presentation ------------------------------------------------------


def test_missing_provider_column_names_it():
    providers = mixed_providers().drop("practice_setting")
    with pytest.raises(ValueError, match="'practice_setting'"):
        score_providers(providers)


def test_non_numeric_or_negative_provider_values_are_clear_errors():
    providers = mixed_providers().with_columns(pl.lit("many").alias("num_org_mem"))
    with pytest.raises(ValueError, match="num_org_mem.*'many'"):
        score_providers(providers)
    providers = mixed_providers().with_columns(pl.lit(-3.0).alias("procedure_services"))
    with pytest.raises(ValueError, match="procedure_services is negative"):
        score_providers(providers)
    providers = mixed_providers().with_columns(pl.lit("maybe").alias("hospital_affiliated"))
    with pytest.raises(ValueError, match="hospital_affiliated.*'maybe'"):
        score_providers(providers)


def test_text_flags_and_numbers_from_csv_are_read():
    providers = mixed_providers().with_columns(
        pl.lit("Y").alias("hospital_affiliated"), pl.lit(" 12 ").alias("num_org_mem")
    )
    scores = score_providers(providers).provider_scores
    assert set(scores["practice_size"]) == {12.0}
    assert "cms_hospital_affiliation" in set(scores["practice_type_source"])


def test_deterministic_regardless_of_input_row_order():
    providers = mixed_providers()
    first = score_providers(providers)
    again = score_providers(providers.sample(fraction=1.0, shuffle=True, seed=7))
    assert first.provider_scores.equals(again.provider_scores)
    assert first.scored_clusters.equals(again.scored_clusters)
    assert markdown_summary(first) == markdown_summary(again)
    assert first.summary == again.summary


def test_explain_provider_and_markdown_summary():
    providers = example_territories()
    result = score_providers(providers)
    row = result.provider_scores.filter(pl.col("cluster_id") == "SYS").head(1)
    text = explain_provider(row)
    assert f"NPI {row['npi'].item()} in cluster SYS" in text
    assert "system (practice_setting_hospital)" in text and "450 (cms_num_org_mem)" in text
    assert f"{row['opportunity_score'].item():.4f}" in text
    assert text.splitlines()[-1].strip().endswith(f"{row['opportunity_score'].item():.4f}")
    md = markdown_summary(result, top_n=1)
    assert "| setting.weights.asc | 1.2 |" in md
    top = md.split("### Top clusters")[1].split("### Bottom clusters")[0]
    bottom = md.split("### Bottom clusters")[1]
    assert "| ASC |" in top and "| SYS |" not in top
    assert "| SYS |" in bottom
    assert result.summary["top_clusters"][0]["cluster_id"] == "ASC"
    quantiles = result.summary["provider_score_quantiles"]
    assert quantiles["min"] <= quantiles["p50"] <= quantiles["max"]


def test_empty_providers_frame_scores_nothing():
    result = score_providers(
        make_providers([dict(npi=make_npi(1), zip5="10001", address_line_1="x", cluster_id="A")]).clear()
    )
    assert result.provider_scores.height == 0 and result.scored_clusters.height == 0
    ok, _ = check_score_integrity(result.provider_scores, result.scored_clusters)
    assert ok
    assert "0 providers in 0 clusters" in markdown_summary(result)


# --- real Medicare by-provider-and-service rows ------------------------------------------------------

REFERENCE = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "reference"
MUP_SAMPLE = REFERENCE / "real-samples" / "mup_phy_provider_service_2023_sample.csv"


@pytest.mark.skipif(not MUP_SAMPLE.is_file(), reason="shared reference files not available")
def test_scores_real_medicare_providers_with_their_procedure_volume():
    rows = pl.read_csv(MUP_SAMPLE, infer_schema=False)
    per_npi = (
        rows.with_columns(pl.col("Tot_Srvcs").cast(pl.Float64))
        .group_by("Rndrng_NPI")
        .agg(
            pl.col("Rndrng_Prvdr_St1").first().alias("address_line_1"),
            pl.col("Rndrng_Prvdr_Zip5").first().alias("zip5"),
            pl.col("Rndrng_Prvdr_State_Abrvtn").first().alias("cluster_id"),
            pl.col("Tot_Srvcs").sum().alias("procedure_services"),
            pl.when((pl.col("Place_Of_Srvc") == "F").mean() > 0.5)
            .then(pl.lit("hospital"))
            .otherwise(pl.lit("office"))
            .alias("practice_setting"),
        )
        .rename({"Rndrng_NPI": "npi"})
    )
    providers = make_providers(per_npi.to_dicts())
    result = score_providers(providers)
    assert result.provider_scores.height == per_npi.height == rows["Rndrng_NPI"].n_unique()
    assert result.report.height == 0
    ok, details = check_score_integrity(result.provider_scores, result.scored_clusters)
    assert ok, details
    expected = per_npi.select(
        "npi", (pl.col("procedure_services").log1p() / math.log1p(100)).clip(0.25, 2.0).alias("expected")
    )
    joined = result.provider_scores.join(expected, on="npi")
    assert joined["factor_procedure_volume"].to_list() == pytest.approx(joined["expected"].to_list(), rel=1e-12)
    assert result.scored_clusters["provider_count"].sum() == per_npi.height


def test_nan_procedure_volume_counts_as_not_given():
    providers = mixed_providers().with_columns(pl.lit(float("nan")).alias("procedure_services"))
    scores = score_providers(providers).provider_scores
    assert scores["procedure_services"].null_count() == scores.height
    assert set(scores["factor_procedure_volume"]) == {1.0}
