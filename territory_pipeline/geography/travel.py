"""Travel distance and time between points: an offline estimate and OSRM.

A travel provider answers one question: for ``n`` origins and ``m``
destinations, given as ``(lat, lon)`` rows in degrees, what are the road miles
and the driving minutes from each origin to each destination?

* :class:`HaversineTravelEstimate` (default, offline): great-circle miles
  multiplied by a *circuity* factor, divided by an average speed.  Road
  networks in the US are 1.2–1.4 times longer than the straight line
  (Ballou et al. 2002, "Selected country circuity factors for road travel
  distance estimation"); 1.25 is the usual national figure.  45 mph is a
  blended door-to-door speed for field reps (urban arterials plus some
  interstate); it is conservative on long interstate legs.
* :class:`OsrmTravelTime`: the ``table`` service of an OSRM server
  (``OSRM_URL``), chunked so that no request carries more than
  ``max_coordinates`` coordinates (OSRM's default ``--max-table-size`` is 100),
  with retries on 5xx responses and timeouts.

Unreachable pairs are ``inf`` in both matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

EARTH_RADIUS_MILES = 3958.7613
METERS_PER_MILE = 1609.344
#: Fastest plausible straight-line speed (mph) of a road trip: an upper bound
#: used to pre-filter candidate pairs for providers without ``max_straight_line_miles``.
DEFAULT_MAX_STRAIGHT_LINE_MPH = 85.0


@runtime_checkable
class TravelTimeProvider(Protocol):
    """Road miles and driving minutes between points."""

    def matrix(self, origins: np.ndarray, destinations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(miles, minutes)``, each of shape ``(n, m)``, for ``(n, 2)`` and ``(m, 2)`` lat/lon arrays."""
        ...


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be an (n, 2) array of latitude/longitude, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    if np.any(np.abs(arr[:, 0]) > 90) or np.any(np.abs(arr[:, 1]) > 180):
        raise ValueError(f"{name} has latitude outside [-90, 90] or longitude outside [-180, 180]")
    return arr


