"""Shared fixtures: an isolated environment per test, the reference folder, the sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from territory_pipeline.settings import ENVIRONMENT

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """No test sees the developer's TERRITORY_* settings or writes into data/."""
    for var in ENVIRONMENT:
        monkeypatch.delenv(var, raising=False)
    # The embedded sample is deterministic, so one copy serves the whole session.
    monkeypatch.setenv("TERRITORY_GENERATED_DIR", str(_shared_generated(tmp_path_factory)))
    monkeypatch.setenv("TERRITORY_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


_GENERATED: list[Path] = []


def _shared_generated(factory) -> Path:
    if not _GENERATED:
        _GENERATED.append(factory.mktemp("generated"))
    return _GENERATED[0]


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference files not found at {REFERENCE} (../shared/reference)")
    return REFERENCE


@pytest.fixture
def pipeline_env(monkeypatch, tmp_path) -> dict[str, Path]:
    """Point the database, outputs and events at a temporary folder."""
    paths = {
        "duckdb": tmp_path / "territory.duckdb",
        "outputs": tmp_path / "outputs",
        "events": tmp_path / "events",
    }
    monkeypatch.setenv("TERRITORY_DUCKDB_PATH", str(paths["duckdb"]))
    monkeypatch.setenv("TERRITORY_OUTPUT_DIR", str(paths["outputs"]))
    monkeypatch.setenv("TERRITORY_EVENTS_DIR", str(paths["events"]))
    return paths
