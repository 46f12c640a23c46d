"""Parquet: typed columns become the text a person would type; the line is the row number + 1."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from bulk_pipeline.ingest import InputFileError, Limits, read_file


def test_typed_columns_become_text(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    pl.DataFrame(
        {
            "email": ["a@x.com", "b@x.com"],
            "employees": [120, None],
            "revenue": [1200.0, 0.5],
            "active": [True, False],
            "born": [date(1985, 3, 5), None],
            "seen": [datetime(2024, 3, 5, 10, 30), None],
            "tags": [["a", "b"], []],
            "": ["x", None],
        }
    ).write_parquet(path)
    frame = read_file(path).frame
    assert frame.columns == [
        "email",
        "employees",
        "revenue",
        "active",
        "born",
        "seen",
        "tags",
        "column_8",
        "_line",
    ]
    assert frame.rows() == [
        (
            "a@x.com",
            "120",
            "1200",
            "true",
            "1985-03-05",
            "2024-03-05T10:30:00",
            '["a", "b"]',
            "x",
            1,
        ),
        ("b@x.com", None, "0.5", "false", None, None, "[]", None, 2),
    ]


def test_row_limit_uses_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    pl.DataFrame({"email": ["a", "b", "c"]}).write_parquet(path)
    with pytest.raises(InputFileError, match="3 rows, more than the limit of 2"):
        read_file(path, limits=Limits(max_rows=2))


def test_damaged_parquet_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(InputFileError, match="cannot be read as Parquet"):
        read_file(path)
