"""Crafted and malformed input files, built at test time (no binaries in git).

Each ``Crafted`` case is a file an outside review or a fuzzer produced, or one shaped like it: a
workbook that expands to gigabytes, JSON nested 10,000 deep, a number with 5,000 digits, Parquet
types polars cannot load. The same cases seed the fuzz suite (``test_fuzz.py``) and are checked
one by one in ``test_crafted.py``.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOCUMENT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
HEADER_ROW = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
"""Email and Name, from the shared strings of ``shared_strings()``."""


def sheet_xml(rows: str, *, dimension: str | None = None, prefix: str = "") -> str:
    declared = f'<{prefix}dimension ref="{dimension}"/>' if dimension else ""
    namespace = f' xmlns:{prefix[:-1]}="{MAIN}"' if prefix else ""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<{prefix}worksheet xmlns="{MAIN}"{namespace}>{declared}'
        f"<{prefix}sheetData>{rows}</{prefix}sheetData></{prefix}worksheet>"
    )


def shared_strings(strings: list[str], *, unique_count: int | None = None) -> str:
    items = "".join(f"<si><t>{text}</t></si>" for text in strings)
    count = len(strings) if unique_count is None else unique_count
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<sst xmlns="{MAIN}" count="{len(strings)}" uniqueCount="{count}">{items}</sst>'
    )


def workbook(
    path: Path,
    sheet: str,
    strings: str | None = None,
    *,
    folder: str = "xl",
    sheet_name: str = "Contacts",
    extra: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A minimal SpreadsheetML package with one sheet, as calamine and Excel read it."""
    path.write_bytes(
        workbook_bytes(
            sheet,
            strings,
            folder=folder,
            sheet_name=sheet_name,
            extra=extra,
            compression=compression,
        )
    )
    return path


def workbook_bytes(
    sheet: str,
    strings: str | None = None,
    *,
    folder: str = "xl",
    sheet_name: str = "Contacts",
    extra: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    parts: dict[str, str | bytes] = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType="application'
            '/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{RELATIONSHIPS}">'
            f'<Relationship Id="rId1" Type="{DOCUMENT}/officeDocument" '
            f'Target="{folder}/workbook.xml"/></Relationships>'
        ),
        f"{folder}/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" '
            f'xmlns:r="{DOCUMENT}"><sheets><sheet name="{sheet_name}" sheetId="1" '
            'r:id="rId1"/></sheets></workbook>'
        ),
        f"{folder}/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{RELATIONSHIPS}">'
            f'<Relationship Id="rId1" Type="{DOCUMENT}/worksheet" '
            'Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{DOCUMENT}/sharedStrings" '
            'Target="sharedStrings.xml"/></Relationships>'
        ),
        f"{folder}/worksheets/sheet1.xml": sheet,
        f"{folder}/sharedStrings.xml": strings or shared_strings(["Email", "Name"]),
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def record(kind: int, data: bytes = b"") -> bytes:
    """One .xlsb record: its type and size as 7-bit groups, then its data."""
    head = bytes([kind]) if kind < 0x80 else bytes([(kind & 0x7F) | 0x80, kind >> 7])
    size, length = len(data), bytearray()
    while True:
        length.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    return head + bytes(length) + data


