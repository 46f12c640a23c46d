"""What every reader returns, and the header and row clean-up that all formats share.

Each reader turns its format into the same shape: one ``pl.String`` column per source column under
a unique, non-empty header, plus ``_line`` pointing back into the file, so that later stages never
need to know whether the rows came from a CSV, a workbook or an API export.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

import polars as pl

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import UserInputError

LINE_COLUMN = "_line"
"""1-based position of the row in the file, so every outcome can be traced back to its line."""

ENTITY_LABELS: dict[str, Entity] = {
    **dict.fromkeys(("contacts", "contact", "people", "person", "persons"), Entity.CONTACTS),
    **dict.fromkeys(
        (
            "companies",
            "company",
            "organizations",
            "organization",
            "organisations",
            "organisation",
            "accounts",
            "account",
        ),
        Entity.COMPANIES,
    ),
    **dict.fromkeys(("deals", "deal", "opportunities", "opportunity"), Entity.DEALS),
    **dict.fromkeys(
        ("activities", "activity", "tasks", "task", "calls", "meetings", "events"),
        Entity.ACTIVITIES,
    ),
    **dict.fromkeys(("notes", "note", "comments"), Entity.NOTES),
}
"""Sheet names and JSON keys that say which entity their rows are (compared case-insensitively)."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds that keep one oversized or crafted upload from exhausting the machine.

    The file size says little about what a compressed format expands to, so workbooks and
    Parquet files are also held to what they unpack to, checked before they are read.
    """

    max_bytes: int = config.DEFAULT_MAX_FILE_BYTES
    """The file on disk."""
    max_rows: int = config.DEFAULT_MAX_ROWS
    max_columns: int = config.DEFAULT_MAX_COLUMNS
    """Columns of a file, and fields of any one row of a CSV."""
    max_cells: int = config.DEFAULT_MAX_CELLS
    """A sheet's range (rows x columns, declared or spanned by its values); Parquet values."""
    max_unpacked_bytes: int = config.DEFAULT_MAX_UNPACKED_BYTES
    """A workbook's parts, or a Parquet file's pages, once decompressed."""
    max_compression_ratio: int = config.DEFAULT_MAX_COMPRESSION_RATIO
    """How many times larger than its compressed form a workbook part (over 1 MB) may be."""
    max_text_bytes: int = config.DEFAULT_MAX_TEXT_BYTES
    """Text of a sheet's cells once shared strings (or Parquet dictionaries) are expanded."""
    max_workbook_parts: int = config.DEFAULT_MAX_WORKBOOK_PARTS


@dataclass(frozen=True)
class RowIssue:
    """An input row that cannot become a record at all (e.g. it has more fields than the header)."""

    line: int
    """1-based line in the file where the row starts."""
    reason: str
    values: dict[str, str | None]
    """What was readable, by header name (extra fields of a ragged row as ``column_N``)."""


@dataclass(frozen=True)
class SkippedSheet:
    """A workbook sheet that was not read, and why, so no sheet is left out without a word."""

    name: str
    reason: str


@dataclass
class RawTable:
    """A file's rows as strings under their own headers, before any mapping to our fields."""

    frame: pl.DataFrame
    """Every source column as ``pl.String`` under a unique, non-empty header, plus ``_line``."""
    source: str
    """The path as given."""
    entity_hint: Entity | None = None
    """The entity named by the sheet or the JSON key the rows came from, if any."""
    sheet: str | None = None
    skipped_sheets: list[SkippedSheet] = field(default_factory=list)
    """The workbook's other sheets (one sheet is one import)."""
    rejected: list[RowIssue] = field(default_factory=list)
    """Rows excluded from ``frame`` because they cannot be read as a record."""
    encoding: str | None = None
    delimiter: str | None = None


@dataclass
class Chunk:
    """Consecutive rows of a table, with the rows among them that cannot be records."""

    frame: pl.DataFrame
    """The table's columns as ``pl.String`` under its headers, plus ``_line``."""
    rejected: list[RowIssue] = field(default_factory=list)


@dataclass
class TableStream:
    """A table read a chunk at a time, so a step holds one chunk of it, never the whole file.

    What is known before the rows (headers, encoding, sheet) is read when the stream is made,
    with every error about the file as a whole that the first rows can show; ``chunks`` reads
    the rest as it is asked for (once), and may still raise ``InputFileError`` (a quote that
    never closes, too many rows).
    """

    headers: list[str]
    """Every column, unique and non-empty, in the file's order (without ``_line``)."""
    chunks: Iterator[Chunk]
    source: str
    blank_headers: list[str] = field(default_factory=list)
    """Columns whose header was blank (``column_N``): dropped when no row holds a value there."""
    entity_hint: Entity | None = None
    sheet: str | None = None
    skipped_sheets: list[SkippedSheet] = field(default_factory=list)
    encoding: str | None = None
    delimiter: str | None = None

    @classmethod
    def of(cls, table: RawTable, chunk_rows: int) -> TableStream:
        """A table read whole (a workbook's sheet, a JSON array), handed on in chunks."""
        frame = table.frame

        def chunks() -> Iterator[Chunk]:
            for start in range(0, max(frame.height, 1), chunk_rows):
                yield Chunk(frame.slice(start, chunk_rows), table.rejected if start == 0 else [])

        return cls(
            headers=[c for c in frame.columns if c != LINE_COLUMN],
            chunks=chunks(),
            source=table.source,
            entity_hint=table.entity_hint,
            sheet=table.sheet,
            skipped_sheets=table.skipped_sheets,
            encoding=table.encoding,
            delimiter=table.delimiter,
        )

    def collect(self) -> RawTable:
        """The whole table in memory."""
        frames: list[pl.DataFrame] = []
        rejected: list[RowIssue] = []
        for chunk in self.chunks:
            frames.append(chunk.frame)
            rejected += chunk.rejected
        frame = pl.concat(frames) if frames else empty_frame(self.headers)
        return RawTable(
            frame=drop_empty_columns(frame, self.blank_headers),
            source=self.source,
            entity_hint=self.entity_hint,
            sheet=self.sheet,
            skipped_sheets=self.skipped_sheets,
            rejected=rejected,
            encoding=self.encoding,
            delimiter=self.delimiter,
        )


