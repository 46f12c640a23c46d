"""Parquet files (warehouse and data-tool exports), turned into the same all-string table.

Parquet columns are typed; the rest of the pipeline works on text as a user would type it, so
every column is rendered as text here: whole floats without ".0", dates and timestamps as ISO 8601,
booleans as true/false, nested values as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bulk_pipeline import config
from bulk_pipeline.chunk_files import open_parquet
from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    Chunk,
    InputFileError,
    Limits,
    RawTable,
    TableStream,
    blank_header_positions,
    check_column_count,
    check_row_count,
    finish_chunk,
    human_size,
    unique_headers,
)

EXACT_FLOAT_INTEGER = 2**53
"""Whole floats below this print as integers without losing digits."""
DICTIONARY_ENCODINGS = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
READ_ERRORS = (pa.ArrowException, OSError, ValueError, pl.exceptions.PolarsError)


def read_parquet(path: Path, *, source: str, limits: Limits) -> RawTable:
    """Read a Parquet file whole (see ``stream_parquet``)."""
    return stream_parquet(path, source=source, limits=limits).collect()


def stream_parquet(
    path: Path, *, source: str, limits: Limits, chunk_rows: int | None = None
) -> TableStream:
    """Read with pyarrow (any Arrow type, repeated column names), ``chunk_rows`` rows at a
    time, and render text with polars.

    What a Parquet file expands to is bounded from its metadata before any page is read (rows,
    values, decompressed bytes), and string columns are read as dictionaries so that the text
    they expand to can be counted before it is materialized.
    """
    try:
        parquet = pq.ParquetFile(path)
        _check_expansion(parquet.metadata, source, limits)
        strings = _dictionary_text_columns(parquet)
        parquet = open_parquet(path, read_dictionary=strings)
    except READ_ERRORS as exc:
        raise _unreadable(source, exc) from exc
    names = parquet.schema_arrow.names
    headers = unique_headers(names)
    batches = parquet.iter_batches(batch_size=chunk_rows or config.chunk_rows())

    def chunks() -> Iterator[Chunk]:
        first_line = 1
        text_bytes = 0
        while True:
            try:
                batch = next(batches, None)
            except READ_ERRORS as exc:
                raise _unreadable(source, exc) from exc
            if batch is None and first_line > 1:
                return
            table = (
                pa.Table.from_batches([batch])
                if batch is not None
                else parquet.schema_arrow.empty_table()
            )
            text_bytes += _text_bytes(table)
            _check_text(text_bytes, source, limits)
            columns = [
                _column_text(table.column(i), header, source) for i, header in enumerate(headers)
            ]
            frame = pl.DataFrame(columns).with_columns(
                pl.int_range(first_line, first_line + table.num_rows, dtype=pl.Int64).alias(
                    LINE_COLUMN
                )
            )
            yield Chunk(finish_chunk(frame))
            if batch is None:
                return
            first_line += table.num_rows

    return TableStream(
        headers=headers,
        chunks=chunks(),
        source=source,
        blank_headers=[headers[i] for i in blank_header_positions(names)],
    )


def _unreadable(source: str, exc: BaseException) -> InputFileError:
    return InputFileError(f"{source}: cannot be read as Parquet ({exc}). Export the file again.")


def _check_expansion(metadata: pq.FileMetaData, source: str, limits: Limits) -> None:
    check_row_count(metadata.num_rows, limits, source)
    check_column_count(metadata.num_columns, limits, source, "the file has ")
    unpacked = 0
    values = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            unpacked += chunk.total_uncompressed_size
            values += chunk.num_values
    if unpacked > limits.max_unpacked_bytes:
        raise InputFileError(
            f"{source}: the file's pages decompress to {human_size(unpacked)}, more than the "
            f"limit of {human_size(limits.max_unpacked_bytes)} (Limits(max_unpacked_bytes=...)). "
            "Split the export into smaller files."
        )
    if values > limits.max_cells:
        raise InputFileError(
            f"{source}: the file holds {values:,} values (nested lists count each element), "
            f"more than the limit of {limits.max_cells:,} (Limits(max_cells=...)). Split the "
            "export into smaller files, or leave out list columns the import does not need."
        )


def _dictionary_text_columns(parquet: pq.ParquetFile) -> list[str]:
    """Top-level text columns stored with a dictionary: read as dictionaries, they cost nothing
    more, and what they expand to can be counted before it is built."""
    text = {
        f.name
        for f in parquet.schema_arrow
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type)
    }
    metadata = parquet.metadata
    encoded: set[str] = set()
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            if DICTIONARY_ENCODINGS & set(chunk.encodings):
                encoded.add(chunk.path_in_schema)
    return sorted(text & encoded)


def _text_bytes(table: pa.Table) -> int:
    """Dictionary-encoded text repeats a value per row: what the table's text expands to."""
    total = 0
    for column in table.columns:
        if not pa.types.is_dictionary(column.type):
            total += column.nbytes
            continue
        for chunk in column.chunks:
            lengths = pc.binary_length(chunk.dictionary)
            total += pc.sum(lengths.take(chunk.indices)).as_py() or 0
    return total


def _check_text(total: int, source: str, limits: Limits) -> None:
    if total > limits.max_text_bytes:
        raise InputFileError(
            f"{source}: the file's values expand to {human_size(total)} of text, more than the "
            f"limit of {human_size(limits.max_text_bytes)} (Limits(max_text_bytes=...)). Split "
            "the export into smaller files."
        )


def _column_text(column: pa.ChunkedArray, header: str, source: str) -> pl.Series:
    """One column as text; a type polars cannot take is rendered by Arrow, or named."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    try:
        series = pl.Series(header, column) if not _arrow_renders(column.type) else None
        if series is not None:
            return _as_text(series).alias(header)
    except READ_ERRORS:
        pass
    try:
        return pl.Series(header, pc.cast(column, pa.large_string())).alias(header)
    except READ_ERRORS as exc:
        raise InputFileError(
            f"{source}: column '{header}' holds values of type {column.type}, which cannot be "
            "read as text. Export that column as text or numbers, or leave it out."
        ) from exc


def _arrow_renders(arrow_type: pa.DataType) -> bool:
    """Types polars cannot load (wide decimals), which Arrow renders as text itself."""
    return pa.types.is_decimal(arrow_type) and arrow_type.precision > 38


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
    if isinstance(dtype, pl.Duration):
        return series.dt.to_string()
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
