"""Frames written as a staging store takes rows (``StagingRows``), for tests of the store."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from bulk_pipeline.entities import Entity
from bulk_pipeline.staging import StagingRows
from bulk_pipeline.staging.keys import keyed

SHEET = "_sheet"


def staging_rows(entity: Entity, valid: pl.DataFrame, invalid: pl.DataFrame) -> list[StagingRows]:
    """``valid`` (our fields and ``_line``) keyed as validation writes them, and ``invalid``
    (``_line``, ``reason``), as Parquet files of one part per sheet (``_sheet``, when given,
    in the order the sheets first appear)."""
    folder = Path(tempfile.mkdtemp(prefix="staging_rows_"))
    sheets = list(dict.fromkeys([*_sheets(valid), *_sheets(invalid)])) or [""]
    rows = []
    for part, sheet in enumerate(sheets):
        held = StagingRows(
            sheet, folder / f"{part}-valid.parquet", folder / f"{part}-invalid.parquet"
        )
        keyed(_of(valid, sheet), entity, sheet=sheet, part=part).write_parquet(held.valid)
        _of(invalid, sheet).select(pl.col("_line").cast(pl.Int64), "reason").write_parquet(
            held.invalid
        )
        rows.append(held)
    return rows


def _sheets(frame: pl.DataFrame) -> list[str]:
    if SHEET not in frame.columns:
        return [""] if frame.height else []
    return [str(s) for s in frame[SHEET].fill_null("").unique(maintain_order=True).to_list()]


def _of(frame: pl.DataFrame, sheet: str) -> pl.DataFrame:
    if SHEET not in frame.columns:
        return frame if sheet == "" else frame.clear()
    return frame.filter(pl.col(SHEET).fill_null("") == sheet).drop(SHEET)
