"""Attio's spec fixture as the tests check against it, with the adjustments its own
documentation calls for (each explained where it is made).

Used by the sandbox's tests (answers) and by the fake transport of the target's unit tests
(requests).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from openapi_core import OpenAPI

from bulk_pipeline_tests.specs import load_spec

ERROR_CODES = (
    "not_found",
    "value_not_found",
    "missing_value",
    "filter_error",
    "multiple_match_results",
    "slug_conflict",
    "validation_type",
    "immutable_value",
    "billing_error",
    "system_edit_unauthorized",
    "uniqueness_conflict",
)
"""The spec names one ``code`` per error status and operation; Attio answers others in the same
shape (``uniqueness_conflict`` is its answer to a unique value that exists, seen in clients of
the live API). Error bodies are checked for their shape with any of these codes."""
UNDECLARED_ERROR = {
    "type": "object",
    "properties": {
        "status_code": {"type": "number"},
        "type": {"type": "string"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["status_code", "type", "code", "message"],
}
"""For statuses the spec declares on no operation (401, 429, 5xx): the spec's error shape, as
the rate-limiting guide shows it for 429."""


def _nullable_as_in_31(node: Any) -> None:
    """The spec is OpenAPI 3.1 but marks some properties with 3.0's ``nullable: true``, which
    3.1 ignores; Attio's own examples answer ``null`` there (``created_by_actor.id`` of a system
    actor). Written the 3.1 way: ``type: [..., "null"]``, with ``null`` in the ``enum`` of such
    properties (the spec leaves it out of some, e.g. a currency config's code)."""
    if isinstance(node, dict):
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        kind = node.get("type")
        if isinstance(kind, list) and "null" in kind and None not in node.get("enum", [None]):
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _nullable_as_in_31(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_as_in_31(value)


def _timestamps_as_documented(node: Any) -> None:
    """The spec gives a timestamp value ``format: date``; Attio's attribute-type documentation
    reads them as full timestamps (``2023-01-01T15:00:00.000000000Z``): ``date-time``."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            kind = properties.get("attribute_type", {})
            value = properties.get("value")
            if kind.get("enum") == ["timestamp"] and isinstance(value, dict):
                value["format"] = "date-time"
        for child in node.values():
            _timestamps_as_documented(child)
    elif isinstance(node, list):
        for child in node:
            _timestamps_as_documented(child)


def _query_parameters_as_text(operation: dict[str, Any]) -> None:
    """One query parameter (``GET /v2/tasks``'s ``assignee``) is typed ``["string", "null"]``,
    which openapi-core cannot read a query string against (it expects one type); a query
    string holds text, and ``null`` is written as the text ``null``: ``string``."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter.get("in") == "query" and isinstance(schema.get("type"), list):
            schema["type"] = "string"


def _relaxed_spec() -> dict[str, Any]:
    spec = copy.deepcopy(load_spec("attio", "api-00.json"))
    _nullable_as_in_31(spec)
    _timestamps_as_documented(spec)
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _query_parameters_as_text(operation)
            for status, answer in operation["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                code = schema.get("properties", {}).get("code")
                if status.startswith("4") and isinstance(code, dict) and "enum" in code:
                    code["enum"] = list(ERROR_CODES)
            for status in ("401", "429", "500", "502", "503", "504"):
                operation["responses"].setdefault(
                    status,
                    {
                        "description": "",
                        "content": {"application/json": {"schema": UNDECLARED_ERROR}},
                    },
                )
    return spec


@functools.cache
def attio_openapi() -> OpenAPI:
    """The adjusted spec, parsed once per test session."""
    return OpenAPI.from_dict(_relaxed_spec())
