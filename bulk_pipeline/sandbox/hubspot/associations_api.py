"""HubSpot's v4 associations API, and the association parts of v3 object calls.

Served (paths and shapes of the official v4 spec):

- ``POST /crm/v4/associations/{from}/{to}/batch/read``: per input record, the associated records
  of the type with their association types, ``paging.next.after`` past ``PAGE_SIZE``; a record
  without associations (or no such record) is an ``errors`` entry of a 207, as HubSpot answers;
- ``.../batch/create`` (typed), ``.../batch/associate/default`` (the unlabeled type),
  ``.../batch/archive`` (every type between two records), ``.../batch/labels/archive``;
- ``PUT /crm/v4/objects/{type}/{id}/associations/default/{to}/{toId}``, ``PUT
  .../associations/{to}/{toId}`` with types, ``GET .../associations/{to}``, ``DELETE
  .../associations/{to}/{toId}``.

An association naming a record that does not exist, or a type HubSpot does not define, refuses
the whole call with HubSpot's "One or more associations are invalid"; nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

from bulk_pipeline.sandbox.dialect import Answer, ApiError, Query, Request
from bulk_pipeline.sandbox.hubspot import payloads
from bulk_pipeline.sandbox.hubspot.association_store import (
    Associated,
    HubSpotAssociations,
    Link,
    UnknownRecords,
)
from bulk_pipeline.sandbox.hubspot.associations import (
    AssociationType,
    association_type,
    default_type,
)
from bulk_pipeline.sandbox.hubspot.errors import (
    invalid_associations,
    no_associations,
    validation_error,
    wrong_from_type,
)
from bulk_pipeline.sandbox.hubspot.objects import ObjectType, object_type
from bulk_pipeline.sandbox.hubspot.store import HubSpotRecords

PAGE_SIZE = 500
"""Associated records per page: HubSpot's limit for ``GET .../associations/{to}`` (a guess for
the pages inside a batch read, which HubSpot does not state)."""
READS = frozenset(("associations/batch/read", "associations/list"))
_BATCH_OPERATIONS = {
    ("read",): "associations/batch/read",
    ("create",): "associations/batch/create",
    ("archive",): "associations/batch/archive",
    ("associate", "default"): "associations/batch/associate/default",
    ("labels", "archive"): "associations/batch/labels/archive",
}
_BATCH_PREFIX = "/crm/v4/associations/"
_OBJECTS_PREFIX = "/crm/v4/objects/"


@dataclass(frozen=True)
class AssociationRoute:
    name: str
    """The operation as the stats count it: ``associations/batch/read``, ``associations/list``..."""
    from_obj: ObjectType
    to_obj: ObjectType
    from_id: str | None = None
    to_id: str | None = None
    is_search: ClassVar[bool] = False

    @property
    def is_write(self) -> bool:
        return self.name not in READS


def parse_association_route(method: str, path: str) -> AssociationRoute | None:
    """The v4 association operation a method and path name, or ``None``."""
    if path.startswith(_BATCH_PREFIX):
        parts = path[len(_BATCH_PREFIX) :].rstrip("/").split("/")
        types = _types(parts[:2])
        if method != "POST" or types is None or parts[2:3] != ["batch"]:
            return None
        name = _BATCH_OPERATIONS.get(tuple(parts[3:]))
        return None if name is None else AssociationRoute(name, *types)
    if not path.startswith(_OBJECTS_PREFIX):
        return None
    parts = [unquote(part) for part in path[len(_OBJECTS_PREFIX) :].rstrip("/").split("/")]
    if len(parts) < 4 or parts[2] != "associations":
        return None
    (from_name, from_id, _, *rest) = parts
    to_id: str | None = None
    match method, rest:
        case "PUT", ["default", to_name, to_id]:
            name = "associations/create/default"
        case "PUT", [to_name, to_id]:
            name = "associations/create"
        case "DELETE", [to_name, to_id]:
            name = "associations/archive"
        case "GET", [to_name]:
            name = "associations/list"
        case _:
            return None
    types = _types([from_name, to_name])
    return None if types is None else AssociationRoute(name, *types, from_id, to_id)


def _types(names: Sequence[str]) -> tuple[ObjectType, ObjectType] | None:
    if len(names) != 2:
        return None
    from_obj, to_obj = object_type(names[0]), object_type(names[1])
    return None if from_obj is None or to_obj is None else (from_obj, to_obj)


class AssociationsApi:
    """The v4 operations on one store connection."""

    def __init__(
        self,
        records: HubSpotRecords,
        links: HubSpotAssociations,
        *,
        now_iso: Callable[[], str],
    ) -> None:
        self._records = records
        self._links = links
        self._now_iso = now_iso
        self._operations: dict[str, Callable[[AssociationRoute, Query, bytes], Answer]] = {
            "associations/batch/read": self._batch_read,
            "associations/batch/create": self._batch_create,
            "associations/batch/associate/default": self._batch_default,
            "associations/batch/archive": self._batch_archive,
            "associations/batch/labels/archive": self._batch_archive_labels,
            "associations/create/default": self._create_default,
            "associations/create": self._create,
            "associations/list": self._list,
            "associations/archive": self._archive,
        }

    def handle(self, route: AssociationRoute, request: Request) -> Answer:
        return self._operations[route.name](route, request.query, request.body)

    # Reads ------------------------------------------------------------------------------------

    def _batch_read(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        """``BatchResponsePublicAssociationMultiWithLabel[WithErrors]``."""
        started = self._now_iso()
        asked = [
            (_object_id(item, "id"), payloads.after(item.get("after")))
            for item in payloads.inputs(payloads.json_object(body))
        ]
        active = self._records.by_ids(
            route.from_obj.name, payloads.numeric_ids(record_id for record_id, _ in asked)
        )
        results, errors = [], []
        for record_id, after in dict(asked).items():
            page, more = (
                self._links.page(int(record_id), route.to_obj, after=after, limit=PAGE_SIZE)
                if record_id in active
                else ([], False)
            )
            if not page:
                errors.append(
                    no_associations(route.from_obj.singular, route.to_obj.singular, record_id)
                )
                continue
            result: dict[str, Any] = {"from": {"id": record_id}, "to": _associated(page)}
            if more:
                result["paging"] = {"next": {"after": str(page[-1][0])}}
            results.append(result)
        return payloads.batch(results, (started, self._now_iso()), errors)

    def _list(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        """``CollectionResponseMultiAssociatedObjectWithLabelForwardPaging``; a record that does
        not exist has no associations."""
        record_id = route.from_id or ""
        size = min(payloads.limit(payloads.first(query, "limit"), PAGE_SIZE), PAGE_SIZE)
        after = payloads.after(payloads.first(query, "after"))
        page, more = (
            self._links.page(int(record_id), route.to_obj, after=after, limit=size)
            if self._records.by_ids(route.from_obj.name, payloads.numeric_ids([record_id]))
            else ([], False)
        )
        answer: dict[str, Any] = {"results": _associated(page)}
        if more:
            answer["paging"] = {"next": {"after": str(page[-1][0])}}
        return 200, answer

    # Writes -----------------------------------------------------------------------------------

    def _batch_create(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        """``BatchResponseLabelsBetweenObjectPair``, one result per input."""
        started = self._now_iso()
        pairs = [
            (_object_id(item.get("from"), "from"), _object_id(item.get("to"), "to"), item)
            for item in payloads.inputs(payloads.json_object(body))
        ]
        typed = [
            (first, second, requested_types(item.get("types"))) for first, second, item in pairs
        ]
        self._make([Link(f, t, kind) for f, t, kinds in typed for kind in kinds])
        results = [_labels_between(route, f, t, kinds) for f, t, kinds in typed]
        return payloads.batch(results, (started, self._now_iso()), [], success=201)

    def _batch_default(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        """``BatchResponsePublicDefaultAssociation``: each association in both directions."""
        started = self._now_iso()
        kind = _default(route)
        pairs = [
            (_object_id(item.get("from"), "from"), _object_id(item.get("to"), "to"))
            for item in payloads.inputs(payloads.json_object(body))
        ]
        self._make([Link(first, second, kind) for first, second in pairs])
        results = [entry for first, second in pairs for entry in _both_ways(first, second, kind)]
        return payloads.batch(results, (started, self._now_iso()), [])

    def _create_default(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        started = self._now_iso()
        kind = _default(route)
        first, second = route.from_id or "", route.to_id or ""
        self._make([Link(first, second, kind)])
        return payloads.batch(_both_ways(first, second, kind), (started, self._now_iso()), [])

    def _create(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        """``LabelsBetweenObjectPair``; the body is a list of ``AssociationSpec``."""
        kinds = requested_types(payloads.json_value(body))
        first, second = route.from_id or "", route.to_id or ""
        self._make([Link(first, second, kind) for kind in kinds])
        return 201, _labels_between(route, first, second, kinds)

    def _batch_archive(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        inputs = payloads.inputs(payloads.json_object(body))
        pairs = [
            (_object_id(item.get("from"), "from"), _object_id(target, "to"))
            for item in inputs
            for target in _list_of(item.get("to"), "to")
        ]
        self._links.remove_pairs(_numeric_pairs(pairs))
        return 204, None

    def _batch_archive_labels(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        """Removes the given types; removing the unlabeled one removes every type between the
        two records, as HubSpot documents."""
        removed = [
            (first, second, kind)
            for item in payloads.inputs(payloads.json_object(body))
            for first, second in _numeric_pairs(
                [(_object_id(item.get("from"), "from"), _object_id(item.get("to"), "to"))]
            )
            for kind in requested_types(item.get("types"))
        ]
        self._links.remove_types(removed)
        return 204, None

    def _archive(self, route: AssociationRoute, query: Query, body: bytes) -> Answer:
        self._links.remove_pairs(_numeric_pairs([(route.from_id or "", route.to_id or "")]))
        return 204, None

    def _make(self, links: Sequence[Link]) -> None:
        try:
            self._links.create(links)
        except UnknownRecords as unknown:
            raise unknown_records(unknown) from None


# Shared with v3 creates -------------------------------------------------------------------------


def requested_types(raw: object) -> list[AssociationType]:
    """The types a list of ``AssociationSpec`` names; HubSpot's 400 for any it does not define."""
    specs = _list_of(raw, "types")
    if not specs:
        raise validation_error("Invalid input JSON: each association needs at least one type.")
    kinds, unknown = [], []
    for spec in specs:
        category, type_id = spec.get("associationCategory"), spec.get("associationTypeId")
        kind = association_type(category, type_id)
        if kind is None:
            unknown.append(f"{category}={type_id}")
        else:
            kinds.append(kind)
    if unknown:
        raise invalid_associations(
            {
                "associationSpec": unknown,
                "INVALID_ASSOCIATION_TYPE_ID": [
                    f"{spec} is not a valid association definition id" for spec in unknown
                ],
            }
        )
    return list(dict.fromkeys(kinds))