class InputFileError(UserInputError):
    """The file as a whole is unusable; the message names the file, the problem and the fix."""


def entity_from_label(label: str) -> Entity | None:
    """The entity a sheet name or JSON key stands for ("People", "Organisations"...), if any."""
    key = "".join(ch for ch in label.casefold() if ch.isalnum())
    return ENTITY_LABELS.get(key)


def unique_headers(names: Sequence[str | None]) -> list[str]:
    """Non-empty, unique column names: blanks become ``column_N``, repeats ``Name_2``, ``Name_3``.

    ``N`` is the 1-based column position, so users can find the column in their spreadsheet.
    ``_line`` is reserved for the line number and is treated as a repeat.
    """
    cleaned = [clean_header(name) for name in names]
    taken = {name for name in cleaned if name} | {LINE_COLUMN}
    seen: set[str] = {LINE_COLUMN}
    next_suffix: dict[str, int] = {}  # per repeated name: 40,000 repeats stay linear
    result: list[str] = []
    for position, name in enumerate(cleaned, start=1):
        candidate = name or f"column_{position}"
        if candidate in seen:
            base, suffix = candidate, next_suffix.get(candidate, 2)
            while f"{base}_{suffix}" in taken or f"{base}_{suffix}" in seen:
                suffix += 1
            next_suffix[base] = suffix + 1
            candidate = f"{base}_{suffix}"
        seen.add(candidate)
        result.append(candidate)
    return result


def clean_header(name: str | None) -> str:
    """A header without surrounding whitespace, byte-order marks or zero-width characters."""
    if name is None:
        return ""
    text = unicodedata.normalize("NFC", name)
    return text.strip().strip("\ufeff\u200b\u200c\u200d\u2060").strip()


def blank_header_positions(names: Sequence[str | None]) -> list[int]:
    return [i for i, name in enumerate(names) if not clean_header(name)]


def finish_frame(frame: pl.DataFrame, blank_headers: Collection[str] = ()) -> pl.DataFrame:
    """The common last step of every reader.

    Empty strings become null (so a blank cell reads the same in every format), rows in which no
    cell has any text are dropped (blank lines and empty spreadsheet rows are not rows), and
    columns that had no header and hold no value are dropped (trailing delimiters, formatting
    left in unused spreadsheet columns).
    """
    return drop_empty_columns(finish_chunk(frame), blank_headers)


def finish_chunk(frame: pl.DataFrame) -> pl.DataFrame:
    """``finish_frame`` for some rows of a table: blanks made null, rows without text dropped
    (whether a column holds any value is known only once every chunk is read)."""
    sources = pl.exclude(LINE_COLUMN)
    if frame.width == 1:
        return frame.clear().with_columns(pl.col(LINE_COLUMN).cast(pl.Int64))
    frame = frame.with_columns(sources.replace("", None))
    has_text = pl.any_horizontal(sources.str.contains(r"\S").fill_null(False))
    return frame.filter(has_text).with_columns(pl.col(LINE_COLUMN).cast(pl.Int64))


def drop_empty_columns(frame: pl.DataFrame, blank_headers: Collection[str]) -> pl.DataFrame:
    """Without the columns that had no header and hold no value."""
    if not blank_headers:
        return frame
    nulls = frame.null_count().row(0, named=True)
    return frame.drop([name for name in blank_headers if nulls[name] == frame.height])


def check_row_count(rows: int, limits: Limits, source: str, *, more: bool = False) -> None:
    """Stop before parsing when a file holds more rows than one import may take; ``more``
    when the count is of the rows read so far."""
    if rows > limits.max_rows:
        raise InputFileError(
            f"{source}: the file has {'at least ' if more else ''}{rows:,} rows, more than the "
            f"limit of {limits.max_rows:,} rows for one file. Split it into smaller files, or "
            "raise the limit (Limits(max_rows=...))."
        )


def check_column_count(columns: int, limits: Limits, source: str, where: str = "") -> None:
    """Stop before building a frame wider than one import may take (each column costs time in
    every reader, whatever it holds)."""
    if columns > limits.max_columns:
        raise InputFileError(
            f"{source}: {where}{columns:,} columns, more than the limit of "
            f"{limits.max_columns:,} (a spreadsheet holds at most 16,384). Leave out the columns "
            "the import does not need, or raise the limit (Limits(max_columns=...))."
        )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GB"


def empty_frame(headers: Sequence[str]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = dict.fromkeys(headers, pl.String())
    schema[LINE_COLUMN] = pl.Int64()
    return pl.DataFrame(schema=schema)
