"""An in-memory Pipedrive behind ``httpx.MockTransport`` that checks every exchange against the
specs.

Unit and contract tests only. Each request is validated with openapi-core against Pipedrive's
v2 or v1 spec fixture (method, path, query, body, the ``x-api-token`` credential) before it is
answered, and each answer against the response schema, so the fake cannot drift into shapes
Pipedrive does not have. It keeps items the way API v2 answers them (``emails``/``phones`` as
lists of ``{value, primary, label}``, ``custom_fields`` by hash key), accepts any number of
persons with one email (as Pipedrive does), charges each call its ``x-token-cost`` read from the
spec fixture (not from the target's own table), and lets a test queue faults, lose the answers
to creates after applying them, or set a daily token budget.

v1's server is ``https://api.pipedrive.com/v1`` in its spec; company domains (and the target)
use ``/api/v1``, so v1 paths are checked without ``/api``. ``next_cursor`` is checked as
nullable: the pagination docs say it is ``null`` on the last page.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline_tests.specs import load_spec, nullable_cursors
from bulk_pipeline_tests.targets.fake_hubspot import Fault, apply_then

BASE_URL = "https://api.pipedrive.com"
TOKEN = "pd-test-token-0000"
ENTITY_PATHS = ("persons", "organizations", "deals")
SEARCHABLE = {"persons": "email", "deals": "title"}

_specs: dict[str, OpenAPI] = {}
_costs: dict[tuple[str, str], int] = {}


def spec(version: str) -> OpenAPI:
    if version not in _specs:
        raw = load_spec("pipedrive", f"{version}.json")
        nullable_cursors(raw)
        _specs[version] = OpenAPI.from_dict(raw)
        prefix = "/api/v2" if version == "v2" else "/api/v1"
        for template, operations in raw["paths"].items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "x-token-cost" in operation:
                    _costs[(method.upper(), prefix + template)] = int(operation["x-token-cost"])
    return _specs[version]


def spec_cost(method: str, path: str) -> int:
    """The spec fixture's ``x-token-cost`` of a call."""
    spec("v1"), spec("v2")
    template = re.sub(r"/\d+(?=/|$)", "/{id}", path)
    return _costs[(method, template)]


def _spec_path(path: str) -> tuple[str, str]:
    version = path.split("/")[2]
    return version, (path if version == "v2" else path.removeprefix("/api"))


def _query(request: httpx.Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}


def validate_request(request: httpx.Request) -> None:
    """Raise if the request is not one Pipedrive's spec defines (method, path, query, body)."""
    version, path = _spec_path(request.url.path)
    body = request.content or None
    spec(version).validate_request(
        MockRequest(
            BASE_URL,
            request.method.lower(),
            path,
            args=_query(request),
            headers=dict(request.headers),
            data=body,
            content_type="application/json" if body else None,
        )
    )


