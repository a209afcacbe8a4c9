"""Territory maps: an interactive, self-contained HTML map and a static PNG map.

Interactive map (folium 0.20 / Leaflet)
  * one Leaflet layer group per territory holding its H3 footprint (the union
    of its members' res-7 cells), its providers and its rep's home base;
  * providers as circle markers with a tooltip (NPI, name, specialty, score,
    territory, rep), or, above ``max_points`` providers, one hexagon per H3
    cell with the provider count and summed score (cells coarsened until there
    are at most ``max_points``), so large universes stay responsive;
  * a scrollable legend with each territory's score, target and deviation;
  * contiguous US state outlines embedded from package data (``us_outline``).

Offline: folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs.
This module drops those links and inlines Leaflet 1.9.4 (JS and CSS, with its
images as data URIs) from the ``django-js-lib-leaflet`` wheel, which vendors
the official Leaflet dist files; nothing else is needed because the map uses
only core Leaflet features (GeoJSON, circle markers, div icons, tooltips, the
layer control).  The HTML therefore renders with no network.  Basemap tiles
(``tiles=True``, OpenStreetMap) load when a network is there and are merely
absent otherwise.

Determinism: branca gives every element a random 32-hex id.  After rendering
(and before Leaflet is spliced in), each such id is replaced by a zero-padded
counter in order of first appearance, so the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import importlib.resources
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import folium
import h3
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from territory_pipeline.visuals.palette import territory_colours
from territory_pipeline.visuals.us_outline import (
    StateOutlinesUnavailable,
    state_outline_rings,
    state_outlines_geojson,
)

ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "npi",
    "provider_name",
    "taxonomy_display_name",
    "latitude",
    "longitude",
    "h3_cell",
    "opportunity_score",
    "territory_id",
    "rep_id",
    "rep_name",
    "city",
    "state",
)
TERRITORY_COLUMNS: tuple[str, ...] = (
    "territory_id",
    "rep_id",
    "rep_name",
    "opportunity_score",
    "target_score",
    "deviation",
    "provider_count",
    "base_latitude",
    "base_longitude",
)
MAP_FILE_NAME = "territory_map.html"
STATIC_MAP_SIZE_PX = (1400, 900)
_STATIC_DPI = 100
_STATIC_LEGEND_ROWS = 30
_STATIC_INSET_MAX_TERRITORIES = 12
_COORDINATE_DECIMALS = 5  # about 1 m: enough for a map, keeps the HTML small

_LEAFLET_PACKAGE = "js_lib_leaflet"
_LEAFLET_DIR = "static/js_lib_leaflet"
_LEAFLET_CSS_SLOT = "<!-- leaflet.css is inlined here -->"
_LEAFLET_JS_SLOT = "<!-- leaflet.js is inlined here -->"
_RANDOM_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_REMOTE_ASSET = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


# --- shared preparation --------------------------------------------------------


@dataclass(frozen=True)
class _MapData:
    """Validated inputs shared by the HTML and PNG maps."""

    providers: pl.DataFrame  # providers with coordinates, sorted by territory_id, npi
    territories: pl.DataFrame  # sorted by territory_id
    colours: dict[str, str]
    missing_coordinates: int  # providers not drawn because latitude/longitude is null
    bounds: tuple[float, float, float, float]  # south, west, north, east


def _require_columns(frame: pl.DataFrame, columns: tuple[str, ...], frame_name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{frame_name} frame lacks required columns: {', '.join(missing)}")


def _prepare(assignments: pl.DataFrame, territories: pl.DataFrame) -> _MapData:
    _require_columns(assignments, ASSIGNMENT_COLUMNS, "assignments")
    _require_columns(territories, TERRITORY_COLUMNS, "territories")
    if territories.height == 0:
        raise ValueError("territories frame is empty: nothing to map")
    duplicated = territories.filter(pl.col("territory_id").is_duplicated())["territory_id"]
    if duplicated.len():
        raise ValueError(f"territories frame repeats territory_id: {sorted(set(duplicated))[:5]}")
    if territories["territory_id"].null_count():
        raise ValueError("territories frame has a null territory_id")
    known = set(territories["territory_id"].to_list())
    unknown = sorted(set(assignments["territory_id"].drop_nulls().to_list()) - known)
    if unknown:
        raise ValueError(f"assignments name territories absent from the territories frame: {unknown[:5]}")
    if assignments["territory_id"].null_count():
        example = assignments.filter(pl.col("territory_id").is_null())["npi"][0]
        raise ValueError(f"assignments have providers with no territory_id (e.g. npi {example})")

    has_coordinates = pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null()
    providers = (
        assignments.select(ASSIGNMENT_COLUMNS)
        .with_columns(
            pl.col("latitude").cast(pl.Float64),
            pl.col("longitude").cast(pl.Float64),
            pl.col("opportunity_score").cast(pl.Float64),
        )
        .filter(has_coordinates)
        .sort("territory_id", "npi")
    )
    missing_coordinates = assignments.height - providers.height
    invalid_cells = [
        npi
        for npi, cell in zip(providers["npi"], providers["h3_cell"], strict=True)
        if cell is None or not h3.is_valid_cell(cell)
    ]
    if invalid_cells:
        raise ValueError(
            f"h3_cell is null or not a valid H3 cell for {len(invalid_cells)} provider(s) "
            f"with coordinates (e.g. npi {invalid_cells[0]})"
        )
    territories = territories.select(TERRITORY_COLUMNS).sort("territory_id")
    colours = territory_colours(territories["territory_id"].to_list())

    latitudes = providers["latitude"].to_list() + territories["base_latitude"].drop_nulls().to_list()
    longitudes = providers["longitude"].to_list() + territories["base_longitude"].drop_nulls().to_list()
    if not latitudes:
        raise ValueError("no provider or rep base has coordinates: nothing to map")
    return _MapData(providers, territories, colours, missing_coordinates, _view_bounds(latitudes, longitudes))


# The contiguous United States: the initial view when nearly everything is there, so a few
# providers in Alaska, Hawaii or Puerto Rico do not shrink the mainland to a corner.
CONUS_BOX = (24.0, -125.5, 49.8, -66.5)  # south, west, north, east
MAINLAND_SHARE = 0.9


def _view_bounds(latitudes: list[float], longitudes: list[float]) -> tuple[float, float, float, float]:
    """South, west, north, east of the initial view (offshore points are drawn but may be off-screen)."""
    lat, lon = np.asarray(latitudes, dtype=float), np.asarray(longitudes, dtype=float)
    south, west, north, east = CONUS_BOX
    mainland = (lat >= south) & (lat <= north) & (lon >= west) & (lon <= east)
    if mainland.mean() >= MAINLAND_SHARE and mainland.any():
        lat, lon = lat[mainland], lon[mainland]
    return (float(lat.min()), float(lon.min()), float(lat.max()), float(lon.max()))


def _format_score(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.1f}"


def _format_deviation(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.1%}"


def _css_token(territory_id: str) -> str:
    """A CSS-class-safe token for a territory id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", territory_id)


