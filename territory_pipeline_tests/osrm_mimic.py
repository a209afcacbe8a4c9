"""A local mimic of the OSRM ``table`` service for tests and benchmarks.

It serves ``GET /table/v1/driving/{lon,lat;lon,lat...}`` with the ``sources``,
``destinations`` and ``annotations`` parameters the way ``osrm-routed`` does:

* success: HTTP 200 ``{"code": "Ok", "durations": [[s...]], "distances": [[m...]],
  "sources": [...], "destinations": [...]}``; durations in seconds, distances
  in metres, computed as great-circle × ``factor`` at ``mph``;
* a point in ``unreachable`` gets ``null`` for every pair with another point;
* more coordinates than ``max_table_size`` -> HTTP 400 ``{"code": "TooBig"}``;
* a malformed coordinate list or index -> HTTP 400 ``{"code": "InvalidQuery"}``
  / ``{"code": "InvalidOptions"}``;
* injected failures: :meth:`OsrmMimic.fail_next` answers the next requests
  with an HTTP status (e.g. 503, empty body) or an OSRM error code.

Start it with ``with OsrmMimic() as osrm: ... osrm.url``; it listens on
127.0.0.1 on a free port.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

EARTH_RADIUS_M = 6_371_008.8


def _great_circle_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class OsrmMimic:
    """Threaded HTTP server answering like OSRM's table service."""

    def __init__(self, factor: float = 1.3, mph: float = 50.0, max_table_size: int = 100) -> None:
        self.factor = factor
        self.mph = mph
        self.max_table_size = max_table_size
        self.unreachable: set[tuple[float, float]] = set()
        self.coordinate_counts: list[int] = []  # coordinates per request answered or refused
        self._failures: list[tuple[int, str | None, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OsrmMimic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(self, count: int, status: int = 503, code: str | None = None, message: str = "") -> None:
        """Answer the next ``count`` requests with ``status`` (and an OSRM ``code`` body if given)."""
        with self._lock:
            self._failures.extend([(status, code, message)] * count)

    def _take_failure(self) -> tuple[int, str | None, str] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _answer(self, path: str, query: str) -> tuple[int, dict | None]:
        prefix = "/table/v1/driving/"
        if not path.startswith(prefix):
            return 400, {"code": "InvalidService", "message": f"Service {path!r} not found!"}
        try:
            points = []
            for item in unquote(path[len(prefix):]).split(";"):
                lon_s, lat_s = item.split(",")
                lon, lat = float(lon_s), float(lat_s)
                if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                    raise ValueError(item)
                points.append((lat, lon))
        except ValueError:
            return 400, {"code": "InvalidQuery", "message": "Query string malformed close to position 0"}
        with self._lock:
            self.coordinate_counts.append(len(points))
        if len(points) > self.max_table_size:
            return 400, {"code": "TooBig", "message": "Too many table coordinates"}
        params = parse_qs(query)
        try:
            sources = [int(i) for i in params["sources"][0].split(";")] if "sources" in params else list(
                range(len(points)))
            dests = [int(i) for i in params["destinations"][0].split(";")] if "destinations" in params else list(
                range(len(points)))
        except ValueError:
            return 400, {"code": "InvalidOptions", "message": "Sources/destinations indices are malformed"}
        if any(not 0 <= i < len(points) for i in sources + dests):
            return 400, {"code": "InvalidOptions", "message": "Index out of bounds"}
        durations, distances = [], []
        for s in sources:
            row_t, row_d = [], []
            for d in dests:
                a, b = points[s], points[d]
                if a != b and (a in self.unreachable or b in self.unreachable):
                    row_t.append(None)
                    row_d.append(None)
                    continue
                meters = _great_circle_m(a, b) * self.factor
                row_d.append(round(meters, 1))
                row_t.append(round(meters / 1609.344 / self.mph * 3600.0, 1))
            durations.append(row_t)
            distances.append(row_d)
        wp = lambda i: {"location": [points[i][1], points[i][0]], "name": "", "distance": 0.0}  # noqa: E731
        return 200, {
            "code": "Ok",
            "durations": durations,
            "distances": distances,
            "sources": [wp(i) for i in sources],
            "destinations": [wp(i) for i in dests],
        }

    def _handler(self):
        mimic = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                failure = mimic._take_failure()
                if failure is not None:
                    status, code, message = failure
                    body = None if code is None else {"code": code, "message": message}
                else:
                    parts = urlsplit(self.path)
                    status, body = mimic._answer(parts.path, parts.query)
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        return Handler
