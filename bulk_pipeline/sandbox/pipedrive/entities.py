"""Pipedrive's entities as the sandbox models them: their fields, what a write may set, how each
value is checked, and how an item reads back.

Field names and types follow the request and response schemas of Pipedrive's v2 spec (v1 for
notes). API v2 is strict about types ("numeric fields do not convert strings", booleans are
``true``/``false``), so the sandbox refuses a string where an integer belongs; v1 (notes) also
takes numbers written as strings and 0/1 flags. A field the entity does not have is refused,
which catches the v1 habit of sending custom-field hash keys at the top level.

Answers leave out a field that has no value unless the spec declares it nullable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from bulk_pipeline.sandbox.pipedrive.errors import bad_request
from bulk_pipeline.sandbox.pipedrive.store import Item

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
ADDRESS_PARTS = (
    "value",
    "country",
    "admin_area_level_1",
    "admin_area_level_2",
    "locality",
    "sublocality",
    "route",
    "street_number",
    "subpremise",
    "postal_code",
)
FIELD_TYPES = {
    "text": "varchar",
    "int": "int",
    "number": "double",
    "bool": "boolean",
    "date": "date",
    "time": "time",
    "datetime": "date",
    "int_list": "set",
    "contacts": "varchar",
    "address": "address",
    "participants": "people",
    "objects": "json",
    "enum": "enum",
    "flag": "boolean",
}
"""The ``field_type`` a *Fields listing shows for a standard field of each kind."""
LINK_TYPES = {
    "user": "user",
    "organization": "org",
    "person": "people",
    "deal": "deal",
    "stage": "stage",
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    """text, int, number, bool, date, time, datetime, int_list, contacts, address,
    participants, objects, enum or flag (v1's 0/1)."""
    required: bool = False
    """Needed on create."""
    nullable: bool = False
    """The spec lets the answer hold ``null``; otherwise a field without value is left out."""
    writable: bool = True
    link: str | None = None
    """The entity (or ``user``, ``activity_type``) whose id or key the value must name."""
    choices: tuple[str, ...] = ()

    @property
    def field_type(self) -> str:
        if self.link in LINK_TYPES:
            return LINK_TYPES[self.link]
        if self.name == "visible_to":
            return "visible_to"
        if self.name == "status":
            return "status"
        if self.name == "phones":
            return "phone"
        return FIELD_TYPES[self.kind]

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Entity:
    name: str
    """Singular, as Pipedrive's search calls item types (``person``)."""
    path: str
    """The path segment (``persons``)."""
    label: str
    """How messages name one (``Person``)."""
    fields: tuple[Field, ...]
    fields_path: str | None = None
    """The path of its fields listing (``personFields``), if it has one."""
    custom_fields: bool = False
    search_fields: tuple[str, ...] = ()
    """What ``fields=`` of its search may name."""

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, Field]:
        return {field.name: field for field in self.fields}


def _f(name: str, kind: str = "text", **options: Any) -> Field:
    return Field(name, kind, **options)


def _read_only(name: str, kind: str = "text", *, nullable: bool = False) -> Field:
    return Field(name, kind, nullable=nullable, writable=False)


_OWNED = (
    _f("owner_id", "int", link="user"),
    _f("visible_to", "int"),
    _f("label_ids", "int_list"),
)