def create_links(obj: ObjectType, raw: object) -> list[tuple[str, AssociationType]]:
    """What one v3 create input's ``associations`` asks for: the record to link to and the type
    of each link. A type starting from another object type is refused as HubSpot refuses it."""
    if raw is None:
        return []
    wanted = []
    for association in _list_of(raw, "associations"):
        target = _object_id(association.get("to"), "to")
        for kind in requested_types(association.get("types")):
            if kind.from_obj is not obj:
                raise wrong_from_type(obj.type_id, kind.from_obj.type_id, kind.id)
            wanted.append((target, kind))
    return wanted


def unknown_records(unknown: UnknownRecords) -> ApiError:
    """HubSpot's answer to associations naming records that do not exist (``CONTACT=7 is not
    valid``): the record type is the one the association type needs."""
    names = [(obj.singular.upper(), value) for obj, value in unknown.missing]
    return invalid_associations(
        {
            "INVALID_OBJECT_IDS": [f"{name}={value} is not valid" for name, value in names],
            "objectId": [value for _, value in names],
            "objectType": [name for name, _ in names],
        }
    )


def v3_associations(found: Mapping[str, Sequence[Associated]]) -> dict[str, Any]:
    """The ``associations`` of a ``SimplePublicObjectWithAssociations``: per object type that has
    any, each associated record once per association type, named as v3 names types."""
    return {
        name: {
            "results": [
                {"id": str(record_id), "type": kind.name}
                for record_id, kinds in associated
                for kind in kinds
            ]
        }
        for name, associated in found.items()
        if associated
    }


