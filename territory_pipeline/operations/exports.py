"""Files a CRM can import, written atomically under ``<output_dir>/<quarter>/``.

Each file is written to a temporary name in the same folder and renamed into
place, so a reader sees either the previous complete file or the new one,
never half a file.  File names are stable per quarter.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; exported files get the usual permissions instead.
_FILE_MODE = 0o666 & ~_process_umask()

ASSIGNMENT_EXPORT_COLUMNS = (
    "npi",
    "provider_name",
    "taxonomy_display_name",
    "address_line_1",
    "address_line_2",
    "city",
    "state",
    "zip5",
    "territory_id",
    "rep_id",
    "rep_name",
    "opportunity_score",
)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_table_files(folder: Path, stem: str, frame: pl.DataFrame) -> list[Path]:
    """``<stem>.csv`` and ``<stem>.parquet`` in ``folder``, both atomic."""
    return [
        atomic_write(folder / f"{stem}.csv", lambda tmp: frame.write_csv(tmp)),
        atomic_write(folder / f"{stem}.parquet", lambda tmp: frame.write_parquet(tmp)),
    ]


def crm_assignments(assignments: pl.DataFrame) -> pl.DataFrame:
    """The assignment export: one row per provider with address, territory and rep."""
    missing = [c for c in ASSIGNMENT_EXPORT_COLUMNS if c not in assignments.columns]
    if missing:
        raise ValueError(f"assignments lack export column(s): {', '.join(missing)}")
    return assignments.select(ASSIGNMENT_EXPORT_COLUMNS).sort("territory_id", "npi")


def clean_stale_temporaries(folder: Path) -> int:
    """Remove temporary files left by a writer that was killed mid-write."""
    removed = 0
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
