"""Pipedrive's operations: routes (method and path template, as in the spec) and their handlers.

API v2 (``/api/v2``): persons, organizations, deals, activities, pipelines, stages (list with
cursor pagination, get, create, PATCH, delete), their *Fields listings, ``/{entity}/search`` and
``/itemSearch``. API v1 (``/api/v1``): notes (offset pagination, PUT), users, activity types.

Pipedrive has no unique keys: creating the same person twice makes two persons. A delete moves an
item to the trash for 30 days (``GET /api/v2/deals?status=deleted`` lists deleted deals); deleted
items leave lists, search and reads by id at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulk_pipeline.sandbox.dialect import Answer, Query, Request
from bulk_pipeline.sandbox.pipedrive import account, fields, search
from bulk_pipeline.sandbox.pipedrive.costs import TOKEN_COSTS
from bulk_pipeline.sandbox.pipedrive.entities import (
    ACTIVITY,
    DEAL,
    NOTE,
    ORGANIZATION,
    PERSON,
    PIPELINE,
    STAGE,
    Entity,
    clean,
    now_iso,
    parse_time,
    present,
    v1_time,
)
from bulk_pipeline.sandbox.pipedrive.errors import bad_request, not_found
from bulk_pipeline.sandbox.pipedrive.store import Item, Order, PipedriveStore
from bulk_pipeline.sandbox.pipedrive.writes import NOTE_PARENTS, prepare
from bulk_pipeline.sandbox.routing import literal_first, path_params

TRASH_DAYS = 30
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_IDS = 100
MAX_CUSTOM_FIELD_KEYS = 15


@dataclass(frozen=True, slots=True)
class PipedriveRoute:
    """One operation of the spec; ``name`` is the method and path template the stats count."""

    method: str
    template: str
    operation: str
    entity: Entity | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def cost(self) -> int:
        return TOKEN_COSTS[(self.method, self.template)]

    @property
    def is_write(self) -> bool:
        return self.method != "GET"

    @property
    def is_search(self) -> bool:
        """Pipedrive's Search API endpoints, which have their own burst window."""
        return self.template.endswith("/search") or "/itemSearch" in self.template


def _entity_routes(entity: Entity, *, searchable: bool) -> list[tuple[str, str, str, Entity]]:
    base = f"/api/v2/{entity.path}"
    routes = [
        ("GET", base, "list", entity),
        ("POST", base, "create", entity),
        ("GET", f"{base}/{{id}}", "get", entity),
        ("PATCH", f"{base}/{{id}}", "update", entity),
        ("DELETE", f"{base}/{{id}}", "delete", entity),
    ]
    if searchable:
        routes.append(("GET", f"{base}/search", "search", entity))
    return routes


def _field_routes(entity: Entity, *, creatable: bool) -> list[tuple[str, str, str, Entity]]:
    base = f"/api/v2/{entity.fields_path}"
    routes = [("GET", base, "fields", entity), ("GET", f"{base}/{{field_code}}", "field", entity)]
    if creatable:
        routes.append(("POST", base, "add_field", entity))
    return routes


ROUTES: tuple[tuple[str, str, str, Entity | None], ...] = (
    *_entity_routes(PERSON, searchable=True),
    *_entity_routes(ORGANIZATION, searchable=True),
    *_entity_routes(DEAL, searchable=True),
    *_entity_routes(ACTIVITY, searchable=False),
    *_entity_routes(PIPELINE, searchable=False),
    *_entity_routes(STAGE, searchable=False),
    *_field_routes(PERSON, creatable=True),
    *_field_routes(ORGANIZATION, creatable=True),
    *_field_routes(DEAL, creatable=True),
    *_field_routes(ACTIVITY, creatable=False),
    ("GET", "/api/v2/itemSearch", "item_search", None),
    ("GET", "/api/v1/notes", "list", NOTE),
    ("POST", "/api/v1/notes", "create", NOTE),
    ("GET", "/api/v1/notes/{id}", "get", NOTE),
    ("PUT", "/api/v1/notes/{id}", "update", NOTE),
    ("DELETE", "/api/v1/notes/{id}", "delete", NOTE),
    ("GET", "/api/v1/users", "users", None),
    ("GET", "/api/v1/users/me", "me", None),
    ("GET", "/api/v1/users/find", "find_users", None),
    ("GET", "/api/v1/users/{id}", "user", None),
    ("GET", "/api/v1/activityTypes", "activity_types", None),
)
_MISSING_COSTS = [f"{m} {t}" for m, t, *_ in ROUTES if (m, t) not in TOKEN_COSTS]
if _MISSING_COSTS:
    raise RuntimeError(f"costs.py has no token cost for {_MISSING_COSTS}; re-derive it")
