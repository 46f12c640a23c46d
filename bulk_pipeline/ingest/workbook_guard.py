"""Refuse a workbook that would expand past the limits, before calamine reads it.

A few kilobytes of workbook can make a reader allocate gigabytes: calamine reserves room for as
many shared strings as ``<sst uniqueCount=...>`` declares (2³¹ of them are 51 GB), builds a dense
grid from the first to the last valued cell (one cell in A1 and one in XFD1048576 are 17 billion
cells), and fastexcel copies a shared string into every cell that refers to it (one 32,000-char
string used in 250,000 cells is 8 GB). A zip part can also inflate a thousandfold, or to more
than it declares. None of that is visible from the file size, so the workbook's parts are checked
here, with the bounds in :class:`~bulk_pipeline.ingest.table.Limits`:

* the zip (every format that is one: .xlsx, .xlsm, .xlsb, .ods): how many parts, the sizes they
  declare and their compression ratio, checked from the directory alone; then, as each part is
  inflated, that it yields no more than it declared;
* SpreadsheetML (.xlsx, .xlsm): the shared strings' declared count against the strings really
  there, and for the sheet about to be read its declared ``<dimension>``, the rows x columns its
  valued cells span, and the text its cells hold once shared strings are expanded;
* .xlsb: the same for its binary sheets.

The scan reads the XML with regular expressions run by polars over 16 MB slices, not with an XML
parser: a parser in Python would take longer than calamine itself. The expressions follow the
XML grammar where a crafted file could hide from them (attribute values holding ``>``, either
quote, namespace prefixes, whitespace around ``=``); where they are not exact they count more
than calamine would (a cell inside a comment), never less.

.xlsb sheets are walked record by record the same way (cell reach, shared text, shared-string
indexes in range); legacy .xls files, an OLE2 container rather than a zip, in ``xls_guard``.
"""

from __future__ import annotations

import contextlib
import html
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl

from bulk_pipeline.ingest.table import InputFileError, Limits, check_column_count, human_size
from bulk_pipeline.ingest.xls_guard import check_legacy_workbook

SLICE_BYTES = 16 * 1024 * 1024
"""Inflated XML is scanned in slices of about this size, cut before a ``<``."""
RATIO_GRACE_BYTES = 1024 * 1024
"""Parts smaller than this are not held to the compression ratio (tiny parts compress oddly)."""
HARMLESS_STRING_COUNT = 100_000
"""A declared shared-string count up to this is let through even if wrong: reserving room for it
costs a few megabytes."""
LOCAL_HEADER = struct.Struct("<4s22xHH")
LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"

PREFIX = r"(?:[A-Za-z_][\w.-]*:)?"
ATTRIBUTES = r"""(?:\s(?:[^<>"']|"[^"<]*"|'[^'<]*')*)?"""
"""An element's attributes; a quoted value may hold ``>``, but no value may hold ``<``."""
UP_TO_ATTRIBUTE = r"""(?:(?:[^<>"']|"[^"<]*"|'[^'<]*')*?\s)?"""
"""The attributes before the one sought, inside the start tag."""
CELL_TAG = rf"<{PREFIX}c[\s/>]"
CELL_REFERENCE = rf"""<{PREFIX}c\s{UP_TO_ATTRIBUTE}r\s*=\s*["']\s*[A-Za-z]*\d*"""
"""A cell's start tag up to the end of its reference (``<c s="1" r="AB12``)."""
SHARED_CELL = rf"""<{PREFIX}c\s{UP_TO_ATTRIBUTE}t\s*=\s*["']s["']"""
CELL_START = rf"^<{PREFIX}c[\s/>]"
ROW_OR_CELL = rf"<{PREFIX}(?:c|row){ATTRIBUTES}/?>"
CELL_OR_VALUE = rf"<{PREFIX}c{ATTRIBUTES}/?>|<{PREFIX}v{ATTRIBUTES}/?>\s*\d*"
"""Cell start tags, and value start tags with the index that follows them."""
DIMENSION = re.compile(
    rf"""<{PREFIX}dimension\s{UP_TO_ATTRIBUTE}ref\s*=\s*(?:"([^"]*)"|'([^']*)')"""
)
REFERENCE = r"""(?:^|\s)r\s*=\s*(?:"\s*([A-Za-z]*)(\d*)\s*"|'\s*([A-Za-z]*)(\d*)\s*')"""
SHARED_TYPE = r"""(?:^|\s)t\s*=\s*["']s["']"""
STRING_ITEM = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?si[\s/>]")
UNIQUE_COUNT = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?sst\s"
    + UP_TO_ATTRIBUTE.encode()
    + rb"""uniqueCount\s*=\s*["']\s*(\d+)"""
)
SHEET_ENTRY = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?sheet(" + ATTRIBUTES.encode() + rb")/?>")
RELATIONSHIP = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Relationship(" + ATTRIBUTES.encode() + rb")/?>")
MAX_INDEX_PART_BYTES = 64 * 1024 * 1024
XLSB_WORKBOOK = "xl/workbook.bin"
XLSB_STRINGS = "xl/sharedstrings.bin"
XLSB_SHEETS = "xl/worksheets/"
XLSB_ROW = 0x0000
XLSB_CELLS = frozenset(range(0x0002, 0x000C))
"""BrtCellRk to BrtFmlaError; BrtCellBlank (1) holds no value and is not kept."""
XLSB_SHARED_CELL = 0x0007
XLSB_STRING = 0x0013
XLSB_DIMENSION = 0x0094
XLSB_END_SHEET_DATA = 0x0092
XLSB_LAST_ROW = 0x0010_0000
RECORD_HEAD = 16
"""Bytes kept of each .xlsb record: enough for a cell's column, style and value or index."""
CELL_NAME = re.compile(r"([A-Za-z]*)(\d*)")
DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
EXCEL_CELL_BYTES = 32
"""What calamine holds per cell of its grid; used to say how much memory a range would take."""


