"""Refuse a legacy .xls workbook that would expand past the limits, before calamine reads it.

An .xls is an OLE2 compound file whose ``Workbook`` stream holds BIFF records. calamine reads
every sheet when it opens the file, reserves memory for the range each sheet's DIMENSIONS record
declares (a 1 KB file can declare four billion rows), and builds a grid from the first to the
last cell it finds (one cell in column 65,535 is enough for billions). So the stream is read
here, without following anything but the file's own sector chains, and every sheet's declared
and spanned ranges are held to ``Limits.max_cells`` and ``max_columns``, and the shared text all
cells refer to (copied into each of them) to ``max_text_bytes``.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bulk_pipeline.ingest.table import InputFileError, Limits, check_column_count, human_size

OLE_SIGNATURE = bytes.fromhex("d0cf11e0a1b11ae1")
HEADER = struct.Struct("<8s16x4xHHH6xIIIIIIIII")
"""Signature; (versions skipped) byte order, sector shift, mini sector shift, (reserved); then
directory sectors, FAT sectors, first directory sector, transaction, mini stream cutoff, first
mini FAT sector, mini FAT sectors, first DIFAT sector, DIFAT sectors ([MS-CFB] 2.2)."""
DIFAT_IN_HEADER = 109
LAST_REGULAR_SECTOR = 0xFFFFFFFA
"""Sector numbers from here on mark free sectors and chain ends."""
DIRECTORY_ENTRY_BYTES = 128
STREAM = 2
WORKBOOK_STREAMS = ("workbook", "book")
"""calamine reads the first of these it finds (BIFF8 calls it Workbook, BIFF5 Book)."""

BOF, EOF, DIMENSIONS, BOUNDSHEET, SST, CONTINUE = 0x0809, 0x000A, 0x0200, 0x0085, 0x00FC, 0x003C
SHARED_STRING_CELL = 0x00FD
CELLS = frozenset({0x0203, 0x0204, 0x00D6, 0x00FD, 0x027E, 0x0006, 0x0205})
"""NUMBER, LABEL, RSTRING, LABELSST, RK, FORMULA, BOOLERR: row and column first."""
MULTIPLE_RK = 0x00BD
"""MULRK: row, first column, the values, then the last column."""
CELL_BYTES = 40
"""What calamine holds per cell it reserves; used to say how much memory a range would take."""


@dataclass
class _Sheet:
    name: str
    rows: int = 0
    columns: int = 0
    length: int = 0
    """Bytes of the stream the sheet's records take."""


def check_legacy_workbook(path: Path, *, source: str, limits: Limits) -> None:
    """Vet every sheet of an OLE2 workbook (.xls); other files are left to their readers.

    Raises:
        InputFileError: the workbook is damaged or a sheet would expand past ``limits``.
    """
    with path.open("rb") as handle:
        if handle.read(len(OLE_SIGNATURE)) != OLE_SIGNATURE:
            return
    data = path.read_bytes()
    try:
        stream = _workbook_stream(data)
    except (struct.error, IndexError, ValueError, KeyError) as exc:
        raise InputFileError(
            f"{source}: the workbook is damaged ({exc or type(exc).__name__}). Open it in Excel "
            "or LibreOffice, save it as .xlsx, and import that."
        ) from exc
    if stream is not None:
        _check_sheets(stream, source, limits)


