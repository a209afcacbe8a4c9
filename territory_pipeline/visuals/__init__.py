"""Seeing the territories: an offline interactive map, a PNG map and balance charts.

Plain functions (no dagster import) taking polars frames:

* ``render_territory_map`` writes a self-contained ``territory_map.html``
  (folium/Leaflet, Leaflet inlined, so it opens offline);
* ``render_static_map_png`` returns the same map as PNG bytes;
* ``opportunity_chart_png``, ``rebalance_chart_png`` and
  ``imbalance_history_png`` return balance charts as PNG bytes;
* ``markdown_image`` turns PNG bytes into an inline Markdown image for Dagster
  metadata.
"""

from territory_pipeline.visuals.charts import (
    imbalance_history_png,
    markdown_image,
    opportunity_chart_png,
    rebalance_chart_png,
)
from territory_pipeline.visuals.maps import (
    MAP_FILE_NAME,
    remote_asset_references,
    render_static_map_png,
    render_territory_map,
)
from territory_pipeline.visuals.palette import palette, territory_colours
from territory_pipeline.visuals.us_outline import state_outlines_geojson

__all__ = [
    "MAP_FILE_NAME",
    "imbalance_history_png",
    "markdown_image",
    "opportunity_chart_png",
    "palette",
    "rebalance_chart_png",
    "remote_asset_references",
    "render_static_map_png",
    "render_territory_map",
    "state_outlines_geojson",
    "territory_colours",
]