def validate_response(request: httpx.Request, response: httpx.Response) -> None:
    version, path = _spec_path(request.url.path)
    spec(version).validate_response(
        MockRequest(BASE_URL, request.method.lower(), path, args=_query(request)),
        MockResponse(
            response.content,
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type="application/json",
        ),
    )


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakePipedrive:
    items: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in (*ENTITY_PATHS, "notes")}
    )
    custom_fields: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {name: [] for name in ENTITY_PATHS}
    )
    pipelines: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": 1, "name": "Sales"}, {"id": 2, "name": "Partners"}]
    )
    stages: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"id": 1, "name": "Lead In", "pipeline_id": 1},
            {"id": 2, "name": "Qualified", "pipeline_id": 1},
            {"id": 3, "name": "Lead In", "pipeline_id": 2},
        ]
    )
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[Fault | None] = field(default_factory=list)
    """Consumed one per request; ``None`` lets that request through."""
    lose_create_answers: int = 0
    """The next this many creates (POST of an item) are applied and their answers lost."""
    daily_budget: int | None = None
    """Tokens a day; a call that costs more than what is left answers Pipedrive's 429."""
    burst_limit: int = 40
    tokens_used: int = 0
    _next_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def tokens(self) -> int:
        """What the calls received have cost, by the spec's ``x-token-cost``."""
        return sum(spec_cost(r.method, r.url.path) for r in self.requests)

    def writes(self) -> int:
        return sum(r.method in ("POST", "PATCH", "DELETE") for r in self.requests)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def add(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """An item that exists before the test's import (as another user made it)."""
        return self._insert(kind, data)

    def add_custom_field(
        self, kind: str, name: str, field_type: str, options: list[str] | None = None
    ) -> str:
        code = f"{len(self.custom_fields[kind]) + 1:040x}"
        self.custom_fields[kind].append(
            {
                "field_code": code,
                "field_name": name,
                "field_type": field_type,
                "is_custom_field": True,
                "is_optional_response_field": False,
                "options": [{"id": 100 + i, "label": label} for i, label in enumerate(options)]
                if options
                else None,
            }
        )
        return code

    # --- the exchange --------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request; the target sends from several threads, so one at a time, as a
        server's database would serialize them."""
        with self._lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        validate_request(request)
        assert request.headers.get("x-api-token") == TOKEN
        assert "api_token" not in str(request.url), "the token goes in a header, never the URL"
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        is_create = request.method == "POST" and request.url.path.split("/")[-1] in ENTITY_PATHS
        if fault is None and self.lose_create_answers and is_create:
            self.lose_create_answers -= 1
            fault = apply_then(httpx.ReadTimeout)
        if fault is not None:
            return fault(request, lambda: self._answer(request))
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        cost = spec_cost(request.method, request.url.path)
        headers = {
            "Date": email.utils.formatdate(usegmt=True),
            "x-ratelimit-limit": str(self.burst_limit),
            "x-ratelimit-remaining": str(self.burst_limit - 1),
            "x-ratelimit-reset": "2",
        }
        if self.daily_budget is not None:
            left = self.daily_budget - self.tokens_used
            if cost > left:
                return httpx.Response(
                    429,
                    json={
                        "success": False,
                        "error": "daily request budget exceeded",
                        "errorCode": 429,
                    },
                    headers={**headers, "Retry-After": "3600"},
                )
            self.tokens_used += cost
            headers["x-daily-ratelimit-token-limit"] = str(self.daily_budget)
            headers["x-daily-ratelimit-token-remaining"] = str(left - cost)
        status, payload = self._route(request)
        response = httpx.Response(status, json=payload, headers=headers)
        if response.is_success:
            validate_response(request, response)
        return response

    def _route(self, request: httpx.Request) -> tuple[int, Any]:
        parts = request.url.path.split("/")[3:]
        query = _query(request)
        body = json.loads(request.content) if request.content else {}
        method = request.method
        if parts == ["users", "me"]:
            return 200, {"success": True, "data": {"id": 1, "name": "Owner", "email": "o@x.io"}}
        if parts[0] == "notes":
            return self._notes(method, query, body)
        if parts[0] in ("personFields", "organizationFields", "dealFields"):
            kind = {"personFields": "persons", "organizationFields": "organizations"}.get(
                parts[0], "deals"
            )
            return self._page(self._field_list(kind), query)
        if parts[0] == "pipelines":
            return self._page(self.pipelines, query)
        if parts[0] == "stages":
            return self._page(self.stages, query)
        kind = parts[0]
        if len(parts) == 2 and parts[1] == "search":
            return self._search(kind, query)
        if len(parts) == 1 and method == "GET":
            return self._list(kind, query)
        if len(parts) == 1 and method == "POST":
            return 200, {"success": True, "data": self._insert(kind, body)}
        item = self.items[kind].get(int(parts[1]))
        if item is None:
            return 404, {"success": False, "error": f"{kind[:-1].capitalize()} not found"}
        if method == "GET":
            return 200, {"success": True, "data": item}
        if method == "PATCH":
            return 200, {"success": True, "data": self._apply(kind, item, body)}
        del self.items[kind][item["id"]]
        return 200, {"success": True, "data": {"id": item["id"]}}

    # --- Pipedrive behaviour ---------------------------------------------------------------------

    def _field_list(self, kind: str) -> list[dict[str, Any]]:
        standard = [
            {
                "field_code": code,
                "field_name": code.replace("_", " ").capitalize(),
                "field_type": "varchar",
                "is_custom_field": False,
                "is_optional_response_field": False,
                "options": None,
            }
            for code in ("name", "owner_id")
        ]
        return standard + self.custom_fields[kind]

    def _insert(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        stamp = now_iso()
        item: dict[str, Any] = {
            "id": self._next_id,
            "add_time": stamp,
            "update_time": stamp,
            "is_deleted": False,
        }
        if kind != "notes":
            item["custom_fields"] = {f["field_code"]: None for f in self.custom_fields[kind]}
            item["owner_id"] = 1
        if kind == "deals":
            item |= {"pipeline_id": 1, "stage_id": 1, "value": 0, "currency": "EUR"}
        self.items[kind][item["id"]] = item
        return self._apply(kind, item, body, stamp=stamp)

    def _apply(
        self, kind: str, item: dict[str, Any], body: dict[str, Any], stamp: str | None = None
    ) -> dict[str, Any]:
        for name, value in body.items():
            if name == "custom_fields":
                known = {f["field_code"] for f in self.custom_fields[kind]}
                assert set(value) <= known, f"unknown custom field in {value}"
                item["custom_fields"].update(value)
            elif name in ("emails", "phones"):
                entries = [{"label": "work", "primary": False, **e} for e in value]
                if entries and not any(e["primary"] for e in entries):
                    entries[0]["primary"] = True
                item[name] = entries
            else:
                item[name] = value
        if kind == "persons" and ("first_name" in body or "last_name" in body):
            item["name"] = " ".join(
                p for p in (item.get("first_name"), item.get("last_name")) if p
            ) or item.get("name")
        item["update_time"] = stamp or now_iso()
        return item

    def _page(self, rows: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, Any]:
        start = int(query.get("cursor", "0") or 0)
        limit = int(query.get("limit", "100"))
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return 200, {
            "success": True,
            "data": page,
            "additional_data": {"next_cursor": str(start + limit) if more else None},
        }

    def _list(self, kind: str, query: dict[str, str]) -> tuple[int, Any]:
        rows = sorted(self.items[kind].values(), key=lambda i: i["id"])
        if query.get("ids"):
            wanted = {int(i) for i in query["ids"].split(",")}
            rows = [r for r in rows if r["id"] in wanted]
        if query.get("updated_since"):
            rows = [r for r in rows if r["update_time"] >= query["updated_since"]]
        return self._page(rows, query)

    def _search(self, kind: str, query: dict[str, str]) -> tuple[int, Any]:
        assert query.get("fields") == SEARCHABLE[kind]
        assert query.get("exact_match") == "true"
        term = query["term"].casefold()
        found = []
        for item in sorted(self.items[kind].values(), key=lambda i: i["id"]):
            if kind == "persons":
                values = [e["value"] for e in item.get("emails") or ()]
                brief = {"id": item["id"], "type": "person", "name": item.get("name")}
                brief["emails"] = values
            else:
                values = [item.get("title") or ""]
                brief = {"id": item["id"], "type": "deal", "title": item.get("title")}
            if any(v.casefold() == term for v in values):
                found.append({"result_score": 1.0, "item": brief})
        return 200, {
            "success": True,
            "data": {"items": found},
            "additional_data": {"next_cursor": None},
        }

    def _notes(self, method: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if method == "POST":
            parents = [p for p in ("person_id", "org_id", "deal_id") if body.get(p)]
            assert parents, "a note needs a parent"
            note = self._insert("notes", body)
            return 200, {"success": True, "data": note}
        rows = [
            n
            for n in sorted(self.items["notes"].values(), key=lambda n: -n["id"])
            if all(
                str(n.get(p)) == query[p] for p in ("person_id", "org_id", "deal_id") if p in query
            )
        ]
        return 200, {"success": True, "data": rows}
