"""The floors the local stages are compared with, each measured in its own process.

- ``polars``: a bare ``read_csv`` + ``unique`` by email, the least any tool does with the file
  (parse it, keep one row per key), in memory, with nothing but polars imported.
- ``duckdb``: the durable load a database does at its own speed: read the file, normalize the
  email (trimmed, lower-case), keep one row per email, hash each row, into a table of a DuckDB
  file that is closed (checkpointed) before the clock stops, with nothing but duckdb imported.

    python -m bench.floor polars bench/out/contacts_1m.csv
    python -m bench.floor duckdb bench/out/contacts_1m.csv --db /tmp/floor.duckdb
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.worker import emit, status_mib

KEY_COLUMN = "E-mail"
"""The generator's email header."""

DURABLE_LOAD = f"""
CREATE TABLE records AS
WITH rows AS (
    SELECT *, lower(trim("{KEY_COLUMN}")) AS email
    FROM read_csv(?, all_varchar = true, header = true)
)
SELECT DISTINCT ON (email) *,
       md5(concat_ws(chr(31), *COLUMNS(* EXCLUDE (email)))) AS content_hash
FROM rows
WHERE email <> ''
"""


def polars_floor(path: Path) -> dict[str, Any]:
    import polars as pl

    started = time.perf_counter()
    frame = pl.read_csv(path, infer_schema=False)
    distinct = frame.unique(subset=[KEY_COLUMN]).height
    return {
        "rows": frame.height,
        "distinct": distinct,
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": status_mib("VmHWM"),
    }


def duckdb_floor(path: Path, db: Path) -> dict[str, Any]:
    import duckdb

    db.unlink(missing_ok=True)
    started = time.perf_counter()
    conn = duckdb.connect(str(db))
    conn.execute(DURABLE_LOAD, [str(path)])
    row = conn.execute("SELECT count(*) FROM records").fetchone()
    conn.close()
    seconds = time.perf_counter() - started
    db.unlink(missing_ok=True)
    return {
        "distinct": int(row[0]) if row else 0,
        "seconds": seconds,
        "peak_rss_mib": status_mib("VmHWM"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("kind", choices=("polars", "duckdb"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--db", type=Path, help="the DuckDB file of the durable load")
    args = parser.parse_args(argv)
    if args.kind == "polars":
        emit(polars_floor(args.file))
    else:
        if args.db is None:
            parser.error("the duckdb floor needs --db")
        emit(duckdb_floor(args.file, args.db))


if __name__ == "__main__":
    main()
