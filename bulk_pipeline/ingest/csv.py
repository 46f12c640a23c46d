"""Delimited text (CSV, TSV, semicolon and pipe files) read with a line number for every row.

Two paths give the same result:

* the fast path scans the bytes with vectorized polars operations to find where each record
  starts (a newline outside quotes) and how many fields it has, then lets polars' multi-threaded
  reader parse the values. Quote parity tells whether a newline or delimiter is inside a quoted
  field, which is exact as long as every quote is where RFC 4180 allows it, and that is checked;
* the careful path uses Python's csv module (the reference for the odd cases: stray quotes inside
  unquoted fields, a quoted field that never closes, old Mac line endings) and builds the frame in
  chunks. It runs only when the fast path's preconditions do not hold.

The file is read a block at a time (``stream_csv``): each block is cut after its last newline
outside quotes, so that every piece holds whole records, and the fast path reads piece after
piece with the count of lines before it carried over. A piece the fast path cannot vouch for is
handed, with the rest of the file, to the careful path, which starts at that record boundary.
A step reading the file holds one piece and its frame, whatever the file's size.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import cast

import polars as pl
import pyarrow as pa

from bulk_pipeline import config
from bulk_pipeline.ingest.encoding import SNIFF_BYTES, utf8_blocks
from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    Chunk,
    InputFileError,
    Limits,
    RawTable,
    RowIssue,
    TableStream,
    blank_header_positions,
    check_column_count,
    check_row_count,
    empty_frame,
    finish_chunk,
    unique_headers,
)

DELIMITERS = (",", ";", "\t", "|")
SNIFF_RECORDS = 50
CHUNK_ROWS = 100_000
"""Rows the careful path gathers into one frame."""
MIN_BLOCK_BYTES = 64 * 1024
MAX_BLOCK_BYTES = 256 * 1024**2
LONGEST_PIECE_BLOCKS = 8
"""Text without a record boundary (one quoted field this long, or a quote that never closes)
goes to the careful path once it is this many blocks long, rather than growing further."""
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

    @property
    def records(self) -> int:
        """Records with any field (those the row limit counts)."""
        return self.frame.height + len(self.rejected)


@dataclass(frozen=True)
class _Piece:
    data: bytes
    last: bool
    """The end of the file."""
    whole: bool = True
    """Whole records; False for text cut where no record boundary was found."""


def read_csv(path: Path, *, source: str, limits: Limits) -> RawTable:
    """Read a delimited text file whole; see the module docstring for how lines are tracked."""
    return stream_csv(path, source=source, limits=limits).collect()


def stream_csv(
    path: Path,
    *,
    source: str,
    limits: Limits,
    chunk_rows: int | None = None,
    block_bytes: int | None = None,
) -> TableStream:
    """Read a delimited text file a piece at a time, about ``chunk_rows`` rows a piece (or
    blocks of ``block_bytes``); the header, the encoding and the delimiter are read, and the
    file's header checked, before this returns."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    size = block_bytes or _block_bytes(head, chunk_rows or config.chunk_rows())
    decoded = utf8_blocks(path, source, size)
    scan = _Scan(decoded.blocks, source, limits, size)
    header, tables = scan.open(tab_first=path.suffix.lower() == ".tsv")
    names = unique_headers(header)
    internal = [f"c{i}" for i in range(len(names))]
    renamed = dict(zip(internal, names, strict=True))

    def chunks() -> Iterator[Chunk]:
        for table in tables:
            frame = table.frame.select(*internal, LINE_COLUMN).rename(renamed)
            yield Chunk(finish_chunk(frame), table.rejected)

    return TableStream(
        headers=names,
        chunks=chunks(),
        source=source,
        blank_headers=[names[i] for i in blank_header_positions(header)],
        encoding=decoded.encoding,
        delimiter=scan.delimiter,
    )


def _block_bytes(head: bytes, chunk_rows: int) -> int:
    """Bytes holding about ``chunk_rows`` records of the file, judged from its head."""
    per_record = len(head) / max(head.count(b"\n"), 1)
    wanted = int(per_record * chunk_rows)
    return min(max(wanted, min(MIN_BLOCK_BYTES, len(head) or 1)), MAX_BLOCK_BYTES)


