"""JSON exports: an array of objects, an object keyed by entity, or one object per line (NDJSON).

CRM and API exports nest values (addresses, tag lists); those become JSON text in one column, so
nothing is lost and the user can map or ignore them. This format needs a Python pass over the
objects; JSON files large enough for that to matter are better exported as NDJSON or Parquet.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import polars as pl

from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest.encoding import to_utf8
from bulk_pipeline.ingest.table import (
    LINE_COLUMN,
    InputFileError,
    Limits,
    RawTable,
    RowIssue,
    blank_header_positions,
    check_column_count,
    check_row_count,
    entity_from_label,
    finish_frame,
    unique_headers,
)

RAW_VALUE = "_raw"
"""Key under which a RowIssue keeps an element or line that is not an object."""
MAX_INT_DIGITS = 4_000
"""Longer whole numbers are kept as Decimal: Python refuses to convert ints past 4,300 digits."""
REPORTED_DEPTH = 500
"""Nesting beyond Python's recursion limit (about 1,000 levels) cannot be read; the error points
at the first value nested deeper than this."""
STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
"""Strings (skipped whole) and brackets: enough to follow the nesting depth through the text."""
TOO_DEEP = (
    "values are nested deeper than can be read (arrays or objects inside each other about "
    "1,000 times)"
)


def read_json(path: Path, *, source: str, limits: Limits, entity: Entity | None = None) -> RawTable:
    """Read a JSON document; falls back to NDJSON when the text holds one object per line."""
    parsed = _document(path, source, limits)
    if isinstance(parsed, RawTable):
        return parsed
    document, text, encoding = parsed
    key: str | None = None
    if isinstance(document, dict):
        key, document = _pick_list(document, entity, source)
    return _array_table(document, key, text, source, limits, encoding)


def read_json_tables(path: Path, *, source: str, limits: Limits) -> list[RawTable]:
    """Every array of a JSON object under a key naming an entity (``{"companies": [...],
    "contacts": [...]}``), in the object's order; any other document as ``read_json`` reads it."""
    parsed = _document(path, source, limits)
    if isinstance(parsed, RawTable):
        return [parsed]
    document, text, encoding = parsed
    if isinstance(document, dict):
        keys = [
            key
            for key, value in document.items()
            if isinstance(value, list) and entity_from_label(key) is not None
        ]
        if keys:
            return [
                _array_table(document[key], key, text, source, limits, encoding) for key in keys
            ]
        key, document = _pick_list(document, None, source)
        return [_array_table(document, key, text, source, limits, encoding)]
    return [_array_table(document, None, text, source, limits, encoding)]


def _document(path: Path, source: str, limits: Limits) -> tuple[Any, str, str] | RawTable:
    """The parsed document with its text and encoding; or the table, for NDJSON."""
    decoded = to_utf8(path.read_bytes(), source)
    text = decoded.data.decode("utf-8")
    if not text.strip():
        raise InputFileError(f"{source}: the file has no content.")
    try:
        return _loads(text), text, decoded.encoding
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _ndjson(text, source, limits, decoded.encoding)
        raise InputFileError(
            f"{source}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}). "
            "Fix the file (a JSON validator shows the spot) or export it again."
        ) from exc
    except RecursionError as exc:
        raise _too_deep(text, source) from exc


def _array_table(
    document: Any, key: str | None, text: str, source: str, limits: Limits, encoding: str
) -> RawTable:
    if not isinstance(document, list):
        raise InputFileError(
            f"{source}: expected an array of objects, or an object whose keys name the entity "
            'and hold arrays of objects (e.g. {"persons": [...]}).'
        )
    check_row_count(len(document), limits, source)
    try:
        table = _table(list(enumerate(document, start=1)), source, limits, encoding=encoding)
    except RecursionError as exc:
        raise _too_deep(text, source) from exc
    table.entity_hint = entity_from_label(key) if key else None
    table.sheet = key
    return table


def read_ndjson(path: Path, *, source: str, limits: Limits) -> RawTable:
    decoded = to_utf8(path.read_bytes(), source)
    text = decoded.data.decode("utf-8")
    if not text.strip():
        raise InputFileError(f"{source}: the file has no content.")
    return _ndjson(text, source, limits, decoded.encoding)


def _ndjson(text: str, source: str, limits: Limits, encoding: str) -> RawTable:
    """One JSON value per line; a line that does not parse is a row issue, not a file error."""
    items: list[tuple[int, Any]] = []
    issues: list[RowIssue] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, _loads(line)))
        except json.JSONDecodeError as exc:
            issues.append(
                RowIssue(number, f"line is not valid JSON ({exc.msg})", {RAW_VALUE: line})
            )
        except RecursionError:
            issues.append(RowIssue(number, f"line {TOO_DEEP}", {RAW_VALUE: line}))
        check_row_count(len(items) + len(issues), limits, source)
    if not items and issues:
        raise InputFileError(
            f"{source}: no line holds valid JSON (line {issues[0].line}: {issues[0].reason}). "
            "Expected one JSON object per line."
        )
    try:
        table = _table(items, source, limits, encoding=encoding)
    except RecursionError as exc:
        raise _too_deep(text, source) from exc
    table.rejected = sorted([*issues, *table.rejected], key=lambda issue: issue.line)
    return table


