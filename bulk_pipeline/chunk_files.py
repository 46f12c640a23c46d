"""Frames handed from one import step to the next, written and read a chunk at a time.

Each step writes its output to a Parquet file in the import's work folder, one row group per
chunk, and the next step reads it back a row group at a time: no step holds a whole file, and
any step can run again alone (a retry, a backfill) from what the one before it left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ORDER_COLUMN = "_line"
"""The line number every hand-off is in order of: the one column whose statistics a reader uses
(to find a window of lines without reading the others)."""
WRITE_OPTIONS: dict[str, object] = {
    "compression": "lz4",
    "use_dictionary": False,
    "write_statistics": [ORDER_COLUMN],
}
"""Work files are read once or twice and then deleted: LZ4 without dictionaries, and no
minimum and maximum of every text column, write them twice as fast as pyarrow's defaults
(Snappy, dictionaries, statistics of every column), for files about as small."""


class ParquetSink:
    """A Parquet file written a frame at a time, in place when closed (never half written).

    Every frame has the first one's columns (a missing column is an error); write an empty
    frame to make a file of no rows. A sink closed without any frame makes no file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._partial = path.with_name(f".{path.name}.partial")
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._partial, table.schema, **WRITE_OPTIONS)
        elif table.schema != self._writer.schema:
            table = table.select(self._writer.schema.names).cast(self._writer.schema)
        self._writer.write_table(table)
        self.rows += frame.height

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        os.replace(self._partial, self.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


def read_chunks(path: Path, rows: int, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """The file's rows, ``rows`` at a time (at least one frame, empty for a file of none)."""
    parquet = open_parquet(path)
    read = False
    for batch in parquet.iter_batches(batch_size=rows, columns=columns):
        read = True
        yield _frame(batch)
    if not read:
        schema = parquet.schema_arrow
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        yield _frame(schema.empty_table())


def open_parquet(path: Path, **options: object) -> pq.ParquetFile:
    """A Parquet file to read a row group at a time. Without ``pre_buffer=False``, pyarrow
    keeps what it read ahead of each batch for the life of the reader: memory that grows with
    the file."""
    return pq.ParquetFile(path, pre_buffer=False, **options)


def _frame(data: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)
    return frame
