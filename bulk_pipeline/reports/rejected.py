"""rejected.csv: the quarantined rows in the file's own columns, to fix and import again.

Written by ``csv_export`` like every CSV we produce, so formula-like cells and headers are
neutralized and the file starts with a byte-order mark. The two columns this module appends,
``line`` and ``reason``, keep those exact names: ingest recognizes and drops them when a
corrected file comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import polars as pl
import polars.selectors as cs

from bulk_pipeline.csv_export import neutralize, write_frames

SOURCE_LINE_COLUMN = "_line"
REASON_COLUMN = "reason"
SHEET_COLUMN = "_sheet"
ENTITY_COLUMN = "_entity"
LINE_HEADER = "line"
REASON_HEADER = "reason"
SHEET_HEADER = "sheet"
ENTITY_HEADER = "entity"
CLASHING_SOURCE_SUFFIX = " (source)"
"""Added to a source column that is itself called ``line``, so our column keeps its name."""


def _header(column: str) -> str:
    """A source column called ``reason`` cannot reach here: it would be ``rows``' reason column."""
    clashes = neutralize(column) in (LINE_HEADER, SHEET_HEADER, ENTITY_HEADER)
    return column + CLASHING_SOURCE_SUFFIX if clashes else column


def write_rejected_csv(path: Path, rows: pl.DataFrame | Iterable[pl.DataFrame]) -> int:
    """Write the rejected rows (source columns, then ``sheet`` and ``entity`` when given,
    ``line`` and ``reason``); return the count.

    ``rows`` holds the original source columns under their original headers plus ``_line`` and
    ``reason``, and for imports of several sheets or entities ``_sheet`` and ``_entity``; or
    frames of those columns, written one after the other (the first one, which may have no
    rows, names the columns). A header row is written even when there are no rows, so the file
    always shows which columns a corrected file needs.
    """
    frames = iter([rows] if isinstance(rows, pl.DataFrame) else rows)
    first = next(frames)
    absent = [name for name in (SOURCE_LINE_COLUMN, REASON_COLUMN) if name not in first.columns]
    if absent:
        raise ValueError(f"rejected rows need the columns {absent}; got {first.columns}")
    ours = {SOURCE_LINE_COLUMN: LINE_HEADER, REASON_COLUMN: REASON_HEADER}
    where = {SHEET_COLUMN: SHEET_HEADER, ENTITY_COLUMN: ENTITY_HEADER}
    source_columns = [name for name in first.columns if name not in ours and name not in where]
    report = [
        *(cs.by_name(name).cast(pl.String).alias(_header(name)) for name in source_columns),
        *(pl.col(name).alias(header) for name, header in where.items() if name in first.columns),
        *(pl.col(name).alias(header) for name, header in ours.items()),
    ]
    return write_frames(path, (frame.select(report) for frame in chain([first], frames)))
