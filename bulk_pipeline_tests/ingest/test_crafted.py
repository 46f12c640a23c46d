"""Crafted files from the outside review: each is refused with a clear error, or imports.

Refusals must come before the reader allocates anything (the workbook guard, the Parquet and JSON
checks), so they are quick; the message names the file as given and the limit involved.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bulk_pipeline.ingest import InputFileError, Limits, RawTable, read_file
from bulk_pipeline.ingest.json import RAW_VALUE
from bulk_pipeline_tests.ingest.crafted import (
    CRAFTED,
    HEADER_ROW,
    Crafted,
    biff_shared_cell,
    biff_shared_strings,
    legacy_workbook,
    shared_strings,
    sheet_xml,
    workbook,
)

REFUSED = [case for case in CRAFTED if case.outcome == "refused"]


def _read(case: Crafted, tmp_path: Path) -> RawTable:
    return read_file(case.build(tmp_path / case.file_name))


@pytest.mark.parametrize("case", REFUSED, ids=[case.name for case in REFUSED])
def test_crafted_files_are_refused_quickly_with_the_file_named(
    case: Crafted, tmp_path: Path
) -> None:
    path = case.build(tmp_path / case.file_name)
    started = time.monotonic()
    with pytest.raises(InputFileError, match=case.message) as refused:
        read_file(path)
    assert time.monotonic() - started < 1.0
    assert str(refused.value).startswith(f"{path}: ")


def _case(name: str) -> Crafted:
    return next(case for case in CRAFTED if case.name == name)


def test_a_5000_digit_number_keeps_every_digit(tmp_path: Path) -> None:
    for name in ("huge number", "huge number ndjson"):
        table = _read(_case(name), tmp_path)
        assert table.frame["employees"].to_list() == ["9" * 5_000]


def test_a_lone_surrogate_rejects_its_row_and_keeps_the_others(tmp_path: Path) -> None:
    table = _read(_case("lone surrogate"), tmp_path)
    assert table.frame["email"].to_list() == ["b@x.com"]
    [issue] = table.rejected
    assert issue.line == 1
    assert "lone UTF-16 surrogate" in issue.reason
    assert "\\ud800" in (issue.values[RAW_VALUE] or "")


def test_a_lone_surrogate_in_a_key_becomes_a_readable_header(tmp_path: Path) -> None:
    table = _read(_case("lone surrogate key"), tmp_path)
    assert table.frame.columns == ["email", "\\udc00", "_line"]


def test_odd_parquet_types_become_text(tmp_path: Path) -> None:
    assert _read(_case("decimal256"), tmp_path).frame["amount"].to_list() == ["1.50"]
    assert _read(_case("duration"), tmp_path).frame["took"].to_list() == ["PT5S"]


def test_repeated_parquet_column_names_are_told_apart(tmp_path: Path) -> None:
    table = _read(_case("duplicate parquet columns"), tmp_path)
    assert table.frame.columns == ["email", "email_2", "email_3", "_line"]
    assert table.frame.row(0) == ("a@x.com", "x", "1", 1)


def test_40000_repeated_headers_are_numbered_in_linear_time(tmp_path: Path) -> None:
    table = _read(_case("40,000 duplicate headers"), tmp_path)
    assert table.frame.width == 40_001
    assert table.frame.columns[:3] == ["Email", "Email_2", "Email_3"]
    assert table.frame.columns[-2] == "Email_40000"


def test_long_shared_strings_used_a_few_times_still_import(tmp_path: Path) -> None:
    """The exact count of shared text only refuses what really expands past the limit."""
    notes = "n" * 30_000
    rows = "".join(
        f'<row r="{r}"><c r="A{r}" t="s"><v>2</v></c><c r="B{r}" t="s"><v>3</v></c></row>'
        for r in range(2, 12)
    )
    path = workbook(
        tmp_path / "notes.xlsx",
        sheet_xml(HEADER_ROW + rows),
        shared_strings(["Email", "Name", "a@x.com", notes]),
    )
    table = read_file(path, limits=Limits(max_text_bytes=400_000))
    assert table.frame["Name"].to_list() == [notes] * 10
    with pytest.raises(InputFileError, match=r"refer to 293\.4 KB of shared text"):
        read_file(path, limits=Limits(max_text_bytes=100_000))


def test_cells_without_references_are_placed_like_calamine_places_them(tmp_path: Path) -> None:
    rows = "".join(f"<row><c><v>{r}</v></c><c><v>{r * 10}</v></c></row>" for r in range(2, 6))
    path = workbook(tmp_path / "noref.xlsx", sheet_xml(HEADER_ROW + rows))
    table = read_file(path)
    assert table.frame.rows() == [(str(r), str(r * 10), r) for r in range(2, 6)]
    with pytest.raises(InputFileError, match="a range of 10 cells"):
        read_file(path, limits=Limits(max_cells=9))


def test_a_workbook_in_another_folder_is_guarded_the_same(tmp_path: Path) -> None:
    far = '<row r="900000"><c r="ZZ900000"><v>1</v></c></row>'
    path = workbook(tmp_path / "moved.xlsx", sheet_xml(HEADER_ROW + far), folder="Book")
    with pytest.raises(InputFileError, match="A1 to ZZ900000"):
        read_file(path)


def test_a_prefixed_sheet_is_guarded(tmp_path: Path) -> None:
    cells = '<x:row r="2"><x:c r="ZZ1000000"><x:v>1</x:v></x:c></x:row>'
    path = workbook(tmp_path / "prefixed.xlsx", sheet_xml(cells, prefix="x:"))
    with pytest.raises(InputFileError, match="ZZ1000000"):
        read_file(path)


def test_xls_shared_strings_are_counted_across_continue_records(tmp_path: Path) -> None:
    notes = "n" * 5_000
    strings = biff_shared_strings(["Email", "Name", "a@x.com", notes], split_at=2_000)
    cells = biff_shared_cell(0, 0, 0) + biff_shared_cell(0, 1, 1)
    cells += b"".join(
        biff_shared_cell(row, 0, 2) + biff_shared_cell(row, 1, 3) for row in range(1, 101)
    )
    path = legacy_workbook(
        tmp_path / "notes.xls", cells, dimensions=(0, 101, 0, 2), strings=strings
    )
    table = read_file(path, limits=Limits(max_text_bytes=2_000_000))
    assert table.frame["Name"].to_list() == [notes] * 100
    with pytest.raises(InputFileError, match=r"refer to 1\.4 MB of shared text"):
        read_file(path, limits=Limits(max_text_bytes=1_000_000))


def test_limits_are_adjustable(tmp_path: Path) -> None:
    path = _case("far cell").build(tmp_path / "far.xlsx")
    with pytest.raises(InputFileError, match=r"17,179,869,184 cells"):
        read_file(path, limits=Limits(max_cells=10**10))


def test_files_wider_than_the_column_limit_are_refused_naming_where(tmp_path: Path) -> None:
    limits = Limits(max_columns=5)
    wide_header = tmp_path / "header.csv"
    wide_header.write_text("a,b,c,d,e,f\n1,2,3,4,5,6\n", encoding="utf-8")
    wide_row = tmp_path / "row.csv"
    wide_row.write_text('a,b\n1,2\n"x\n",' + ",".join("9" * 6) + "\n", encoding="utf-8")
    objects = tmp_path / "wide.json"
    objects.write_text('[{"a": 1, "b": 2, "c": 3}, {"d": 4, "e": 5, "f": 6}]', encoding="utf-8")
    for path, where in [
        (wide_header, "the header has 6 columns"),
        (wide_row, "line 3 has 7 columns"),
        (objects, "the objects have 6 columns"),
    ]:
        with pytest.raises(InputFileError, match=rf"{where}, more than the limit of 5"):
            read_file(path, limits=limits)
    assert read_file(wide_header, limits=Limits(max_columns=6)).frame.width == 7
