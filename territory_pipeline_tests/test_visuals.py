"""Tests for territory_pipeline.visuals: the HTML map, the PNG map, charts, palette."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import struct

import h3
import matplotlib.image
import numpy as np
import polars as pl
import pytest

from territory_pipeline.universe.validation import npi_check_digit, npi_check_digit_valid
from territory_pipeline.visuals import (
    MAP_FILE_NAME,
    imbalance_history_png,
    maps,
    markdown_image,
    opportunity_chart_png,
    palette,
    rebalance_chart_png,
    remote_asset_references,
    render_static_map_png,
    render_territory_map,
    state_outlines_geojson,
    territory_colours,
    us_outline,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (city, state, latitude, longitude, spread in degrees, territories splitting the metro)
METROS = (
    ("Boston", "MA", 42.3601, -71.0589, 0.14, ("T01",)),
    ("Atlanta", "GA", 33.7490, -84.3880, 0.18, ("T02",)),
    ("Chicago", "IL", 41.8781, -87.6298, 0.16, ("T03", "T04")),  # split north / south
    ("Dallas", "TX", 32.7767, -96.7970, 0.20, ("T05",)),
)
REPS = {
    "T01": ("R-101", "Avery Quinn", (42.3736, -71.1097)),  # Cambridge
    "T02": ("R-102", "Jordan Ellis", (33.7701, -84.3880)),
    "T03": ("R-103", "Morgan Patel", (41.9484, -87.6553)),
    "T04": ("R-104", "Riley O'Connor", (41.7943, -87.5907)),
    "T05": ("R-105", "Casey Nguyen", None),  # no home base on file
}
SPECIALTIES = (
    ("Orthopaedic Surgery Physician", 3.0),
    ("Cardiovascular Disease Physician", 2.5),
    ("Urology Physician", 2.0),
    ("Ambulatory Surgical Clinic/Center", 4.0),
    ("General Acute Care Hospital", 6.0),
)
LAST_NAMES = (
    "SMITH",
    "GARCIA",
    "JOHNSON",
    "LEE",
    "BROWN",
    "MARTINEZ",
    "DAVIS",
    "WILSON",
    "ANDERSON",
    "THOMAS",
)
FIRST_NAMES = ("MARIA", "JAMES", "LINDA", "ROBERT", "PRIYA", "DAVID", "ELENA", "MICHAEL", "AISHA", "JOHN")


def sample_alignment(
    providers_per_metro: int = 75, seed: int = 20240401
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A realistic alignment: providers around four metros, five territories, Chicago split.

    Three providers have no coordinates (failed geocodes) and territory T05's rep
    has no home base.  Returns (assignments, territories) in the visuals' input shape.
    """
    rng = np.random.default_rng(seed)
    rows = []
    serial = 0
    for city, state, latitude, longitude, spread, territory_ids in METROS:
        for _ in range(providers_per_metro):
            serial += 1
            first_nine = f"1{serial:08d}"
            specialty, weight = SPECIALTIES[int(rng.integers(len(SPECIALTIES)))]
            lat = float(latitude + rng.normal(0, spread))
            lon = float(longitude + rng.normal(0, spread * 1.2))
            territory_id = (
                territory_ids[0] if len(territory_ids) == 1 or lat >= latitude else territory_ids[1]
            )
            rep_id, rep_name, _base = REPS[territory_id]
            organization = specialty.endswith(("Center", "Hospital"))
            name = (
                f"{city.upper()} {specialty.split()[0].upper()} {serial}"
                if organization
                else f"{LAST_NAMES[serial % 10]}, {FIRST_NAMES[(serial * 7) % 10]}"
            )
            rows.append(
                {
                    "npi": first_nine + npi_check_digit(first_nine),
                    "provider_name": name,
                    "taxonomy_display_name": specialty,
                    "latitude": lat,
                    "longitude": lon,
                    "h3_cell": h3.latlng_to_cell(lat, lon, 7),
                    "opportunity_score": round(float(weight * rng.gamma(2.0, 5.0)), 3),
                    "territory_id": territory_id,
                    "rep_id": rep_id,
                    "rep_name": rep_name,
                    "city": city,
                    "state": state,
                }
            )
    for index in range(3):  # failed geocodes: no coordinates, no cell
        row = dict(rows[index * 50])
        serial += 1
        first_nine = f"1{serial:08d}"
        row.update(npi=first_nine + npi_check_digit(first_nine), latitude=None, longitude=None, h3_cell=None)
        rows.append(row)
    assignments = pl.DataFrame(rows, schema_overrides={"latitude": pl.Float64, "longitude": pl.Float64})
    territories = summarise(assignments)
    return assignments, territories