def _workbook_stream(data: bytes) -> bytes | None:
    """The Workbook (or Book) stream of a compound file, following its own sector chains."""
    fields = HEADER.unpack_from(data)
    shift, mini_shift, fat_sectors, directory_start = fields[2], fields[3], fields[5], fields[6]
    cutoff, mini_fat_start, difat_start, difat_sectors = (
        fields[8],
        fields[9],
        fields[11],
        fields[12],
    )
    if not 7 <= shift <= 16 or not 2 <= mini_shift < shift:
        raise ValueError(f"sector sizes 2**{shift} and 2**{mini_shift}")
    size = 1 << shift
    per_sector = size // 4

    def sector(number: int) -> bytes:
        start = (number + 1) * size
        if number >= LAST_REGULAR_SECTOR or start >= len(data):
            raise ValueError(f"sector {number} is outside the file")
        return data[start : start + size]

    difat = list(struct.unpack_from(f"<{DIFAT_IN_HEADER}I", data, 0x4C))
    seen: set[int] = set()
    next_difat = difat_start
    for _ in range(min(difat_sectors, len(data) // size)):
        if next_difat >= LAST_REGULAR_SECTOR or next_difat in seen:
            break
        seen.add(next_difat)
        listed = struct.unpack(f"<{per_sector}I", sector(next_difat))
        difat.extend(listed[:-1])
        next_difat = listed[-1]
    fat: list[int] = []
    for number in difat[: max(fat_sectors, 0)]:
        if number < LAST_REGULAR_SECTOR:
            fat.extend(struct.unpack(f"<{per_sector}I", sector(number)))

    def chain(start: int, table: list[int]) -> Iterator[int]:
        visited: set[int] = set()
        number = start
        while number < LAST_REGULAR_SECTOR:
            if number in visited or number >= len(table):
                raise ValueError(f"sector chain through {number} is broken")
            visited.add(number)
            yield number
            number = table[number]

    def read(start: int, length: int | None = None) -> bytes:
        content = b"".join(sector(number) for number in chain(start, fat))
        return content if length is None else content[:length]

    directory = read(directory_start)
    entries = [
        directory[offset : offset + DIRECTORY_ENTRY_BYTES]
        for offset in range(0, len(directory) - DIRECTORY_ENTRY_BYTES + 1, DIRECTORY_ENTRY_BYTES)
    ]
    for wanted in WORKBOOK_STREAMS:
        for entry in entries:
            name_bytes = struct.unpack_from("<H", entry, 64)[0]
            name = entry[: max(name_bytes - 2, 0)].decode("utf-16-le", "replace").lower()
            if entry[66] != STREAM or name != wanted:
                continue
            start, length = struct.unpack_from("<II", entry, 116)
            if length >= cutoff:
                return read(start, length)
            root = entries[0]
            mini_stream = read(*struct.unpack_from("<II", root, 116))
            mini_fat_bytes = read(mini_fat_start) if mini_fat_start < LAST_REGULAR_SECTOR else b""
            mini_fat = list(struct.unpack(f"<{len(mini_fat_bytes) // 4}I", mini_fat_bytes))
            mini = 1 << mini_shift
            return b"".join(
                mini_stream[number * mini : (number + 1) * mini]
                for number in chain(start, mini_fat)
            )[:length]
    return None


def _records(stream: bytes, start: int = 0) -> Iterator[tuple[int, memoryview]]:
    """The records from ``start`` up to the first EOF (or the stream's end), as calamine reads
    the globals and each sheet: type, and body as a view."""
    view = memoryview(stream)
    position = start
    while position + 4 <= len(stream):
        kind, length = struct.unpack_from("<HH", stream, position)
        if kind == EOF:
            return
        yield kind, view[position + 4 : position + 4 + length]
        position += 4 + length


def _check_sheets(stream: bytes, source: str, limits: Limits) -> None:
    """Every sheet's declared and spanned ranges, and the shared text all cells refer to.

    Read as calamine reads them: the globals from the start to the first EOF (sheet names and
    positions, the shared strings), then each sheet from the position its BOUNDSHEET record
    gives to the next EOF, whatever BOF records lie between. calamine loads every sheet and
    copies a shared string into each cell that uses it, so the totals are over all sheets.
    """
    globals_ = list(_records(stream))
    sheets: list[tuple[int, str]] = []
    lengths: list[int] = []
    for number, (kind, body) in enumerate(globals_):
        if kind == SST:
            table = [bytes(body)]
            for following, more in globals_[number + 1 :]:
                if following != CONTINUE:
                    break
                table.append(bytes(more))
            lengths = _string_lengths(table)
        elif kind == BOUNDSHEET and len(body) >= 8:
            sheets.append((struct.unpack_from("<I", body)[0], _sheet_name(bytes(body))))
    seen: dict[int, tuple[_Sheet, int]] = {}
    walked = shared_text = spanned = 0
    for position, name in sheets:
        if position not in seen:
            seen[position] = _scan_sheet(stream, position, name, lengths, source, limits)
            walked += seen[position][0].length
            if walked > len(stream):
                raise _refuse(
                    source,
                    "its sheets overlap in the workbook stream, which no spreadsheet program "
                    "writes; a reader would read the same records again and again",
                )
        sheet, text = seen[position]
        spanned += _check_range(sheet, source, limits)
        shared_text += text
    if spanned > limits.max_cells:
        raise _refuse(
            source,
            f"its sheets span {spanned:,} cells in all, more than the limit of "
            f"{limits.max_cells:,} cells (Limits(max_cells=...)); the reader loads every sheet",
        )
    if shared_text > limits.max_text_bytes:
        raise _refuse(
            source,
            f"its cells refer to {human_size(shared_text)} of shared text, more than the limit "
            f"of {human_size(limits.max_text_bytes)} (Limits(max_text_bytes=...))",
        )


def _scan_sheet(
    stream: bytes, position: int, name: str, lengths: list[int], source: str, limits: Limits
) -> tuple[_Sheet, int]:
    """One sheet's reach, and the shared text its cells refer to."""
    sheet = _Sheet(name)
    shared_text = 0
    for kind, body in _records(stream, position):
        sheet.length += 4 + len(body)
        if kind == DIMENSIONS and len(body) in (10, 14):
            _check_declared(bytes(body), name, source, limits)
        elif kind in CELLS and len(body) >= 4:
            row, column = struct.unpack_from("<HH", body)
            sheet.rows, sheet.columns = max(sheet.rows, row + 1), max(sheet.columns, column + 1)
            if kind == SHARED_STRING_CELL and len(body) >= 10:
                index = struct.unpack_from("<I", body, 6)[0]
                shared_text += lengths[index] if index < len(lengths) else 0
        elif kind == MULTIPLE_RK and len(body) >= 6:
            row = struct.unpack_from("<H", body)[0]
            last = struct.unpack_from("<H", body, len(body) - 2)[0]
            sheet.rows, sheet.columns = max(sheet.rows, row + 1), max(sheet.columns, last + 1)
    return sheet, shared_text


def _string_lengths(records: list[bytes]) -> list[int]:
    """Bytes each string of the shared-string table (the SST record, then the CONTINUE records
    that follow) may take as UTF-8, 3 per character, read as calamine reads it: a string's
    characters may go on in the next CONTINUE record, which starts with a fresh flag byte."""
    parts = [memoryview(records[0])[8:]]
    parts += [memoryview(body) for body in records[1:]]
    lengths: list[int] = []
    part, data = 0, parts[0]

    def advance() -> bool:
        nonlocal part, data
        part += 1
        if part >= len(parts):
            return False
        data = parts[part]
        return True

    def skip(count: int) -> bool:
        nonlocal data
        while count > len(data):
            count -= len(data)
            if not advance():
                return False
        data = data[count:]
        return True

    while len(data) or advance():
        if len(data) < 3:
            break
        characters, flags = struct.unpack_from("<HB", data)
        data = data[3:]
        runs = extended = 0
        if flags & 0x8 and len(data) >= 2:
            runs = struct.unpack_from("<H", data)[0]
            data = data[2:]
        if flags & 0x4 and len(data) >= 4:
            extended = max(struct.unpack_from("<i", data)[0], 0)
            data = data[4:]
        remaining, width = characters, 2 if flags & 0x1 else 1
        while remaining:
            taken = min(len(data) // width, remaining)
            data = data[taken * width :]
            remaining -= taken
            if remaining:
                if not advance() or not len(data):
                    break
                width = 2 if data[0] & 0x1 else 1
                data = data[1:]
        lengths.append(characters * 3)
        if remaining or not skip(runs * 4 + extended):
            break
    return lengths


def _sheet_name(body: bytes) -> str:
    with contextlib.suppress(IndexError, UnicodeDecodeError):
        length, high_bytes = body[6], body[7] & 0x1
        raw = body[8 : 8 + length * (2 if high_bytes else 1)]
        return raw.decode("utf-16-le" if high_bytes else "latin-1")
    return "?"


def _check_declared(body: bytes, sheet: str, source: str, limits: Limits) -> None:
    """The range DIMENSIONS declares, computed as calamine does (32-bit arithmetic that wraps)."""
    if len(body) == 14:
        first_row, last_row, first_column, last_column = struct.unpack_from("<IIHH", body)
    else:
        first_row, last_row, first_column, last_column = struct.unpack_from("<HHHH", body)
    if first_column > 0xFF or last_column < first_column:
        first_column = 0
    if last_row < 1 or last_column < 1:
        return
    rows = (last_row - 1 - first_row + 1) & 0xFFFFFFFF
    columns = (last_column - 1 - first_column + 1) & 0xFFFFFFFF
    if rows * columns > limits.max_cells:
        raise _refuse(
            source,
            f"sheet '{sheet}' declares a range of {rows:,} rows and {columns:,} columns (about "
            f"{human_size(rows * columns * CELL_BYTES)} reserved to read it), more than the "
            f"limit of {limits.max_cells:,} cells (Limits(max_cells=...))",
        )


def _check_range(sheet: _Sheet, source: str, limits: Limits) -> int:
    """The cells the sheet's values span, once checked against the limits."""
    check_column_count(sheet.columns, limits, source, f"sheet '{sheet.name}' spans ")
    cells = sheet.rows * sheet.columns
    if cells > limits.max_cells:
        raise _refuse(
            source,
            f"sheet '{sheet.name}' has values up to row {sheet.rows:,}, column "
            f"{sheet.columns:,}, a range of {cells:,} cells, more than the limit of "
            f"{limits.max_cells:,} cells (Limits(max_cells=...))",
        )
    return cells


def _refuse(source: str, problem: str) -> InputFileError:
    return InputFileError(
        f"{source}: {problem}. The workbook was refused before reading it, to protect the "
        "machine's memory. If the file is genuine, save it as .xlsx or CSV and import that."
    )
