"""Delimited text: delimiters, quoting, line numbers, ragged rows, headers, and both read paths."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bulk_pipeline.ingest import InputFileError, Limits, read_file
from bulk_pipeline.ingest import csv as csv_reader
from bulk_pipeline.ingest.table import LINE_COLUMN


def write(tmp_path: Path, data: bytes, name: str = "input.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows(path: Path) -> list[tuple[object, ...]]:
    return read_file(path).frame.rows()


@pytest.mark.parametrize(
    ("delimiter", "suffix"),
    [(",", ".csv"), (";", ".csv"), ("\t", ".tsv"), ("\t", ".txt"), ("|", ".csv")],
)
def test_detects_the_delimiter_from_the_header_and_first_lines(
    tmp_path: Path, delimiter: str, suffix: str
) -> None:
    text = delimiter.join(["Email", "Name", "Notes"]) + "\n"
    text += delimiter.join(["a@x.com", "Ann", '"likes, commas; and | more"']) + "\n"
    table = read_file(write(tmp_path, text.encode(), "file" + suffix))

    assert table.delimiter == delimiter
    assert table.frame.columns == ["Email", "Name", "Notes", LINE_COLUMN]
    assert table.frame.row(0) == ("a@x.com", "Ann", "likes, commas; and | more", 2)


def test_semicolon_file_with_commas_in_values_is_not_read_as_comma_separated(
    tmp_path: Path,
) -> None:
    data = b"Name;Email\nDoe, Jane;jane@x.com\nRoe, Rick;rick@x.com\n"
    table = read_file(write(tmp_path, data))
    assert table.delimiter == ";"
    assert table.frame["Name"].to_list() == ["Doe, Jane", "Roe, Rick"]


def test_quoted_newlines_and_delimiters_shift_the_line_numbers_of_later_rows(
    tmp_path: Path,
) -> None:
    data = (
        b"email,notes,city\n"
        b'a@x.com,"two\nlines",Paris\n'
        b'b@x.com,"a, b and ""quoted""",Rome\n'
        b'c@x.com,"three\r\nphysical\nlines",Oslo\n'
        b"d@x.com,plain,Bern\n"
    )
    frame = read_file(write(tmp_path, data)).frame
    assert frame[LINE_COLUMN].to_list() == [2, 4, 5, 8]
    assert frame["notes"].to_list() == [
        "two\nlines",
        'a, b and "quoted"',
        "three\r\nphysical\nlines",
        "plain",
    ]


def test_row_with_more_fields_than_the_header_is_rejected_with_its_line(tmp_path: Path) -> None:
    data = b"a,b,c,d,e\n1,2,3,4,5\n1,2,3,4,5,6,7\n8,9,10,11,12\n"
    table = read_file(write(tmp_path, data))

    assert table.frame[LINE_COLUMN].to_list() == [2, 4]
    [issue] = table.rejected
    assert issue.line == 3
    assert issue.reason == "row has 7 fields, the header has 5"
    assert issue.values == {
        "a": "1",
        "b": "2",
        "c": "3",
        "d": "4",
        "e": "5",
        "column_6": "6",
        "column_7": "7",
    }


def test_extra_fields_that_are_empty_do_not_reject_the_row(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, b"a,b\n1,2,,\n"))
    assert table.rejected == []
    assert table.frame.rows() == [("1", "2", 2)]


def test_row_with_fewer_fields_is_padded_with_nulls(tmp_path: Path) -> None:
    assert rows(write(tmp_path, b"a,b,c\n1\n2,3\n")) == [("1", None, None, 2), ("2", "3", None, 3)]


def test_blank_lines_are_skipped_and_not_counted_as_rows(tmp_path: Path) -> None:
    data = b"\n\na,b\n\n1,2\n   \n,\n\r\n3,4\n\n"
    assert rows(write(tmp_path, data)) == [("1", "2", 5), ("3", "4", 9)]


def test_empty_cells_are_null_whether_quoted_or_not(tmp_path: Path) -> None:
    assert rows(write(tmp_path, b'a,b,c\n"",,x\n')) == [(None, None, "x", 2)]


