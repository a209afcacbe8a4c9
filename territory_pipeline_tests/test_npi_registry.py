"""Tests of the NPI Registry API client and parser against the local mimic server."""

from __future__ import annotations

import json
import socket
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import requests

from territory_pipeline import schemas
from territory_pipeline.universe import npi_registry as reg
from npi_registry_mimic import (
    NpiRegistryMimic,
    Taxonomy,
    make_address,
    make_npi,
    make_provider,
    make_universe,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
REAL_SAMPLES = REFERENCE / "real-samples" / "npi_registry_responses_2019"

# Real NUCC v25.1 rows (code, classification, specialization, display name).
TAXONOMY = pl.DataFrame(
    {
        "code": ["207X00000X", "207XS0117X", "2086S0129X", "207L00000X", "208800000X"],
        "classification": ["Orthopaedic Surgery", "Orthopaedic Surgery", "Surgery", "Anesthesiology", "Urology"],
        "specialization": [None, "Orthopaedic Surgery of the Spine", "Vascular Surgery", None, None],
        "display_name": [
            "Orthopaedic Surgery Physician",
            "Orthopaedic Surgery of the Spine Physician",
            "Vascular Surgery Physician",
            "Anesthesiology Physician",
            "Urology Physician",
        ],
    }
)
ORTHO = Taxonomy("207X00000X", "Orthopaedic Surgery")
SPINE = Taxonomy("207XS0117X", "Orthopaedic Surgery", "Orthopaedic Surgery of the Spine", state="GA", license="L1")
UROLOGY = Taxonomy("208800000X", "Urology")
TARGETS = ["207X00000X", "207XS0117X"]
GA_PREFIXES = [str(p) for p in range(300, 320)]


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(url: str, clock: FakeClock | None = None, **options) -> reg.NpiRegistryClient:
    clock = clock or FakeClock()
    settings = {"requests_per_second": 1000.0, "backoff_base": 0.01, "timeout": 5.0}
    settings.update(options)
    return reg.NpiRegistryClient(url, clock=clock, sleep=clock.sleep, **settings)


def responses_frame(payloads: list[tuple[dict, str]]) -> pl.DataFrame:
    """A RESPONSES frame from (payload, fetched_at) pairs, as if fetched."""
    rows = [
        {
            "query_key": "taxonomy_description=Orthopaedic+Surgery",
            "params_json": json.dumps({"taxonomy_description": "Orthopaedic Surgery", "skip": "0"}),
            "skip": 0,
            "http_status": 200,
            "result_count": len(payload.get("results", [])),
            "response_json": json.dumps(payload),
            "fetched_at": fetched_at,
        }
        for payload, fetched_at in payloads
    ]
    return pl.DataFrame(rows, schema=reg.RESPONSES)


def parse(responses: pl.DataFrame, **options) -> reg.RegistryParse:
    return reg.parse_registry_responses(responses, taxonomy=TAXONOMY, target_codes=TARGETS, **options)


# --- paging and the cap -----------------------------------------------------------


def test_pagination_reads_pages_until_a_short_one_and_sends_version_and_user_agent():
    with NpiRegistryMimic(make_universe(450, taxonomy=ORTHO, state="GA", zip3_prefixes=GA_PREFIXES)) as mimic:
        client = make_client(mimic.url)
        pages, capped = client.search_pages({"taxonomy_description": "Orthopaedic Surgery", "state": "GA"})
    assert [len(p.results) for p in pages] == [200, 200, 50]
    assert not capped
    assert [r["params"]["skip"] for r in mimic.requests] == ["0", "200", "400"]
    assert {r["params"]["limit"] for r in mimic.requests} == {"200"}
    assert {r["params"]["version"] for r in mimic.requests} == {"2.1"}
    agent = mimic.requests[0]["headers"]["User-Agent"]
    assert agent.startswith("territory_pipeline/") and "(+https://github.com/territory-pipeline)" in agent
    assert len({r["number"] for p in pages for r in p.results}) == 450


def test_exact_multiple_of_the_page_size_ends_on_an_empty_page_and_1200_counts_as_capped():
    universe = make_universe(1200, taxonomy=ORTHO, state="GA", zip3_prefixes=GA_PREFIXES)
    with NpiRegistryMimic(universe[:400]) as mimic:
        client = make_client(mimic.url)
        pages, capped = client.search_pages({"taxonomy_description": "Orthopaedic Surgery", "state": "GA"})
        assert [len(p.results) for p in pages] == [200, 200, 0] and not capped
        mimic.set_providers(universe)
        pages, capped = client.search_pages({"taxonomy_description": "Orthopaedic Surgery", "state": "GA"})
        assert [len(p.results) for p in pages] == [200] * 6 and capped
        # The mimic, like the real API, refuses skip beyond 1000 with an Errors envelope.
        with pytest.raises(reg.NpiRegistryError, match="skip"):
            client.get({"taxonomy_description": "Orthopaedic Surgery", "state": "GA", "skip": 1200, "limit": 200})


def test_universe_beyond_the_cap_is_pulled_whole_by_zip_prefix_splits():
    universe = make_universe(3000, taxonomy=ORTHO, state="GA", zip3_prefixes=GA_PREFIXES, seed=7)
    seen_progress: list[dict] = []
    with NpiRegistryMimic(universe) as mimic:
        client = make_client(mimic.url)
        pull = reg.fetch_universe(
            client, ["Orthopaedic Surgery"], ["GA"], progress=seen_progress.append, progress_every=10,
            show_progress_bar=False,
        )
    stats = pull.stats
    assert stats["unique_npis"] == 3000
    # root (capped) -> 0*..9*, of which 3* is capped -> 30*..39*, of which 30* and 31*
    # (about 1,500 each) are capped -> 300*..309* and 310*..319*: 1 + 10 + 10 + 2 x 10 queries.
    assert stats["queries"] == 41 and stats["splits"] == 4 and stats["capped_queries"] == 4
    # 4 capped queries x 6 pages + 37 queries answered by one short page.
    assert stats["requests"] == 4 * 6 + 37 == stats["pages"] == pull.responses.height
    assert stats["truncated_queries"] == []
    assert pull.responses.schema == pl.Schema(reg.RESPONSES)
    assert set(pull.responses["http_status"]) == {200}
    assert "postal_code=30%2A" not in set(pull.responses["query_key"])  # keys keep '*' readable
    assert "address_purpose=LOCATION&postal_code=30*&state=GA&taxonomy_description=Orthopaedic+Surgery" in set(
        pull.responses["query_key"]
    )
    assert {r["params"]["address_purpose"] for r in mimic.requests} == {"LOCATION"}
    # progress: every 10 requests and once at the end, counts never decrease
    assert len(seen_progress) >= 6
    assert seen_progress[-1] == {k: stats[k] for k in ("queries", "requests", "retries", "records", "splits")}
    assert all(a["requests"] <= b["requests"] for a, b in zip(seen_progress, seen_progress[1:]))

    first = parse(pull.responses)
    assert first.providers.height == 3000 and first.rejects.height == 0
    assert first.stats["duplicates"] == stats["records"] - 3000 > 0  # capped parents repeat their children
    assert first.providers["npi"].to_list() == sorted(p["number"] for p in universe)
    assert first.providers.equals(parse(pull.responses).providers)  # deterministic


def test_a_capped_five_digit_zip_raises_or_is_reported():
    universe = make_universe(1300, taxonomy=ORTHO, state="GA", zip3_prefixes=["303"])
    for provider in universe:
        provider["addresses"][1]["postal_code"] = "303030001"  # every LOCATION in ZIP 30303
    with NpiRegistryMimic(universe) as mimic:
        with pytest.raises(reg.NpiRegistryTruncated, match=r"postal_code=30303&.*1200 records at the finest split"):
            reg.fetch_universe(make_client(mimic.url), ["Orthopaedic Surgery"], ["GA"], show_progress_bar=False)
        pull = reg.fetch_universe(
            make_client(mimic.url), ["Orthopaedic Surgery"], ["GA"], on_truncated="report", show_progress_bar=False
        )
    assert pull.stats["truncated_queries"] == [
        "address_purpose=LOCATION&postal_code=30303&state=GA&taxonomy_description=Orthopaedic+Surgery"
    ]
    assert pull.stats["unique_npis"] == 1200


def test_fetch_universe_checks_its_arguments():
    client = make_client("http://127.0.0.1:9/api/")
    with pytest.raises(ValueError, match="unknown state codes"):
        reg.fetch_universe(client, ["Urology"], ["GA", "XX"])
    with pytest.raises(ValueError, match="taxonomy_descriptions"):
        reg.fetch_universe(client, [], ["GA"])
    assert client.requests == 0


# --- retries and errors --------------------------------------------------------------


def _one_provider_mimic() -> NpiRegistryMimic:
    return NpiRegistryMimic([make_provider(make_npi(1), taxonomies=[ORTHO])])


QUERY = {"taxonomy_description": "Orthopaedic Surgery", "state": "GA"}


def test_429_storm_honours_retry_after():
    clock = FakeClock()
    with _one_provider_mimic() as mimic:
        mimic.inject("429", times=4, retry_after=7)
        client = make_client(mimic.url, clock)
        page = client.get(QUERY)
    assert len(page.results) == 1
    assert client.requests == 5 and client.retries == 4
    assert [s for s in clock.sleeps if s > 1] == [7, 7, 7, 7]


def test_5xx_then_success_and_persistent_5xx_becomes_unavailable():
    with _one_provider_mimic() as mimic:
        mimic.inject("503", times=2)
        client = make_client(mimic.url)
        assert len(client.get(QUERY).results) == 1
        assert client.retries == 2
        mimic.inject("503", times=10)
        with pytest.raises(reg.NpiRegistryUnavailable, match=r"HTTP 503 .*state=GA.*4 attempts"):
            make_client(mimic.url, max_retries=3).get(QUERY)


def test_backoff_grows_exponentially_without_retry_after():
    clock = FakeClock()
    with _one_provider_mimic() as mimic:
        mimic.inject("503", times=4)
        make_client(mimic.url, clock, backoff_base=1.0, requests_per_second=1e6).get(QUERY)
    waits = [s for s in clock.sleeps if s > 0.01]
    assert len(waits) == 4
    for attempt, wait in enumerate(waits):  # initial * 2**n plus up to 1 s of jitter
        assert 2**attempt <= wait <= 2**attempt + 1.0


def test_dropped_connection_truncated_body_and_timeout_are_retried():
    with _one_provider_mimic() as mimic:
        mimic.inject("drop")
        mimic.inject("truncate")
        mimic.inject("slow", delay=0.6)
        client = make_client(mimic.url, timeout=0.2, malformed_json_retries=0)  # a short body must not pass as JSON
        page = client.get(QUERY)
    assert len(page.results) == 1
    assert client.retries == 3 and client.requests == 4


def test_errors_envelope_names_the_query_and_the_error_and_is_not_retried():
    with _one_provider_mimic() as mimic:
        client = make_client(mimic.url)
        with pytest.raises(reg.NpiRegistryError, match=r"enumeration_type=NPI-1.*09 enumeration_type requires") as info:
            client.get({"enumeration_type": "NPI-1"})
        assert info.value.errors[0]["number"] == "09"
        assert info.value.params["enumeration_type"] == "NPI-1"
        with pytest.raises(reg.NpiRegistryError, match="04 No valid search criteria provided"):
            client.get({})
    assert client.requests == 2 and client.retries == 0


def test_malformed_json_is_retried_a_couple_of_times_then_named():
    with _one_provider_mimic() as mimic:
        mimic.inject("malformed")
        client = make_client(mimic.url)
        assert len(client.get(QUERY).results) == 1
        assert client.retries == 1
        mimic.inject("malformed", times=5)
        before = len(mimic.requests)
        with pytest.raises(reg.NpiRegistryError, match=r"malformed JSON for query .*taxonomy_description=Ortho"):
            make_client(mimic.url, malformed_json_retries=2).get(QUERY)
        assert len(mimic.requests) - before == 3


def test_unreachable_server_raises_unavailable():
    with socket.socket() as probe:  # a port that was free and is now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}/api/", max_retries=3)
    with pytest.raises(reg.NpiRegistryUnavailable, match=rf"127.0.0.1:{port}/api/ is unreachable .*4 attempts"):
        client.get(QUERY)
    assert client.requests == 4 and client.retries == 3


def test_rate_limit_spaces_requests_on_the_injected_clock():
    clock = FakeClock()
    sent_at: list[float] = []

    class RecordingSession(requests.Session):
        def request(self, *args, **kwargs):
            sent_at.append(clock())
            return super().request(*args, **kwargs)

    with _one_provider_mimic() as mimic:
        client = make_client(mimic.url, clock, requests_per_second=4.0, session=RecordingSession())
        for _ in range(9):
            client.get(QUERY)
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:])]
    assert min(gaps) == pytest.approx(0.25)
    assert sent_at[-1] - sent_at[0] == pytest.approx(2.0)
    for start in sent_at:  # never more than 4 requests in any one-second window
        assert sum(start <= t < start + 1.0 for t in sent_at) <= 4


