"""ParquetSink: the frames written come back in order, whole, and a failed step leaves no file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from bulk_pipeline.chunk_files import ParquetSink, read_chunks


def _chunk(first: int, rows: int) -> pl.DataFrame:
    lines = range(first, first + rows)
    return pl.DataFrame(
        {"email": [f"user{n}@example.com" for n in lines], "_line": list(lines)},
        schema={"email": pl.String, "_line": pl.Int64},
    )


def test_frames_written_one_after_another_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    chunks = [_chunk(first, 997) for first in range(2, 2 + 997 * 40, 997)]
    with ParquetSink(path) as sink:
        for chunk in chunks:
            sink.write(chunk)
        assert not path.exists(), "the file appears only when the sink is closed"

    assert sink.rows == 997 * 40
    read = list(read_chunks(path, 997))
    assert len(read) == 40
    assert_frame_equal(pl.concat(read), pl.concat(chunks))


def test_an_error_while_frames_are_being_written_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    with pytest.raises(RuntimeError, match="stopped"), ParquetSink(path) as sink:
        for first in range(2, 2 + 5_000 * 10, 5_000):
            sink.write(_chunk(first, 5_000))
        raise RuntimeError("stopped")

    assert list(tmp_path.iterdir()) == []


def test_a_frame_that_cannot_take_the_first_frames_columns_fails_the_sink(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.parquet"
    with pytest.raises(pa.ArrowInvalid), ParquetSink(path) as sink:
        sink.write(_chunk(2, 10))
        sink.write(pl.DataFrame({"email": ["x"], "_line": ["not a line"]}))

    assert list(tmp_path.iterdir()) == []
