"""Fuzz every reader: each input imports, or fails with an InputFileError naming the file.

Hypothesis generates CSV, JSON, NDJSON, workbooks and Parquet files, well-formed and not, and
mutates valid ones byte by byte and part by part; the crafted corpus of ``crafted.py`` runs
alongside. Every case is read in one child process (``fuzz_worker.py``) whose address space is
capped, and each case must also stay under a time cap and a peak-memory cap: an exception of any
other type, a dead worker, a hang or a blow-up fails the test, and Hypothesis shrinks the input.

The worker reads with small limits (``FUZZ_LIMITS``) so that a file within them fits the memory
and time caps; ``test_crafted.py`` shows the refusals happen at the default limits too.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import select
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulk_pipeline.ingest.workbook_guard import column_letters
from bulk_pipeline_tests.ingest.crafted import (
    BINARY_HEADER,
    CRAFTED,
    Crafted,
    biff,
    biff_label,
    biff_number,
    binary_workbook,
    legacy_workbook_bytes,
    number_cell,
    record,
    row_record,
    shared_cell,
    shared_strings,
    sheet_xml,
    text_cell,
    workbook_bytes,
)
from bulk_pipeline_tests.ingest.test_csv import assert_same_reading

REPOSITORY = Path(__file__).resolve().parents[2]
ADDRESS_SPACE_BYTES = 6 * 1024**3
"""The worker's hard cap: polars and Arrow reserve about 3 GB of address space up front."""
MEMORY_CAP_BYTES = 1024**3
"""How far one case may grow the worker's resident memory."""
TIME_CAP_SECONDS = 20.0
"""Per case; cases take milliseconds, the margin is for a loaded CI machine."""
FUZZ_LIMITS = {
    "max_rows": 1_000_000,
    "max_columns": 5_000,
    "max_cells": 2_000_000,
    "max_unpacked_bytes": 256 * 1024**2,
    "max_text_bytes": 256 * 1024**2,
}
EXAMPLES_ENV = "BULK_PIPELINE_FUZZ_EXAMPLES"
EXAMPLES = int(os.environ.get(EXAMPLES_ENV) or 100)
"""Cases per generator (eight of them); raise it for a longer hunt."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)


@dataclass(frozen=True)
class Answer:
    outcome: str
    """``table``, ``input_error``, ``crash``, ``died`` or ``timeout``."""
    message: str
    grew: int | None
    """Bytes the worker's resident memory grew to above where the case began."""


