"""Benchmark: NPPES monthly file -> target providers, polars reader vs a pandas baseline.

Generates an NPPES-format ``npidata_pfile`` (330 columns, every value double-quoted,
MM/DD/YYYY dates, ~8% deactivation stubs, individuals and organizations, up to three
taxonomy slots with the primary switch in any slot, other-identifier groups) of a
configurable size, then runs each reader in its own subprocess and reads the child's
peak RSS (``ru_maxrss``) and wall time:

* ``territory_pipeline.universe.nppes.read_nppes`` (the production reader: stubs,
  activity, primary taxonomy, rejects, stats);
* a pandas ``read_csv(usecols=..., dtype=str)`` baseline applying the same target
  filter (active, individual, primary taxonomy in the target codes).

Usage::

    .venv/bin/python benchmarks/nppes_ingest.py --rows 1000000
    .venv/bin/python benchmarks/nppes_ingest.py --rows 9000000 --dir /big/disk --keep

Prints a markdown table (reader, rows, seconds, peak RSS GB, ratio vs pandas).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from territory_pipeline.universe.nppes_layout import NPIDATA_HEADER

TARGET_CODES = ("207X00000X", "207XS0117X", "207T00000X")

# Weighted taxonomy pool: the spine targets are about 1% of slots, like the national file.
_TAXONOMY_POOL = (
    "207Q00000X", "207R00000X", "363L00000X", "363A00000X", "225100000X", "1041C0700X",
    "261QM1300X", "332B00000X", "207X00000X", "207XS0117X", "207T00000X", "208100000X",
    "261QA1903X", "282N00000X", "193400000X", "207L00000X", "2084P0800X", "122300000X",
)
_TAXONOMY_WEIGHTS = (14, 12, 12, 6, 8, 6, 4, 6, 0.6, 0.2, 0.3, 1, 1, 1, 4, 6, 8, 9.9)

_LAST = ("SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "NGUYEN", "PATEL")
_FIRST = ("JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID", "SUSAN")
_STREETS = ("MAIN ST", "OAK AVE", "MEDICAL PKWY", "CENTRAL AVE", "KING STREET", "HOSPITAL DR", "PARK BLVD")
_CITY_STATE_ZIP = (
    ("KEARNEY", "NE", "68847"), ("JACKSONVILLE", "FL", "32204"), ("BOSTON", "MA", "02115"),
    ("DENVER", "CO", "80218"), ("PHOENIX", "AZ", "85006"), ("ATLANTA", "GA", "30308"),
    ("SEATTLE", "WA", "98104"), ("NEWARK", "NJ", "07102"), ("DALLAS", "TX", "75246"),
    ("CHICAGO", "IL", "60611"), ("SAN JUAN", "PR", "00909"), ("RALEIGH", "NC", "27607"),
)


def _valid_npis(rng, start: int, count: int):
    """``count`` distinct valid NPIs (Luhn with prefix 80840), as 10-char strings."""
    import numpy as np

    bodies = 100_000_000 + start * 7 + np.arange(count, dtype=np.int64) * 7 + rng.integers(0, 7, count)
    digits = np.stack([(bodies // 10**p) % 10 for p in range(8, -1, -1)], axis=1)  # left to right
    doubled = digits[:, 8::-2] * 2  # rightmost body digit and every second one to its left
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    total = 24 + doubled.sum(axis=1) + digits[:, 7::-2].sum(axis=1)
    check = (10 - total % 10) % 10
    return (bodies * 10 + check).astype(str)


def _dates(rng, count: int, first_year: int, last_year: int):
    import numpy as np

    month = rng.integers(1, 13, count)
    day = rng.integers(1, 29, count)
    year = rng.integers(first_year, last_year + 1, count)
    return np.char.add(
        np.char.add(np.char.add(np.char.zfill(month.astype(str), 2), "/"), np.char.add(np.char.zfill(day.astype(str), 2), "/")),
        year.astype(str),
    )


def _chunk(rng, start: int, count: int):
    """One chunk of rows as a single pre-quoted ``line`` column (a polars frame)."""
    import numpy as np
    import polars as pl

    pool = np.array(_TAXONOMY_POOL)
    weights = np.array(_TAXONOMY_WEIGHTS) / sum(_TAXONOMY_WEIGHTS)
    last_names, first_names, streets = np.array(_LAST), np.array(_FIRST), np.array(_STREETS)
    places = np.array(_CITY_STATE_ZIP)
    kind = rng.choice(np.array(["1", "2", "stub"]), size=count, p=[0.72, 0.20, 0.08])
    ind, org, stub = kind == "1", kind == "2", kind == "stub"
    active = ~stub
    loc = rng.integers(0, len(places), count)
    city, state, zip5 = (places[loc, i] for i in range(3))
    plus4 = np.char.zfill(rng.integers(0, 10_000, count).astype(str), 4)
    postal = np.where(rng.random(count) < 0.8, np.char.add(zip5, plus4), zip5)
    street = np.char.add(np.char.add(rng.integers(1, 9999, count).astype(str), " "), rng.choice(streets, count))
    phone = rng.integers(2_000_000_000, 9_999_999_999, count).astype(str)
    n_tax = rng.choice(np.array([1, 2, 3]), size=count, p=[0.7, 0.2, 0.1])
    primary_slot = (rng.random(count) * n_tax).astype(int)
    reactivated = active & (rng.random(count) < 0.005)
    cols: dict[str, object] = {name: None for name in NPIDATA_HEADER}

    def put(name: str, values, mask) -> None:
        cols[name] = np.where(mask, values, "")

    put("NPI", _valid_npis(rng, start, count), np.ones(count, bool))
    put("Entity Type Code", kind, active)
    put("Provider Organization Name (Legal Business Name)", np.char.add(rng.choice(last_names, count), " MEDICAL GROUP LLC"), org)
    put("Provider Last Name (Legal Name)", rng.choice(last_names, count), ind)
    put("Provider First Name", rng.choice(first_names, count), ind)
    put("Provider Credential Text", np.full(count, "M.D."), ind)
    for prefix in ("Provider First Line Business Mailing Address", "Provider First Line Business Practice Location Address"):
        put(prefix, street, active)
    for suffix, values in (("City Name", city), ("State Name", state), ("Postal Code", postal), ("Telephone Number", phone)):
        put(f"Provider Business Mailing Address {suffix}", values, active)
        put(f"Provider Business Practice Location Address {suffix}", values, active)
    put("Provider Business Mailing Address Country Code (If outside U.S.)", np.full(count, "US"), active)
    put("Provider Business Practice Location Address Country Code (If outside U.S.)", np.full(count, "US"), active)
    put("Provider Enumeration Date", _dates(rng, count, 2005, 2024), active)
    put("Last Update Date", _dates(rng, count, 2007, 2026), active)
    put("NPI Deactivation Date", _dates(rng, count, 2008, 2016), stub | reactivated)
    put("NPI Reactivation Date", _dates(rng, count, 2017, 2025), reactivated)
    put("Provider Sex Code", rng.choice(np.array(["M", "F"]), count), ind)
    put("Authorized Official Last Name", rng.choice(last_names, count), org)
    put("Authorized Official First Name", rng.choice(first_names, count), org)
    for slot in range(3):
        used = active & (n_tax > slot)
        n = slot + 1
        put(f"Healthcare Provider Taxonomy Code_{n}", rng.choice(pool, count, p=weights), used)
        put(f"Provider License Number_{n}", rng.integers(1000, 999_999, count).astype(str), used & ind)
        put(f"Provider License Number State Code_{n}", state, used & ind)
        put(f"Healthcare Provider Primary Taxonomy Switch_{n}", np.where(primary_slot == slot, "Y", "N"), used)
    n_ids = rng.integers(0, 4, count) * active
    for slot in range(3):
        used = n_ids > slot
        n = slot + 1
        put(f"Other Provider Identifier_{n}", rng.integers(10_000, 99_999_999, count).astype(str), used)
        put(f"Other Provider Identifier Type Code_{n}", rng.choice(np.array(["01", "05"]), count), used)
        put(f"Other Provider Identifier State_{n}", state, used)
        put(f"Other Provider Identifier Issuer_{n}", rng.choice(np.array(["BCBS", "AETNA", ""]), count), used)
    put("Is Sole Proprietor", rng.choice(np.array(["Y", "N", "X"]), count), ind)
    put("Is Organization Subpart", rng.choice(np.array(["Y", "N"]), count), org)
    put("Healthcare Provider Taxonomy Group_1", np.full(count, "193400000X SINGLE SPECIALTY  GROUP"), org & (rng.random(count) < 0.2))

    # Build each line from literal runs of empty cells and the filled columns.
    pieces: list[pl.Expr] = []
    frame_cols: dict[str, object] = {}
    literal = ""
    for i, name in enumerate(NPIDATA_HEADER):
        sep = "," if i else ""
        values = cols[name]
        if values is None:
            literal += sep + '""'
            continue
        literal += sep + '"'
        pieces.append(pl.lit(literal))
        key = f"c{i}"
        frame_cols[key] = values
        pieces.append(pl.col(key))
        literal = '"'
    pieces.append(pl.lit(literal))
    frame = pl.DataFrame(frame_cols)
    return frame.select(pl.concat_str(pieces).alias("line"))


def generate_npidata(path: Path, rows: int, *, seed: int = 20261123, chunk_rows: int = 250_000) -> Path:
    """Write an NPPES-format npidata_pfile of ``rows`` rows to ``path`` (deterministic for a seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with path.open("wb") as handle:
        handle.write((",".join(f'"{h}"' for h in NPIDATA_HEADER) + "\n").encode())
        for start in range(0, rows, chunk_rows):
            count = min(chunk_rows, rows - start)
            lines = _chunk(rng, start, count)["line"]
            handle.write((lines.str.join("\n").item() + "\n").encode())
    return path


# --- readers (each runs in a child process) -------------------------------------------------


def _run_polars(path: Path) -> int:
    from territory_pipeline.universe.nppes import read_nppes
    from territory_pipeline.universe.taxonomy import BUILTIN_TAXONOMY

    result = read_nppes(path, target_codes=TARGET_CODES, taxonomy=BUILTIN_TAXONOMY)
    return result.providers.height


def _run_pandas(path: Path) -> int:
    import pandas as pd

    codes = [f"Healthcare Provider Taxonomy Code_{n}" for n in range(1, 16)]
    switches = [f"Healthcare Provider Primary Taxonomy Switch_{n}" for n in range(1, 16)]
    usecols = [
    "NPI", "Entity Type Code", "Provider Last Name (Legal Name)", "Provider First Name", "Provider Middle Name",
    "Provider Credential Text", "Provider First Line Business Practice Location Address",
    "Provider Second Line Business Practice Location Address", "Provider Business Practice Location Address City Name",
    "Provider Business Practice Location Address State Name", "Provider Business Practice Location Address Postal Code",
    "Provider Business Practice Location Address Country Code (If outside U.S.)",
    "Provider Business Practice Location Address Telephone Number", "Provider Enumeration Date", "Last Update Date",
    "NPI Deactivation Date", "NPI Reactivation Date", "Provider Sex Code", *codes, *switches,
    ]
    df = pd.read_csv(path, usecols=usecols, dtype=str, keep_default_na=False)
    primary = pd.Series(pd.NA, index=df.index, dtype="string")
    for code, switch in zip(codes, switches, strict=True):
        primary = primary.mask(primary.isna() & (df[switch] == "Y"), df[code])
    deact = pd.to_datetime(df["NPI Deactivation Date"], format="%m/%d/%Y", errors="coerce")
    react = pd.to_datetime(df["NPI Reactivation Date"], format="%m/%d/%Y", errors="coerce")
    active = deact.isna() | (react.notna() & (react >= deact))
    keep = active & (df["Entity Type Code"] == "1") & primary.isin(TARGET_CODES)
    return int(keep.sum())


def _child(reader: str, path: Path) -> None:
    start = time.perf_counter()
    rows = _run_polars(path) if reader == "polars" else _run_pandas(path)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"reader": reader, "providers": rows, "seconds": seconds, "peak_gb": peak_kb / 1024**2}))


