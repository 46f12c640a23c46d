"""The entities bulk_pipeline imports, their fields, the key that deduplicates them, and the
references that link them.

Field names here are ours (snake_case, CRM-neutral). Each CRM target maps them to its own property
names in its own package (``targets/<crm>/``). A reference (a contact's company, a task's deal)
is held by ordinary fields of the record (``company_domain``, ``deal_id``...) until the push
resolves it to the CRM id of the record it names and puts that id in the record's *link field*
(``company_crm_id``): each target writes link fields the way its CRM links records.

The dedupe key has ONE normalization rule, :func:`normalize_key`, used everywhere a key is
compared: staging groups rows by it, the push and rollback look records up by it, and every
target answers lookups keyed by it. Two rules that disagree (one lower-casing, another
case-folding) would lose "Straße Pilot" between them and create it twice.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
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


PLAIN_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$")
"""A number as our normalizer writes it; a leading zero (a code such as 01234) is not one."""


def same_value(ours: str | None, theirs: str | None) -> bool:
    """Values a person would call equal: surrounding white space aside, blanks alike, numbers
    equal as numbers (1200.50 and 1200.5, where a CRM stores numbers, not their writing)."""
    mine, held = (ours or "").strip(), (theirs or "").strip()
    if mine == held:
        return True
    return bool(PLAIN_NUMBER.match(mine) and PLAIN_NUMBER.match(held)) and (
        Decimal(mine) == Decimal(held)
    )


class Entity(StrEnum):
    CONTACTS = "contacts"
    COMPANIES = "companies"
    DEALS = "deals"
    ACTIVITIES = "activities"
    NOTES = "notes"


DEPENDENCY_ORDER: tuple[Entity, ...] = (
    Entity.COMPANIES,
    Entity.CONTACTS,
    Entity.DEALS,
    Entity.ACTIVITIES,
    Entity.NOTES,
)
"""The order an import writes entities in: every entity after the ones it refers to."""


@dataclass(frozen=True)
class Identity:
    """One way a record is identified: a field's value, narrowed by other fields' values.

    ``slots`` are the narrowing fields, each a choice of alternatives (the first non-blank one
    counts): a deal named "Renewal" is a different deal at each company.
    """

    field: str
    slots: tuple[tuple[str, ...], ...] = ()
    matches_crm: bool = True
    """Whether a CRM record holding the same ``field`` value is this record: true for an email;
    false for a task's subject or an id that lives only in the source system, which are then
    never matched to records this pipeline did not write."""


@dataclass(frozen=True)
class Reference:
    """A record's reference to a record of another entity, by values a file holds."""

    name: str
    """``company``, ``contact`` or ``deal``: the link field is ``<name>_crm_id``."""
    entity: Entity
    by: tuple[tuple[str, str], ...]
    """(our field on this record, the field of the other record it equals), in order of
    preference: the first pair whose value is given is used."""

    @property
    def link_field(self) -> str:
        return f"{self.name}_crm_id"

    def value_of(self, record: Mapping[str, str | None]) -> tuple[str, str, str] | None:
        """(our field, their field, normalized value) of the first pair given; None if none."""
        for ours, theirs in self.by:
            value = record.get(ours)
            if value is not None and (key := normalize_key(value)):
                return ours, theirs, key
        return None


KEY_PARTS_SEPARATOR = "\x1f"
"""Between the parts of a key made of several values (unit separator: never typed)."""


def describe_key(key: str) -> str:
    """A dedupe key as a person reads it: ``name:renewal<US>acme.com`` -> ``name renewal /
    acme.com``."""
    field_name, colon, rest = key.partition(":")
    readable = " / ".join(
        part for part in (rest if colon else key).split(KEY_PARTS_SEPARATOR) if part
    )
    return f"{field_name} {readable}" if colon and field_name.isidentifier() else readable