def wide(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def text_cell(column: int, text: str) -> bytes:
    return record(0x0006, struct.pack("<II", column, 0) + wide(text))


def number_cell(column: int, number: float) -> bytes:
    return record(0x0005, struct.pack("<IId", column, 0, number))


def shared_cell(column: int, index: int) -> bytes:
    return record(0x0007, struct.pack("<III", column, 0, index))


def row_record(number: int) -> bytes:
    """A row header (0-based row number)."""
    return record(0x0000, struct.pack("<IIH", number, 0, 0) + bytes(5))


def binary_workbook(
    path: Path | BinaryIO,
    cells: bytes,
    strings: list[str] | None = None,
    *,
    sheet_name: str = "Contacts",
) -> Path | BinaryIO:
    """A minimal .xlsb (written to a path or a buffer): one sheet of these row and cell
    records."""
    workbook_bin = (
        record(0x0083)
        + record(0x008F)
        + record(0x009C, struct.pack("<II", 0, 1) + wide("rId1") + wide(sheet_name))
        + record(0x0090)
        + record(0x0084)
    )
    sheet_bin = (
        record(0x0081)
        + record(0x0094, struct.pack("<IIII", 0, 1, 0, 1))
        + record(0x0091)
        + cells
        + record(0x0092)
        + record(0x0082)
    )
    parts: dict[str, bytes] = {
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats'
        b'.org/package/2006/content-types"/>',
        "_rels/.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{RELATIONSHIPS}"><Relationship '
            f'Id="rId1" Type="{DOCUMENT}/officeDocument" Target="xl/workbook.bin"/>'
            "</Relationships>"
        ).encode(),
        "xl/workbook.bin": workbook_bin,
        "xl/_rels/workbook.bin.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{RELATIONSHIPS}"><Relationship '
            f'Id="rId1" Type="{DOCUMENT}/worksheet" Target="worksheets/sheet1.bin"/>'
            "</Relationships>"
        ).encode(),
        "xl/worksheets/sheet1.bin": sheet_bin,
    }
    if strings is not None:
        items = b"".join(record(0x0013, b"\x00" + wide(text)) for text in strings)
        count = struct.pack("<II", len(strings), len(strings))
        parts["xl/sharedStrings.bin"] = record(0x009F, count) + items + record(0x00A0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return path


def biff(kind: int, body: bytes = b"") -> bytes:
    """One BIFF record of a legacy .xls workbook stream."""
    return struct.pack("<HH", kind, len(body)) + body


def biff_number(row: int, column: int, value: float) -> bytes:
    return biff(0x0203, struct.pack("<HHHd", row, column, 0, value))


def biff_label(row: int, column: int, text: str) -> bytes:
    encoded = text.encode("utf-16-le")
    return biff(0x0204, struct.pack("<HHHHB", row, column, 0, len(text), 1) + encoded)


def biff_shared_cell(row: int, column: int, index: int) -> bytes:
    return biff(0x00FD, struct.pack("<HHHI", row, column, 0, index))


def biff_shared_strings(strings: list[str], *, split_at: int | None = None) -> bytes:
    """An SST record of 8-bit strings; with ``split_at``, the table goes on in a CONTINUE record
    from that byte, which repeats the flag byte when it cuts a string's characters."""
    table = struct.pack("<II", len(strings), len(strings))
    ends = []
    for text in strings:
        table += struct.pack("<HB", len(text), 0)
        ends.append((len(table), len(table) + len(text)))
        table += text.encode("latin-1")
    if split_at is None:
        return biff(0x00FC, table)
    inside = any(start <= split_at < end for start, end in ends)
    rest = (b"\x00" if inside else b"") + table[split_at:]
    return biff(0x00FC, table[:split_at]) + biff(0x003C, rest)


def legacy_workbook(
    path: Path,
    cells: bytes,
    *,
    dimensions: tuple[int, int, int, int] = (0, 3, 0, 2),
    sheet_name: str = "Contacts",
    strings: bytes = b"",
) -> Path:
    path.write_bytes(
        legacy_workbook_bytes(cells, dimensions=dimensions, sheet_name=sheet_name, strings=strings)
    )
    return path


def legacy_workbook_bytes(
    cells: bytes,
    *,
    dimensions: tuple[int, int, int, int] = (0, 3, 0, 2),
    sheet_name: str = "Contacts",
    strings: bytes = b"",
) -> bytes:
    """A minimal .xls: an OLE2 compound file whose Workbook stream (BIFF8) holds one sheet of
    these cell records, declaring ``dimensions`` (first row, row after the last, first column,
    column after the last)."""
    bof_globals = biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0, 0, 0, 0))
    filler = biff(0x0FFF, bytes(4096))
    """An unknown record the reader skips: it makes the stream too long for the mini stream."""
    name = bytes([len(sheet_name), 0]) + sheet_name.encode("latin-1")
    globals_length = len(bof_globals) + len(filler) + len(strings) + 4 + 6 + len(name) + 4
    sheet = (
        biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0010, 0, 0, 0, 0))
        + biff(0x0200, struct.pack("<IIHHH", *dimensions, 0))
        + cells
        + biff(0x000A)
    )
    stream = (
        bof_globals
        + filler
        + strings
        + biff(0x0085, struct.pack("<IBB", globals_length, 0, 0) + name)
        + biff(0x000A)
        + sheet
    )
    return _compound_file(stream)