# Answers and parsing ------------------------------------------------------------------------------


def _associated(page: Sequence[Associated]) -> list[dict[str, Any]]:
    """``MultiAssociatedObjectWithLabel`` entries."""
    return [
        {"toObjectId": str(record_id), "associationTypes": [k.spec_with_label() for k in kinds]}
        for record_id, kinds in page
    ]


def _labels_between(
    route: AssociationRoute, first: str, second: str, kinds: Sequence[AssociationType]
) -> dict[str, Any]:
    """A ``LabelsBetweenObjectPair``: the labels of the types just made (none for unlabeled)."""
    return {
        "fromObjectTypeId": route.from_obj.type_id,
        "fromObjectId": first,
        "toObjectTypeId": route.to_obj.type_id,
        "toObjectId": second,
        "labels": [kind.label for kind in kinds if kind.label is not None],
    }


def _both_ways(first: str, second: str, kind: AssociationType) -> list[dict[str, Any]]:
    """``PublicDefaultAssociation`` entries for a default association and its inverse."""
    return [
        {"from": {"id": first}, "to": {"id": second}, "associationSpec": kind.spec()},
        {
            "from": {"id": second},
            "to": {"id": first},
            "associationSpec": {**kind.spec(), "associationTypeId": kind.inverse},
        },
    ]


def _default(route: AssociationRoute) -> AssociationType:
    kind = default_type(route.from_obj, route.to_obj)
    if kind is None:
        raise validation_error(
            f"There is no default association type from {route.from_obj.name} to "
            f"{route.to_obj.name}."
        )
    return kind


def _object_id(raw: object, field: str) -> str:
    """A ``PublicObjectId``'s id (HubSpot takes a number too), or the id itself."""
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value):
        raise validation_error(f"Invalid input JSON: '{field}' needs an 'id'.")
    return str(value)


def _list_of(raw: object, field: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise validation_error(f"Invalid input JSON: '{field}' must be a list of objects.")
    return raw


def _numeric_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """Pairs of record ids; pairs naming no record (not numeric) have nothing to remove."""
    return [(int(a), int(b)) for a, b in pairs if a.isdigit() and b.isdigit()]
