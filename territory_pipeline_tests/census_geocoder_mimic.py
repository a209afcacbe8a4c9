"""A local mimic of the US Census Geocoder batch endpoint, for tests.

It serves ``POST {base}/locations/addressbatch`` and
``POST {base}/geographies/addressbatch`` on 127.0.0.1 (a free port) and
behaves like the real service as described in docs/data-sources.md §5:

* multipart/form-data with ``addressFile`` (header-less CSV, 5 fields a row),
  ``benchmark`` (both endpoints) and ``vintage`` (geographies only); a missing
  field, an unknown benchmark or a row that is not 5 fields answers 400;
* more than 10,000 records answers 400 with the service's limit message;
* the answer is a header-less CSV, every field quoted, rows shuffled (seeded),
  ``Match`` rows carry one ``"lon,lat"`` field and, for geographies, state /
  county / tract / block; ``No_Match`` and ``Tie`` rows have 3 fields (or are
  padded with empty fields when ``pad_short_rows`` is set);
* failures can be queued for the next requests: an HTTP status (500, 503 ...),
  ``"drop"`` (the connection is closed without an answer) or ``"slow"`` (the
  answer comes after ``slow_seconds``, so a client with a shorter timeout gives up).

Known addresses are registered with :meth:`CensusGeocoderMimic.add_match` or
:meth:`add_tie`, keyed by the upper-cased (street, city, state, zip); any other
address is a ``No_Match``.
"""

from __future__ import annotations

import csv
import io
import random
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

LIMIT = 10_000
KNOWN_BENCHMARKS = frozenset({"Public_AR_Current", "4", "Public_AR_ACS2024", "8"})
KNOWN_VINTAGES = frozenset({"Current_Current", "4", "Census2020_Current", "ACS2024_Current"})


@dataclass(frozen=True)
class MimicMatch:
    """The answer for one known address."""

    longitude: float
    latitude: float
    match_type: str = "Exact"
    matched_address: str = ""
    tiger_line_id: str = "76225813"
    side: str = "L"
    state_fips: str = "04"
    county: str = "013"
    tract: str = "114100"
    block: str = "1001"


@dataclass
class MimicRequest:
    """What the mimic saw in one request."""

    path: str
    fields: dict[str, str]
    rows: list[list[str]] = field(default_factory=list)


def _key(street: str, city: str, state: str, zip5: str) -> tuple[str, str, str, str]:
    return (street.strip().upper(), city.strip().upper(), state.strip().upper(), zip5.strip()[:5])


class CensusGeocoderMimic:
    """Start with ``with CensusGeocoderMimic() as mimic:``; ``mimic.base_url`` ends in ``/geocoder/``."""

    def __init__(self, *, seed: int = 7, pad_short_rows: bool = False, slow_seconds: float = 2.0) -> None:
        self.matches: dict[tuple[str, str, str, str], MimicMatch] = {}
        self.ties: set[tuple[str, str, str, str]] = set()
        self.failures: list[int | str] = []
        self.requests: list[MimicRequest] = []
        self.attempts = 0  # every POST, including the ones answered by a queued failure
        self.pad_short_rows = pad_short_rows
        self.slow_seconds = slow_seconds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- configuration -------------------------------------------------------
    def add_match(self, street: str, city: str, state: str, zip5: str, answer: MimicMatch) -> None:
        self.matches[_key(street, city, state, zip5)] = answer

    def add_tie(self, street: str, city: str, state: str, zip5: str) -> None:
        self.ties.add(_key(street, city, state, zip5))

    def fail_next(self, *failures: int | str) -> None:
        """Queue failures for the next requests: HTTP status codes, ``"drop"`` or ``"slow"``."""
        with self._lock:
            self.failures.extend(failures)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/geocoder/"

    @property
    def addresses_seen(self) -> int:
        return sum(len(r.rows) for r in self.requests)

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the service ---------------------------------------------------------
    def _answer(self, path: str, fields: dict[str, str], payload: str) -> tuple[int, str]:
        returntype = path.rstrip("/").split("/")[-2] if path.count("/") >= 2 else ""
        if (
            not path.startswith("/geocoder/")
            or not path.endswith("/addressbatch")
            or returntype
            not in (
                "locations",
                "geographies",
            )
        ):
            return 404, f"Not Found: {path}"
        if "addressFile" not in fields:
            return 400, "Error: addressFile is required"
        benchmark = fields.get("benchmark")
        if benchmark not in KNOWN_BENCHMARKS:
            return 400, f"Error: invalid benchmark {benchmark!r}"
        if returntype == "geographies" and fields.get("vintage") not in KNOWN_VINTAGES:
            return 400, f"Error: invalid vintage {fields.get('vintage')!r}"
        rows = [row for row in csv.reader(io.StringIO(payload)) if row]
        with self._lock:
            self.requests.append(
                MimicRequest(path=path, fields={k: v for k, v in fields.items() if k != "addressFile"}, rows=rows)
            )
        if len(rows) > LIMIT:
            return 400, "Error: There is currently an upper limit of 10,000 records per batch file."
        for row in rows:
            if len(row) != 5:
                return 400, f"Error: each record needs 5 fields (id, street, city, state, zip); got {row!r}"
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        width = 12 if returntype == "geographies" else 8
        answers = []
        for record_id, street, city, state, zip5 in rows:
            key = _key(street, city, state, zip5)
            input_address = ", ".join(part for part in (street, city, state, zip5) if part)
            if key in self.matches:
                m = self.matches[key]
                line = [
                    record_id,
                    input_address,
                    "Match",
                    m.match_type,
                    m.matched_address or input_address.upper(),
                    f"{m.longitude},{m.latitude}",
                    m.tiger_line_id,
                    m.side,
                ]
                if returntype == "geographies":
                    line += [m.state_fips, m.county, m.tract, m.block]
            else:
                line = [record_id, input_address, "Tie" if key in self.ties else "No_Match"]
                if self.pad_short_rows:
                    line += [""] * (width - 3)
            answers.append(line)
        with self._lock:
            self._rng.shuffle(answers)
        writer.writerows(answers)
        return 200, out.getvalue()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        mimic = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # silence the test log
                return

            def do_POST(self) -> None:  # http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with mimic._lock:
                    mimic.attempts += 1
                    failure = mimic.failures.pop(0) if mimic.failures else None
                if failure == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if failure == "slow":
                    time.sleep(mimic.slow_seconds)
                if isinstance(failure, int):
                    self._send(failure, f"<html><body>Error {failure}</body></html>", "text/html")
                    return
                fields = _multipart_fields(self.headers.get("Content-Type", ""), body)
                if fields is None:
                    self._send(400, "Error: expected multipart/form-data", "text/plain")
                    return
                status, text = mimic._answer(self.path, fields, fields.get("addressFile", ""))
                self._send(status, text, "text/csv" if status == 200 else "text/plain")

            def _send(self, status: int, text: str, content_type: str) -> None:
                data = text.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout): nothing to answer

        return Handler


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    if not content_type.startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True).decode("utf-8")
    return fields