def _aggregation_resolution(cells: list[str], max_cells: int) -> int:
    """The finest resolution, at most the cells' own, at which they fall in ``max_cells`` cells or fewer.

    Never coarser than resolution 0; ``max_cells`` below the resolution-0
    count therefore still yields resolution 0.
    """
    resolution = max(h3.get_resolution(cell) for cell in cells)
    current = set(cells)
    while resolution > 0 and len(current) > max_cells:
        resolution -= 1
        current = {h3.cell_to_parent(cell, resolution) for cell in current}
    return resolution


def _cell_aggregates(providers: pl.DataFrame, resolution: int) -> pl.DataFrame:
    """One row per H3 cell at ``resolution``: count, summed score and its dominant territory.

    The dominant territory holds the most providers of the cell (ties: higher
    summed score, then smaller territory_id); ``territory_mix`` lists every
    territory present, e.g. ``"T01 (12), T02 (3)"``.
    """
    parent_of = {
        cell: cell if h3.get_resolution(cell) <= resolution else h3.cell_to_parent(cell, resolution)
        for cell in providers["h3_cell"].unique().to_list()
    }
    providers = providers.with_columns(pl.col("h3_cell").replace_strict(parent_of, return_dtype=pl.Utf8))
    per_territory = (
        providers.group_by("h3_cell", "territory_id", "rep_name")
        .agg(pl.len().alias("count"), pl.col("opportunity_score").sum().alias("score"))
        .sort(["h3_cell", "count", "score", "territory_id"], descending=[False, True, True, False])
    )
    return (
        per_territory.group_by("h3_cell", maintain_order=True)
        .agg(
            pl.col("territory_id").first(),
            pl.col("rep_name").first(),
            pl.col("count").sum().alias("provider_count"),
            pl.col("score").sum().alias("opportunity_score"),
            pl.format("{} ({})", "territory_id", "count").str.join(", ").alias("territory_mix"),
        )
        .sort("territory_id", "h3_cell")
    )