def summarise(assignments: pl.DataFrame) -> pl.DataFrame:
    """The territories frame for ``assignments``: score, equal target, deviation, base."""
    totals = (
        assignments.group_by("territory_id", "rep_id", "rep_name")
        .agg(pl.col("opportunity_score").sum(), pl.len().alias("provider_count"))
        .sort("territory_id")
    )
    target = totals["opportunity_score"].sum() / totals.height
    bases = [REPS[t][2] for t in totals["territory_id"]]
    return totals.with_columns(
        pl.lit(target).alias("target_score"),
        (pl.col("opportunity_score") / target - 1).alias("deviation"),
        pl.Series("base_latitude", [b[0] if b else None for b in bases], dtype=pl.Float64),
        pl.Series("base_longitude", [b[1] if b else None for b in bases], dtype=pl.Float64),
    )


@pytest.fixture(scope="module")
def alignment() -> tuple[pl.DataFrame, pl.DataFrame]:
    return sample_alignment()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pixels_near(image: np.ndarray, hex_colour: str, tolerance: float = 0.06) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < tolerance).sum())


# --- sample data sanity -----------------------------------------------------------------------


def test_sample_alignment_is_realistic(alignment):
    assignments, territories = alignment
    assert assignments.height == 303
    assert all(npi_check_digit_valid(npi) for npi in assignments["npi"])
    assert territories["territory_id"].to_list() == ["T01", "T02", "T03", "T04", "T05"]
    assert territories["provider_count"].sum() == assignments.height


# --- interactive map --------------------------------------------------------------------------


def test_map_draws_each_territory_base_legend_and_tooltips(alignment, tmp_path):
    assignments, territories = alignment
    path = render_territory_map(assignments, territories, tmp_path, title="Q2 2024 alignment", tiles=False)
    assert path == tmp_path / MAP_FILE_NAME and path.stat().st_size > 0
    page = path.read_text(encoding="utf-8")
    colours = territory_colours(territories["territory_id"])

    # One layer group and one coloured footprint per territory.
    assert page.count("L.featureGroup(") == territories.height
    for territory_id, colour in colours.items():
        assert f"territory-footprint territory-{territory_id}" in page
        assert colour in page
    # Providers with coordinates are circle markers, each with its tooltip data.
    drawn = assignments.filter(pl.col("latitude").is_not_null())
    assert page.count('"npi": "') == drawn.height
    for npi in drawn["npi"].head(20):
        assert f'"npi": "{npi}"' in page
    for alias in ("NPI", "Name", "Specialty", "Score", "Territory", "Rep"):
        assert f'"{alias}"' in page
    # Rep home bases: four of five territories have one; names are HTML-escaped.
    assert page.count('"className": "rep-base"') == 4
    assert "Home base of Riley O&#x27;Connor (R-104), territory T04" in page
    assert "O\\u0027Connor" not in page  # layer-control labels are HTML too
    # Legend: one row per territory, with its score and signed deviation.
    legend = page[page.index('<div id="territory-legend">') :]
    for row in territories.iter_rows(named=True):
        assert f'data-territory="{row["territory_id"]}"' in legend
        assert f"{row['opportunity_score']:,.1f}" in legend
        assert f"{row['deviation']:+.1%}" in legend
    assert "3 providers without coordinates not drawn" in page
    assert "Q2 2024 alignment" in page


