"""Real-browser tests: headless Debian Chromium (driven by Playwright) opens the map HTML.

The page is opened from file:// while every non-file request is aborted, so the
test proves the map renders offline (tiles=True is used on purpose: tile
requests fail and the map must not care).  Skipped when /usr/bin/chromium is
absent (install it with ``apt-get install -y chromium``).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import h3
import polars as pl
import pytest
from test_visuals import PNG_SIGNATURE, sample_alignment

from territory_pipeline.visuals import render_territory_map

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian Chromium not installed at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def alignment() -> tuple[pl.DataFrame, pl.DataFrame]:
    return sample_alignment()


class OfflinePage:
    """A page that may load file:// URLs only; every other request is aborted and recorded."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.blocked: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.route("**/*", self._route)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("path.territory-footprint", state="attached", timeout=15_000)

    def _route(self, route: Route) -> None:
        request = route.request
        if request.url.startswith("file:"):
            route.continue_()
        else:
            self.blocked.append((request.resource_type, request.url))
            route.abort()

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()


def test_map_renders_offline_in_chromium(browser, alignment, tmp_path):
    assignments, territories = alignment
    path = render_territory_map(assignments, territories, tmp_path, title="Q2 2024 alignment", tiles=True)
    view = OfflinePage(browser, path.as_uri())
    try:
        page = view.page
        drawn = assignments.filter(pl.col("latitude").is_not_null())
        assert view.errors == []
        assert page.evaluate("typeof L") == "object" and page.evaluate("L.version") == "1.9.4"
        assert view.count("path.territory-footprint") == territories.height
        for territory_id in territories["territory_id"]:
            assert view.count(f"path.territory-footprint.territory-{territory_id}") == 1
        assert view.count("path.provider-marker") == drawn.height
        assert view.count("path.state-outline") == 48
        assert view.count(".leaflet-marker-pane .rep-base svg") == 4
        assert view.count("path.leaflet-interactive") >= territories.height + drawn.height
        legend = page.inner_text("#territory-legend")
        for row in territories.iter_rows(named=True):
            assert row["territory_id"] in legend and f"{row['deviation']:+.1%}" in legend
        assert "Riley O'Connor" in legend
        assert "3 providers without coordinates not drawn" in page.inner_text("#map-title")
        # Only basemap tiles were attempted off the machine: no script, stylesheet or font.
        assert {kind for kind, _url in view.blocked} <= {"image"}
        assert all("tile.openstreetmap.org" in url for _kind, url in view.blocked)

        # Hover one provider, isolated at street zoom: its tooltip shows the provider's fields.
        provider = drawn.sort("npi").row(0, named=True)
        map_name = page.evaluate("document.querySelector('.folium-map').id")
        centre = f"[{provider['latitude']}, {provider['longitude']}]"
        set_view = f"{map_name}.setView({centre}, 16, {{animate: false}})"
        # under load the page may still be settling its first view: set it until it holds
        page.wait_for_function(
            f"() => {{ if ({map_name}.getZoom() !== 16) {{ {set_view}; }} return {map_name}.getZoom() === 16; }}",
            timeout=10_000,
        )
        assert page.evaluate(f"{map_name}.getZoom()") == 16
        box = page.locator("#" + map_name).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tooltip = page.locator(".leaflet-tooltip")
        tooltip.first.wait_for(state="visible", timeout=5_000)
        text = tooltip.first.inner_text()
        for expected in (
            "NPI",
            provider["npi"],
            "Specialty",
            provider["taxonomy_display_name"],
            "Territory",
            provider["territory_id"],
            provider["rep_name"],
        ):
            assert expected in text

        page.reload(wait_until="load")  # back to the initial view for the screenshot
        page.wait_for_selector("path.territory-footprint", state="attached")
        screenshot = tmp_path / "territory_map.png"
        page.screenshot(path=str(screenshot))
    finally:
        view.page.close()
    data = screenshot.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000
    assert struct.unpack(">II", data[16:24]) == (1400, 900)


def test_aggregated_map_draws_one_hexagon_per_cell(browser, alignment, tmp_path):
    assignments, territories = alignment
    path = render_territory_map(
        assignments, territories, tmp_path, title="aggregated", max_points=50, tiles=False
    )
    view = OfflinePage(browser, path.as_uri())
    try:
        title = view.page.inner_text("#map-title")
        resolution = int(re.search(r"aggregated to H3 cells \(resolution (\d+)\)", title).group(1))
        cells = {h3.cell_to_parent(cell, resolution) for cell in assignments["h3_cell"].drop_nulls()}
        assert view.errors == [] and view.blocked == []
        assert view.count("path.provider-cell") == len(cells) <= 50
        assert view.count("path.provider-marker") == 0
        assert view.count("path.territory-footprint") == territories.height
        assert view.count(".rep-base") == 4
    finally:
        view.page.close()
