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
use ``/api/v1``, so v1 paths are checked without ``/api``. Two corrections to the spec:
``next_cursor`` is checked as nullable (the pagination docs say it is ``null`` on the last
page), and so are the foreign keys ``org_id``, ``person_id`` and ``deal_id`` of request bodies
(the spec types them as integers only; ``null`` is how a v2 client unlinks, which Pipedrive's
docs do not spell out). A foreign key set to ``null`` leaves the item's answers, which never
hold ``null`` where the spec does not allow it.
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
"""Item types with custom fields."""
ITEM_PATHS = (*ENTITY_PATHS, "activities", "notes")
SEARCHABLE = {"persons": "email", "organizations": "name", "deals": "title"}
FOREIGN_KEYS = ("org_id", "person_id", "deal_id")
ACTIVITY_TYPES = ("call", "meeting", "task", "deadline", "email", "lunch")

_specs: dict[str, OpenAPI] = {}
_costs: dict[tuple[str, str], int] = {}


def nullable_foreign_keys(raw: dict[str, Any]) -> None:
    """Let PATCH and PUT bodies set a foreign key to ``null`` (unlink)."""
    for operations in raw["paths"].values():
        for method in ("patch", "put"):
            body = operations.get(method, {}).get("requestBody", {})
            for content in body.get("content", {}).values():
                _nullable_keys(raw, content.get("schema", {}))


def _nullable_keys(raw: dict[str, Any], schema: dict[str, Any]) -> None:
    while "$ref" in schema:
        node: Any = raw
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    for name, prop in schema.get("properties", {}).items():
        if name in FOREIGN_KEYS and "$ref" not in prop:
            prop["nullable"] = True
    for combined in ("allOf", "anyOf", "oneOf"):
        for part in schema.get(combined, ()):
            _nullable_keys(raw, part)


def spec(version: str) -> OpenAPI:
    if version not in _specs:
        raw = load_spec("pipedrive", f"{version}.json")
        nullable_cursors(raw)
        nullable_foreign_keys(raw)
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


def v1_time(iso: str) -> str:
    """API v1's timestamps: ``2024-05-01 10:00:00`` (UTC)."""
    return iso.replace("T", " ").removesuffix("Z")


@dataclass
class FakePipedrive:
    items: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in ITEM_PATHS}
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
    activity_priorities: list[str] = field(default_factory=list)
    """Labels of the options of activities' ``priority`` field (none: the field has none)."""
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
        is_create = request.method == "POST" and request.url.path.split("/")[-1] in ITEM_PATHS
        if fault is None and self.lose_create_answers and is_create:
            self.lose_create_answers -= 1
            fault = apply_then(httpx.ReadTimeout)
        if fault is not None:
            return fault(request, self._answer)
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
        if parts == ["activityTypes"]:
            return 200, {"success": True, "data": self._activity_types()}
        if parts[0] == "notes":
            return self._notes(method, parts[1:], query, body)
        if parts[0] == "activityFields":
            return self._page(self._activity_fields(), query)
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

    def _activity_fields(self) -> list[dict[str, Any]]:
        options = [{"id": i, "label": label} for i, label in enumerate(self.activity_priorities)]
        return [
            {
                "field_code": code,
                "field_name": code.replace("_", " ").capitalize(),
                "field_type": field_type,
                "is_custom_field": False,
                "is_optional_response_field": False,
                "options": options if code == "priority" and options else None,
            }
            for code, field_type in (
                ("subject", "varchar"),
                ("type", "varchar"),
                ("priority", "enum" if options else "int"),
            )
        ]

    @staticmethod
    def _activity_types() -> list[dict[str, Any]]:
        return [
            {
                "id": number,
                "name": key.capitalize(),
                "key_string": key,
                "icon_key": key,
                "active_flag": True,
                "is_custom_flag": False,
                "order_nr": number,
                "add_time": "2024-01-01T00:00:00Z",
                "update_time": "2024-01-01T00:00:00Z",
            }
            for number, key in enumerate(ACTIVITY_TYPES, start=1)
        ]

    def _insert(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        stamp = now_iso()
        item: dict[str, Any] = {"id": self._next_id, "add_time": stamp, "update_time": stamp}
        if kind == "notes":
            item |= {"active_flag": True, "user_id": 1}
        else:
            item["is_deleted"] = False
            item["owner_id"] = 1
        if kind in ENTITY_PATHS:
            item["custom_fields"] = {f["field_code"]: None for f in self.custom_fields[kind]}
        if kind == "deals":
            item |= {"pipeline_id": 1, "stage_id": 1, "value": 0, "currency": "EUR"}
        if kind == "activities":
            item |= {"type": "task", "done": False}
        self.items[kind][item["id"]] = item
        return self._apply(kind, item, body, stamp=stamp)

    def _apply(
        self, kind: str, item: dict[str, Any], body: dict[str, Any], stamp: str | None = None
    ) -> dict[str, Any]:
        for name, value in body.items():
            if name in FOREIGN_KEYS:
                kinds = {"org_id": "organizations", "person_id": "persons", "deal_id": "deals"}
                if value is None:
                    item.pop(name, None)
                    continue
                assert value in self.items[kinds[name]], f"{name} {value} names nothing"
                item[name] = value
            elif kind == "activities" and name == "type":
                assert value in ACTIVITY_TYPES, f"no activity type {value}"
                item[name] = value
            elif name == "custom_fields":
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
        if kind == "notes":
            assert any(item.get(p) for p in FOREIGN_KEYS), "a note needs a parent"
            for moment in ("add_time", "update_time"):
                item[moment] = v1_time(item[moment])
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
        for key in FOREIGN_KEYS:
            if key in query:
                rows = [r for r in rows if r.get(key) == int(query[key])]
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
            elif kind == "organizations":
                values = [item.get("name") or ""]
                brief = {"id": item["id"], "type": "organization", "name": item.get("name")}
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

    def _notes(
        self, method: str, rest: list[str], query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        """API v1 notes: offset pages (``start``, ``limit``), ``sort``, PUT updates."""
        if rest:
            note = self.items["notes"].get(int(rest[0]))
            if note is None:
                return 404, {"success": False, "error": "Note not found"}
            if method == "DELETE":
                del self.items["notes"][note["id"]]
                return 200, {"success": True, "data": True}
            if method == "PUT":
                note["update_time"] = now_iso()
                return 200, {"success": True, "data": self._apply("notes", note, body)}
            return 200, {"success": True, "data": note}
        if method == "POST":
            return 200, {"success": True, "data": self._insert("notes", body)}
        column, _, direction = query.get("sort", "id ASC").partition(" ")
        rows = sorted(
            self.items["notes"].values(), key=lambda n: n[column], reverse=direction == "DESC"
        )
        for key in FOREIGN_KEYS:
            if key in query:
                rows = [n for n in rows if str(n.get(key)) == query[key]]
        if query.get("updated_since"):
            since = v1_time(query["updated_since"])
            rows = [n for n in rows if n["update_time"] >= since]
        start, limit = int(query.get("start", "0")), int(query.get("limit", "100"))
        more = start + limit < len(rows)
        pagination: dict[str, Any] = {
            "start": start,
            "limit": limit,
            "more_items_in_collection": more,
        }
        if more:
            pagination["next_start"] = start + limit
        return 200, {
            "success": True,
            "data": rows[start : start + limit],
            "additional_data": {"pagination": pagination},
        }
