"""The entities bulk_pipeline imports, their fields and the key that deduplicates them.

Field names here are ours (snake_case, CRM-neutral). Each CRM target maps them to its own property
names in one place (see ``targets/hubspot.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
        fields=("name", "amount", "stage", "pipeline", "close_date", "description"),
        required=("name",),
    ),
}
