"""Which Attio attribute each of our fields goes to, found in the workspace.

Attio workspaces differ: admins add attributes (a "Date of birth", a "Lifecycle stage" select) and
statuses. So our fields are placed by looking the workspace's attributes up, by slug or by title,
among a few candidates per field (Attio's standard attribute first, then the field's own name). A
field whose candidates the workspace lacks, or whose attribute has a type we cannot write from
one text value, has no place, and its column is reported as not sent. Link fields
(``company_crm_id``...) go to record-reference attributes that may refer to the linked object:
a person's ``company``, a deal's ``associated_company`` and ``associated_people``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulk_pipeline.entities import Entity

OBJECTS: dict[Entity, str] = {
    Entity.CONTACTS: "people",
    Entity.COMPANIES: "companies",
    Entity.DEALS: "deals",
}
"""Attio's object slug of each entity."""

SCALAR_TYPES = frozenset(
    {
        "text",
        "number",
        "currency",
        "date",
        "timestamp",
        "checkbox",
        "rating",
        "select",
        "status",
        "email-address",
        "domain",
        "phone-number",
        "actor-reference",
    }
)
"""Types one of our text values can be written to."""
PARTS: dict[str, frozenset[str]] = {
    "personal-name": frozenset({"first_name", "last_name"}),
    "location": frozenset({"line_1", "locality", "region", "postcode", "country_code"}),
}
"""Composite types, and the parts of them our fields fill."""
CHOICE_TYPES = frozenset({"select", "status"})
CASE_BLIND_TYPES = frozenset({"select", "status", "email-address", "domain", "actor-reference"})
"""Types whose values Attio matches regardless of case (or normalizes to lower case)."""


@dataclass(frozen=True)
class Place:
    """Where a field goes: the first attribute found by these slugs or titles, and the part of
    its value for composite types, or the entity a record reference refers to."""

    names: tuple[str, ...]
    part: str | None = None
    refers_to: Entity | None = None


def _location(part: str) -> Place:
    return Place(("primary_location", "Primary location"), part)


PLACES: dict[Entity, dict[str, Place]] = {
    Entity.CONTACTS: {
        "email": Place(("email_addresses",)),
        "first_name": Place(("name",), "first_name"),
        "last_name": Place(("name",), "last_name"),
        "phone": Place(("phone_numbers",)),
        "mobile_phone": Place(("mobile_phone", "Mobile phone", "Mobile")),
        "company": Place(("company_name", "Company name")),
        "job_title": Place(("job_title",)),
        "website": Place(("website",)),
        "address": _location("line_1"),
        "city": _location("locality"),
        "state": _location("region"),
        "zip": _location("postcode"),
        "country": _location("country_code"),
        "lifecycle_stage": Place(("lifecycle_stage",)),
        "date_of_birth": Place(("date_of_birth", "Birthday")),
        "company_crm_id": Place(("company",), refers_to=Entity.COMPANIES),
    },
    Entity.COMPANIES: {
        "name": Place(("name",)),
        "domain": Place(("domains",)),
        "website": Place(("website",)),
        "phone": Place(("phone", "phone_numbers")),
        "industry": Place(("industry",)),
        "address": _location("line_1"),
        "city": _location("locality"),
        "state": _location("region"),
        "zip": _location("postcode"),
        "country": _location("country_code"),
        "description": Place(("description",)),
        "number_of_employees": Place(("number_of_employees", "Employees", "Employee count")),
        "annual_revenue": Place(("annual_revenue",)),
    },
    Entity.DEALS: {
        "name": Place(("name",)),
        "amount": Place(("value",)),
        "stage": Place(("stage",)),
        "pipeline": Place(("pipeline",)),
        "close_date": Place(("close_date", "Expected close date")),
        "description": Place(("description",)),
        "owner": Place(("owner",)),
        "company_crm_id": Place(("associated_company",), refers_to=Entity.COMPANIES),
        "contact_crm_id": Place(("associated_people",), refers_to=Entity.CONTACTS),
    },
}
"""Our fields and where Attio keeps them; the field's own name (as slug and as title) is always
tried after these."""
KEY_ATTRIBUTES: dict[Entity, str] = {
    Entity.CONTACTS: "email_addresses",
    Entity.COMPANIES: "domains",
}
"""The unique attribute people and companies are asserted and found by."""


