"""Reading HubSpot request bodies and query strings, and the batch answer shape, as every part of
the HubSpot dialect (objects, associations) does them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bulk_pipeline.sandbox.dialect import Answer, Query
from bulk_pipeline.sandbox.hubspot.errors import validation_error

MAX_BATCH_INPUTS = 100
DEFAULT_PAGE_SIZE = 10


def json_value(body: bytes) -> Any:
    """A JSON request body, or HubSpot's 400 for bad JSON."""
    try:
        return json.loads(body or b"{}")
    except json.JSONDecodeError as error:
        raise validation_error(
            f"Invalid input JSON on line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object."""
    payload = json_value(body)
    if not isinstance(payload, dict):
        raise validation_error("Invalid input JSON: expected an object.")
    return payload


def inputs(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A batch's ``inputs``: objects, at most ``MAX_BATCH_INPUTS`` of them."""
    given = payload.get("inputs")
    if not isinstance(given, list) or not all(isinstance(item, dict) for item in given):
        raise validation_error("'inputs' must be a list of objects.")
    if len(given) > MAX_BATCH_INPUTS:
        raise validation_error(
            f"Too many inputs: {len(given)}. A batch takes at most {MAX_BATCH_INPUTS}."
        )
    return given


def numeric_ids(values: Iterable[str]) -> list[int]:
    """Record ids are numeric; anything else names no record."""
    return [int(value) for value in values if value.isdigit()]


def query_list(query: Query, name: str) -> list[str]:
    """A list parameter, given repeated or comma separated (HubSpot takes both)."""
    return [item for value in query.get(name, ()) for item in value.split(",") if item]


def first(query: Query, name: str) -> str | None:
    """A query parameter's first value."""
    values = query.get(name)
    return values[0] if values else None


def limit(value: object, default: int = DEFAULT_PAGE_SIZE) -> int:
    """A page size the client asked for, or the endpoint's default."""
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise validation_error(f"limit must be an integer, got {value!r}.") from None
    if number < 1:
        raise validation_error(f"limit must be at least 1, got {number}.")
    return number


def after(value: object) -> int:
    """Paging cursors are the last id of the previous page."""
    if value in (None, ""):
        return 0
    if not str(value).isdigit():
        raise validation_error(
            f"after must be a paging cursor from a previous page, got {value!r}."
        )
    return int(str(value))


def batch(
    results: list[dict[str, Any]],
    times: tuple[str, str],
    errors: list[dict[str, Any]],
    *,
    success: int = 200,
) -> Answer:
    """A ``BatchResponse...``: ``success`` without errors, 207 ``...WithErrors`` with some."""
    started, completed = times
    answer: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": completed,
    }
    if not errors:
        return success, answer
    answer["numErrors"] = len(errors)
    answer["errors"] = errors
    return 207, answer
