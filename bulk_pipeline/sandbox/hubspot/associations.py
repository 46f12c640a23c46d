"""HubSpot-defined association types between the object types the sandbox holds.

A type has one direction: contact to company is 279, company to contact 280. An association
made in one direction reads in the other with the inverse type. Between contacts and companies,
and between deals and companies, HubSpot also defines a "Primary" type (1 and 5, inverses 2 and
6): a contact or deal has at most one primary company, and a labelled association always comes
with the unlabeled one. The ids are those of HubSpot's table of default association types (v4
associations guide, "Association type IDs").

Clients name a type by category and id (``{"associationCategory": "HUBSPOT_DEFINED",
"associationTypeId": 279}``); v3 reads name it in words (``contact_to_company_unlabeled``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox.hubspot.objects import (
    COMPANIES,
    CONTACTS,
    DEALS,
    NOTES,
    TASKS,
    ObjectType,
)

HUBSPOT_DEFINED = "HUBSPOT_DEFINED"
CATEGORIES = ("HUBSPOT_DEFINED", "INTEGRATOR_DEFINED", "USER_DEFINED", "WORK")
"""What ``associationCategory`` may say (the spec's enum); the sandbox defines only the first."""
PRIMARY = "Primary"


@dataclass(frozen=True)
class AssociationType:
    id: int
    from_obj: ObjectType
    to_obj: ObjectType
    inverse: int
    """The id of the same association read from the other side."""
    name: str
    """How v3 reads name the type (``contact_to_company``)."""
    label: str | None = None
    """``Primary`` for the primary types; unlabeled types answer ``label: null``."""
    exclusive: bool = False
    """The from record holds at most one association of this type (its primary company)."""

    def spec(self) -> dict[str, Any]:
        """An ``AssociationSpec``."""
        return {"associationCategory": HUBSPOT_DEFINED, "associationTypeId": self.id}

    def spec_with_label(self) -> dict[str, Any]:
        """An ``AssociationSpecWithLabel``."""
        return {"category": HUBSPOT_DEFINED, "typeId": self.id, "label": self.label}


def _pair(
    from_obj: ObjectType,
    to_obj: ObjectType,
    ids: tuple[int, int],
    primary_ids: tuple[int, int] | None = None,
) -> list[AssociationType]:
    """Both directions of a pair: the unlabeled types and, where HubSpot has them, the primary
    ones (held by ``from_obj``, a contact or deal, towards a company)."""
    forward, backward = (
        f"{from_obj.singular}_to_{to_obj.singular}",
        (f"{to_obj.singular}_to_{from_obj.singular}"),
    )
    suffix = "" if primary_ids is None else "_unlabeled"
    types = [
        AssociationType(ids[0], from_obj, to_obj, ids[1], forward + suffix),
        AssociationType(ids[1], to_obj, from_obj, ids[0], backward + suffix),
    ]
    if primary_ids is not None:
        there, back = primary_ids
        types.append(
            AssociationType(there, from_obj, to_obj, back, forward, PRIMARY, exclusive=True)
        )
        types.append(AssociationType(back, to_obj, from_obj, there, backward, PRIMARY))
    return types


TYPES: dict[int, AssociationType] = {
    kind.id: kind
    for kind in (
        *_pair(CONTACTS, COMPANIES, (279, 280), primary_ids=(1, 2)),
        *_pair(DEALS, CONTACTS, (3, 4)),
        *_pair(DEALS, COMPANIES, (341, 342), primary_ids=(5, 6)),
        *_pair(TASKS, CONTACTS, (204, 203)),
        *_pair(TASKS, COMPANIES, (192, 191)),
        *_pair(TASKS, DEALS, (216, 215)),
        *_pair(NOTES, CONTACTS, (202, 201)),
        *_pair(NOTES, COMPANIES, (190, 189)),
        *_pair(NOTES, DEALS, (214, 213)),
    )
}


def association_type(category: object, type_id: object) -> AssociationType | None:
    """The type a client's ``AssociationSpec`` names, or ``None`` when HubSpot has no such one."""
    if category != HUBSPOT_DEFINED or isinstance(type_id, bool) or not isinstance(type_id, int):
        return None
    return TYPES.get(type_id)


def default_type(from_obj: ObjectType, to_obj: ObjectType) -> AssociationType | None:
    """The unlabeled type from one object type to another ("default" associations)."""
    for kind in TYPES.values():
        if kind.from_obj is from_obj and kind.to_obj is to_obj and kind.label is None:
            return kind
    return None


def unlabeled(kind: AssociationType) -> AssociationType:
    """The unlabeled type of the same pair and direction, which every labelled one comes with."""
    found = default_type(kind.from_obj, kind.to_obj)
    return kind if found is None else found


def holder_side(kind: AssociationType) -> AssociationType:
    """The direction in which the type is ``exclusive`` where either is (a primary company is
    held by the contact or deal, whichever side the client wrote it from)."""
    inverse = TYPES[kind.inverse]
    return inverse if inverse.exclusive else kind
