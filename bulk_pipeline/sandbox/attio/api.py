"""Attio's operations: routes (method and path template, as in the spec) and their handlers.

Records of people, companies and deals (query, create, assert, get, ``PATCH`` appending to
multiselect attributes, ``PUT`` overwriting them, delete for good), their attributes with select
options and statuses, lists and list entries, notes, tasks (``tasks.py``), workspace members and
``/v2/self``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bulk_pipeline.sandbox.attio import filters
from bulk_pipeline.sandbox.attio.errors import attio_error, bad_request, not_found
from bulk_pipeline.sandbox.attio.store import AttioStore, Row, Values
from bulk_pipeline.sandbox.attio.tasks import Tasks
from bulk_pipeline.sandbox.attio.values import (
    DEFAULT_PROPERTY,
    WRITER,
    Attribute,
    choice_answer,
    distinct,
    now_text,
    parse_one,
    present,
    property_of,
    stamped,
    value_key,
)
from bulk_pipeline.sandbox.attio.workspace import (
    MEMBERS,
    OBJECTS,
    STANDARD_ATTRIBUTES,
    TOKEN_ID,
    TOKEN_OWNER,
    WORKSPACE_ID,
    WORKSPACE_SLUG,
    AttributeSpec,
    choice_id,
    standard_spec,
)
from bulk_pipeline.sandbox.dialect import Answer, Request
from bulk_pipeline.sandbox.routing import literal_first, path_params

DEFAULT_LIMIT = 500
ATTRIBUTE_TYPES = (
    *("text", "number", "checkbox", "currency", "date", "timestamp", "rating", "status"),
    *("select", "record-reference", "actor-reference", "location", "domain", "email-address"),
    "phone-number",
)
"""Types an attribute can be created with (``interaction`` and ``personal-name`` are Attio's)."""
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class AttioRoute:
    method: str
    template: str
    operation: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def is_write(self) -> bool:
        """Attio counts listings by ``POST .../query`` as reads."""
        return self.method != "GET" and not self.template.endswith("/query")


ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v2/self", "self"),
    ("GET", "/v2/objects", "objects"),
    ("GET", "/v2/objects/{object}", "object"),
    ("GET", "/v2/{target}/{identifier}/attributes", "attributes"),
    ("POST", "/v2/{target}/{identifier}/attributes", "create_attribute"),
    ("GET", "/v2/{target}/{identifier}/attributes/{attribute}", "attribute"),
    ("GET", "/v2/{target}/{identifier}/attributes/{attribute}/options", "choices"),
    ("POST", "/v2/{target}/{identifier}/attributes/{attribute}/options", "create_choice"),
    ("GET", "/v2/{target}/{identifier}/attributes/{attribute}/statuses", "choices"),
    ("POST", "/v2/{target}/{identifier}/attributes/{attribute}/statuses", "create_choice"),
    ("POST", "/v2/objects/{object}/records/query", "query_records"),
    ("POST", "/v2/objects/{object}/records", "create_record"),
    ("PUT", "/v2/objects/{object}/records", "assert_record"),
    ("GET", "/v2/objects/{object}/records/{record_id}", "get_record"),
    ("PATCH", "/v2/objects/{object}/records/{record_id}", "patch_record"),
    ("PUT", "/v2/objects/{object}/records/{record_id}", "put_record"),
    ("DELETE", "/v2/objects/{object}/records/{record_id}", "delete_record"),
    ("GET", "/v2/objects/{object}/records/{record_id}/entries", "record_entries"),
    ("GET", "/v2/lists", "lists"),
    ("POST", "/v2/lists", "create_list"),
    ("GET", "/v2/lists/{list}", "list"),
    ("POST", "/v2/lists/{list}/entries/query", "query_entries"),
    ("POST", "/v2/lists/{list}/entries", "create_entry"),
    ("PUT", "/v2/lists/{list}/entries", "assert_entry"),
    ("GET", "/v2/lists/{list}/entries/{entry_id}", "get_entry"),
    ("DELETE", "/v2/lists/{list}/entries/{entry_id}", "delete_entry"),
    ("GET", "/v2/workspace_members", "members"),
    ("GET", "/v2/workspace_members/{workspace_member_id}", "member"),
    ("GET", "/v2/notes", "notes"),
    ("POST", "/v2/notes", "create_note"),
    ("GET", "/v2/notes/{note_id}", "note"),
    ("DELETE", "/v2/notes/{note_id}", "delete_note"),
    ("GET", "/v2/tasks", "tasks"),
    ("POST", "/v2/tasks", "create_task"),
    ("GET", "/v2/tasks/{task_id}", "task"),
    ("PATCH", "/v2/tasks/{task_id}", "patch_task"),
    ("DELETE", "/v2/tasks/{task_id}", "delete_task"),
)
_IN_ORDER = literal_first(ROUTES, lambda route: route[1])


