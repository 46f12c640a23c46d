"""Encodings spreadsheet programs save in: names in any script must come through intact."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from bulk_pipeline.ingest import InputFileError, read_file
from bulk_pipeline.ingest.encoding import to_utf8

NAMES = ["Zoë", "Łukasz", "山田", "Ольга", "José", "Søren"]
TEXT = "Email\tFirst Name\n" + "".join(f"p{i}@example.com\t{n}\n" for i, n in enumerate(NAMES))


def write(tmp_path: Path, data: bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), "utf-32-le"),
    ],
)
def test_unicode_files_keep_non_latin_names(tmp_path: Path, data: bytes, encoding: str) -> None:
    table = read_file(write(tmp_path, data))
    assert table.encoding == encoding
    assert table.frame.columns[:2] == ["Email", "First Name"]
    assert table.frame["First Name"].to_list() == NAMES
    assert table.frame["_line"].to_list() == list(range(2, 2 + len(NAMES)))


def test_windows_1252_file_is_decoded_as_cp1252(tmp_path: Path) -> None:
    text = "Email;Name;Price\nz@x.com;Zoë Müller;€12\nf@x.com;François “Frank”;£3\n"
    data = text.encode("cp1252")
    table = read_file(write(tmp_path, data))
    assert table.encoding == "cp1252"
    assert table.frame["Name"].to_list() == ["Zoë Müller", "François “Frank”"]
    assert table.frame["Price"].to_list() == ["€12", "£3"]


def test_bytes_undefined_in_cp1252_fall_back_to_latin_1(tmp_path: Path) -> None:
    data = b"Email,Name\nz@x.com,Zo\xeb\x81\n"
    table = read_file(write(tmp_path, data))
    assert table.encoding == "latin-1"
    assert table.frame["Name"].to_list() == ["Zoë\x81"]


def test_damaged_utf8_with_a_byte_order_mark_names_the_line(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + b"Email,Name\na@x.com,Ann\nb@x.com,Zo\xeb\n"
    with pytest.raises(InputFileError, match=r"line 3: byte 0xeb is not valid UTF-8.*UTF-8"):
        read_file(write(tmp_path, data))


def test_truncated_utf16_is_an_error(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "Email\n".encode("utf-16-le") + b"a"
    with pytest.raises(InputFileError, match="not valid UTF-16"):
        read_file(write(tmp_path, data))


def test_binary_file_is_refused(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8
    with pytest.raises(InputFileError, match="does not look like a text file"):
        read_file(write(tmp_path, data, "image.csv"))


def test_to_utf8_strips_the_byte_order_mark() -> None:
    decoded = to_utf8(codecs.BOM_UTF8 + "Zoë".encode(), "x.csv")
    assert decoded.data == "Zoë".encode()
