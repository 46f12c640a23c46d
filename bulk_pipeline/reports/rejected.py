"""rejected.csv: the quarantined rows in the file's own columns, to fix and import again.

People open this file in a spreadsheet, so any cell (or header) that a spreadsheet would read as
a formula gets a leading single quote, as the OWASP CSV-injection guidance advises: a value such
as ``=HYPERLINK(...)`` from an untrusted upload must not run on the machine of whoever opens the
report. The file starts with a UTF-8 byte-order mark so that Excel reads accented names correctly
(and keeps UTF-8 when the user saves the corrected file); polars and ``utf-8-sig`` readers skip it.

The two columns this module appends, ``line`` and ``reason``, keep those exact names: ingest
recognizes and drops them when a corrected file comes back.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

FORMULA_PREFIXES = ("=", "+", "-", "@")
CONTROL_PREFIXES = ("\t", "\r")
"""Spreadsheets also evaluate what follows a leading tab or carriage return."""
FORMULA_PATTERN = r"^[=+\-@\t\r]"

SOURCE_LINE_COLUMN = "_line"
REASON_COLUMN = "reason"
LINE_HEADER = "line"
REASON_HEADER = "reason"
CLASHING_SOURCE_SUFFIX = " (source)"
"""Added to a source column that is itself called ``line``, so our column keeps its name."""


def neutralize_formula(value: str | None) -> str | None:
    """The value with a leading ``'`` when a spreadsheet would evaluate it as a formula."""
    return None if value is None else _neutralize_text(value)


def _neutralize_text(value: str) -> str:
    if value.startswith(FORMULA_PREFIXES + CONTROL_PREFIXES):
        return "'" + value
    return value


def _neutralized(column: str) -> pl.Expr:
    value = pl.col(column).cast(pl.String)
    return pl.when(value.str.contains(FORMULA_PATTERN)).then("'" + value).otherwise(value)


def _header(column: str) -> str:
    """A source column called ``reason`` cannot reach here: it would be ``rows``' reason column."""
    header = _neutralize_text(column)
    return header + CLASHING_SOURCE_SUFFIX if header == LINE_HEADER else header


def write_rejected_csv(path: Path, rows: pl.DataFrame) -> int:
    """Write the rejected rows (source columns, then ``line`` and ``reason``); return the count.

    ``rows`` holds the original source columns under their original headers plus ``_line`` and
    ``reason``. A header row is written even when there are no rows, so the file always shows
    which columns a corrected file needs. The file is replaced atomically.
    """
    absent = [name for name in (SOURCE_LINE_COLUMN, REASON_COLUMN) if name not in rows.columns]
    if absent:
        raise ValueError(f"rejected rows need the columns {absent}; got {rows.columns}")
    source_columns = [
        name for name in rows.columns if name not in (SOURCE_LINE_COLUMN, REASON_COLUMN)
    ]
    report = rows.select(
        *(_neutralized(name).alias(_header(name)) for name in source_columns),
        pl.col(SOURCE_LINE_COLUMN).alias(LINE_HEADER),
        _neutralized(REASON_COLUMN).alias(REASON_HEADER),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    report.write_csv(partial, include_bom=True)
    os.replace(partial, path)
    return report.height
