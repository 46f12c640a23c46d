"""The object types the sandbox holds, their properties, and HubSpot's rules for property values.

A write that names a property HubSpot would not know, or gives a value HubSpot would refuse, is
refused here the same way, so importers meet these errors before they meet production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox.hubspot.errors import validation_error

DEFAULT_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")
"""Set by the CRM on every record and returned with every read."""


@dataclass(frozen=True)
class ObjectType:
    name: str
    label: str
    """Singular, as HubSpot writes it in messages ("Contact already exists. ...")."""
    properties: frozenset[str]
    """The properties a client may write."""
    default_read: tuple[str, ...]
    """What a read returns when the client asks for no properties."""
    unique_key: str | None = None
    """The property whose lower-cased value identifies at most one active record."""
    numeric: frozenset[str] = frozenset()

    @property
    def readable(self) -> frozenset[str]:
        return self.properties | frozenset(DEFAULT_PROPERTIES)


CONTACTS = ObjectType(
    name="contacts",
    label="Contact",
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
    unique_key="domain",
    numeric=frozenset(("numberofemployees", "annualrevenue")),
)
DEALS = ObjectType(
    name="deals",
    label="Deal",
    properties=frozenset(
        ["dealname", "amount", "dealstage", "pipeline", "closedate", "description"]
    ),
    default_read=("dealname", "amount", "dealstage", "pipeline", "closedate"),
    numeric=frozenset(("amount",)),
)
NOTES = ObjectType(
    name="notes",
    label="Note",
    properties=frozenset(("hs_note_body", "hs_timestamp")),
    default_read=("hs_note_body", "hs_timestamp"),
)
TASKS = ObjectType(
    name="tasks",
    label="Task",
    properties=frozenset(
        ("hs_task_subject", "hs_task_body", "hs_task_status", "hs_task_priority", "hs_timestamp")
    ),
    default_read=("hs_task_subject", "hs_task_status", "hs_timestamp"),
)

OBJECT_TYPES: dict[str, ObjectType] = {
    obj.name: obj for obj in (CONTACTS, COMPANIES, DEALS, NOTES, TASKS)
}
_BY_PATH_NAME: dict[str, ObjectType] = {
    **OBJECT_TYPES,
    "0-1": CONTACTS,
    "0-2": COMPANIES,
    "0-3": DEALS,
    "0-46": NOTES,
    "0-27": TASKS,
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def object_type(path_name: str) -> ObjectType | None:
    """The type a URL names, by name (``deals``) or by HubSpot's object type id (``0-3``)."""
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
        cleaned[name] = text
    return cleaned


def _as_text(value: object) -> str | None:
    """HubSpot takes JSON strings, numbers and booleans as property values; empty clears."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise validation_error(f"Property values must be strings, numbers or booleans, not {value!r}.")
