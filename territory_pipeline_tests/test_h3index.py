"""H3 indexing: the vectorized path equals h3 itself, the fallback agrees, helpers behave."""

from __future__ import annotations

import h3
import numpy as np
import polars as pl
import pytest

from territory_pipeline.geography import h3index
from territory_pipeline.geography.h3index import (
    add_h3_cells,
    cell_area_km2,
    cell_footprints,
    cell_neighbors,
    cells_to_parent,
    footprint,
    grid_disk_cells,
)


def _points(n: int = 2000, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    lat = rng.uniform(18.0, 64.0, n)
    lon = rng.uniform(-160.0, -66.0, n)
    # repeat some coordinates, as ZIP centroids do
    lat[::5] = lat[0]
    lon[::5] = lon[0]
    return pl.DataFrame({"latitude": lat, "longitude": lon})


@pytest.mark.parametrize("resolution", [5, 7, 9])
def test_vectorized_cells_equal_h3_loop(resolution: int) -> None:
    frame = _points()
    cells = add_h3_cells(frame, resolution)["h3_cell"].to_list()
    expected = [h3.latlng_to_cell(a, b, resolution) for a, b in frame.iter_rows()]
    assert cells == expected
    assert all(h3.get_resolution(c) == resolution for c in cells[:50])


@pytest.mark.parametrize("backend", ["polars-h3", "h3"])
def test_repeated_coordinates_take_the_distinct_path_and_keep_order(backend: str) -> None:
    if backend == "polars-h3":
        pytest.importorskip("polars_h3")
    rng = np.random.default_rng(3)
    spots = np.column_stack([rng.uniform(25, 49, 20), rng.uniform(-124, -67, 20)])
    pick = rng.integers(0, 20, 1000)
    frame = pl.DataFrame({"latitude": spots[pick, 0], "longitude": spots[pick, 1]}).with_row_index("row")
    frame = frame.with_columns(pl.when(pl.col("row") == 7).then(None).otherwise(pl.col("latitude")).alias("latitude"))
    out = add_h3_cells(frame, 8, backend=backend)
    assert out["row"].to_list() == list(range(1000))
    expected = [None if a is None else h3.latlng_to_cell(a, b, 8)
                for a, b in frame.select("latitude", "longitude").iter_rows()]
    assert out["h3_cell"].to_list() == expected


def test_fallback_backend_equals_default_and_keeps_row_order() -> None:
    frame = _points(500).with_row_index("row")
    fast = add_h3_cells(frame, 7)
    slow = add_h3_cells(frame, 7, backend="h3")
    assert fast.equals(slow)
    assert slow["row"].to_list() == list(range(500))


def test_default_backend_is_vectorized_when_installed() -> None:
    pytest.importorskip("polars_h3")
    assert h3index.DEFAULT_BACKEND == "polars-h3"


@pytest.mark.parametrize("backend", [None, "h3"])
def test_null_coordinates_give_null_cell_and_custom_columns(backend: str | None) -> None:
    frame = pl.DataFrame({"lat": [33.4484, None], "lng": [-112.0740, -110.97]})
    out = add_h3_cells(frame, 7, lat="lat", lon="lng", out="cell", backend=backend)
    assert out["cell"].to_list() == [h3.latlng_to_cell(33.4484, -112.0740, 7), None]


@pytest.mark.parametrize("lat,lon", [(95.0, 0.0), (33.0, -190.0), (float("nan"), -100.0)])
def test_out_of_range_coordinates_raise(lat: float, lon: float) -> None:
    with pytest.raises(ValueError, match="out of range or NaN"):
        add_h3_cells(pl.DataFrame({"latitude": [lat], "longitude": [lon]}))


def test_bad_resolution_backend_and_missing_column_raise() -> None:
    frame = _points(3)
    with pytest.raises(ValueError, match="resolution"):
        add_h3_cells(frame, 16)
    with pytest.raises(ValueError, match="unknown H3 backend"):
        add_h3_cells(frame, backend="duckdb")
    with pytest.raises(ValueError, match="not found"):
        add_h3_cells(frame, lat="lat")


def test_cells_to_parent_matches_h3_and_rejects_bad_cells() -> None:
    cells = add_h3_cells(_points(300), 7)["h3_cell"]
    parents = cells_to_parent(cells, 5)
    assert parents.to_list() == [h3.cell_to_parent(c, 5) for c in cells.to_list()]
    with pytest.raises(ValueError, match="invalid H3 cells"):
        cells_to_parent(["not-a-cell"], 5)
    with pytest.raises(ValueError, match="coarser"):
        cells_to_parent(parents, 7)


def test_footprints_neighbors_and_area() -> None:
    phoenix = h3.latlng_to_cell(33.4484, -112.0740, 7)
    ring = sorted(cell_neighbors(phoenix, 1))
    assert len(ring) == 7 and phoenix in ring
    frame = pl.DataFrame({"g": ["b", "a", "a", "a"], "h3_cell": [ring[0], ring[2], ring[1], ring[2]]})
    fp = cell_footprints(frame, "g")
    assert fp.rows() == [("a", [ring[1], ring[2]]), ("b", [ring[0]])]
    assert footprint([ring[1], None, ring[1]]) == frozenset({ring[1]})
    pairs = grid_disk_cells([phoenix, phoenix], 1)
    assert pairs.height == 7 and set(pairs["neighbor_cell"]) == set(ring)
    area = cell_area_km2([phoenix, None])
    assert area[0] == pytest.approx(h3.cell_area(phoenix, unit="km^2"))
    assert 4.0 < area[0] < 6.5 and area[1] is None
    with pytest.raises(ValueError, match="invalid H3 cell"):
        cell_neighbors("zz")