# --- interactive HTML map ------------------------------------------------------------


@lru_cache(maxsize=1)
def _leaflet_assets() -> tuple[str, str]:
    """Return (leaflet.js, leaflet.css) from the django-js-lib-leaflet wheel, CSS images inlined."""
    try:
        root = importlib.resources.files(_LEAFLET_PACKAGE) / _LEAFLET_DIR
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "the offline map needs Leaflet from the 'django-js-lib-leaflet' package: "
            "pip install django-js-lib-leaflet"
        ) from error
    script = (root / "leaflet.js").read_text(encoding="utf-8")
    script = re.sub(r"//# sourceMappingURL=\S+\s*$", "", script)
    css = (root / "leaflet.css").read_text(encoding="utf-8")

    def inline_image(match: re.Match[str]) -> str:
        data = (root / "images" / match.group(1)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

    css = re.sub(r"url\(images/([A-Za-z0-9_.-]+\.png)\)", inline_image, css)
    return script, css


def _rep_base_icon(colour: str) -> folium.DivIcon:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="26" height="26" viewBox="0 0 26 26">'
        '<path d="M13 2 L24 12 L21 12 L21 24 L5 24 L5 12 L2 12 Z" '
        f'fill="{colour}" stroke="#111" stroke-width="1.8" stroke-linejoin="round"/>'
        '<rect x="10.5" y="16" width="5" height="8" fill="#fff" stroke="#111" stroke-width="1"/></svg>'
    )
    return folium.DivIcon(html=svg, icon_size=(26, 26), icon_anchor=(13, 24), class_name="rep-base")


def _legend_html(data: _MapData, tolerance: float) -> str:
    rows = []
    for row in data.territories.iter_rows(named=True):
        deviation = row["deviation"]
        outside = deviation is not None and not math.isnan(deviation) and abs(deviation) > tolerance
        base = "" if row["base_latitude"] is not None and row["base_longitude"] is not None else " †"
        rows.append(
            f'<tr class="legend-row" data-territory="{html.escape(row["territory_id"])}">'
            f'<td><span class="swatch" style="background:{data.colours[row["territory_id"]]}"></span></td>'
            f"<td>{html.escape(row['territory_id'])}</td>"
            f"<td>{html.escape(row['rep_name'] or '')}{base}</td>"
            f'<td class="num">{_format_score(row["opportunity_score"])}</td>'
            f'<td class="num">{_format_score(row["target_score"])}</td>'
            f'<td class="num{" outside" if outside else ""}">{_format_deviation(deviation)}</td>'
            f'<td class="num">{row["provider_count"]}</td></tr>'
        )
    return (
        "<style>"
        "#territory-legend{position:fixed;right:12px;bottom:24px;z-index:1000;background:#fff;"
        "border:1px solid #999;border-radius:6px;padding:6px 8px;max-height:45vh;overflow-y:auto;"
        "font:12px/1.35 system-ui,sans-serif;box-shadow:0 1px 5px rgba(0,0,0,.35)}"
        "#territory-legend table{border-collapse:collapse}"
        "#territory-legend td,#territory-legend th{padding:1px 5px;white-space:nowrap}"
        "#territory-legend .num{text-align:right}#territory-legend .outside{color:#c0392b;font-weight:600}"
        "#territory-legend .swatch{display:inline-block;width:12px;height:12px;border:1px solid #333}"
        "</style>"
        '<div id="territory-legend"><table><thead><tr><th></th><th>Territory</th><th>Rep</th>'
        "<th>Score</th><th>Target</th><th>Deviation</th><th>Providers</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + f'<div class="legend-note">Deviation outside ±{tolerance:.0%} in red.'
        + (" † no home base." if data.territories["base_latitude"].null_count() else "")
        + "</div></div>"
    )