class _Scan:
    """One pass over a file's text: pieces of whole records, read by the fast path with the
    lines and records before each carried over, until a piece sends the rest to the careful
    path."""

    def __init__(self, blocks: Iterator[bytes], source: str, limits: Limits, size: int) -> None:
        self.blocks = blocks
        self.source = source
        self.limits = limits
        self.longest = size * LONGEST_PIECE_BLOCKS
        self.delimiter = ","
        self.lines_before = 0
        """Physical lines before the piece being read."""
        self.records = 0
        """Records read so far, for the row limit."""

    def open(self, *, tab_first: bool) -> tuple[list[str], Iterator[_Table]]:
        """The header, and the tables of the file's pieces (from the header's piece on)."""
        data = b""
        for block in self.blocks:
            data += block
            if len(data) >= SNIFF_BYTES and not data.isspace():
                break
        if not data or data.isspace():
            raise InputFileError(
                f"{self.source}: the file has no content. Export the data again with a header row."
            )
        separator_line = EXCEL_SEPARATOR_LINE.match(data)
        if separator_line:
            self.delimiter = separator_line.group(1).decode()
            skip = separator_line.end()
        else:
            self.delimiter = detect_delimiter(data[:SNIFF_BYTES], tab_first=tab_first)
            skip = 0
        pieces = self._pieces(data)
        for piece in pieces:
            first = (
                _read_fast(
                    piece.data,
                    self.delimiter,
                    skip,
                    self.source,
                    self.limits,
                    lines_before=self.lines_before,
                    last=piece.last,
                )
                if piece.whole
                else None
            )
            if first is None:
                careful = _Careful(
                    _text_lines(piece.data[skip:], pieces),
                    self.delimiter,
                    self.source,
                    self.limits,
                    lines_before=self.lines_before + (1 if skip else 0),
                )
                return careful.read_header(), careful.tables()
            if first.header:
                self.records = first.records
                return first.header, self._tables(first, piece, pieces)
            self.lines_before += piece.data.count(b"\n")
            skip = 0
        raise _no_header(self.source)

    def _tables(
        self, first: _Table, first_piece: _Piece, pieces: Iterator[_Piece]
    ) -> Iterator[_Table]:
        yield first
        header = first.header
        previous = first_piece
        for piece in pieces:
            self.lines_before += previous.data.count(b"\n")
            table = (
                _read_body(
                    piece.data,
                    self.delimiter,
                    header,
                    self.source,
                    self.limits,
                    lines_before=self.lines_before,
                    records_before=self.records,
                    last=piece.last,
                )
                if piece.whole
                else None
            )
            if table is None:
                careful = _Careful(
                    _text_lines(piece.data, pieces),
                    self.delimiter,
                    self.source,
                    self.limits,
                    lines_before=self.lines_before,
                    header=header,
                    records_before=self.records,
                )
                yield from careful.tables()
                return
            self.records += table.records
            yield table
            previous = piece

    def _pieces(self, data: bytes) -> Iterator[_Piece]:
        """The text cut into pieces of whole records: after the last newline outside quotes,
        the rest carried into the next piece."""
        carry = data
        for block in self.blocks:
            cut = _last_record_end(carry)
            if cut is not None:
                yield _Piece(carry[:cut], last=False)
                carry = carry[cut:]
            elif len(carry) >= self.longest:
                yield _Piece(carry, last=False, whole=False)
                carry = b""
            carry += block
        while (cut := _last_record_end(carry)) is not None and cut < len(carry):
            yield _Piece(carry[:cut], last=False)
            carry = carry[cut:]
        yield _Piece(carry, last=True)


def _last_record_end(data: bytes) -> int | None:
    """Where the last whole record of ``data`` ends (after its newline): the last newline
    with an even number of quotes before it; None when there is none."""
    end = data.rfind(b"\n")
    if end < 0:
        return None
    quotes = data.count(b'"', 0, end)
    while quotes % 2:
        before = data.rfind(b"\n", 0, end)
        if before < 0:
            return None
        quotes -= data.count(b'"', before, end)
        end = before
    return end + 1


