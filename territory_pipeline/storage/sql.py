"""Named SQL statements kept under the repository's top-level ``sql/`` folder.

Each ``sql/<file>.sql`` holds one or more statements, each introduced by a
``-- name: <statement>`` line.  Code asks for ``statement("providers",
"delete_partition")`` and runs it with ``?`` parameters; SQL is never built by
string formatting.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

SQL_DIR_ENV = "TERRITORY_SQL_DIR"
_NAME_RE = re.compile(r"^--\s*name:\s*([A-Za-z0-9_]+)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """The folder holding the ``.sql`` files (the repository's ``sql/``)."""
    override = os.environ.get(SQL_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "sql"


@cache
def _statements(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    parts = _NAME_RE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        body = body.strip()
        if name in statements:
            raise ValueError(f"{path}: statement {name!r} is defined twice")
        if not body:
            raise ValueError(f"{path}: statement {name!r} is empty")
        statements[name] = body
    return statements


def statement(file: str, name: str) -> str:
    """The SQL text of statement ``name`` in ``sql/<file>.sql``."""
    path = sql_dir() / f"{file}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    found = _statements(path)
    if name not in found:
        raise KeyError(f"{path} has no statement {name!r} (has: {', '.join(sorted(found))})")
    return found[name]