def test_map_aggregates_to_h3_cells_above_max_points(alignment, tmp_path):
    assignments, territories = alignment
    # Group practices: 60 more providers at addresses already on file, so cells < providers.
    colleagues = assignments.head(60).with_columns(
        (pl.lit("1888") + pl.int_range(pl.len()).cast(pl.Utf8).str.zfill(6)).alias("npi")
    )
    universe = pl.concat([assignments, colleagues])
    territories = summarise(universe)
    drawn = universe.filter(pl.col("latitude").is_not_null())
    cells = drawn["h3_cell"].n_unique()
    assert cells < drawn.height

    page = render_territory_map(
        universe, territories, tmp_path / "cells.html", title="cells", max_points=cells, tiles=False
    ).read_text(encoding="utf-8")
    assert "provider-marker" not in page and '"npi": "' not in page
    assert page.count('"cell": "') == cells
    assert "providers aggregated to H3 cells (resolution 7)" in page
    top = (
        drawn.group_by("h3_cell")
        .agg(pl.col("opportunity_score").sum(), pl.len())
        .sort("opportunity_score")
        .tail(1)
    )
    feature = page[page.index(f'"cell": "{top["h3_cell"][0]}"') :][:300]
    assert f'"score": "{top["opportunity_score"][0]:,.1f}"' in feature
    assert f'"providers": "{top["len"][0]}"' in feature

    coarse = render_territory_map(
        universe, territories, tmp_path / "coarse.html", title="coarse", max_points=100, tiles=False
    ).read_text(encoding="utf-8")
    drawn_cells = re.findall(r'"cell": "([0-9a-f]{15})"', coarse)
    assert 0 < len(drawn_cells) <= 100 < cells
    resolution = h3.get_resolution(drawn_cells[0])
    assert resolution < 7 and f"(resolution {resolution})" in coarse
    cell_counts = re.findall(r'"cell": "[0-9a-f]{15}", "mix": "[^"]*", "providers": "(\d+)"', coarse)
    assert len(cell_counts) == len(drawn_cells)
    assert sum(int(n) for n in cell_counts) == drawn.height  # every provider counted once

    at_limit = render_territory_map(
        universe, territories, tmp_path / "limit.html", title="limit", max_points=drawn.height, tiles=False
    ).read_text(encoding="utf-8")
    assert "provider-cell" not in at_limit and at_limit.count('"npi": "') == drawn.height


def test_aggregated_cell_shared_by_two_territories_goes_to_the_larger(alignment, tmp_path):
    assignments, territories = alignment
    template = assignments.filter(pl.col("territory_id") == "T03").head(1)
    cell = template["h3_cell"][0]
    in_cell = assignments.filter(pl.col("h3_cell") == cell)["territory_id"].value_counts()
    t03 = int(in_cell.filter(pl.col("territory_id") == "T03")["count"].sum())
    t04_before = int(in_cell.filter(pl.col("territory_id") == "T04")["count"].sum())
    added = t03 + 1 - t04_before  # T04 then holds one provider more than T03 in this cell
    extra = pl.concat(
        [
            template.with_columns(
                pl.lit(f"19999999{index:02d}").alias("npi"),
                pl.lit("T04").alias("territory_id"),
                pl.lit("Riley O'Connor").alias("rep_name"),
            )
            for index in range(added)
        ]
    )
    universe = pl.concat([assignments, extra])
    cells = universe["h3_cell"].drop_nulls().n_unique()
    page = render_territory_map(
        universe, territories, tmp_path / "shared.html", title="shared", max_points=cells, tiles=False
    ).read_text(encoding="utf-8")
    feature = page[page.index(f'"cell": "{cell}"') :][:200]
    assert f'"mix": "T04 ({t03 + 1}), T03 ({t03})"' in feature
    assert '"territory": "T04"' in feature
    assert f'"providers": "{2 * t03 + 1}"' in feature


def test_map_html_is_offline_and_tiles_are_optional(alignment, tmp_path):
    assignments, territories = alignment
    with_tiles = render_territory_map(assignments, territories, tmp_path / "a.html", title="t", tiles=True)
    without = render_territory_map(assignments, territories, tmp_path / "b.html", title="t", tiles=False)
    for page in (with_tiles.read_text(encoding="utf-8"), without.read_text(encoding="utf-8")):
        assert remote_asset_references(page) == []
        assert "Leaflet 1.9.4" in page  # inlined library
        assert "url(images/" not in page  # CSS images inlined as data URIs
        assert page.count('"className": "state-outline"') == 1
        assert '"STATE_ABBR"' not in page and '"state": "MA"' in page
    assert "tile.openstreetmap.org" in with_tiles.read_text(encoding="utf-8")
    assert "tile.openstreetmap.org" not in without.read_text(encoding="utf-8")
    # The check itself works: a CDN link is reported.
    assert remote_asset_references('<script src="https://cdn.example/leaflet.js"></script>')


def test_map_html_is_deterministic(alignment, tmp_path):
    assignments, territories = alignment
    first = render_territory_map(assignments, territories, tmp_path / "1.html", title="same", tiles=True)
    shuffled = assignments.sample(fraction=1.0, shuffle=True, seed=3)
    second = render_territory_map(
        shuffled, territories.reverse(), tmp_path / "2.html", title="same", tiles=True
    )
    assert first.read_bytes() == second.read_bytes()
    assert re.search(r"map_0{31}1\b", first.read_text(encoding="utf-8"))