# --- parsing -----------------------------------------------------------------------


def _spine_surgeon(vintage: str, **overrides) -> dict:
    options = dict(
        vintage=vintage,
        first_name="ELISE",
        last_name="HIZA",
        middle_name="AILEEN",
        taxonomies=[SPINE, Taxonomy("207X00000X", "Orthopaedic Surgery", primary=False)],
        location=make_address(
            purpose="LOCATION", address_1="111 VICTORIA RD", address_2=None, city="ATLANTA", state="GA",
            postal_code="303033049", telephone_number="404-778-1567",
        ),
        practice_locations=[
            make_address(
                purpose=None, address_1="49 JESSE HILL JR DR SE", city="ATLANTA", state="GA",
                postal_code="30303", update_date="2017-09-11 10:35",
            )
        ],
    )
    options.update(overrides)
    return make_provider(make_npi(42), **options)


def test_both_payload_vintages_give_identical_provider_rows():
    frames = {}
    for vintage in ("2019", "2026"):
        record = _spine_surgeon(vintage)
        with NpiRegistryMimic([record]) as mimic:
            pull = reg.fetch_universe(
                make_client(mimic.url), ["Orthopaedic Surgery of the Spine"], ["GA"], show_progress_bar=False
            )
        frames[vintage] = parse(pull.responses)
    old, new = frames["2019"], frames["2026"]
    assert isinstance(_spine_surgeon("2019")["number"], int) and isinstance(_spine_surgeon("2026")["number"], str)
    assert old.providers.equals(new.providers) and old.secondary_locations.equals(new.secondary_locations)
    row = new.providers.row(0, named=True)
    assert new.providers.schema == pl.Schema(schemas.PROVIDERS)
    assert row["npi"] == make_npi(42) and len(row["npi"]) == 10
    assert row["provider_name"] == "HIZA, ELISE AILEEN" and row["sex"] == "F"
    assert (row["taxonomy_code"], row["taxonomy_classification"], row["taxonomy_specialization"]) == (
        "207XS0117X", "Orthopaedic Surgery", "Orthopaedic Surgery of the Spine"
    )
    assert row["all_taxonomy_codes"] == "207XS0117X|207X00000X"
    assert (row["address_line_1"], row["address_line_2"], row["postal_code"], row["zip5"]) == (
        "111 VICTORIA RD", None, "303033049", "30303"
    )
    assert row["phone"] == "4047781567" and row["source"] == "api"
    assert row["enumeration_date"] == date(2011, 4, 5) and row["last_update_date"] == date(2018, 5, 8)
    secondary = new.secondary_locations.row(0, named=True)
    assert (secondary["npi"], secondary["location_seq"], secondary["zip5"]) == (make_npi(42), 1, "30303")


