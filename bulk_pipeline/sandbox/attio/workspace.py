"""What a fresh Attio workspace holds in the sandbox: its objects, their standard attributes,
the deal stages, select options and workspace members.

Following Attio's standard-object documentation: people (``email_addresses`` unique), companies
(``domains`` unique) and deals (``name``, ``stage`` and ``owner`` required, no unique attribute).
The deal stage defaults to "Lead" and the owner to the member who authorised the token: defaults a
workspace admin can set in Attio (the sandbox's choice, so a deals file without those columns
imports). Ids are fixed UUIDs, the same in every sandbox, so answers are reproducible.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = uuid.UUID("8a5b0c3e-5f1d-4f4e-9a39-6c1f2d7e0a11")
ZERO_TIME = "2024-01-01T00:00:00.000000000Z"
"""When the sandbox's workspace, its objects and standard attributes were created."""


def fixed_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


WORKSPACE_ID = fixed_id("workspace")
WORKSPACE_SLUG = "sandbox"
TOKEN_ID = fixed_id("api-token")
"""The actor id of the sandbox's access token (``created_by_actor`` of what it writes)."""


@dataclass(frozen=True)
class StandardObject:
    slug: str
    singular: str
    plural: str

    @property
    def id(self) -> str:
        return fixed_id(f"object:{self.slug}")

    def answer(self) -> dict[str, Any]:
        return {
            "id": {"workspace_id": WORKSPACE_ID, "object_id": self.id},
            "api_slug": self.slug,
            "singular_noun": self.singular,
            "plural_noun": self.plural,
            "created_at": ZERO_TIME,
        }


OBJECTS = {
    o.slug: o
    for o in (
        StandardObject("people", "Person", "People"),
        StandardObject("companies", "Company", "Companies"),
        StandardObject("deals", "Deal", "Deals"),
    )
}


@dataclass(frozen=True)
class Member:
    first_name: str
    last_name: str
    email: str
    access_level: str

    @property
    def id(self) -> str:
        return fixed_id(f"member:{self.email}")

    def answer(self) -> dict[str, Any]:
        return {
            "id": {"workspace_id": WORKSPACE_ID, "workspace_member_id": self.id},
            "first_name": self.first_name,
            "last_name": self.last_name,
            "avatar_url": None,
            "email_address": self.email,
            "created_at": ZERO_TIME,
            "access_level": self.access_level,
        }


MEMBERS = (
    Member("Alex", "Owner", "alex.owner@example.com", "admin"),
    Member("Sam", "Seller", "sam.seller@example.com", "member"),
    Member("Robin", "Rep", "robin.rep@example.com", "member"),
)
TOKEN_OWNER = MEMBERS[0]
"""The member who authorised the sandbox's token (``/v2/self``)."""


@dataclass(frozen=True)
class Standard:
    """A standard attribute of an object, as a fresh workspace has it."""

    slug: str
    title: str
    type: str
    multiselect: bool = False
    unique: bool = False
    required: bool = False
    writable: bool = True
    allowed: tuple[str, ...] = ()
    """Objects a record-reference may point to."""
    choices: tuple[str, ...] = ()
    """Select options or statuses, in order."""
    default: dict[str, Any] | None = None
    """``{"type": "static", "choice": title}`` or ``{"type": "dynamic", "template": ...}``."""
    currency: str | None = None


SYSTEM = (
    Standard("record_id", "Record ID", "text", writable=False),
    Standard("created_at", "Created at", "timestamp", writable=False),
    Standard("created_by", "Created by", "actor-reference", writable=False),
)
STAGES = ("Lead", "In Progress", "Won 🎉", "Lost")
EMPLOYEE_RANGES = (
    "1-10",
    "11-50",
    "51-250",
    "251-1K",
    "1K-5K",
    "5K-10K",
    "10K-50K",
    "50K-100K",
    "100K+",
)
CATEGORIES = ("B2B", "B2C", "E-commerce", "Enterprise", "SAAS", "Technology")