def test_map_without_state_outline_package_says_so(alignment, tmp_path, monkeypatch):
    assignments, territories = alignment
    monkeypatch.setattr(us_outline, "_SHAPEFILE", ("no_such_package_for_outlines", "x.shp"))
    us_outline._state_geometries.cache_clear()
    try:
        page = render_territory_map(assignments, territories, tmp_path, title="t", tiles=False).read_text(
            encoding="utf-8"
        )
        png = render_static_map_png(assignments, territories, title="t")
    finally:
        us_outline._state_geometries.cache_clear()
    assert "state-outline" not in page
    assert "no state outlines (state outlines need the packages libpysal" in page
    assert png_size(png) == (1400, 900)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, t: (a.drop("h3_cell"), t), "assignments frame lacks required columns: h3_cell"),
        (lambda a, t: (a, t.drop("deviation")), "territories frame lacks required columns: deviation"),
        (
            lambda a, t: (a, t.filter(pl.col("territory_id") != "T02")),
            r"absent from the territories frame: \['T02'\]",
        ),
        (
            lambda a, t: (a.with_columns(pl.lit("zzz").alias("h3_cell")), t),
            "not a valid H3 cell for 300 provider",
        ),
        (lambda a, t: (a, pl.concat([t, t.head(1)])), "repeats territory_id"),
        (lambda a, t: (a.with_columns(pl.lit(None, pl.Utf8).alias("territory_id")), t), "no territory_id"),
    ],
)
def test_map_rejects_bad_input_with_a_clear_error(alignment, tmp_path, mutate, message):
    assignments, territories = mutate(*alignment)
    with pytest.raises(ValueError, match=message):
        render_territory_map(assignments, territories, tmp_path, title="bad", tiles=False)
    with pytest.raises(ValueError, match=message):
        render_static_map_png(assignments, territories, title="bad")


# --- static map ------------------------------------------------------------------------------


def test_static_map_png_decodes_and_shows_territory_colours(alignment):
    assignments, territories = alignment
    png = render_static_map_png(assignments, territories, title="Q2 2024 alignment")
    assert png_size(png) == (1400, 900)
    assert 10_000 < len(png) < 1_000_000
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (900, 1400)
    for colour in territory_colours(territories["territory_id"]).values():
        assert pixels_near(image, colour) > 30
    assert render_static_map_png(assignments, territories, title="Q2 2024 alignment") == png


def test_static_map_metro_panels_group_providers_by_metro(alignment):
    assignments, _territories = alignment
    groups = maps._metro_groups(assignments.filter(pl.col("latitude").is_not_null()), limit=4)
    assert len(groups) == 4 and sum(group.height for group in groups) == 300
    assert sorted(group["state"].unique().to_list()[0] for group in groups) == ["GA", "IL", "MA", "TX"]
    assert all(group["state"].n_unique() == 1 for group in groups)
    assert maps._group_label(groups[0]).endswith("— 75 providers")
    assert len(maps._metro_groups(assignments.filter(pl.col("latitude").is_not_null()), limit=2)) == 2


# --- charts ----------------------------------------------------------------------------------


def test_opportunity_chart_highlights_bars_outside_the_band(alignment):
    _assignments, territories = alignment
    balanced = territories.with_columns(
        (pl.col("target_score") * (1 + 0.01 * pl.int_range(pl.len()))).alias("opportunity_score"),
    ).with_columns((pl.col("opportunity_score") / pl.col("target_score") - 1).alias("deviation"))
    unbalanced_png = opportunity_chart_png(territories, tolerance=0.05)
    balanced_png = opportunity_chart_png(balanced, tolerance=0.05)
    assert png_size(unbalanced_png)[0] >= 800
    red = "#e45756"
    red_unbalanced = pixels_near(matplotlib.image.imread(io.BytesIO(unbalanced_png)), red, 0.02)
    red_balanced = pixels_near(matplotlib.image.imread(io.BytesIO(balanced_png)), red, 0.02)
    assert (territories["deviation"].abs() > 0.05).any()
    assert red_unbalanced > 20 * max(red_balanced, 1)  # balanced: only the legend swatch is red
    assert opportunity_chart_png(territories, tolerance=0.05) == unbalanced_png
    with pytest.raises(ValueError, match="lacks required columns: target_score"):
        opportunity_chart_png(territories.drop("target_score"))
    with pytest.raises(ValueError, match="tolerance"):
        opportunity_chart_png(territories, tolerance=1.5)


