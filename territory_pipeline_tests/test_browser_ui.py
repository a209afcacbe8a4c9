"""Real-browser test of the Dagster UI: `dg dev` on a loopback port, opened in headless Chromium.

Skipped, with a message, where Debian's Chromium is not installed (CI installs it
from .ci/run).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_browser import CHROMIUM_ARGS

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ASSETS = ("providers", "geocoded_providers", "clusters", "provider_scores", "territories", "territory_assignments", "territory_exports")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian Chromium not installed at /usr/bin/chromium (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_ui(tmp_path, pipeline_env):
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg = Path(sys.executable).with_name("dg")
    log = open(tmp_path / "dg_dev.log", "w")
    process = subprocess.Popen(
        [str(dg), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"dg dev exited early:\n{(tmp_path / 'dg_dev.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dg dev did not serve within 180 s:\n{(tmp_path / 'dg_dev.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # dg dev ignores SIGTERM in the background
        process.wait(timeout=30)
        log.close()


def test_dagster_ui_lists_the_pipeline_assets(dagster_ui, tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 3200})  # tall: the catalog list is virtualized
            page.goto(f"{dagster_ui}/assets", wait_until="domcontentloaded")
            listed = "names => names.every(n => document.body.innerText.split(/\\s+/).includes(n))"
            page.wait_for_function(listed, arg=list(ASSETS), timeout=120_000)
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.first.click()  # the first-visit newsletter dialog
            shot = tmp_path / "dagster_ui.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            page.goto(f"{dagster_ui}/automation", wait_until="domcontentloaded")
            page.wait_for_function(listed, arg=["rep_turnover_sensor", "market_event_sensor", "quarterly_refresh_schedule"], timeout=60_000)
        finally:
            browser.close()
