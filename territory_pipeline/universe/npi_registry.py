"""Client of the CMS NPPES NPI Registry API v2.1 and parser of its raw responses.

Two halves, kept apart so that a quarter's raw responses can be stored (DuckDB)
and the ``providers`` frame rebuilt later without calling the API again:

* :func:`fetch_universe` pulls every provider of the target taxonomy
  descriptions in the target states and returns the raw responses as a polars
  frame (``RESPONSES`` columns) plus run statistics.
* :func:`parse_registry_responses` turns that frame into the ``PROVIDERS``,
  ``REJECTS`` and ``SECONDARY_LOCATIONS`` contracts of ``schemas.py``.

The 1,200-record ceiling
    The API returns at most 200 records per request (``limit``) and accepts
    ``skip`` up to 1,000, so one query reaches at most 1,200 records.  A query
    whose sixth page (``skip=1000``) is still full is *capped*: it may hide more
    records.  A capped query is split on the practice ZIP: no ``postal_code``
    -> ``0*`` .. ``9*`` -> ``30*`` .. ``39*`` -> ``300*`` .. -> ``3000*`` .. ->
    the exact 5-digit ``30000`` .. ``30009`` (a 5-digit value matches every
    ZIP+4 under it).  Ten children per level partition the parent exhaustively
    and disjointly, so a universe of any size is pulled whole.  City is not
    used to split: city names cannot be enumerated from the API, so a split by
    city could not be shown to be exhaustive.  If a 5-digit ZIP is itself
    capped the pull fails with :class:`NpiRegistryTruncated` (or, with
    ``on_truncated="report"``, lists the query in ``stats["truncated_queries"]``).

``address_purpose``
    Queries send ``address_purpose=LOCATION`` by default.  Per the CMS help
    text, without it ``state``/``postal_code`` may match the *mailing* address;
    with ``LOCATION`` they match a practice location (primary or secondary),
    and ``PRIMARY`` would restrict them to the primary one.  ``LOCATION`` is
    the documented superset: every provider whose primary practice lies in a
    state is returned by that state's queries, and providers also found
    through a secondary location elsewhere are removed by the per-NPI dedupe.

Retries
    429, 5xx, timeouts and dropped connections (``ConnectionError``,
    ``ChunkedEncodingError``) are retried by tenacity with exponential backoff
    and jitter, honouring ``Retry-After``.  A 200 reply whose body is not JSON
    is retried at most ``malformed_json_retries`` times (default 2): a proxy
    hiccup may clear, a systematically broken reply will not.  The
    ``{"Errors": [...]}`` envelope (sent with HTTP 200) is never retried.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlencode

import polars as pl
import requests
import tenacity
from tqdm import tqdm

from territory_pipeline import schemas
from territory_pipeline.universe.validation import US_STATES, npi_check_digit_valid, zip_is_valid

NPI_REGISTRY_URL_DEFAULT = "https://npiregistry.cms.hhs.gov/api/"
API_VERSION = "2.1"
PAGE_LIMIT = 200  # the API's maximum ``limit``
MAX_SKIP = 1000  # the API's maximum ``skip``
QUERY_CAP = MAX_SKIP + PAGE_LIMIT  # records reachable by one query

#: The 50 states and DC: the default pull (territories are opt-in).
STATES_50_DC: tuple[str, ...] = tuple(sorted(US_STATES - {"PR", "VI", "GU", "AS", "MP"}))

#: Raw responses as kept by :func:`fetch_universe` (one row per page).
RESPONSES: dict[str, pl.DataType] = {
    "query_key": pl.Utf8,  # the query without paging, e.g. "address_purpose=LOCATION&state=GA&..."
    "params_json": pl.Utf8,  # every parameter sent, paging included, as sorted JSON
    "skip": pl.Int64,
    "http_status": pl.Int64,
    "result_count": pl.Int64,  # records on this page
    "response_json": pl.Utf8,  # the body exactly as received
    "fetched_at": pl.Utf8,  # ISO-8601 UTC
}

_PAGING_KEYS = frozenset({"version", "limit", "skip"})


def _package_version() -> str:
    try:
        return importlib.metadata.version("territory_pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"  # running from a source tree that is not installed


USER_AGENT = f"territory_pipeline/{_package_version()} (+https://github.com/territory-pipeline)"


# --- errors -------------------------------------------------------------------


class NpiRegistryError(RuntimeError):
    """The NPI Registry answered with an error, or with something unusable."""

    def __init__(self, message: str, *, params: Mapping[str, Any] | None = None, errors: list[dict] | None = None):
        super().__init__(message)
        self.params = dict(params or {})
        self.errors = list(errors or [])


class NpiRegistryUnavailable(NpiRegistryError):
    """The API could not be reached (or kept failing) after every retry."""


class NpiRegistryTruncated(NpiRegistryError):
    """A query is capped at 1,200 records even at the finest split (one 5-digit ZIP)."""


class _RetryableResponse(Exception):
    """An HTTP reply worth retrying (429 or 5xx)."""

    def __init__(self, status: int, retry_after: float | None, body: str):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.body = body


class _MalformedBody(Exception):
    """HTTP 200 whose body is not a JSON object."""

    def __init__(self, detail: str, body: str):
        super().__init__(detail)
        self.body = body


_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def describe_params(params: Mapping[str, Any]) -> str:
    """The query as a readable, stable string (sorted ``key=value`` pairs)."""
    return urlencode(sorted((k, str(v)) for k, v in params.items()), safe="*")


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# --- rate limiting and the client ----------------------------------------------


class RateLimiter:
    """Spaces calls at least ``1 / requests_per_second`` apart on a monotonic clock."""

    def __init__(
        self,
        requests_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be > 0, got {requests_per_second!r}")
        self.interval = 1.0 / requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._next_allowed: float | None = None
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until the next call is allowed; return the seconds waited."""
        with self._lock:
            now = self._clock()
            waited = 0.0
            if self._next_allowed is not None and now < self._next_allowed:
                waited = self._next_allowed - now
                self._sleep(waited)
                now = max(self._clock(), self._next_allowed)
            self._next_allowed = now + self.interval
            return waited


