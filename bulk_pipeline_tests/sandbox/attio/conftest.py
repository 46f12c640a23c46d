"""An Attio client on the sandbox, as an Attio target makes one: base URL without ``/v2``,
``Authorization: Bearer``; and a client that validates every answer against Attio's spec."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.specs import load_spec

ATTIO = "https://api.attio.com"
PEOPLE = "/v2/objects/people/records"
COMPANIES = "/v2/objects/companies/records"
DEALS = "/v2/objects/deals/records"
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


def _relaxed_spec() -> dict[str, Any]:
    spec = copy.deepcopy(load_spec("attio", "api-00.json"))
    _nullable_as_in_31(spec)
    _timestamps_as_documented(spec)
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
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


@pytest.fixture(scope="session")
def attio_spec() -> OpenAPI:
    return OpenAPI.from_dict(_relaxed_spec())


@pytest.fixture
def attio(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sandbox.url,
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=10,
        trust_env=False,
    ) as client:
        yield client


class CheckedClient:
    """Calls the sandbox and validates the request sent and the answer got against the spec."""

    def __init__(self, client: httpx.Client, spec: OpenAPI) -> None:
        self.client = client
        self.spec = spec
        self.checked: list[str] = []

    def call(
        self,
        method: str,
        path: str,
        expect: int = 200,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        check_request: bool = True,
    ) -> Any:
        answer = self.client.request(method, path, json=body, params=params, headers=headers)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        request = MockRequest(
            ATTIO,
            method.lower(),
            path,
            args=params,
            data=None if body is None else httpx.Request("POST", ATTIO, json=body).content,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unsupported scheme type")
            if check_request:
                self.spec.validate_request(request)
            self.spec.validate_response(
                request,
                MockResponse(
                    answer.content,
                    status_code=answer.status_code,
                    headers=dict(answer.headers),
                    content_type=answer.headers.get("content-type", ""),
                ),
            )
        self.checked.append(f"{method} {path}")
        payload = answer.json()
        return payload.get("data", payload) if expect < 300 else payload


@pytest.fixture
def api(attio: httpx.Client, attio_spec: OpenAPI) -> CheckedClient:
    return CheckedClient(attio, attio_spec)


def values(record: dict[str, Any], slug: str, key: str) -> list[Any]:
    """One property of an attribute's values in a record answer."""
    return [value[key] for value in record["values"][slug]]
