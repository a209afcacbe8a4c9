"""Two writers at once: the second waits for the DuckDB lock instead of failing or corrupting."""

import subprocess
import sys
import textwrap
import time

import datetime as dt
import polars as pl

from territory_pipeline.defs.resources import TerritoryDatabase
from territory_pipeline.storage.partitions import partition_transaction, read_partition


def test_a_second_writer_waits_for_the_first(tmp_path):
    db = tmp_path / "t.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time, duckdb
                conn = duckdb.connect({str(db)!r})
                conn.execute("create table held (x int)")
                print("locked", flush=True)
                time.sleep(4)
                conn.close()
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    database = TerritoryDatabase(database=str(db))
    quarter = dt.date(2026, 7, 1)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("providers", pl.DataFrame({"npi": ["1"], "score": [1.0]}))
    waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert holder.returncode == 0
    assert waited > 1.0  # it could only open the file once the first writer let go
    with database.connection() as conn:
        assert read_partition(conn, "providers", quarter)["npi"].to_list() == ["1"]
        assert conn.sql("select count(*) from held").fetchall() == [(0,)]
