"""Our records as Attio attribute values and back: the one place where a field's text becomes
a typed value object, and where each value is checked before it is sent.

Writing: one value object per field (``{"email_address": ...}``, ``{"option": title}``,
``{"currency_value": 4200}``, a link as ``{"target_object": "companies", "target_record_id":
...}``...), personal names and locations as one value composed of several of our fields, phone
numbers in E.164 with their country. A value the attribute cannot take (an
unknown select option or status, a member that is not in the workspace, a phone number the
normalizer could not read) raises :class:`ValueProblem`, naming the field: that record fails,
its batch does not.

Reading: a field's value is the attribute's most recent one; the others of a multiselect
attribute go to ``CrmRecord.also``, so a value of ours among them is not sent again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers

from bulk_pipeline.targets.attio.attributes import CASE_BLIND_TYPES, PARTS, Attribute, Workspace
from bulk_pipeline.targets.base import CrmRecord, Record

Value = dict[str, Any]
Values = dict[str, list[Value]]
"""Attio's ``values``: attribute slug -> value objects."""
LOCATION_KEYS = (
    "line_1",
    "line_2",
    "line_3",
    "line_4",
    "locality",
    "region",
    "postcode",
    "country_code",
    "latitude",
    "longitude",
)
BOOKKEEPING = ("active_from", "active_until", "created_by_actor", "attribute_type")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ValueProblem(ValueError):
    """A value of ours that its Attio attribute cannot take; the message names the field."""


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _number(name: str, text: str, places: int | None = None) -> int | float:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueProblem(f"{name}: {text!r} is not a number") from None
    if not number.is_finite():
        raise ValueProblem(f"{name}: {text!r} is not a number")
    if places is not None and -number.as_tuple().exponent > places:  # type: ignore[operator]
        raise ValueProblem(f"{name}: {text!r} has more than {places} decimal places")
    return int(number) if number == number.to_integral_value() else float(number)


def scalar_value(name: str, attribute: Attribute, text: str, workspace: Workspace) -> Value:
    """One of our text values as a value object of ``attribute``'s type."""
    kind = attribute.type
    text = text.strip()
    if kind in ("select", "status"):
        choice = attribute.choice(text)
        if choice is None:
            raise ValueProblem(
                f"{name}: {text!r} is not one of the {attribute.title} values in Attio "
                f"({attribute.choice_titles}); add it in Attio or correct the file"
            )
        return {"option": choice.title} if kind == "select" else {"status": choice.title}
    if kind == "actor-reference":
        member = workspace.members.get(text.casefold())
        if member is None:
            known = ", ".join(sorted(workspace.members)[:10])
            raise ValueProblem(
                f"{name}: {text!r} is not the email of a member of the Attio workspace ({known})"
            )
        return {"referenced_actor_type": "workspace-member", "referenced_actor_id": member}
    if kind == "phone-number":
        return {"original_phone_number": text, "country_code": _phone_country(name, text)}
    if kind == "email-address":
        return {"email_address": text.lower()}
    if kind == "domain":
        return {"domain": text.lower()}
    if kind in ("number", "rating"):
        return {"value": _number(name, text)}
    if kind == "currency":
        return {"currency_value": _number(name, text, places=4)}
    if kind == "checkbox":
        if text.casefold() not in _TRUE | _FALSE:
            raise ValueProblem(f"{name}: {text!r} is not yes or no")
        return {"value": text.casefold() in _TRUE}
    if kind == "date" and not _DATE.match(text):
        raise ValueProblem(f"{name}: {text!r} is not a date (YYYY-MM-DD)")
    if kind == "timestamp" and _DATE.match(text):
        return {"value": f"{text}T00:00:00Z"}
    return {"value": text}


