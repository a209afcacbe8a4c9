"""Resumable download against a local mimic server: Range support, a dropped connection, a 503."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from territory_pipeline.universe.downloads import DownloadError, download

BODY = bytes((i * 7 + i // 251) % 256 for i in range(300_000))


class MimicServer:
    """Serves BODY at /file.zip; a script of faults is consumed one request at a time."""

    def __init__(self, faults: list[str], honour_range: bool = True) -> None:
        self.faults = list(faults)
        self.honour_range = honour_range
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fault = server.faults.pop(0) if server.faults else "ok"
                range_header = self.headers.get("Range")
                if self.path != "/file.zip" or fault == "404":
                    server.requests.append((self.path, range_header, 404))
                    self.send_error(404)
                    return
                if fault == "503":
                    server.requests.append((self.path, range_header, 503))
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                match = re.match(r"bytes=(\d+)-$", range_header or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
                    server.requests.append((self.path, range_header, 206))
                else:
                    self.send_response(200)
                    server.requests.append((self.path, range_header, 200))
                payload = BODY[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if fault == "drop":
                    self.wfile.write(payload[: len(payload) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/file.zip"

    def __enter__(self) -> Self:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "sub" / "NPPES_Data_Dissemination_November_2026_V2.zip"


def test_503_then_dropped_connection_then_resume(dest: Path) -> None:
    with MimicServer(["503", "drop", "ok"]) as server:
        result = download(server.url, dest, expected_size=len(BODY), chunk_size=4096)
    assert result == dest and dest.read_bytes() == BODY
    assert not dest.with_name(dest.name + ".part").exists()
    statuses = [(rng, status) for _, rng, status in server.requests]
    assert statuses[0] == (None, 503) and statuses[1] == (None, 200)
    resumed_from = int(re.match(r"bytes=(\d+)-", statuses[2][0]).group(1))
    assert statuses[2][1] == 206 and 0 < resumed_from < len(BODY)


def test_resume_existing_part_file(dest: Path) -> None:
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(BODY[:100_000])
    with MimicServer([]) as server:
        download(server.url, dest)
    assert dest.read_bytes() == BODY
    assert server.requests == [("/file.zip", "bytes=100000-", 206)]


def test_server_ignoring_range_restarts_from_zero(dest: Path) -> None:
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes")
    with MimicServer([], honour_range=False) as server:
        download(server.url, dest)
    assert dest.read_bytes() == BODY


def test_size_mismatch_and_404_raise(dest: Path) -> None:
    with MimicServer([]) as server:
        with pytest.raises(DownloadError, match="expected_size"):
            download(server.url, dest, expected_size=len(BODY) + 1)
        assert not dest.exists()
    with MimicServer(["404"]) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(server.url, dest.with_name("other.zip"))
        assert len(server.requests) == 1  # a 4xx is not retried


def test_retries_exhausted(dest: Path) -> None:
    with MimicServer(["503"] * 3) as server, pytest.raises(DownloadError, match="after 3 attempts"):
        download(server.url, dest, max_retries=3)
    assert [status for *_, status in server.requests] == [503, 503, 503]


def test_existing_complete_file_is_not_refetched(dest: Path) -> None:
    dest.parent.mkdir(parents=True)
    dest.write_bytes(BODY)
    with MimicServer([]) as server:
        download(server.url, dest, expected_size=len(BODY))
    assert server.requests == []


def test_local_source_is_a_path_or_a_cached_download(tmp_path):
    from territory_pipeline.universe.downloads import local_source

    given = tmp_path / "file.csv"
    given.write_text("a\n1\n")
    assert local_source(str(given), tmp_path / "cache") == given
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        local_source(str(tmp_path / "missing.csv"), tmp_path / "cache")
    cached = tmp_path / "cache" / "list1_2023.csv"
    cached.parent.mkdir()
    cached.write_text("already downloaded")
    # A URL already in the cache is not fetched again (no server is listening here).
    assert local_source("http://127.0.0.1:9/files/list1_2023.csv?x=1", tmp_path / "cache") == cached