class Reader:
    """The worker process: one input file in, one answer out; restarted after it dies."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "POLARS_MAX_THREADS": "2", "RUST_BACKTRACE": "0"}
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulk_pipeline_tests.ingest.fuzz_worker",
                str(ADDRESS_SPACE_BYTES),
                json.dumps(FUZZ_LIMITS),
            ],
            cwd=REPOSITORY,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def read(self, path: Path) -> Answer:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(f"{path}\n")
            process.stdin.flush()
        except BrokenPipeError:
            return self._lost("died", path)
        ready, _, _ = select.select([process.stdout], [], [], TIME_CAP_SECONDS)
        if not ready:
            return self._lost("timeout", path)
        line = process.stdout.readline()
        if not line:
            return self._lost("died", path)
        answer = json.loads(line)
        return Answer(answer["outcome"], answer.get("message", ""), answer["grew"])

    def _lost(self, outcome: str, path: Path) -> Answer:
        assert self.process is not None
        self.process.kill()
        code = self.process.wait()
        self.process = None
        return Answer(outcome, f"{path}: worker exit code {code}", None)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def reader() -> Iterator[Reader]:
    worker = Reader()
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check(reader: Reader, path: Path) -> Answer:
    """The contract every input must keep."""
    answer = reader.read(path)
    assert answer.outcome in ("table", "input_error"), f"{answer.outcome}: {answer.message}"
    if answer.outcome == "input_error":
        assert answer.message.startswith(f"{path}: "), answer.message
    assert answer.grew is None or answer.grew <= MEMORY_CAP_BYTES, (
        f"{path} took {answer.grew:,} bytes"
    )
    return answer


def run_cases(reader: Reader, folder: Path, strategy: st.SearchStrategy[tuple[str, bytes]]) -> int:
    """Check every generated (file name, content); return how many cases ran."""
    counter = itertools.count()
    cases = 0

    @FUZZ
    @given(strategy)
    def case(named: tuple[str, bytes]) -> None:
        nonlocal cases
        cases += 1
        name, content = named
        path = folder / f"{next(counter)}-{name}"
        path.write_bytes(content)
        try:
            check(reader, path)
        finally:
            path.unlink()

    case()
    return cases


# -- text formats -------------------------------------------------------------------------

NASTY_CHARACTERS = list("aZ9 .,;\t|\"'\r\n=+-@\\/\x00\x1a\ufeff\u200b\u00a0éß山\U0001f600{}[]<>&:_")
texts = st.text(
    alphabet=st.sampled_from(NASTY_CHARACTERS) | st.characters(exclude_categories=["Cs"]),
    max_size=24,
)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = draw(st.lists(st.lists(texts, max_size=7), max_size=12))
    delimiter = draw(st.sampled_from(",;\t|"))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    style = draw(st.sampled_from(["minimal", "all", "raw"]))
    if style == "raw":
        text = newline.join(delimiter.join(row) for row in rows)
    else:
        buffer = io.StringIO()
        quoting = csv.QUOTE_MINIMAL if style == "minimal" else csv.QUOTE_ALL
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting)
        writer.writerows(rows)
        text = buffer.getvalue()
    if draw(st.booleans()):
        text = f"sep={delimiter}{newline}{text}"
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    name = draw(st.sampled_from(["export.csv", "export.tsv", "export.txt", "export.dat"]))
    return name, data


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=25,
)
records = st.lists(st.dictionaries(texts | st.sampled_from(["email", "_line", ""]), json_values))
JSON_TWISTS = [
    lambda text: text.replace('"', '"\\ud800', 1),
    lambda text: text.replace("1", "9" * 5_000, 1),
    lambda text: text.replace("[", "[" * 3_000, 1) + "]" * 3_000,
    lambda text: text[: len(text) // 2],
    lambda text: text.replace(":", "::", 1),
    lambda text: "\ufeff" + text,
]


@st.composite
def json_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["array", "keyed", "value", "ndjson"]))
    ascii_only = draw(st.booleans())
    if kind == "ndjson":
        lines = draw(st.lists(records.map(lambda r: r[0] if r else {}) | json_values, max_size=8))
        text = "\n".join(json.dumps(line, ensure_ascii=ascii_only) for line in lines)
        name = draw(st.sampled_from(["export.ndjson", "export.jsonl", "export.json"]))
    else:
        document: Any = draw(records)
        if kind == "keyed":
            key = draw(st.sampled_from(["contacts", "companies", "deals", "results", "x"]))
            document = {key: document, "meta": draw(json_values)}
        elif kind == "value":
            document = draw(json_values)
        text = json.dumps(document, ensure_ascii=ascii_only)
        name = "export.json"
    for twist in draw(st.lists(st.sampled_from(JSON_TWISTS), max_size=2)):
        text = twist(text)
    return name, text.encode("utf-8", errors="surrogatepass")


# -- workbooks ------------------------------------------------------------------------------

SHEET_NAMES = ["Contacts", "Sheet1", "Deals", "Organisations", "ÜBER & <co>", "x" * 31]
cell_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    texts.map(lambda t: "".join(ch for ch in t if ch.isprintable())),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)),
)


FIXED_CREATED = datetime(2024, 1, 1, tzinfo=UTC)
"""Workbooks otherwise record when they were written, so one drawn example would differ from
run to run and Hypothesis would call the test flaky."""


@st.composite
def xlsxwriter_books(draw: st.DrawFn) -> tuple[str, bytes]:
    """Workbooks as a real writer makes them, with random sheets, cells and formats."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False})
    book.set_properties({"created": FIXED_CREATED})
    date_format = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    names = draw(st.lists(st.sampled_from(SHEET_NAMES), min_size=1, max_size=3, unique=True))
    for name in names:
        sheet = book.add_worksheet(name.replace("<", "").replace(">", "")[:31])
        cells = draw(
            st.lists(st.tuples(st.integers(0, 60), st.integers(0, 30), cell_values), max_size=40)
        )
        for row, column, value in cells:
            if isinstance(value, datetime):
                sheet.write_datetime(row, column, value, date_format)
            elif value is not None:
                sheet.write(row, column, value)
    book.close()
    name = draw(st.sampled_from(["book.xlsx", "book.xlsm", "book.csv"]))
    return name, buffer.getvalue()