def _compound_file(stream: bytes) -> bytes:
    """An OLE2 compound file of 512-byte sectors: FAT, directory, then the Workbook stream."""
    sectors = (len(stream) + 511) // 512
    fat = [0xFFFFFFFD, 0xFFFFFFFE, *range(3, 2 + sectors), 0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))

    def entry(name: str, kind: int, child: int, start: int, length: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le")
        links = struct.pack("<HBBIII", len(encoded), kind, 1, 0xFFFFFFFF, 0xFFFFFFFF, child)
        return encoded.ljust(64, b"\0") + links + bytes(36) + struct.pack("<III", start, length, 0)

    directory = entry("Root Entry", 5, 1, 0xFFFFFFFE, 0) + entry(
        "Workbook", 2, 0xFFFFFFFF, 2, len(stream)
    )
    header = (
        bytes.fromhex("d0cf11e0a1b11ae1")
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + bytes(6)
        + struct.pack("<9I", 0, 1, 1, 0, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)
        + struct.pack("<109I", 0, *[0xFFFFFFFF] * 108)
    )
    return (
        header
        + struct.pack("<128I", *fat)
        + directory.ljust(512, b"\0")
        + stream.ljust(sectors * 512, b"\0")
    )


BINARY_HEADER = row_record(0) + text_cell(0, "Email") + text_cell(1, "Name")


def declare_size(path: Path, part: str, size: int) -> Path:
    """Rewrite the uncompressed size a zip declares for ``part`` (local and central headers)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(part)
    struct.pack_into("<I", data, info.header_offset + 22, size)
    name = part.encode()
    central = 0
    while True:
        central = data.find(b"PK\x01\x02", central)
        length = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46 : central + 46 + length]) == name:
            struct.pack_into("<I", data, central + 24, size)
            break
        central += 4
    path.write_bytes(bytes(data))
    return path


def _far_cell(path: Path) -> Path:
    """The 5 KB workbook that made calamine allocate gigabytes: a cell in A1, one in XFD1048576."""
    far = '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    return workbook(path, sheet_xml(HEADER_ROW + far))


def _declared_dimension(path: Path) -> Path:
    return workbook(path, sheet_xml(HEADER_ROW, dimension="A1:XFD1048576"))


def _shared_string_count(path: Path) -> Path:
    """uniqueCount="2147483647": calamine reserves 51.5 GB for strings that are not there."""
    return workbook(
        path,
        sheet_xml(HEADER_ROW),
        shared_strings(["Email", "Name"], unique_count=2**31 - 1),
    )


def _shared_string_expansion(path: Path) -> Path:
    """The 415 KB workbook that grew past 8 GB: one 32,000-character shared string referenced
    by 260,000 cells, each of which becomes its own copy."""
    cells = "".join(
        f'<row r="{r}"><c r="A{r}" t="s"><v>2</v></c><c r="B{r}" t="s"><v>2</v></c></row>'
        for r in range(2, 130_002)
    )
    return workbook(
        path, sheet_xml(HEADER_ROW + cells), shared_strings(["Email", "Name", "x" * 32_000])
    )


def _attribute_tricks(path: Path) -> Path:
    """A far cell hidden from naive patterns: ``>`` in a quoted attribute, single quotes,
    spaces around ``=``, a namespace prefix."""
    cells = (
        "<row r='2'><c foo=\"a>b\" r = 'ZZ1000000'><v>1</v></c></row>"
        f'<row r="3"><x:c xmlns:x="{MAIN}" r="A3"><x:v>1</x:v></x:c></row>'
    )
    return workbook(path, sheet_xml(HEADER_ROW + cells))


def _cells_without_reference(path: Path) -> Path:
    """Cells without ``r`` sit after the previous cell: 20,000 of them in a row far down."""
    row = '<row r="5000">' + "<c><v>1</v></c>" * 20_000 + "</row>"
    return workbook(path, sheet_xml(HEADER_ROW + row))


def _inflation_bomb(path: Path) -> Path:
    """A part that inflates 1,000-fold (honestly declared)."""
    filler = {"xl/media/filler.xml": b" " * (64 << 20)}
    return workbook(path, sheet_xml(HEADER_ROW), extra=filler)


def _lying_size(path: Path) -> Path:
    """A part that declares 1 KB and inflates to 64 MB."""
    path = workbook(path, sheet_xml(HEADER_ROW), extra={"xl/media/filler.xml": b" " * (64 << 20)})
    return declare_size(path, "xl/media/filler.xml", 1024)


def _declared_huge(path: Path) -> Path:
    """A part that declares 3.9 GB (within one zip entry's 32-bit size)."""
    path = workbook(path, sheet_xml(HEADER_ROW), extra={"xl/media/filler.xml": b"x"})
    path = declare_size(path, "xl/media/filler.xml", 0xF0000000)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xl/media/filler2.xml", b"x")
    return declare_size(path, "xl/media/filler2.xml", 0xF0000000)


def _comment_in_shared_strings(path: Path) -> Path:
    strings = shared_strings(["Email", "Name"]).replace("<si><t>Name", "<si><!-- <si> --><t>Name")
    return workbook(path, sheet_xml(HEADER_ROW), strings)


def _binary_far_cell(path: Path) -> Path:
    """An .xlsb with one value in row 1,000,001, column 10,001: a grid of 10 billion cells."""
    binary_workbook(path, BINARY_HEADER + row_record(1_000_000) + number_cell(10_000, 1.0))
    return path


def _binary_shared_expansion(path: Path) -> Path:
    """An .xlsb whose 100,000 cells all refer to one 30,000-character shared string."""
    cells = b"".join(row_record(r) + shared_cell(0, 0) for r in range(1, 100_001))
    binary_workbook(path, BINARY_HEADER + cells, ["x" * 30_000])
    return path


def _binary_string_out_of_range(path: Path) -> Path:
    """A shared-string index past the table: calamine panics on it."""
    binary_workbook(path, BINARY_HEADER + row_record(1) + shared_cell(0, 7), ["only"])
    return path


def _legacy_declared_range(path: Path) -> Path:
    """An .xls whose DIMENSIONS declares four billion rows: calamine reserves 43 TB for them."""
    header = biff_label(0, 0, "Email") + biff_label(0, 1, "Name")
    return legacy_workbook(path, header, dimensions=(0, 0xFFFFFFFF, 0, 255))


def _legacy_far_cell(path: Path) -> Path:
    """An .xls with a value in row 65,536, column 65,536: a grid of 4 billion cells."""
    header = biff_label(0, 0, "Email") + biff_label(0, 1, "Name")
    return legacy_workbook(path, header + biff_number(65_535, 65_535, 1.0))


def _legacy_shared_expansion(path: Path) -> Path:
    """An .xls whose 196,608 cells all refer to one 4,000-character shared string."""
    cells = b"".join(
        biff_shared_cell(row, column, 2) for row in range(1, 65_536) for column in range(3)
    )
    header = biff_shared_cell(0, 0, 0) + biff_shared_cell(0, 1, 1)
    strings = biff_shared_strings(["Email", "Name", "x" * 4_000])
    return legacy_workbook(path, header + cells, dimensions=(0, 65_536, 0, 3), strings=strings)


def _not_a_zip(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    return path


def _deep_json(path: Path) -> Path:
    path.write_text('[{"email": "a@x.com", "tags": ' + "[" * 10_000 + "]" * 10_000 + "}]")
    return path


def _huge_number(path: Path) -> Path:
    path.write_text('[{"email": "a@x.com", "employees": ' + "9" * 5_000 + "}]")
    return path


def _huge_number_ndjson(path: Path) -> Path:
    path.write_text('{"email": "a@x.com", "employees": ' + "9" * 5_000 + "}\n")
    return path


def _lone_surrogate(path: Path) -> Path:
    path.write_text('[{"email": "a@x.com", "name": "Ann \\ud800"}, {"email": "b@x.com"}]')
    return path


def _lone_surrogate_key(path: Path) -> Path:
    path.write_text('[{"email": "a@x.com", "\\udc00": "x"}]')
    return path


def _parquet(columns: dict[str, pa.Array]) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        table = pa.table(
            [pa.array(["a@x.com"]), *columns.values()], names=["email", *columns.keys()]
        )
        pq.write_table(table, path)
        return path

    return build


def _duplicate_parquet_columns(path: Path) -> Path:
    table = pa.table([pa.array(["a@x.com"]), pa.array(["x"]), pa.array([1])], names=["email"] * 3)
    pq.write_table(table, path)
    return path


def _dictionary_bomb(path: Path) -> Path:
    """A 100 KB string repeated in 30,000 rows through a Parquet dictionary: 3 GB of text."""
    big = pa.array(["x" * 100_000]).dictionary_encode()
    indices = pa.array([0] * 30_000, pa.int32())
    column = pa.DictionaryArray.from_arrays(indices, big.dictionary)
    pq.write_table(pa.table({"email": column}), path)
    return path


def _duplicate_headers(path: Path) -> Path:
    path.write_text(",".join(["Email"] * 40_000) + "\n" + ",".join(["a@x.com"] * 40_000) + "\n")
    return path


@dataclass(frozen=True)
class Crafted:
    name: str
    file_name: str
    build: Callable[[Path], Path]
    outcome: str
    """``refused`` (an InputFileError before reading), ``error`` (another clear error), or
    ``imports``."""
    message: str = ""
    """A regular expression the error message matches."""


CRAFTED: tuple[Crafted, ...] = (
    Crafted("far cell", "far.xlsx", _far_cell, "refused", r"A1 to XFD1048576.*max_cells"),
    Crafted("far cell (xlsm)", "far.xlsm", _far_cell, "refused", r"XFD1048576"),
    Crafted("declared dimension", "dim.xlsx", _declared_dimension, "refused", r"declares a used"),
    Crafted("shared string count", "sst.xlsx", _shared_string_count, "refused", r"uniqueCount"),
    Crafted(
        "shared string expansion",
        "expand.xlsx",
        _shared_string_expansion,
        "refused",
        r"shared text.*max_text_bytes",
    ),
    Crafted("attribute tricks", "tricks.xlsx", _attribute_tricks, "refused", r"ZZ1000000"),
    Crafted(
        "cells without reference", "noref.xlsx", _cells_without_reference, "refused", "max_cells"
    ),
    Crafted("inflation bomb", "bomb.xlsx", _inflation_bomb, "refused", r"inflates [\d,]+-fold"),
    Crafted("lying size", "lying.xlsx", _lying_size, "refused", r"more than the 1.0 KB it decl"),
    Crafted("declared huge", "huge.xlsx", _declared_huge, "refused", r"max_unpacked_bytes"),
    Crafted("comment in strings", "comment.xlsx", _comment_in_shared_strings, "refused", "comm"),
    Crafted("not a zip", "broken.xlsx", _not_a_zip, "refused", r"cannot be read as a workbook"),
    Crafted(
        "xlsb far cell", "far.xlsb", _binary_far_cell, "refused", r"row 1,000,001, column 10,001"
    ),
    Crafted(
        "xlsb shared string expansion",
        "expand.xlsb",
        _binary_shared_expansion,
        "refused",
        r"shared text.*max_text_bytes",
    ),
    Crafted(
        "xlsb string out of range",
        "range.xlsb",
        _binary_string_out_of_range,
        "refused",
        r"refers to shared string 7, but there are 1",
    ),
    Crafted("deep json", "deep.json", _deep_json, "refused", r"line 1, column \d+: .*nested"),
    Crafted("huge number", "number.json", _huge_number, "imports"),
    Crafted("huge number ndjson", "number.ndjson", _huge_number_ndjson, "imports"),
    Crafted("lone surrogate", "surrogate.json", _lone_surrogate, "imports"),
    Crafted("lone surrogate key", "surrogate_key.json", _lone_surrogate_key, "imports"),
    Crafted(
        "decimal256",
        "dec.parquet",
        _parquet({"amount": pa.array([Decimal("1.50")], pa.decimal256(40, 2))}),
        "imports",
    ),
    Crafted(
        "duration",
        "duration.parquet",
        _parquet({"took": pa.array([timedelta(seconds=5)], pa.duration("s"))}),
        "imports",
    ),
    Crafted("duplicate parquet columns", "dup.parquet", _duplicate_parquet_columns, "imports"),
    Crafted("dictionary bomb", "dict.parquet", _dictionary_bomb, "refused", "max_text_bytes"),
    Crafted("40,000 duplicate headers", "headers.csv", _duplicate_headers, "imports"),
)
