"""Parquet files (warehouse and data-tool exports), turned into the same all-string table.

Parquet columns are typed; the rest of the pipeline works on text as a user would type it, so
every column is rendered as text here: whole floats without ".0", dates and timestamps as ISO 8601,
booleans as true/false, nested values as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    InputFileError,
    Limits,
    RawTable,
    blank_header_positions,
    check_row_count,
    finish_frame,
    unique_headers,
)

EXACT_FLOAT_INTEGER = 2**53
"""Whole floats below this print as integers without losing digits."""


def read_parquet(path: Path, *, source: str, limits: Limits) -> RawTable:
    try:
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        check_row_count(int(rows), limits, source)
        frame = pl.read_parquet(path)
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputFileError(
            f"{source}: cannot be read as Parquet ({exc}). Export the file again."
        ) from exc

    names = frame.columns
    headers = unique_headers(names)
    text = pl.DataFrame(
        [_as_text(frame.to_series(i)).alias(header) for i, header in enumerate(headers)]
    ).with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE_COLUMN))
    blanks = [headers[i] for i in blank_header_positions(names)]
    return RawTable(frame=finish_frame(text, blanks), source=source)


def _as_text(series: pl.Series) -> pl.Series:
    dtype = series.dtype
    if dtype == pl.String:
        return series
    if dtype == pl.Boolean:
        return series.replace_strict({True: "true", False: "false"}, return_dtype=pl.String)
    if dtype.is_float():
        whole = (
            series.is_finite() & (series == series.floor()) & (series.abs() < EXACT_FLOAT_INTEGER)
        )
        return pl.select(
            pl.when(whole)
            .then(series.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(series.cast(pl.String))
        ).to_series()
    if dtype == pl.Date:
        return series.dt.to_string("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        return series.dt.to_string("%Y-%m-%dT%H:%M:%S")
    if dtype == pl.Binary:
        try:
            return series.cast(pl.String)
        except pl.exceptions.InvalidOperationError:
            return series.bin.encode("hex")
        except pl.exceptions.ComputeError:
            return series.bin.encode("hex")
    if dtype.is_nested() or dtype == pl.Object:
        values = [
            None if value is None else json.dumps(value, ensure_ascii=False, default=str)
            for value in series.to_list()
        ]
        return pl.Series(series.name, values, dtype=pl.String)
    return series.cast(pl.String)