class _BytesReader(io.RawIOBase):
    """A readable stream over blocks of bytes, for ``io.TextIOWrapper``."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._block = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._block:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._block = memoryview(block)
        size = min(len(target), len(self._block))
        target[:size] = self._block[:size]
        self._block = self._block[size:]
        return size


def _text_lines(data: bytes, pieces: Iterable[_Piece]) -> io.TextIOWrapper:
    """``data`` and the pieces after it as lines of text, split as ``csv`` expects (at
    ``\n``, ``\r\n`` or ``\r``, line endings kept)."""

    def chained() -> Iterator[bytes]:
        yield data
        for piece in pieces:
            yield piece.data

    return io.TextIOWrapper(
        io.BufferedReader(_BytesReader(chained()), buffer_size=1024**2),
        encoding="utf-8",
        newline="",
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


@dataclass(frozen=True)
class _Records:
    raw: pl.Series
    quotes: pl.Series
    records: pl.DataFrame
    """``start``, ``stop``, ``line`` and ``length`` (without a closing CR) of each record."""


def _records(data: bytes, delimiter: str, skip: int, lines_before: int) -> _Records | None:
    """Where each record of ``data`` starts and stops; None when the quotes or line endings
    need the careful path."""
    raw = _bytes_series(data)
    size = len(data)
    newlines = (raw == LF).arg_true()
    if newlines.len() == 0 and CR in data:
        return None
    quotes = (raw == QUOTE).arg_true()
    if not _quotes_well_formed(raw, quotes, ord(delimiter)):
        return None
    records = pl.DataFrame({"nl": newlines.cast(pl.Int64)}).with_row_index("nl_index")
    if quotes.len():
        records = records.filter(quotes.search_sorted(newlines) % 2 == 0)
    first_line = lines_before + 1
    records = (
        records.select(
            start=pl.concat([pl.lit(0, pl.Int64), pl.col("nl") + 1]),
            stop=pl.concat([pl.col("nl"), pl.lit(size, pl.Int64)]),
            line=pl.concat(
                [pl.lit(first_line, pl.Int64), pl.col("nl_index").cast(pl.Int64) + first_line + 1]
            ),
        )
        .filter(pl.col("start") < size)
        .filter(pl.col("start") >= skip)
    )
    cr_before_stop = raw.gather((records["stop"] - 1).clip(lower_bound=0)) == CR
    records = records.with_columns(
        length=pl.col("stop") - pl.col("start") - cr_before_stop.cast(pl.Int64)
    )
    return _Records(raw, quotes, records)


def _read_fast(
    data: bytes,
    delimiter: str,
    skip: int,
    source: str,
    limits: Limits,
    *,
    lines_before: int = 0,
    last: bool = True,
) -> _Table | None:
    """Vectorized record scan + polars parse of a file's first piece; None when the careful
    path must decide. A piece of blank lines only gives a table without a header (the header
    comes later), unless it is the file's last."""
    scanned = _records(data, delimiter, skip, lines_before)
    if scanned is None:
        return None
    records = scanned.records
    header_row = _first_non_blank(data, records)
    if header_row is None:
        if last:
            raise _no_header(source)
        return _Table([], _empty_columns(0), [])
    header_start = records["start"][header_row]
    header_stop = records["stop"][header_row]
    header = _parse_record(data[header_start:header_stop].decode("utf-8"), delimiter)
    _check_header(header, int(records["line"][header_row]), source)
    check_column_count(len(header), limits, source, "the header has ")
    body = _Records(scanned.raw, scanned.quotes, records.slice(header_row + 1))
    return _parse_body(data, body, delimiter, header, source, limits, 0, last)


def _read_body(
    data: bytes,
    delimiter: str,
    header: list[str],
    source: str,
    limits: Limits,
    *,
    lines_before: int,
    records_before: int,
    last: bool,
) -> _Table | None:
    """The fast path on a piece after the header's; None when the careful path must decide."""
    scanned = _records(data, delimiter, 0, lines_before)
    if scanned is None:
        return None
    return _parse_body(data, scanned, delimiter, header, source, limits, records_before, last)


