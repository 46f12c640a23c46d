"""The object types the sandbox holds, their properties, and HubSpot's rules for property values.

A write that names a property HubSpot would not know, or gives a value HubSpot would refuse, is
refused here the same way, so importers meet these errors before they meet production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bulk_pipeline.sandbox.hubspot.errors import validation_error

DEFAULT_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")
"""Set by the CRM on every record and returned with every read."""


@dataclass(frozen=True)
class Option:
    """One allowed value of an enumeration property."""

    value: str
    label: str


@dataclass(frozen=True)
class ObjectType:
    name: str
    label: str
    """Singular, as HubSpot writes it in messages ("Contact already exists. ...")."""
    type_id: str
    """HubSpot's object type id (``0-1``), which messages and association answers use."""
    properties: frozenset[str]
    """The properties a client may write."""
    default_read: tuple[str, ...]
    """What a read returns when the client asks for no properties."""
    unique_key: str | None = None
    """The property whose lower-cased value identifies at most one active record."""
    numeric: frozenset[str] = frozenset()
    datetimes: frozenset[str] = frozenset()
    """Taken as epoch milliseconds or ISO 8601, stored and answered as ISO 8601 in UTC."""
    enums: Mapping[str, tuple[Option, ...]] = field(default_factory=dict, hash=False)
    """Enumeration properties and their options; other values are refused."""
    required: tuple[str, ...] = ()
    """What a create must set (HubSpot refuses a task or note without ``hs_timestamp``)."""

    @property
    def readable(self) -> frozenset[str]:
        return self.properties | frozenset(DEFAULT_PROPERTIES)

    @property
    def singular(self) -> str:
        """The name HubSpot uses in association messages and v3 association type names."""
        return self.label.lower()


CONTACTS = ObjectType(
    name="contacts",
    label="Contact",
    type_id="0-1",
    properties=frozenset(
        [
            "email",
            "firstname",
            "lastname",
            "phone",
            "mobilephone",
            "company",
            "jobtitle",
            "website",
            "address",
            "city",
            "state",
            "zip",
            "country",
            "lifecyclestage",
            "date_of_birth",
        ]
    ),
    default_read=("email", "firstname", "lastname"),
    unique_key="email",
)
COMPANIES = ObjectType(
    name="companies",
    label="Company",
    type_id="0-2",
    properties=frozenset(
        [
            "name",
            "domain",
            "website",
            "phone",
            "industry",
            "address",
            "city",
            "state",
            "zip",
            "country",
            "description",
            "numberofemployees",
            "annualrevenue",
        ]
    ),
    default_read=("name", "domain"),
    numeric=frozenset(("numberofemployees", "annualrevenue")),
)
DEALS = ObjectType(
    name="deals",
    label="Deal",
    type_id="0-3",
    properties=frozenset(
        ["dealname", "amount", "dealstage", "pipeline", "closedate", "description"]
    ),
    default_read=("dealname", "amount", "dealstage", "pipeline", "closedate"),
    numeric=frozenset(("amount",)),
)
NOTES = ObjectType(
    name="notes",
    label="Note",
    type_id="0-46",
    properties=frozenset(("hs_note_body", "hs_timestamp")),
    default_read=("hs_note_body", "hs_timestamp"),
    datetimes=frozenset(("hs_timestamp",)),
    required=("hs_timestamp",),
)
TASKS = ObjectType(
    name="tasks",
    label="Task",
    type_id="0-27",
    properties=frozenset(
        (
            "hs_task_subject",
            "hs_task_body",
            "hs_task_status",
            "hs_task_priority",
            "hs_task_type",
            "hs_timestamp",
        )
    ),
    default_read=("hs_task_subject", "hs_task_status", "hs_timestamp"),
    datetimes=frozenset(("hs_timestamp",)),
    enums={
        "hs_task_status": (
            Option("NOT_STARTED", "Not started"),
            Option("IN_PROGRESS", "In progress"),
            Option("WAITING", "Waiting"),
            Option("COMPLETED", "Completed"),
            Option("DEFERRED", "Deferred"),
        ),
        "hs_task_priority": (
            Option("LOW", "Low"),
            Option("MEDIUM", "Medium"),
            Option("HIGH", "High"),
        ),
        "hs_task_type": (Option("EMAIL", "Email"), Option("CALL", "Call"), Option("TODO", "To-do")),
    },
    required=("hs_timestamp",),
)

