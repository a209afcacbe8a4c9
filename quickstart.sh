#!/usr/bin/env bash
# Set up the project and run the main job: every asset of one refresh quarter on
# the embedded sample data, offline, with no settings.
#   ./quickstart.sh [QUARTER]        QUARTER defaults to 2026-07-01
set -euo pipefail
cd "$(dirname "$0")"
QUARTER="${1:-2026-07-01}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

export DAGSTER_HOME="$PWD"
.venv/bin/dg launch --job quarterly_refresh_job --partition "$QUARTER"
.venv/bin/python -m territory_pipeline.report "$QUARTER"
