"""H3 indexing of provider coordinates, vectorized.

The ``h3`` 4.x package has no numpy API, so indexing a million points with it
means a Python loop.  When the optional ``polars-h3`` package (a Rust polars
plugin, PyPI ``polars-h3``) is importable, indexing runs as a polars
expression over the column.  Provider coordinates are mostly ZIP centroids
that repeat many times (about 30 k distinct coordinates for a national
universe of a million providers), so :func:`add_h3_cells` indexes the
*distinct* coordinates and joins the cells back whenever duplicates dominate.
Without polars-h3 it falls back to ``h3`` with a Python loop over the distinct
coordinates only, which is what keeps the fallback fast on such data.

Cells are hex strings (``'8729b6d35ffffff'``), the form stored in the
``h3_cell`` column of :data:`territory_pipeline.schemas.GEOGRAPHY_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Iterable

import h3
import polars as pl

try:  # optional vectorized backend
    import polars_h3 as _plh3
except ImportError:  # pragma: no cover - exercised only when polars-h3 is absent
    _plh3 = None

#: Coordinates are deduplicated first (index the distinct ones, join back) when
#: the estimated share of distinct coordinates is at most this: several times
#: faster on ZIP-centroid data, where a million providers sit on ~30 k coordinates.
DEDUP_MAX_DISTINCT_SHARE = 0.5
#: Name of the backend used by default: ``'polars-h3'`` or ``'h3'``.
DEFAULT_BACKEND: str = "polars-h3" if _plh3 is not None else "h3"
_BACKENDS = ("polars-h3", "h3")


def _backend(backend: str | None) -> str:
    chosen = backend or DEFAULT_BACKEND
    if chosen not in _BACKENDS:
        raise ValueError(f"unknown H3 backend {chosen!r}; expected one of {_BACKENDS}")
    if chosen == "polars-h3" and _plh3 is None:
        raise ValueError("H3 backend 'polars-h3' requested but the polars-h3 package is not installed")
    return chosen


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or not 0 <= resolution <= 15:
        raise ValueError(f"H3 resolution must be an integer 0..15, got {resolution!r}")


def _check_coordinates(frame: pl.DataFrame, lat: str, lon: str) -> None:
    bad = frame.filter(
        (pl.col(lat).is_not_null() & ~pl.col(lat).is_between(-90.0, 90.0))
        | (pl.col(lon).is_not_null() & ~pl.col(lon).is_between(-180.0, 180.0))
        | pl.col(lat).is_nan()
        | pl.col(lon).is_nan()
    )
    if bad.height:
        sample = bad.select(lat, lon).head(3).rows()
        raise ValueError(f"{bad.height} rows have latitude/longitude out of range or NaN, e.g. {sample}")


def _index(points: pl.DataFrame, lat: str, lon: str, resolution: int, backend: str, out: str) -> pl.Series:
    """The cell of every row of ``points`` (null where a coordinate is null)."""
    if backend == "polars-h3":
        # UInt64 cells then int_to_str: about twice as fast as asking polars-h3 for strings directly
        expr = _plh3.int_to_str(_plh3.latlng_to_cell(pl.col(lat), pl.col(lon), resolution)).alias(out)
        return points.select(expr).to_series()
    cells = [
        None if a is None or b is None else h3.latlng_to_cell(a, b, resolution)
        for a, b in zip(points[lat].to_list(), points[lon].to_list(), strict=True)
    ]
    return pl.Series(out, cells, dtype=pl.Utf8)


def add_h3_cells(
    frame: pl.DataFrame,
    resolution: int = 7,
    lat: str = "latitude",
    lon: str = "longitude",
    out: str = "h3_cell",
    *,
    backend: str | None = None,
) -> pl.DataFrame:
    """Return ``frame`` with column ``out``: the H3 cell (hex string) of each point.

    Rows with a null latitude or longitude get a null cell; a latitude outside
    [-90, 90], a longitude outside [-180, 180] or a NaN raises ``ValueError``.
    ``backend`` is ``'polars-h3'`` (vectorized, default when installed) or
    ``'h3'`` (a Python loop).  Either indexes only the distinct coordinates
    when at most half of them are distinct.  Row order is kept.
    """
    _check_resolution(resolution)
    chosen = _backend(backend)
    for name in (lat, lon):
        if name not in frame.columns:
            raise ValueError(f"column {name!r} not found; columns are {frame.columns}")
    coords = frame.select(pl.col(lat).cast(pl.Float64), pl.col(lon).cast(pl.Float64))
    _check_coordinates(coords, lat, lon)
    estimate = coords.select(pl.struct(lat, lon).hash().approx_n_unique()).item() if coords.height else 0
    if estimate > DEDUP_MAX_DISTINCT_SHARE * coords.height:
        cells = _index(coords, lat, lon, resolution, chosen, out)
    else:
        distinct = coords.unique().drop_nulls()
        lookup = distinct.with_columns(_index(distinct, lat, lon, resolution, chosen, out))
        cells = coords.join(lookup, on=[lat, lon], how="left", maintain_order="left", nulls_equal=False)[out]
    return frame.with_columns(cells.alias(out))


def _check_cells(cells: pl.Series) -> None:
    present = cells.drop_nulls()
    invalid = [c for c in present.unique().to_list() if not h3.is_valid_cell(c)]
    if invalid:
        raise ValueError(f"{len(invalid)} invalid H3 cells, e.g. {sorted(invalid)[:3]}")


def _map_distinct(cells: pl.Series, func, dtype: pl.DataType) -> pl.Series:
    """Apply ``func`` once per distinct non-null cell and map the result back."""
    distinct = cells.drop_nulls().unique()
    table = pl.DataFrame({"c": distinct, "r": pl.Series([func(c) for c in distinct.to_list()], dtype=dtype)})
    return cells.to_frame("c").join(table, on="c", how="left", maintain_order="left")["r"]


def cells_to_parent(cells: pl.Series | Iterable[str], resolution: int) -> pl.Series:
    """The parent cell at ``resolution`` of each cell (nulls stay null).

    ``resolution`` must not be finer than any cell's own resolution; invalid
    cells raise ``ValueError``.
    """
    _check_resolution(resolution)
    series = cells if isinstance(cells, pl.Series) else pl.Series("h3_cell", list(cells), dtype=pl.Utf8)
    _check_cells(series)
    too_coarse = [c for c in series.drop_nulls().unique().to_list() if h3.get_resolution(c) < resolution]
    if too_coarse:
        raise ValueError(f"cells coarser than requested parent resolution {resolution}, e.g. {too_coarse[:3]}")
    if _plh3 is not None:
        return series.to_frame("c").select(_plh3.cell_to_parent("c", resolution))["c"].alias(series.name)
    return _map_distinct(series, lambda c: h3.cell_to_parent(c, resolution), pl.Utf8).alias(series.name)


def cell_footprints(
    frame: pl.DataFrame, group: str, cell: str = "h3_cell", out: str = "h3_cells"
) -> pl.DataFrame:
    """One row per ``group`` value with the sorted list of its distinct cells.

    Null cells are ignored; the result is sorted by ``group``.
    """
    for name in (group, cell):
        if name not in frame.columns:
            raise ValueError(f"column {name!r} not found; columns are {frame.columns}")
    return (
        frame.select(group, cell)
        .drop_nulls(cell)
        .unique()
        .group_by(group)
        .agg(pl.col(cell).sort().alias(out))
        .sort(group)
    )


def footprint(cells: Iterable[str | None]) -> frozenset[str]:
    """The set of distinct non-null cells of a group (its footprint)."""
    return frozenset(c for c in cells if c is not None)


def grid_disk_cells(cells: pl.Series | Iterable[str], k: int = 1) -> pl.DataFrame:
    """Pairs ``(h3_cell, neighbor_cell)`` for every cell within ``k`` grid steps.

    Each distinct input cell is paired with every cell of its ``grid_disk``
    (which includes the cell itself).  Sorted by both columns.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    series = cells if isinstance(cells, pl.Series) else pl.Series("h3_cell", list(cells), dtype=pl.Utf8)
    distinct = series.drop_nulls().unique().rename("h3_cell")
    _check_cells(distinct)
    if _plh3 is not None:
        pairs = distinct.to_frame().with_columns(_plh3.grid_disk("h3_cell", k).alias("neighbor_cell"))
    else:
        pairs = distinct.to_frame().with_columns(
            pl.Series("neighbor_cell", [sorted(h3.grid_disk(c, k)) for c in distinct.to_list()],
                      dtype=pl.List(pl.Utf8))
        )
    return pairs.explode("neighbor_cell").sort("h3_cell", "neighbor_cell")


def cell_neighbors(cell: str, k: int = 1) -> frozenset[str]:
    """The cells within ``k`` grid steps of ``cell`` (``h3.grid_disk``; includes ``cell``)."""
    if not h3.is_valid_cell(cell):
        raise ValueError(f"invalid H3 cell {cell!r}")
    return frozenset(h3.grid_disk(cell, k))


def cell_area_km2(cells: pl.Series | Iterable[str]) -> pl.Series:
    """Area of each cell in square kilometres (nulls stay null)."""
    series = cells if isinstance(cells, pl.Series) else pl.Series("h3_cell", list(cells), dtype=pl.Utf8)
    _check_cells(series)
    return _map_distinct(series, lambda c: h3.cell_area(c, unit="km^2"), pl.Float64).alias("cell_area_km2")
