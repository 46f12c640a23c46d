"""read_file as a whole: format detection, file-level limits and errors, the bundled samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest import InputFileError, Limits, detect_format, read_file

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_file(tmp_path / "nope.csv")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty.csv: the file is empty"):
        read_file(path)


def test_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:
        handle.truncate(3 * 1024 * 1024)
    with pytest.raises(InputFileError, match=r"3\.0 MB, over the limit of 1\.0 MB.*max_bytes"):
        read_file(path, limits=Limits(max_bytes=1024 * 1024))


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        ("a.csv", b"a,b\n", "csv"),
        ("a.TSV", b"a\tb\n", "csv"),
        ("a.jsonl", b'{"a": 1}\n', "ndjson"),
        ("a.json", b"[]", "json"),
        ("no_extension", b'  [{"a": 1}]', "json"),
        ("no_extension", b"a;b\n", "csv"),
        ("renamed.csv", b"PK\x03\x04rest", "excel"),
        ("data.bin", b"PAR1....", "parquet"),
    ],
)
def test_format_from_content_and_extension(
    tmp_path: Path, name: str, head: bytes, kind: str
) -> None:
    path = tmp_path / name
    path.write_bytes(head)
    assert detect_format(path) == kind


def test_workbook_saved_with_a_csv_extension_is_read_as_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "companies.csv"
    shutil.copy(SAMPLES / "companies.xlsx", path)
    assert read_file(path).sheet == "Organizations"


def test_sample_contacts_messy_csv() -> None:
    table = read_file(SAMPLES / "contacts_messy.csv")
    assert (table.encoding, table.delimiter) == ("utf-8-sig", ";")
    assert table.frame.height == 37
    assert [(issue.line, issue.reason) for issue in table.rejected] == [
        (23, "row has 11 fields, the header has 9")
    ]
    assert "Favourite Colour" in table.frame.columns
    lines = dict(zip(table.frame["E-mail"], table.frame["_line"], strict=True))
    assert lines["mailto:Grace.Hopper@Example.org"] == 12  # after the quoted newline on line 10
    assert lines["pierre.dubois@example.fr"] == 35  # after the blank line 34
    assert set(table.frame["First Name"]) >= {"Zoë", "Łukasz", "太郎", "Ольга"}


def test_sample_companies_xlsx() -> None:
    table = read_file(SAMPLES / "companies.xlsx")
    assert (table.sheet, table.entity_hint) == ("Organizations", Entity.COMPANIES)
    assert table.frame.height == 20
    assert table.frame["Website"][0] == "https://www.Acme.com/about"


def test_sample_contacts_json() -> None:
    table = read_file(SAMPLES / "contacts.json")
    assert (table.sheet, table.entity_hint) == ("persons", Entity.CONTACTS)
    assert table.frame.height == 10