def _phone_country(name: str, text: str) -> str:
    """The country of an E.164 number, as the normalizer found it; a number no country has
    (Attio would refuse it) fails here, without a call."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not text.startswith("+") or number.extension:
        raise ValueProblem(
            f"{name}: {text!r} is not a phone number in international form (such as "
            "+442079460018), which Attio needs; add the country code in the file"
        )
    region = phonenumbers.region_code_for_number(number)
    if not region or not phonenumbers.is_valid_number(number):
        raise ValueProblem(f"{name}: {text!r} is not a valid phone number in any country")
    return str(region)


def composite_value(
    attribute: Attribute, parts: Mapping[str, str | None], held: Value | None
) -> Value | None:
    """A personal name or location from the parts we give, the others as Attio holds them;
    ``None`` when no part has a value."""
    if attribute.type == "personal-name":
        merged = {key: (held or {}).get(key) or "" for key in ("first_name", "last_name")}
        merged.update({key: (value or "").strip() for key, value in parts.items()})
        if not any(merged.values()):
            return None
        full = " ".join(part for part in (merged["first_name"], merged["last_name"]) if part)
        return {**merged, "full_name": full}
    location: Value = {key: (held or {}).get(key) for key in LOCATION_KEYS}
    location.update({key: (value or "").strip() or None for key, value in parts.items()})
    if not any(location.get(key) for key in PARTS["location"]):
        return None
    return location


def _check_country(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if len(code) != 2 or not code.isalpha() or code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueProblem(
            f"{name}: {value!r} is not a two-letter country code (ISO 3166, such as FR), "
            "which Attio's locations need"
        )
    return code


def write_values(
    workspace: Workspace,
    record: Record,
    *,
    held: Mapping[str, Value] | None = None,
    clear_blanks: bool = False,
) -> Values:
    """Attio ``values`` for our fields (blank ones left out unless ``clear_blanks``).

    ``held`` is the composite values the record has now (by attribute slug), so that changing a
    first name keeps the last name. Raises :class:`ValueProblem` for the first value the
    workspace cannot take, and for a field it has no attribute for.
    """
    values: Values = {}
    parts: dict[str, dict[str, str | None]] = {}
    attributes: dict[str, Attribute] = {}
    for name, text in record.items():
        slot = workspace.slots.get(name)
        if slot is None:
            raise ValueProblem(
                f"{name}: Attio's {workspace.object} have no attribute for it in this workspace; "
                f"add one titled {name.replace('_', ' ').capitalize()!r} or leave the column out"
            )
        attribute = slot.attribute
        if slot.part is not None:
            if slot.part == "country_code":
                text = _check_country(name, text) if not _blank(text) else None
            parts.setdefault(attribute.slug, {})[slot.part] = text
            attributes[attribute.slug] = attribute
        elif not _blank(text) and slot.target is not None:
            values[attribute.slug] = [
                {"target_object": slot.target, "target_record_id": (text or "").strip()}
            ]
        elif not _blank(text):
            values[attribute.slug] = [scalar_value(name, attribute, text or "", workspace)]
        elif clear_blanks:
            values[attribute.slug] = []
    for slug, given in parts.items():
        composed = composite_value(attributes[slug], given, (held or {}).get(slug))
        if composed is not None:
            values[slug] = [composed]
        elif clear_blanks:
            values[slug] = []
    return values


def as_input(attribute: Attribute, shown: Value) -> Value:
    """A value as Attio shows it, in the form it is written (to write it back)."""
    value = {k: v for k, v in shown.items() if k not in BOOKKEEPING}
    if attribute.type == "select":
        return {"option": value["option"]["title"]}
    if attribute.type == "status":
        return {"status": value["status"]["title"]}
    if attribute.type == "phone-number":
        return {
            "original_phone_number": value.get("phone_number") or value["original_phone_number"],
            "country_code": value.get("country_code"),
        }
    if attribute.type == "email-address":
        return {"email_address": value["email_address"]}
    if attribute.type == "domain":
        return {"domain": value["domain"]}
    if attribute.type == "record-reference":
        return {
            "target_object": value["target_object"],
            "target_record_id": value["target_record_id"],
        }
    return value


def _number_text(number: Any) -> str:
    text = format(Decimal(repr(number)) if isinstance(number, float) else Decimal(number), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def text_of(
    workspace: Workspace, attribute: Attribute, value: Value, part: str | None
) -> str | None:
    """One value object as the text of one of our fields."""
    if part is not None:
        found = value.get(part)
        return found if isinstance(found, str) and found else None
    kind = attribute.type
    if kind == "select":
        return str(value["option"]["title"])
    if kind == "status":
        return str(value["status"]["title"])
    if kind == "email-address":
        return str(value["email_address"])
    if kind == "domain":
        return str(value["domain"])
    if kind == "phone-number":
        return str(value.get("phone_number") or value.get("original_phone_number"))
    if kind == "currency":
        return _number_text(value["currency_value"])
    if kind == "actor-reference":
        member = str(value.get("referenced_actor_id"))
        return workspace.member_email(member) or member
    if kind == "record-reference":
        return str(value["target_record_id"])
    found = value.get("value")
    if isinstance(found, bool):
        return "true" if found else "false"
    if isinstance(found, int | float):
        return _number_text(found)
    if kind == "timestamp" and isinstance(found, str):
        return found[:10] if re.match(r"^\d{4}-\d{2}-\d{2}T00:00:00(\.0+)?Z$", found) else found
    return None if found is None else str(found)


def active(values: Mapping[str, Any], slug: str) -> list[Value]:
    return [v for v in values.get(slug) or [] if v.get("active_until") is None]


def created_at(text: Any) -> datetime | None:
    """Attio's timestamps (``2023-01-01T15:00:00.000000000Z``), to the microsecond."""
    if not isinstance(text, str):
        return None
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z?$", text.strip())
    if match is None:
        return None
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{match[1]}.{fraction}").replace(tzinfo=UTC)


def read_record(workspace: Workspace, data: Mapping[str, Any]) -> CrmRecord:
    """An Attio record in our field names: each field's most recent value, the others of a
    multiselect attribute in ``also``."""
    values = data.get("values") or {}
    fields: dict[str, str | None] = {}
    also: dict[str, tuple[str, ...]] = {}
    case_blind: set[str] = set()
    for name, slot in workspace.slots.items():
        attribute = slot.attribute
        texts = [
            text
            for value in active(values, attribute.slug)
            if (text := text_of(workspace, attribute, value, slot.part)) is not None
        ]
        fields[name] = texts[0] if texts else None
        if len(texts) > 1:
            also[name] = tuple(texts[1:])
        if attribute.type in CASE_BLIND_TYPES:
            case_blind.add(name)
    return CrmRecord(
        id=str(data["id"]["record_id"]),
        fields=fields,
        created_at=created_at(data.get("created_at")),
        also=also,
        case_blind=frozenset(case_blind),
    )


def composites(workspace: Workspace, data: Mapping[str, Any]) -> dict[str, Value]:
    """The personal-name and location values a record holds, by attribute slug."""
    values = data.get("values") or {}
    held: dict[str, Value] = {}
    for slot in workspace.slots.values():
        if slot.part is not None:
            current = active(values, slot.attribute.slug)
            if current:
                held[slot.attribute.slug] = current[0]
    return held


def restored_list(
    attribute: Attribute, current: Sequence[Value], value: Value | None
) -> list[Value]:
    """A multiselect attribute put back as it was before an import added ``current[0]`` in
    front: that value removed, and ``value`` (what was in front before) in front again."""
    rest = [as_input(attribute, v) for v in current[1:]]
    if value is None:
        return rest
    return [value, *(v for v in rest if v != value)]
