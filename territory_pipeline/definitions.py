"""The Dagster code location: every asset, check, job, schedule and sensor under ``defs/``.

Steps run in one process (the in-process executor), so only one of them holds
the DuckDB file at a time.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).resolve().parent)
    return dg.Definitions.merge(loaded, dg.Definitions(executor=dg.in_process_executor))
