"""Client for the US Census Geocoder batch endpoint (``.../addressbatch``).

The service takes a multipart upload of a header-less CSV (``id, street, city,
state, zip``; at most 10,000 records per file) and answers with a header-less
CSV whose rows come back in any order:

    "0","<input address>","Match","Exact","<matched address>","-77.03535,38.898754","76225813","L","11","001","980000","1034"
    "1","<input address>","No_Match"

``No_Match`` and ``Tie`` rows are short (3 fields, sometimes padded with
empties); the coordinate is one quoted ``"lon,lat"`` field; the four trailing
geography fields only come with ``returntype="geographies"``.

Transient failures (5xx, timeouts, dropped connections) are retried with
exponential back-off (tenacity); a batch that still fails, or whose answer is
malformed, raises :class:`CensusGeocoderError` naming the batch, so the caller
can fall back to ZIP centroids for that batch only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Literal

import polars as pl
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

CENSUS_GEOCODER_URL_DEFAULT = "https://geocoding.geo.census.gov/geocoder/"
MAX_BATCH_SIZE = 10_000  # "There is currently an upper limit of 10,000 records per batch file."

ADDRESS_COLUMNS = ("id", "street", "city", "state", "zip")

CENSUS_RESULT_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.Utf8,
    "match": pl.Utf8,  # 'Match' | 'No_Match' | 'Tie'
    "match_type": pl.Utf8,  # 'Exact' | 'Non_Exact' (Match rows only)
    "matched_address": pl.Utf8,
    "latitude": pl.Float64,
    "longitude": pl.Float64,
    "tiger_line_id": pl.Utf8,
    "side": pl.Utf8,  # 'L' | 'R'
    "state_fips": pl.Utf8,  # 2 digits (geographies only)
    "county_fips": pl.Utf8,  # 5 digits, state + county (geographies only)
    "tract": pl.Utf8,
    "block": pl.Utf8,
}

_MATCH_VALUES = frozenset({"Match", "No_Match", "Tie"})
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class CensusGeocoderError(RuntimeError):
    """A batch could not be geocoded (after retries) or the answer was malformed."""

    def __init__(self, message: str, *, first_id: str | None = None, last_id: str | None = None) -> None:
        super().__init__(message)
        self.first_id = first_id
        self.last_id = last_id


class _ServerError(Exception):
    """A 5xx answer; retried."""


class CensusBatchGeocoder:
    """Batch client for the Census Geocoder.

    ``returntype`` is ``"geographies"`` (adds state/county/tract/block, needs a
    ``vintage``) or ``"locations"``.  ``batch_size`` may not exceed 10,000.
    A request is tried ``1 + max_retries`` times, waiting ``backoff_seconds``
    times 1, 2, 4 ... (at most 60 s) between tries.  ``progress`` reports each
    batch: a callable (e.g. a logger's ``info``) gets one message per batch;
    otherwise a tqdm bar is shown, True always, False never, None only on a terminal.
    """

    def __init__(
        self,
        base_url: str = CENSUS_GEOCODER_URL_DEFAULT,
        benchmark: str = "Public_AR_Current",
        vintage: str = "Current_Current",
        returntype: Literal["geographies", "locations"] = "geographies",
        batch_size: int = MAX_BATCH_SIZE,
        timeout: float = 600,
        max_retries: int = 4,
        session: requests.Session | None = None,
        progress: bool | Callable[[str], object] | None = None,
        backoff_seconds: float = 2.0,
    ) -> None:
        if returntype not in ("geographies", "locations"):
            raise ValueError(f"returntype must be 'geographies' or 'locations', not {returntype!r}")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries}")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.benchmark = benchmark
        self.vintage = vintage
        self.returntype = returntype
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.session = session or requests.Session()
        self.progress = progress
        self.backoff_seconds = backoff_seconds

    @property
    def url(self) -> str:
        """The batch endpoint, e.g. ``.../geocoder/geographies/addressbatch``."""
        return f"{self.base_url}{self.returntype}/addressbatch"

    def batches(self, addresses: pl.DataFrame) -> Iterator[pl.DataFrame]:
        """Split validated addresses into batches of at most ``batch_size`` rows, with a progress bar."""
        addresses = _validate_addresses(addresses)
        starts = range(0, addresses.height, self.batch_size)
        if callable(self.progress):
            for number, start in enumerate(starts, start=1):
                self.progress(
                    f"census geocoder: batch {number}/{len(starts)} ({addresses.height:,} addresses, "
                    f"{self.batch_size:,} a batch)"
                )
                yield addresses.slice(start, self.batch_size)
            return
        disable = None if self.progress is None else not self.progress
        for start in tqdm(starts, desc="census geocoder", unit="batch", disable=disable):
            yield addresses.slice(start, self.batch_size)

    def geocode(self, addresses: pl.DataFrame) -> pl.DataFrame:
        """Geocode every address; raises CensusGeocoderError on the first failing batch.

        ``addresses`` has columns id, street, city, state, zip (ids unique).
        Returns the ``CENSUS_RESULT_COLUMNS`` frame in input order.
        """
        results = [self.geocode_batch(batch) for batch in self.batches(addresses)]
        if not results:
            return pl.DataFrame(schema=CENSUS_RESULT_COLUMNS)
        return pl.concat(results)

    def geocode_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Geocode one batch (at most ``batch_size`` rows) in one request, with retries."""
        batch = _validate_addresses(batch)
        if batch.height > self.batch_size:
            raise ValueError(f"batch of {batch.height} rows exceeds batch_size {self.batch_size}")
        if batch.height == 0:
            return pl.DataFrame(schema=CENSUS_RESULT_COLUMNS)
        ids = batch["id"].to_list()
        label = f"batch {ids[0]!r}..{ids[-1]!r} ({len(ids)} addresses)"
        payload = _address_csv(batch)
        form = {"benchmark": self.benchmark}
        if self.returntype == "geographies":
            form["vintage"] = self.vintage
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.max_retries + 1),
                wait=wait_exponential(multiplier=self.backoff_seconds, max=60),
                retry=retry_if_exception_type((*_TRANSIENT_ERRORS, _ServerError)),
                reraise=True,
            ):
                with attempt:
                    text = self._post(payload, form)
        except (*_TRANSIENT_ERRORS, _ServerError) as exc:
            raise CensusGeocoderError(
                f"Census geocoder failed for {label} after {self.max_retries + 1} tries: {exc}",
                first_id=ids[0],
                last_id=ids[-1],
            ) from exc
        except CensusGeocoderError as exc:
            raise CensusGeocoderError(
                f"Census geocoder rejected {label}: {exc}", first_id=ids[0], last_id=ids[-1]
            ) from exc
        except requests.RequestException as exc:  # not transient (bad URL, too many redirects ...): no retry
            raise CensusGeocoderError(
                f"Census geocoder request failed for {label}: {exc}", first_id=ids[0], last_id=ids[-1]
            ) from exc
        try:
            parsed = parse_batch_response(text, expected_ids=ids)
        except ValueError as exc:
            raise CensusGeocoderError(
                f"malformed Census geocoder answer for {label}: {exc}", first_id=ids[0], last_id=ids[-1]
            ) from exc
        return batch.select("id").join(parsed, on="id", how="left", maintain_order="left")

    def _post(self, payload: bytes, form: dict[str, str]) -> str:
        response = self.session.post(
            self.url,
            data=form,
            files={"addressFile": ("addresses.csv", payload, "text/csv")},
            timeout=self.timeout,
        )
        if response.status_code >= 500:
            raise _ServerError(f"HTTP {response.status_code}: {response.text[:200]!r}")
        if response.status_code != 200:
            raise CensusGeocoderError(f"HTTP {response.status_code}: {response.text[:300]!r}")
        text = response.content.decode("utf-8", errors="replace")
        if text.lstrip().startswith("<"):
            raise CensusGeocoderError(f"expected CSV, got HTML/XML: {text[:200]!r}")
        return text


