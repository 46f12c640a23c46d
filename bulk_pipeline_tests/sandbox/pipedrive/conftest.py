"""A Pipedrive client on the sandbox, as a Pipedrive target would make one: base URL without a
version, ``x-api-token`` header."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bulk_pipeline.sandbox.server import RunningSandbox

PERSONS = "/api/v2/persons"
ORGANIZATIONS = "/api/v2/organizations"
DEALS = "/api/v2/deals"
ACTIVITIES = "/api/v2/activities"
NOTES = "/api/v1/notes"


@pytest.fixture
def pipedrive(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sandbox.url,
        headers={"x-api-token": sandbox.token},
        timeout=10,
        trust_env=False,
    ) as client:
        yield client


def data(answer: httpx.Response, status: int = 200) -> Any:
    """The ``data`` of a successful envelope, after checking the status and ``success``."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is True, body
    return body["data"]


def error(answer: httpx.Response, status: int) -> str:
    """The ``error`` of a failed envelope, after checking Pipedrive's error shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


def person(client: httpx.Client, name: str, *emails: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "emails": [{"value": email} for email in emails], **fields}
    return dict(data(client.post(PERSONS, json=body)))