STANDARD_ATTRIBUTES: dict[str, tuple[Standard, ...]] = {
    "people": (
        *SYSTEM,
        Standard("name", "Name", "personal-name"),
        Standard("email_addresses", "Email addresses", "email-address", True, unique=True),
        Standard("description", "Description", "text"),
        Standard("company", "Company", "record-reference", allowed=("companies",)),
        Standard("job_title", "Job title", "text"),
        Standard("phone_numbers", "Phone numbers", "phone-number", True),
        Standard("primary_location", "Primary location", "location"),
        Standard("linkedin", "LinkedIn", "text"),
    ),
    "companies": (
        *SYSTEM,
        Standard("name", "Name", "text"),
        Standard("domains", "Domains", "domain", True, unique=True),
        Standard("description", "Description", "text"),
        Standard("categories", "Categories", "select", True, choices=CATEGORIES),
        Standard("primary_location", "Primary location", "location"),
        Standard("employee_range", "Employee range", "select", choices=EMPLOYEE_RANGES),
        Standard("team", "Team", "record-reference", True, allowed=("people",)),
    ),
    "deals": (
        *SYSTEM,
        Standard("name", "Deal name", "text", required=True),
        Standard(
            "stage",
            "Deal stage",
            "status",
            required=True,
            choices=STAGES,
            default={"type": "static", "choice": STAGES[0]},
        ),
        Standard(
            "owner",
            "Deal owner",
            "actor-reference",
            required=True,
            default={"type": "dynamic", "template": "current-user"},
        ),
        Standard("value", "Deal value", "currency", currency="USD"),
        Standard(
            "associated_people", "Associated people", "record-reference", True, allowed=("people",)
        ),
        Standard(
            "associated_company", "Associated company", "record-reference", allowed=("companies",)
        ),
    ),
}


@dataclass
class AttributeSpec:
    """A new attribute's settings (standard, or created through the API)."""

    parent_id: str
    """The object's or list's id."""
    slug: str
    title: str
    type: str
    system: bool
    writable: bool = True
    required: bool = False
    unique: bool = False
    multiselect: bool = False
    description: str | None = None
    allowed_object_ids: list[str] | None = None
    currency: str | None = None
    default: dict[str, Any] | None = None
    attribute_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = ZERO_TIME

    def definition(self) -> dict[str, Any]:
        """The attribute as ``GET .../attributes`` shows it (its default filled in later)."""
        return {
            "id": {
                "workspace_id": WORKSPACE_ID,
                "object_id": self.parent_id,
                "attribute_id": self.attribute_id,
            },
            "title": self.title,
            "description": self.description,
            "api_slug": self.slug,
            "type": self.type,
            "is_system_attribute": self.system,
            "is_writable": self.writable,
            "is_required": self.required,
            "is_unique": self.unique,
            "is_multiselect": self.multiselect,
            "is_default_value_enabled": self.default is not None,
            "is_archived": False,
            "default_value": None,
            "relationship": None,
            "created_at": self.created_at,
            "config": {
                "currency": {
                    "default_currency_code": self.currency,
                    "display_type": "symbol" if self.currency else None,
                },
                "record_reference": {"allowed_object_ids": self.allowed_object_ids},
            },
        }


def standard_spec(object_slug: str, standard: Standard) -> AttributeSpec:
    return AttributeSpec(
        parent_id=OBJECTS[object_slug].id,
        slug=standard.slug,
        title=standard.title,
        type=standard.type,
        system=True,
        writable=standard.writable,
        required=standard.required,
        unique=standard.unique,
        multiselect=standard.multiselect,
        allowed_object_ids=[OBJECTS[name].id for name in standard.allowed]
        if standard.type == "record-reference"
        else None,
        currency=standard.currency,
        default=standard.default,
        attribute_id=fixed_id(f"attribute:{object_slug}:{standard.slug}"),
    )


def choice_id(attribute_id: str, title: str) -> str:
    return fixed_id(f"choice:{attribute_id}:{title}")
