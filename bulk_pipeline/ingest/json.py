"""JSON exports: an array of objects, an object keyed by entity, or one object per line (NDJSON).

CRM and API exports nest values (addresses, tag lists); those become JSON text in one column, so
nothing is lost and the user can map or ignore them. This format needs a Python pass over the
objects; JSON files large enough for that to matter are better exported as NDJSON or Parquet.
"""

from __future__ import annotations

import json
from decimal import Decimal
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
    check_row_count,
    entity_from_label,
    finish_frame,
    unique_headers,
)

RAW_VALUE = "_raw"
"""Key under which a RowIssue keeps an element or line that is not an object."""


def read_json(path: Path, *, source: str, limits: Limits, entity: Entity | None = None) -> RawTable:
    """Read a JSON document; falls back to NDJSON when the text holds one object per line."""
    decoded = to_utf8(path.read_bytes(), source)
    text = decoded.data.decode("utf-8")
    if not text.strip():
        raise InputFileError(f"{source}: the file has no content.")
    try:
        document = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _ndjson(text, source, limits, decoded.encoding)
        raise InputFileError(
            f"{source}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}). "
            "Fix the file (a JSON validator shows the spot) or export it again."
        ) from exc

    key: str | None = None
    if isinstance(document, dict):
        key, document = _pick_list(document, entity, source)
    if not isinstance(document, list):
        raise InputFileError(
            f"{source}: expected an array of objects, or an object whose keys name the entity "
            'and hold arrays of objects (e.g. {"persons": [...]}).'
        )
    check_row_count(len(document), limits, source)
    table = _table(list(enumerate(document, start=1)), source, encoding=decoded.encoding)
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
            items.append((number, json.loads(line, parse_float=Decimal)))
        except json.JSONDecodeError as exc:
            issues.append(
                RowIssue(number, f"line is not valid JSON ({exc.msg})", {RAW_VALUE: line})
            )
        check_row_count(len(items) + len(issues), limits, source)
    if not items and issues:
        raise InputFileError(
            f"{source}: no line holds valid JSON (line {issues[0].line}: {issues[0].reason}). "
            "Expected one JSON object per line."
        )
    table = _table(items, source, encoding=encoding)
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


def _table(items: list[tuple[int, Any]], source: str, *, encoding: str) -> RawTable:
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
                    {RAW_VALUE: _text(item)},
                )
            )
    names = list(keys)
    headers = unique_headers(names)
    data: dict[str, pl.Series] = {
        header: pl.Series(header, [_text(row.get(name)) for _, row in rows], dtype=pl.String)
        for name, header in zip(names, headers, strict=True)
    }
    data[LINE_COLUMN] = pl.Series(LINE_COLUMN, [number for number, _ in rows], dtype=pl.Int64)
    blanks = [headers[i] for i in blank_header_positions(names)]
    return RawTable(
        frame=finish_frame(pl.DataFrame(data), blanks),
        source=source,
        rejected=issues,
        encoding=encoding,
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
    if isinstance(value, Decimal):
        return float(value)
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
