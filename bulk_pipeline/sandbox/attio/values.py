"""Attribute values as Attio reads and writes them: each attribute type's input forms, its stored
form, how it is shown, compared, and made unique.

Writing accepts what Attio's attribute-type documentation shows: a bare value where the type has
an obvious one (a string for text, email, domain, status title...), or an object with the type's
keys. Values are stored without their ``active_from`` history (Attio keeps historic values; the
sandbox shows only active ones).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers

from bulk_pipeline.sandbox.attio.errors import bad_request
from bulk_pipeline.sandbox.attio.workspace import MEMBERS, OBJECTS, TOKEN_ID, WORKSPACE_ID
from bulk_pipeline.sandbox.dialect import ApiError

COUNTRY_CODES = frozenset(phonenumbers.SUPPORTED_REGIONS) | {
    "AQ",
    "BV",
    "GS",
    "HM",
    "PN",
    "TF",
    "UM",
    "AN",
}
"""ISO 3166-1 alpha-2 codes Attio's locations and phone numbers take."""
_EMAIL = re.compile(r"^[^@\s]+@([^@\s.]+(?:\.[^@\s.]+)+)$")
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]$")
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"})
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
WRITER = {"type": "api-token", "id": TOKEN_ID}
BOOKKEEPING = frozenset({"active_from", "active_until", "created_by_actor", "attribute_type"})
"""Keys of a stored or shown value that say when and by whom, not what."""


def now_text(offset_s: float = 0.0) -> str:
    """Attio's timestamps: UTC with nanoseconds, on the sandbox's clock (``offset_s`` off the
    real time)."""
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