@dataclass(frozen=True)
class Choice:
    id: str
    title: str


@dataclass(frozen=True)
class Attribute:
    """An attribute of an object, as ``GET /v2/objects/{object}/attributes`` describes it."""

    id: str
    slug: str
    title: str
    type: str
    multiselect: bool
    unique: bool
    required: bool
    writable: bool
    defaulted: bool
    """A default value fills it on new records."""
    choices: tuple[Choice, ...] = ()
    """Active select options or statuses."""
    allowed_objects: tuple[str, ...] | None = None
    """A record reference's objects (ids) it may refer to; None where the answer does not say."""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Attribute:
        reference = ((data.get("config") or {}).get("record_reference")) or {}
        allowed = reference.get("allowed_object_ids")
        return cls(
            id=str(data["id"]["attribute_id"]),
            slug=str(data["api_slug"]),
            title=str(data["title"]),
            type=str(data["type"]),
            multiselect=bool(data.get("is_multiselect")),
            unique=bool(data.get("is_unique")),
            required=bool(data.get("is_required")),
            writable=bool(data.get("is_writable", True)),
            defaulted=bool(data.get("is_default_value_enabled")),
            allowed_objects=None if allowed is None else tuple(str(a) for a in allowed),
        )

    def choice(self, given: str) -> Choice | None:
        wanted = given.strip().casefold()
        return next(
            (c for c in self.choices if c.title.casefold() == wanted or c.id == given.strip()), None
        )

    @property
    def choice_titles(self) -> str:
        titles = [c.title for c in self.choices]
        shown = ", ".join(titles[:12])
        return shown + (f" and {len(titles) - 12} more" if len(titles) > 12 else "")


@dataclass(frozen=True)
class Slot:
    """One of our fields placed on an attribute (and a part of its value, or the object a
    record reference refers to)."""

    attribute: Attribute
    part: str | None = None
    target: str | None = None


def title_key(text: str) -> str:
    """Titles compared the way people read them: accents, case and punctuation aside."""
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^0-9a-z]", "", decomposed.casefold().encode("ascii", "ignore").decode())


def _fits(place: Place, attribute: Attribute, object_ids: Mapping[str, str]) -> bool:
    if place.refers_to is not None:
        target = object_ids.get(OBJECTS[place.refers_to])
        return (
            attribute.type == "record-reference"
            and target is not None
            and (attribute.allowed_objects is None or target in attribute.allowed_objects)
        )
    if place.part:
        return attribute.type in PARTS and place.part in PARTS[attribute.type]
    return attribute.type in SCALAR_TYPES


def place_fields(
    entity: Entity, attributes: Sequence[Attribute], object_ids: Mapping[str, str]
) -> dict[str, Slot]:
    """Where each of our fields goes in this workspace (fields without a place are absent);
    ``object_ids``: the workspace's objects, slug -> id."""
    by_slug = {a.slug: a for a in attributes}
    by_title: dict[str, Attribute] = {}
    for each in attributes:
        by_title.setdefault(title_key(each.title), each)
    placed: dict[str, Slot] = {}
    for name, place in PLACES[entity].items():
        for candidate in (*place.names, name):
            attribute = by_slug.get(candidate) or by_title.get(title_key(candidate))
            if attribute is None or not attribute.writable:
                continue
            if _fits(place, attribute, object_ids):
                target = None if place.refers_to is None else OBJECTS[place.refers_to]
                placed[name] = Slot(attribute, place.part, target)
                break
    return placed


@dataclass
class Workspace:
    """What the dialect learnt about one object of the workspace."""

    entity: Entity
    attributes: tuple[Attribute, ...]
    slots: dict[str, Slot]
    members: dict[str, str] = field(default_factory=dict)
    """Workspace member emails (lower-case) -> ids, where an actor reference is placed."""

    @property
    def object(self) -> str:
        return OBJECTS[self.entity]

    def by_id(self, attribute_id: str) -> Attribute | None:
        return next((a for a in self.attributes if a.id == attribute_id), None)

    def member_email(self, member_id: str) -> str | None:
        return next((email for email, i in self.members.items() if i == member_id), None)

    def required_unfilled(self, filled: set[str]) -> list[Attribute]:
        """Attributes a new record must have that neither our values nor a default fill."""
        return [
            a
            for a in self.attributes
            if a.required and a.writable and not a.defaulted and a.slug not in filled
        ]