PERSON = Entity(
    "person",
    "persons",
    "Person",
    (
        _f("name"),
        _f("first_name"),
        _f("last_name"),
        *_OWNED,
        _f("org_id", "int", link="organization"),
        _f("emails", "contacts"),
        _f("phones", "contacts"),
        _f("postal_address", "address"),
        _f("notes"),
        _f("im", "contacts"),
        _f("birthday", "date"),
        _f("job_title"),
        _f("marketing_status", "enum", choices=("no_consent", "unsubscribed", "subscribed")),
        _f("add_time", "datetime"),
    ),
    fields_path="personFields",
    custom_fields=True,
    search_fields=("custom_fields", "email", "notes", "phone", "name"),
)
ORGANIZATION = Entity(
    "organization",
    "organizations",
    "Organization",
    (
        _f("name", required=True),
        *_OWNED,
        _f("address", "address"),
        _f("website", nullable=True),
        _f("linkedin", nullable=True),
        _f("industry", "int", nullable=True),
        _f("annual_revenue", "int", nullable=True),
        _f("employee_count", "int", nullable=True),
        _f("add_time", "datetime"),
    ),
    fields_path="organizationFields",
    custom_fields=True,
    search_fields=("address", "custom_fields", "notes", "name"),
)
DEAL = Entity(
    "deal",
    "deals",
    "Deal",
    (
        _f("title", required=True),
        *_OWNED,
        _f("person_id", "int", link="person"),
        _f("org_id", "int", link="organization"),
        _f("pipeline_id", "int", link="pipeline"),
        _f("stage_id", "int", link="stage"),
        _f("value", "number"),
        _f("currency"),
        _f("is_archived", "bool"),
        _f("archive_time", "datetime"),
        _f("status", "enum", choices=("open", "won", "lost")),
        _f("probability", "number", nullable=True),
        _f("lost_reason", nullable=True),
        _f("close_time", "datetime", nullable=True),
        _f("won_time", "datetime"),
        _f("lost_time", "datetime"),
        _f("expected_close_date", "date"),
        _read_only("stage_change_time"),
        _read_only("origin"),
        _read_only("origin_id", nullable=True),
        _read_only("channel", "int", nullable=True),
        _read_only("channel_id", nullable=True),
        _read_only("source_lead_id", nullable=True),
        _read_only("arr", "number", nullable=True),
        _read_only("mrr", "number", nullable=True),
        _read_only("acv", "number", nullable=True),
    ),
    fields_path="dealFields",
    custom_fields=True,
    search_fields=("custom_fields", "notes", "title"),
)
ACTIVITY = Entity(
    "activity",
    "activities",
    "Activity",
    (
        _f("subject"),
        _f("type", link="activity_type"),
        _f("owner_id", "int", link="user"),
        _read_only("creator_user_id", "int"),
        _f("deal_id", "int", link="deal"),
        _f("lead_id"),
        _f("person_id", "int", link="person"),
        _f("org_id", "int", link="organization"),
        _f("project_id", "int"),
        _f("due_date", "date"),
        _f("due_time", "time"),
        _f("duration", "time"),
        _f("busy", "bool"),
        _f("done", "bool"),
        _read_only("marked_as_done_time"),
        _f("location", "address"),
        _f("participants", "participants"),
        _f("attendees", "objects"),
        _f("public_description"),
        _f("priority", "int"),
        _f("note"),
    ),
    fields_path="activityFields",
)
PIPELINE = Entity(
    "pipeline",
    "pipelines",
    "Pipeline",
    (
        _f("name", required=True),
        _read_only("order_nr", "int"),
        _f("is_deal_probability_enabled", "bool"),
    ),
)
STAGE = Entity(
    "stage",
    "stages",
    "Stage",
    (
        _read_only("order_nr", "int"),
        _f("name", required=True),
        _f("deal_probability", "int"),
        _f("pipeline_id", "int", required=True, link="pipeline"),
        _f("is_deal_rot_enabled", "bool"),
        _f("days_to_rotten", "int", nullable=True),
    ),
)
NOTE = Entity(
    "note",
    "notes",
    "Note",
    (
        _f("content", required=True),
        _f("deal_id", "int", link="deal"),
        _f("person_id", "int", link="person"),
        _f("org_id", "int", link="organization"),
        _f("lead_id"),
        _f("project_id", "int"),
        _f("task_id", "int"),
        _f("user_id", "int", link="user"),
        _f("add_time", "datetime"),
        *(
            _f(f"pinned_to_{parent}_flag", "flag")
            for parent in ("lead", "deal", "organization", "person", "project", "task")
        ),
    ),
)

ENTITIES = {
    entity.name: entity for entity in (PERSON, ORGANIZATION, DEAL, ACTIVITY, PIPELINE, STAGE, NOTE)
}
BY_PATH = {entity.path: entity for entity in ENTITIES.values()}
BY_FIELDS_PATH = {entity.fields_path: entity for entity in ENTITIES.values() if entity.fields_path}


# Writes -------------------------------------------------------------------------------------


def clean(
    entity: Entity, body: Mapping[str, Any], *, creating: bool, lenient: bool = False
) -> dict[str, Any]:
    """The fields a write sets, checked; ``None`` clears a field. Raises Pipedrive's 400.

    ``custom_fields`` is returned as given (its values are checked against the custom field
    definitions, which live in the store); ``lenient`` is v1's tolerance of numbers as strings.
    """
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "custom_fields" and entity.custom_fields:
            if value is not None and not isinstance(value, dict):
                raise bad_request("Validation failed: custom_fields: must be an object")
            changes[name] = value or {}
            continue
        field = entity.field(name)
        if field is None or not field.writable:
            raise bad_request(
                f"Validation failed: {name}: is not a field of {entity.label.lower()}s"
                + (" (custom fields go inside custom_fields)" if _looks_custom(name) else "")
            )
        changes[name] = None if value is None else _checked(field, value, lenient=lenient)
    if creating:
        missing = [
            f.name for f in entity.fields if f.required and changes.get(f.name) in (None, "")
        ]
        if missing:
            raise bad_request(f"Validation failed: {missing[0]}: is required")
    else:
        blank = [
            f.name
            for f in entity.fields
            if f.required and f.name in changes and not changes[f.name]
        ]
        if blank:
            raise bad_request(f"Validation failed: {blank[0]}: must not be empty")
    return changes


def _looks_custom(name: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}", name))


