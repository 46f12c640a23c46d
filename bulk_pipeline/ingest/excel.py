"""Excel workbooks (.xlsx, .xlsm, .xlsb, .xls) and OpenDocument sheets, read with calamine.

A workbook often holds several sheets; the sheet name says what the rows are ("Contacts",
"Organizations"), so it picks the sheet and hints the entity. Cells come back as text the way a
person would type them: numbers without a spurious ".0", dates as ISO 8601.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import fastexcel
import polars as pl

from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    InputFileError,
    Limits,
    RawTable,
    SkippedSheet,
    blank_header_positions,
    check_row_count,
    entity_from_label,
    finish_frame,
    unique_headers,
)
from bulk_pipeline.ingest.workbook_guard import WorkbookGuard

RUST_PANIC = "PanicException"
"""What a panic inside calamine surfaces as (pyo3's, a BaseException): a reader bug on a damaged
file, not a reason to crash the run."""
MIDNIGHT = r"^(\d{4}-\d{2}-\d{2}) 00:00:00(?:\.0+)?$"
TIMESTAMP = r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)$"


def read_excel(
    path: Path,
    *,
    source: str,
    limits: Limits,
    entity: Entity | None = None,
    chosen_sheet: str | None = None,
) -> RawTable:
    """Read the ``chosen_sheet``, else the sheet that holds ``entity`` (or the first sheet that
    names one), as strings; the other sheets are listed as skipped.

    The workbook, then the sheet, pass ``WorkbookGuard`` before calamine reads them.
    """
    guard = WorkbookGuard.open(path, source=source, limits=limits)
    with _reading(source):
        workbook = fastexcel.read_excel(path)
        names = list(workbook.sheet_names)
        name = pick_sheet(names, entity, source, chosen_sheet)
    table = _read_sheet(workbook, guard, name, source=source, limits=limits)
    table.skipped_sheets = [
        SkippedSheet(n, _skip_reason(n, "another sheet was chosen")) for n in names if n != name
    ]
    return table


def read_workbook(path: Path, *, source: str, limits: Limits) -> list[RawTable]:
    """Every sheet whose name names an entity ("Companies", "Contacts", "Deals"...), in the
    workbook's order; a workbook without such sheets is read as ``read_excel`` reads it.

    Empty sheets and sheets whose names name no entity are listed as skipped on the first
    table read."""
    guard = WorkbookGuard.open(path, source=source, limits=limits)
    with _reading(source):
        workbook = fastexcel.read_excel(path)
        names = list(workbook.sheet_names)
    labelled = [name for name in names if entity_from_label(name) is not None]
    if not labelled:
        return [read_excel(path, source=source, limits=limits)]
    tables: list[RawTable] = []
    skipped = [SkippedSheet(n, "its name names no entity") for n in names if n not in labelled]
    for name in labelled:
        try:
            tables.append(_read_sheet(workbook, guard, name, source=source, limits=limits))
        except EmptySheetError:
            skipped.append(SkippedSheet(name, "it is empty"))
    if not tables:
        raise InputFileError(
            f"{source}: every sheet is empty ({', '.join(labelled)}). Put a header row and the "
            "data on the sheets, and import again."
        )
    tables[0].skipped_sheets = skipped
    return tables


class EmptySheetError(InputFileError):
    """A sheet with no cell holding anything."""


@contextmanager
def _reading(source: str) -> Iterator[None]:
    """calamine's failures as the person's problem: a damaged or protected workbook."""
    try:
        yield
    except fastexcel.FastExcelError as exc:
        raise InputFileError(
            f"{source}: cannot be read as a workbook ({exc}). If it is password-protected or "
            "damaged, open it in Excel, save an unprotected copy, and import that."
        ) from exc
    except BaseException as exc:
        if type(exc).__name__ != RUST_PANIC:
            raise
        raise InputFileError(
            f"{source}: cannot be read as a workbook: the reader failed on it ({exc}). Open it "
            "in Excel or LibreOffice, save it again (as .xlsx), and import that."
        ) from exc


def _read_sheet(
    workbook: fastexcel.ExcelReader,
    guard: WorkbookGuard,
    name: str,
    *,
    source: str,
    limits: Limits,
) -> RawTable:
    with _reading(source):
        guard.check_sheet(name)
        sheet = workbook.load_sheet(name, header_row=None, skip_rows=0, dtypes="string")
        check_row_count(max(sheet.height - 1, 0), limits, source)
        cells = sheet.to_polars()
    cells = cells.with_row_index(LINE_COLUMN, offset=1)
    sources = [column for column in cells.columns if column != LINE_COLUMN]
    non_blank = (
        cells.filter(
            pl.any_horizontal(pl.exclude(LINE_COLUMN).str.contains(r"\S").fill_null(False))
        )
        if sources
        else cells
    )
    if non_blank.height == 0:
        raise EmptySheetError(
            f"{source}: sheet '{name}' is empty. Put a header row and the data on that sheet, "
            "or pick another sheet."
        )
    header_line = int(non_blank[LINE_COLUMN][0])
    header_cells: list[str | None] = list(non_blank.row(0)[1:])
    headers = unique_headers(header_cells)
    blanks = [headers[i] for i in blank_header_positions(header_cells)]
    rows = (
        cells.filter(pl.col(LINE_COLUMN) > header_line)
        .with_columns(
            pl.col(sources).str.replace(MIDNIGHT, "$1").str.replace(TIMESTAMP, "${1}T${2}")
        )
        .select(*sources, LINE_COLUMN)
        .rename(dict(zip(sources, headers, strict=True)))
    )
    return RawTable(
        frame=finish_frame(rows, blanks),
        source=source,
        entity_hint=entity_from_label(name),
        sheet=name,
    )


def _skip_reason(name: str, why: str) -> str:
    label = entity_from_label(name)
    if label is not None:
        return f"holds {label.value} (by its name); {why}"
    return f"its name names no entity; {why}"


def pick_sheet(
    names: Sequence[str], entity: Entity | None, source: str, sheet: str | None = None
) -> str:
    """The sheet chosen by name; else the sheet whose name is the entity; else the first sheet
    naming any entity, else the first.

    With ``entity`` given and no sheet named for it, a sheet that names no entity is taken
    ("Sheet1"), but never one named for another entity ("Companies" is not read as contacts).
    A chosen sheet matches exactly, or ignoring case.
    """
    if not names:
        raise InputFileError(f"{source}: the workbook has no sheets.")
    if sheet is not None:
        matches = [n for n in names if n == sheet] or [
            n for n in names if n.casefold() == sheet.casefold()
        ]
        if len(matches) != 1:
            raise InputFileError(
                f"{source}: no sheet is named {sheet!r}; the sheets are "
                f"{', '.join(repr(n) for n in names)}. Pass one of them to --sheet."
            )
        return matches[0]
    labelled = [(name, entity_from_label(name)) for name in names]
    if entity is not None:
        for name, label in labelled:
            if label == entity:
                return name
        for name, label in labelled:
            if label is None:
                return name
        raise InputFileError(
            f"{source}: no sheet holds {entity}; the sheets are {', '.join(names)}. Rename the "
            f"sheet that holds them to '{entity.value.capitalize()}', or import as another entity."
        )
    for name, label in labelled:
        if label is not None:
            return name
    return names[0]