def _measure(reader: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", reader, "--file", str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=9_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the file (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--child", choices=["polars", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=Path, help="only write an NPPES-format file of --rows rows to this path")
    args = parser.parse_args()
    if args.generate:
        generate_npidata(args.generate, args.rows)
        return
    if args.child:
        _child(args.child, args.file)
        return

    # The parent imports no numpy/polars and generates in a child: a child's ru_maxrss starts
    # from the parent's RSS at fork, so the parent must stay small for honest peaks.
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        target_dir = args.dir if args.keep and args.dir else Path(tmp)
        path = target_dir / f"npidata_pfile_20050523-20261109_{args.rows}.csv"
        t0 = time.perf_counter()
        if not path.exists():
            subprocess.run([sys.executable, __file__, "--generate", str(path), "--rows", str(args.rows)], check=True)
        gen_seconds = time.perf_counter() - t0
        size_gb = path.stat().st_size / 1024**3
        results = [_measure(reader, path) for reader in ("polars", "pandas")]
    if results[0]["providers"] != results[1]["providers"]:
        raise SystemExit(f"readers disagree: {results}")
    base = results[1]["seconds"]
    print(f"parent RSS at spawn: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"file: {args.rows:,} rows, {size_gb:.2f} GB, generated in {gen_seconds:.1f} s; "
          f"{results[0]['providers']:,} target providers\n")
    print("| reader | rows | seconds | peak RSS GB | time ratio vs pandas |")
    print("|---|---|---|---|---|")
    names = {"polars": "read_nppes (polars scan_csv)", "pandas": "pandas read_csv(usecols, dtype=str)"}
    for r in results:
        print(f"| {names[r['reader']]} | {args.rows:,} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | {r['seconds'] / base:.2f} |")


if __name__ == "__main__":
    main()