def parse_route(method: str, path: str) -> AttioRoute | None:
    """The operation a method and path name; literal segments win over parameters
    (``/v2/objects/{object}`` before ``/v2/{target}/{identifier}/...``)."""
    for route_method, template, operation in _IN_ORDER:
        params = path_params(template, path) if route_method == method else None
        if params is not None:
            return AttioRoute(method, template, operation, params)
    return None


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request("validation_type", f"Invalid JSON in the request body: {error}") from None
    if not isinstance(payload, dict):
        raise bad_request("validation_type", "The request body must be a JSON object.")
    return payload


def _data(body: bytes) -> dict[str, Any]:
    data = json_object(body).get("data")
    if not isinstance(data, dict):
        raise bad_request("validation_type", 'The request body needs a "data" object.')
    return data


def _first(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def _count(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise bad_request("validation_type", f"{name} must be a non-negative number")
    return int(value)


class AttioApi:
    """The operations on one store connection; one instance per client connection."""

    def __init__(self, store: AttioStore, now: Callable[[], str] = now_text) -> None:
        self.store = store
        self.now = now
        """The sandbox's clock, in Attio's timestamp format (record and value times)."""
        self.tasks = Tasks(store, now, self._object_of, self._resolver)
        self._operations: dict[str, Callable[[AttioRoute, Request], Answer]] = {
            name: getattr(self, f"_{name}") for _, _, name in ROUTES
        }

    def handle(self, route: AttioRoute, request: Request) -> Answer:
        return self._operations[route.operation](route, request)

    # Workspace --------------------------------------------------------------------------------

    def _self(self, route: AttioRoute, request: Request) -> Answer:
        return 200, {
            "active": True,
            "scope": "record_permission:read-write object_configuration:read-write "
            "list_entry:read-write list_configuration:read-write note:read-write "
            "task:read-write user_management:read",
            "client_id": TOKEN_ID,
            "token_type": "Bearer",
            "exp": None,
            "iat": 1704067200,
            "sub": WORKSPACE_ID,
            "aud": TOKEN_ID,
            "iss": "attio.com",
            "authorized_by_workspace_member_id": TOKEN_OWNER.id,
            "workspace_id": WORKSPACE_ID,
            "workspace_name": "Sandbox",
            "workspace_slug": WORKSPACE_SLUG,
            "workspace_logo_url": None,
        }

    def _objects(self, route: AttioRoute, request: Request) -> Answer:
        return 200, {"data": [o.answer() for o in OBJECTS.values()]}

    def _object(self, route: AttioRoute, request: Request) -> Answer:
        return 200, {"data": self._object_of(route.params["object"]).answer()}

    def _members(self, route: AttioRoute, request: Request) -> Answer:
        return 200, {"data": [m.answer() for m in MEMBERS]}

    def _member(self, route: AttioRoute, request: Request) -> Answer:
        wanted = route.params["workspace_member_id"]
        for member in MEMBERS:
            if member.id == wanted:
                return 200, {"data": member.answer()}
        raise not_found(f'Workspace member with ID "{wanted}" not found.')

    # Attributes -------------------------------------------------------------------------------

    def _parent(self, route: AttioRoute) -> tuple[str, str]:
        """The object slug or list id an attributes path names, and its id."""
        target, identifier = route.params["target"], route.params["identifier"]
        if target == "objects":
            found = self._object_of(identifier)
            return found.slug, found.id
        if target == "lists":
            data = self._list_of(identifier)
            return data["id"]["list_id"], data["id"]["list_id"]
        raise not_found(f'Unknown target "{target}": use objects or lists.')

    def attributes_of(self, parent_id: str) -> dict[str, Attribute]:
        """Every attribute of an object or list, by slug and by id."""
        found: dict[str, Attribute] = {}
        for definition in self.store.attributes(parent_id):
            attribute = Attribute(
                definition,
                tuple(self.store.choices(definition["id"]["attribute_id"]))
                if definition["type"] in ("status", "select")
                else (),
            )
            found[attribute.slug] = attribute
            found[attribute.id] = attribute
        return found

    def _attribute_of(self, route: AttioRoute) -> tuple[str, Attribute]:
        _, parent_id = self._parent(route)
        wanted = route.params["attribute"]
        attribute = self.attributes_of(parent_id).get(wanted)
        if attribute is None:
            raise not_found(f'Attribute with slug/ID "{wanted}" not found.')
        return parent_id, attribute

    def _attributes(self, route: AttioRoute, request: Request) -> Answer:
        _, parent_id = self._parent(route)
        every = self.store.attributes(parent_id)
        offset = _count(_first(request, "offset"), "offset", 0)
        limit = _count(_first(request, "limit"), "limit", len(every))
        return 200, {"data": [self._shown(d) for d in every[offset : offset + limit]]}

    def _attribute(self, route: AttioRoute, request: Request) -> Answer:
        _, attribute = self._attribute_of(route)
        return 200, {"data": self._shown(attribute.definition)}

    def _shown(self, definition: dict[str, Any]) -> dict[str, Any]:
        """An attribute with its default value spelt out as Attio shows it."""
        default = definition.get("sandbox_default")
        shown = {k: v for k, v in definition.items() if k != "sandbox_default"}
        if default and default["type"] == "dynamic":
            shown["default_value"] = {"type": "dynamic", "template": default["template"]}
        elif default:
            attribute = Attribute(
                definition, tuple(self.store.choices(definition["id"]["attribute_id"]))
            )
            choice = attribute.choice(default["choice"])
            value = {"status_id" if attribute.type == "status" else "option_id": None}
            if choice is not None:
                key = "status" if attribute.type == "status" else "option"
                value = {f"{key}_id": choice["id"][f"{key}_id"]}
            template = present(attribute, value, definition["id"]["object_id"])
            template.pop("active_until")
            shown["default_value"] = {"type": "static", "template": [template]}
        return shown

    def _create_attribute(self, route: AttioRoute, request: Request) -> Answer:
        _, parent_id = self._parent(route)
        data = _data(request.body)
        kind, slug, title = data.get("type"), data.get("api_slug"), data.get("title")
        if kind not in ATTRIBUTE_TYPES:
            raise bad_request(
                "validation_type", f"type must be one of {', '.join(ATTRIBUTE_TYPES)}"
            )
        if not isinstance(slug, str) or not _SLUG.match(slug) or not isinstance(title, str):
            raise bad_request("validation_type", "api_slug (snake case) and title are required")
        with self.store.conn.write():
            if slug in self.attributes_of(parent_id):
                raise attio_error(409, "slug_conflict", f'An attribute with slug "{slug}" exists.')
            config = data.get("config") or {}
            spec = AttributeSpec(
                parent_id=parent_id,
                slug=slug,
                title=title,
                type=kind,
                system=False,
                required=bool(data.get("is_required")),
                unique=bool(data.get("is_unique")),
                multiselect=bool(data.get("is_multiselect")),
                description=data.get("description"),
                currency=((config.get("currency") or {}).get("default_currency_code") or "USD")
                if kind == "currency"
                else None,
                created_at=self.now(),
            )
            definition = spec.definition()
            if kind == "record-reference":
                allowed = (config.get("record_reference") or {}).get("allowed_objects") or []
                definition["config"]["record_reference"]["allowed_object_ids"] = [
                    self._object_of(str(name)).id for name in allowed
                ]
            self.store.add_attribute(definition)
        return 200, {"data": self._shown(definition)}

    def _choices(self, route: AttioRoute, request: Request) -> Answer:
        _, attribute = self._attribute_of(route)
        self._check_choice_route(route, attribute)
        show_archived = _first(request, "show_archived") == "true"
        return 200, {
            "data": [c for c in attribute.choices if show_archived or not c["is_archived"]]
        }

    def _create_choice(self, route: AttioRoute, request: Request) -> Answer:
        parent_id, attribute = self._attribute_of(route)
        self._check_choice_route(route, attribute)
        title = _data(request.body).get("title")
        if not isinstance(title, str) or not title.strip():
            raise bad_request("validation_type", "title is required")
        with self.store.conn.write():
            if any(c["title"] == title for c in self.store.choices(attribute.id)):
                raise attio_error(409, "slug_conflict", f'"{title}" exists already.')
            new_id = str(uuid.uuid4())
            answer = choice_answer(attribute, new_id, title, parent_id)
            self.store.add_choice(attribute.id, new_id, answer)
        return 200, {"data": answer}

    @staticmethod
    def _check_choice_route(route: AttioRoute, attribute: Attribute) -> None:
        wanted = "status" if route.template.endswith("/statuses") else "select"
        if attribute.type != wanted:
            raise not_found(f'Attribute "{attribute.slug}" is not a {wanted} attribute.')

    # Records ----------------------------------------------------------------------------------

    def _object_of(self, given: str) -> Any:
        for standard in OBJECTS.values():
            if given in (standard.slug, standard.id):
                return standard
        raise not_found(f'Object with slug/ID "{given}" not found.')

    def _record_of(self, object_slug: str, record_id: str) -> Row:
        row = self.store.record(object_slug, record_id)
        if row is None:
            raise not_found(f'Record with ID "{record_id}" not found.')
        return row

    def _record_answer(
        self, standard: Any, row: Row, attributes: Mapping[str, Attribute]
    ) -> dict[str, Any]:
        values: dict[str, list[dict[str, Any]]] = {}
        for attribute in _distinct_attributes(attributes):
            stored = self._system_values(attribute, row) or row.values.get(attribute.id, [])
            values[attribute.slug] = [present(attribute, v, standard.id) for v in stored]
        return {
            "id": {"workspace_id": WORKSPACE_ID, "object_id": standard.id, "record_id": row.id},
            "created_at": row.created_at,
            "web_url": f"https://app.attio.com/{WORKSPACE_SLUG}/{standard.singular.lower()}/{row.id}",
            "values": values,
        }

    @staticmethod
    def _system_values(attribute: Attribute, row: Row) -> list[dict[str, Any]]:
        stamp = {"active_from": row.created_at, "created_by_actor": {"type": "system", "id": None}}
        if attribute.slug == "record_id" and attribute.definition["is_system_attribute"]:
            return [{"value": row.id, **stamp}]
        if attribute.slug == "created_at" and attribute.definition["is_system_attribute"]:
            return [{"value": row.created_at, **stamp}]
        return []

    def _get_record(self, route: AttioRoute, request: Request) -> Answer:
        standard = self._object_of(route.params["object"])
        row = self._record_of(standard.slug, route.params["record_id"])
        return 200, {"data": self._record_answer(standard, row, self.attributes_of(standard.id))}

    def _query_records(self, route: AttioRoute, request: Request) -> Answer:
        standard = self._object_of(route.params["object"])
        body = json_object(request.body)
        attributes = self.attributes_of(standard.id)
        filter_ = body.get("filter") or {}
        filters.check(filter_, attributes, ("record_id",))
        limit = _count(body.get("limit"), "limit", DEFAULT_LIMIT)
        offset = _count(body.get("offset"), "offset", 0)
        wanted = filters.candidates(filter_, attributes, self._holders)
        rows = self.store.records(standard.slug, None if wanted is None else sorted(wanted))
        found = [
            row
            for row in rows
            if filters.matches(filter_, _subject(attributes, row, {"record_id": row.id}))
        ]
        found = _sorted(found, body.get("sorts"), attributes)
        page = found[offset : offset + limit]
        return 200, {"data": [self._record_answer(standard, row, attributes) for row in page]}

    def _holders(self, attribute: Attribute, keys: list[str]) -> set[str]:
        return set(self.store.holders(attribute.id, keys).values())

    def _create_record(self, route: AttioRoute, request: Request) -> Answer:
        standard = self._object_of(route.params["object"])
        given = _values_of(_data(request.body))
        with self.store.conn.write():
            attributes = self.attributes_of(standard.id)
            row = self._write(standard, attributes, None, given, mode="create")
        return 200, {"data": self._record_answer(standard, row, attributes)}

    def _assert_record(self, route: AttioRoute, request: Request) -> Answer:
        """Create, or update the one record whose matching (unique) attribute holds a value
        given; its values are added to, the other multiselect attributes overwritten."""
        standard = self._object_of(route.params["object"])
        matching = _first(request, "matching_attribute")
        given = _values_of(_data(request.body))
        with self.store.conn.write():
            attributes = self.attributes_of(standard.id)
            attribute = attributes.get(matching or "")
            if attribute is None:
                raise bad_request(
                    "value_not_found",
                    f'No attribute was found for matching_attribute slug/ID "{matching}".',
                )
            if not attribute.unique:
                raise bad_request(
                    "value_not_found", "The matching attribute specified is not a unique attribute."
                )
            raw = given.get(attribute.slug, given.get(attribute.id))
            if raw in (None, []):
                raise bad_request(
                    "missing_value",
                    f'The request has no value for the matching attribute "{attribute.slug}".',
                )
            keys = [
                value_key(attribute, parse_one(attribute, item, self._resolver))
                for item in (raw if isinstance(raw, list) else [raw])
            ]
            holders = set(self.store.holders(attribute.id, keys).values())
            if len(holders) > 1:
                raise bad_request(
                    "multiple_match_results",
                    f"The values of {attribute.slug} match {len(holders)} records.",
                )
            existing = self.store.record(standard.slug, holders.pop()) if holders else None
            mode = "create" if existing is None else "assert"
            row = self._write(standard, attributes, existing, given, mode=mode, matching=attribute)
        return 200, {"data": self._record_answer(standard, row, attributes)}

    def _patch_record(self, route: AttioRoute, request: Request) -> Answer:
        return self._update_record(route, request, mode="patch")

    def _put_record(self, route: AttioRoute, request: Request) -> Answer:
        return self._update_record(route, request, mode="put")

    def _update_record(self, route: AttioRoute, request: Request, *, mode: str) -> Answer:
        standard = self._object_of(route.params["object"])
        given = _values_of(_data(request.body))
        with self.store.conn.write():
            existing = self._record_of(standard.slug, route.params["record_id"])
            attributes = self.attributes_of(standard.id)
            row = self._write(standard, attributes, existing, given, mode=mode)
        return 200, {"data": self._record_answer(standard, row, attributes)}

    def _delete_record(self, route: AttioRoute, request: Request) -> Answer:
        standard = self._object_of(route.params["object"])
        record_id = route.params["record_id"]
        with self.store.conn.write():
            if not self.store.delete_record(standard.slug, record_id):
                raise not_found(f'Record with ID "{record_id}" not found.')
        return 200, {}

    def _record_entries(self, route: AttioRoute, request: Request) -> Answer:
        standard = self._object_of(route.params["object"])
        row = self._record_of(standard.slug, route.params["record_id"])
        slugs = {data["id"]["list_id"]: data["api_slug"] for data in self.store.lists()}
        entries = self.store.entries_of(row.id)
        offset = _count(_first(request, "offset"), "offset", 0)
        limit = _count(_first(request, "limit"), "limit", 100)
        return 200, {
            "data": [
                {
                    "list_id": list_id,
                    "list_api_slug": slugs[list_id],
                    "entry_id": entry_id,
                    "created_at": created,
                }
                for list_id, entry_id, created in entries[offset : offset + limit]
            ]
        }

    def _resolver(self, target: str, reference: Mapping[str, Any]) -> str | None:
        """The record a reference names: by ``target_record_id``, or by one unique value."""
        standard = self._object_of(target)
        if reference.get("target_record_id"):
            row = self.store.record(standard.slug, str(reference["target_record_id"]))
            return None if row is None else row.id
        attributes = self.attributes_of(standard.id)
        matches = [(k, v) for k, v in reference.items() if k != "target_object"]
        if len(matches) != 1 or matches[0][0] not in attributes:
            return None
        attribute = attributes[matches[0][0]]
        raw = matches[0][1]
        keys = [
            value_key(attribute, parse_one(attribute, item, self._resolver))
            for item in (raw if isinstance(raw, list) else [raw])
        ]
        holders = (
            set(self.store.holders(attribute.id, keys).values()) if attribute.unique else set()
        )
        return holders.pop() if len(holders) == 1 else None

    def _write(
        self,
        standard: Any,
        attributes: Mapping[str, Attribute],
        existing: Row | None,
        given: Mapping[str, Any],
        *,
        mode: str,
        matching: Attribute | None = None,
    ) -> Row:
        """Apply values to a new or existing record and store it (inside a write transaction).

        ``mode``: ``create``; ``patch`` adds to multiselect attributes; ``put`` overwrites them;
        ``assert`` adds to the matching attribute and overwrites the others.
        """
        values: Values = dict(existing.values) if existing else {}
        for key, raw in given.items():
            attribute = attributes.get(key)
            if attribute is None:
                raise bad_request("value_not_found", f'Cannot find attribute with slug/ID "{key}".')
            if not attribute.writable:
                raise bad_request(
                    "immutable_value", f'Attribute "{attribute.slug}" is not writable.'
                )
            items = [] if raw is None else raw if isinstance(raw, list) else [raw]
            if not attribute.multiselect and len(items) > 1:
                raise bad_request(
                    "validation_type",
                    f'Attribute "{attribute.slug}" takes a single value, got {len(items)}.',
                )
            parsed = distinct(
                attribute, [parse_one(attribute, item, self._resolver) for item in items]
            )
            previous = values.get(attribute.id, [])
            appends = mode == "patch" or (mode == "assert" and attribute is matching)
            if attribute.multiselect and appends:
                new_keys = {value_key(attribute, v) for v in parsed}
                parsed = parsed + [v for v in previous if value_key(attribute, v) not in new_keys]
            values[attribute.id] = stamped(attribute, parsed, previous, self.now())
        record_id = existing.id if existing else str(uuid.uuid4())
        if existing is None:
            self._apply_defaults(attributes, values)
        for attribute in _distinct_attributes(attributes):
            if attribute.required and not values.get(attribute.id) and attribute.writable:
                raise bad_request(
                    "missing_value",
                    f'Required value for attribute with ID "{attribute.id}" '
                    f'("{attribute.slug}") was not provided.',
                )
        for attribute in _distinct_attributes(attributes):
            if attribute.unique and attribute.id in values:
                keys = [value_key(attribute, v) for v in values[attribute.id]]
                taken = {
                    k: r
                    for k, r in self.store.holders(attribute.id, keys).items()
                    if r != record_id
                }
                if taken:
                    key, holder = next(iter(taken.items()))
                    raise bad_request(
                        "uniqueness_conflict",
                        f'The value "{key}" provided for attribute with ID "{attribute.id}" '
                        "conflicts with one already in the system. "
                        f"Conflicting record IDs: {holder}.",
                    )
        if existing is None:
            row = Row(record_id, standard.slug, self.now(), values)
            self.store.insert_record(standard.slug, record_id, row.created_at, values)
        else:
            row = Row(record_id, standard.slug, existing.created_at, values)
            self.store.replace_record(record_id, values)
        for attribute in _distinct_attributes(attributes):
            if attribute.unique and attribute.id in values:
                self.store.set_unique(
                    attribute.id, record_id, [value_key(attribute, v) for v in values[attribute.id]]
                )
        return row

    def _apply_defaults(self, attributes: Mapping[str, Attribute], values: Values) -> None:
        """Default values of attributes a new record was given nothing for; who created it."""
        for attribute in _distinct_attributes(attributes):
            default = attribute.definition.get("sandbox_default")
            if attribute.slug == "created_by" and attribute.definition["is_system_attribute"]:
                values[attribute.id] = stamped(
                    attribute,
                    [{"referenced_actor_type": "api-token", "referenced_actor_id": TOKEN_ID}],
                    [],
                    self.now(),
                )
            elif default and not values.get(attribute.id):
                raw: Any = default.get("choice")
                if default["type"] == "dynamic":
                    raw = {"workspace_member_email_address": TOKEN_OWNER.email}
                values[attribute.id] = stamped(
                    attribute, [parse_one(attribute, raw, self._resolver)], [], self.now()
                )

    # Lists and entries ------------------------------------------------------------------------

    def _list_of(self, given: str) -> dict[str, Any]:
        for data in self.store.lists():
            if given in (data["api_slug"], data["id"]["list_id"]):
                return data
        raise not_found(f'List with slug/ID "{given}" not found.')

    def _lists(self, route: AttioRoute, request: Request) -> Answer:
        return 200, {"data": self.store.lists()}

    def _list(self, route: AttioRoute, request: Request) -> Answer:
        return 200, {"data": self._list_of(route.params["list"])}

    def _create_list(self, route: AttioRoute, request: Request) -> Answer:
        data = _data(request.body)
        missing = [
            key
            for key in (
                "name",
                "api_slug",
                "parent_object",
                "workspace_access",
                "workspace_member_access",
            )
            if key not in data
        ]
        if missing:
            raise bad_request("value_not_found", f"Missing {', '.join(missing)}.")
        slug, name = data["api_slug"], data["name"]
        if not isinstance(slug, str) or not _SLUG.match(slug) or not isinstance(name, str):
            raise bad_request("value_not_found", "api_slug must be snake case and name a string.")
        access = data["workspace_access"]
        members = data["workspace_member_access"]
        if access != "full-access" and not any(
            m.get("level") == "full-access" for m in members or []
        ):
            raise bad_request(
                "value_not_found",
                'A new list needs workspace_access "full-access" or a full-access member.',
            )
        parent = self._object_of(str(data["parent_object"]))
        with self.store.conn.write():
            if any(existing["api_slug"] == slug for existing in self.store.lists()):
                raise attio_error(409, "slug_conflict", f'A list with slug "{slug}" exists.')
            answer = {
                "id": {"workspace_id": WORKSPACE_ID, "list_id": str(uuid.uuid4())},
                "api_slug": slug,
                "name": name,
                "parent_object": [parent.slug],
                "workspace_access": access,
                "workspace_member_access": members,
                "created_by_actor": WRITER,
                "created_at": self.now(),
            }
            self.store.add_list(answer)
        return 200, {"data": answer}

    def _entry_answer(self, row: Row, attributes: Mapping[str, Attribute]) -> dict[str, Any]:
        return {
            "id": {"workspace_id": WORKSPACE_ID, "list_id": row.parent, "entry_id": row.id},
            "parent_record_id": row.parent_record_id,
            "parent_object": row.parent_object,
            "created_at": row.created_at,
            "entry_values": {
                attribute.slug: [
                    present(attribute, v, row.parent) for v in row.values.get(attribute.id, [])
                ]
                for attribute in _distinct_attributes(attributes)
            },
        }

    def _query_entries(self, route: AttioRoute, request: Request) -> Answer:
        listed = self._list_of(route.params["list"])
        list_id = listed["id"]["list_id"]
        body = json_object(request.body)
        attributes = self.attributes_of(list_id)
        filter_ = body.get("filter") or {}
        filters.check(filter_, attributes, ("entry_id", "parent_record_id"))
        limit = _count(body.get("limit"), "limit", DEFAULT_LIMIT)
        offset = _count(body.get("offset"), "offset", 0)
        found = [
            row
            for row in self.store.entries(list_id)
            if filters.matches(
                filter_,
                _subject(
                    attributes, row, {"entry_id": row.id, "parent_record_id": row.parent_record_id}
                ),
            )
        ]
        found = _sorted(found, body.get("sorts"), attributes)
        return 200, {
            "data": [self._entry_answer(r, attributes) for r in found[offset : offset + limit]]
        }

    def _entry_input(
        self, listed: dict[str, Any], request: Request
    ) -> tuple[str, str, dict[str, Any]]:
        data = _data(request.body)
        parent_object = data.get("parent_object")
        parent_record_id = data.get("parent_record_id")
        entry_values = data.get("entry_values")
        if not isinstance(entry_values, dict) or not parent_object or not parent_record_id:
            raise bad_request(
                "value_not_found", "parent_record_id, parent_object and entry_values are required."
            )
        standard = self._object_of(str(parent_object))
        if standard.slug not in listed["parent_object"]:
            raise bad_request(
                "value_not_found",
                f'List "{listed["api_slug"]}" takes {", ".join(listed["parent_object"])} records, '
                f"not {standard.slug}.",
            )
        self._record_of(standard.slug, str(parent_record_id))
        return standard.slug, str(parent_record_id), entry_values

    def _create_entry(self, route: AttioRoute, request: Request) -> Answer:
        """Add a record to a list; the same record may be added again (another entry)."""
        listed = self._list_of(route.params["list"])
        list_id = listed["id"]["list_id"]
        with self.store.conn.write():
            parent_object, parent_record_id, given = self._entry_input(listed, request)
            attributes = self.attributes_of(list_id)
            values = self._entry_values(attributes, {}, given, overwrite=True)
            row = Row(
                str(uuid.uuid4()), list_id, self.now(), values, parent_record_id, parent_object
            )
            self.store.insert_entry(row)
        return 200, {"data": self._entry_answer(row, attributes)}

    def _assert_entry(self, route: AttioRoute, request: Request) -> Answer:
        """Create or update the entry of a parent record; several of them is an error."""
        listed = self._list_of(route.params["list"])
        list_id = listed["id"]["list_id"]
        with self.store.conn.write():
            parent_object, parent_record_id, given = self._entry_input(listed, request)
            attributes = self.attributes_of(list_id)
            existing = list(self.store.entries(list_id, parent_record_id))
            if len(existing) > 1:
                raise bad_request(
                    "multiple_match_results",
                    f"MULTIPLE_MATCH_RESULTS: record {parent_record_id} has {len(existing)} "
                    f'entries in list "{listed["api_slug"]}".',
                )
            if existing:
                old = existing[0]
                values = self._entry_values(attributes, old.values, given, overwrite=True)
                row = Row(old.id, list_id, old.created_at, values, parent_record_id, parent_object)
                self.store.replace_entry(old.id, values)
            else:
                values = self._entry_values(attributes, {}, given, overwrite=True)
                row = Row(
                    str(uuid.uuid4()), list_id, self.now(), values, parent_record_id, parent_object
                )
                self.store.insert_entry(row)
        return 200, {"data": self._entry_answer(row, attributes)}

    def _entry_values(
        self,
        attributes: Mapping[str, Attribute],
        old: Values,
        given: Mapping[str, Any],
        *,
        overwrite: bool,
    ) -> Values:
        values = dict(old)
        for key, raw in given.items():
            attribute = attributes.get(key)
            if attribute is None:
                raise bad_request("value_not_found", f'Cannot find attribute with slug/ID "{key}".')
            items = [] if raw is None else raw if isinstance(raw, list) else [raw]
            parsed = distinct(
                attribute, [parse_one(attribute, item, self._resolver) for item in items]
            )
            values[attribute.id] = stamped(attribute, parsed, old.get(attribute.id, []), self.now())
        return values

    def _get_entry(self, route: AttioRoute, request: Request) -> Answer:
        listed = self._list_of(route.params["list"])
        list_id = listed["id"]["list_id"]
        row = self.store.entry(list_id, route.params["entry_id"])
        if row is None:
            raise not_found(f'Entry with ID "{route.params["entry_id"]}" not found.')
        return 200, {"data": self._entry_answer(row, self.attributes_of(list_id))}

    def _delete_entry(self, route: AttioRoute, request: Request) -> Answer:
        listed = self._list_of(route.params["list"])
        with self.store.conn.write():
            if not self.store.delete_entry(listed["id"]["list_id"], route.params["entry_id"]):
                raise not_found(f'Entry with ID "{route.params["entry_id"]}" not found.')
        return 200, {}

    # Notes ------------------------------------------------------------------------------------

    def _notes(self, route: AttioRoute, request: Request) -> Answer:
        parent_object = _first(request, "parent_object")
        parent_record_id = _first(request, "parent_record_id")
        if parent_object is not None:
            parent_object = self._object_of(parent_object).slug
        found = [
            note
            for note in self.store.notes(parent_record_id)
            if parent_object is None or note["parent_object"] == parent_object
        ]
        offset = _count(_first(request, "offset"), "offset", 0)
        limit = _count(_first(request, "limit"), "limit", 10)
        return 200, {"data": found[offset : offset + limit]}

    def _create_note(self, route: AttioRoute, request: Request) -> Answer:
        data = _data(request.body)
        missing = [
            key
            for key in ("parent_object", "parent_record_id", "title", "format", "content")
            if key not in data
        ]
        if missing:
            raise bad_request("validation_type", f"Missing {', '.join(missing)}.")
        if data["format"] not in ("plaintext", "markdown"):
            raise bad_request("validation_type", "format must be plaintext or markdown")
        standard = self._object_of(str(data["parent_object"]))
        content = str(data["content"])
        with self.store.conn.write():
            self._record_of(standard.slug, str(data["parent_record_id"]))
            note = {
                "id": {"workspace_id": WORKSPACE_ID, "note_id": str(uuid.uuid4())},
                "parent_object": standard.slug,
                "parent_record_id": str(data["parent_record_id"]),
                "title": str(data["title"]),
                "meeting_id": None,
                "content_plaintext": content,
                "content_markdown": content,
                "tags": [],
                "created_by_actor": WRITER,
                "created_at": str(data.get("created_at") or self.now()),
            }
            self.store.insert_note(note)
        return 200, {"data": note}

    def _note(self, route: AttioRoute, request: Request) -> Answer:
        note = self.store.note(route.params["note_id"])
        if note is None:
            raise not_found(f'Note with ID "{route.params["note_id"]}" not found.')
        return 200, {"data": note}

    def _delete_note(self, route: AttioRoute, request: Request) -> Answer:
        with self.store.conn.write():
            if not self.store.delete_note(route.params["note_id"]):
                raise not_found(f'Note with ID "{route.params["note_id"]}" not found.')
        return 200, {}

    # Tasks ------------------------------------------------------------------------------------

    def _tasks(self, route: AttioRoute, request: Request) -> Answer:
        limit = _first(request, "limit")
        return self.tasks.list(
            linked_object=_first(request, "linked_object"),
            linked_record_id=_first(request, "linked_record_id"),
            is_completed=_first(request, "is_completed"),
            assignee=_first(request, "assignee"),
            sort=_first(request, "sort"),
            offset=_count(_first(request, "offset"), "offset", 0),
            limit=None if limit is None else _count(limit, "limit", 0),
        )

    def _create_task(self, route: AttioRoute, request: Request) -> Answer:
        return self.tasks.create(_data(request.body))

    def _task(self, route: AttioRoute, request: Request) -> Answer:
        return self.tasks.get(route.params["task_id"])

    def _patch_task(self, route: AttioRoute, request: Request) -> Answer:
        return self.tasks.patch(route.params["task_id"], _data(request.body))

    def _delete_task(self, route: AttioRoute, request: Request) -> Answer:
        return self.tasks.delete(route.params["task_id"])

    # The admin view ---------------------------------------------------------------------------

    def all_records(self, object_slug: str) -> list[dict[str, Any]]:
        standard = OBJECTS[object_slug]
        attributes = self.attributes_of(standard.id)
        return [
            self._record_answer(standard, row, attributes)
            for row in self.store.records(object_slug)
        ]

    def all_entries(self) -> list[dict[str, Any]]:
        return [
            self._entry_answer(row, self.attributes_of(data["id"]["list_id"]))
            for data in self.store.lists()
            for row in self.store.entries(data["id"]["list_id"])
        ]

    def seed(self) -> None:
        """The standard attributes, deal stages and select options of a fresh workspace."""
        if not self.store.is_empty():
            return
        for object_slug, standards in STANDARD_ATTRIBUTES.items():
            for standard in standards:
                spec = standard_spec(object_slug, standard)
                definition = spec.definition()
                if standard.default is not None:
                    definition["sandbox_default"] = standard.default
                self.store.add_attribute(definition)
                attribute = Attribute(definition)
                for title in standard.choices:
                    new_id = choice_id(attribute.id, title)
                    self.store.add_choice(
                        attribute.id,
                        new_id,
                        choice_answer(attribute, new_id, title, spec.parent_id),
                    )


def _values_of(data: Mapping[str, Any]) -> dict[str, Any]:
    values = data.get("values")
    if not isinstance(values, dict):
        raise bad_request("validation_type", 'The request needs "data": {"values": {...}}.')
    return values


def _distinct_attributes(attributes: Mapping[str, Attribute]) -> Iterable[Attribute]:
    """Each attribute once (the mapping holds it by slug and by id), in definition order."""
    seen: set[str] = set()
    for attribute in attributes.values():
        if attribute.id not in seen and not attribute.definition["is_archived"]:
            seen.add(attribute.id)
            yield attribute


def _subject(
    attributes: Mapping[str, Attribute], row: Row, plain: Mapping[str, str]
) -> filters.Subject:
    values = dict(row.values)
    for attribute in _distinct_attributes(attributes):
        if attribute.slug == "created_at" and attribute.definition["is_system_attribute"]:
            values[attribute.id] = [{"value": row.created_at}]
    return filters.Subject(attributes, values, plain)


def _sorted(rows: list[Row], sorts: Any, attributes: Mapping[str, Attribute]) -> list[Row]:
    """Creation order, or by ``sorts`` (attribute and optional field; the first value counts)."""
    if not sorts:
        return rows
    if not isinstance(sorts, list):
        raise bad_request("validation_type", "sorts must be a list")
    for sort in reversed(sorts):
        attribute = attributes.get(str(sort.get("attribute"))) if isinstance(sort, dict) else None
        if attribute is None:
            raise bad_request(
                "validation_type", "each sort names an attribute of the object or list"
            )
        name = sort.get("field") or DEFAULT_PROPERTY.get(attribute.type, "value")

        def key(row: Row, attribute: Attribute = attribute, name: str = name) -> tuple[bool, str]:
            values = row.values.get(attribute.id) or []
            found = property_of(attribute, values[0], name) if values else None
            return (found is None, str(found))

        rows = sorted(rows, key=key, reverse=sort.get("direction") == "desc")
    return rows
