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
    """Cells without ``r`` sit after the previous cell: 60,000 of them in a row far down."""
    row = '<row r="1000">' + "<c><v>1</v></c>" * 60_000 + "</row>"
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
