"""NUCC taxonomy loading, the built-in fallback, and target-code resolution."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from territory_pipeline.universe.taxonomy import (
    BUILTIN_TAXONOMY,
    BUILTIN_TAXONOMY_CODES,
    NUCC_TAXONOMY_URL,
    TaxonomyFormatError,
    load_taxonomy,
    resolve_target_codes,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
NUCC = REFERENCE / "nucc_taxonomy_251.csv"
COLUMNS = ["code", "grouping", "classification", "specialization", "definition", "notes", "display_name", "section"]

# Three rows in the real NUCC style: CRLF, quoted fields with embedded commas and <br/>.
MINI_NUCC = (
    "Code,Grouping,Classification,Specialization,Definition,Notes,Display Name,Section\r\n"
    '207X00000X,Allopathic & Osteopathic Physicians,Orthopaedic Surgery,,"An orthopaedic surgeon is trained in the '
    'preservation, investigation and restoration of the form and function of the extremities, spine and associated '
    'structures by medical, surgical and physical means.","Source: American Board of Medical Specialties, 2009.<br/>'
    '<br/>[7/1/2003: new]",Orthopaedic Surgery Physician,Individual\r\n'
    "207XS0117X,Allopathic & Osteopathic Physicians,Orthopaedic Surgery,Orthopaedic Surgery of the Spine,,,"
    "Orthopaedic Surgery of the Spine Physician,Individual\r\n"
    "207T00000X,Allopathic & Osteopathic Physicians,Neurological Surgery,,,,Neurological Surgery Physician,Individual\r\n"
)


def test_load_mini_file_with_quotes_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "nucc.csv"
    path.write_bytes(MINI_NUCC.encode())
    taxonomy = load_taxonomy(path)
    assert taxonomy.columns == COLUMNS
    assert taxonomy["code"].to_list() == ["207T00000X", "207X00000X", "207XS0117X"]
    ortho = taxonomy.filter(pl.col("code") == "207X00000X").row(0, named=True)
    assert ortho["definition"].startswith("An orthopaedic surgeon is trained in the preservation, investigation")
    assert "<br/>" in ortho["notes"] and ortho["specialization"] is None and ortho["section"] == "Individual"


def test_builtin_fallback_matches_doc_values() -> None:
    assert BUILTIN_TAXONOMY.columns == COLUMNS
    assert {"207XS0117X", "207T00000X", "207X00000X", "261QA1903X", "282N00000X", "193200000X", "193400000X",
            "208VP0014X", "2081P2900X", "208100000X", "2084P2900X", "207LP2900X", "208VP0000X"} <= BUILTIN_TAXONOMY_CODES
    asc = BUILTIN_TAXONOMY.filter(pl.col("code") == "261QA1903X").row(0, named=True)
    assert (asc["grouping"], asc["classification"], asc["specialization"], asc["display_name"], asc["section"]) == (
        "Ambulatory Health Care Facilities", "Clinic/Center", "Ambulatory Surgical", "Ambulatory Surgical Clinic/Center",
        "Non-Individual",
    )
    assert load_taxonomy(None) is BUILTIN_TAXONOMY


@pytest.mark.skipif(not NUCC.exists(), reason="shared reference files absent")
def test_real_nucc_file_and_builtin_agree() -> None:
    taxonomy = load_taxonomy(NUCC)
    assert taxonomy.height == 883
    assert taxonomy.filter(pl.col("section") == "Individual").height == 698
    assert taxonomy.filter(pl.col("notes").str.contains("<br/>", literal=True)).height > 0
    # every built-in row equals the official row (definition and notes are left out of the fallback)
    keep = ["code", "grouping", "classification", "specialization", "display_name", "section"]
    official = taxonomy.filter(pl.col("code").is_in(list(BUILTIN_TAXONOMY_CODES))).select(keep).sort("code")
    assert official.equals(BUILTIN_TAXONOMY.select(keep))


@pytest.mark.skipif(not NUCC.exists(), reason="shared reference files absent")
def test_resolve_classification_gives_all_specializations() -> None:
    taxonomy = load_taxonomy(NUCC)
    codes = resolve_target_codes(taxonomy, codes=["207t00000x"], classifications=["Orthopaedic Surgery"])
    assert codes == sorted(["207T00000X", "207X00000X", "207XS0114X", "207XS0106X", "207XS0117X", "207XX0004X",
                            "207XX0005X", "207XX0801X", "207XP3100X"])
    pain = resolve_target_codes(taxonomy, specializations=["Interventional Pain Medicine"])
    assert pain == ["208VP0014X"]


def test_resolve_unknown_names_raise_listing_all() -> None:
    with pytest.raises(ValueError) as info:
        resolve_target_codes(BUILTIN_TAXONOMY, codes=["207X00000X", "2086S0129X"], classifications=["Dermatology"])
    message = str(info.value)
    assert "2086S0129X" in message and "Dermatology" in message and "built-in fallback" in message
    assert resolve_target_codes(BUILTIN_TAXONOMY, classifications=["neurological surgery"]) == ["207T00000X"]


def test_bad_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "not_nucc.csv"
    path.write_text("Code,Name\n1,x\n")
    with pytest.raises(TaxonomyFormatError, match="missing columns"):
        load_taxonomy(path)
    dup = tmp_path / "dup.csv"
    dup.write_bytes((MINI_NUCC + MINI_NUCC.split("\r\n", 2)[1] + "\r\n").encode())
    with pytest.raises(TaxonomyFormatError, match="207X00000X"):
        load_taxonomy(dup)


def test_download_from_url_into_cache(tmp_path: Path) -> None:
    """A URL is fetched once through downloads.download from a local mimic of nucc.org."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = MINI_NUCC.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/images/stories/CSV/nucc_taxonomy_251.csv"
        first = load_taxonomy(url, cache_dir=tmp_path)
        second = load_taxonomy(url, cache_dir=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert first.equals(second) and first.height == 3
    assert hits == ["/images/stories/CSV/nucc_taxonomy_251.csv"]  # the second call used the cached file
    assert (tmp_path / "nucc_taxonomy_251.csv").exists()
    assert NUCC_TAXONOMY_URL.endswith("/images/stories/CSV/nucc_taxonomy_251.csv")