def test_rebalance_chart_pairs_before_and_after(alignment):
    _assignments, before = alignment
    after = before.with_columns(
        (pl.col("target_score") * 1.01).alias("opportunity_score"), pl.lit(0.01).alias("deviation")
    )
    png = rebalance_chart_png(before, after, tolerance=0.05)
    width, height = png_size(png)
    assert width > 0 and height > 0
    image = matplotlib.image.imread(io.BytesIO(png))
    assert pixels_near(image, "#bab0ac", 0.02) > 1000  # before bars
    assert pixels_near(image, "#4c78a8", 0.02) > 1000  # after bars, all inside the band
    closed = rebalance_chart_png(before, after.filter(pl.col("territory_id") != "T05"))
    assert png_size(closed)[0] > 0 and closed != png
    with pytest.raises(ValueError, match="after frame is empty"):
        rebalance_chart_png(before, after.clear())


def test_imbalance_history_chart():
    history = pl.DataFrame(
        {
            "refresh_quarter": [
                dt.date(2024, 1, 1),
                dt.date(2024, 4, 1),
                dt.date(2024, 7, 1),
                dt.date(2024, 10, 1),
                dt.date(2024, 10, 1),
                dt.date(2025, 1, 1),
            ],
            "imbalance": [0.03, 0.08, 0.15, 0.24, 0.04, 0.06],
            "alignment_id": ["A1", "A1", "A1", "A1", "A2", "A2"],
            "trigger": [None, None, None, None, "rebalance", None],
        }
    )
    png = imbalance_history_png(history, tolerance=0.05, action_threshold=0.20)
    assert png_size(png)[0] > 0
    assert imbalance_history_png(history.reverse()) == png  # sorted by quarter, then alignment
    assert imbalance_history_png(history.drop("trigger", "alignment_id").head(4)) != png
    with pytest.raises(ValueError, match="action_threshold"):
        imbalance_history_png(history, tolerance=0.2, action_threshold=0.1)
    with pytest.raises(ValueError, match="null refresh_quarter or imbalance"):
        imbalance_history_png(history.with_columns(pl.lit(None, pl.Float64).alias("imbalance")))


def test_markdown_image_round_trips_png(alignment):
    png = opportunity_chart_png(alignment[1])
    markdown = markdown_image(png, "Opportunity [Q2]\nper territory")
    match = re.fullmatch(r"!\[([^\]\n]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match and match.group(1) == "Opportunity (Q2) per territory"
    assert base64.b64decode(match.group(2)) == png
    with pytest.raises(ValueError, match="PNG signature"):
        markdown_image(b"GIF89a....", "x")


# --- palette and outlines --------------------------------------------------------------------------


def test_palette_is_distinct_and_deterministic():
    colours = palette(300)
    assert len(set(colours)) == 300 and palette(300) == colours
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    assert colours[:3] == ["#1f77b4", "#ff7f0e", "#2ca02c"]
    # Neighbours in territory order differ clearly (hue or lightness).
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours])
    assert np.abs(np.diff(rgb, axis=0)).sum(axis=1).min() > 100
    assert palette(40) == colours[:40]  # adding territories does not recolour the others
    assert territory_colours(["T2", "T1", "T2"]) == {"T1": colours[0], "T2": colours[1]}
    with pytest.raises(ValueError):
        palette(-1)


def test_state_outlines_cover_the_contiguous_states():
    outlines = state_outlines_geojson()
    states = [feature["properties"]["state"] for feature in outlines["features"]]
    assert len(states) == 48 and states == sorted(states)
    assert {"MA", "GA", "IL", "TX", "CA"} <= set(states) and "AK" not in states
    texas = next(f for f in outlines["features"] if f["properties"]["state"] == "TX")
    geometry = texas["geometry"]
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    lons = [point[0] for polygon in polygons for ring in polygon for point in ring]
    assert -107 < min(lons) < -106 and -94 < max(lons) < -93


def test_initial_view_fits_the_mainland_when_a_few_points_are_offshore() -> None:
    from territory_pipeline.visuals.maps import _view_bounds

    lats = [33.4, 40.7, 47.6, 25.8] * 10 + [61.2, 21.3]  # Phoenix, New York, Seattle, Miami; Anchorage, Honolulu
    lons = [-112.1, -74.0, -122.3, -80.2] * 10 + [-149.9, -157.9]
    south, west, north, east = _view_bounds(lats, lons)
    assert (south, north) == (25.8, 47.6) and (west, east) == (-122.3, -74.0)
    # Mostly offshore: the view covers everything.
    assert _view_bounds([61.2, 61.3, 40.7], [-149.9, -150.0, -74.0]) == (40.7, -150.0, 61.3, -74.0)