def _pick_list(document: dict[str, Any], entity: Entity | None, source: str) -> tuple[str, Any]:
    """The key holding the rows: the one named for ``entity``, the first named for any, or the
    only array of objects ("results", "data")."""
    arrays = [key for key, value in document.items() if isinstance(value, list)]
    named = [(key, entity_from_label(key)) for key in arrays]
    for key, label in named:
        if label is not None and (entity is None or label == entity):
            return key, document[key]
    if len(arrays) == 1 and named[0][1] is None:
        return arrays[0], document[arrays[0]]
    wanted = f"'{entity.value}'" if entity else "an entity (persons, organizations, deals...)"
    raise InputFileError(
        f"{source}: the top-level object has no array under a key naming {wanted}; its keys "
        f"are {', '.join(document) or 'none'}. Put the rows in an array under such a key, or "
        "make the file an array of objects."
    )


def _table(items: list[tuple[int, Any]], source: str, limits: Limits, *, encoding: str) -> RawTable:
    keys: dict[str, None] = {}
    rows: list[tuple[int, dict[str, Any]]] = []
    issues: list[RowIssue] = []
    for number, item in items:
        if isinstance(item, dict):
            keys.update(dict.fromkeys(item))
            rows.append((number, item))
        else:
            issues.append(
                RowIssue(
                    number,
                    f"element is a {_json_type(item)}, not an object with named fields",
                    {RAW_VALUE: _printable(_text(item))},
                )
            )
    names = list(keys)
    check_column_count(len(names), limits, source, "the objects have ")
    headers = unique_headers([_printable(name) for name in names])
    columns = [[_text(row.get(name)) for _, row in rows] for name in names]
    try:
        data = _series(headers, columns)
    except UnicodeEncodeError:
        broken = _rows_with_lone_surrogates(columns)
        issues.extend(
            RowIssue(
                rows[i][0],
                "a value holds a lone UTF-16 surrogate (an escape such as \\ud800 without its "
                "pair), which is not a character; fix the value in the exporting tool",
                {RAW_VALUE: _printable(_text(rows[i][1]))},
            )
            for i in sorted(broken)
        )
        keep = [i for i in range(len(rows)) if i not in broken]
        rows = [rows[i] for i in keep]
        data = _series(headers, [[column[i] for i in keep] for column in columns])
    data[LINE_COLUMN] = pl.Series(LINE_COLUMN, [number for number, _ in rows], dtype=pl.Int64)
    blanks = [headers[i] for i in blank_header_positions(names)]
    return RawTable(
        frame=finish_frame(pl.DataFrame(data), blanks),
        source=source,
        rejected=sorted(issues, key=lambda issue: issue.line),
        encoding=encoding,
    )


def _series(headers: list[str], columns: list[list[str | None]]) -> dict[str, pl.Series]:
    return {
        header: pl.Series(header, values, dtype=pl.String)
        for header, values in zip(headers, columns, strict=True)
    }


def _loads(text: str) -> Any:
    """JSON with numbers kept as written: decimals as Decimal, whole numbers of any length."""
    return json.loads(text, parse_float=_decimal, parse_int=_whole_number)


def _whole_number(text: str) -> int | Decimal:
    return int(text) if len(text) <= MAX_INT_DIGITS else Decimal(text)


def _decimal(text: str) -> Decimal | str:
    """A decimal number; one whose exponent no Decimal can hold (``1e99999999999999999999``) is
    kept as the text it was written as."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return text


def _is_encodable(text: str | None) -> bool:
    if text is None:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rows_with_lone_surrogates(columns: list[list[str | None]]) -> set[int]:
    return {i for column in columns for i, value in enumerate(column) if not _is_encodable(value)}


def _printable(text: str | None) -> str | None:
    """Text with any lone surrogate written as its escape (``\\ud800``), so it can be stored."""
    if text is None or _is_encodable(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode()


def _too_deep(text: str, source: str) -> InputFileError:
    """Where the nesting first goes past ``REPORTED_DEPTH``, as line and column."""
    depth = 0
    for match in STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > REPORTED_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
                return InputFileError(
                    f"{source}: line {line}, column {column}: {TOO_DEEP}. Flatten the data "
                    "(a CRM record needs one level of fields) or export it as CSV."
                )
        elif token in "]}":
            depth -= 1
    return InputFileError(
        f"{source}: {TOO_DEEP}. Flatten the data (a CRM record needs one level of fields) or "
        "export it as CSV."
    )


def _text(value: Any) -> str | None:
    """A JSON value as the text a user would type: nested values as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_number)


def _number(value: Any) -> Any:
    """A number inside a nested value: as a float, or as text when too large for one."""
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
