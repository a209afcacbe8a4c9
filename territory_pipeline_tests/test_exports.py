"""CRM export files: atomic writes, table files, the assignment export, stale temporaries."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from territory_pipeline.operations.exports import (
    ASSIGNMENT_EXPORT_COLUMNS,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    clean_stale_temporaries,
    crm_assignments,
    write_table_files,
)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- atomic writes -----------------------------------------------------------------


def test_atomic_write_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "q" / "2025-01-01" / "report.md"  # parents are created
    assert atomic_write_text(target, "# héllo\n") == target
    assert target.read_text(encoding="utf-8") == "# héllo\n"
    assert _entries(target.parent) == ["report.md"]
    atomic_write_bytes(target, b"\x00\x01binary")
    assert target.read_bytes() == b"\x00\x01binary"
    assert _entries(target.parent) == ["report.md"]


def test_atomic_write_gives_ordinary_file_permissions(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.csv", "x\n")
    # not the 0600 of a bare mkstemp file: other readers (a CRM import job) can read it
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "territories.csv"
    target.write_text("old,complete\n")

    def half_then_fail(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            handle.write("new,half")
            handle.flush()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old,complete\n"
    assert _entries(tmp_path) == ["territories.csv"]


def test_interrupted_write_cleans_up_too(tmp_path: Path) -> None:
    def interrupted(tmp: Path) -> None:
        tmp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a.parquet", interrupted)
    assert _entries(tmp_path) == []


def test_reader_sees_old_or_complete_new_file(tmp_path: Path) -> None:
    target = tmp_path / "territory_assignments.csv"
    old = b"old line\n" * 1000
    target.write_bytes(old)
    new = np.random.default_rng(7).integers(0, 256, size=8_000_000, dtype=np.uint8).tobytes()
    seen_during_write: list[tuple[bytes, list[str]]] = []

    def write_in_chunks(tmp: Path) -> None:
        assert tmp.parent == target.parent  # same folder, so the rename is atomic
        assert tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        with open(tmp, "wb") as handle:
            for start in range(0, len(new), 1_000_000):
                handle.write(new[start : start + 1_000_000])
                handle.flush()
                # at every point of the write, the target is still the complete old file
                seen_during_write.append((target.read_bytes(), _entries(tmp_path)))

    old_inode = target.stat().st_ino
    with open(target, "rb") as reader:  # a reader that opened the file before the write
        atomic_write(target, write_in_chunks)
        # the early reader still reads the complete old file, never a mix
        assert reader.read() == old
    assert len(seen_during_write) == 8
    assert all(content == old for content, _ in seen_during_write)
    assert all(len(names) == 2 and "territory_assignments.csv" in names for _, names in seen_during_write)
    # the new file replaced the old one by rename: a new inode, complete content
    assert target.stat().st_ino != old_inode
    assert target.read_bytes() == new
    assert _entries(tmp_path) == ["territory_assignments.csv"]


# --- table files ---------------------------------------------------------------------


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "territory_id": ["T2", "T1", None],
            "npi": ["1000000002", "1000000001", "1000000003"],
            "zip5": ["02134", "85004", "60601"],
            "opportunity_score": [1.5, 2.25, None],
            "provider_count": [3, 4, 5],
        }
    )


def test_write_table_files_round_trip(tmp_path: Path) -> None:
    frame = _frame()
    paths = write_table_files(tmp_path / "2025-04-01", "territories", frame)
    assert [p.name for p in paths] == ["territories.csv", "territories.parquet"]
    assert pl.read_parquet(paths[1]).equals(frame)
    from_csv = pl.read_csv(paths[0], schema=frame.schema)
    assert from_csv.equals(frame)  # the leading zero of 02134 survives as text
    assert paths[0].read_text().splitlines()[0] == "territory_id,npi,zip5,opportunity_score,provider_count"
    assert _entries(tmp_path / "2025-04-01") == ["territories.csv", "territories.parquet"]
    # rewriting is byte-for-byte stable
    first = [p.read_bytes() for p in paths]
    write_table_files(tmp_path / "2025-04-01", "territories", frame)
    assert [p.read_bytes() for p in paths] == first


# --- the assignment export -------------------------------------------------------------


def _assignments() -> pl.DataFrame:
    base = {c: [f"{c}-{i}" for i in range(4)] for c in ASSIGNMENT_EXPORT_COLUMNS}
    base["npi"] = ["1000000004", "1000000002", "1000000003", "1000000001"]
    base["territory_id"] = ["T2", "T1", "T2", "T1"]
    base["opportunity_score"] = [4.0, 2.0, 3.0, 1.0]
    base["address_line_2"] = [None, "Ste 1", None, None]
    base["extra_column"] = ["x"] * 4
    return pl.DataFrame(base)


def test_crm_assignments_selects_and_sorts() -> None:
    out = crm_assignments(_assignments())
    assert out.columns == list(ASSIGNMENT_EXPORT_COLUMNS)
    assert out.select("territory_id", "npi").rows() == [
        ("T1", "1000000001"),
        ("T1", "1000000002"),
        ("T2", "1000000003"),
        ("T2", "1000000004"),
    ]
    assert out["opportunity_score"].to_list() == [1.0, 2.0, 3.0, 4.0]
    assert out["address_line_2"].to_list() == [None, "Ste 1", None, None]  # rows stay whole
    assert crm_assignments(_assignments().reverse()).equals(out)


def test_crm_assignments_names_missing_columns() -> None:
    with pytest.raises(ValueError) as info:
        crm_assignments(_assignments().drop("rep_name", "zip5"))
    assert str(info.value) == "assignments lack export column(s): zip5, rep_name"


# --- stale temporaries -----------------------------------------------------------------


def test_clean_stale_temporaries_removes_only_writer_temporaries(tmp_path: Path) -> None:
    keep = ["territories.csv", "notes.tmp", ".gitkeep", ".hidden.csv", "a.tmp.csv"]
    stale = [".territories.csv.k2j4x9.tmp", ".territory_assignments.parquet.abc.tmp"]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    assert clean_stale_temporaries(tmp_path) == 2
    assert _entries(tmp_path) == sorted(keep)
    assert clean_stale_temporaries(tmp_path) == 0
    assert clean_stale_temporaries(tmp_path / "absent") == 0


def test_temporary_left_by_a_killed_writer_is_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "territories.csv"
    names: list[str] = []

    def record_name(tmp: Path) -> None:
        names.append(tmp.name)
        tmp.write_text("new\n")

    atomic_write(target, record_name)
    # a writer killed before its rename leaves a file named like this one
    (tmp_path / names[0]).write_text("partial")
    assert clean_stale_temporaries(tmp_path) == 1
    assert _entries(tmp_path) == ["territories.csv"]
    assert target.read_text() == "new\n"