def test_missing_practice_locations_key_gives_no_secondary_rows():
    record = _spine_surgeon("2019", practice_locations=[])
    assert "practiceLocations" not in record and "endpoints" not in record
    result = parse(responses_frame([({"result_count": 1, "results": [record]}, "2026-01-01T00:00:00+00:00")]))
    assert result.providers.height == 1 and result.secondary_locations.height == 0


def test_overlapping_state_queries_are_deduplicated():
    in_both = _spine_surgeon(
        "2026",
        practice_locations=[make_address(purpose=None, address_1="1 MAIN", city="MOBILE", state="AL", postal_code="36602")],
    )
    only_al = make_provider(
        make_npi(43), taxonomies=[ORTHO],
        location=make_address(purpose="LOCATION", address_1="2 MAIN", city="MOBILE", state="AL", postal_code="36602"),
    )
    with NpiRegistryMimic([in_both, only_al]) as mimic:
        pull = reg.fetch_universe(make_client(mimic.url), ["Orthopaedic Surgery"], ["AL", "GA"], show_progress_bar=False)
    assert pull.stats["records"] == 3 and pull.stats["unique_npis"] == 2 and pull.stats["queries"] == 2
    result = parse(pull.responses)
    assert result.providers.select("npi", "state").rows() == [(make_npi(42), "GA"), (make_npi(43), "AL")]
    assert result.stats["duplicates"] == 1