@dataclass(frozen=True)
class EntitySpec:
    entity: Entity
    identities: tuple[Identity, ...]
    """The ways a record is identified, in order of preference: the first whose field is given
    makes the record's dedupe key."""
    fields: tuple[str, ...]
    """Every field of ours, reference fields included."""
    required: tuple[str, ...]
    references: tuple[Reference, ...] = ()
    local: tuple[str, ...] = ()
    """Fields kept only by this pipeline, never sent: references by value (resolved to link
    fields instead) and ids from the source system that the CRM has no field for."""

    @property
    def key_field(self) -> str:
        """The field of the preferred identity (what a message names as the key)."""
        return self.identities[0].field

    @property
    def link_fields(self) -> tuple[str, ...]:
        return tuple(reference.link_field for reference in self.references)

    def key_of(self, value: str | None) -> str | None:
        """The dedupe key of a record whose preferred identity field holds ``value``."""
        if value is None:
            return None
        key = normalize_key(value)
        return key or None

    def identify(self, record: Mapping[str, str | None]) -> tuple[Identity, str] | None:
        """The identity a record is known by and its dedupe key; None when it has none.

        The preferred identity's key is the normalized value itself (an email); any other is
        prefixed with its field name, so a deal named "42" never meets the deal whose id is 42.
        """
        for position, identity in enumerate(self.identities):
            value = self.key_of(record.get(identity.field))
            if value is None:
                continue
            parts = [value] + [_first_given(record, slot) for slot in identity.slots]
            key = KEY_PARTS_SEPARATOR.join(parts)
            return identity, key if position == 0 else f"{identity.field}:{key}"
        return None

    @property
    def search_field(self) -> str:
        """The field a CRM can find records by when no unique value identifies them (a deal's
        name, a task's subject): the last identity's."""
        return self.identities[-1].field

    def finds_by_lookup(self, identity: Identity) -> bool:
        """Whether one CRM record per value can stand for the identity: its value alone says
        which record it is. Otherwise every record with the value is searched and told apart
        by its links and its values."""
        return identity.matches_crm and not identity.slots


def _first_given(record: Mapping[str, str | None], slot: tuple[str, ...]) -> str:
    for name in slot:
        value = record.get(name)
        if value is not None and (key := normalize_key(value)):
            return key
    return ""


_COMPANY = Reference(
    "company", Entity.COMPANIES, by=(("company_domain", "domain"), ("company", "name"))
)
_CONTACT = Reference("contact", Entity.CONTACTS, by=(("contact_email", "email"),))
_DEAL = Reference("deal", Entity.DEALS, by=(("deal_id", "external_id"), ("deal_name", "name")))
_PARENT_SLOTS = (("contact_email",), ("company_domain", "company"), ("deal_id", "deal_name"))
"""What an activity or note is about, part of its key when it has no id of its own."""
_PARENT_REFERENCE_FIELDS = (
    "external_id",
    "contact_email",
    "company_domain",
    "company",
    "deal_id",
    "deal_name",
)
_ADDRESS = ("address", "city", "state", "zip", "country")

ENTITY_SPECS: dict[Entity, EntitySpec] = {
    Entity.CONTACTS: EntitySpec(
        entity=Entity.CONTACTS,
        identities=(Identity("email"),),
        fields=(
            "email",
            "first_name",
            "last_name",
            "phone",
            "mobile_phone",
            "company",
            "company_domain",
            "job_title",
            "website",
            *_ADDRESS,
            "lifecycle_stage",
            "date_of_birth",
        ),
        required=("email",),
        references=(_COMPANY,),
        local=("company_domain",),
    ),
    Entity.COMPANIES: EntitySpec(
        entity=Entity.COMPANIES,
        identities=(Identity("domain"), Identity("name")),
        fields=(
            "name",
            "domain",
            "website",
            "phone",
            "industry",
            *_ADDRESS,
            "description",
            "number_of_employees",
            "annual_revenue",
        ),
        required=("name",),
    ),
    Entity.DEALS: EntitySpec(
        entity=Entity.DEALS,
        identities=(
            Identity("external_id", matches_crm=False),
            Identity("name", slots=(("company_domain", "company"),)),
        ),
        fields=(
            "external_id",
            "name",
            "amount",
            "stage",
            "pipeline",
            "close_date",
            "description",
            "company_domain",
            "company",
            "contact_email",
            "owner",
        ),
        required=("name",),
        references=(_COMPANY, _CONTACT),
        local=("external_id", "company_domain", "company", "contact_email"),
    ),
    Entity.ACTIVITIES: EntitySpec(
        entity=Entity.ACTIVITIES,
        identities=(
            Identity("external_id", matches_crm=False),
            Identity("subject", slots=(("due_date",), *_PARENT_SLOTS), matches_crm=False),
        ),
        fields=(
            "external_id",
            "subject",
            "type",
            "due_date",
            "done",
            "priority",
            "body",
            "contact_email",
            "company_domain",
            "company",
            "deal_id",
            "deal_name",
        ),
        required=("subject",),
        references=(_CONTACT, _COMPANY, _DEAL),
        local=_PARENT_REFERENCE_FIELDS,
    ),
    Entity.NOTES: EntitySpec(
        entity=Entity.NOTES,
        identities=(
            Identity("external_id", matches_crm=False),
            Identity("body", slots=(("date",), *_PARENT_SLOTS), matches_crm=False),
        ),
        fields=(
            "external_id",
            "body",
            "date",
            "contact_email",
            "company_domain",
            "company",
            "deal_id",
            "deal_name",
        ),
        required=("body",),
        references=(_CONTACT, _COMPANY, _DEAL),
        local=_PARENT_REFERENCE_FIELDS,
    ),
}
