"""An in-memory HubSpot behind ``httpx.MockTransport`` that checks every request against the specs.

Unit tests only: it answers in HubSpot's shapes (409 naming the existing ID, 400 for a bad email,
207 for missing ids) and lets a test queue faults (5xx, timeouts after the write was applied,
refused connections). Each request is validated with openapi-core against the official HubSpot
CRM v3 OpenAPI files before it is answered; an invalid request fails the test.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from bulk_pipeline_tests.specs import spec_path

BASE_URL = "https://api.hubapi.com"
SPEC_FILES = {
    "contacts": "contacts.json",
    "companies": "companies.json",
    "deals": "deals.json",
    "notes": "notes.json",
}
SPEC_PATH_NAMES = {
    "contacts": "contacts",
    "companies": "companies",
    "deals": "0-3",
    "notes": "notes",
}
"""deals.json writes its paths with the object type id ``0-3``; we call the ``deals`` alias."""
KEY_PROPERTIES = {"contacts": "email", "companies": "domain", "deals": "dealname"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_PATH = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)(?:/(?P<op>batch/\w+|search))?$")

_specs: dict[str, OpenAPI] = {}


def spec_for(object_type: str) -> OpenAPI:
    if object_type not in _specs:
        _specs[object_type] = OpenAPI.from_file_path(
            str(spec_path("hubspot", SPEC_FILES[object_type]))
        )
    return _specs[object_type]


class SpecRequest:
    """An ``httpx.Request`` as openapi-core's ``Request`` protocol, path aliased to the spec's."""

    def __init__(self, request: httpx.Request, path: str) -> None:
        self._request = request
        self._path = path
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(request.url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return f"{self._request.url.scheme}://{self._request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self._path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "")


def validate_against_spec(request: httpx.Request) -> None:
    """Raise if the request is not one the HubSpot spec defines (method, path, query, body)."""
    match = _PATH.match(request.url.path)
    assert match, f"unexpected path {request.url.path}"
    object_type = match["type"]
    path = re.sub(
        f"/objects/{object_type}(/|$)",
        f"/objects/{SPEC_PATH_NAMES[object_type]}\\1",
        request.url.path,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unsupported scheme type")
        spec_for(object_type).validate_request(SpecRequest(request, path))


Fault = Callable[[httpx.Request, Callable[[], httpx.Response]], httpx.Response]
"""Given the request and a function that applies it, answer (or raise) as a failing server."""


def apply_then(exc: type[httpx.TransportError]) -> Fault:
    """The write is applied, then the connection fails: the client cannot know it worked."""

    def fault(request: httpx.Request, apply: Callable[[], httpx.Response]) -> httpx.Response:
        apply()
        raise exc("connection lost after the write", request=request)

    return fault


def refuse(exc: type[httpx.TransportError]) -> Fault:
    """The request never reaches the server."""

    def fault(request: httpx.Request, apply: Callable[[], httpx.Response]) -> httpx.Response:
        raise exc("connection refused", request=request)

    return fault


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    """The server answers ``status`` without doing the work."""

    def fault(request: httpx.Request, apply: Callable[[], httpx.Response]) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return fault


@dataclass
class FakeHubSpot:
    page_size: int = 100
    echo_trace_ids: bool = True
    shuffle_results: bool = False
    records: dict[str, dict[str, dict[str, str]]] = field(
        default_factory=lambda: {name: {} for name in SPEC_FILES}
    )
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[Fault | None] = field(default_factory=list)
    """Consumed one per request; ``None`` lets that request through."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers on every normal answer (rate-limit headers, say)."""
    lose_create_answers: int = 0
    """The next this many batch creates are applied and their answers lost."""
    created: dict[str, str] = field(default_factory=dict)
    """When each record was created (the fake's clock is this machine's)."""
    _next_id: int = 1000

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def bodies(self, op: str | None = None) -> list[dict[str, Any]]:
        """JSON bodies of the requests received, optionally only those to ``.../{op}``."""
        return [
            json.loads(r.content)
            for r in self.requests
            if op is None or r.url.path.endswith("/" + op)
        ]

    def paths(self) -> list[str]:
        return [r.url.path.removeprefix("/crm/v3/objects/") for r in self.requests]

    def add(self, object_type: str, properties: dict[str, str]) -> str:
        self._next_id += 1
        record_id = str(self._next_id)
        self.records.setdefault(object_type, {})[record_id] = dict(properties)
        self.created[record_id] = datetime.now(UTC).isoformat(timespec="milliseconds")
        return record_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        validate_against_spec(request)
        assert request.headers.get("authorization", "").startswith("Bearer ")
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if fault is None and self.lose_create_answers and request.url.path.endswith("batch/create"):
            self.lose_create_answers -= 1
            fault = apply_then(httpx.ReadTimeout)
        if fault is not None:
            return fault(request, lambda: self._route(request))
        return self._route(request)

    # --- HubSpot behaviour ----------------------------------------------------------------------

    def _route(self, request: httpx.Request) -> httpx.Response:
        match = _PATH.match(request.url.path)
        assert match
        object_type, op = match["type"], match["op"] or request.method
        body = json.loads(request.content) if request.content else {}
        handler = {
            "GET": self._list,
            "POST": self._create_one,
            "batch/create": self._create,
            "batch/upsert": self._upsert,
            "batch/update": self._update,
            "batch/archive": self._archive,
            "batch/read": self._read,
            "search": self._search,
        }[op]
        status, payload = handler(object_type, body)
        headers = {"Date": email.utils.formatdate(usegmt=True), **self.headers}
        return httpx.Response(status, json=payload, headers=headers)

    def _list(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        first = sorted(self.records[object_type], key=int)[:1]
        return 200, {"results": [self._public(object_type, r) for r in first]}

    def _create_one(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        return 201, self._public(object_type, self.add(object_type, body["properties"]))

    def _find_key(self, object_type: str, value: str) -> str | None:
        prop = KEY_PROPERTIES[object_type]
        for record_id, props in self.records[object_type].items():
            if props.get(prop, "").lower() == value.lower():
                return record_id
        return None

    def _public(self, object_type: str, record_id: str, trace: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": record_id,
            "properties": dict(self.records[object_type][record_id]),
            "createdAt": self.created.get(record_id, "2024-01-01T00:00:00.000+00:00"),
            "updatedAt": self.created.get(record_id, "2024-01-01T00:00:00.000+00:00"),
            "archived": False,
        }
        if trace is not None and self.echo_trace_ids:
            row["objectWriteTraceId"] = trace
        return row

    def _batch(self, results: list[dict[str, Any]], errors: list[dict[str, Any]], ok: int = 200):
        if self.shuffle_results:
            random.Random(7).shuffle(results)
        payload: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": "2024-01-01T00:00:00.000Z",
            "completedAt": "2024-01-01T00:00:01.000Z",
        }
        if errors:
            payload.update(errors=errors, numErrors=len(errors))
            return 207, payload
        return ok, payload

    @staticmethod
    def _error(status: int, category: str, message: str) -> tuple[int, dict[str, Any]]:
        return status, {
            "status": "error",
            "message": message,
            "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
            "category": category,
        }

    def _invalid(self, object_type: str, inputs: list[dict[str, Any]]) -> tuple[int, Any] | None:
        if object_type != "contacts":
            return None
        bad = [
            i["properties"]["email"]
            for i in inputs
            if "email" in i["properties"] and not _EMAIL.match(i["properties"]["email"])
        ]
        if bad:
            issues = [
                {"isValid": False, "message": f"Email address {e} is invalid", "name": "email"}
                for e in bad
            ]
            return self._error(
                400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(issues)}"
            )
        return None

    def _create(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = body["inputs"]
        invalid = self._invalid(object_type, inputs)
        if invalid:
            return invalid
        if object_type == "contacts":
            for item in inputs:
                existing = self._find_key(object_type, item["properties"].get("email", ""))
                if existing:
                    return self._error(
                        409, "CONFLICT", f"Contact already exists. Existing ID: {existing}"
                    )
        results = [
            self._public(
                object_type, self.add(object_type, item["properties"]), item["objectWriteTraceId"]
            )
            for item in inputs
        ]
        return self._batch(results, [], ok=201)

    def _upsert(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = body["inputs"]
        invalid = self._invalid(object_type, inputs)
        if invalid:
            return invalid
        results = []
        for item in inputs:
            assert item["idProperty"] == KEY_PROPERTIES[object_type]
            record_id = self._find_key(object_type, item["id"])
            new = record_id is None
            if record_id is None:
                record_id = self.add(object_type, item["properties"])
            else:
                self.records[object_type][record_id].update(item["properties"])
            row = self._public(object_type, record_id, item.get("objectWriteTraceId"))
            results.append({**row, "new": new})
        return self._batch(results, [])

    def _update(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        results, missing = [], []
        for item in body["inputs"]:
            if item["id"] not in self.records[object_type]:
                missing.append(item["id"])
                continue
            self.records[object_type][item["id"]].update(item["properties"])
            results.append(self._public(object_type, item["id"], item.get("objectWriteTraceId")))
        return self._batch(results, [self._not_found(missing)] if missing else [])

    def _archive(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        for item in body["inputs"]:
            self.records[object_type].pop(item["id"], None)
        return 204, None

    def _read(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        results, missing = [], []
        for item in body["inputs"]:
            if body.get("idProperty"):
                record_id = self._find_key(object_type, item["id"])
            else:
                record_id = item["id"] if item["id"] in self.records[object_type] else None
            if record_id is None:
                missing.append(item["id"])
            else:
                results.append(self._public(object_type, record_id))
        return self._batch(results, [self._not_found(missing)] if missing else [])

    def _search(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        (group,) = body["filterGroups"]
        (condition,) = group["filters"]
        values = condition.get("values") or [condition["value"]]
        assert all(v == v.lower() for v in values), "IN values must be lower-cased"
        prop = condition["propertyName"]
        matching = sorted(
            (
                record_id
                for record_id, props in self.records[object_type].items()
                if props.get(prop, "").lower() in values
            ),
            key=int,
        )
        start = int(body.get("after") or 0)
        page = [r for r in matching if int(r) > start][: min(body["limit"], self.page_size)]
        payload: dict[str, Any] = {
            "total": len(matching),
            "results": [self._public(object_type, r) for r in page],
        }
        if page and page[-1] != matching[-1]:
            payload["paging"] = {"next": {"after": page[-1]}}
        return 200, payload

    @staticmethod
    def _not_found(ids: list[str]) -> dict[str, Any]:
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some objects, they may be deleted or not exist.",
            "context": {"ids": ids},
            "errors": [],
            "links": {},
        }