def test_dedupe_keeps_the_latest_last_updated_then_the_latest_fetch():
    older = _spine_surgeon("2019", last_updated_epoch_s=1500000000, last_updated="2017-07-14")
    newer = _spine_surgeon(
        "2026", last_updated_epoch_s=1600000000, last_updated="2020-09-13",
        location=make_address(purpose="LOCATION", address_1="9 NEW ST", city="MACON", state="GA", postal_code="31201"),
    )
    frame = responses_frame(
        [
            ({"result_count": 1, "results": [newer]}, "2026-01-01T00:00:00+00:00"),
            ({"result_count": 1, "results": [older]}, "2026-01-02T00:00:00+00:00"),  # fetched later, older data
        ]
    )
    row = parse(frame).providers.row(0, named=True)
    assert (row["city"], row["last_update_date"]) == ("MACON", date(2020, 9, 13))
    same_age = _spine_surgeon("2026", location=newer["addresses"][1])
    frame = responses_frame(
        [
            ({"result_count": 1, "results": [same_age]}, "2026-01-02T00:00:00+00:00"),
            ({"result_count": 1, "results": [_spine_surgeon("2026")]}, "2026-01-01T00:00:00+00:00"),
        ]
    )
    assert parse(frame).providers["city"].to_list() == ["MACON"]