def _attribute(attributes: bytes, name: str) -> str | None:
    found = re.search(
        rb"(?:^|\s)" + name.encode() + rb"""\s*=\s*(?:"([^"]*)"|'([^']*)')""", attributes
    )
    if found is None:
        return None
    value = found.group(1) if found.group(1) is not None else found.group(2)
    return html.unescape(value.decode("utf-8", errors="replace"))


def column_number(letters: str) -> int:
    """``A`` is 1, ``Z`` 26, ``AA`` 27, ``XFD`` 16,384."""
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


@dataclass
class _Extent:
    """How far one sheet's cells reach, accumulated slice by slice."""

    max_row: int = 0
    max_column: int = 0
    rows_without_number: int = 0
    max_explicit_row: int = 0
    cells_without_reference: int = 0
    widest_row: int = 0
    """Cells in the widest row whose cells all lack a reference."""
    widest_mixed_row: int = 0
    """Cells in the widest row that mixes cells with and without a reference."""
    cells_in_current_row: int = 0
    referenced_in_current_row: int = 0

    def rows(self) -> int:
        if self.cells_without_reference:
            return max(self.max_row, self.max_explicit_row + self.rows_without_number)
        return self.max_row

    def columns(self) -> int:
        mixed = self.max_column + self.widest_mixed_row if self.widest_mixed_row else 0
        return max(self.max_column, self.widest_row, mixed)


