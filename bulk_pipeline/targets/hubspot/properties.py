"""Our fields as HubSpot properties, and back: the only place that knows HubSpot's names."""

from __future__ import annotations

from typing import Any

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.targets.base import Record

PROPERTY_MAP: dict[Entity, dict[str, str]] = {
    Entity.CONTACTS: {
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone": "phone",
        "mobile_phone": "mobilephone",
        "company": "company",
        "job_title": "jobtitle",
        "website": "website",
        "address": "address",
        "city": "city",
        "state": "state",
        "zip": "zip",
        "country": "country",
        "lifecycle_stage": "lifecyclestage",
        "date_of_birth": "date_of_birth",
    },
    Entity.COMPANIES: {
        "name": "name",
        "domain": "domain",
        "website": "website",
        "phone": "phone",
        "industry": "industry",
        "address": "address",
        "city": "city",
        "state": "state",
        "zip": "zip",
        "country": "country",
        "description": "description",
        "number_of_employees": "numberofemployees",
        "annual_revenue": "annualrevenue",
    },
    Entity.DEALS: {
        "name": "dealname",
        "amount": "amount",
        "stage": "dealstage",
        "pipeline": "pipeline",
        "close_date": "closedate",
        "description": "description",
    },
}
"""Our field name -> HubSpot property, per entity."""

OBJECT_TYPES: dict[Entity, str] = {
    Entity.CONTACTS: "contacts",
    Entity.COMPANIES: "companies",
    Entity.DEALS: "deals",
}


def unmapped_fields(entity: Entity, record: Record) -> list[str]:
    """Fields of ours that HubSpot has no property for (HubSpot's own names are accepted too)."""
    mapping = PROPERTY_MAP[entity]
    known = set(mapping) | set(mapping.values())
    return [name for name in record if name not in known]


def hubspot_property(entity: Entity, field_name: str) -> str:
    mapping = PROPERTY_MAP[entity]
    return mapping.get(field_name, field_name)


def key_property(entity: Entity) -> str:
    return PROPERTY_MAP[entity][ENTITY_SPECS[entity].key_field]


def is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


def to_properties(entity: Entity, record: Record, *, clear_blanks: bool = False) -> dict[str, str]:
    """HubSpot properties of a record.

    Blanks are left out so they never clear a CRM value, unless ``clear_blanks`` asks for it
    (a rollback restoring a field that was empty): HubSpot clears a property set to "".
    """
    if clear_blanks:
        return {
            hubspot_property(entity, name): "" if is_blank(value) else value or ""
            for name, value in record.items()
        }
    return {
        hubspot_property(entity, name): value
        for name, value in record.items()
        if value is not None and not is_blank(value)
    }


def from_properties(entity: Entity, properties: dict[str, Any]) -> dict[str, str | None]:
    """Our fields from HubSpot properties; properties we do not map are dropped."""
    return {
        name: (None if properties.get(prop) is None else str(properties[prop]))
        for name, prop in PROPERTY_MAP[entity].items()
        if prop in properties
    }