OBJECT_TYPES: dict[str, ObjectType] = {
    obj.name: obj for obj in (CONTACTS, COMPANIES, DEALS, NOTES, TASKS)
}
_BY_PATH_NAME: dict[str, ObjectType] = {
    **OBJECT_TYPES,
    **{obj.type_id: obj for obj in OBJECT_TYPES.values()},
    **{obj.singular: obj for obj in OBJECT_TYPES.values()},
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_MILLIS = re.compile(r"^-?\d{1,15}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def object_type(path_name: str) -> ObjectType | None:
    """The type a URL names: by name (``deals``, or ``deal`` as HubSpot also takes) or by
    HubSpot's object type id (``0-3``)."""
    return _BY_PATH_NAME.get(path_name.lower())


def issue(name: str, error: str, message: str) -> dict[str, Any]:
    """One entry of the list inside HubSpot's "Property values were not valid" message."""
    return {"isValid": False, "message": message, "error": error, "name": name}


def clean_properties(
    obj: ObjectType, raw: object, issues: list[dict[str, Any]]
) -> dict[str, str | None]:
    """Values as the CRM stores them (strings; ``None`` clears), problems appended to ``issues``.

    Problems are collected rather than raised so that one answer lists every bad value of a
    batch, as HubSpot's does.
    """
    if not isinstance(raw, dict):
        raise validation_error("Each input needs a 'properties' object.")
    cleaned: dict[str, str | None] = {}
    for name, value in raw.items():
        if name in DEFAULT_PROPERTIES:
            issues.append(
                issue(
                    name,
                    "READ_ONLY_VALUE",
                    f"{name} is a read only property; its value cannot be set.",
                )
            )
            continue
        if name not in obj.properties:
            issues.append(issue(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            continue
        text = _as_text(value)
        if text is None:
            cleaned[name] = None
            continue
        if obj is CONTACTS and name == "email":
            text = text.strip().lower()
            if not _EMAIL.match(text):
                issues.append(issue(name, "INVALID_EMAIL", f"Email address {text} is invalid"))
                continue
        elif name in obj.numeric and not _NUMBER.match(text.strip()):
            issues.append(issue(name, "INVALID_FLOAT", f"{text} was not a valid number."))
            continue
        elif name in obj.datetimes:
            moment = _moment(text.strip())
            if moment is None:
                issues.append(issue(name, "INVALID_LONG", f"{text} was not a valid long."))
                continue
            text = moment
        elif name in obj.enums and text not in {option.value for option in obj.enums[name]}:
            issues.append(invalid_option(name, text, obj.enums[name]))
            continue
        cleaned[name] = text
    return cleaned


def invalid_option(name: str, value: str, options: tuple[Option, ...]) -> dict[str, Any]:
    """HubSpot's complaint about an enumeration value, listing the options as it prints them."""
    listed = ", ".join(
        f'label: "{option.label}"\nvalue: "{option.value}"\ndisplay_order: {order}\n'
        'double_data: 0.0\nhidden: false\ndescription: ""\nread_only: false\n'
        for order, option in enumerate(options)
    )
    return issue(name, "INVALID_OPTION", f"{value} was not one of the allowed options: [{listed}]")


def unset_required(obj: ObjectType, patches: Sequence[Mapping[str, str | None]]) -> list[str]:
    """The required properties some create leaves unset, in the type's order."""
    return [name for name in obj.required if any(patch.get(name) is None for patch in patches)]


def _moment(text: str) -> str | None:
    """A datetime value as HubSpot stores it (``2024-05-01T10:00:00Z``, milliseconds only when
    there are some), from epoch milliseconds or ISO 8601; ``None`` when it is neither."""
    try:
        if _MILLIS.match(text):
            when = _EPOCH + timedelta(milliseconds=int(text))
        else:
            parsed = datetime.fromisoformat(text)
            when = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    except (ValueError, OverflowError):
        return None
    when = when.astimezone(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    millis = when.microsecond // 1000
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"


def _as_text(value: object) -> str | None:
    """HubSpot takes JSON strings, numbers and booleans as property values; empty clears."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise validation_error(f"Property values must be strings, numbers or booleans, not {value!r}.")