@dataclass
class WorkbookGuard:
    """A workbook whose package passed the checks; :meth:`check_sheet` vets one sheet.

    Parts are looked up as calamine does: by lower-cased name, with ``\\`` read as ``/``, the
    main folder taken from ``_rels/.rels`` and sheets from ``workbook.xml`` and its
    relationships. Where that lookup fails, every part that might be the sheet is scanned.
    """

    path: Path
    source: str
    limits: Limits
    parts: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    """Every zip member, by lookup key."""
    sheet_parts: dict[str, str] = field(default_factory=dict)
    """Worksheet part (lookup key) by sheet name, SpreadsheetML only."""
    checked: set[str] = field(default_factory=set)
    """Parts already inflated in full (each is inflated once at open, sheets at check)."""
    shared_strings: str | None = None
    """Lookup key of the shared-string table; None for a workbook that is not SpreadsheetML."""
    binary_sheets: list[str] = field(default_factory=list)
    """The worksheet parts of an .xlsb (calamine reads sheets from ``xl/worksheets/`` only)."""
    string_lengths: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.Int64))
    """Bytes of each shared string (its whole ``<si>`` element, so never less than its text)."""

    @classmethod
    def open(cls, path: Path, *, source: str, limits: Limits) -> WorkbookGuard:
        """Check the package: the zip directory, every part but the worksheets, and the shared
        strings.

        Raises:
            InputFileError: the workbook is damaged or would expand past ``limits``.
        """
        guard = cls(path=path, source=source, limits=limits)
        if not zipfile.is_zipfile(path):
            check_legacy_workbook(path, source=source, limits=limits)
            return guard
        with (
            _damaged_zip(source),
            _open_zip(path, source) as archive,
            path.open("rb") as handle,
        ):
            guard._index(archive.infolist())
            if XLSB_WORKBOOK in guard.parts:
                guard.binary_sheets = [k for k in guard.parts if k.startswith(XLSB_SHEETS)]
                if XLSB_STRINGS in guard.parts:
                    guard._scan_binary_strings(handle, guard.parts[XLSB_STRINGS])
            else:
                folder = guard._main_folder(handle)
                if folder is not None:
                    guard.sheet_parts = guard._sheet_parts(handle, folder)
                    guard.shared_strings = _key(f"{folder}sharedStrings.xml")
                    if guard.shared_strings in guard.parts:
                        guard._scan_shared_strings(handle, guard.parts[guard.shared_strings])
            sheets = {*guard.sheet_parts.values(), *guard.binary_sheets}
            for key, info in guard.parts.items():
                if key not in sheets and key not in guard.checked:
                    guard._drain(handle, key, info)
        return guard

    def check_sheet(self, name: str) -> None:
        """Vet the worksheet calamine is about to read.

        Raises:
            InputFileError: the sheet would expand past the limits.
        """
        if self.binary_sheets:
            with _damaged_zip(self.source), self.path.open("rb") as handle:
                for part in self.binary_sheets:
                    self._scan_binary_sheet(handle, self.parts[part], name)
            return
        if self.shared_strings is None:
            return
        with _damaged_zip(self.source), self.path.open("rb") as handle:
            key = self.sheet_parts.get(name)
            if key is not None and key in self.parts:
                self._scan_sheet(handle, self.parts[key], name)
                return
            for candidate, info in self.parts.items():
                if candidate.endswith(".xml") and candidate != self.shared_strings:
                    self._scan_sheet(handle, info, name)

    def _index(self, members: list[zipfile.ZipInfo]) -> None:
        self._check_directory(members)
        for info in members:
            key = _key(info.filename)
            if key in self.parts:
                raise InputFileError(
                    f"{self.source}: the workbook is damaged (it lists part {info.filename} "
                    "twice). Open it in Excel or LibreOffice, save it again, and import that."
                )
            self.parts[key] = info

    def _drain(self, handle: BinaryIO, key: str, info: zipfile.ZipInfo) -> None:
        for _ in self._inflate(handle, info):
            pass
        self.checked.add(key)

    def _small_part(self, handle: BinaryIO, key: str) -> bytes | None:
        """A part read whole (relationships, the sheet list), which must be small."""
        info = self.parts.get(key)
        if info is None:
            return None
        if info.file_size > MAX_INDEX_PART_BYTES:
            raise self._refuse(
                f"part {info.filename} is {human_size(info.file_size)}; in a workbook it lists "
                "sheets or links and takes a few kilobytes"
            )
        self.checked.add(key)
        return b"".join(self._inflate(handle, info))

    def _main_folder(self, handle: BinaryIO) -> str | None:
        """``xl/`` in a workbook saved by Excel: the folder of the main document, from the
        package relationships; None when this is not SpreadsheetML."""
        relationships = self._small_part(handle, _key("_rels/.rels"))
        if relationships is None:
            return None
        for match in RELATIONSHIP.finditer(relationships):
            kind = _attribute(match.group(1), "Type") or ""
            target = _attribute(match.group(1), "Target")
            if kind.endswith("/relationships/officeDocument") and target is not None:
                return target[: target.rfind("/") + 1].removeprefix("/")
        return "xl/"

    def _sheet_parts(self, handle: BinaryIO, folder: str) -> dict[str, str]:
        """Sheet name -> worksheet part, from ``workbook.xml`` and its relationships."""
        relationships = self._small_part(handle, _key(f"{folder}_rels/workbook.xml.rels"))
        workbook = self._small_part(handle, _key(f"{folder}workbook.xml"))
        if relationships is None or workbook is None:
            return {}
        targets: dict[str, str] = {}
        for match in RELATIONSHIP.finditer(relationships):
            rid = _attribute(match.group(1), "Id")
            target = _attribute(match.group(1), "Target")
            if rid is not None and target is not None:
                path = target[1:] if target.startswith("/") else f"{folder}{target}"
                targets.setdefault(rid, _key(path))
        sheets: dict[str, str] = {}
        for match in SHEET_ENTRY.finditer(workbook):
            name = _attribute(match.group(1), "name")
            rid = _attribute(match.group(1), r"(?:[A-Za-z_][\w.-]*:)?id")
            if name is not None and rid in targets:
                sheets.setdefault(name, targets[rid])
        return sheets

    def _refuse(self, problem: str) -> InputFileError:
        return InputFileError(
            f"{self.source}: {problem}. The workbook was refused before reading it, to protect "
            "the machine's memory. If the file is genuine, save the sheet you need as CSV (or "
            "delete unused rows and columns and save again) and import that; otherwise the file "
            "was crafted or damaged."
        )

    def _check_directory(self, parts: list[zipfile.ZipInfo]) -> None:
        limits = self.limits
        if len(parts) > limits.max_workbook_parts:
            raise self._refuse(
                f"the workbook holds {len(parts):,} parts, more than the limit of "
                f"{limits.max_workbook_parts:,}"
            )
        declared = sum(info.file_size for info in parts)
        if declared > limits.max_unpacked_bytes:
            raise self._refuse(
                f"the workbook unpacks to {human_size(declared)}, more than the limit of "
                f"{human_size(limits.max_unpacked_bytes)} (Limits(max_unpacked_bytes=...))"
            )
        for info in parts:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise InputFileError(
                    f"{self.source}: part {info.filename} uses a compression method "
                    f"({info.compress_type}) that spreadsheet programs do not write. Open the "
                    "file in Excel or LibreOffice, save it again, and import that."
                )
            if info.flag_bits & 0x1:
                raise InputFileError(
                    f"{self.source}: part {info.filename} is encrypted. Save an unprotected copy "
                    "of the workbook and import that."
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_GRACE_BYTES and ratio > limits.max_compression_ratio:
                raise self._refuse(
                    f"part {info.filename} inflates {ratio:,.0f}-fold (from "
                    f"{human_size(info.compress_size)} to {human_size(info.file_size)}), more "
                    f"than the limit of {limits.max_compression_ratio:,}-fold "
                    "(Limits(max_compression_ratio=...))"
                )

    def _inflate(self, handle: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The part's bytes, inflated piece by piece; stops the import the moment it yields more
        than it declared (the declared sizes are held to ``max_unpacked_bytes``)."""
        handle.seek(info.header_offset)
        header = handle.read(LOCAL_HEADER.size)
        if len(header) < LOCAL_HEADER.size or header[:4] != LOCAL_HEADER_SIGNATURE:
            raise InputFileError(
                f"{self.source}: the workbook is damaged (part {info.filename} is not where the "
                "zip directory says). Open it in Excel or LibreOffice, save it again, and import "
                "that."
            )
        _, name_length, extra_length = LOCAL_HEADER.unpack(header)
        handle.seek(info.header_offset + LOCAL_HEADER.size + name_length + extra_length)
        inflater = (
            zlib.decompressobj(-zlib.MAX_WBITS)
            if info.compress_type == zipfile.ZIP_DEFLATED
            else None
        )
        remaining = info.compress_size
        produced = 0
        while remaining > 0:
            raw = handle.read(min(SLICE_BYTES, remaining))
            if not raw:
                break
            remaining -= len(raw)
            pending = raw
            while pending:
                if inflater is None:
                    piece, pending = pending, b""
                else:
                    try:
                        wanted = min(SLICE_BYTES, info.file_size - produced + 1)
                        piece = inflater.decompress(pending, wanted)
                    except zlib.error as exc:
                        raise InputFileError(
                            f"{self.source}: the workbook is damaged (part {info.filename} does "
                            f"not inflate: {exc}). Open it in Excel or LibreOffice, save it "
                            "again, and import that."
                        ) from exc
                    pending = inflater.unconsumed_tail
                produced += len(piece)
                if produced > info.file_size:
                    raise self._refuse(
                        f"part {info.filename} inflates to more than the "
                        f"{human_size(info.file_size)} it declares"
                    )
                if piece:
                    yield piece
                if inflater is not None and inflater.eof:
                    pending = b""
                    remaining = 0

    def _slices(self, handle: BinaryIO, info: zipfile.ZipInfo) -> Iterator[tuple[bytes, int]]:
        """The part's inflated XML in slices that end just before a ``<`` (no tag is cut in
        two, as ``<`` cannot occur inside one), with each slice's offset in the part."""
        carry = b""
        offset = 0
        for piece in self._inflate(handle, info):
            data = carry + piece if carry else piece
            if len(data) < SLICE_BYTES:
                carry = data
                continue
            cut = data.rfind(b"<")
            if cut <= 0:
                cut = len(data)
            yield data[:cut], offset
            offset += cut
            carry = data[cut:]
        if carry:
            yield carry, offset

    def _scan_shared_strings(self, handle: BinaryIO, info: zipfile.ZipInfo) -> None:
        declared: int | None = None
        starts: list[int] = []
        end = 0
        for data, offset in self._slices(handle, info):
            if b"<!" in data:
                raise InputFileError(
                    f"{self.source}: the workbook's shared strings hold XML comments, CDATA or a "
                    "document type, which spreadsheet programs do not write. Open the workbook "
                    "in Excel or LibreOffice, save it again, and import that."
                )
            if declared is None:
                found = UNIQUE_COUNT.search(data)
                declared = int(found.group(1)) if found else 0
            starts.extend(offset + match.start() for match in STRING_ITEM.finditer(data))
            end = offset + len(data)
        positions = pl.Series([*starts, end], dtype=pl.Int64)
        self.string_lengths = positions.diff().slice(1)
        self.checked.add(_key(info.filename))
        count = len(starts)
        if declared and declared > count and declared > HARMLESS_STRING_COUNT:
            raise self._refuse(
                f"its shared-string table declares {declared:,} strings (uniqueCount) but holds "
                f"{count:,}; a reader would reserve memory for all {declared:,}"
            )

    def _records(self, handle: BinaryIO, info: zipfile.ZipInfo) -> Iterator[tuple[int, int, bytes]]:
        """Each record of an .xlsb part, as calamine reads it: type, size and the first
        ``RECORD_HEAD`` bytes of its data (the rest of a long record is skipped, not kept)."""
        buffer = bytearray()
        skip = 0
        for piece in self._inflate(handle, info):
            if skip >= len(piece):
                skip -= len(piece)
                continue
            buffer += memoryview(piece)[skip:]
            skip = 0
            position = 0
            while (header := _record_header(buffer, position)) is not None:
                kind, size, start = header
                available = len(buffer) - start
                if available < min(size, RECORD_HEAD):
                    break
                yield kind, size, bytes(buffer[start : start + min(size, RECORD_HEAD)])
                if available < size:
                    skip = size - available
                    position = len(buffer)
                    break
                position = start + size
            del buffer[:position]

    def _scan_binary_strings(self, handle: BinaryIO, info: zipfile.ZipInfo) -> None:
        """The size of each shared string of an .xlsb (its whole record, UTF-16: never less
        than the text it becomes)."""
        lengths = [size for kind, size, _ in self._records(handle, info) if kind == XLSB_STRING]
        self.string_lengths = pl.Series(lengths, dtype=pl.Int64)
        self.checked.add(_key(info.filename))

    def _scan_binary_sheet(self, handle: BinaryIO, info: zipfile.ZipInfo, sheet: str) -> None:
        """How far an .xlsb sheet's cells reach and the shared text they refer to. Rows past
        1,048,576 end calamine's reading, so they end the scan too. calamine reads every record
        into one buffer that only grows, and takes a cell's column from its first four bytes
        even when the record is shorter: the bytes left by earlier records count, here too."""
        lengths = self.string_lengths.to_list()
        row = rows = columns = shared_text = 0
        buffer = bytearray(RECORD_HEAD)
        for kind, _, head in self._records(handle, info):
            buffer[: len(head)] = head
            if kind == XLSB_ROW:
                row = int.from_bytes(buffer[:4], "little")
                if row > XLSB_LAST_ROW:
                    break
            elif kind in XLSB_CELLS:
                rows = max(rows, row + 1)
                columns = max(columns, int.from_bytes(buffer[:4], "little") + 1)
                if kind == XLSB_SHARED_CELL:
                    index = int.from_bytes(buffer[8:12], "little")
                    if index >= len(lengths):
                        raise InputFileError(
                            f"{self.source}: the workbook is damaged (a cell of sheet "
                            f"'{sheet}' refers to shared string {index:,}, but there are "
                            f"{len(lengths):,}). Open it in Excel, save it again, and import that."
                        )
                    shared_text += lengths[index]
            elif kind == XLSB_DIMENSION:
                first_row, last_row, first_column, last_column = struct.unpack("<4I", buffer)
                declared = (abs(last_row - first_row) + 1) * (abs(last_column - first_column) + 1)
                self._check_cells(sheet, declared, "declares a used range of")
            elif kind == XLSB_END_SHEET_DATA:
                break
        check_column_count(columns, self.limits, self.source, f"sheet '{sheet}' spans ")
        self._check_cells(
            sheet, rows * columns, f"has values up to row {rows:,}, column {columns:,}, a range of"
        )
        self._check_shared_text(sheet, shared_text)

    def _check_cells(self, sheet: str, cells: int, what: str) -> None:
        if cells > self.limits.max_cells:
            raise self._refuse(
                f"sheet '{sheet}' {what} {cells:,} cells (about "
                f"{human_size(cells * EXCEL_CELL_BYTES)} to read), more than the limit of "
                f"{self.limits.max_cells:,} cells (Limits(max_cells=...))"
            )

    def _check_shared_text(self, sheet: str, shared_text: int) -> None:
        if shared_text > self.limits.max_text_bytes:
            raise self._refuse(
                f"the cells of sheet '{sheet}' refer to {human_size(shared_text)} of shared "
                f"text, more than the limit of {human_size(self.limits.max_text_bytes)} "
                "(Limits(max_text_bytes=...))"
            )

    def _scan_sheet(self, handle: BinaryIO, info: zipfile.ZipInfo, sheet: str) -> None:
        """A quick pass over the cell references, then token-by-token passes only when the
        quick one cannot vouch for the sheet: cells without a reference, or shared strings long
        enough that what the cells expand to must be counted exactly."""
        extent = _Extent()
        shared_cells = 0
        for number, text in enumerate(self._texts(handle, info)):
            if number == 0:
                self._check_dimension(text, sheet)
            shared_cells += self._scan_references(text, extent)
        if extent.cells_without_reference:
            extent = _Extent()
            for text in self._texts(handle, info):
                self._scan_rows(text, extent)
        limits = self.limits
        rows, columns = extent.rows(), extent.columns()
        check_column_count(columns, limits, self.source, f"sheet '{sheet}' spans ")
        if rows * columns > limits.max_cells:
            raise self._refuse(
                f"sheet '{sheet}' has values from A1 to {column_letters(columns)}{rows}, a range "
                f"of {rows * columns:,} cells (about "
                f"{human_size(rows * columns * EXCEL_CELL_BYTES)} to read), more than the limit "
                f"of {limits.max_cells:,} cells (Limits(max_cells=...))"
            )
        if _largest(self.string_lengths) * shared_cells <= limits.max_text_bytes:
            return
        self._check_shared_text(
            sheet, sum(self._shared_text(text) for text in self._texts(handle, info))
        )

    def _texts(self, handle: BinaryIO, info: zipfile.ZipInfo) -> Iterator[str]:
        for data, _ in self._slices(handle, info):
            yield data.decode("utf-8", errors="replace")

    @staticmethod
    def _scan_references(text: str, extent: _Extent) -> int:
        """The quick pass: how far the cell references reach; returns the slice's string cells.

        Empty cells (``<c r="Z9" s="1"/>``) count too: it keeps the pass to one expression, and
        formatting alone does not span a range this large in a genuine workbook.
        """
        series = pl.Series([text])
        references = series.str.extract_all(CELL_REFERENCE).explode().drop_nulls()
        cells = int(series.str.count_matches(CELL_TAG).item())
        if cells > references.len():
            extent.cells_without_reference += cells - references.len()
        if references.len():
            without_digits = references.str.strip_chars_end(DIGITS)
            digits = references.str.len_bytes() - without_digits.str.len_bytes()
            letters = (
                without_digits.str.len_bytes()
                - without_digits.str.strip_chars_end(LETTERS).str.len_bytes()
            )
            extent.max_row = max(extent.max_row, _max_number(references, digits))
            extent.max_column = max(extent.max_column, _max_column(without_digits, letters))
        return int(series.str.count_matches(SHARED_CELL).item())

    def _scan_rows(self, text: str, extent: _Extent) -> None:
        """The exact pass for cells without a reference: every cell and row start tag, in
        document order, so that each such cell is placed after the previous one of its row."""
        tokens = pl.Series([text]).str.extract_all(ROW_OR_CELL).explode().drop_nulls()
        if tokens.len() == 0:
            return
        reference = pl.col("token").str.extract_groups(REFERENCE)
        frame = pl.DataFrame({"token": tokens}).select(
            pl.when(pl.col("token").str.contains(CELL_START))
            .then(pl.lit("c"))
            .otherwise(pl.lit("row"))
            .alias("kind"),
            pl.coalesce(reference.struct.field("1"), reference.struct.field("3")).alias("letters"),
            pl.coalesce(reference.struct.field("2"), reference.struct.field("4")).alias("digits"),
        )
        cells = frame.filter(pl.col("kind") == "c")
        referenced = cells.filter(pl.col("letters").is_not_null())
        if referenced.height:
            digits = referenced["digits"]
            extent.max_row = max(extent.max_row, _max_number(digits, digits.str.len_bytes()))
            letters = referenced["letters"]
            extent.max_column = max(
                extent.max_column, _max_column(letters, letters.str.len_bytes())
            )
        rows = frame.filter(pl.col("kind") == "row")
        extent.rows_without_number += int(rows["letters"].is_null().sum())
        numbered = rows["digits"].drop_nulls()
        extent.max_explicit_row = max(
            extent.max_explicit_row, _max_number(numbered, numbered.str.len_bytes())
        )
        unreferenced = int(cells["letters"].is_null().sum())
        if unreferenced:
            extent.cells_without_reference += unreferenced
            self._widest_row(frame, extent)
        _carry_open_row(frame, extent)

    def _check_dimension(self, text: str, sheet: str) -> None:
        """The used range the sheet declares (``<dimension ref="A1:C30"/>``, before its cells)."""
        found = DIMENSION.search(text)
        if found is None:
            return
        reference = found.group(1) if found.group(1) is not None else found.group(2)
        cells = _range_cells(reference)
        if cells > self.limits.max_cells:
            raise self._refuse(
                f"sheet '{sheet}' declares a used range of {reference} ({cells:,} cells), more "
                f"than the limit of {self.limits.max_cells:,} cells (Limits(max_cells=...))"
            )

    @staticmethod
    def _widest_row(tokens: pl.DataFrame, extent: _Extent) -> None:
        """Cells without a reference sit after the previous cell of their row: a row of such
        cells alone is as wide as its cells are many, and one that mixes them with referenced
        cells may reach that many columns past its rightmost reference."""
        marked = tokens.with_columns((pl.col("kind") == "row").cum_sum().alias("row_index"))
        rows = (
            marked.filter(pl.col("kind") == "c")
            .group_by("row_index")
            .agg(
                pl.len().alias("cells"),
                pl.col("letters").is_not_null().sum().alias("referenced"),
            )
            .with_columns(
                pl.when(pl.col("row_index") == 0)
                .then(pl.col("cells") + extent.cells_in_current_row)
                .otherwise(pl.col("cells"))
                .alias("cells"),
                pl.when(pl.col("row_index") == 0)
                .then(pl.col("referenced") + extent.referenced_in_current_row)
                .otherwise(pl.col("referenced"))
                .alias("referenced"),
            )
            .filter(pl.col("cells") > pl.col("referenced"))
        )
        plain = rows.filter(pl.col("referenced") == 0)["cells"]
        mixed = rows.filter(pl.col("referenced") > 0)["cells"]
        extent.widest_row = max(extent.widest_row, _largest(plain))
        extent.widest_mixed_row = max(extent.widest_mixed_row, _largest(mixed))

    def _shared_text(self, text: str) -> int:
        """Bytes of shared text the slice's string cells refer to. Every ``<v>`` of such a cell
        counts (calamine keeps the last; a crafted cell may hold several), and one whose index
        is not plain digits counts as the longest string."""
        tokens = pl.Series([text]).str.extract_all(CELL_OR_VALUE).explode().drop_nulls()
        if tokens.len() == 0:
            return 0
        token = pl.col("token")
        frame = pl.DataFrame({"token": tokens}).with_columns(
            token.str.contains(CELL_START).alias("is_cell"),
            token.str.contains(SHARED_TYPE).alias("shared"),
            (token.str.len_bytes() - token.str.strip_chars_end(DIGITS).str.len_bytes()).alias(
                "digits"
            ),
        )
        frame = frame.with_columns(pl.col("is_cell").cum_sum().alias("cell"))
        shared = frame.filter(pl.col("is_cell") & pl.col("shared")).select("cell")
        values = frame.filter(~pl.col("is_cell")).join(shared, on="cell")
        if values.height == 0:
            return 0
        longest = _largest(self.string_lengths)
        count = self.string_lengths.len()
        indexed = values.filter((pl.col("digits") > 0) & (pl.col("digits") <= 18))
        indices = indexed["token"].str.tail(indexed["digits"]).cast(pl.Int64)
        found = indices.filter(indices < count)
        unreadable = values.height - indexed.height
        return int(self.string_lengths.gather(found).sum()) + unreadable * longest


@contextlib.contextmanager
def _damaged_zip(source: str) -> Iterator[None]:
    """A zip too damaged to follow (offsets out of the file, truncated headers) is an input
    error like any other."""
    try:
        yield
    except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile, zlib.error) as exc:
        raise InputFileError(
            f"{source}: the workbook is damaged ({exc}). Open it in Excel or LibreOffice, save "
            "it again, and import that."
        ) from exc


