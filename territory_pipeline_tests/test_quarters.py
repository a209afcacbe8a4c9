"""Backfilling two quarters: the second is a micro-adjustment of the first, geocodes nothing
new, and the customer file changes the scores as documented."""

import dagster as dg
import duckdb
import polars as pl
import pytest


def table(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.sql(sql).pl()


def test_two_quarters_back_to_back(pipeline_env, monkeypatch, tmp_path):
    from territory_pipeline.definitions import defs

    db = pipeline_env["duckdb"]
    job = defs().resolve_job_def("quarterly_refresh_job")
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(partition_key="2026-04-01", instance=instance)
        assert first.success
        providers = table(db, "select npi from providers where refresh_quarter = '2026-04-01' order by npi")["npi"]
        customers = tmp_path / "customers.csv"
        pl.DataFrame(
            {
                "npi": providers.head(30).to_list() + ["1234567893"],
                "account_status": ["active"] * 31,
                "revenue": [50_000.0] * 31,
                "product": ["spine-fusion"] * 31,
            }
        ).write_csv(customers)
        monkeypatch.setenv("TERRITORY_CUSTOMERS_FILE", str(customers))
        second = defs().resolve_job_def("quarterly_refresh_job").execute_in_process(partition_key="2026-07-01", instance=instance)
        assert second.success
    history = table(db, "select alignment_id, mode, previous_alignment_id from alignment_history order by refresh_quarter")
    assert history["mode"].to_list() == ["full", "micro"]
    assert history["previous_alignment_id"][1] == history["alignment_id"][0]
    geocoded = table(db, "select geocode_from_cache from geocoded_providers where refresh_quarter = '2026-07-01'")
    assert geocoded["geocode_from_cache"].all()  # the later quarter geocodes nothing new
    scores = table(
        db,
        "select q2.npi, q2.opportunity_score as before, q3.opportunity_score as after, q3.share, q3.contrib_customer_share "
        "from provider_scores q2 join provider_scores q3 using (npi) "
        "where q2.refresh_quarter = '2026-04-01' and q3.refresh_quarter = '2026-07-01'",
    )
    customers_rows = scores.filter(pl.col("npi").is_in(providers.head(30).implode()))
    assert (customers_rows["share"] > 0).all()
    assert (customers_rows["after"] < customers_rows["before"]).all()  # growth = potential x (1 - share)
    assert (customers_rows["contrib_customer_share"] < 0).all()
    others = scores.filter(~pl.col("npi").is_in(providers.head(30).implode()))
    assert others["after"].to_list() == pytest.approx(others["before"].to_list())
    report = table(db, "select source, npi, reason from scoring_report where refresh_quarter = '2026-07-01'")
    assert report.filter(pl.col("source") == "customers")["npi"].to_list() == ["1234567893"]
    changes = table(db, "select change_type from alignment_changes where refresh_quarter = '2026-07-01'")
    assert "new" not in set(changes["change_type"])  # the same providers: only moves, if any