def test_bogus_records_become_rejects_with_reasons():
    def located(**address) -> dict:
        return make_address(purpose="LOCATION", address_1="1 PEACHTREE", city="ATLANTA", **address)

    good = make_provider(make_npi(1), taxonomies=[ORTHO])
    bad_npi = make_provider(make_npi(2)[:9] + str((int(make_npi(2)[9]) + 1) % 10), taxonomies=[ORTHO])
    bad_zip = make_provider(make_npi(3), taxonomies=[ORTHO], location=located(state="GA", postal_code="3032"))
    foreign = make_provider(
        make_npi(4), taxonomies=[ORTHO], location=located(state="GEORGIA", postal_code="30329", country_code="AA")
    )
    bad_state = make_provider(make_npi(5), taxonomies=[ORTHO], location=located(state="GAS", postal_code="30329"))
    unknown_code = make_provider(make_npi(6), taxonomies=[Taxonomy("207Z99999X", "Orthopaedic Surgery")])
    inactive = make_provider(make_npi(7), taxonomies=[ORTHO], status="D")
    not_target = make_provider(make_npi(8), taxonomies=[UROLOGY, Taxonomy("207X00000X", "Ortho", primary=False)])
    organization = make_provider(
        make_npi(9), enumeration_type="NPI-2", organization_name="PEACHTREE ORTHOPEDICS", taxonomies=[ORTHO]
    )
    no_zip = make_provider(make_npi(10), taxonomies=[ORTHO], location=located(state="GA", postal_code=""))
    bad_type = make_provider(make_npi(11), taxonomies=[ORTHO])
    bad_type["enumeration_type"] = "NPI-3"
    no_primary = make_provider(
        make_npi(12), taxonomies=[Taxonomy("207X00000X", "Ortho", primary=False), Taxonomy("208800000X", "Uro", primary=False)]
    )
    mailing_only = make_provider(make_npi(13), taxonomies=[ORTHO])
    mailing_only["addresses"] = [a for a in mailing_only["addresses"] if a["address_purpose"] == "MAILING"]
    bad_date = make_provider(make_npi(14), taxonomies=[ORTHO], enumeration_date="04/05/2011")
    records = [good, bad_npi, bad_zip, foreign, bad_state, unknown_code, inactive, not_target, organization,
               no_zip, bad_type, no_primary, mailing_only, bad_date]
    frame = responses_frame([({"result_count": len(records), "results": records}, "2026-01-01T00:00:00+00:00")])

    result = parse(frame)
    assert result.providers["npi"].to_list() == [make_npi(1)]
    assert result.rejects.schema == pl.Schema(schemas.REJECTS)
    reasons = dict(zip(result.rejects["npi"], result.rejects["reason"]))
    assert reasons == {
        bad_npi["number"]: "invalid_npi",
        make_npi(3): "malformed_zip",
        make_npi(4): "non_us_address",
        make_npi(5): "non_us_address",
        make_npi(6): "unknown_taxonomy",
        make_npi(7): "inactive",
        make_npi(10): "missing_zip",
        make_npi(11): "invalid_entity_type",
        make_npi(12): "no_primary_taxonomy",
        make_npi(13): "no_practice_location",
        make_npi(14): "malformed_date",
    }
    assert result.stats["reject_reasons"]["non_us_address"] == 2
    foreign_reject = result.rejects.filter(pl.col("reason") == "non_us_address").row(0, named=True)
    assert "'AA'" in foreign_reject["detail"] and json.loads(foreign_reject["raw_record"])["number"] == make_npi(4)
    assert result.stats["non_target_primary"] == 1 and result.stats["organizations_excluded"] == 1

    with_orgs = parse(frame, include_organizations=True)
    org = with_orgs.providers.filter(pl.col("entity_type") == "organization").row(0, named=True)
    assert org["provider_name"] == "PEACHTREE ORTHOPEDICS" and org["first_name"] is None