def test_blank_and_duplicate_headers_are_made_unique_and_non_empty(tmp_path: Path) -> None:
    data = b"Email,,Email,Name,Email_2,_line\n1,2,3,4,5,6\n"
    frame = read_file(write(tmp_path, data)).frame
    assert frame.columns == ["Email", "column_2", "Email_3", "Name", "Email_2", "_line_2", "_line"]
    assert frame.row(0) == ("1", "2", "3", "4", "5", "6", 2)


def test_headerless_empty_trailing_column_is_dropped(tmp_path: Path) -> None:
    frame = read_file(write(tmp_path, b"a,b,\n1,2,\n3,4,\n")).frame
    assert frame.columns == ["a", "b", LINE_COLUMN]


def test_crlf_line_endings(tmp_path: Path) -> None:
    assert rows(write(tmp_path, b"a,b\r\n1,2\r\n3,4\r\n")) == [("1", "2", 2), ("3", "4", 3)]


def test_old_mac_line_endings(tmp_path: Path) -> None:
    assert rows(write(tmp_path, b"a,b\r1,2\r\r3,4")) == [("1", "2", 2), ("3", "4", 4)]


def test_excel_separator_line_names_the_delimiter(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, b"sep=;\na;b\n1,5;2\n"))
    assert table.delimiter == ";"
    assert table.frame.rows() == [("1,5", "2", 3)]


def test_stray_quote_inside_an_unquoted_field_is_kept_literally(tmp_path: Path) -> None:
    data = b'name,size\nTV 55" screen,big\nRadio,small\n'
    assert rows(write(tmp_path, data)) == [('TV 55" screen', "big", 2), ("Radio", "small", 3)]


def test_quote_that_never_closes_is_a_file_error_naming_the_line(tmp_path: Path) -> None:
    data = b'email,notes\na@x.com,ok\nb@x.com,"never closed\nc@x.com,lost\n'
    with pytest.raises(InputFileError, match=r"line 3: a quoted field opens here"):
        read_file(write(tmp_path, data))


def test_file_with_only_blank_lines_after_the_separator_line_has_no_header(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputFileError, match="no header row"):
        read_file(write(tmp_path, b"sep=;\n\n  \n\r\n"))


def test_file_with_only_whitespace_is_empty(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no content"):
        read_file(write(tmp_path, b"   \n\n"))


def test_first_line_of_data_instead_of_column_names_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"line 1 holds values .*not column names"):
        read_file(write(tmp_path, b"ann@x.com,42\nbob@x.com,7\n"))


def test_header_only_file_gives_an_empty_table_with_the_columns(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, b"Email,Name\n"))
    assert table.frame.height == 0
    assert table.frame.columns == ["Email", "Name", LINE_COLUMN]
    assert table.frame.schema[LINE_COLUMN] == pl.Int64


def test_too_many_rows_is_refused_before_parsing(tmp_path: Path) -> None:
    data = b"a\n" + b"x\n" * 11
    with pytest.raises(InputFileError, match=r"11 rows, more than the limit of 10.*max_rows"):
        read_file(write(tmp_path, data), limits=Limits(max_rows=10))
    assert read_file(write(tmp_path, data), limits=Limits(max_rows=11)).frame.height == 11


TRICKY_FILES = [
    b"a,b,c\n1,2,3\n",
    b'a,b,c\r\n\r\n1,"x\r\ny",3\r\n4,5\r\n6,7,8,9\r\n,,\r\n10,11,12,,\r\n',
    b'h1;h2\n"q;1";"say ""hi"""\n\n"multi\nline";x\n;\nlast;row',
    b"\n\nname\n\nAnn\n \nBob\n",
    b'a,b\n"",\n"x",""\n',
]