def _open_zip(path: Path, source: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise InputFileError(
            f"{source}: the workbook is damaged ({exc}). Open it in Excel or LibreOffice, save "
            "it again, and import that."
        ) from exc


def _record_header(buffer: bytearray, position: int) -> tuple[int, int, int] | None:
    """Type, size and data offset of the .xlsb record at ``position``, read as calamine reads
    them (a type of one or two bytes, a size of up to four, seven bits each); None when the
    header is not all in ``buffer`` yet."""
    end = len(buffer)
    if position >= end:
        return None
    kind = buffer[position]
    position += 1
    if kind & 0x80:
        if position >= end:
            return None
        kind = (kind & 0x7F) + ((buffer[position] & 0x7F) << 7)
        position += 1
    size = 0
    for shift in range(0, 28, 7):
        if position >= end:
            return None
        byte = buffer[position]
        position += 1
        size += (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    return kind, size, position


def _key(name: str) -> str:
    """How calamine looks a part up: case-insensitively, with ``\\`` as ``/``."""
    return name.replace("\\", "/").lower()


def _carry_open_row(tokens: pl.DataFrame, extent: _Extent) -> None:
    """Count the cells of the row still open at the end of the slice: it may continue in the
    next one."""
    rows = (tokens["kind"] == "row").arg_true()
    tail = tokens if rows.len() == 0 else tokens.slice(int(rows[-1]))
    cells = tail.filter(pl.col("kind") == "c")
    referenced = int(cells["letters"].is_not_null().sum())
    if rows.len() == 0:
        extent.cells_in_current_row += cells.height
        extent.referenced_in_current_row += referenced
    else:
        extent.cells_in_current_row = cells.height
        extent.referenced_in_current_row = referenced


def _largest(numbers: pl.Series) -> int:
    """The largest of integer ``numbers``; 0 when there are none."""
    largest = numbers.max() if numbers.len() else None
    return int(largest) if isinstance(largest, int) else 0


def _max_number(numbers: pl.Series, lengths: pl.Series) -> int:
    """The largest of these decimal numbers (or of their trailing digits, ``lengths`` long);
    ones too long for an integer count as huge."""
    if numbers.len() == 0:
        return 0
    longest = _largest(lengths)
    if longest == 0:
        return 0
    if longest > 18:
        return 10**18
    return _largest(numbers.filter(lengths == longest).str.tail(longest).cast(pl.Int64))


def _max_column(names: pl.Series, lengths: pl.Series) -> int:
    """The rightmost column of these names (or of their trailing letters, ``lengths`` long):
    among the longest, the alphabetically last."""
    if names.len() == 0:
        return 0
    longest = _largest(lengths)
    if longest == 0:
        return 0
    if longest > 12:
        return 10**18
    last = names.filter(lengths == longest).str.tail(longest).str.to_uppercase().max()
    return column_number(str(last))


def _range_cells(reference: str) -> int:
    """Cells in ``A1:C3`` (9), or 1 for a single cell; 0 when it is not a cell range."""
    corners = [
        CELL_NAME.fullmatch(corner.strip().replace("$", "")) for corner in reference.split(":")
    ]
    if not corners or any(c is None for c in corners) or len(corners) > 2:
        return 0
    points = [
        (int(c.group(2)[:18] or 0), column_number(c.group(1)[:12]))
        for c in corners
        if c is not None
    ]
    rows = max(p[0] for p in points) - min(p[0] for p in points) + 1
    columns = max(p[1] for p in points) - min(p[1] for p in points) + 1
    return rows * columns