@st.composite
def raw_cells(draw: st.DrawFn) -> str:
    """One hand-written cell: any type, with or without a reference, near or far."""
    row = draw(st.integers(1, 40) | st.integers(1, 1_048_576) | st.just(2**32 + 5))
    column = draw(st.integers(1, 12) | st.integers(1, 16_384) | st.just(10**6))
    reference = draw(
        st.sampled_from(
            [
                f' r="{column_letters(column)}{row}"',
                f" r='{column_letters(column)}{row}'",
                "",
                ' r=""',
            ]
        )
    )
    kind = draw(st.sampled_from(["n", "s", "str", "inlineStr", "b", "e", "d", "bogus"]))
    value = draw(st.integers(-3, 50) | texts.map(escape))
    body = draw(
        st.sampled_from(
            [
                f"<v>{value}</v>",
                f"<is><t>{value}</t></is>",
                f"<f>1+1</f><v>{value}</v>",
                "",
                f"<v>{value}</v><v>{value}</v>",
            ]
        )
    )
    closing = draw(st.sampled_from(["", "/"]))
    if closing:
        return f'<c{reference} t="{kind}"/>'
    return f'<c{reference} t="{kind}">{body}</c>'


@st.composite
def hand_written_books(draw: st.DrawFn) -> tuple[str, bytes]:
    """SpreadsheetML written by hand: references far and near or missing, odd cell types,
    shared-string indexes out of range, lying counts and dimensions."""
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["", ' r="{n}"', " r='{n}'"]),
                st.lists(raw_cells(), max_size=6),
            ),
            max_size=10,
        )
    )
    xml_rows = "".join(
        f"<row{attribute.format(n=number)}>{''.join(cells)}</row>"
        for number, (attribute, cells) in enumerate(rows, start=1)
    )
    dimension = draw(st.none() | st.sampled_from(["A1", "A1:C9", "A1:XFD1048576", "B2:A1", "?"]))
    strings = draw(st.lists(texts.map(escape), max_size=6))
    unique_count = draw(st.none() | st.integers(0, 2**40))
    sheet = sheet_xml(xml_rows, dimension=dimension)
    if draw(st.integers(0, 5)) == 0:
        sheet = sheet[: draw(st.integers(0, len(sheet)))]
    content = workbook_bytes(
        sheet,
        shared_strings(strings, unique_count=unique_count),
        sheet_name=escape(draw(st.sampled_from(SHEET_NAMES)), {'"': "&quot;"}),
        folder=draw(st.sampled_from(["xl", "XL", "book"])),
    )
    return "hand.xlsx", content


@st.composite
def binary_books(draw: st.DrawFn) -> tuple[str, bytes]:
    """.xlsb sheets of random records: rows near and far, cells of every type with payloads of
    any length, shared-string indexes in and out of range."""
    records = []
    for _ in range(draw(st.integers(0, 12))):
        choice = draw(st.sampled_from(["row", "text", "number", "shared", "raw"]))
        column = draw(st.integers(0, 20) | st.integers(0, 2**32 - 1))
        if choice == "row":
            records.append(row_record(draw(st.integers(0, 50) | st.integers(0, 2**32 - 1))))
        elif choice == "text":
            records.append(text_cell(column, draw(texts)))
        elif choice == "number":
            records.append(number_cell(column, draw(st.floats())))
        elif choice == "shared":
            records.append(shared_cell(column, draw(st.integers(0, 5) | st.integers(0, 2**32 - 1))))
        else:
            kind = draw(st.integers(0, 0x3FFF))
            records.append(record(kind, draw(st.binary(max_size=24))))
    strings = draw(st.none() | st.lists(texts, max_size=4))
    buffer = io.BytesIO()
    binary_workbook(buffer, BINARY_HEADER + b"".join(records), strings)
    return "book.xlsb", buffer.getvalue()


