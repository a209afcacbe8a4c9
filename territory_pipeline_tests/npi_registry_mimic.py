"""A local mimic of the CMS NPI Registry API v2.1, for tests (importable by any test).

``NpiRegistryMimic`` is a ThreadingHTTPServer on 127.0.0.1 (port 0) serving
``/api/`` from an in-memory list of result dicts in the real 2.1 shape.  It
applies the search criteria the pipeline uses, the paging limits of the real
service (limit <= 200, skip <= 1000, so at most 1,200 records per query), the
``{"Errors": [...]}`` envelope with HTTP 200, and injectable faults (429 with
Retry-After, 503, dropped connection, truncated body, slow reply, malformed
JSON).

``make_provider`` builds a result in either payload vintage seen in real
recordings (see docs/data-sources.md §1):

* ``"2019"``: int ``number``, int-second epochs, ``basic.gender``, ``basic.name``,
  no ``practiceLocations`` key when empty, no ``endpoints``, ``desc`` without
  comma ("Orthopaedic Surgery Orthopaedic Surgery of the Spine").
* ``"2026"``: string ``number``, millisecond-string epochs, ``basic.sex``,
  ``practiceLocations`` and ``endpoints`` always present, ``desc`` with a comma
  ("Orthopaedic Surgery, Orthopaedic Surgery of the Spine").
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from territory_pipeline.universe.validation import npi_check_digit

MAX_LIMIT = 200
MAX_SKIP = 1000

# Real envelopes recorded in ropensci/npi fixtures api-8d2d52.json and api-c85286.json.
ERROR_NO_CRITERIA = {"field": "generic", "number": "04", "description": "No valid search criteria provided"}
ERROR_ENUMERATION_TYPE_ONLY = {
    "field": "enumeration_type",
    "number": "09",
    "description": "enumeration_type requires additional search criteria",
}
# INVENTED: the real numbers and wording for these cases were not recorded; the
# shape follows the real envelope.
ERROR_SKIP_TOO_LARGE = {"field": "skip", "number": "20", "description": "Field skip must be less than or equal to 1000"}
ERROR_LIMIT_TOO_LARGE = {"field": "limit", "number": "21", "description": "Field limit must be less than or equal to 200"}
ERROR_BAD_VERSION = {"field": "version", "number": "22", "description": "Unsupported API version; use version=2.1"}

SEARCH_CRITERIA = (
    "number",
    "taxonomy_description",
    "first_name",
    "last_name",
    "organization_name",
    "city",
    "state",
    "postal_code",
    "country_code",
)


@dataclass(frozen=True)
class Taxonomy:
    """One taxonomy entry of a provider (code and NUCC text)."""

    code: str
    classification: str
    specialization: str | None = None
    primary: bool = True
    state: str = ""
    license: str = ""
    taxonomy_group: str = ""

    def desc(self, vintage: str) -> str:
        if not self.specialization:
            return self.classification
        joiner = " " if vintage == "2019" else ", "
        return f"{self.classification}{joiner}{self.specialization}"


def make_address(
    *,
    purpose: str | None,
    address_1: str,
    city: str,
    state: str,
    postal_code: str,
    address_2: str | None = "",
    country_code: str = "US",
    telephone_number: str | None = "404-555-0100",
    update_date: str | None = None,
) -> dict[str, Any]:
    """An address in the API shape; ``purpose=None`` gives a practiceLocations[] entry."""
    address: dict[str, Any] = {
        "country_code": country_code,
        "country_name": "United States" if country_code == "US" else f"Unknown Country Name for {country_code}",
        "address_type": "DOM" if country_code == "US" else "FGN",
        "address_1": address_1,
    }
    if purpose is not None:
        address["address_purpose"] = purpose
    if address_2 is not None:
        address["address_2"] = address_2
    address.update({"city": city, "state": state, "postal_code": postal_code})
    if telephone_number is not None:
        address["telephone_number"] = telephone_number
    if update_date is not None:
        address["update_date"] = update_date
    return address


def make_provider(
    npi: str,
    *,
    vintage: str = "2026",
    enumeration_type: str = "NPI-1",
    first_name: str = "JANE",
    last_name: str = "DOE",
    middle_name: str | None = None,
    credential: str | None = "M.D.",
    organization_name: str = "",
    sex: str = "F",
    status: str = "A",
    taxonomies: Iterable[Taxonomy] = (),
    location: Mapping[str, Any] | None = None,
    mailing: Mapping[str, Any] | None = None,
    practice_locations: Iterable[Mapping[str, Any]] = (),
    enumeration_date: str = "2011-04-05",
    last_updated: str = "2018-05-08",
    created_epoch_s: int = 1301961600,
    last_updated_epoch_s: int = 1525737600,
) -> dict[str, Any]:
    """One result dict in the real 2.1 shape of ``vintage`` ("2019" or "2026")."""
    if vintage not in ("2019", "2026"):
        raise ValueError(f"vintage must be '2019' or '2026', got {vintage!r}")
    old = vintage == "2019"
    if enumeration_type == "NPI-2":
        basic: dict[str, Any] = {
            "organization_name": organization_name,
            "organizational_subpart": "NO",
            "enumeration_date": enumeration_date,
            "last_updated": last_updated,
            "status": status,
            "authorized_official_first_name": first_name,
            "authorized_official_last_name": last_name,
        }
        if old:
            basic["name"] = organization_name
    else:
        basic = {"first_name": first_name, "last_name": last_name}
        if middle_name:
            basic["middle_name"] = middle_name
        if credential:
            basic["credential"] = credential
        basic.update(
            {
                "sole_proprietor": "NO",
                ("gender" if old else "sex"): sex,
                "enumeration_date": enumeration_date,
                "last_updated": last_updated,
                "status": status,
            }
        )
        if old:
            basic["name"] = f"{last_name} {first_name}"
        else:
            basic["name_suffix"] = "--"
    location = dict(location) if location is not None else make_address(
        purpose="LOCATION", address_1="111 VICTORIA RD", city="ATLANTA", state="GA", postal_code="303033049"
    )
    mailing = dict(mailing) if mailing is not None else {**location, "address_purpose": "MAILING"}
    taxonomy_list = []
    for t in taxonomies:
        entry: dict[str, Any] = {"code": t.code, "desc": t.desc(vintage), "primary": t.primary}
        entry.update({"state": t.state, "license": t.license})
        if t.taxonomy_group or not old:
            entry["taxonomy_group"] = t.taxonomy_group
        taxonomy_list.append(entry)
    record: dict[str, Any] = {
        "enumeration_type": enumeration_type,
        "number": int(npi) if old else str(npi),
        "last_updated_epoch": last_updated_epoch_s if old else str(last_updated_epoch_s * 1000),
        "created_epoch": created_epoch_s if old else str(created_epoch_s * 1000),
        "basic": basic,
        "other_names": [],
        "addresses": [location, mailing] if old else [mailing, location],  # order is not fixed
        "taxonomies": taxonomy_list,
        "identifiers": [],
    }
    locations = [dict(p) for p in practice_locations]
    if locations or not old:
        record["practiceLocations"] = locations
    if not old:
        record["endpoints"] = []
    return record


def make_npi(index: int, *, offset: int = 10_000_000) -> str:
    """A valid (Luhn) individual NPI, distinct for each index."""
    body = f"1{offset + index:08d}"
    return body + npi_check_digit(body)


def make_universe(
    count: int,
    *,
    taxonomy: Taxonomy,
    state: str,
    zip3_prefixes: Iterable[str],
    seed: int = 0,
    vintage: str = "2026",
    npi_offset: int = 10_000_000,
) -> list[dict[str, Any]]:
    """``count`` distinct providers of one taxonomy in ``state``, ZIPs drawn under the prefixes."""
    rng = np.random.default_rng(seed)
    prefixes = list(zip3_prefixes)
    providers = []
    for i in range(count):
        zip5 = f"{prefixes[int(rng.integers(len(prefixes)))]}{int(rng.integers(100)):02d}"
        providers.append(
            make_provider(
                make_npi(i, offset=npi_offset),
                vintage=vintage,
                first_name=f"FIRST{i}",
                last_name=f"LAST{i}",
                taxonomies=[taxonomy],
                location=make_address(
                    purpose="LOCATION", address_1=f"{i} MAIN ST", city=f"CITY{zip5[:3]}", state=state,
                    postal_code=zip5 + f"{int(rng.integers(10000)):04d}",
                ),
            )
        )
    return providers


# --- matching -----------------------------------------------------------------


def _addresses_for(record: Mapping[str, Any], purpose: str | None) -> list[Mapping[str, Any]]:
    """The addresses a criterion applies to, per the CMS help text on address_purpose."""
    addresses = record.get("addresses") or []
    primary = [a for a in addresses if a.get("address_purpose") == "LOCATION"]
    mailing = [a for a in addresses if a.get("address_purpose") == "MAILING"]
    secondary = list(record.get("practiceLocations") or [])
    if purpose == "LOCATION":
        return primary + secondary
    if purpose == "PRIMARY":
        return primary
    if purpose == "SECONDARY":
        return secondary
    if purpose == "MAILING":
        return mailing
    return mailing + primary + secondary


def _postal_matches(value: str, wanted: str) -> bool:
    if wanted.endswith("*"):
        return value.startswith(wanted[:-1])
    if len(wanted) == 5:
        return value[:5] == wanted  # a 5-digit value matches every ZIP+4 under it
    return value == wanted


def record_matches(record: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """Whether ``record`` answers ``query`` (the criteria the mimic implements)."""
    if "number" in query and str(record.get("number")) != query["number"]:
        return False
    if "enumeration_type" in query and record.get("enumeration_type") != query["enumeration_type"]:
        return False
    if "taxonomy_description" in query:
        # ASSUMPTION: the real matching rule is unverified; the mimic matches a
        # case-insensitive substring of any taxonomy desc, which works with
        # both desc formats.
        wanted = query["taxonomy_description"].lower()
        if not any(wanted in str(t.get("desc", "")).lower() for t in record.get("taxonomies") or []):
            return False
    address_keys = [k for k in ("city", "state", "postal_code", "country_code") if k in query]
    if address_keys:
        candidates = _addresses_for(record, query.get("address_purpose"))

        def fits(address: Mapping[str, Any]) -> bool:
            for key in address_keys:
                value = str(address.get(key, ""))
                if key == "postal_code":
                    if not _postal_matches(value, query[key]):
                        return False
                elif value.upper() != query[key].upper():
                    return False
            return True

        if not any(fits(a) for a in candidates):
            return False
    return True


# --- the server ---------------------------------------------------------------


class _MimicServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up mid-reply (timeouts, injected faults)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class NpiRegistryMimic:
    """The mimic server; use as a context manager.  ``url`` ends with ``/api/``.

    ``inject(kind, times, **options)`` queues faults served before normal
    replies, in order: ``"429"`` (option ``retry_after``), ``"503"``,
    ``"drop"`` (close without a reply), ``"truncate"`` (Content-Length longer
    than the body), ``"slow"`` (option ``delay`` seconds, then a normal
    reply), ``"malformed"`` (HTTP 200, broken JSON).
    ``requests`` logs every request (path, params, headers).
    """

    def __init__(self, providers: Iterable[Mapping[str, Any]] = ()):
        self.providers: list[dict[str, Any]] = [dict(p) for p in providers]
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._server = _MimicServer(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def inject(self, kind: str, times: int = 1, **options: Any) -> None:
        if kind not in ("429", "503", "drop", "truncate", "slow", "malformed"):
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self._faults.extend((kind, options) for _ in range(times))

    def set_providers(self, providers: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.providers = [dict(p) for p in providers]

    def __enter__(self) -> NpiRegistryMimic:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- request handling ---------------------------------------------------

    def _next_fault(self) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def answer(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The JSON reply the real API would give to ``params`` (no faults)."""
        if params.get("version") != "2.1":
            return {"Errors": [ERROR_BAD_VERSION]}
        criteria = [k for k in SEARCH_CRITERIA if params.get(k)]
        if not criteria:
            if params.get("enumeration_type"):
                return {"Errors": [ERROR_ENUMERATION_TYPE_ONLY]}
            return {"Errors": [ERROR_NO_CRITERIA]}
        limit = int(params.get("limit", 10))
        skip = int(params.get("skip", 0))
        if limit > MAX_LIMIT:
            return {"Errors": [ERROR_LIMIT_TOO_LARGE]}
        if skip > MAX_SKIP:
            return {"Errors": [ERROR_SKIP_TOO_LARGE]}
        with self._lock:
            providers = list(self.providers)
        matched = sorted((p for p in providers if record_matches(p, params)), key=lambda p: str(p.get("number")))
        page = matched[skip : skip + limit]
        return {"result_count": len(page), "results": page}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        mimic = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, headers: Mapping[str, str] = {}, length: int | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                params = dict(parse_qsl(split.query, keep_blank_values=False))
                with mimic._lock:
                    mimic.requests.append({"path": split.path, "params": params, "headers": dict(self.headers)})
                if split.path.rstrip("/") != "/api":
                    self._send(404, b'{"error": "not found"}')
                    return
                fault = mimic._next_fault()
                if fault is not None:
                    kind, options = fault
                    if kind == "429":
                        headers = {}
                        if options.get("retry_after") is not None:
                            headers["Retry-After"] = str(options["retry_after"])
                        self._send(429, b'{"message": "Too Many Requests"}', headers)
                        return
                    if kind == "503":
                        self._send(503, b"<html><body>Service Unavailable</body></html>")
                        return
                    if kind == "drop":
                        self.close_connection = True
                        return
                    if kind == "truncate":
                        body = json.dumps(mimic.answer(params)).encode()
                        self._send(200, body[: len(body) // 2], length=len(body))
                        self.close_connection = True
                        return
                    if kind == "malformed":
                        self._send(200, b'{"result_count": 1, "results": [{"number": ')
                        return
                    time.sleep(float(options.get("delay", 1.0)))  # "slow"
                self._send(200, json.dumps(mimic.answer(params)).encode())

        return Handler
