"""Delimited text (CSV, TSV, semicolon and pipe files) read with a line number for every row.

Two paths give the same result:

* the fast path scans the bytes with vectorized polars operations to find where each record
  starts (a newline outside quotes) and how many fields it has, then lets polars' multi-threaded
  reader parse the values. Quote parity tells whether a newline or delimiter is inside a quoted
  field, which is exact as long as every quote is where RFC 4180 allows it, and that is checked;
* the careful path uses Python's csv module (the reference for the odd cases: stray quotes inside
  unquoted fields, a quoted field that never closes, old Mac line endings) and builds the frame in
  chunks. It runs only when the fast path's preconditions do not hold.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import cast

import polars as pl
import pyarrow as pa

from bulk_pipeline.ingest.encoding import SNIFF_BYTES, to_utf8
from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    InputFileError,
    Limits,
    RawTable,
    RowIssue,
    blank_header_positions,
    check_column_count,
    check_row_count,
    empty_frame,
    finish_frame,
    unique_headers,
)

DELIMITERS = (",", ";", "\t", "|")
SNIFF_RECORDS = 50
CHUNK_ROWS = 100_000
QUOTE = ord('"')
LF = ord("\n")
CR = ord("\r")
EXCEL_SEPARATOR_LINE = re.compile(rb"\Asep=(.)\r?(?:\n|\Z)")
"""Excel's "sep=;" first line, which names the delimiter and is not part of the table."""

csv.field_size_limit(2**31 - 1)  # notes fields can be long; the file size limit bounds them


@dataclass
class _Table:
    header: list[str]
    frame: pl.DataFrame
    """Columns ``c0..c{n-1}`` for the header's fields, plus ``_line``."""
    rejected: list[RowIssue]


def read_csv(path: Path, *, source: str, limits: Limits) -> RawTable:
    """Read a delimited text file; see the module docstring for how lines are tracked."""
    decoded = to_utf8(path.read_bytes(), source)
    data = decoded.data
    if not data or data.isspace():
        raise InputFileError(
            f"{source}: the file has no content. Export the data again with a header row."
        )
    separator_line = EXCEL_SEPARATOR_LINE.match(data)
    if separator_line:
        delimiter = separator_line.group(1).decode()
        skip = separator_line.end()
    else:
        delimiter = detect_delimiter(data[:SNIFF_BYTES], tab_first=path.suffix.lower() == ".tsv")
        skip = 0

    table = _read_fast(data, delimiter, skip, source, limits)
    if table is None:
        table = _read_careful(data.decode("utf-8"), delimiter, skip, source, limits)

    names = unique_headers(table.header)
    blanks = [names[i] for i in blank_header_positions(table.header)]
    internal = [f"c{i}" for i in range(len(names))]
    frame = table.frame.select(*internal, LINE_COLUMN).rename(
        dict(zip(internal, names, strict=True))
    )
    return RawTable(
        frame=finish_frame(frame, blanks),
        source=source,
        rejected=table.rejected,
        encoding=decoded.encoding,
        delimiter=delimiter,
    )


