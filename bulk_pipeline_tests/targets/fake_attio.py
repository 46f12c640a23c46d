"""Attio behind ``httpx.MockTransport``, checking every request against Attio's spec fixture.

Unit tests only. The answers come from the sandbox's Attio operations run in-process on their
own SQLite file (one Attio server implementation in the project, its answers validated against
the spec by the sandbox's tests); what the transport adds is the check of every request the
target sends against the spec, the record of those requests, and faults a test queues: answers
as a failing server gives them, or a create applied and its answer lost.
"""

from __future__ import annotations

import email.utils
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from openapi_core.testing import MockRequest

from bulk_pipeline.sandbox.attio.api import AttioApi, parse_route
from bulk_pipeline.sandbox.attio.errors import unauthorized
from bulk_pipeline.sandbox.attio.store import SCHEMA, AttioStore
from bulk_pipeline.sandbox.dialect import ApiError, Request
from bulk_pipeline.sandbox.store import Store
from bulk_pipeline_tests.specs.attio_spec import attio_openapi

BASE_URL = "https://api.attio.com"
TOKEN = "attio-unit-token-0000"

Fault = Callable[[httpx.Request, Callable[[], httpx.Response]], httpx.Response]
"""Given the request and a function that applies it, answer (or raise) as a failing server."""


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    """The server answers ``status`` without doing the work."""

    def fault(request: httpx.Request, apply: Callable[[], httpx.Response]) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return fault


def apply_then(exc: type[httpx.TransportError]) -> Fault:
    """The work is done, then the connection fails: the client cannot know it worked."""

    def fault(request: httpx.Request, apply: Callable[[], httpx.Response]) -> httpx.Response:
        apply()
        raise exc("connection lost after the write", request=request)

    return fault


def validate_against_spec(request: httpx.Request) -> None:
    """Raise if the request is not one Attio's spec defines (method, path, query, body)."""
    spec_request = MockRequest(
        BASE_URL,
        request.method.lower(),
        request.url.path,
        args={k: v[0] for k, v in parse_qs(request.url.query.decode()).items()},
        data=request.content or None,
        content_type=request.headers.get("content-type", "application/json"),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unsupported scheme type")
        attio_openapi().validate_request(spec_request)


class FakeAttio:
    """An Attio workspace in a SQLite file, answering through a mock transport."""

    def __init__(self, db_path: Path) -> None:
        self.store = Store(db_path, [SCHEMA])
        self.conn = self.store.open()
        self.api = AttioApi(AttioStore(self.conn))
        with self.conn.write():
            self.api.seed()
        self.requests: list[httpx.Request] = []
        self.faults: list[Fault | None] = []
        """Consumed one per request; ``None`` lets that request through."""
        self.lose_create_answers = 0
        """The next this many creates (of records, tasks or notes) are applied and their answers
        lost."""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def close(self) -> None:
        self.conn.close()

    def calls(self, method: str | None = None) -> list[str]:
        """``METHOD path`` of the requests received (of one method)."""
        return [f"{r.method} {r.url.path}" for r in self.requests if method in (None, r.method)]

    def bodies(self, method: str, path_end: str = "") -> list[dict[str, Any]]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path.endswith(path_end) and r.content
        ]

    def writes(self) -> int:
        return sum(r.method != "GET" and not r.url.path.endswith("/query") for r in self.requests)

    def records(self, object_slug: str) -> list[dict[str, Any]]:
        return self.api.all_records(object_slug)

    def handle(self, request: httpx.Request) -> httpx.Response:
        validate_against_spec(request)
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if (
            fault is None
            and self.lose_create_answers
            and request.method == "POST"
            and request.url.path.endswith(("/records", "/v2/tasks", "/v2/notes"))
        ):
            self.lose_create_answers -= 1
            fault = apply_then(httpx.ReadTimeout)
        if fault is not None:
            return fault(request, lambda: self._answer(request))
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        headers = {"Date": email.utils.formatdate(usegmt=True)}
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            error = unauthorized()
            return httpx.Response(error.status, json=error.body, headers=headers)
        route = parse_route(request.method, request.url.path)
        assert route is not None, f"the fake Attio serves no {request.method} {request.url.path}"
        given = Request(
            request.method,
            request.url.path,
            parse_qs(request.url.query.decode()),
            request.headers,
            request.content,
        )
        try:
            status, body = self.api.handle(route, given)
        except ApiError as error:
            status, body = error.status, error.body
        return httpx.Response(status, json=body, headers=headers)
