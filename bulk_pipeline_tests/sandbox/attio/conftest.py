"""An Attio client on the sandbox, as an Attio target makes one: base URL without ``/v2``,
``Authorization: Bearer``; and a client that validates every answer against Attio's spec."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.specs.attio_spec import attio_openapi

ATTIO = "https://api.attio.com"
PEOPLE = "/v2/objects/people/records"
COMPANIES = "/v2/objects/companies/records"
DEALS = "/v2/objects/deals/records"


@pytest.fixture(scope="session")
def attio_spec() -> OpenAPI:
    return attio_openapi()


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