def _checked(field: Field, value: Any, *, lenient: bool) -> Any:
    kind = field.kind
    name = field.name
    if kind in ("int", "number") and lenient and isinstance(value, str):
        value = _number_from_text(name, value)
    match kind:
        case "text":
            if not isinstance(value, str):
                raise _type_error(name, "a string")
            if field.choices and value not in field.choices:
                raise _type_error(name, f"one of {', '.join(field.choices)}")
            return value
        case "enum":
            if value not in field.choices:
                raise _type_error(name, f"one of {', '.join(field.choices)}")
            return value
        case "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _type_error(name, "an integer")
            return value
        case "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _type_error(name, "a number")
            return value
        case "bool":
            if not isinstance(value, bool):
                raise _type_error(name, "a boolean")
            return value
        case "flag":
            if value in (True, 1, "1"):
                return True
            if value in (False, 0, "0"):
                return False
            raise _type_error(name, "0 or 1")
        case "date":
            return check_date(name, value)
        case "time":
            if not isinstance(value, str) or not _TIME.match(value):
                raise _type_error(name, "a time as HH:MM")
            return value
        case "datetime":
            return parse_time(name, value)
        case "int_list":
            if not isinstance(value, list) or not all(
                isinstance(item, int) and not isinstance(item, bool) for item in value
            ):
                raise _type_error(name, "a list of integers")
            return value
        case "contacts":
            return _contacts(name, value)
        case "address":
            return check_address(name, value)
        case "participants":
            return _participants(name, value)
        case "objects":
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise _type_error(name, "a list of objects")
            return value
    raise AssertionError(f"unknown field kind {kind}")


def _number_from_text(name: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise _type_error(name, "a number") from None


def _type_error(name: str, expected: str) -> Exception:
    return bad_request(f"Validation failed: {name}: must be {expected}")


def check_date(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _DATE.match(value):
        raise _type_error(name, "a date as YYYY-MM-DD")
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise _type_error(name, "a date as YYYY-MM-DD") from None
    return value


def check_address(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        raise _type_error(name, 'an object with a "value" string')
    unknown = set(value) - set(ADDRESS_PARTS)
    if unknown:
        raise _type_error(name, f"an address without {', '.join(sorted(unknown))}")
    return {part: value.get(part) for part in ADDRESS_PARTS if value.get(part) is not None}


def _contacts(name: str, value: Any) -> list[dict[str, Any]]:
    """Emails, phones or ims: ``value`` required, ``label`` defaults to "work", and the first
    becomes primary when none is."""
    if not isinstance(value, list):
        raise _type_error(name, "a list of objects with a value")
    contacts = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise _type_error(name, "a list of objects with a value")
        primary = item.get("primary", False)
        label = item.get("label", "work")
        if not isinstance(primary, bool) or not isinstance(label, str):
            raise _type_error(name, "a list of {value, primary, label}")
        contacts.append({"value": item["value"], "primary": primary, "label": label})
    if contacts and not any(contact["primary"] for contact in contacts):
        contacts[0]["primary"] = True
    return contacts


def _participants(name: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(
        isinstance(item, dict)
        and isinstance(item.get("person_id"), int)
        and isinstance(item.get("primary", False), bool)
        for item in value
    ):
        raise _type_error(name, "a list of {person_id, primary}")
    return [
        {"person_id": item["person_id"], "primary": item.get("primary", False)} for item in value
    ]


# Time ---------------------------------------------------------------------------------------


def now_iso() -> str:
    """API v2's timestamps: RFC 3339 in UTC to the second (``2024-05-01T10:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(name: str, value: Any) -> str:
    """A client's timestamp (RFC 3339, or v1's ``YYYY-MM-DD HH:MM:SS`` in UTC) in v2's form."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise _type_error(name, "a date and time in RFC 3339, e.g. 2025-01-01T10:20:00Z")


def v1_time(iso: str) -> str:
    """API v1's timestamps: ``2024-05-01 10:00:00`` (UTC)."""
    return iso.replace("T", " ").removesuffix("Z")


# Answers ------------------------------------------------------------------------------------


def present(entity: Entity, item: Item, custom_codes: list[str] | None = None) -> dict[str, Any]:
    """An item as API v2 answers it. ``custom_codes`` lists the custom fields to show (every
    defined one, ``null`` when unset)."""
    data = item.data
    answer: dict[str, Any] = {"id": item.id}
    for field in entity.fields:
        value = data.get(field.name)
        if value is not None or field.nullable:
            answer[field.name] = value
    answer["add_time"] = data.get("add_time") or item.add_time
    answer["update_time"] = item.update_time
    answer["is_deleted"] = item.deleted_at is not None
    if entity.custom_fields:
        values = data.get("custom_fields") or {}
        answer["custom_fields"] = {code: values.get(code) for code in custom_codes or ()}
    return answer