@pytest.mark.parametrize("data", TRICKY_FILES)
def test_fast_and_careful_paths_read_the_same_table(data: bytes) -> None:
    delimiter = csv_reader.detect_delimiter(data)
    fast = csv_reader._read_fast(data, delimiter, 0, "f.csv", Limits())
    careful = csv_reader._read_careful(data.decode(), delimiter, 0, "f.csv", Limits())
    assert fast is not None
    assert fast.header == careful.header
    assert fast.rejected == careful.rejected
    assert_frame_equal(
        fast.frame.filter(pl.any_horizontal(pl.exclude(LINE_COLUMN).str.contains(r"\S"))),
        careful.frame.filter(pl.any_horizontal(pl.exclude(LINE_COLUMN).str.contains(r"\S"))),
    )


def test_fast_path_defers_to_the_careful_one_for_stray_quotes() -> None:
    data = b'a,b\nx"y,1\n'
    assert csv_reader._read_fast(data, ",", 0, "f.csv", Limits()) is None


# -- reading a piece at a time ------------------------------------------------------------


def read_in_blocks(path: Path, block_bytes: int, limits: Limits | None = None) -> object:
    """The table read in blocks of ``block_bytes`` (or the error's message)."""
    try:
        table = csv_reader.stream_csv(
            path, source="f.csv", limits=limits or Limits(), block_bytes=block_bytes
        ).collect()
    except InputFileError as exc:
        return str(exc)
    return table.frame, table.rejected, table.encoding, table.delimiter


def assert_same_reading(path: Path, block_bytes: int, limits: Limits | None = None) -> None:
    whole = read_in_blocks(path, path.stat().st_size + 1, limits)
    pieces = read_in_blocks(path, block_bytes, limits)
    if isinstance(whole, str) or isinstance(pieces, str):
        assert pieces == whole
        return
    assert isinstance(whole, tuple) and isinstance(pieces, tuple)
    assert_frame_equal(pieces[0], whole[0])
    assert pieces[1:] == whole[1:]


STREAMED_FILES = [
    *TRICKY_FILES,
    b'a,b\n1,"x\ny"\n2,3\n4,"p ""q"" r"\n' * 5,
    b"a,b\n1,2\n" * 20 + b'3,x"y\n' + b"5,6\n" * 20,
    b"sep=;\n\n\n a;b\n1;2\n" + b"\n" * 30 + b"3;4\n",
    b"a,b\r1,2\r3,4\r",
    b"a,b\n1,2\n" * 10 + b'3,"never closed\n4,5\n',
    b"a,b\n" + b"1,2,3\n" * 5 + b"x,y\n",
    "Email;Name\nz@x.com;Zoë Müller\n".encode("cp1252") * 9,
]


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 7, 16, 64])
@pytest.mark.parametrize("data", STREAMED_FILES)
def test_a_file_read_in_blocks_reads_as_when_read_whole(
    tmp_path: Path, data: bytes, block_bytes: int
) -> None:
    assert_same_reading(write(tmp_path, data), block_bytes)


def test_a_quote_never_closed_far_into_the_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n" + b"1,2\n" * 50_000 + b'3,"open\n' + b"4,5\n" * 10)
    with pytest.raises(InputFileError, match=r"line 50002: a quoted field opens here"):
        csv_reader.stream_csv(path, source="f.csv", limits=Limits(), block_bytes=64).collect()


def test_the_row_limit_stops_a_file_read_in_blocks(tmp_path: Path) -> None:
    path = write(tmp_path, b"a\n" + b"x\n" * 100_000)
    stream = csv_reader.stream_csv(
        path, source="f.csv", limits=Limits(max_rows=50_000), block_bytes=4_096
    )
    with pytest.raises(
        InputFileError, match=r"at least 5\d,\d+ rows, more than the limit of 50,000"
    ):
        stream.collect()


def test_chunks_hold_about_the_rows_asked_for(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\n" + b"someone@example.com,Someone Else\n" * 5_000)
    stream = csv_reader.stream_csv(path, source="f.csv", limits=Limits(), chunk_rows=1_000)
    heights = [chunk.frame.height for chunk in stream.chunks]
    assert sum(heights) == 5_000
    assert len(heights) >= 3
    assert max(heights) <= 2_500
