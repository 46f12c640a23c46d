"""The floor: a bare polars ``read_csv`` + ``unique`` by email on the same file.

The least any tool has to do with the file (parse it, keep one row per key), with nothing else
imported, so its time and peak RSS are what the local stages are compared with.

    python -m bench.floor bench/out/contacts_1m.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import polars as pl

from bench.worker import emit, status_mib

KEY_COLUMN = "E-mail"
"""The generator's email header."""


def measure_floor(path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    frame = pl.read_csv(path, infer_schema=False)
    distinct = frame.unique(subset=[KEY_COLUMN]).height
    return {
        "rows": frame.height,
        "distinct": distinct,
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": status_mib("VmHWM"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("file", type=Path)
    emit(measure_floor(parser.parse_args(argv).file))


if __name__ == "__main__":
    main()
