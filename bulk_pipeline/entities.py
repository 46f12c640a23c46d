"""The entities bulk_pipeline imports, their fields and the key that deduplicates them.

Field names here are ours (snake_case, CRM-neutral). Each CRM target maps them to its own property
names in its own package (``targets/<crm>/``).

The dedupe key has ONE normalization rule, :func:`normalize_key`, used everywhere a key is
compared: staging groups rows by it, the push and rollback look records up by it, and every
target answers lookups keyed by it. Two rules that disagree (one lower-casing, another
case-folding) would lose "Straße Pilot" between them and create it twice.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

_SPACES = re.compile(r"\s+")


def normalize_key(value: str) -> str:
    """The comparable form of a dedupe key: Unicode-composed (NFC), case-folded, with runs of
    white space made one space and the ends trimmed.

    Case folding (not lower-casing) makes "STRASSE", "Straße" and "strasse" one key and keeps
    Greek final sigma and Turkish dotted capitals stable, the way CRMs compare text case-blind.
    """
    composed = unicodedata.normalize("NFC", value)
    return _SPACES.sub(" ", composed).strip().casefold()


class Entity(StrEnum):
    CONTACTS = "contacts"
    COMPANIES = "companies"
    DEALS = "deals"


@dataclass(frozen=True)
class EntitySpec:
    entity: Entity
    key_field: str
    """The field whose normalized value identifies a record (the dedupe key)."""
    fields: tuple[str, ...]
    required: tuple[str, ...]

    def key_of(self, value: str | None) -> str | None:
        """The dedupe key of a record whose key field holds ``value``; None when blank."""
        if value is None:
            return None
        key = normalize_key(value)
        return key or None


ENTITY_SPECS: dict[Entity, EntitySpec] = {
    Entity.CONTACTS: EntitySpec(
        entity=Entity.CONTACTS,
        key_field="email",
        fields=(
            "email",
            "first_name",
            "last_name",
            "phone",
            "mobile_phone",
            "company",
            "job_title",
            "website",
            "address",
            "city",
            "state",
            "zip",
            "country",
            "lifecycle_stage",
            "date_of_birth",
        ),
        required=("email",),
    ),
    Entity.COMPANIES: EntitySpec(
        entity=Entity.COMPANIES,
        key_field="domain",
        fields=(
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
            "number_of_employees",
            "annual_revenue",
        ),
        required=("name", "domain"),
    ),
    Entity.DEALS: EntitySpec(
        entity=Entity.DEALS,
        key_field="name",
        fields=("name", "amount", "stage", "pipeline", "close_date", "description", "owner"),
        required=("name",),
    ),
}
