"""HubSpot's CRM v3 object operations: a parsed request in, a status and a JSON body out.

Apart from the HTTP plumbing in ``server.py`` so that the operations read in one place. Shapes
follow the schemas of the official specs (``SimplePublicObject``,
``BatchResponseSimplePublicObject[WithErrors]``, ``CollectionResponseWithTotalSimplePublicObject``).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from bulk_pipeline.sandbox.dialect import Answer, ApiError, Query, Request
from bulk_pipeline.sandbox.hubspot import payloads
from bulk_pipeline.sandbox.hubspot.association_store import (
    HubSpotAssociations,
    Link,
    UnknownRecords,
    link,
)
from bulk_pipeline.sandbox.hubspot.associations_api import (
    create_links,
    unknown_records,
    v3_associations,
)
from bulk_pipeline.sandbox.hubspot.errors import (
    hubspot_error,
    invalid_properties,
    missing_required,
    non_unique_id_property,
    object_not_found,
    standard_error,
    validation_error,
)
from bulk_pipeline.sandbox.hubspot.objects import (
    DEALS,
    DEFAULT_PROPERTIES,
    ObjectType,
    clean_properties,
    object_type,
    unset_required,
)
from bulk_pipeline.sandbox.hubspot.pipelines import (
    Pipeline,
    deal_stage_issues,
    in_default_pipeline,
)
from bulk_pipeline.sandbox.hubspot.store import Filter, HubSpotRecords, KeyConflict, StoredRecord

MAX_SEARCH_LIMIT = 200
MAX_LIST_LIMIT = 100
SEARCH_OPERATORS = frozenset(("EQ", "NEQ", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"))
WRITE_ROUTES = frozenset(
    ("create", "update", "archive", "batch/create", "batch/update", "batch/upsert", "batch/archive")
)
_BATCH_OPERATIONS = frozenset(("create", "read", "update", "upsert", "archive"))
_PREFIX = "/crm/v3/objects/"


@dataclass(frozen=True)
class HubSpotRoute:
    name: str
    """The operation as the stats count it: ``create``, ``get``, ``batch/upsert``, ``search``..."""
    obj: ObjectType
    record_id: str | None = None

    @property
    def is_write(self) -> bool:
        return self.name in WRITE_ROUTES

    @property
    def is_search(self) -> bool:
        return self.name == "search"


def parse_route(method: str, path: str) -> HubSpotRoute | None:
    """The operation a method and path name, or ``None`` when HubSpot has no such endpoint."""
    if not path.startswith(_PREFIX):
        return None
    type_name, *rest = path[len(_PREFIX) :].rstrip("/").split("/")
    obj = object_type(type_name)
    if obj is None:
        return None
    match method, rest:
        case "POST", []:
            return HubSpotRoute("create", obj)
        case "GET", []:
            return HubSpotRoute("list", obj)
        case "POST", ["search"]:
            return HubSpotRoute("search", obj)
        case "POST", ["batch", operation] if operation in _BATCH_OPERATIONS:
            return HubSpotRoute(f"batch/{operation}", obj)
        case "GET", [record_id]:
            return HubSpotRoute("get", obj, unquote(record_id))
        case "PATCH", [record_id]:
            return HubSpotRoute("update", obj, unquote(record_id))
        case "DELETE", [record_id]:
            return HubSpotRoute("archive", obj, unquote(record_id))
    return None


def public(record: StoredRecord, wanted: Iterable[str] | None = None) -> dict[str, Any]:
    """A record as a ``SimplePublicObject``, keeping the ``wanted`` properties that have values."""
    properties = record.properties
    if wanted is not None:
        properties = {name: properties[name] for name in wanted if name in properties}
    return {
        "id": record.id,
        "properties": properties,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "archived": False,
    }


class CrmApi:
    """The operations of one store connection; one instance per client connection."""

    def __init__(
        self,
        store: HubSpotRecords,
        links: HubSpotAssociations,
        *,
        now_iso: Callable[[], str],
        pipelines: Callable[[], Sequence[Pipeline]],
    ) -> None:
        self._store = store
        self._links = links
        self._now_iso = now_iso
        """The CRM's clock: when records are created and updated, and batch times."""
        self._pipelines = pipelines
        """The account's deal pipelines now, which deals' ``pipeline`` and ``dealstage`` name."""
        self._operations: dict[str, Callable[[HubSpotRoute, Query, bytes], Answer]] = {
            "create": self._create,
            "get": self._get,
            "update": self._update,
            "archive": self._archive,
            "list": self._list,
            "search": self._search,
            "batch/create": self._batch_create,
            "batch/read": self._batch_read,
            "batch/update": self._batch_update,
            "batch/upsert": self._batch_upsert,
            "batch/archive": self._batch_archive,
        }

    def handle(self, route: HubSpotRoute, request: Request) -> Answer:
        """Run one operation; HubSpot's error answers are raised as ``ApiError``."""
        return self._operations[route.name](route, request.query, request.body)

    # Single records ---------------------------------------------------------------------------

    def _create(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        (record,) = self._insert(route.obj, [payloads.json_object(body)])
        return 201, public(record)

    def _get(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        """``SimplePublicObjectWithAssociations``."""
        record = self._find_one(route, query, writing=False)
        wanted = _wanted(route.obj, payloads.query_list(query, "properties"))
        (answer,) = self._with_associations([public(record, wanted)], query)
        return 200, answer

    def _update(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        (patch,) = _all_properties(route.obj, [payloads.json_object(body)])
        record = self._find_one(route, query, writing=True)
        self._check_deals(route.obj, [(patch, record.properties)])
        written = self._apply_updates(route.obj, [(int(record.id), patch)])
        if record.id not in written:
            raise object_not_found(route.obj.label, record.id)
        return 200, public(written[record.id])

    def _archive(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        self._store.archive(
            route.obj.name, payloads.numeric_ids([route.record_id or ""]), self._now_iso()
        )
        return 204, None

    def _find_one(self, route: HubSpotRoute, query: Query, *, writing: bool) -> StoredRecord:
        record_id = route.record_id or ""
        id_property = payloads.query_list(query, "idProperty")
        by = _id_property(route.obj, id_property[0] if id_property else None, writing=writing)
        (record,) = self._resolve(route.obj, by, [record_id])
        if record is None:
            raise object_not_found(route.obj.label, record_id)
        return record

    # Listing and search -----------------------------------------------------------------------

    def _list(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        limit = min(payloads.limit(payloads.first(query, "limit")), MAX_LIST_LIMIT)
        after = payloads.after(payloads.first(query, "after"))
        records, _, more = self._store.search(
            route.obj.name, route.obj.unique_key, [], after=after, limit=limit
        )
        wanted = _wanted(route.obj, payloads.query_list(query, "properties"))
        results = self._with_associations([public(record, wanted) for record in records], query)
        answer: dict[str, Any] = {"results": results}
        if more:
            answer["paging"] = {"next": {"after": records[-1].id}}
        return 200, answer

    def _with_associations(
        self, answers: list[dict[str, Any]], query: Query
    ) -> list[dict[str, Any]]:
        """Records with the ``associations`` the query's ``associations`` asks for; object types
        HubSpot does not know are ignored, as the spec says, and so are types without any."""
        kinds = dict.fromkeys(
            found
            for found in map(object_type, payloads.query_list(query, "associations"))
            if found is not None
        )
        if not kinds:
            return answers
        ids = [int(answer["id"]) for answer in answers]
        found = {obj.name: self._links.of_records(ids, obj) for obj in kinds}
        for answer in answers:
            mine = {name: by_id.get(int(answer["id"]), []) for name, by_id in found.items()}
            associations = v3_associations(mine)
            if associations:
                answer["associations"] = associations
        return answers

    def _search(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        """Filters EQ, NEQ, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY, case-insensitive.

        Results always come in id order (``sorts`` is accepted and not applied); a free-text
        ``query`` is refused rather than ignored, since ignoring it would return everything.
        """
        payload = payloads.json_object(body)
        if payload.get("query"):
            raise validation_error("The sandbox does not support free-text 'query' searches.")
        limit = payloads.limit(payload.get("limit"))
        if limit > MAX_SEARCH_LIMIT:
            raise validation_error(
                f"limit must be at most {MAX_SEARCH_LIMIT}, got {limit}.", limit=[str(limit)]
            )
        groups = _filter_groups(route.obj, payload.get("filterGroups") or [])
        records, total, more = self._store.search(
            route.obj.name,
            route.obj.unique_key,
            groups,
            after=payloads.after(payload.get("after")),
            limit=limit,
        )
        wanted = _wanted(route.obj, _string_list(payload.get("properties"), "properties"))
        answer: dict[str, Any] = {
            "total": total,
            "results": [public(record, wanted) for record in records],
        }
        if more:
            answer["paging"] = {"next": {"after": records[-1].id}}
        return 200, answer

    # Batches ----------------------------------------------------------------------------------

    def _batch_create(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        started = self._now_iso()
        records = self._insert(route.obj, payloads.inputs(payloads.json_object(body)))
        return payloads.batch(
            [public(record) for record in records], (started, self._now_iso()), [], success=201
        )

    def _batch_read(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        started = self._now_iso()
        payload = payloads.json_object(body)
        asked = _input_ids(payloads.inputs(payload))
        by = _id_property(route.obj, payload.get("idProperty"), writing=False)
        targets = self._resolve(route.obj, by, asked)
        wanted = _wanted(route.obj, _string_list(payload.get("properties"), "properties"))
        unique = {record.id: record for record in targets if record is not None}
        missing = [value for value, record in zip(asked, targets, strict=True) if record is None]
        errors = [_not_found("get", route.obj, missing)] if missing else []
        return payloads.batch(
            [public(record, wanted) for record in unique.values()],
            (started, self._now_iso()),
            errors,
        )

    def _batch_update(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        started = self._now_iso()
        inputs = payloads.inputs(payloads.json_object(body))
        patches = _all_properties(route.obj, inputs)
        asked = _input_ids(inputs)
        by = _id_property(route.obj, _common(inputs, "idProperty"), writing=True)
        _refuse_duplicates(asked if by is None else [value.lower() for value in asked])
        targets = self._resolve(route.obj, by, asked)
        found = [
            (record, patch)
            for record, patch in zip(targets, patches, strict=True)
            if record is not None
        ]
        self._check_deals(route.obj, [(patch, record.properties) for record, patch in found])
        changes = [(int(record.id), patch) for record, patch in found]
        written = self._apply_updates(route.obj, changes)
        missing = [
            value
            for value, record in zip(asked, targets, strict=True)
            if record is None or record.id not in written
        ]
        results = [public(record) for record in written.values()]
        errors = [_not_found("update", route.obj, missing)] if missing else []
        return payloads.batch(results, (started, self._now_iso()), errors)

    def _batch_upsert(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        """Create or update by the type's unique key; the input's ``id`` is the key's value."""
        started = self._now_iso()
        obj = route.obj
        inputs = payloads.inputs(payloads.json_object(body))
        if not inputs:
            return payloads.batch([], (started, self._now_iso()), [])
        key_property = _id_property(
            obj, _common(inputs, "idProperty") or "hs_object_id", writing=True
        )
        if key_property is None:
            raise non_unique_id_property("update/upsert", obj.type_id, "hs_object_id")
        ids = _input_ids(inputs)
        patches = _all_properties(
            obj,
            [
                {"properties": {**(item.get("properties") or {}), key_property: value}}
                for item, value in zip(inputs, ids, strict=True)
            ],
        )
        keys = [(patch[key_property] or "").lower() for patch in patches]
        _refuse_duplicates(keys)
        results = self._store.upsert(
            obj.name, key_property, list(zip(keys, patches, strict=True)), self._now_iso()
        )
        return payloads.batch(
            [{**public(record), "new": new} for record, new in results],
            (started, self._now_iso()),
            [],
        )

    def _batch_archive(self, route: HubSpotRoute, query: Query, body: bytes) -> Answer:
        asked = _input_ids(payloads.inputs(payloads.json_object(body)))
        self._store.archive(route.obj.name, payloads.numeric_ids(asked), self._now_iso())
        return 204, None

    # Shared steps -----------------------------------------------------------------------------

    def _new_properties(
        self, obj: ObjectType, inputs: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, str | None]]:
        """The properties of records to create, checked as a create checks them."""
        patches = _all_properties(obj, inputs)
        if obj is not DEALS:
            return patches
        self._check_deals(obj, [(patch, None) for patch in patches])
        return [in_default_pipeline(patch) for patch in patches]

    def _check_deals(
        self,
        obj: ObjectType,
        changes: Sequence[tuple[Mapping[str, str | None], Mapping[str, str] | None]],
    ) -> None:
        """Refuse deal writes whose pipeline or stage does not exist, every problem at once."""
        if obj is not DEALS:
            return
        issues = [
            problem
            for patch, current in changes
            for problem in deal_stage_issues(self._pipelines(), patch, current)
        ]
        if issues:
            raise invalid_properties(issues)

    def _insert(self, obj: ObjectType, inputs: Sequence[Mapping[str, Any]]) -> list[StoredRecord]:
        """Create records with their associations, or refuse the whole call."""
        patches = self._new_properties(obj, inputs)
        unset = unset_required(obj, patches)
        if unset:
            raise missing_required(obj.singular, unset)
        wanted = [create_links(obj, item.get("associations")) for item in inputs]
        records = [{name: value for name, value in p.items() if value is not None} for p in patches]
        _refuse_repeated_keys(obj, records)

        def associate(db: sqlite3.Connection, created: list[StoredRecord]) -> None:
            link(
                db,
                [
                    Link(record.id, target, kind)
                    for record, links in zip(created, wanted, strict=True)
                    for target, kind in links
                ],
            )

        try:
            return self._store.create(
                obj.name, obj.unique_key, records, self._now_iso(), then=associate
            )
        except KeyConflict as conflict:
            raise _conflict(obj, conflict) from None
        except UnknownRecords as unknown:
            raise unknown_records(unknown) from None

    def _apply_updates(
        self, obj: ObjectType, changes: Sequence[tuple[int, dict[str, str | None]]]
    ) -> dict[str, StoredRecord]:
        if not changes:
            return {}
        try:
            return self._store.update(obj.name, obj.unique_key, changes, self._now_iso())
        except KeyConflict as conflict:
            raise _conflict(obj, conflict) from None

    def _resolve(
        self, obj: ObjectType, by: str | None, values: Sequence[str]
    ) -> list[StoredRecord | None]:
        """The active record each value names (``None`` if none): ids, or unique-key values."""
        if by is None:
            by_id = self._store.by_ids(obj.name, payloads.numeric_ids(values))
            return [by_id.get(value) for value in values]
        by_key = self._store.by_keys(obj.name, [value.lower() for value in values])
        return [by_key.get(value.lower()) for value in values]


# Parsing ------------------------------------------------------------------------------------


def _all_properties(
    obj: ObjectType, inputs: Sequence[Mapping[str, Any]]
) -> list[dict[str, str | None]]:
    """Cleaned properties of every input; any bad value fails the whole call, as in HubSpot."""
    issues: list[dict[str, Any]] = []
    cleaned = [clean_properties(obj, item.get("properties"), issues) for item in inputs]
    if issues:
        raise invalid_properties(issues)
    return cleaned


def _input_ids(inputs: Sequence[Mapping[str, Any]]) -> list[str]:
    ids = [item.get("id") for item in inputs]
    if not all(isinstance(value, str | int) and str(value) for value in ids):
        raise validation_error("Every input needs an 'id'.")
    return [str(value) for value in ids]


def _common(inputs: Sequence[Mapping[str, Any]], field: str) -> Any:
    """A per-input field that the sandbox needs to be the same on every input."""
    values = {item.get(field) for item in inputs}
    if len(values) > 1:
        raise validation_error(f"All inputs of one batch must use the same {field}.")
    return values.pop() if values else None


def _id_property(obj: ObjectType, id_property: object, *, writing: bool) -> str | None:
    """``None`` for record ids, else the unique property that identifies records.

    HubSpot reads by record id when ``idProperty`` is absent or ``hs_object_id``; it refuses any
    property whose values are not unique (company ``domain`` is not), and refuses
    ``hs_object_id`` as an ``idProperty`` for updates and upserts.
    """
    if id_property in (None, ""):
        return None
    if id_property == "hs_object_id" and not writing:
        return None
    if obj.unique_key is None or id_property != obj.unique_key:
        verb = "update/upsert" if writing else "read"
        raise non_unique_id_property(verb, obj.type_id, str(id_property))
    return obj.unique_key


def _refuse_duplicates(ids: Sequence[str]) -> None:
    duplicates = sorted(value for value, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise validation_error(
            f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. IDs must be unique",
            ids=duplicates,
        )


def _string_list(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise validation_error(f"'{name}' must be a list of strings.")
    return value


def _filter_groups(obj: ObjectType, raw: object) -> list[list[Filter]]:
    if not isinstance(raw, list):
        raise validation_error("filterGroups must be a list.")
    groups = []
    for group in raw:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise validation_error("Each filter group needs a 'filters' list.")
        groups.append([_filter(obj, item) for item in filters])
    return groups


def _filter(obj: ObjectType, raw: object) -> Filter:
    if not isinstance(raw, dict):
        raise validation_error("Each filter must be an object.")
    name, operator = raw.get("propertyName"), raw.get("operator")
    if name not in obj.readable:
        raise validation_error(
            f"There is no property {name!r} on {obj.name} to filter on.",
            propertyName=[str(name)],
        )
    if operator not in SEARCH_OPERATORS:
        supported = ", ".join(sorted(SEARCH_OPERATORS))
        raise validation_error(f"Operator {operator!r} is not supported; use one of {supported}.")
    if operator in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise validation_error(f"Operator {operator} needs a non-empty 'values' list.")
    elif operator in ("EQ", "NEQ"):
        if raw.get("value") is None:
            raise validation_error(f"Operator {operator} needs a 'value'.")
        values = [raw["value"]]
    else:
        values = []
    return Filter(str(name), str(operator), tuple(str(value) for value in values))


# Answers ------------------------------------------------------------------------------------


def _wanted(obj: ObjectType, requested: Sequence[str]) -> frozenset[str]:
    """What a read returns: the requested properties, or the type's defaults, plus the CRM's own."""
    return frozenset(requested or obj.default_read).union(DEFAULT_PROPERTIES)


def _not_found(verb: str, obj: ObjectType, ids: Sequence[str]) -> dict[str, Any]:
    return standard_error(
        "OBJECT_NOT_FOUND",
        f"Could not {verb} some {obj.label.upper()} objects, they may be deleted or not exist. "
        "Check that ids are valid.",
        ids,
    )


def _refuse_repeated_keys(obj: ObjectType, records: Sequence[Mapping[str, str]]) -> None:
    """A batch create naming one unique key twice conflicts with itself."""
    if obj.unique_key is None:
        return
    seen: set[str] = set()
    for props in records:
        key = (props.get(obj.unique_key) or "").lower()
        if key and key in seen:
            raise hubspot_error(
                409,
                "CONFLICT",
                f"Duplicate {obj.unique_key} {key} in batch input: "
                f"each {obj.label.lower()} must appear once.",
            )
        seen.add(key)


def _conflict(obj: ObjectType, conflict: KeyConflict) -> ApiError:
    return hubspot_error(
        409, "CONFLICT", f"{obj.label} already exists. Existing ID: {conflict.existing_id}"
    )