def detect_delimiter(sample: bytes, *, tab_first: bool = False) -> str:
    """The candidate that splits the header into the most columns and the rows alike.

    A delimiter that splits the header but not the rows the same way (a comma inside names in a
    semicolon file) loses to one that does, so consistency is compared first, then width.
    """
    text = sample.decode("utf-8", errors="ignore")
    if len(sample) == SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]
    best, best_score = ",", (-1.0, 0)
    for delimiter in ("\t", *DELIMITERS) if tab_first else DELIMITERS:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = [row for row in islice(reader, SNIFF_RECORDS) if any(f.strip() for f in row)]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:]
        consistency = sum(len(row) == width for row in body) / len(body) if body else 1.0
        score = (round(consistency, 1), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _bytes_series(data: bytes) -> pl.Series:
    """The file's bytes as a UInt8 series, without copying them."""
    array = pa.Array.from_buffers(pa.uint8(), len(data), [None, pa.py_buffer(data)])
    return cast(pl.Series, pl.from_arrow(array))


def _quotes_well_formed(raw: pl.Series, quotes: pl.Series, delimiter: int) -> bool:
    """Every opening quote starts a field and every closing quote ends one (or escapes a quote).

    When that holds, the parity of the quotes before a byte tells exactly whether the byte is
    inside a quoted field, the same answer polars and the csv module give.
    """
    if quotes.len() % 2:
        return False
    if quotes.len() == 0:
        return True
    last = raw.len() - 1
    separators = [delimiter, LF, CR, QUOTE]
    opening = quotes.gather_every(2).cast(pl.Int64)
    closing = quotes.gather_every(2, offset=1).cast(pl.Int64)
    before = raw.gather((opening - 1).clip(lower_bound=0))
    after = raw.gather((closing + 1).clip(upper_bound=last))
    opens_ok = ((opening == 0) | before.is_in(separators)).all()
    closes_ok = ((closing == last) | after.is_in(separators)).all()
    return bool(opens_ok and closes_ok)


def _read_fast(
    data: bytes, delimiter: str, skip: int, source: str, limits: Limits
) -> _Table | None:
    """Vectorized record scan + polars parse; None when the careful path must decide."""
    raw = _bytes_series(data)
    size = len(data)
    newlines = (raw == LF).arg_true()
    if newlines.len() == 0 and CR in data:
        return None
    quotes = (raw == QUOTE).arg_true()
    delimiter_byte = ord(delimiter)
    if not _quotes_well_formed(raw, quotes, delimiter_byte):
        return None

    records = pl.DataFrame({"nl": newlines.cast(pl.Int64)}).with_row_index("nl_index")
    if quotes.len():
        records = records.filter(quotes.search_sorted(newlines) % 2 == 0)
    records = (
        records.select(
            start=pl.concat([pl.lit(0, pl.Int64), pl.col("nl") + 1]),
            stop=pl.concat([pl.col("nl"), pl.lit(size, pl.Int64)]),
            line=pl.concat([pl.lit(1, pl.Int64), pl.col("nl_index").cast(pl.Int64) + 2]),
        )
        .filter(pl.col("start") < size)
        .filter(pl.col("start") >= skip)
    )
    cr_before_stop = raw.gather((records["stop"] - 1).clip(lower_bound=0)) == CR
    records = records.with_columns(
        length=pl.col("stop") - pl.col("start") - cr_before_stop.cast(pl.Int64)
    )

    header_row = _first_non_blank(data, records)
    if header_row is None:
        raise _no_header(source)
    header_start = records["start"][header_row]
    header_stop = records["stop"][header_row]
    header = _parse_record(data[header_start:header_stop].decode("utf-8"), delimiter)
    _check_header(header, int(records["line"][header_row]), source)
    check_column_count(len(header), limits, source, "the header has ")
    width = len(header)

    body = records.slice(header_row + 1)
    check_row_count(int((body["length"] > 0).sum()), limits, source)
    if body.height == 0:
        return _Table(header, _empty_columns(width), [])

    delimiters = (raw == delimiter_byte).arg_true()
    if quotes.len():
        delimiters = delimiters.filter(quotes.search_sorted(delimiters) % 2 == 0)
    fields = (
        delimiters.search_sorted(body["stop"].cast(delimiters.dtype))
        - delimiters.search_sorted(body["start"].cast(delimiters.dtype))
    ).cast(pl.Int64) + 1
    widest = int(fields.arg_max() or 0)
    line = int(body["line"][widest])
    check_column_count(int(fields[widest]), limits, source, f"line {line} has ")

    columns = [f"c{i}" for i in range(width)]
    # A first line of `width` empty fields fixes the column count polars sees, whatever the
    # first data line holds (a blank line, a short row); it is dropped after parsing.
    width_line = (delimiter * (width - 1) + "\n").encode()
    try:
        frame = pl.read_csv(
            b"".join((width_line, memoryview(data)[body["start"][0] :])),
            has_header=False,
            separator=delimiter,
            quote_char='"',
            schema=dict.fromkeys(columns, pl.String()),
            truncate_ragged_lines=True,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        return None
    frame = frame.slice(1)
    if frame.height != body.height:
        return None
    frame = frame.with_columns(
        body["line"].alias(LINE_COLUMN),
        fields.alias("_fields"),
        (body["length"] == 0).alias("_empty"),
        body["start"].alias("_start"),
        body["stop"].alias("_stop"),
    ).filter(~pl.col("_empty"))

    rejected: list[RowIssue] = []
    long_rows = frame.filter(pl.col("_fields") > width)
    drop_lines: list[int] = []
    for line, start, stop in long_rows.select(LINE_COLUMN, "_start", "_stop").iter_rows():
        values = _parse_record(data[start:stop].decode("utf-8"), delimiter)
        issue = _ragged_issue(values, header, line)
        if issue is not None:
            rejected.append(issue)
            drop_lines.append(line)
    if drop_lines:
        frame = frame.filter(~pl.col(LINE_COLUMN).is_in(drop_lines))
    return _Table(header, frame.select(*columns, LINE_COLUMN), rejected)


def _first_non_blank(data: bytes, records: pl.DataFrame) -> int | None:
    """Index of the first record with visible text (the header); leading blank lines are skipped."""
    candidates = records.with_row_index("i").filter(pl.col("length") > 0)
    for index, start, stop in candidates.select("i", "start", "stop").iter_rows():
        if data[start:stop].strip():
            return int(index)
    return None


def _read_careful(text: str, delimiter: str, skip: int, source: str, limits: Limits) -> _Table:
    """The csv module's reading, row by row, for the files the fast path cannot vouch for."""
    text = text[skip:]
    skipped_lines = 1 if skip else 0
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    header: list[str] | None = None
    width = 0
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    chunks: list[pl.DataFrame] = []
    rejected: list[RowIssue] = []
    count = 0
    start = 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not row:
            continue
        if header is None:
            if any(field.strip() for field in row):
                header = row
                width = len(header)
                _check_header(header, line + skipped_lines, source)
                check_column_count(width, limits, source, "the header has ")
            continue
        count += 1
        if len(row) > limits.max_columns:
            where = f"line {line + skipped_lines} has "
            check_column_count(len(row), limits, source, where)
        if len(row) > width:
            issue = _ragged_issue(row, header, line + skipped_lines)
            if issue is not None:
                rejected.append(issue)
                continue
        rows.append(row)
        line_numbers.append(line + skipped_lines)
        if len(rows) == CHUNK_ROWS:
            check_row_count(count, limits, source)
            chunks.append(_chunk(rows, line_numbers, width))
            rows, line_numbers = [], []
    if header is None:
        raise _no_header(source)
    check_row_count(count, limits, source)
    last_record = "".join(islice(io.StringIO(text, newline=""), line - 1, None))
    _check_closed(last_record, line + skipped_lines, delimiter, source)
    chunks.append(_chunk(rows, line_numbers, width))
    return _Table(header, pl.concat(chunks), rejected)


def _chunk(rows: list[list[str]], lines: list[int], width: int) -> pl.DataFrame:
    """Rows (short ones padded, long ones truncated) as a frame of columns ``c0..``."""
    padding: list[str | None] = [None] * width
    fitted = [row if len(row) == width else (row + padding)[:width] for row in rows]
    columns = list(zip(*fitted, strict=True)) if fitted else [() for _ in range(width)]
    data: dict[str, pl.Series] = {
        f"c{i}": pl.Series(f"c{i}", values, dtype=pl.String) for i, values in enumerate(columns)
    }
    data[LINE_COLUMN] = pl.Series(LINE_COLUMN, lines, dtype=pl.Int64)
    return pl.DataFrame(data)


def _empty_columns(width: int) -> pl.DataFrame:
    return empty_frame([f"c{i}" for i in range(width)])


def _check_closed(record: str, line: int, delimiter: str, source: str) -> None:
    """A quote that never closes swallows the rest of the file into one field: stop instead."""
    if '"' not in record:
        return
    try:
        list(csv.reader(io.StringIO(record, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return
        raise InputFileError(
            f'{source}: line {line}: a quoted field opens here (") and is never closed, so the '
            "rest of the file cannot be split into rows. Close the quote, or remove it, and "
            "import again."
        ) from exc


def _parse_record(text: str, delimiter: str) -> list[str]:
    return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])


def _ragged_issue(values: list[str], header: list[str], line: int) -> RowIssue | None:
    """A row with more fields than the header, unless the extra fields are all empty."""
    extra = values[len(header) :]
    if not any(value.strip() for value in extra):
        return None
    names = unique_headers([*header, *([""] * len(extra))])
    return RowIssue(
        line=line,
        reason=f"row has {len(values)} fields, the header has {len(header)}",
        values={name: value or None for name, value in zip(names, values, strict=True)},
    )


def _check_header(header: list[str], line: int, source: str) -> None:
    """The first non-blank line must name the columns; data there means the header is missing."""
    cells = [cell.strip() for cell in header if cell.strip()]
    if cells and all(_looks_like_data(cell) for cell in cells):
        raise InputFileError(
            f"{source}: line {line} holds values ({', '.join(cells[:3])}), not column names. "
            "Add a header row that names each column (e.g. Email, First Name) and import again."
        )


def _looks_like_data(cell: str) -> bool:
    return bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+|[-+]?[\d.,\s]+", cell))


def _no_header(source: str) -> InputFileError:
    return InputFileError(
        f"{source}: the file has only blank lines, so there is no header row. "
        "Export the data again with a header row that names each column."
    )
