"""rejected.csv: the user's own columns back, formulas defused, and ``line``/``reason`` appended."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bulk_pipeline.csv_export import neutralize
from bulk_pipeline.reports.rejected import write_rejected_csv


def _rows(
    columns: dict[str, list[str | None]], lines: list[int], reasons: list[str]
) -> pl.DataFrame:
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    return frame.with_columns(
        pl.Series("_line", lines, dtype=pl.Int64), pl.Series("reason", reasons, dtype=pl.String)
    )


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("bob@example.com", "bob@example.com"),
        ("a=b", "a=b"),
        (" =1", "' =1"),
        (" \t@x", "' \t@x"),
        ("\n-1", "'\n-1"),
        ("\tplain", "'\tplain"),
        ("1-2", "1-2"),
        ("'=1", "'=1"),
        ("", ""),
        (None, None),
    ],
)
def test_neutralize_formula(value: str | None, expected: str | None) -> None:
    assert neutralize(value) == expected


def test_rejected_rows_round_trip_with_line_and_reason_last(tmp_path: Path) -> None:
    rows = _rows(
        {
            "E-mail": ["bob@@x", None],
            "Full Name": ["Zoë O'Brien, Jr.", 'Ann "the boss"\nLee'],
        },
        lines=[4, 9],
        reasons=["email 'bob@@x' is not a valid email address", "email is missing"],
    )
    path = tmp_path / "rejected.csv"

    assert write_rejected_csv(path, rows) == 2

    expected = rows.rename({"_line": "line"}).with_columns(pl.col("line").cast(pl.String))
    assert_frame_equal(_read(path), expected)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfE-mail,Full Name,line,reason\n")
    assert not list(tmp_path.glob(".*"))


def test_formula_like_cells_are_neutralized_in_every_column_and_header(tmp_path: Path) -> None:
    rows = _rows(
        {
            "Name": ["=cmd|' /C calc'!A0", "Bob"],
            "Phone": ["+33612345678", "@evil"],
            "=HYPERLINK(0)": ["\tx", "-"],
        },
        lines=[2, 3],
        reasons=["-leading reason", "email is missing"],
    )
    path = tmp_path / "rejected.csv"
    write_rejected_csv(path, rows)

    written = _read(path)
    assert written.columns == ["Name", "Phone", "'=HYPERLINK(0)", "line", "reason"]
    assert written.rows() == [
        ("'=cmd|' /C calc'!A0", "'+33612345678", "'\tx", "2", "'-leading reason"),
        ("Bob", "'@evil", "'-", "3", "email is missing"),
    ]


def test_the_vectorized_path_agrees_with_neutralize_formula(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = "=+-@\t\r 'a1\"," + "é"
    values: list[str | None] = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(500)
    ]
    values.append(None)
    rows = _rows({"cell": values}, lines=list(range(len(values))), reasons=["r"] * len(values))
    path = tmp_path / "rejected.csv"
    write_rejected_csv(path, rows)
    assert _read(path)["cell"].to_list() == [neutralize(value) for value in values]


def test_zero_rows_still_write_the_header(tmp_path: Path) -> None:
    rows = _rows({"Email": [], "Company": []}, lines=[], reasons=[])
    path = tmp_path / "rejected.csv"

    assert write_rejected_csv(path, rows) == 0

    assert path.read_text(encoding="utf-8-sig") == "Email,Company,line,reason\n"
    written = _read(path)
    assert written.columns == ["Email", "Company", "line", "reason"]
    assert written.is_empty()


def test_a_source_column_called_line_keeps_its_data_under_another_header(tmp_path: Path) -> None:
    rows = _rows({"line": ["Suite 4"]}, lines=[2], reasons=["email is missing"])
    path = tmp_path / "rejected.csv"
    write_rejected_csv(path, rows)
    assert _read(path).rows(named=True) == [
        {"line (source)": "Suite 4", "line": "2", "reason": "email is missing"}
    ]


def test_an_existing_report_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "rejected.csv"
    write_rejected_csv(path, _rows({"Email": ["a", "b"]}, lines=[2, 3], reasons=["x", "y"]))
    write_rejected_csv(path, _rows({"Email": ["c"]}, lines=[5], reasons=["z"]))
    assert _read(path)["line"].to_list() == ["5"]


def test_rows_without_line_or_reason_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reason"):
        write_rejected_csv(tmp_path / "rejected.csv", pl.DataFrame({"_line": [2]}))
