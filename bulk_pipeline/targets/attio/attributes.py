"""Which Attio attribute each of our fields goes to, found in the workspace.

Attio workspaces differ: admins add attributes (a "Date of birth", a "Lifecycle stage" select) and
statuses. So our fields are placed by looking the workspace's attributes up, by slug or by title,
among a few candidates per field (Attio's standard attribute first, then the field's own name). A
field whose candidates the workspace lacks, or whose attribute has a type we cannot write from
one text value (a record reference: links come with linked imports), has no place, and its
column is reported as not sent.
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
    its value for composite types."""

    names: tuple[str, ...]
    part: str | None = None


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

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Attribute:
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
    """One of our fields placed on an attribute (and a part of its value)."""

    attribute: Attribute
    part: str | None = None


def title_key(text: str) -> str:
    """Titles compared the way people read them: accents, case and punctuation aside."""
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^0-9a-z]", "", decomposed.casefold().encode("ascii", "ignore").decode())


def place_fields(entity: Entity, attributes: Sequence[Attribute]) -> dict[str, Slot]:
    """Where each of our fields goes in this workspace (fields without a place are absent)."""
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
            fits = (
                attribute.type in PARTS and place.part in PARTS[attribute.type]
                if place.part
                else attribute.type in SCALAR_TYPES
            )
            if fits:
                placed[name] = Slot(attribute, place.part)
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
