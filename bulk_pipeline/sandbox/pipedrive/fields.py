"""Custom fields: their definitions (``POST /api/v2/personFields`` and the admin view), the values
a record may hold in ``custom_fields``, and the *Fields listings of standard and custom fields.

Keys are 40-character hex hashes, different in every account, as in Pipedrive; a client finds
them by listing the fields and matching ``field_name``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from bulk_pipeline.sandbox.pipedrive.entities import Entity, check_address, check_date
from bulk_pipeline.sandbox.pipedrive.errors import bad_request

CUSTOM_TYPES = (
    "varchar",
    "text",
    "double",
    "phone",
    "date",
    "daterange",
    "time",
    "timerange",
    "set",
    "enum",
    "varchar_auto",
    "address",
    "monetary",
    "org",
    "people",
    "user",
)
"""What ``field_type`` a new custom field may have (the v2 spec's enum)."""
SEARCHABLE_TYPES = frozenset(
    ("address", "varchar", "text", "varchar_auto", "double", "monetary", "phone")
)
"""Custom field types Pipedrive's search looks in."""
LINKED_TYPES = {"org": "organization", "people": "person", "user": "user"}


def new_field(
    entity: Entity, body: Mapping[str, Any], taken: list[dict[str, Any]], next_option_id: int
) -> dict[str, Any]:
    """A custom field definition from a create body; raises Pipedrive's 400."""
    name, field_type = body.get("field_name"), body.get("field_type")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("Validation failed: field_name: is required")
    if field_type not in CUSTOM_TYPES:
        raise bad_request(
            f"Validation failed: field_type: must be one of {', '.join(CUSTOM_TYPES)}"
        )
    options = body.get("options")
    if field_type in ("enum", "set"):
        if (
            not isinstance(options, list)
            or not options
            or not all(
                isinstance(option, dict) and isinstance(option.get("label"), str)
                for option in options
            )
        ):
            raise bad_request("Validation failed: options: enum and set fields need labels")
    elif options is not None:
        raise bad_request("Validation failed: options: only enum and set fields have options")
    code = hashlib.sha1(f"{entity.name}:{name}:{len(taken)}".encode()).hexdigest()
    return {
        "field_name": name.strip(),
        "field_code": code,
        "field_type": field_type,
        "options": [
            {"id": next_option_id + offset, "label": option["label"]}
            for offset, option in enumerate(options or ())
        ]
        if field_type in ("enum", "set")
        else None,
        "subfields": None,
        "is_custom_field": True,
        "is_optional_response_field": False,
    }


def standard_fields(entity: Entity) -> list[dict[str, Any]]:
    """The entity's built-in fields as its *Fields listing shows them."""
    fields = [
        {"field_name": "ID", "field_code": "id", "field_type": "int"},
        *(
            {"field_name": field.label, "field_code": field.name, "field_type": field.field_type}
            for field in entity.fields
        ),
        {"field_name": "Add time", "field_code": "add_time", "field_type": "date"},
        {"field_name": "Update time", "field_code": "update_time", "field_type": "date"},
    ]
    return [
        {
            **field,
            "options": None,
            "subfields": None,
            "is_custom_field": False,
            "is_optional_response_field": False,
        }
        for field in fields
    ]


def check_values(
    values: Mapping[str, Any], definitions: list[dict[str, Any]]
) -> list[tuple[str, int]]:
    """Check ``custom_fields`` values against their definitions; raises Pipedrive's 400.

    Returns the ``(entity, id)`` pairs the values link to (org, people and user fields), which
    the caller checks exist.
    """
    by_code = {definition["field_code"]: definition for definition in definitions}
    links = []
    for code, value in values.items():
        definition = by_code.get(code)
        if definition is None:
            raise bad_request(f"Validation failed: custom_fields: unknown field {code}")
        if value is None:
            continue
        field_type = definition["field_type"]
        where = f"custom_fields.{code}"
        _check_value(where, field_type, value, definition)
        if field_type in LINKED_TYPES:
            links.append((LINKED_TYPES[field_type], value))
    return links


def _check_value(where: str, field_type: str, value: Any, definition: Mapping[str, Any]) -> None:
    def fail(expected: str) -> Exception:
        return bad_request(f"Validation failed: {where}: must be {expected}")

    match field_type:
        case "varchar" | "varchar_auto" | "phone":
            if not isinstance(value, str) or len(value) > 255:
                raise fail("a string of at most 255 characters")
        case "text":
            if not isinstance(value, str):
                raise fail("a string")
        case "double":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail("a number")
        case "monetary":
            if not (
                isinstance(value, dict)
                and isinstance(value.get("value"), int | float)
                and not isinstance(value.get("value"), bool)
                and isinstance(value.get("currency"), str)
            ):
                raise fail('{"value": number, "currency": string}')
        case "date":
            check_date(where, value)
        case "daterange":
            if not isinstance(value, dict):
                raise fail('{"value": date, "until": date}')
            check_date(where, value.get("value"))
            check_date(where, value.get("until"))
        case "time" | "timerange":
            if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                raise fail('an object with a "value" time')
        case "enum":
            if value not in _option_ids(definition):
                raise fail("the id of one of the field's options")
        case "set":
            ids = _option_ids(definition)
            if not isinstance(value, list) or not value or not all(v in ids for v in value):
                raise fail("a non-empty list of the field's option ids (null clears it)")
        case "address":
            check_address(where, value)
        case "org" | "people" | "user":
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail("an id")


def _option_ids(definition: Mapping[str, Any]) -> set[int]:
    return {option["id"] for option in definition.get("options") or ()}


def search_texts(values: Mapping[str, Any], definitions: list[dict[str, Any]]) -> list[str]:
    """The values of searchable custom fields, as text."""
    texts = []
    for definition in definitions:
        value = values.get(definition["field_code"])
        if value is None or definition["field_type"] not in SEARCHABLE_TYPES:
            continue
        if isinstance(value, dict):
            value = value.get("value")
        if value is not None:
            texts.append(str(value))
    return texts
