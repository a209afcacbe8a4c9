"""Resumable downloads of official files (NPPES zips, NUCC CSV, CMS CSVs).

The file is written to ``dest + '.part'``; an interrupted or dropped transfer is
resumed with an HTTP ``Range`` request from the partial file's size.  Transient
failures (HTTP 5xx, timeouts, dropped connections, short reads) are retried with
exponential back-off by tenacity.  The finished file is size-checked against the
server's total length and ``expected_size`` and then atomically renamed to ``dest``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm


class DownloadError(RuntimeError):
    """A download failed permanently (4xx, size mismatch, retries exhausted)."""


class _TransientDownloadError(Exception):
    """A failure worth retrying (5xx, dropped connection, short body)."""


_RETRYABLE = (_TransientDownloadError, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _total_from_headers(response: requests.Response, offset: int) -> int | None:
    """Total file size from Content-Range (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range")
    if response.status_code == 206 and content_range:
        match = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", content_range)
        if match is None or int(match.group(1)) != offset:
            raise DownloadError(f"unexpected Content-Range {content_range!r} for a request from byte {offset}")
        return None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _attempt(url: str, part: Path, session: requests.Session, chunk_size: int, timeout: float) -> int | None:
    """One GET, resuming from ``part``'s size; returns the total size announced by the server."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416 and offset:
            # The partial file is already complete (or longer than the resource): start over.
            part.unlink()
            raise _TransientDownloadError(f"{url}: range not satisfiable from byte {offset}, restarting")
        if response.status_code >= 500:
            raise _TransientDownloadError(f"{url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DownloadError(f"{url}: HTTP {response.status_code}")
        if offset and response.status_code == 200:
            offset = 0  # the server ignored Range: rewrite from the start
        total = _total_from_headers(response, offset)
        mode = "ab" if offset else "wb"
        with part.open(mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5],
            disable=not sys.stderr.isatty(),
        ) as bar:
            for chunk in response.iter_content(chunk_size=chunk_size):
                handle.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _TransientDownloadError(f"{url}: connection ended at byte {size} of {total}")
    return total


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    session: requests.Session | None = None,
    chunk_size: int = 1 << 20,
    max_retries: int = 5,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` with resume, retries and a size check; return ``dest``.

    An existing ``dest`` of the expected size (when given) is returned as is.
    Raises ``DownloadError`` on a 4xx response, a size mismatch, or when
    ``max_retries`` attempts all failed.
    """
    dest = Path(dest)
    if dest.exists() and (expected_size is None or dest.stat().st_size == expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    session = session or requests.Session()
    retrying = Retrying(
        stop=stop_after_attempt(max_retries),
        wait=wait_exponential(multiplier=0.2, max=10),
        retry=retry_if_exception_type(_RETRYABLE),
        reraise=True,
    )
    try:
        total = retrying(_attempt, url, part, session, chunk_size, timeout)
    except _RETRYABLE as exc:
        raise DownloadError(f"{url}: failed after {max_retries} attempts: {exc}") from exc
    size = part.stat().st_size
    for label, wanted in (("server length", total), ("expected_size", expected_size)):
        if wanted is not None and size != wanted:
            raise DownloadError(f"{url}: downloaded {size} bytes but {label} is {wanted}; kept {part}")
    os.replace(part, dest)
    return dest


def local_source(source: str, cache_dir: Path) -> Path:
    """A configured source as a local file: a path as given, or an official URL downloaded
    once into ``cache_dir`` (kept there, so a later run reads the cached copy)."""
    if source.startswith(("http://", "https://")):
        dest = Path(cache_dir) / Path(source.split("?")[0]).name
        if not dest.exists():
            download(source, dest)
        return dest
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"configured file {source} does not exist")
    return path