def _notes(data: _MapData, aggregation_resolution: int | None, outlines_note: str | None) -> list[str]:
    notes = [f"{data.providers.height:,} providers", f"{data.territories.height} territories"]
    if aggregation_resolution is not None:
        notes.append(f"providers aggregated to H3 cells (resolution {aggregation_resolution})")
    if data.missing_coordinates:
        notes.append(f"{data.missing_coordinates:,} providers without coordinates not drawn")
    if outlines_note:
        notes.append(outlines_note)
    return notes


def _title_html(title: str, notes: list[str]) -> str:
    return (
        '<div id="map-title" style="position:fixed;top:10px;left:60px;z-index:1000;background:#fff;'
        "border:1px solid #999;border-radius:6px;padding:4px 10px;font:14px system-ui,sans-serif;"
        'box-shadow:0 1px 5px rgba(0,0,0,.35)">'
        f"<b>{html.escape(title)}</b><br><small>{html.escape(' · '.join(notes))}</small></div>"
    )


def _rounded_geometry(geometry: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON polygon/multipolygon with coordinates rounded to 1e-5 degrees (about 1 m)."""

    def rounded(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if value and isinstance(value[0], float):
                return [round(coordinate, _COORDINATE_DECIMALS) for coordinate in value]
            return [rounded(item) for item in value]
        return value

    return {"type": geometry["type"], "coordinates": rounded(geometry["coordinates"])}


def _footprint_feature(territory: dict[str, Any], cells: list[str]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": _rounded_geometry(h3.cells_to_geo(sorted(cells))),
        "properties": {
            "territory_id": html.escape(territory["territory_id"]),
            "rep_name": html.escape(territory["rep_name"] or ""),
            "score": _format_score(territory["opportunity_score"]),
            "target": _format_score(territory["target_score"]),
            "deviation": _format_deviation(territory["deviation"]),
            "providers": str(territory["provider_count"]),
        },
    }


def _provider_features(providers: pl.DataFrame) -> dict[str, Any]:
    features = [
        {
            "type": "Feature",
            "geometry": {
                "type": "Point",
                "coordinates": [
                    round(row["longitude"], _COORDINATE_DECIMALS),
                    round(row["latitude"], _COORDINATE_DECIMALS),
                ],
            },
            "properties": {
                "npi": row["npi"],
                "name": html.escape(row["provider_name"] or ""),
                "specialty": html.escape(row["taxonomy_display_name"] or ""),
                "score": _format_score(row["opportunity_score"]),
                "territory": html.escape(row["territory_id"]),
                "rep": html.escape(row["rep_name"] or ""),
                "place": html.escape(", ".join(v for v in (row["city"], row["state"]) if v)),
            },
        }
        for row in providers.iter_rows(named=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def _cell_features(cells: pl.DataFrame) -> dict[str, Any]:
    features = []
    for row in cells.iter_rows(named=True):
        boundary = [
            [round(lng, _COORDINATE_DECIMALS), round(lat, _COORDINATE_DECIMALS)]
            for lat, lng in h3.cell_to_boundary(row["h3_cell"])
        ]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [boundary + boundary[:1]]},
                "properties": {
                    "cell": row["h3_cell"],
                    "providers": str(row["provider_count"]),
                    "score": _format_score(row["opportunity_score"]),
                    "territory": html.escape(row["territory_id"]),
                    "rep": html.escape(row["rep_name"] or ""),
                    "mix": html.escape(row["territory_mix"]),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _static_style(style: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A folium style function giving every feature ``style``."""
    return lambda _feature: style


def render_territory_map(
    assignments: pl.DataFrame,
    territories: pl.DataFrame,
    out_path: Path,
    *,
    title: str,
    max_points: int = 4000,
    tiles: bool = True,
    tolerance: float = 0.05,
) -> Path:
    """Write a self-contained interactive territory map and return its path.

    ``out_path`` is either the HTML file to write or an existing directory, in which case
    ``territory_map.html`` is written inside it.  Each territory is a layer
    group (toggled in the layer control) with its H3 footprint, its providers
    (circle markers with tooltips; once more than ``max_points`` providers
    have coordinates, one hexagon per H3 cell with count and summed score, at
    the finest resolution giving at most ``max_points`` cells) and
    its rep's home base.  The legend lists score, target and deviation, red
    when outside ``±tolerance``.  Providers without coordinates are counted in
    the title block, not drawn.  The HTML inlines Leaflet and the state
    outlines, so it opens offline; ``tiles=True`` adds the OpenStreetMap layer,
    which loads only with a network.  Raises ``ValueError`` on missing
    columns, unknown or missing territory ids, or invalid H3 cells.
    """
    if max_points < 0:
        raise ValueError(f"max_points must be >= 0, got {max_points}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    data = _prepare(assignments, territories)
    out_path = Path(out_path)
    target = out_path / MAP_FILE_NAME if out_path.is_dir() else out_path
    aggregated = data.providers.height > max_points

    south, west, north, east = data.bounds
    fmap = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=5,
        tiles="OpenStreetMap" if tiles else None,
        control_scale=True,
    )
    fmap.default_js = []
    fmap.default_css = []
    root = fmap.get_root()
    root.header.add_child(folium.Element(_LEAFLET_CSS_SLOT), name="leaflet_css_inline")
    root.header.add_child(folium.Element(_LEAFLET_JS_SLOT), name="leaflet_js_inline")
    root.header.add_child(folium.Element(f"<title>{html.escape(title)}</title>"), name="page_title")

    try:
        folium.GeoJson(
            state_outlines_geojson(),
            name="US states",
            style_function=_static_style(
                {
                    "color": "#8a8a8a",
                    "weight": 1,
                    "fillColor": "#f3f1ea",
                    "fillOpacity": 0.6,
                    "className": "state-outline",
                }
            ),
            interactive=False,
            control=False,
        ).add_to(fmap)
        outlines_note = None
    except StateOutlinesUnavailable as error:
        outlines_note = f"no state outlines ({error})"

    members = data.providers.group_by("territory_id").agg(pl.col("h3_cell").unique())
    cells_by_territory = dict(zip(members["territory_id"], members["h3_cell"].to_list(), strict=True))
    resolution = (
        _aggregation_resolution(data.providers["h3_cell"].to_list(), max_points) if aggregated else None
    )
    cells = _cell_aggregates(data.providers, resolution) if resolution is not None else None

    for territory in data.territories.iter_rows(named=True):
        territory_id = territory["territory_id"]
        colour = data.colours[territory_id]
        token = _css_token(territory_id)
        group = folium.FeatureGroup(name=html.escape(f"{territory_id} · {territory['rep_name'] or ''}"))
        group.add_to(fmap)
        territory_cells = cells_by_territory.get(territory_id, [])
        if territory_cells:
            folium.GeoJson(
                _footprint_feature(territory, territory_cells),
                style_function=_static_style(
                    {
                        "color": colour,
                        "weight": 2.5,
                        "fillColor": colour,
                        "fillOpacity": 0.2,
                        "className": f"territory-footprint territory-{token}",
                    }
                ),
                tooltip=folium.GeoJsonTooltip(
                    fields=["territory_id", "rep_name", "score", "target", "deviation", "providers"],
                    aliases=["Territory", "Rep", "Score", "Target", "Deviation", "Providers"],
                ),
            ).add_to(group)
        if cells is not None:
            territory_cell_rows = cells.filter(pl.col("territory_id") == territory_id)
            if territory_cell_rows.height:
                folium.GeoJson(
                    _cell_features(territory_cell_rows),
                    style_function=_static_style(
                        {
                            "color": "#222",
                            "weight": 0.6,
                            "fillColor": colour,
                            "fillOpacity": 0.7,
                            "className": f"provider-cell territory-{token}",
                        }
                    ),
                    tooltip=folium.GeoJsonTooltip(
                        fields=["cell", "providers", "score", "territory", "rep", "mix"],
                        aliases=["H3 cell", "Providers", "Summed score", "Territory", "Rep", "Territories"],
                    ),
                ).add_to(group)
        else:
            territory_providers = data.providers.filter(pl.col("territory_id") == territory_id)
            if territory_providers.height:
                folium.GeoJson(
                    _provider_features(territory_providers),
                    marker=folium.CircleMarker(radius=4, fill=True),
                    style_function=_static_style(
                        {
                            "color": "#ffffff",
                            "weight": 0.8,
                            "fill": True,
                            "fillColor": colour,
                            "fillOpacity": 0.95,
                            "className": f"provider-marker territory-{token}",
                        }
                    ),
                    tooltip=folium.GeoJsonTooltip(
                        fields=["npi", "name", "specialty", "score", "territory", "rep", "place"],
                        aliases=["NPI", "Name", "Specialty", "Score", "Territory", "Rep", "Location"],
                    ),
                ).add_to(group)
        if territory["base_latitude"] is not None and territory["base_longitude"] is not None:
            folium.Marker(
                location=[territory["base_latitude"], territory["base_longitude"]],
                icon=_rep_base_icon(colour),
                tooltip=html.escape(
                    f"Home base of {territory['rep_name'] or territory['rep_id']} "
                    f"({territory['rep_id']}), territory {territory_id}"
                ),
                z_index_offset=1000,
            ).add_to(group)

    folium.LayerControl(collapsed=True).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]], padding=(20, 20))
    root.html.add_child(
        folium.Element(_title_html(title, _notes(data, resolution, outlines_note))), name="map_title"
    )
    root.html.add_child(folium.Element(_legend_html(data, tolerance)), name="territory_legend")

    rendered = root.render()
    ids: dict[str, str] = {}
    rendered = _RANDOM_ID.sub(lambda m: ids.setdefault(m.group(0), f"{len(ids) + 1:032d}"), rendered)
    script, css = _leaflet_assets()
    rendered = rendered.replace(_LEAFLET_CSS_SLOT, f"<style>{css}</style>", 1)
    rendered = rendered.replace(_LEAFLET_JS_SLOT, f"<script>{script}</script>", 1)
    remote = _REMOTE_ASSET.search(rendered)
    if remote:
        raise RuntimeError(f"map HTML still links a remote asset: {remote.group(0)!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rendered, encoding="utf-8")
    return target


# --- static PNG map ------------------------------------------------------------------------


def _fit_extent(
    south: float, west: float, north: float, east: float, box_ratio: float
) -> tuple[float, float, float, float, float]:
    """Widen the shorter side so the extent fills a box of height/width ``box_ratio``.

    Returns (south, west, north, east, aspect) where ``aspect`` is the lon/lat
    aspect at the extent's middle latitude.
    """
    aspect = 1 / math.cos(math.radians((south + north) / 2))
    if (north - south) * aspect / (east - west) < box_ratio:
        grow = ((east - west) * box_ratio / aspect - (north - south)) / 2
        south, north = south - grow, north + grow
    else:
        grow = ((north - south) * aspect / box_ratio - (east - west)) / 2
        west, east = west - grow, east + grow
    return south, west, north, east, aspect


def _draw_static_layers(
    axes: Axes,
    data: _MapData,
    rings: list[np.ndarray] | None,
    extent: tuple[float, float, float, float],
    box_ratio: float,
    point_size: float,
) -> None:
    """Draw outlines, H3 cells, providers and bases on ``axes`` over ``extent`` (s, w, n, e)."""
    south, west, north, east, aspect = _fit_extent(*extent, box_ratio)
    axes.set_facecolor("#dfe9f2")
    if rings is not None:
        axes.add_collection(
            PolyCollection(rings, facecolors="#f3f1ea", edgecolors="#8a8a8a", linewidths=0.6, zorder=1)
        )
    cell_table = data.providers.select("territory_id", "h3_cell").unique().sort("territory_id", "h3_cell")
    if cell_table.height:
        polygons = [
            np.array([(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]) for cell in cell_table["h3_cell"]
        ]
        colours = [data.colours[territory_id] for territory_id in cell_table["territory_id"]]
        axes.add_collection(
            PolyCollection(
                polygons, facecolors=colours, edgecolors=colours, alpha=0.35, linewidths=0.4, zorder=2
            )
        )
    axes.scatter(
        data.providers["longitude"].to_numpy(),
        data.providers["latitude"].to_numpy(),
        s=point_size,
        c=[data.colours[t] for t in data.providers["territory_id"]],
        edgecolors="none",
        zorder=3,
    )
    bases = data.territories.filter(
        pl.col("base_latitude").is_not_null() & pl.col("base_longitude").is_not_null()
    )
    axes.scatter(
        bases["base_longitude"].to_numpy(),
        bases["base_latitude"].to_numpy(),
        s=point_size * 33,
        marker="*",
        c=[data.colours[t] for t in bases["territory_id"]],
        edgecolors="#111",
        linewidths=1.0,
        zorder=4,
    )
    if bases.height <= 40:
        inside = bases.filter(
            pl.col("base_latitude").is_between(south, north) & pl.col("base_longitude").is_between(west, east)
        )
        for territory_id, longitude, latitude in inside.select(
            "territory_id", "base_longitude", "base_latitude"
        ).iter_rows():
            axes.annotate(
                territory_id,
                (longitude, latitude),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=8,
                zorder=5,
            )
    axes.set_xlim(west, east)
    axes.set_ylim(south, north)
    axes.set_aspect(aspect, adjustable="box")


def _metro_groups(providers: pl.DataFrame, limit: int) -> list[pl.DataFrame]:
    """Providers split into spatial groups, largest first (at most ``limit``).

    A group is a connected set of H3 resolution-3 parents (~60 km edges) of the
    providers' cells; ties in size are broken by the group's smallest cell.
    """
    cells = providers["h3_cell"].unique().sort().to_list()
    parent_of = {cell: h3.cell_to_parent(cell, 3) for cell in cells}
    parents = providers.with_columns(
        pl.col("h3_cell").replace_strict(parent_of, return_dtype=pl.Utf8).alias("_parent")
    )
    unvisited = set(parents["_parent"].to_list())
    components: list[set[str]] = []
    for start in sorted(unvisited):
        if start not in unvisited:
            continue
        component, frontier = {start}, [start]
        unvisited.discard(start)
        while frontier:
            for neighbour in h3.grid_disk(frontier.pop(), 1):
                if neighbour in unvisited:
                    unvisited.discard(neighbour)
                    component.add(neighbour)
                    frontier.append(neighbour)
        components.append(component)
    groups = [
        parents.filter(pl.col("_parent").is_in(sorted(component))).drop("_parent") for component in components
    ]
    groups.sort(key=lambda group: (-group.height, group["h3_cell"].min()))
    return groups[:limit]


def _group_label(group: pl.DataFrame) -> str:
    place = (
        group.filter(pl.col("city").is_not_null())
        .group_by("city", "state")
        .agg(pl.len().alias("count"))
        .sort(["count", "city"], descending=[True, False])
    )
    name = f"{place['city'][0].title()}, {place['state'][0]}" if place.height else "providers"
    return f"{name} — {group.height:,} providers"


def render_static_map_png(
    assignments: pl.DataFrame,
    territories: pl.DataFrame,
    *,
    title: str,
    tolerance: float = 0.05,
) -> bytes:
    """Render the territory map as a 1400×900 PNG and return its bytes.

    Draws the contiguous US state outlines, each territory's H3 cells and
    providers in its colour, rep home bases as stars, and a legend with score
    and deviation (the first 30 territories, then a count of the rest).  The
    main extent covers every provider and home base; when the providers sit in
    several far-apart metros and the legend is short (at most 12 territories),
    up to four zoomed panels show the largest metros, outlined and numbered on
    the main map.  Same validation as ``render_territory_map``.
    """
    data = _prepare(assignments, territories)
    width_px, height_px = STATIC_MAP_SIZE_PX
    figure = Figure(figsize=(width_px / _STATIC_DPI, height_px / _STATIC_DPI), dpi=_STATIC_DPI)
    FigureCanvasAgg(figure)
    try:
        rings: list[np.ndarray] | None = state_outline_rings()
        outlines_note = None
    except StateOutlinesUnavailable as error:
        rings, outlines_note = None, f"no state outlines ({error})"

    south, west, north, east = data.bounds
    pad_lat = max(0.5, (north - south) * 0.06)
    pad_lon = max(0.5, (east - west) * 0.06)
    main_extent = (south - pad_lat, west - pad_lon, north + pad_lat, east + pad_lon)
    axes_box = (0.04, 0.05, 0.68, 0.84)
    axes = figure.add_axes(axes_box)
    _draw_static_layers(axes, data, rings, main_extent, axes_box[3] * height_px / (axes_box[2] * width_px), 7)
    axes.tick_params(labelsize=8)
    axes.set_xlabel("longitude", fontsize=8)
    axes.set_ylabel("latitude", fontsize=8)

    if data.territories.height <= _STATIC_INSET_MAX_TERRITORIES and data.providers.height:
        groups = _metro_groups(data.providers, limit=4)
        main_span = max(main_extent[2] - main_extent[0], main_extent[3] - main_extent[1])
        spans = [
            max(g["latitude"].max() - g["latitude"].min(), g["longitude"].max() - g["longitude"].min())
            for g in groups
        ]
        if len(groups) > 1 and max(spans) < main_span / 4:
            for number, group in enumerate(groups, start=1):
                column, row = (number - 1) % 2, (number - 1) // 2
                inset_box = (0.745 + column * 0.125, 0.30 - row * 0.25, 0.115, 0.21)
                inset = figure.add_axes(inset_box)
                pad = 0.08
                extent = (
                    group["latitude"].min() - pad,
                    group["longitude"].min() - pad,
                    group["latitude"].max() + pad,
                    group["longitude"].max() + pad,
                )
                _draw_static_layers(
                    inset, data, rings, extent, inset_box[3] * height_px / (inset_box[2] * width_px), 5
                )
                inset.set_xticks([])
                inset.set_yticks([])
                inset.set_title(f"{number}. {_group_label(group)}", fontsize=7)
                inset_south, inset_west, inset_north, inset_east = (
                    inset.get_ylim()[0],
                    inset.get_xlim()[0],
                    inset.get_ylim()[1],
                    inset.get_xlim()[1],
                )
                axes.add_patch(
                    Rectangle(
                        (inset_west, inset_south),
                        inset_east - inset_west,
                        inset_north - inset_south,
                        fill=False,
                        edgecolor="#333",
                        linewidth=0.8,
                        zorder=6,
                    )
                )
                axes.annotate(
                    str(number),
                    (inset_west, inset_north),
                    xytext=(-2, 2),
                    textcoords="offset points",
                    ha="right",
                    fontsize=8,
                    fontweight="bold",
                    zorder=6,
                )

    handles: list[Any] = []
    for row in data.territories.head(_STATIC_LEGEND_ROWS).iter_rows(named=True):
        label = (
            f"{row['territory_id']}  {row['rep_name'] or ''}  "
            f"{_format_score(row['opportunity_score'])} ({_format_deviation(row['deviation'])})"
        )
        handles.append(Patch(facecolor=data.colours[row["territory_id"]], edgecolor="#333", label=label))
    hidden = data.territories.height - len(handles)
    if hidden:
        handles.append(Patch(facecolor="none", edgecolor="none", label=f"… and {hidden} more territories"))
    handles.append(
        Line2D(
            [],
            [],
            marker="*",
            linestyle="none",
            markersize=13,
            markerfacecolor="#bbb",
            markeredgecolor="#111",
            label="rep home base",
        )
    )
    figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.74, 0.90),
        fontsize=8,
        title=f"Territory  rep  score (deviation; band ±{tolerance:.0%})",
        title_fontsize=8,
        frameon=True,
    )
    notes = _notes(data, aggregation_resolution=None, outlines_note=outlines_note)
    figure.suptitle(title, x=0.02, y=0.975, ha="left", fontsize=14, fontweight="bold")
    figure.text(0.02, 0.925, " · ".join(notes), fontsize=9, color="#444")
    return figure_png(figure)


def figure_png(figure: Figure) -> bytes:
    """Return ``figure`` as PNG bytes at its own dpi, with no time or software stamp."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, metadata={"Software": None})
    return buffer.getvalue()


def remote_asset_references(page: str) -> list[str]:
    """Return the ``<script src>`` / ``<link href>`` tags of ``page`` that point off the machine."""
    return [match.group(0) for match in _REMOTE_ASSET.finditer(page)]


__all__ = [
    "MAP_FILE_NAME",
    "figure_png",
    "remote_asset_references",
    "render_static_map_png",
    "render_territory_map",
]