@dataclass(frozen=True)
class RegistryPage:
    """One successful reply of the API (a page of one query)."""

    params: dict[str, str]  # every parameter sent, paging included
    http_status: int
    payload: dict[str, Any]
    text: str  # the body exactly as received
    fetched_at: str  # ISO-8601 UTC

    @property
    def skip(self) -> int:
        return int(self.params.get("skip", 0))

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.payload.get("results") or []


class NpiRegistryClient:
    """HTTP client of the NPI Registry API v2.1 with retries and a request-rate limit.

    ``clock`` and ``sleep`` drive both the rate limiter and the retry backoff,
    so tests can inject a fake clock.  ``requests``/``retries`` count HTTP
    attempts and retried attempts over the client's life.
    """

    def __init__(
        self,
        base_url: str = NPI_REGISTRY_URL_DEFAULT,
        *,
        requests_per_second: float = 5.0,
        max_retries: int = 6,
        timeout: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        retry_after_max: float = 300.0,
        malformed_json_retries: int = 2,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_retries < 0 or malformed_json_retries < 0:
            raise ValueError("max_retries and malformed_json_retries must be >= 0")
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.malformed_json_retries = malformed_json_retries
        self.retry_after_max = retry_after_max
        self.session = session if session is not None else requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        self.limiter = RateLimiter(requests_per_second, clock=clock, sleep=sleep)
        self._sleep = sleep
        self._backoff = tenacity.wait_exponential_jitter(multiplier=backoff_base, max=backoff_max, jitter=backoff_base)
        self.requests = 0
        self.retries = 0

    # -- one request ----------------------------------------------------------

    def get(self, params: Mapping[str, Any]) -> RegistryPage:
        """GET one page for ``params`` (``version=2.1`` is always added).

        Raises :class:`NpiRegistryError` for the ``Errors`` envelope, a
        non-retryable HTTP status or a body that stays malformed, and
        :class:`NpiRegistryUnavailable` when every retry failed.
        """
        sent = {str(k): str(v) for k, v in params.items()}
        sent["version"] = API_VERSION
        malformed_seen = 0

        def should_retry(exc: BaseException) -> bool:
            nonlocal malformed_seen
            if isinstance(exc, _MalformedBody):
                malformed_seen += 1
                return malformed_seen <= self.malformed_json_retries
            return isinstance(exc, (_RetryableResponse, *_TRANSPORT_ERRORS))

        def before_sleep(_state: tenacity.RetryCallState) -> None:
            self.retries += 1

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(should_retry),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        query = describe_params(sent)
        try:
            return retrying(self._get_once, sent)
        except _RetryableResponse as exc:
            raise NpiRegistryUnavailable(
                f"NPI Registry kept answering HTTP {exc.status} for query {query} "
                f"({self.max_retries + 1} attempts); last body: {exc.body[:200]!r}",
                params=sent,
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise NpiRegistryUnavailable(
                f"NPI Registry at {self.base_url} is unreachable for query {query} after "
                f"{self.max_retries + 1} attempts: {type(exc).__name__}: {exc}",
                params=sent,
            ) from exc
        except _MalformedBody as exc:
            raise NpiRegistryError(
                f"NPI Registry returned malformed JSON for query {query} "
                f"({malformed_seen} times in a row): {exc}; body starts {exc.body[:200]!r}",
                params=sent,
            ) from exc

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, backoff), self.retry_after_max)
        return backoff

    def _get_once(self, sent: dict[str, str]) -> RegistryPage:
        self.limiter.acquire()
        self.requests += 1
        response = self.session.get(self.base_url, params=sent, timeout=self.timeout)
        text = response.text
        status = response.status_code
        if status == 429 or status >= 500:
            raise _RetryableResponse(status, _parse_retry_after(response.headers.get("Retry-After")), text)
        query = describe_params(sent)
        if status != 200:
            raise NpiRegistryError(f"NPI Registry answered HTTP {status} for query {query}: {text[:200]!r}", params=sent)
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise _MalformedBody(str(exc), text) from None
        if not isinstance(payload, dict):
            raise _MalformedBody(f"top level is {type(payload).__name__}, not an object", text)
        check_payload(payload, sent)
        return RegistryPage(
            params=sent,
            http_status=status,
            payload=payload,
            text=text,
            fetched_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        )

    # -- one query ------------------------------------------------------------

    def search_pages(self, params: Mapping[str, Any]) -> tuple[list[RegistryPage], bool]:
        """Every page of one query (limit 200, skip 0..1000).

        Returns the pages and whether the query is *capped*: its page at
        ``skip=1000`` was full, so records beyond the 1,200th may be hidden.
        """
        base = {k: v for k, v in params.items() if k not in _PAGING_KEYS}
        pages: list[RegistryPage] = []
        for skip in range(0, MAX_SKIP + 1, PAGE_LIMIT):
            page = self.get({**base, "limit": PAGE_LIMIT, "skip": skip})
            pages.append(page)
            if len(page.results) < PAGE_LIMIT:
                return pages, False
        return pages, True

    def search(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The response dicts of every page of one query (see :meth:`search_pages`)."""
        return [page.payload for page in self.search_pages(params)[0]]


def check_payload(payload: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Raise :class:`NpiRegistryError` for an ``Errors`` envelope or a reply without ``results``."""
    query = describe_params(params)
    if "Errors" in payload:
        errors = payload.get("Errors") or []
        listed = "; ".join(
            f"{e.get('number', '?')} {e.get('description', '')} (field {e.get('field', '?')})" for e in errors
        )
        raise NpiRegistryError(f"NPI Registry rejected query {query}: {listed}", params=params, errors=errors)
    if not isinstance(payload.get("results"), list):
        raise NpiRegistryError(
            f"NPI Registry reply for query {query} has no 'results' list (keys: {sorted(payload)})", params=params
        )


# --- the universe pull --------------------------------------------------------


@dataclass
class RegistryPull:
    """Raw responses of a universe pull (``RESPONSES`` columns) and its statistics."""

    responses: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def split_postal_code(postal_code: str | None) -> list[str] | None:
    """The ten ``postal_code`` values that partition a capped query, or None at 5 digits."""
    if postal_code is None:
        return [f"{d}*" for d in range(10)]
    prefix = postal_code.rstrip("*")
    if len(prefix) >= 5:
        return None
    if len(prefix) == 4:
        return [f"{prefix}{d}" for d in range(10)]  # exact 5-digit: matches every ZIP+4 under it
    return [f"{prefix}{d}*" for d in range(10)]


def fetch_universe(
    client: NpiRegistryClient,
    taxonomy_descriptions: Iterable[str],
    states: Iterable[str] | None = None,
    *,
    address_purpose: str | None = "LOCATION",
    progress: Callable[[dict[str, int]], None] | None = None,
    progress_every: int = 50,
    on_truncated: Literal["raise", "report"] = "raise",
    show_progress_bar: bool | None = None,
) -> RegistryPull:
    """Pull every record of the taxonomy descriptions in the states, splitting capped queries.

    One query per (taxonomy description, state); a capped query is replaced by
    ten ``postal_code`` children, recursively (see the module docstring).
    ``progress`` is called every ``progress_every`` requests and once at the
    end with counts (queries, requests, retries, records, splits).
    ``show_progress_bar=None`` shows a tqdm bar only on a TTY.

    ``stats``: queries, requests, retries, splits, capped_queries, pages,
    records (with repeats across queries), unique_npis, seconds,
    truncated_queries (list of query strings).
    """
    descriptions = list(dict.fromkeys(d.strip() for d in taxonomy_descriptions))
    if not descriptions or any(not d for d in descriptions):
        raise ValueError(f"taxonomy_descriptions must be non-empty strings, got {descriptions!r}")
    state_list = list(dict.fromkeys(s.strip().upper() for s in (states if states is not None else STATES_50_DC)))
    unknown = [s for s in state_list if s not in US_STATES]
    if unknown:
        raise ValueError(f"unknown state codes {unknown}; expected codes of validation.US_STATES")
    if on_truncated not in ("raise", "report"):
        raise ValueError(f"on_truncated must be 'raise' or 'report', got {on_truncated!r}")

    started = time.monotonic()
    requests_at_start, retries_at_start = client.requests, client.retries
    pending: list[dict[str, str]] = []
    for description in reversed(descriptions):
        for state in reversed(state_list):
            query = {"taxonomy_description": description, "state": state}
            if address_purpose:
                query["address_purpose"] = address_purpose
            pending.append(query)

    rows: list[dict[str, Any]] = []
    npis: set[str] = set()
    counts = {"queries": 0, "requests": 0, "retries": 0, "records": 0, "splits": 0}
    capped_queries = 0
    truncated: list[str] = []
    last_reported = 0

    def refresh_counts() -> None:
        counts["requests"] = client.requests - requests_at_start
        counts["retries"] = client.retries - retries_at_start

    disable_bar = None if show_progress_bar is None else not show_progress_bar  # None: off unless a TTY
    bar = tqdm(total=len(pending), unit="query", desc="NPI Registry", disable=disable_bar)
    try:
        while pending:
            query = pending.pop()
            counts["queries"] += 1
            pages, capped = client.search_pages(query)
            key = describe_params(query)
            for page in pages:
                rows.append(
                    {
                        "query_key": key,
                        "params_json": json.dumps(page.params, sort_keys=True),
                        "skip": page.skip,
                        "http_status": page.http_status,
                        "result_count": len(page.results),
                        "response_json": page.text,
                        "fetched_at": page.fetched_at,
                    }
                )
                counts["records"] += len(page.results)
                npis.update(_npi_string(r.get("number")) for r in page.results)
            if capped:
                capped_queries += 1
                children = split_postal_code(query.get("postal_code"))
                if children is None:
                    message = (
                        f"query {key} still returns the API maximum of {QUERY_CAP} records at the finest "
                        f"split (one 5-digit ZIP); records beyond {QUERY_CAP} are unreachable through the API"
                    )
                    if on_truncated == "raise":
                        raise NpiRegistryTruncated(message, params=query)
                    truncated.append(key)
                else:
                    counts["splits"] += 1
                    pending.extend({**query, "postal_code": child} for child in reversed(children))
                    bar.total += len(children)
            bar.update(1)
            refresh_counts()
            bar.set_postfix(requests=counts["requests"], records=counts["records"], refresh=False)
            if progress is not None and counts["requests"] - last_reported >= progress_every:
                last_reported = counts["requests"]
                progress(dict(counts))
    finally:
        bar.close()

    refresh_counts()
    if progress is not None:
        progress(dict(counts))
    stats: dict[str, Any] = {
        **counts,
        "capped_queries": capped_queries,
        "pages": len(rows),
        "unique_npis": len(npis),
        "seconds": round(time.monotonic() - started, 3),
        "truncated_queries": truncated,
    }
    responses = pl.DataFrame(rows, schema=RESPONSES) if rows else schemas.empty(RESPONSES)
    return RegistryPull(responses=responses, stats=stats)


# --- parsing ------------------------------------------------------------------


@dataclass
class RegistryParse:
    """Frames in the ``PROVIDERS``, ``REJECTS`` and ``SECONDARY_LOCATIONS`` contracts, and counts."""

    providers: pl.DataFrame
    rejects: pl.DataFrame
    secondary_locations: pl.DataFrame
    stats: dict[str, Any]


_DIGITS = re.compile(r"\D")


def _npi_string(value: Any) -> str:
    """``number`` is an int in 2019 payloads and a string in later ones."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:010d}"
    return str(value).strip()


def _epoch_ms(value: Any) -> int | None:
    """``*_epoch``: int seconds (2019) or a string of milliseconds (later)."""
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 100_000_000_000 else number * 1000  # 1e11 ms = 1973; 1e11 s = year 5138


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _yes_no(value: Any) -> str | None:
    """``YES``/``NO`` of the API as the ``Y``/``N`` codes of the NPPES file."""
    text = _text(value)
    if text is None:
        return None
    return {"YES": "Y", "NO": "N"}.get(text.upper(), text.upper())


def _phone(value: Any) -> str | None:
    """Digits only, as in the NPPES file ("888-408-0200" -> "8884080200")."""
    text = _text(value)
    if text is None:
        return None
    return _DIGITS.sub("", text) or None


def _iso_date(value: Any, field_name: str) -> date | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Reject("malformed_date", f"{field_name} {text!r} is not YYYY-MM-DD") from None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _primary_taxonomy(record: Mapping[str, Any]) -> dict[str, Any] | None:
    taxonomies = [t for t in record.get("taxonomies") or [] if _text(t.get("code"))]
    primary = [t for t in taxonomies if t.get("primary") is True]
    if primary:
        return primary[0]
    codes = {_text(t.get("code")) for t in taxonomies}
    return taxonomies[0] if len(codes) == 1 else None  # a single (repeated) code is primary by default


def _location_address(record: Mapping[str, Any]) -> dict[str, Any] | None:
    for address in record.get("addresses") or []:
        if str(address.get("address_purpose", "")).upper() == "LOCATION":
            return address
    return None


def _address_columns(address: Mapping[str, Any]) -> dict[str, Any]:
    postal = _text(address.get("postal_code"))
    return {
        "address_line_1": _text(address.get("address_1")),
        "address_line_2": _text(address.get("address_2")),
        "city": _text(address.get("city")),
        "state": _text(address.get("state")),
        "postal_code": postal,
        "zip5": postal[:5] if zip_is_valid(postal) else None,
        "country_code": _text(address.get("country_code")),
        "phone": _phone(address.get("telephone_number")),
    }


def _check_address(columns: Mapping[str, Any]) -> None:
    """Reject reasons and order as in the NPPES reader (``nppes._reject_reason``)."""
    country, state, postal = columns["country_code"], columns["state"], columns["postal_code"]
    if postal is None:
        raise _Reject("missing_zip", "practice location postal code is blank")
    if not zip_is_valid(postal):
        raise _Reject("malformed_zip", f"practice location postal code {postal!r} is not 5 or 9 digits")
    if country != "US" or state not in US_STATES:
        raise _Reject("non_us_address", f"practice location country {country!r} / state {state!r} is not a US state")


def parse_registry_responses(
    responses: pl.DataFrame,
    *,
    taxonomy: pl.DataFrame,
    target_codes: Iterable[str],
    include_organizations: bool = False,
) -> RegistryParse:
    """Turn raw API responses (``RESPONSES`` columns) into providers, rejects and secondary locations.

    One row per NPI: a record seen in several queries is kept once, the one
    with the latest ``last_updated_epoch`` (then the latest fetch).  The
    primary taxonomy (``primary: true``) is joined on its code to
    ``taxonomy`` (columns code, classification, specialization, display_name);
    ``desc`` is never parsed.  A provider is kept when its primary code is in
    ``target_codes`` (and, unless ``include_organizations``, it is an NPI-1).
    The practice location is the address with ``address_purpose`` LOCATION;
    ``practiceLocations[]`` become secondary locations.

    Rejects (reason, first failing check; the codes of the NPPES reader plus
    two the API needs): invalid_npi, invalid_entity_type, no_primary_taxonomy,
    unknown_taxonomy, inactive (basic.status not 'A'), no_practice_location,
    missing_zip, malformed_zip, non_us_address (country not US or state not in
    validation.US_STATES, e.g. the real 'AA'/'GEORGIA' record), malformed_date.  Records whose primary taxonomy is known
    but not targeted, and excluded organizations, are counted in ``stats``.
    An ``Errors`` envelope or unreadable JSON in ``responses`` raises
    :class:`NpiRegistryError` naming the query.
    """
    missing = [c for c in ("params_json", "response_json", "fetched_at") if c not in responses.columns]
    if missing:
        raise ValueError(f"responses frame lacks columns {missing}; expected the RESPONSES contract")
    taxonomy_by_code = _taxonomy_lookup(taxonomy)
    targets = {c.strip() for c in target_codes}
    unknown_targets = sorted(targets - set(taxonomy_by_code))
    if unknown_targets:
        raise ValueError(f"target codes not in the taxonomy reference: {unknown_targets}")

    latest: dict[str, tuple[tuple[int, str, int], dict[str, Any]]] = {}
    records_seen = 0
    ordered = responses.with_row_index("_order").sort(["fetched_at", "_order"])
    for order, params_json, body, fetched_at in ordered.select(
        "_order", "params_json", "response_json", "fetched_at"
    ).iter_rows():
        params = json.loads(params_json) if params_json else {}
        try:
            payload = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise NpiRegistryError(
                f"stored response for query {describe_params(params)} is not valid JSON: {exc}", params=params
            ) from exc
        if not isinstance(payload, dict):
            raise NpiRegistryError(f"stored response for query {describe_params(params)} is not a JSON object")
        check_payload(payload, params)
        for index, record in enumerate(payload["results"]):
            records_seen += 1
            npi = _npi_string(record.get("number"))
            rank = (_epoch_ms(record.get("last_updated_epoch")) or -1, fetched_at or "", order * 1_000_000 + index)
            if npi not in latest or rank > latest[npi][0]:
                latest[npi] = (rank, record)

    providers: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    secondary: list[dict[str, Any]] = []
    non_target = organizations_excluded = 0
    for npi in sorted(latest):
        record = latest[npi][1]
        try:
            code, reference, primary = _primary_classification(npi, record, taxonomy_by_code)
            if code not in targets:
                non_target += 1
                continue
            if record.get("enumeration_type") == "NPI-2" and not include_organizations:
                organizations_excluded += 1
                continue
            row = _provider_row(npi, record, code, reference, primary)
        except _Reject as reject:
            rejects.append(
                {
                    "source": "api",
                    "npi": npi or None,
                    "reason": reject.reason,
                    "detail": reject.detail,
                    "raw_record": json.dumps(record, sort_keys=True),
                }
            )
            continue
        providers.append(row)
        for seq, location in enumerate(record.get("practiceLocations") or [], start=1):
            secondary.append({"npi": npi, "location_seq": seq, **_address_columns(location), "source": "api"})

    provider_frame = _frame(providers, schemas.PROVIDERS)
    reject_frame = _frame(rejects, schemas.REJECTS)
    secondary_frame = _frame(secondary, schemas.SECONDARY_LOCATIONS).sort(["npi", "location_seq"])
    reasons = reject_frame.group_by("reason").len().sort("reason").iter_rows()
    stats = {
        "responses": responses.height,
        "records": records_seen,
        "unique_npis": len(latest),
        "duplicates": records_seen - len(latest),
        "providers": provider_frame.height,
        "rejects": reject_frame.height,
        "reject_reasons": dict(reasons),
        "non_target_primary": non_target,
        "organizations_excluded": organizations_excluded,
        "secondary_locations": secondary_frame.height,
    }
    return RegistryParse(provider_frame, reject_frame, secondary_frame, stats)


def _taxonomy_lookup(taxonomy: pl.DataFrame) -> dict[str, dict[str, str | None]]:
    needed = ["code", "classification", "specialization", "display_name"]
    missing = [c for c in needed if c not in taxonomy.columns]
    if missing:
        raise ValueError(f"taxonomy frame lacks columns {missing}; expected {needed}")
    return {
        row["code"].strip(): {k: _text(row[k]) for k in needed[1:]}
        for row in taxonomy.select(needed).iter_rows(named=True)
        if row["code"]
    }


def _frame(rows: list[dict[str, Any]], contract: dict[str, pl.DataType]) -> pl.DataFrame:
    if not rows:
        return schemas.empty(contract)
    frame = pl.DataFrame(rows, schema={k: contract[k] for k in rows[0]})
    return schemas.conform(frame, contract)


def _primary_classification(
    npi: str, record: Mapping[str, Any], taxonomy_by_code: Mapping[str, Mapping[str, Any]]
) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """(primary code, its reference row, its taxonomies[] entry), or :class:`_Reject`.

    Runs before the target filter: a record with a bad NPI or an unknown
    primary code cannot be shown to be out of scope, so it is rejected.
    """
    if not npi_check_digit_valid(npi):
        raise _Reject("invalid_npi", f"number {record.get('number')!r} is not a valid 10-digit NPI (Luhn, prefix 80840)")
    if record.get("enumeration_type") not in ("NPI-1", "NPI-2"):
        raise _Reject("invalid_entity_type", f"enumeration_type {record.get('enumeration_type')!r} is not NPI-1 or NPI-2")
    primary = _primary_taxonomy(record)
    if primary is None:
        raise _Reject("no_primary_taxonomy", "no taxonomy is flagged primary and the codes differ")
    code = str(primary["code"]).strip()
    reference = taxonomy_by_code.get(code)
    if reference is None:
        raise _Reject("unknown_taxonomy", f"primary taxonomy code {code!r} is not in the taxonomy reference")
    return code, reference, primary


def _provider_row(
    npi: str, record: Mapping[str, Any], code: str, reference: Mapping[str, Any], primary: Mapping[str, Any]
) -> dict[str, Any]:
    """One providers row of a targeted record, or :class:`_Reject` with the first problem found."""
    basic = record.get("basic") or {}
    status = _text(basic.get("status"))
    if status != "A":
        raise _Reject("inactive", f"basic.status is {status!r}, not 'A' (active)")
    location = _location_address(record)
    if location is None:
        raise _Reject("no_practice_location", "no address with address_purpose LOCATION")
    address = _address_columns(location)
    _check_address(address)

    is_org = record.get("enumeration_type") == "NPI-2"
    last, first, middle = (_text(basic.get(k)) for k in ("last_name", "first_name", "middle_name"))
    organization = _text(basic.get("organization_name"))
    if is_org:
        provider_name = organization
    else:
        provider_name = ", ".join(p for p in (last, " ".join(p for p in (first, middle) if p)) if p) or None
    codes = list(dict.fromkeys(c for c in (_text(t.get("code")) for t in record.get("taxonomies") or []) if c))
    return {
        "npi": npi,
        "entity_type": "organization" if is_org else "individual",
        "provider_name": provider_name,
        "last_name": None if is_org else last,
        "first_name": None if is_org else first,
        "middle_name": None if is_org else middle,
        "credential": _text(basic.get("credential")),
        "organization_name": organization,
        "sex": _text(basic.get("sex")) or _text(basic.get("gender")),
        "taxonomy_code": code,
        "taxonomy_classification": reference["classification"],
        "taxonomy_specialization": reference["specialization"],
        "taxonomy_display_name": reference["display_name"],
        "all_taxonomy_codes": "|".join(codes),
        "taxonomy_group": _text(primary.get("taxonomy_group")),
        **address,
        "enumeration_date": _iso_date(basic.get("enumeration_date"), "basic.enumeration_date"),
        "last_update_date": _iso_date(basic.get("last_updated"), "basic.last_updated"),
        "is_sole_proprietor": _yes_no(basic.get("sole_proprietor")),
        "is_organization_subpart": _yes_no(basic.get("organizational_subpart")),
        "parent_organization_lbn": _text(basic.get("parent_organization_legal_business_name")),
        "source": "api",
    }


__all__ = [
    "API_VERSION",
    "NPI_REGISTRY_URL_DEFAULT",
    "PAGE_LIMIT",
    "QUERY_CAP",
    "RESPONSES",
    "STATES_50_DC",
    "USER_AGENT",
    "NpiRegistryClient",
    "NpiRegistryError",
    "NpiRegistryTruncated",
    "NpiRegistryUnavailable",
    "RateLimiter",
    "RegistryPage",
    "RegistryParse",
    "RegistryPull",
    "check_payload",
    "describe_params",
    "fetch_universe",
    "parse_registry_responses",
    "split_postal_code",
]
