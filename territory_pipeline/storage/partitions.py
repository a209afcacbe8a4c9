"""Writing quarter partitions to DuckDB: one transaction, delete then insert.

Every partitioned table has its statements in ``sql/<table>.sql``: ``create``
(the table takes the columns of the first frame written, after a leading
``refresh_quarter DATE``), ``delete_partition``, ``insert_partition`` and
``select_partition``.  ``partition_transaction`` writes several tables of one
quarter in a single transaction, so a crash or an error leaves the previous
partition exactly as it was, and a re-run replaces the partition instead of
adding duplicates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import duckdb
import polars as pl

from territory_pipeline.storage.sql import statement

INCOMING_VIEW = "incoming"


class SchemaMismatch(RuntimeError):
    """A table in the database has other columns than the frame being written."""


def quarter_date(partition_key: str) -> dt.date:
    """Parse and validate a refresh-quarter key (the quarter's first day)."""
    try:
        day = dt.date.fromisoformat(partition_key)
    except ValueError as exc:
        raise ValueError(f"refresh quarter {partition_key!r} is not a YYYY-MM-DD date") from exc
    if day.day != 1 or day.month not in (1, 4, 7, 10):
        raise ValueError(f"refresh quarter {partition_key!r} is not the first day of a quarter")
    return day


def quarter_end(quarter: dt.date) -> dt.date:
    """The first day after the quarter that starts on ``quarter``."""
    month = quarter.month + 3
    return dt.date(quarter.year + (month > 12), (month - 1) % 12 + 1, 1)


def previous_quarter(quarter: dt.date) -> dt.date:
    month = quarter.month - 3
    return dt.date(quarter.year - (month < 1), (month - 1) % 12 + 1, 1)


@contextlib.contextmanager
def _incoming(conn: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> Iterator[None]:
    conn.register(INCOMING_VIEW, frame.to_arrow())
    try:
        yield
    finally:
        conn.unregister(INCOMING_VIEW)


def _check_columns(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, partitioned: bool) -> None:
    have = [r[0] for r in conn.sql(statement("catalog", "table_columns"), params=[table]).fetchall()]
    want = (["refresh_quarter"] if partitioned else []) + frame.columns
    if sorted(have) != sorted(want):
        raise SchemaMismatch(
            f"table {table} in the database has columns that differ from this version of the pipeline "
            f"(missing in the database: {sorted(set(want) - set(have))}; extra: {sorted(set(have) - set(want))}). "
            f"Drop the table (or use a new TERRITORY_DUCKDB_PATH) and re-run."
        )


class PartitionWriter:
    """Writes inside one open transaction; see ``partition_transaction``."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, quarter: dt.date) -> None:
        self.conn = conn
        self.quarter = quarter
        self.written: dict[str, int] = {}

    def replace(self, table: str, frame: pl.DataFrame) -> None:
        """Replace this quarter's rows of ``table`` with ``frame``."""
        with _incoming(self.conn, frame):
            self.conn.sql(statement(table, "create"))
            _check_columns(self.conn, table, frame, partitioned=True)
            self.conn.sql(statement(table, "delete_partition"), params=[self.quarter])
            if frame.height:
                self.conn.sql(statement(table, "insert_partition"), params=[self.quarter])
        self.written[table] = frame.height

    def clear(self, table: str) -> None:
        """Delete this quarter's rows of ``table`` (when it exists): its source is gone."""
        if table_exists(self.conn, table):
            self.conn.sql(statement(table, "delete_partition"), params=[self.quarter])
        self.written[table] = 0

    def write(self, file: str, frame: pl.DataFrame, steps: list[tuple[str, list]]) -> None:
        """Run named statements of ``sql/<file>.sql`` with ``frame`` as ``incoming``.

        Used for the unpartitioned tables (the geocode cache, alignment history).
        """
        with _incoming(self.conn, frame):
            self.conn.sql(statement(file, "create"))
            _check_columns(self.conn, file, frame, partitioned=False)
            for name, params in steps:
                self.conn.sql(statement(file, name), params=params)
        self.written[file] = self.written.get(file, 0) + frame.height


@contextlib.contextmanager
def partition_transaction(conn: duckdb.DuckDBPyConnection, quarter: dt.date) -> Iterator[PartitionWriter]:
    """One transaction for every table an asset writes: all or nothing."""
    conn.sql("BEGIN TRANSACTION")
    writer = PartitionWriter(conn, quarter)
    try:
        yield writer
    except BaseException:
        conn.sql("ROLLBACK")
        raise
    conn.sql("COMMIT")


def query(conn: duckdb.DuckDBPyConnection, file: str, name: str, params: list | None = None) -> pl.DataFrame:
    """Run the named read-only statement and return its rows as a polars frame."""
    return conn.sql(statement(file, name), params=params or []).pl()


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = conn.sql(statement("catalog", "table_exists"), params=[table]).fetchall()[0]
    return bool(row and row[0])


def read_partition(conn: duckdb.DuckDBPyConnection, table: str, quarter: dt.date) -> pl.DataFrame:
    """All rows of one quarter of ``table``; an empty frame when the table is missing."""
    if not table_exists(conn, table):
        return pl.DataFrame()
    return query(conn, table, "select_partition", [quarter])
