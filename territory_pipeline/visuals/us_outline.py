"""US state outlines that work offline, read from package data.

Source: the ``us_income/us48.shp`` example shapefile that ``libpysal`` ships in
its wheel (PySAL's example data: the 48 contiguous states in lon/lat degrees,
with ``STATE_ABBR`` and ``STATE_NAME`` attributes).  ``libpysal`` is already in
the environment as a dependency of ``spopt``; ``pyogrio`` (a ``geopandas``
dependency) reads the shapefile and ``shapely`` simplifies it.  Alaska, Hawaii
and the territories are not in that file, so the maps draw no outline there.

``libpysal`` is not a core dependency of the project (``spopt`` is in the
``bench`` extra), so every function here raises ``StateOutlinesUnavailable``
when it, ``pyogrio`` or ``shapely`` is missing; the maps then draw no outlines
and say so on the map.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from typing import Any

import numpy as np

_SHAPEFILE = ("libpysal", "examples/us_income/us48.shp")
DEFAULT_SIMPLIFY_DEGREES = 0.01


class StateOutlinesUnavailable(RuntimeError):
    """Raised when the packaged state shapefile cannot be found or read."""


@lru_cache(maxsize=4)
def _state_geometries(simplify_degrees: float) -> tuple[tuple[str, str, Any], ...]:
    """(abbreviation, name, shapely geometry) per state, sorted by abbreviation."""
    package, relative = _SHAPEFILE
    try:
        import pyogrio
        import shapely

        path = importlib.resources.files(package) / relative
    except ModuleNotFoundError as error:
        raise StateOutlinesUnavailable(
            f"state outlines need the packages libpysal, pyogrio and shapely: {error}"
        ) from error
    if not path.is_file():
        raise StateOutlinesUnavailable(f"{package} ships no {relative}")
    meta, _fids, wkb, fields = pyogrio.raw.read(str(path))
    names = list(meta["fields"])
    abbreviations = fields[names.index("STATE_ABBR")]
    state_names = fields[names.index("STATE_NAME")]
    geometries = shapely.simplify(shapely.from_wkb(wkb), simplify_degrees, preserve_topology=True)
    geometries = shapely.set_precision(geometries, 1e-4)
    rows = sorted(
        zip((str(a) for a in abbreviations), (str(n) for n in state_names), geometries, strict=True)
    )
    return tuple(rows)


def state_outlines_geojson(simplify_degrees: float = DEFAULT_SIMPLIFY_DEGREES) -> dict[str, Any]:
    """Return the contiguous US states as a GeoJSON FeatureCollection (lon/lat).

    Features are sorted by state abbreviation and carry ``state`` and ``name``
    properties.  Coordinates are simplified to ``simplify_degrees`` and rounded
    to 1e-4 degrees, which keeps the collection near 100 KB of JSON.
    """
    features = [
        {
            "type": "Feature",
            "properties": {"state": abbreviation, "name": name},
            "geometry": geometry.__geo_interface__,
        }
        for abbreviation, name, geometry in _state_geometries(simplify_degrees)
    ]
    return {"type": "FeatureCollection", "features": features}


def state_outline_rings(simplify_degrees: float = DEFAULT_SIMPLIFY_DEGREES) -> list[np.ndarray]:
    """Return every state boundary ring as an ``(n, 2)`` array of (lon, lat)."""
    rings: list[np.ndarray] = []
    for _abbreviation, _name, geometry in _state_geometries(simplify_degrees):
        for polygon in getattr(geometry, "geoms", (geometry,)):
            rings.append(np.asarray(polygon.exterior.coords))
            rings.extend(np.asarray(interior.coords) for interior in polygon.interiors)
    return rings
