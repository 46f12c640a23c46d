"""The first stage: a file of any supported format becomes a table of strings.

``read_file`` picks the reader from the file's content (binary signatures) and extension, and
falls back to sniffing text. Every reader keeps a line number for each row, so any outcome later
in the pipeline can be traced back to the user's file.

``stream_file`` and ``stream_tables`` hand a table on a chunk at a time (``TableStream``), which
is how an import reads: CSV and Parquet files are read a chunk at a time, so memory does not grow
with the file. Workbooks, JSON and NDJSON are parsed whole (a workbook's cells and a JSON
document must be read to their end to know their rows) and handed on in chunks: those files are
held to their limits (``Limits``) instead.
"""

from __future__ import annotations

from pathlib import Path

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest.csv import stream_csv
from bulk_pipeline.ingest.excel import read_excel, read_workbook
from bulk_pipeline.ingest.json import read_json, read_json_tables, read_ndjson
from bulk_pipeline.ingest.parquet import stream_parquet
from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    Chunk,
    InputFileError,
    Limits,
    RawTable,
    RowIssue,
    SkippedSheet,
    TableStream,
    human_size,
)

__all__ = [
    "DEFAULT_LIMITS",
    "LINE_COLUMN",
    "Chunk",
    "InputFileError",
    "Limits",
    "RawTable",
    "RowIssue",
    "SkippedSheet",
    "TableStream",
    "detect_format",
    "read_file",
    "read_tables",
    "stream_file",
    "stream_tables",
]

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xlsb": "excel",
    ".xls": "excel",
    ".ods": "excel",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SIGNATURES = (
    (b"PK\x03\x04", "excel"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "excel"),
    (b"PAR1", "parquet"),
)
"""Binary formats are recognised by content first: a workbook renamed to .csv still reads."""


DEFAULT_LIMITS = Limits()


def read_file(
    path: Path,
    *,
    entity: Entity | None = None,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    sheet: str | None = None,
) -> RawTable:
    """Read a CSV/TSV, Excel, JSON, NDJSON or Parquet file into a ``RawTable``.

    ``entity``, when known, picks the matching sheet of a workbook or key of a JSON object;
    ``sheet`` names the workbook sheet to read. ``source`` is how messages name the file (the
    path the person typed, when ``path`` is a copy); by default ``path`` itself.

    Raises:
        InputFileError: the file is missing, empty, too large, undecodable or has no header, or
            ``sheet`` is given for a file that is not a workbook; the message says which and
            what to do.
    """
    return stream_file(path, entity=entity, limits=limits, source=source, sheet=sheet).collect()


def stream_file(
    path: Path,
    *,
    entity: Entity | None = None,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    sheet: str | None = None,
    chunk_rows: int | None = None,
) -> TableStream:
    """``read_file``'s table, a chunk of about ``chunk_rows`` rows at a time (see the module
    docstring for what each format holds in memory).

    Raises:
        InputFileError: as ``read_file``; reading the chunks may raise it too (a quote that
            never closes, more rows than the limit).
    """
    source = source or str(path)
    path = Path(path)
    rows = chunk_rows or config.chunk_rows()
    kind = _checked_kind(path, source, limits)
    if sheet is not None and kind != "excel":
        raise InputFileError(
            f"{source}: --sheet {sheet!r} applies to workbooks, and this is a {kind} file. "
            "Import it without --sheet."
        )
    if kind == "excel":
        table = read_excel(path, source=source, limits=limits, entity=entity, chosen_sheet=sheet)
        return TableStream.of(table, rows)
    if kind == "json":
        return TableStream.of(read_json(path, source=source, limits=limits, entity=entity), rows)
    if kind == "ndjson":
        return TableStream.of(read_ndjson(path, source=source, limits=limits), rows)
    if kind == "parquet":
        return stream_parquet(path, source=source, limits=limits, chunk_rows=rows)
    return stream_csv(path, source=source, limits=limits, chunk_rows=rows)


def read_tables(
    path: Path,
    *,
    entity: Entity | None = None,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    sheet: str | None = None,
) -> list[RawTable]:
    """Every table of the file: each sheet of a workbook, or each array of a JSON object,
    whose name names an entity; the one table of any other file. ``entity`` or ``sheet`` pick
    one table, as ``read_file`` does.

    Raises:
        InputFileError: as ``read_file``.
    """
    tables = stream_tables(path, entity=entity, limits=limits, source=source, sheet=sheet)
    return [table.collect() for table in tables]


def stream_tables(
    path: Path,
    *,
    entity: Entity | None = None,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    sheet: str | None = None,
    chunk_rows: int | None = None,
) -> list[TableStream]:
    """``read_tables``' tables, each a chunk at a time (read in turn: a table's chunks are read
    when the table before it has been read to its end).

    Raises:
        InputFileError: as ``stream_file``.
    """
    if entity is not None or sheet is not None:
        return [
            stream_file(
                path,
                entity=entity,
                limits=limits,
                source=source,
                sheet=sheet,
                chunk_rows=chunk_rows,
            )
        ]
    source = source or str(path)
    path = Path(path)
    rows = chunk_rows or config.chunk_rows()
    kind = _checked_kind(path, source, limits)
    if kind == "excel":
        return [TableStream.of(t, rows) for t in read_workbook(path, source=source, limits=limits)]
    if kind == "json":
        tables = read_json_tables(path, source=source, limits=limits)
        return [TableStream.of(t, rows) for t in tables]
    return [stream_file(path, limits=limits, source=source, chunk_rows=rows)]


def _checked_kind(path: Path, source: str, limits: Limits) -> str:
    """The file's format, once it is known to exist, hold something and fit the limits."""
    if not path.is_file():
        raise InputFileError(f"{source}: no such file. Check the path and import again.")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(f"{source}: the file is empty (0 bytes). Export the data again.")
    if size > limits.max_bytes:
        raise InputFileError(
            f"{source}: the file is {human_size(size)}, over the limit of "
            f"{human_size(limits.max_bytes)} for one file. Split it into smaller files, or raise "
            "the limit (Limits(max_bytes=...))."
        )
    return detect_format(path)


def detect_format(path: Path) -> str:
    """``csv``, ``excel``, ``json``, ``ndjson`` or ``parquet``, from content and extension."""
    with path.open("rb") as handle:
        head = handle.read(512)
    for signature, kind in SIGNATURES:
        if head.startswith(signature):
            return kind
    by_extension = EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"[", b"{")):
        return "json"
    return "csv"