def test_parser_refuses_bad_inputs_clearly():
    envelope = {"Errors": [{"field": "generic", "number": "04", "description": "No valid search criteria provided"}]}
    with pytest.raises(reg.NpiRegistryError, match=r"rejected query skip=0&taxonomy_description=Orthopaedic\+Surgery: 04 "):
        parse(responses_frame([(envelope, "2026-01-01T00:00:00+00:00")]))
    broken = responses_frame([({"results": []}, "2026-01-01T00:00:00+00:00")]).with_columns(
        pl.lit("{not json").alias("response_json")
    )
    with pytest.raises(reg.NpiRegistryError, match="not valid JSON"):
        parse(broken)
    with pytest.raises(ValueError, match="target codes not in the taxonomy reference"):
        reg.parse_registry_responses(broken, taxonomy=TAXONOMY, target_codes=["999999999X"])


def test_split_postal_code_levels():
    assert reg.split_postal_code(None)[:2] == ["0*", "1*"]
    assert reg.split_postal_code("30*") == [f"30{d}*" for d in range(10)]
    assert reg.split_postal_code("3030*") == [f"3030{d}" for d in range(10)]
    assert reg.split_postal_code("30303") is None


# --- the real 2019 recordings ------------------------------------------------------------


@pytest.fixture(scope="module")
def nucc_taxonomy() -> pl.DataFrame:
    path = REFERENCE / "nucc_taxonomy_251.csv"
    if not path.exists():
        pytest.skip("shared reference NUCC taxonomy absent")
    frame = pl.read_csv(path, infer_schema=False)
    return frame.select(
        pl.col("Code").str.strip_chars().alias("code"),
        pl.col("Classification").str.strip_chars().alias("classification"),
        pl.col("Specialization").str.strip_chars().alias("specialization"),
        pl.col("Display Name").str.strip_chars().alias("display_name"),
    )


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="shared reference recordings absent")
@pytest.mark.parametrize(
    "name, providers, rejects, secondary",
    [("api-1f9cef", 10, 0, 10), ("api-8bdc8b", 1, 0, 1), ("api-a2f836", 0, 0, 0), ("api-b2f594", 1, 0, 1),
     ("api-f7d8ea", 9, 1, 0)],
)
def test_real_recordings_parse(nucc_taxonomy, name, providers, rejects, secondary):
    frame = responses_frame([(json.loads((REAL_SAMPLES / f"{name}.json").read_text()), "2019-06-01T00:00:00+00:00")])
    result = reg.parse_registry_responses(
        frame, taxonomy=nucc_taxonomy, target_codes=nucc_taxonomy["code"].to_list(), include_organizations=True
    )
    assert (result.providers.height, result.rejects.height, result.secondary_locations.height) == (
        providers, rejects, secondary
    )
    assert result.providers["npi"].str.len_chars().to_list() == [10] * providers
    assert result.providers["taxonomy_display_name"].null_count() == 0
    if name == "api-f7d8ea":  # the real bogus record: country AA, state GEORGIA
        assert result.rejects.select("npi", "reason").row(0) == ("1053975268", "non_us_address")
    if name == "api-b2f594":
        row = result.providers.row(0, named=True)
        assert (row["provider_name"], row["sex"], row["taxonomy_code"]) == ("HIZA, ELISE AILEEN", "F", "207X00000X")
        assert result.secondary_locations["state"].to_list() == ["GA"]


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="shared reference recordings absent")
@pytest.mark.parametrize("name, number", [("api-c85286", "09"), ("api-8d2d52", "04")])
def test_real_error_envelopes_raise(nucc_taxonomy, name, number):
    frame = responses_frame([(json.loads((REAL_SAMPLES / f"{name}.json").read_text()), "2019-06-01T00:00:00+00:00")])
    with pytest.raises(reg.NpiRegistryError, match=f": {number} ") as info:
        reg.parse_registry_responses(frame, taxonomy=nucc_taxonomy, target_codes=["207X00000X"])
    assert info.value.errors[0]["number"] == number

