"""The one writer of every CSV file bulk_pipeline produces (rejected.csv, plan.csv, ...).

People open these files in a spreadsheet, and their cells hold text from untrusted uploads and
CRMs: a key such as ``=cmd|'/c calc'!A0@example.com`` passes e-mail validation. A cell (or
header) that a spreadsheet would evaluate as a formula therefore gets a leading single quote, as
the OWASP CSV-injection guidance advises: one starting with ``=``, ``+``, ``-`` or ``@``, also
after leading spaces or line breaks, and one starting with a tab or a carriage return (some
spreadsheets evaluate what follows). Numbers, booleans and dates are written as they are: they
cannot carry a formula, and ``-5`` stays a number.

Files start with a UTF-8 byte-order mark, so that Excel reads accented names correctly (and
keeps UTF-8 when the user saves); polars and ``utf-8-sig`` readers skip it. A whole file is
replaced atomically. Ingest undoes the quote (``UNQUOTE_PATTERN``), so a corrected rejected.csv
imports with its original values.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import polars as pl
import polars.selectors as cs

FORMULA_PATTERN = r"^(?:\s*[=+\-@]|[\t\r])"
"""What a spreadsheet may evaluate: a formula sign after optional whitespace, or a leading tab or
carriage return."""
UNQUOTE_PATTERN = r"^'(\s*[=+\-@]|[\t\r])"
"""A neutralized cell: the quote, then what made it need one (group 1)."""
QUOTE = "'"
BOM = "\ufeff"
_FORMULA = re.compile(FORMULA_PATTERN)

Cell = str | int | float | bool | None


def neutralize(value: str | None) -> str | None:
    """``value`` with a leading ``'`` when a spreadsheet would evaluate it as a formula."""
    if value is None or not _FORMULA.match(value):
        return value
    return QUOTE + value


def _cell(value: Cell) -> Cell:
    """A plain value as polars writes it (``true``, not ``True``), text neutralized."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return neutralize(value) if isinstance(value, str) else value


def _safe_headers(names: Sequence[str]) -> list[str]:
    """Neutralized headers, kept distinct (``=a`` and ``'=a`` would otherwise collide)."""
    result: list[str] = []
    taken: set[str] = set()
    for name in names:
        header = neutralize(name) or ""
        candidate, number = header, 2
        while candidate in taken:
            candidate = f"{header} ({number})"
            number += 1
        taken.add(candidate)
        result.append(candidate)
    return result


def _keeps_type(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype.is_temporal() or dtype == pl.Boolean


def _neutralized(name: str) -> pl.Expr:
    value = cs.by_name(name).cast(pl.String)
    return pl.when(value.str.contains(FORMULA_PATTERN)).then(QUOTE + value).otherwise(value)


def write_frame(path: Path, frame: pl.DataFrame) -> int:
    """Write ``frame`` with every text cell and header neutralized; return the row count."""
    return write_frames(path, [frame])


def write_frames(path: Path, frames: Iterable[pl.DataFrame]) -> int:
    """Write frames of the same columns one after the other, as one file with one header
    (the first frame's, which may have no rows); return the row count. A file written a
    frame at a time holds one frame in memory, however long it grows."""
    with CsvSink(path) as sink:
        for frame in frames:
            sink.write(frame)
    return sink.rows


class CsvSink:
    """A CSV file written a frame at a time (``write_frames``), in place when closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._partial = _partial(path)
        self._handle: BinaryIO | None = None
        self._columns: list[str] = []
        self._safe: list[pl.Expr] = []

    def write(self, frame: pl.DataFrame) -> None:
        if self._handle is None:
            self._handle = self._partial.open("wb")
            self._handle.write(BOM.encode())
            self._columns = frame.columns
            headers = _safe_headers(self._columns)
            self._safe = [
                (cs.by_name(name) if _keeps_type(frame.schema[name]) else _neutralized(name)).alias(
                    header
                )
                for name, header in zip(self._columns, headers, strict=True)
            ]
            frame.select(self._safe).write_csv(self._handle)
        else:
            frame.select(self._columns).select(self._safe).write_csv(
                self._handle, include_header=False
            )
        self.rows += frame.height

    def __enter__(self) -> CsvSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._handle is None:
            return
        self._handle.close()
        if kind is None:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> int:
    """Write a header and rows of plain values, neutralized; return the row count."""
    partial = _partial(path)
    count = 0
    with partial.open("w", newline="", encoding="utf-8") as handle:
        handle.write(BOM)
        writer = csv.writer(handle)
        writer.writerow(_safe_headers(header))
        for row in rows:
            writer.writerow([_cell(value) for value in row])
            count += 1
    os.replace(partial, path)
    return count


def append_rows(path: Path, rows: Iterable[Sequence[Cell]]) -> None:
    """Add rows to a file started by ``write_rows`` (a log that must survive a crash)."""
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([_cell(value) for value in row] for row in rows)


def _partial(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.partial")