def _parse_body(
    data: bytes,
    body: _Records,
    delimiter: str,
    header: list[str],
    source: str,
    limits: Limits,
    records_before: int,
    last: bool,
) -> _Table | None:
    records = body.records
    width = len(header)
    check_row_count(
        records_before + int((records["length"] > 0).sum()), limits, source, more=not last
    )
    if records.height == 0:
        return _Table(header, _empty_columns(width), [])

    delimiters = (body.raw == ord(delimiter)).arg_true()
    if body.quotes.len():
        delimiters = delimiters.filter(body.quotes.search_sorted(delimiters) % 2 == 0)
    fields = (
        delimiters.search_sorted(records["stop"].cast(delimiters.dtype))
        - delimiters.search_sorted(records["start"].cast(delimiters.dtype))
    ).cast(pl.Int64) + 1
    widest = int(fields.arg_max() or 0)
    line = int(records["line"][widest])
    check_column_count(int(fields[widest]), limits, source, f"line {line} has ")

    columns = [f"c{i}" for i in range(width)]
    # A first line of `width` empty fields fixes the column count polars sees, whatever the
    # first data line holds (a blank line, a short row); it is dropped after parsing.
    width_line = (delimiter * (width - 1) + "\n").encode()
    try:
        frame = pl.read_csv(
            b"".join((width_line, memoryview(data)[records["start"][0] :])),
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
    if frame.height != records.height:
        return None
    frame = frame.with_columns(
        records["line"].alias(LINE_COLUMN),
        fields.alias("_fields"),
        (records["length"] == 0).alias("_empty"),
        records["start"].alias("_start"),
        records["stop"].alias("_stop"),
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


class _RecordLines:
    """Lines handed to ``csv.reader``, keeping those of the record being read (the reader
    asks for one line at a time, and only as many as one record needs)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.current: list[str] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.current.append(line)
        return line

    def take(self) -> list[str]:
        """The lines of the record just read."""
        lines, self.current = self.current, []
        return lines


class _Careful:
    """The csv module's reading of a file's text from a record boundary, row by row."""

    def __init__(
        self,
        lines: Iterable[str],
        delimiter: str,
        source: str,
        limits: Limits,
        *,
        lines_before: int = 0,
        header: list[str] | None = None,
        records_before: int = 0,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.lines = _RecordLines(lines)
        self.reader = csv.reader(self.lines, delimiter=delimiter, strict=False)
        self.delimiter = delimiter
        self.source = source
        self.limits = limits
        self.lines_before = lines_before
        self.header = header
        self.count = records_before
        self.chunk_rows = chunk_rows
        self.line = 0
        """The line the last record read starts on, in the text read here."""
        self.start = 1
        self.last_record: list[str] = []

    def _rows(self) -> Iterator[list[str]]:
        for row in self.reader:
            self.line, self.start = self.start, self.reader.line_num + 1
            self.last_record = self.lines.take()
            if row:
                yield row

    def read_header(self) -> list[str]:
        """Read to the first record with text and take it as the header."""
        for row in self._rows():
            if any(field.strip() for field in row):
                _check_header(row, self.line + self.lines_before, self.source)
                check_column_count(len(row), self.limits, self.source, "the header has ")
                self.header = row
                return row
        raise _no_header(self.source)

    def tables(self) -> Iterator[_Table]:
        """The rows after the header, in frames of ``chunk_rows``; at the end, a quote that
        never closed is an error."""
        header = self.header if self.header is not None else self.read_header()
        width = len(header)
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        rejected: list[RowIssue] = []
        for row in self._rows():
            line = self.line + self.lines_before
            self.count += 1
            if len(row) > self.limits.max_columns:
                check_column_count(len(row), self.limits, self.source, f"line {line} has ")
            if len(row) > width:
                issue = _ragged_issue(row, header, line)
                if issue is not None:
                    rejected.append(issue)
                    continue
            rows.append(row)
            line_numbers.append(line)
            if len(rows) == self.chunk_rows:
                check_row_count(self.count, self.limits, self.source, more=True)
                yield _Table(header, _chunk(rows, line_numbers, width), rejected)
                rows, line_numbers, rejected = [], [], []
        check_row_count(self.count, self.limits, self.source)
        _check_closed(
            "".join(self.last_record), self.line + self.lines_before, self.delimiter, self.source
        )
        yield _Table(header, _chunk(rows, line_numbers, width), rejected)


def _read_careful(text: str, delimiter: str, skip: int, source: str, limits: Limits) -> _Table:
    """The careful path over a whole text (``skip`` characters of a separator line first)."""
    careful = _Careful(
        io.StringIO(text[skip:], newline=""),
        delimiter,
        source,
        limits,
        lines_before=1 if skip else 0,
    )
    tables = list(careful.tables())
    return _Table(
        tables[0].header,
        pl.concat(t.frame for t in tables),
        [issue for t in tables for issue in t.rejected],
    )


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