@st.composite
def legacy_books(draw: st.DrawFn) -> tuple[str, bytes]:
    """.xls workbooks of random BIFF records: cells near and far, declared ranges of any size,
    records of any type and length."""
    records = []
    for _ in range(draw(st.integers(0, 10))):
        choice = draw(st.sampled_from(["number", "label", "raw"]))
        row = draw(st.integers(0, 40) | st.integers(0, 65_535))
        column = draw(st.integers(0, 10) | st.integers(0, 65_535))
        if choice == "number":
            records.append(biff_number(row, column, draw(st.floats())))
        elif choice == "label":
            records.append(biff_label(row, column, draw(texts)))
        else:
            records.append(biff(draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=20))))
    dimensions = draw(
        st.tuples(*[st.integers(0, 8) | st.integers(0, 2**32 - 1)] * 2, *[st.integers(0, 300)] * 2)
    )
    header = biff_label(0, 0, "Email") + biff_label(0, 1, "Name")
    return "book.xls", legacy_workbook_bytes(header + b"".join(records), dimensions=dimensions)


# -- Parquet --------------------------------------------------------------------------------

ARROW_COLUMNS: list[tuple[pa.DataType, Callable[[int], Any]]] = [
    (pa.string(), lambda i: f"v{i}@x.com"),
    (pa.large_string(), lambda i: "Zoë" * (i % 3)),
    (pa.binary(), lambda i: bytes([i % 256, 255])),
    (pa.int8(), lambda i: i % 100 - 50),
    (pa.uint64(), lambda i: 2**64 - 1 - i),
    (pa.float16(), lambda i: 0.5 * i),
    (pa.float64(), lambda i: [float("nan"), float("inf"), 1e308, -0.0][i % 4]),
    (pa.bool_(), lambda i: i % 2 == 0),
    (pa.date32(), lambda i: date(1970, 1, 1) + timedelta(days=i * 1000)),
    (pa.date64(), lambda i: date(2000, 2, 29)),
    (pa.timestamp("ns", tz="Europe/Paris"), lambda i: datetime(2020, 3, 29, 2, 30)),
    (pa.timestamp("s"), lambda i: datetime(1, 1, 1) + timedelta(days=i)),
    (pa.time64("ns"), lambda i: time(23, 59, 59, 999_999)),
    (pa.duration("us"), lambda i: timedelta(days=-i, microseconds=1)),
    (pa.decimal128(38, 10), lambda i: Decimal("-12345678901234567890.0123456789")),
    (pa.decimal256(76, 0), lambda i: Decimal(10**75 - i)),
    (pa.null(), lambda i: None),
    (pa.list_(pa.int64()), lambda i: list(range(i % 4))),
    (pa.struct([("a", pa.string()), ("b", pa.int32())]), lambda i: {"a": "x", "b": i}),
    (pa.map_(pa.string(), pa.int64()), lambda i: [("k", i)]),
    (pa.binary(3), lambda i: b"abc"),
]


@st.composite
def parquet_files(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = draw(st.integers(0, 12))
    chosen = draw(st.lists(st.sampled_from(ARROW_COLUMNS), min_size=1, max_size=6))
    names = draw(
        st.lists(st.sampled_from(["email", "Email", "", "_line", "a", "a"]), min_size=len(chosen))
    )
    arrays = []
    for arrow_type, make in chosen:
        values = [None if draw(st.integers(0, 4)) == 0 else make(i) for i in range(rows)]
        array = pa.array(values, arrow_type)
        if pa.types.is_string(arrow_type) and draw(st.booleans()):
            array = array.dictionary_encode()
        arrays.append(array)
    table = pa.table(arrays, names=names[: len(arrays)])
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=draw(st.sampled_from(["snappy", "zstd", "none"])))
    return "export.parquet", buffer.getvalue()


