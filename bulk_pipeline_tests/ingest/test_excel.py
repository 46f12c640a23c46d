"""Workbooks: which sheet is read, cells as typed text, sheet row numbers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import xlsxwriter

from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest import InputFileError, Limits, read_file
from bulk_pipeline.ingest.excel import pick_sheet

Cells = list[list[object]]


def workbook(path: Path, sheets: dict[str, Cells], *, first_row: int = 0) -> Path:
    book = xlsxwriter.Workbook(path)
    date = book.add_format({"num_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, values in enumerate(rows, start=first_row):
            for c, value in enumerate(values):
                if isinstance(value, datetime):
                    sheet.write_datetime(r, c, value, date)
                elif value is not None:
                    sheet.write(r, c, value)
    book.close()
    return path


PEOPLE: Cells = [["Email", "Name"], ["a@x.com", "Zoë"], ["b@x.com", "山田"]]
COMPANIES: Cells = [["Name", "Website"], ["Acme", "https://acme.com"]]


@pytest.mark.parametrize(
    ("name", "entity"),
    [
        ("Contacts", Entity.CONTACTS),
        ("people", Entity.CONTACTS),
        ("PERSONS", Entity.CONTACTS),
        ("Organisations", Entity.COMPANIES),
        ("Accounts", Entity.COMPANIES),
        ("Companies", Entity.COMPANIES),
        ("Opportunities", Entity.DEALS),
        ("Deals", Entity.DEALS),
    ],
)
def test_sheet_name_hints_the_entity(tmp_path: Path, name: str, entity: Entity) -> None:
    path = workbook(tmp_path / "book.xlsx", {"Read me": [["notes"]], name: PEOPLE})
    table = read_file(path)
    assert table.sheet == name
    assert table.entity_hint == entity


def test_entity_picks_the_matching_sheet(tmp_path: Path) -> None:
    path = workbook(tmp_path / "book.xlsx", {"Organizations": COMPANIES, "People": PEOPLE})
    table = read_file(path, entity=Entity.CONTACTS)
    assert table.sheet == "People"
    assert table.frame["Name"].to_list() == ["Zoë", "山田"]
    assert read_file(path).sheet == "Organizations"


def test_without_a_named_sheet_the_first_sheet_is_read(tmp_path: Path) -> None:
    path = workbook(tmp_path / "book.xlsx", {"Sheet1": PEOPLE, "Sheet2": COMPANIES})
    table = read_file(path)
    assert table.sheet == "Sheet1"
    assert table.entity_hint is None
    assert read_file(path, entity=Entity.DEALS).sheet == "Sheet1"


def test_a_sheet_named_for_another_entity_is_never_read_as_the_requested_one() -> None:
    with pytest.raises(InputFileError, match=r"no sheet holds contacts.*Companies, Deals"):
        pick_sheet(["Companies", "Deals"], Entity.CONTACTS, "book.xlsx")


def test_cells_are_text_as_a_person_would_type_them(tmp_path: Path) -> None:
    rows: Cells = [
        ["Employees", "Revenue", "Founded", "Updated", "Phone", "Active", "Ratio"],
        [120, 1200.5, datetime(2024, 3, 5), datetime(2024, 3, 5, 10, 30), 4155552671, True, 0.25],
        [3.0, 1e20, None, None, "+49 30 123", False, None],
    ]
    frame = read_file(workbook(tmp_path / "book.xlsx", {"Data": rows})).frame
    assert frame.rows() == [
        ("120", "1200.5", "2024-03-05", "2024-03-05T10:30:00", "4155552671", "true", "0.25", 2),
        ("3", "100000000000000000000", None, None, "+49 30 123", "false", None, 3),
    ]


def test_line_is_the_sheet_row_even_when_the_table_starts_lower(tmp_path: Path) -> None:
    rows: Cells = [["Email", "Name"], ["a@x.com", "Ann"], [None, None], ["b@x.com", "Bob"]]
    table = read_file(workbook(tmp_path / "book.xlsx", {"People": rows}, first_row=3))
    assert table.frame.rows() == [("a@x.com", "Ann", 5), ("b@x.com", "Bob", 7)]


def test_blank_and_duplicate_headers(tmp_path: Path) -> None:
    rows: Cells = [["Email", None, "Email", None], ["a@x.com", "x", "b@x.com", None]]
    frame = read_file(workbook(tmp_path / "book.xlsx", {"People": rows})).frame
    assert frame.columns == ["Email", "column_2", "Email_2", "_line"]


def test_empty_sheet_is_an_error(tmp_path: Path) -> None:
    path = workbook(tmp_path / "book.xlsx", {"Contacts": []})
    with pytest.raises(InputFileError, match="sheet 'Contacts' is empty"):
        read_file(path)


def test_row_limit_applies_to_sheets(tmp_path: Path) -> None:
    emails: Cells = [[f"p{i}@x.com"] for i in range(5)]
    rows: Cells = [["Email"], *emails]
    path = workbook(tmp_path / "book.xlsx", {"People": rows})
    with pytest.raises(InputFileError, match="more than the limit of 4"):
        read_file(path, limits=Limits(max_rows=4))


def test_damaged_workbook_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(InputFileError, match="cannot be read as a workbook"):
        read_file(path)


def test_a_chosen_sheet_is_read_and_every_other_sheet_is_listed_with_why(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "book.xlsx",
        {"Contacts": PEOPLE, "Organizations": COMPANIES, "Notes": [["remark"], ["hello"]]},
    )

    default = read_file(path)
    chosen = read_file(path, sheet="organizations")

    assert default.sheet == "Contacts"
    assert [(s.name, s.reason) for s in default.skipped_sheets] == [
        ("Organizations", "holds companies (by its name); another sheet was chosen"),
        ("Notes", "holds notes (by its name); another sheet was chosen"),
    ]
    assert chosen.sheet == "Organizations"
    assert chosen.entity_hint == Entity.COMPANIES
    assert [s.name for s in chosen.skipped_sheets] == ["Contacts", "Notes"]
    with pytest.raises(InputFileError, match=r"no sheet is named 'Leads'.*'Contacts'"):
        read_file(path, sheet="Leads")


def test_a_sheet_choice_for_a_file_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Email\na@x.com\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"--sheet 'People' applies to workbooks"):
        read_file(path, sheet="People")


def test_messages_name_the_file_as_the_person_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "copy" / "book.xlsx"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(InputFileError, match=r"^Downloads/book\.xlsx: cannot be read"):
        read_file(path, source="Downloads/book.xlsx")
