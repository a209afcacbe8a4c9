"""Partition writes: one transaction, idempotent re-runs, no half-written partition."""

import datetime as dt

import duckdb
import polars as pl
import pytest

from territory_pipeline.storage.partitions import (
    SchemaMismatch,
    partition_transaction,
    previous_quarter,
    quarter_date,
    quarter_end,
    read_partition,
)
from territory_pipeline.storage.sql import statement

Q3 = dt.date(2026, 7, 1)
Q4 = dt.date(2026, 10, 1)


def frame(npis, score=1.0):
    return pl.DataFrame({"npi": npis, "score": [score] * len(npis)})


def test_quarter_keys_are_validated():
    assert quarter_date("2026-07-01") == Q3
    for bad in ("2026-08-01", "2026-07-02", "July 2026"):
        with pytest.raises(ValueError, match="quarter"):
            quarter_date(bad)
    assert quarter_end(Q4) == dt.date(2027, 1, 1)
    assert previous_quarter(dt.date(2026, 1, 1)) == dt.date(2025, 10, 1)


def test_rerun_replaces_the_partition_and_leaves_others():
    conn = duckdb.connect()
    with partition_transaction(conn, Q3) as tx:
        tx.replace("providers", frame(["1", "2", "3"]))
    with partition_transaction(conn, Q4) as tx:
        tx.replace("providers", frame(["9"]))
    with partition_transaction(conn, Q3) as tx:
        tx.replace("providers", frame(["1", "2"], 2.0))
    assert read_partition(conn, "providers", Q3).to_dicts() == [{"npi": "1", "score": 2.0}, {"npi": "2", "score": 2.0}]
    assert read_partition(conn, "providers", Q4)["npi"].to_list() == ["9"]
    quarters = conn.sql("select distinct refresh_quarter from providers order by 1").fetchall()
    assert [q[0] for q in quarters] == [Q3, Q4]


def test_error_midway_rolls_back_every_table():
    conn = duckdb.connect()
    with partition_transaction(conn, Q3) as tx:
        tx.replace("providers", frame(["1", "2"]))
        tx.replace("provider_rejects", pl.DataFrame({"source": ["nppes"], "npi": ["5"], "reason": ["invalid_npi"]}))
    with pytest.raises(RuntimeError, match="crash"):
        with partition_transaction(conn, Q3) as tx:
            tx.replace("providers", frame(["7"]))
            tx.replace("provider_rejects", pl.DataFrame(schema={"source": pl.Utf8, "npi": pl.Utf8, "reason": pl.Utf8}))
            raise RuntimeError("crash after writing")
    assert read_partition(conn, "providers", Q3)["npi"].to_list() == ["1", "2"]
    assert read_partition(conn, "provider_rejects", Q3)["npi"].to_list() == ["5"]


def test_changed_columns_raise_a_clear_error():
    conn = duckdb.connect()
    with partition_transaction(conn, Q3) as tx:
        tx.replace("providers", frame(["1"]))
    with pytest.raises(SchemaMismatch, match="providers"):
        with partition_transaction(conn, Q3) as tx:
            tx.replace("providers", frame(["1"]).with_columns(pl.lit("x").alias("new_column")))
    assert read_partition(conn, "providers", Q3)["npi"].to_list() == ["1"]


def test_unknown_statement_names_its_file():
    with pytest.raises(KeyError, match="providers.sql"):
        statement("providers", "no_such_statement")
    with pytest.raises(FileNotFoundError):
        statement("no_such_table", "create")


def test_killed_writer_leaves_previous_partition(tmp_path):
    """A process killed inside the transaction leaves the committed partition intact."""
    import subprocess
    import sys
    import textwrap

    db = tmp_path / "t.duckdb"
    conn = duckdb.connect(str(db))
    with partition_transaction(conn, Q3) as tx:
        tx.replace("providers", frame(["1", "2"]))
    conn.close()
    script = textwrap.dedent(
        f"""
        import datetime as dt, os, signal, duckdb, polars as pl
        from territory_pipeline.storage.partitions import partition_transaction
        conn = duckdb.connect({str(db)!r})
        with partition_transaction(conn, dt.date(2026, 7, 1)) as tx:
            tx.replace("providers", pl.DataFrame({{"npi": ["x"] * 1000, "score": [0.0] * 1000}}))
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9
    conn = duckdb.connect(str(db))
    assert read_partition(conn, "providers", Q3)["npi"].to_list() == ["1", "2"]