_IN_ORDER = literal_first(ROUTES, lambda route: route[1])


def parse_route(method: str, path: str) -> PipedriveRoute | None:
    """The operation a method and path name, or ``None`` when the sandbox serves none."""
    for route_method, template, operation, entity in _IN_ORDER:
        params = path_params(template, path) if route_method == method else None
        if params is not None:
            return PipedriveRoute(method, template, operation, entity, params)
    return None


class PipedriveApi:
    """The operations on one store connection; one instance per client connection."""

    def __init__(self, store: PipedriveStore, search_lag_s: Callable[[], float]) -> None:
        self.store = store
        self._lag = search_lag_s
        self._operations: dict[str, Callable[[PipedriveRoute, Request], Answer]] = {
            "list": self._list,
            "create": self._create,
            "get": self._get,
            "update": self._update,
            "delete": self._delete,
            "search": self._search,
            "item_search": self._item_search,
            "fields": self._fields,
            "field": self._field,
            "add_field": self._add_field,
            "users": self._users,
            "me": self._me,
            "find_users": self._find_users,
            "user": self._user,
            "activity_types": self._activity_types,
        }

    def handle(self, route: PipedriveRoute, request: Request) -> Answer:
        """Run one operation; Pipedrive's error answers are raised as ``ApiError``."""
        return self._operations[route.operation](route, request)

    # Records ----------------------------------------------------------------------------------

    def _get(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        item = self._find(entity, route.params["id"])
        return 200, {"success": True, "data": self.present(entity, item, request.query)}

    def _create(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        changes = clean(entity, json_object(request.body), creating=True, lenient=entity is NOTE)
        now, wall = now_iso(), time.time()
        with self.store.conn.write():
            data = prepare(self.store, entity, None, changes, now)
            item_id = self.store.next_id(entity.name)
            item = self.store.insert(
                entity.name,
                item_id,
                data,
                now,
                self._document(entity, item_id, data),
                wall=wall,
                lag_s=self._lag(),
            )
        return 200, {"success": True, "data": self.present(entity, item, {})}

    def _update(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        changes = clean(entity, json_object(request.body), creating=False, lenient=entity is NOTE)
        now, wall = now_iso(), time.time()
        with self.store.conn.write():
            item = self._find(entity, route.params["id"])
            data = prepare(self.store, entity, item, changes, now)
            item = self.store.replace(
                entity.name,
                item,
                data,
                now,
                self._document(entity, item.id, data),
                wall=wall,
                lag_s=self._lag(),
            )
        return 200, {"success": True, "data": self.present(entity, item, {})}

    def _delete(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        item_id = _id(entity, route.params["id"])
        with self.store.conn.write():
            if not self.store.delete(entity.name, item_id, now_iso(), time.time()):
                raise not_found(entity.label)
        if entity is NOTE:
            return 200, {"success": True, "data": True}
        return 200, {"success": True, "data": {"id": item_id}}

    def _list(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        query = request.query
        if entity is NOTE:
            return self._list_notes(query)
        if _first(query, "filter_id") is not None:
            raise bad_request("filter_id: the sandbox has no saved filters")
        limit = _limit(query)
        order = _order(entity, query)
        conditions, deleted_since = self._conditions(entity, query)
        cursor = _decode_cursor(_first(query, "cursor"))
        items = self.store.page(
            entity.name, conditions, order, cursor, limit + 1, deleted_since=deleted_since
        )
        more = len(items) > limit
        items = items[:limit]
        next_cursor = None
        if more:
            last = items[-1]
            next_cursor = _encode_cursor(
                (self.store.order_value(entity.name, last.id, order), last.id)
            )
        codes = self.custom_codes(entity, query) if entity.custom_fields else None
        return 200, {
            "success": True,
            "data": [self.present(entity, item, codes=codes) for item in items],
            "additional_data": {"next_cursor": next_cursor},
        }

    def _list_notes(self, query: Query) -> Answer:
        """API v1's offset pagination: ``start`` and ``limit``, ``more_items_in_collection``;
        filters by parent, user and ``updated_since``."""
        start = _int_param(query, "start") or 0
        limit = _limit(query)
        conditions: list[tuple[str, Sequence[object]]] = []
        for name in (*NOTE_PARENTS, "user_id"):
            value = _int_param(query, name)
            if value is not None:
                conditions.append((f"json_extract(data, '$.{name}') = ?", (value,)))
        since = _first(query, "updated_since")
        if since:
            conditions.append(("update_time >= ?", (parse_time("updated_since", since),)))
        sort = (_first(query, "sort") or "id ASC").split()
        column = {"id": "id", "add_time": "add_time", "update_time": "update_time"}.get(sort[0])
        if (
            column is None
            or len(sort) > 2
            or (len(sort) == 2 and sort[1].upper() not in ("ASC", "DESC"))
        ):
            raise bad_request("sort: must be id, add_time or update_time, then ASC or DESC")
        order = Order(column, descending=len(sort) == 2 and sort[1].upper() == "DESC")
        items = self.store.page("note", conditions, order, None, start + limit + 1)[start:]
        more = len(items) > limit
        pagination: dict[str, Any] = {
            "start": start,
            "limit": limit,
            "more_items_in_collection": more,
        }
        if more:
            pagination["next_start"] = start + limit
        return 200, {
            "success": True,
            "data": [self.present(NOTE, item, query) for item in items[:limit]],
            "additional_data": {"pagination": pagination},
        }

    def _conditions(
        self, entity: Entity, query: Query
    ) -> tuple[list[tuple[str, Sequence[object]]], float | None]:
        """SQL conditions for a v2 list's filters, and since when to list the trash instead."""
        conditions: list[tuple[str, Sequence[object]]] = []
        ids = _first(query, "ids")
        if ids:
            wanted = [_int_text("ids", text) for text in ids.split(",") if text]
            if len(wanted) > MAX_IDS:
                raise bad_request(f"ids: at most {MAX_IDS} ids")
            conditions.append((f"id IN ({','.join('?' * len(wanted))})", wanted))
        link_filters = {
            "owner_id",
            "org_id",
            "person_id",
            "deal_id",
            "pipeline_id",
            "stage_id",
        } & {f.name for f in entity.fields}
        for name in sorted(link_filters):
            value = _int_param(query, name)
            if value is not None:
                conditions.append((f"json_extract(data, '$.{name}') = ?", (value,)))
        if entity is PERSON:
            deal_id = _int_param(query, "deal_id")
            if deal_id is not None:
                deal = self.store.get("deal", deal_id)
                person_id = deal.data.get("person_id") if deal else None
                conditions.append(("id = ?", (person_id if person_id is not None else -1,)))
        for name, operator in (("updated_since", ">="), ("updated_until", "<")):
            moment = _first(query, name)
            if moment:
                conditions.append((f"update_time {operator} ?", (parse_time(name, moment),)))
        if entity is ACTIVITY and _first(query, "done") is not None:
            done = _bool_param(query, "done")
            conditions.append(("COALESCE(json_extract(data, '$.done'), 0) = ?", (int(done),)))
        deleted_since = None
        if entity is DEAL and _first(query, "status"):
            statuses = [s for s in (_first(query, "status") or "").split(",") if s]
            unknown = set(statuses) - {"open", "won", "lost", "deleted"}
            if unknown:
                raise bad_request("status: must be open, won, lost or deleted")
            live = [s for s in statuses if s != "deleted"]
            in_status = f"json_extract(data, '$.status') IN ({','.join('?' * len(live))})"
            if "deleted" in statuses:
                deleted_since = time.time() - TRASH_DAYS * 86_400
                trash = "deleted_at IS NOT NULL"
                conditions.append((f"({trash} OR {in_status})", live) if live else (trash, ()))
            elif live:
                conditions.append((in_status, live))
        return conditions, deleted_since

    # Search -----------------------------------------------------------------------------------

    def _search(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        query = request.query
        term, exact = _term(query)
        wanted = _fields_param(query, entity.search_fields)
        filters: dict[str, int] = {}
        for name, key in (("organization_id", "org_id"), ("person_id", "person_id")):
            value = _int_param(query, name)
            if value is not None:
                filters[key] = value
        status = _first(query, "status")
        found = [
            (score, item)
            for score, item in self._matches(entity, term, wanted, exact)
            if all(_related_id(item, key) == value for key, value in filters.items())
            and (status is None or item.get("status") == status)
        ]
        page, next_cursor = _search_page(found, query)
        return 200, {
            "success": True,
            "data": {"items": [{"result_score": s, "item": item} for s, item in page]},
            "additional_data": {"next_cursor": next_cursor},
        }

    def _item_search(self, route: PipedriveRoute, request: Request) -> Answer:
        query = request.query
        term, exact = _term(query)
        searchable = {entity.name: entity for entity in (PERSON, ORGANIZATION, DEAL)}
        types = [t for t in (_first(query, "item_types") or ",".join(searchable)).split(",") if t]
        unknown = [t for t in types if t not in searchable]
        if unknown:
            raise bad_request(
                f"item_types: the sandbox searches {', '.join(searchable)}, not {unknown[0]}"
            )
        requested = _first(query, "fields")
        found = []
        for name in types:
            entity = searchable[name]
            allowed = [f for f in (requested or "").split(",") if f in entity.search_fields]
            if requested and not allowed:
                continue
            found.extend(self._matches(entity, term, allowed or entity.search_fields, exact))
        found.sort(key=lambda match: (-match[0], match[1]["type"], match[1]["id"]))
        page, next_cursor = _search_page(found, query)
        return 200, {
            "success": True,
            "data": {
                "items": [{"result_score": s, "item": item} for s, item in page],
                "related_items": [],
            },
            "additional_data": {"next_cursor": next_cursor},
        }

    def _matches(
        self, entity: Entity, term: str, wanted: Sequence[str], exact: bool
    ) -> list[tuple[float, dict[str, Any]]]:
        needle = json.dumps(term.casefold(), ensure_ascii=False)[1:-1]
        candidates = self.store.search_candidates(entity.name, needle, time.time())
        found = []
        for _, doc in candidates:
            score = search.score(doc, term, wanted, exact=exact)
            if score is not None:
                found.append((score, doc["item"]))
        found.sort(key=lambda match: (-match[0], match[1]["id"]))
        return found

    def _document(
        self, entity: Entity, item_id: int, data: Mapping[str, Any]
    ) -> search.SearchDoc | None:
        """What the search index holds about an item."""
        if entity not in (PERSON, ORGANIZATION, DEAL):
            return None
        custom = fields.search_texts(
            data.get("custom_fields") or {}, self.store.fields(entity.name)
        )
        owner = {"id": data.get("owner_id")}
        if entity is PERSON:
            organization = self._named("organization", data.get("org_id"), "name")
            item = {
                "id": item_id,
                "type": "person",
                "name": data.get("name"),
                "phones": [phone["value"] for phone in data.get("phones") or ()],
                "emails": [email["value"] for email in data.get("emails") or ()],
                "visible_to": data.get("visible_to"),
                "owner": owner,
                "custom_fields": custom,
                "notes": [data["notes"]] if data.get("notes") else [],
            }
            if organization:
                item["organization"] = organization
            return search.document(
                {
                    "name": [data.get("name")],
                    "email": [email["value"] for email in data.get("emails") or ()],
                    "phone": [phone["value"] for phone in data.get("phones") or ()],
                    "notes": [data.get("notes")],
                    "custom_fields": custom,
                },
                item,
            )
        if entity is ORGANIZATION:
            address = (data.get("address") or {}).get("value")
            item = {
                "id": item_id,
                "type": "organization",
                "name": data.get("name"),
                "visible_to": data.get("visible_to"),
                "owner": owner,
                "custom_fields": custom,
                "notes": [],
            }
            if address:
                item["address"] = address
            return search.document(
                {"name": [data.get("name")], "address": [address], "custom_fields": custom}, item
            )
        item = {
            "id": item_id,
            "type": "deal",
            "title": data.get("title"),
            "value": data.get("value"),
            "currency": data.get("currency"),
            "status": data.get("status"),
            "visible_to": data.get("visible_to"),
            "owner": owner,
            "stage": self._named("stage", data.get("stage_id"), "name"),
            "person": self._named("person", data.get("person_id"), "name"),
            "organization": self._named("organization", data.get("org_id"), "name"),
            "custom_fields": custom,
            "notes": [],
            "is_archived": bool(data.get("is_archived")),
        }
        return search.document({"title": [data.get("title")], "custom_fields": custom}, item)

    def _named(self, entity: str, item_id: Any, key: str) -> dict[str, Any] | None:
        if item_id is None:
            return None
        item = self.store.get(entity, item_id)
        return None if item is None else {"id": item_id, key: item.data.get(key)}

    # Fields -----------------------------------------------------------------------------------

    def _fields(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        every = self._all_fields(entity)
        start = _offset_cursor(_first(request.query, "cursor"))
        limit = _limit(request.query)
        page = every[start : start + limit]
        more = start + limit < len(every)
        return 200, {
            "success": True,
            "data": page,
            "additional_data": {"next_cursor": _encode_cursor(start + limit) if more else None},
        }

    def _field(self, route: PipedriveRoute, request: Request) -> Answer:
        entity = _entity(route)
        code = route.params["field_code"]
        for definition in self._all_fields(entity):
            if definition["field_code"] == code:
                return 200, {"success": True, "data": definition}
        raise not_found("Field")

    def _add_field(self, route: PipedriveRoute, request: Request) -> Answer:
        return 200, {
            "success": True,
            "data": self.add_field(_entity(route), json_object(request.body)),
        }

    def add_field(self, entity: Entity, body: Mapping[str, Any]) -> dict[str, Any]:
        """A new custom field of an entity (also the admin view's way to make one)."""
        with self.store.conn.write():
            every = [
                definition
                for name in ("person", "organization", "deal")
                for definition in self.store.fields(name)
            ]
            next_option = 1 + max(
                (option["id"] for d in every for option in d.get("options") or ()), default=0
            )
            definition = fields.new_field(entity, body, self.store.fields(entity.name), next_option)
            self.store.add_field(entity.name, definition)
        return definition

    def _all_fields(self, entity: Entity) -> list[dict[str, Any]]:
        custom = self.store.fields(entity.name) if entity.custom_fields else []
        return [*fields.standard_fields(entity), *custom]

    # Users and activity types (v1) ------------------------------------------------------------

    def _users(self, route: PipedriveRoute, request: Request) -> Answer:
        return 200, {"success": True, "data": [account.user_answer(u) for u in account.USERS]}

    def _me(self, route: PipedriveRoute, request: Request) -> Answer:
        return 200, {"success": True, "data": account.user_answer(account.USERS[0], me=True)}

    def _user(self, route: PipedriveRoute, request: Request) -> Answer:
        text = route.params["id"]
        for user in account.USERS:
            if str(user["id"]) == text:
                return 200, {"success": True, "data": account.user_answer(user)}
        raise not_found("User")

    def _find_users(self, route: PipedriveRoute, request: Request) -> Answer:
        term = (_first(request.query, "term") or "").casefold()
        if not term:
            raise bad_request("term: is required")
        key = "email" if _first(request.query, "search_by_email") == "1" else "name"
        found = [u for u in account.USERS if term in str(u[key]).casefold()]
        return 200, {"success": True, "data": [account.user_answer(u) for u in found]}

    def _activity_types(self, route: PipedriveRoute, request: Request) -> Answer:
        return 200, {"success": True, "data": account.activity_type_answers()}

    # Shared steps -----------------------------------------------------------------------------

    def _find(self, entity: Entity, text: str) -> Item:
        item = self.store.get(entity.name, _id(entity, text))
        if item is None:
            raise not_found(entity.label)
        return item

    def present(
        self, entity: Entity, item: Item, query: Query | None = None, codes: list[str] | None = None
    ) -> dict[str, Any]:
        """An item as the API answers it; ``codes`` (from ``custom_codes``) saves a query per
        item of a list."""
        if entity is NOTE:
            return self._present_note(item)
        if codes is None and entity.custom_fields:
            codes = self.custom_codes(entity, query or {})
        return present(entity, item, codes)

    def custom_codes(self, entity: Entity, query: Query) -> list[str]:
        """The custom fields an answer shows: all, or those ``custom_fields=`` names."""
        codes = [d["field_code"] for d in self.store.fields(entity.name)]
        asked = _first(query, "custom_fields")
        if not asked:
            return codes
        keys = [key for key in asked.split(",") if key]
        if len(keys) > MAX_CUSTOM_FIELD_KEYS:
            raise bad_request(f"custom_fields: at most {MAX_CUSTOM_FIELD_KEYS} keys")
        return [code for code in codes if code in keys]

    def _present_note(self, item: Item) -> dict[str, Any]:
        """A note as API v1 answers it: its own fields, names of its parents, v1 timestamps."""
        data = item.data
        user = next(u for u in account.USERS if u["id"] == data.get("user_id"))
        answer: dict[str, Any] = {
            "id": item.id,
            "active_flag": True,
            "add_time": v1_time(data.get("add_time") or item.add_time),
            "update_time": v1_time(item.update_time),
            "content": data["content"],
            "user_id": user["id"],
            "last_update_user_id": user["id"],
            "user": {
                "email": user["email"],
                "icon_url": "",
                "is_you": user["id"] == account.TOKEN_OWNER,
                "name": user["name"],
            },
        }
        for parent, entity, key, label in (
            ("deal_id", "deal", "title", "deal"),
            ("person_id", "person", "name", "person"),
            ("org_id", "organization", "name", "organization"),
        ):
            parent_id = data.get(parent)
            if parent_id is not None:
                answer[parent] = parent_id
                named = self._named(entity, parent_id, key)
                if named is not None:
                    answer[label] = {key: named[key]}
        for flag in ("deal", "organization", "person", "project", "task"):
            answer[f"pinned_to_{flag}_flag"] = bool(data.get(f"pinned_to_{flag}_flag"))
        return answer


# Parsing ------------------------------------------------------------------------------------


def _entity(route: PipedriveRoute) -> Entity:
    assert route.entity is not None
    return route.entity


def _id(entity: Entity, text: str) -> int:
    """Ids are positive integers; anything else names no item."""
    if not text.isdigit():
        raise not_found(entity.label)
    return int(text)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"Invalid JSON in the request body: {error}") from None
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object")
    return payload


def _first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _int_text(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"{name}: must be an integer, got {text!r}") from None


def _int_param(query: Query, name: str) -> int | None:
    text = _first(query, name)
    return None if text is None or text == "" else _int_text(name, text)


def _bool_param(query: Query, name: str) -> bool:
    text = (_first(query, name) or "").lower()
    if text not in ("true", "false", "1", "0"):
        raise bad_request(f"{name}: must be true or false")
    return text in ("true", "1")


def _limit(query: Query) -> int:
    limit = _int_param(query, "limit")
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit: must be between 1 and {MAX_LIMIT}")
    return limit


def _order(entity: Entity, query: Query) -> Order:
    columns = {"id": "id", "update_time": "update_time", "add_time": "add_time"}
    if entity is ACTIVITY:
        columns["due_date"] = "json_extract(data, '$.due_date')"
    if entity is STAGE:
        columns["order_nr"] = "json_extract(data, '$.order_nr')"
    sort_by = _first(query, "sort_by") or "id"
    direction = _first(query, "sort_direction") or "asc"
    if sort_by not in columns:
        raise bad_request(f"sort_by: must be one of {', '.join(columns)}")
    if direction not in ("asc", "desc"):
        raise bad_request("sort_direction: must be asc or desc")
    return Order(columns[sort_by], descending=direction == "desc")


def _encode_cursor(value: Any) -> str:
    """Cursors are opaque to clients, as Pipedrive's are."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode_cursor(text: str | None) -> tuple[Any, int] | None:
    if not text:
        return None
    value = _decoded(text)
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)):
        raise bad_request("cursor: not a cursor this list gave")
    return value[0], value[1]


def _offset_cursor(text: str | None) -> int:
    if not text:
        return 0
    value = _decoded(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request("cursor: not a cursor this list gave")
    return value


def _decoded(text: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise bad_request("cursor: not a cursor this list gave") from None


def _term(query: Query) -> tuple[str, bool]:
    term = (_first(query, "term") or "").strip()
    exact = _first(query, "exact_match") is not None and _bool_param(query, "exact_match")
    if len(term) < (1 if exact else search.MIN_TERM):
        raise bad_request(
            f"term: must be at least {search.MIN_TERM} characters (1 with exact_match)"
        )
    return term, exact


def _fields_param(query: Query, allowed: Sequence[str]) -> list[str]:
    text = _first(query, "fields")
    if not text:
        return list(allowed)
    wanted = [name for name in text.split(",") if name]
    unknown = [name for name in wanted if name not in allowed]
    if unknown:
        raise bad_request(f"fields: must be among {', '.join(allowed)}")
    return wanted


def _related_id(item: Mapping[str, Any], key: str) -> Any:
    related = item.get({"org_id": "organization", "person_id": "person"}[key])
    return related.get("id") if isinstance(related, dict) else None


def _search_page(
    found: list[tuple[float, dict[str, Any]]], query: Query
) -> tuple[list[tuple[float, dict[str, Any]]], str | None]:
    start = _offset_cursor(_first(query, "cursor"))
    limit = _limit(query)
    page = found[start : start + limit]
    return page, _encode_cursor(start + limit) if start + limit < len(found) else None