def _validate_addresses(addresses: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ADDRESS_COLUMNS if c not in addresses.columns]
    if missing:
        raise ValueError(f"addresses frame lacks columns {missing}; needs {list(ADDRESS_COLUMNS)}")
    frame = addresses.select([pl.col(c).cast(pl.Utf8) for c in ADDRESS_COLUMNS])
    if frame["id"].null_count():
        raise ValueError("addresses frame has null ids")
    if frame["id"].n_unique() != frame.height:
        raise ValueError("addresses frame has duplicate ids; the answer is joined on the id")
    return frame


def _address_csv(batch: pl.DataFrame) -> bytes:
    """Header-less CSV: empty components keep their commas, fields with commas are quoted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for row in batch.iter_rows():
        writer.writerow(["" if value is None else str(value).replace("\n", " ") for value in row])
    return buffer.getvalue().encode("utf-8")


def parse_batch_response(text: str, expected_ids: list[str] | None = None) -> pl.DataFrame:
    """Parse a header-less batch answer into ``CENSUS_RESULT_COLUMNS`` (sorted by id).

    Raises ValueError for an unknown match value, a Match row without a
    ``"lon,lat"`` field, or (when ``expected_ids`` is given) ids that are
    missing, unexpected or repeated.
    """
    rows: list[dict[str, object]] = []
    for line_no, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) < 3:
            raise ValueError(f"line {line_no}: {len(fields)} fields, expected at least 3: {fields!r}")
        record_id, match = fields[0].strip(), fields[2].strip()
        if match not in _MATCH_VALUES:
            raise ValueError(f"line {line_no}: unknown match value {match!r}")
        row: dict[str, object] = {name: None for name in CENSUS_RESULT_COLUMNS}
        row["id"], row["match"] = record_id, match
        if match == "Match":
            if len(fields) < 8:
                raise ValueError(f"line {line_no}: Match row with {len(fields)} fields, expected 8 or 12")
            row["match_type"] = fields[3].strip() or None
            row["matched_address"] = fields[4].strip() or None
            row["longitude"], row["latitude"] = _lon_lat(fields[5], line_no)
            row["tiger_line_id"] = fields[6].strip() or None
            row["side"] = fields[7].strip() or None
            if len(fields) >= 12:
                state, county = fields[8].strip(), fields[9].strip()
                row["state_fips"] = state.zfill(2) if state else None
                row["county_fips"] = state.zfill(2) + county.zfill(3) if state and county else None
                row["tract"] = fields[10].strip() or None
                row["block"] = fields[11].strip() or None
        rows.append(row)
    frame = pl.DataFrame(rows, schema=CENSUS_RESULT_COLUMNS)
    if expected_ids is not None:
        seen = frame["id"].to_list()
        expected = set(expected_ids)
        missing = expected.difference(seen)
        unexpected = set(seen).difference(expected)
        if missing or unexpected or len(seen) != len(set(seen)):
            raise ValueError(
                f"ids do not match the request: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]}), {len(seen) - len(set(seen))} repeated"
            )
    return frame.sort("id")


def _lon_lat(field: str, line_no: int) -> tuple[float, float]:
    parts = field.split(",")
    try:
        lon, lat = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise ValueError(f"line {line_no}: coordinate field {field!r} is not 'lon,lat'") from None
    if len(parts) != 2:
        raise ValueError(f"line {line_no}: coordinate field {field!r} is not 'lon,lat'")
    return lon, lat