# -- mutations ------------------------------------------------------------------------------

SEEDS: dict[str, Callable[[], bytes]] = {}


def _seed(name: str) -> Callable[[Callable[[], bytes]], Callable[[], bytes]]:
    def register(build: Callable[[], bytes]) -> Callable[[], bytes]:
        SEEDS[name] = build
        return build

    return register


@_seed("book.xlsx")
def _seed_xlsx() -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    book.set_properties({"created": FIXED_CREATED})
    sheet = book.add_worksheet("Contacts")
    for row, values in enumerate([["Email", "Name"], ["a@x.com", "Zoë"], ["b@x.com", 12.5]]):
        sheet.write_row(row, 0, values)
    book.close()
    return buffer.getvalue()


@_seed("export.parquet")
def _seed_parquet() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"email": ["a@x.com", "b@x.com"], "n": [1, 2]}), buffer)
    return buffer.getvalue()


@_seed("export.csv")
def _seed_csv() -> bytes:
    return 'Email,Name\na@x.com,"Zoë, Jr."\nb@x.com,"say ""hi"""\n'.encode()


@_seed("export.json")
def _seed_json() -> bytes:
    return json.dumps({"contacts": [{"email": "a@x.com", "tags": ["x", {"y": 1.50}]}]}).encode()


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file with bytes flipped, cut, repeated or inserted; a workbook also part by
    part, so that the zip stays readable and the XML inside is what breaks."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name]())
    if name.endswith(".xlsx") and draw(st.booleans()):
        return name, _mutate_parts(draw, bytes(data))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        operation = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if operation == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[position:position] = data[position : position + 32] * draw(st.integers(1, 50))
    return name, bytes(data)


XML_SNIPPETS = [
    '<c r="XFD1048576"><v>1</v></c>',
    '<c r="A2" t="s"><v>99999</v></c>',
    "<row>",
    "</row>",
    '<dimension ref="A1:XFD1048576"/>',
    "<si><t>x</t></si>",
    '<sst uniqueCount="4000000000">',
    "&bogus;",
    "<![CDATA[<]]>",
    "<!-- -->",
    "\x00",
    '<c r="A1" t="e"><v>#DIV/0!</v></c>',
]


def _mutate_parts(draw: st.DrawFn, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    target = draw(st.sampled_from(sorted(parts)))
    text = parts[target]
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        snippet = draw(st.sampled_from(XML_SNIPPETS) | texts).encode("utf-8", "surrogatepass")
        text = text[:position] + snippet + text[position:]
    parts[target] = text
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, content in parts.items():
            archive.writestr(part, content)
    return buffer.getvalue()


# -- the tests ------------------------------------------------------------------------------

STRATEGIES: dict[str, st.SearchStrategy[tuple[str, bytes]]] = {
    "csv": csv_files(),
    "json": json_files(),
    "xlsxwriter": xlsxwriter_books(),
    "hand-written xlsx": hand_written_books(),
    "xlsb": binary_books(),
    "xls": legacy_books(),
    "parquet": parquet_files(),
    "mutated": mutated_files(),
}


@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_generated_files_import_or_fail_cleanly(kind: str, reader: Reader, folder: Path) -> None:
    assert run_cases(reader, folder, STRATEGIES[kind]) >= EXAMPLES


@pytest.mark.parametrize("case", CRAFTED, ids=[case.name for case in CRAFTED])
def test_crafted_corpus_stays_within_the_caps(case: Crafted, reader: Reader, folder: Path) -> None:
    path = case.build(folder / case.file_name)
    answer = check(reader, path)
    if case.outcome == "refused":
        assert answer.outcome == "input_error"


@FUZZ
@given(file=csv_files(), block_bytes=st.integers(1, 40))
def test_generated_csv_files_read_in_blocks_as_when_read_whole(
    file: tuple[str, bytes], block_bytes: int, tmp_path: Path
) -> None:
    name, data = file
    path = tmp_path / name
    path.write_bytes(data)
    assert_same_reading(path, block_bytes)