def haversine_miles(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in miles; arguments in degrees, numpy-broadcast."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_MILES * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_matrix_miles(origins: np.ndarray, destinations: np.ndarray) -> np.ndarray:
    """``(n, m)`` great-circle miles between ``(n, 2)`` and ``(m, 2)`` lat/lon arrays."""
    o = _as_points(origins, "origins")
    d = _as_points(destinations, "destinations")
    return haversine_miles(o[:, 0:1], o[:, 1:2], d[None, :, 0], d[None, :, 1])


class HaversineTravelEstimate:
    """Offline estimate: road miles = great-circle × ``circuity``; minutes = road miles ÷ ``mph``."""

    def __init__(self, circuity: float = 1.25, mph: float = 45.0) -> None:
        if not circuity >= 1.0:
            raise ValueError(f"circuity must be >= 1.0 (roads are never shorter than the great circle), got {circuity}")
        if not mph > 0:
            raise ValueError(f"mph must be positive, got {mph}")
        self.circuity = float(circuity)
        self.mph = float(mph)

    def __repr__(self) -> str:
        return f"HaversineTravelEstimate(circuity={self.circuity}, mph={self.mph})"

    def matrix(self, origins: np.ndarray, destinations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road miles and minutes between every origin and destination."""
        miles = haversine_matrix_miles(origins, destinations) * self.circuity
        return miles, miles / self.mph * 60.0

    def paired(self, origins: np.ndarray, destinations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road miles and minutes from ``origins[i]`` to ``destinations[i]`` (row-wise)."""
        o = _as_points(origins, "origins")
        d = _as_points(destinations, "destinations")
        if o.shape != d.shape:
            raise ValueError(f"paired origins {o.shape} and destinations {d.shape} differ in shape")
        miles = haversine_miles(o[:, 0], o[:, 1], d[:, 0], d[:, 1]) * self.circuity
        return miles, miles / self.mph * 60.0

    def max_straight_line_miles(self, minutes: float) -> float:
        """Largest great-circle distance reachable within ``minutes`` (exact for this estimate)."""
        return minutes / 60.0 * self.mph / self.circuity


def max_straight_line_miles(travel: TravelTimeProvider, minutes: float) -> float:
    """Upper bound on the great-circle miles reachable in ``minutes`` with ``travel``.

    Uses the provider's own ``max_straight_line_miles`` when it has one, else
    :data:`DEFAULT_MAX_STRAIGHT_LINE_MPH`.  Used to pre-filter candidate pairs
    with a ball tree before asking the provider for drive times.
    """
    bound = getattr(travel, "max_straight_line_miles", None)
    if bound is not None:
        return float(bound(minutes))
    return minutes / 60.0 * DEFAULT_MAX_STRAIGHT_LINE_MPH


def paired_travel(
    travel: TravelTimeProvider, origins: np.ndarray, destinations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``(miles, minutes)`` from ``origins[i]`` to ``destinations[i]``.

    Uses the provider's vectorized ``paired`` when it has one; otherwise one
    ``matrix`` call per distinct origin.
    """
    o = _as_points(origins, "origins") if len(origins) else np.empty((0, 2))
    d = _as_points(destinations, "destinations") if len(destinations) else np.empty((0, 2))
    if o.shape != d.shape:
        raise ValueError(f"paired origins {o.shape} and destinations {d.shape} differ in shape")
    if len(o) == 0:
        return np.empty(0), np.empty(0)
    fast = getattr(travel, "paired", None)
    if fast is not None:
        return fast(o, d)
    miles = np.empty(len(o))
    minutes = np.empty(len(o))
    uniq, inverse = np.unique(o, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, origin in enumerate(uniq):
        rows = np.flatnonzero(inverse == k)
        mi, mn = travel.matrix(origin[None, :], d[rows])
        miles[rows] = mi[0]
        minutes[rows] = mn[0]
    return miles, minutes


class OsrmError(RuntimeError):
    """OSRM answered with a ``code`` other than ``'Ok'`` (or an unusable response)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"OSRM {code}: {message}")
        self.code = code
        self.message = message


class _RetryableOsrmFailure(OsrmError):
    """A 5xx answer: the server may recover, so the request is retried (code ``'HTTP5xx'``)."""


class OsrmTravelTime:
    """Drive times and distances from the OSRM ``table`` service.

    ``base_url`` is the server root, e.g. ``http://localhost:5000``.  Requests
    are ``GET {base}/table/v1/{profile}/{lon,lat;...}?sources=..&destinations=..
    &annotations=duration,distance``.  The origin × destination matrix is cut
    into blocks so that no request carries more than ``max_coordinates``
    coordinates.  5xx answers, timeouts and connection errors are retried
    ``attempts`` times with exponential back-off (then the last 5xx raises
    :class:`OsrmError` with code ``'HTTP503'`` etc., the last timeout or
    connection error is re-raised as is); a JSON answer whose ``code``
    is not ``'Ok'`` raises :class:`OsrmError`; ``null`` entries (no route)
    become ``inf``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        profile: str = "driving",
        max_coordinates: int = 100,
        timeout_seconds: float = 30.0,
        attempts: int = 4,
        retry_wait_seconds: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"OSRM base_url must be an http(s) URL, got {base_url!r}")
        if max_coordinates < 2:
            raise ValueError(f"max_coordinates must be >= 2, got {max_coordinates}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.base_url = base_url.rstrip("/")
        self.profile = profile
        self.max_coordinates = int(max_coordinates)
        self.timeout_seconds = timeout_seconds
        self.session = session or requests.Session()
        self.requests_sent = 0
        self._fetch: Callable[[str, dict[str, str]], dict] = retry(
            retry=retry_if_exception_type((_RetryableOsrmFailure, requests.Timeout, requests.ConnectionError)),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=retry_wait_seconds, max=max(retry_wait_seconds * 16, 0.0)),
            reraise=True,
        )(self._fetch_once)

    def __repr__(self) -> str:
        return f"OsrmTravelTime({self.base_url!r}, max_coordinates={self.max_coordinates})"

    def _fetch_once(self, url: str, params: dict[str, str]) -> dict:
        self.requests_sent += 1
        response = self.session.get(url, params=params, timeout=self.timeout_seconds)
        if response.status_code >= 500:
            raise _RetryableOsrmFailure(f"HTTP{response.status_code}", f"server error for {response.url}")
        try:
            body = response.json()
        except ValueError as exc:
            raise OsrmError("InvalidResponse", f"HTTP {response.status_code}, body is not JSON: "
                            f"{response.text[:200]!r}") from exc
        code = body.get("code")
        if code != "Ok":
            raise OsrmError(str(code), str(body.get("message", f"HTTP {response.status_code}")))
        return body

    def _block(self, origins: np.ndarray, destinations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.vstack([origins, destinations])
        coords = ";".join(f"{lon:.6f},{lat:.6f}" for lat, lon in points)
        n = len(origins)
        params = {
            "sources": ";".join(str(i) for i in range(n)),
            "destinations": ";".join(str(n + j) for j in range(len(destinations))),
            "annotations": "duration,distance",
        }
        body = self._fetch(f"{self.base_url}/table/v1/{self.profile}/{coords}", params)
        shape = (n, len(destinations))
        try:
            seconds = np.array(body["durations"], dtype=np.float64)
            meters = np.array(body["distances"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise OsrmError("InvalidResponse", f"missing or malformed durations/distances: {exc}") from exc
        if seconds.shape != shape or meters.shape != shape:
            raise OsrmError("InvalidResponse", f"expected {shape} matrices, got {seconds.shape} and {meters.shape}")
        # np.array turns JSON null into nan: no route
        seconds[np.isnan(seconds)] = np.inf
        meters[np.isnan(meters)] = np.inf
        return meters / METERS_PER_MILE, seconds / 60.0

    def matrix(self, origins: np.ndarray, destinations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road miles and driving minutes between every origin and destination."""
        o = _as_points(origins, "origins")
        d = _as_points(destinations, "destinations")
        miles = np.empty((len(o), len(d)))
        minutes = np.empty((len(o), len(d)))
        if len(o) == 0 or len(d) == 0:
            return miles, minutes
        # split the coordinate budget; a short side leaves the rest to the other
        o_step = min(len(o), self.max_coordinates - min(len(d), self.max_coordinates // 2))
        d_step = min(len(d), self.max_coordinates - o_step)
        for i in range(0, len(o), o_step):
            for j in range(0, len(d), d_step):
                mi, mn = self._block(o[i:i + o_step], d[j:j + d_step])
                miles[i:i + o_step, j:j + d_step] = mi
                minutes[i:i + o_step, j:j + d_step] = mn
        return miles, minutes

    def max_straight_line_miles(self, minutes: float) -> float:
        """Upper bound on straight-line miles driven in ``minutes`` (at 85 mph)."""
        return minutes / 60.0 * DEFAULT_MAX_STRAIGHT_LINE_MPH


def make_travel_provider(osrm_url: str | None = None, **osrm_options) -> TravelTimeProvider:
    """OSRM when ``osrm_url`` is set (non-empty), else the offline haversine estimate."""
    if osrm_url and osrm_url.strip():
        return OsrmTravelTime(osrm_url.strip(), **osrm_options)
    return HaversineTravelEstimate()


__all__ = [
    "EARTH_RADIUS_MILES",
    "HaversineTravelEstimate",
    "OsrmError",
    "OsrmTravelTime",
    "TravelTimeProvider",
    "haversine_matrix_miles",
    "haversine_miles",
    "make_travel_provider",
    "max_straight_line_miles",
    "paired_travel",
]