@dataclass(frozen=True)
class Attribute:
    """An attribute's definition as the API shows it, with its select options or statuses."""

    definition: dict[str, Any]
    choices: tuple[dict[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return str(self.definition["id"]["attribute_id"])

    @property
    def slug(self) -> str:
        return str(self.definition["api_slug"])

    @property
    def type(self) -> str:
        return str(self.definition["type"])

    @property
    def multiselect(self) -> bool:
        return bool(self.definition["is_multiselect"])

    @property
    def unique(self) -> bool:
        return bool(self.definition["is_unique"])

    @property
    def required(self) -> bool:
        return bool(self.definition["is_required"])

    @property
    def writable(self) -> bool:
        return bool(self.definition["is_writable"])

    def choice(self, given: str) -> dict[str, Any] | None:
        """An active option or status by title or id."""
        for choice in self.choices:
            key = "status_id" if self.type == "status" else "option_id"
            if not choice["is_archived"] and given in (choice["title"], choice["id"][key]):
                return choice
        return None

    def choice_by_id(self, choice_id: str) -> dict[str, Any] | None:
        key = "status_id" if self.type == "status" else "option_id"
        return next((c for c in self.choices if c["id"][key] == choice_id), None)


Resolver = Callable[[str, Mapping[str, Any]], str | None]
"""Finds the record a reference by matching attribute names (object slug, the reference)."""


def _invalid(attribute: Attribute, message: str) -> ApiError:
    return bad_request(
        "validation_type", f'Invalid value for attribute "{attribute.slug}": {message}'
    )


def _scalar(attribute: Attribute, raw: Any, key: str) -> Any:
    """The value of a bare input or of its single-key object form ``{key: value}``."""
    if isinstance(raw, Mapping):
        if key not in raw:
            raise _invalid(attribute, f'expected an object with "{key}"')
        return raw[key]
    return raw


def _number(attribute: Attribute, raw: Any) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _invalid(attribute, f"expected a number, got {raw!r}")
    return raw


def _date(attribute: Attribute, raw: Any) -> str:
    text = str(raw).strip()
    match = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?", text)
    if not isinstance(raw, str) or match is None:
        raise _invalid(attribute, f"expected a date such as 2023-01-31, got {raw!r}")
    try:
        day = date(int(match[1]), int(match[2] or 1), int(match[3] or 1))
    except ValueError:
        raise _invalid(attribute, f"{raw!r} is not a date") from None
    return day.isoformat()


def _timestamp(attribute: Attribute, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _invalid(attribute, f"expected an ISO 8601 timestamp, got {raw!r}")
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(attribute, f"{raw!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def root_domain(domain: str) -> str:
    labels = domain.split(".")
    keep = 3 if len(labels) > 2 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def _domain(attribute: Attribute, raw: Any) -> dict[str, Any]:
    given = _scalar(attribute, raw, "domain")
    if not isinstance(given, str):
        raise _invalid(attribute, f"expected a domain, got {given!r}")
    host = re.sub(r"^[a-z][a-z0-9+.\-]*://", "", given.strip().lower())
    host = re.split(r"[/?#:]", host, maxsplit=1)[0].strip(".")
    if not _HOST.match(host):
        raise _invalid(attribute, f'"{given}" is not a domain')
    return {"domain": host, "root_domain": root_domain(host)}


def _email(attribute: Attribute, raw: Any) -> dict[str, Any]:
    given = _scalar(attribute, raw, "email_address")
    if not isinstance(given, str) or not _EMAIL.match(given.strip()):
        raise _invalid(attribute, f'"{given}" is not a valid email address')
    original = given.strip()
    normalized = original.lower()
    local, _, domain = normalized.partition("@")
    return {
        "original_email_address": original,
        "email_address": normalized,
        "email_domain": domain,
        "email_root_domain": root_domain(domain),
        "email_local_specifier": local.split("+", 1)[0],
    }


def _phone(attribute: Attribute, raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        original, country = raw.get("original_phone_number"), raw.get("country_code")
    else:
        original, country = raw, None
    if not isinstance(original, str) or (country is not None and country not in COUNTRY_CODES):
        raise _invalid(attribute, f"expected a phone number, got {raw!r}")
    try:
        number = phonenumbers.parse(original, country)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise _invalid(attribute, f'"{original}" is not a valid phone number')
    return {
        "original_phone_number": original,
        "country_code": phonenumbers.region_code_for_number(number),
        "phone_number": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
    }


def _personal_name(attribute: Attribute, raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        first, _, last = raw.strip().partition(" ")
        return {"first_name": first, "last_name": last.strip(), "full_name": raw.strip()}
    if not isinstance(raw, Mapping) or not set(raw) <= {"first_name", "last_name", "full_name"}:
        raise _invalid(attribute, "expected first_name, last_name and full_name")
    parts = {key: raw.get(key) for key in ("first_name", "last_name", "full_name")}
    if any(value is not None and not isinstance(value, str) for value in parts.values()):
        raise _invalid(attribute, "name parts must be strings")
    first, last = (parts["first_name"] or "").strip(), (parts["last_name"] or "").strip()
    full = (parts["full_name"] or "").strip() or " ".join(p for p in (first, last) if p)
    return {"first_name": first, "last_name": last, "full_name": full}


def _location(attribute: Attribute, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not set(raw) <= set(LOCATION_KEYS):
        raise _invalid(attribute, f"expected an object with {', '.join(LOCATION_KEYS)}")
    value = {key: raw.get(key) for key in LOCATION_KEYS}
    for key, part in value.items():
        if part is not None and not isinstance(part, str):
            raise _invalid(attribute, f"{key} must be a string or null")
    country = value["country_code"]
    if country is not None and country not in COUNTRY_CODES:
        raise _invalid(attribute, f'"{country}" is not an ISO 3166-1 alpha-2 country code')
    return value


def _actor(attribute: Attribute, raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"workspace_member_email_address": raw}
    if not isinstance(raw, Mapping):
        raise _invalid(attribute, f"expected a workspace member, got {raw!r}")
    if "workspace_member_email_address" in raw:
        email = str(raw["workspace_member_email_address"]).strip().lower()
        member = next((m for m in MEMBERS if m.email == email), None)
        what = f'email "{email}"'
    else:
        if raw.get("referenced_actor_type") != "workspace-member":
            raise _invalid(attribute, "only workspace members can be referenced")
        member = next((m for m in MEMBERS if m.id == raw.get("referenced_actor_id")), None)
        what = f'ID "{raw.get("referenced_actor_id")}"'
    if member is None:
        raise bad_request("value_not_found", f"Cannot find workspace member with {what}.")
    return {"referenced_actor_type": "workspace-member", "referenced_actor_id": member.id}


def _choice(attribute: Attribute, raw: Any) -> dict[str, Any]:
    key = "status" if attribute.type == "status" else "option"
    given = _scalar(attribute, raw, key)
    choice = attribute.choice(given) if isinstance(given, str) else None
    if choice is None:
        noun = "status" if key == "status" else "select option"
        raise bad_request(
            "value_not_found",
            f'Cannot find {noun} with title or ID "{given}" on "{attribute.slug}".',
        )
    return {f"{key}_id": choice["id"][f"{key}_id"]}


def _reference(attribute: Attribute, raw: Any, resolve: Resolver) -> dict[str, Any]:
    """A record of an object the attribute may refer to (its config's allowed objects)."""
    if not isinstance(raw, Mapping) or "target_object" not in raw:
        raise _invalid(attribute, "expected an object with target_object")
    given = str(raw["target_object"])
    standard = next((o for o in OBJECTS.values() if given in (o.slug, o.id)), None)
    allowed = attribute.definition["config"]["record_reference"]["allowed_object_ids"]
    if standard is not None and allowed is not None and standard.id not in allowed:
        names = ", ".join(o.slug for o in OBJECTS.values() if o.id in allowed)
        raise _invalid(attribute, f"it refers to records of {names}, not {standard.slug}")
    target = standard.slug if standard is not None else given
    record_id = raw.get("target_record_id")
    found = resolve(target, raw)
    if found is None:
        shown = record_id or {k: v for k, v in raw.items() if k != "target_object"}
        raise bad_request(
            "value_not_found",
            f"Cannot find a {target} record matching {shown} for {attribute.slug}.",
        )
    return {"target_object": target, "target_record_id": found}


def parse_one(attribute: Attribute, raw: Any, resolve: Resolver) -> dict[str, Any]:
    """One input value as stored (the type's own keys)."""
    kind = attribute.type
    if kind == "text":
        text = _scalar(attribute, raw, "value")
        if not isinstance(text, str):
            raise _invalid(attribute, f"expected a string, got {text!r}")
        return {"value": text}
    if kind == "number":
        return {"value": _number(attribute, _scalar(attribute, raw, "value"))}
    if kind == "rating":
        rating = _number(attribute, _scalar(attribute, raw, "value"))
        if rating not in range(6):
            raise _invalid(attribute, "a rating is a whole number from 0 to 5")
        return {"value": int(rating)}
    if kind == "checkbox":
        flag = _scalar(attribute, raw, "value")
        if flag in ("true", "false"):
            flag = flag == "true"
        if not isinstance(flag, bool):
            raise _invalid(attribute, f"expected true or false, got {flag!r}")
        return {"value": flag}
    if kind == "currency":
        amount = _number(attribute, _scalar(attribute, raw, "currency_value"))
        try:
            places = -Decimal(str(amount)).as_tuple().exponent  # type: ignore[operator]
        except InvalidOperation:
            places = 99
        if places > 4:
            raise _invalid(attribute, "a currency value has at most 4 decimal places")
        return {"currency_value": amount}
    if kind == "date":
        return {"value": _date(attribute, _scalar(attribute, raw, "value"))}
    if kind == "timestamp":
        return {"value": _timestamp(attribute, _scalar(attribute, raw, "value"))}
    if kind == "domain":
        return _domain(attribute, raw)
    if kind == "email-address":
        return _email(attribute, raw)
    if kind == "phone-number":
        return _phone(attribute, raw)
    if kind == "personal-name":
        return _personal_name(attribute, raw)
    if kind == "location":
        return _location(attribute, raw)
    if kind == "actor-reference":
        return _actor(attribute, raw)
    if kind in ("status", "select"):
        return _choice(attribute, raw)
    if kind == "record-reference":
        return _reference(attribute, raw, resolve)
    raise bad_request(
        "immutable_value", f'Values of "{attribute.slug}" ({kind}) cannot be written.'
    )


def value_key(attribute: Attribute, value: Mapping[str, Any]) -> str:
    """What makes two values of an attribute the same value (and a unique value unique)."""
    kind = attribute.type
    if kind == "email-address":
        return str(value["email_address"])
    if kind == "domain":
        return str(value["domain"])
    if kind == "phone-number":
        return str(value["phone_number"])
    if kind in ("status", "select"):
        return str(value.get("status_id") or value.get("option_id"))
    if kind == "record-reference":
        return str(value["target_record_id"])
    if kind == "actor-reference":
        return str(value["referenced_actor_id"])
    return repr(sorted((k, v) for k, v in value.items() if k not in BOOKKEEPING))


def stamped(
    attribute: Attribute, values: list[dict[str, Any]], previous: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """New values with their history: a value held before keeps its ``active_from``, a new
    one is active from ``now``."""
    before = {value_key(attribute, v): v for v in previous}
    result = []
    for value in values:
        old = before.get(value_key(attribute, value))
        result.append(
            {
                **value,
                "active_from": old["active_from"] if old else now,
                "created_by_actor": old["created_by_actor"] if old else WRITER,
            }
        )
    return result


def distinct(attribute: Attribute, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    kept = []
    for value in values:
        key = value_key(attribute, value)
        if key not in seen:
            seen.add(key)
            kept.append(value)
    return kept


def present(attribute: Attribute, stored: Mapping[str, Any], object_id: str) -> dict[str, Any]:
    """A stored value as the API shows it."""
    shown = {k: v for k, v in stored.items() if k not in ("status_id", "option_id")}
    if attribute.type in ("status", "select"):
        key = "status" if attribute.type == "status" else "option"
        choice = attribute.choice_by_id(str(stored[f"{key}_id"]))
        shown[key] = choice
    if attribute.type == "currency":
        shown["currency_code"] = attribute.definition["config"]["currency"]["default_currency_code"]
    shown["active_until"] = None
    shown["attribute_type"] = attribute.type
    return shown


def choice_answer(
    attribute: Attribute, choice_id: str, title: str, object_id: str
) -> dict[str, Any]:
    """A new select option or status as the API shows it."""
    base = {"workspace_id": WORKSPACE_ID, "object_id": object_id, "attribute_id": attribute.id}
    if attribute.type == "status":
        return {
            "id": {**base, "status_id": choice_id},
            "title": title,
            "is_archived": False,
            "celebration_enabled": False,
            "target_time_in_status": None,
        }
    return {"id": {**base, "option_id": choice_id}, "title": title, "is_archived": False}


DEFAULT_PROPERTY = {
    "text": "value",
    "number": "value",
    "checkbox": "value",
    "currency": "currency_value",
    "date": "value",
    "timestamp": "value",
    "rating": "value",
    "status": "title",
    "select": "title",
    "email-address": "email_address",
    "domain": "domain",
    "phone-number": "phone_number",
    "personal-name": "full_name",
    "record-reference": "target_record_id",
    "actor-reference": "referenced_actor_id",
}
"""The property a shorthand filter (``{"slug": value}``) compares, per attribute type."""


def property_of(attribute: Attribute, value: Mapping[str, Any], name: str) -> Any:
    """A property of a stored value, as filters address it."""
    if attribute.type in ("status", "select"):
        key = "status" if attribute.type == "status" else "option"
        choice = attribute.choice_by_id(str(value[f"{key}_id"])) or {}
        if name in ("title", key):
            return choice.get("title")
        if name == f"{key}_id":
            return value[f"{key}_id"]
        return None
    return value.get(name)
