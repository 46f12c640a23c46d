"""Our fields as HubSpot properties, and back: the only place that knows HubSpot's names.

Most values pass as they are. Tasks and notes differ: HubSpot keeps a task's state, priority and
type as enumerations (``COMPLETED``, ``HIGH``, ``CALL``) and every engagement's date as a
timestamp (``hs_timestamp``, required), so those are converted both ways and a value read back
compares equal to the value imported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.targets.base import Record

PROPERTY_MAP: dict[Entity, dict[str, str]] = {
    Entity.CONTACTS: {
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone": "phone",
        "mobile_phone": "mobilephone",
        "company": "company",
        "job_title": "jobtitle",
        "website": "website",
        "address": "address",
        "city": "city",
        "state": "state",
        "zip": "zip",
        "country": "country",
        "lifecycle_stage": "lifecyclestage",
        "date_of_birth": "date_of_birth",
    },
    Entity.COMPANIES: {
        "name": "name",
        "domain": "domain",
        "website": "website",
        "phone": "phone",
        "industry": "industry",
        "address": "address",
        "city": "city",
        "state": "state",
        "zip": "zip",
        "country": "country",
        "description": "description",
        "number_of_employees": "numberofemployees",
        "annual_revenue": "annualrevenue",
    },
    Entity.DEALS: {
        "name": "dealname",
        "amount": "amount",
        "stage": "dealstage",
        "pipeline": "pipeline",
        "close_date": "closedate",
        "description": "description",
    },
    Entity.ACTIVITIES: {
        "subject": "hs_task_subject",
        "body": "hs_task_body",
        "due_date": "hs_timestamp",
        "done": "hs_task_status",
        "priority": "hs_task_priority",
        "type": "hs_task_type",
    },
    Entity.NOTES: {
        "body": "hs_note_body",
        "date": "hs_timestamp",
    },
}
"""Our field name -> HubSpot property, per entity."""

OBJECT_TYPES: dict[Entity, str] = {
    Entity.CONTACTS: "contacts",
    Entity.COMPANIES: "companies",
    Entity.DEALS: "deals",
    Entity.ACTIVITIES: "tasks",
    Entity.NOTES: "notes",
}
TIMESTAMP_PROPERTY = "hs_timestamp"
"""Required on every task and note: when it is due or was written."""


def _timestamp(value: str) -> str:
    """A date (``2024-05-01``) as the midnight UTC timestamp HubSpot keeps; a time given in
    full is passed as it is."""
    return f"{value}T00:00:00.000Z" if len(value) == 10 else value


def _date(value: str) -> str:
    return value[:10]


def now_timestamp() -> str:
    """The time a task or note without a date is given: when it is imported."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SENT: dict[tuple[Entity, str], Callable[[str], str]] = {
    (Entity.ACTIVITIES, "due_date"): _timestamp,
    (Entity.ACTIVITIES, "done"): lambda v: "COMPLETED" if v == "true" else "NOT_STARTED",
    (Entity.ACTIVITIES, "priority"): str.upper,
    (Entity.ACTIVITIES, "type"): str.upper,
    (Entity.NOTES, "date"): _timestamp,
}
_READ: dict[tuple[Entity, str], Callable[[str], str]] = {
    (Entity.ACTIVITIES, "due_date"): _date,
    (Entity.ACTIVITIES, "done"): lambda v: "true" if v == "COMPLETED" else "false",
    (Entity.ACTIVITIES, "priority"): str.lower,
    (Entity.ACTIVITIES, "type"): str.lower,
    (Entity.NOTES, "date"): _date,
}


def unmapped_fields(entity: Entity, record: Record) -> list[str]:
    """Fields of ours that HubSpot has no property for (HubSpot's own names are accepted too;
    link fields become associations)."""
    mapping = PROPERTY_MAP[entity]
    known = set(mapping) | set(mapping.values()) | set(ENTITY_SPECS[entity].link_fields)
    return [name for name in record if name not in known]


def hubspot_property(entity: Entity, field_name: str) -> str:
    mapping = PROPERTY_MAP[entity]
    return mapping.get(field_name, field_name)


def key_property(entity: Entity) -> str | None:
    """The property holding the entity's preferred key, when HubSpot has one (a deal's id in
    the source system has none)."""
    return PROPERTY_MAP[entity].get(ENTITY_SPECS[entity].key_field)


def is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


def to_properties(entity: Entity, record: Record, *, clear_blanks: bool = False) -> dict[str, str]:
    """HubSpot properties of a record.

    Blanks are left out so they never clear a CRM value, unless ``clear_blanks`` asks for it
    (a rollback restoring a field that was empty): HubSpot clears a property set to "".
    """
    links = set(ENTITY_SPECS[entity].link_fields)
    if clear_blanks:
        return {
            hubspot_property(entity, name): "" if is_blank(value) else _sent(entity, name, value)
            for name, value in record.items()
            if name not in links
        }
    return {
        hubspot_property(entity, name): _sent(entity, name, value)
        for name, value in record.items()
        if value is not None and not is_blank(value) and name not in links
    }


def _sent(entity: Entity, name: str, value: str | None) -> str:
    convert = _SENT.get((entity, name))
    return (convert or str)(value or "")


def from_properties(entity: Entity, properties: dict[str, Any]) -> dict[str, str | None]:
    """Our fields from HubSpot properties; properties we do not map are dropped."""
    fields: dict[str, str | None] = {}
    for name, prop in PROPERTY_MAP[entity].items():
        if prop not in properties:
            continue
        value = properties[prop]
        convert = _READ.get((entity, name), str)
        fields[name] = None if value is None or value == "" else convert(str(value))
    return fields
