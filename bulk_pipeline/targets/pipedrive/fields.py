"""Our fields as Pipedrive's, and back: the one place that knows Pipedrive's field names.

API v2 shapes (the spec's request and response schemas; v1 for notes):

- persons (our contacts) hold ``emails`` and ``phones`` as lists of ``{value, primary, label}``,
  names in ``first_name``/``last_name`` (Pipedrive derives ``name``), an address object in
  ``postal_address``;
- organizations (our companies) keep a site in ``website``, which holds our ``domain`` (the
  dedupe key, compared as a bare host), an ``address`` object, whole numbers for
  ``employee_count`` and ``annual_revenue``, and ``industry`` as an option id;
- deals keep our name in ``title``, ``value``, ``expected_close_date``, and the pipeline and
  stage as ids, found by name;
- activities keep our body in ``note``, ``done`` as a boolean, ``type`` as an activity type's
  ``key_string`` (found by name or key, ``/api/v1/activityTypes``) and ``priority`` as an option
  id of the ``priority`` field of ``activityFields``, where the account has options for it;
- notes (v1) keep our body in ``content`` and our date in ``add_time``;
- custom fields sit in ``custom_fields`` under 40-character hash keys; a field of ours with no
  place of its own, or a column, goes to the custom field of the same name (``*Fields``).

Links are foreign keys (``FOREIGN_KEYS``): a person's ``org_id``; a deal's ``org_id`` and
``person_id``; an activity's or note's ``person_id``, ``org_id`` and ``deal_id``. They hold our
link fields (``company_crm_id``...) and are written, read back and compared like any field.

Writes merge with the record's current values where Pipedrive replaces a whole value (a phone
among several, one part of an address), so an update changes only what it names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulk_pipeline.entities import ENTITY_SPECS, Entity, normalize_key
from bulk_pipeline.mapping import header_key
from bulk_pipeline.targets.base import Record

PATHS: dict[Entity, str] = {
    Entity.CONTACTS: "/api/v2/persons",
    Entity.COMPANIES: "/api/v2/organizations",
    Entity.DEALS: "/api/v2/deals",
    Entity.ACTIVITIES: "/api/v2/activities",
    Entity.NOTES: "/api/v1/notes",
}
"""Our entity -> the path of Pipedrive's items of that type (notes have no v2 endpoint)."""
V1 = frozenset({Entity.NOTES})
"""Entities served by API v1: offset pages (``start``), ``PUT`` updates, no ``ids`` filter."""
FIELD_LISTS: dict[Entity, str] = {
    Entity.CONTACTS: "/api/v2/personFields",
    Entity.COMPANIES: "/api/v2/organizationFields",
    Entity.DEALS: "/api/v2/dealFields",
    Entity.ACTIVITIES: "/api/v2/activityFields",
}
ACTIVITY_TYPES = "/api/v1/activityTypes"
KEY_FIELDS: dict[Entity, dict[str, Callable[[Mapping[str, Any]], list[Any]]]] = {
    Entity.CONTACTS: {
        "email": lambda item: [
            e.get("value") for e in item.get("emails") or () if isinstance(e, dict)
        ]
    },
    Entity.COMPANIES: {
        "domain": lambda item: [domain_of(item.get("website"))],
        "name": lambda item: [item.get("name")],
    },
    Entity.DEALS: {"name": lambda item: [item.get("title")]},
    Entity.ACTIVITIES: {"subject": lambda item: [item.get("subject")]},
    Entity.NOTES: {"body": lambda item: [item.get("content")]},
}
"""The fields of ours an item is found by (``lookup``/``search``), and its values of each."""
SEARCH_FIELDS: dict[tuple[Entity, str], str] = {
    (Entity.CONTACTS, "email"): "email",
    (Entity.COMPANIES, "name"): "name",
    (Entity.DEALS, "name"): "title",
}
"""The search field holding each key; an organization's ``website``, activities and notes
cannot be searched."""
UNIQUE_KEY_FIELDS: dict[Entity, str] = {Entity.CONTACTS: "email", Entity.COMPANIES: "domain"}
"""Fields whose value names one record: items sharing one are duplicates in the account (a
deal's title or a task's subject is shared by different records)."""
NOTE_PARENTS: dict[Entity, str] = {
    Entity.CONTACTS: "person_id",
    Entity.COMPANIES: "org_id",
    Entity.DEALS: "deal_id",
}
_PARENT_KEYS = {
    "company_crm_id": "org_id",
    "contact_crm_id": "person_id",
    "deal_crm_id": "deal_id",
}
FOREIGN_KEYS: dict[Entity, dict[str, str]] = {
    Entity.CONTACTS: {"company_crm_id": "org_id"},
    Entity.COMPANIES: {},
    Entity.DEALS: {"company_crm_id": "org_id", "contact_crm_id": "person_id"},
    Entity.ACTIVITIES: _PARENT_KEYS,
    Entity.NOTES: _PARENT_KEYS,
}
"""Our link field -> the Pipedrive field holding the linked item's id."""

PLAIN: dict[Entity, dict[str, str]] = {
    Entity.CONTACTS: {
        "first_name": "first_name",
        "last_name": "last_name",
        "job_title": "job_title",
        "date_of_birth": "birthday",
    },
    Entity.COMPANIES: {"name": "name"},
    Entity.DEALS: {"name": "title", "close_date": "expected_close_date"},
    Entity.ACTIVITIES: {"subject": "subject", "due_date": "due_date", "body": "note"},
    Entity.NOTES: {"body": "content"},
}
"""Our field -> a Pipedrive field holding the same text."""
NUMBERS: dict[Entity, dict[str, tuple[str, bool]]] = {
    Entity.COMPANIES: {
        "number_of_employees": ("employee_count", True),
        "annual_revenue": ("annual_revenue", True),
    },
    Entity.DEALS: {"amount": ("value", False)},
}
"""Our field -> a numeric Pipedrive field, and whether it holds whole numbers only."""
ADDRESS_PARTS: dict[str, str] = {
    "city": "locality",
    "state": "admin_area_level_1",
    "zip": "postal_code",
    "country": "country",
}
"""Our address fields -> the parts of Pipedrive's address object (``address`` is its value)."""
ADDRESS_FIELDS: dict[Entity, str] = {
    Entity.CONTACTS: "postal_address",
    Entity.COMPANIES: "address",
}
PHONE_LABELS = {"phone": "work", "mobile_phone": "mobile"}
EMAIL_LABEL = "work"
CLEARED_NUMBERS: dict[str, int | None] = {"value": 0}
"""What clears a numeric field: ``null`` where the spec lets it be null; a deal's value is 0."""
WRITABLE_CUSTOM_TYPES = frozenset(
    {"varchar", "varchar_auto", "text", "phone", "double", "date", "enum", "set", "address"}
)
"""Custom field types a text column can fill; the others (links, ranges, money) are left to
imports that know their shape."""


class ValueProblem(ValueError):
    """A value Pipedrive cannot take in that field; the message says which and why."""


@dataclass(frozen=True)
class FieldDef:
    """One field of a ``*Fields`` listing."""

    code: str
    name: str
    type: str
    custom: bool
    options: dict[int, str] = field(default_factory=dict)
    """Option id -> label (enum and set fields)."""

    def option_id(self, label: str) -> int:
        wanted = normalize_key(label)
        for option_id, option_label in self.options.items():
            if normalize_key(option_label) == wanted:
                return option_id
        known = ", ".join(sorted(self.options.values())) or "none"
        raise ValueProblem(f"'{label}' is not one of the options of {self.name} ({known})")

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> FieldDef:
        options = {
            int(o["id"]): str(o.get("label") or "")
            for o in item.get("options") or ()
            if isinstance(o, dict) and str(o.get("id", "")).lstrip("-").isdigit()
        }
        return cls(
            code=str(item["field_code"]),
            name=str(item.get("field_name") or item["field_code"]),
            type=str(item.get("field_type") or ""),
            custom=bool(item.get("is_custom_field")),
            options=options,
        )


@dataclass(frozen=True)
class Stage:
    id: int
    name: str
    pipeline_id: int


@dataclass(frozen=True)
class ActivityType:
    key: str
    """``key_string``: what an activity's ``type`` holds."""
    name: str


@dataclass
class Catalog:
    """What an account defines for one entity: its fields (custom ones by name), for deals its
    pipelines and stages, for activities their types. Read once per target."""

    entity: Entity
    fields: list[FieldDef]
    pipelines: dict[int, str] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    activity_types: list[ActivityType] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._custom = {
            header_key(f.name): f
            for f in self.fields
            if f.custom and f.type in WRITABLE_CUSTOM_TYPES
        }
        self._standard = {f.code: f for f in self.fields if not f.custom}
        self._native = self._our_native_fields()

    def custom_field(self, name: str) -> FieldDef | None:
        """The custom field a field of ours or a column named ``name`` goes to."""
        return self._custom.get(header_key(name))

    @property
    def custom_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self._custom.values())

    def standard(self, code: str) -> FieldDef | None:
        return self._standard.get(code)

    def native(self) -> frozenset[str]:
        """Our fields with a place of their own in Pipedrive."""
        return self._native

    def _our_native_fields(self) -> frozenset[str]:
        entity = self.entity
        names = {*KEY_FIELDS[entity], *PLAIN.get(entity, {}), *FOREIGN_KEYS[entity]}
        names |= set(NUMBERS.get(entity, {}))
        if entity in ADDRESS_FIELDS:
            names |= {"address", *ADDRESS_PARTS}
        if entity is Entity.CONTACTS:
            names |= set(PHONE_LABELS)
        if entity is Entity.COMPANIES:
            industry = self.standard("industry")
            if industry is not None and industry.options:
                names.add("industry")
        if entity is Entity.DEALS:
            names |= {"pipeline", "stage"}
        if entity is Entity.ACTIVITIES:
            names.add("done")
            if self.activity_types:
                names.add("type")
            if self.priority() is not None:
                names.add("priority")
        if entity is Entity.NOTES:
            names.add("date")
        return frozenset(names)

    def priority(self) -> FieldDef | None:
        """Activities' ``priority`` field, where the account gives it options to name."""
        priority = self.standard("priority")
        return priority if priority is not None and priority.options else None

    def holds(self, name: str) -> bool:
        return name in self.native() or self.custom_field(name) is not None

    # deals' pipelines and stages

    def pipeline_id(self, name: str) -> int:
        for pipeline_id, pipeline in sorted(self.pipelines.items()):
            if normalize_key(pipeline) == normalize_key(name):
                return pipeline_id
        known = ", ".join(sorted(self.pipelines.values())) or "none"
        raise ValueProblem(f"pipeline '{name}' does not exist in Pipedrive (pipelines: {known})")

    def stage_id(self, name: str, pipeline_id: int | None) -> int:
        """A stage by name: in the given pipeline, else the first pipeline that has it."""
        candidates = [
            s
            for s in sorted(self.stages, key=lambda s: (s.pipeline_id, s.id))
            if normalize_key(s.name) == normalize_key(name)
            and (pipeline_id is None or s.pipeline_id == pipeline_id)
        ]
        if not candidates:
            where = f" of pipeline {self.pipelines.get(pipeline_id)}" if pipeline_id else ""
            known = ", ".join(
                sorted(
                    {s.name for s in self.stages if not pipeline_id or s.pipeline_id == pipeline_id}
                )
            )
            raise ValueProblem(f"stage '{name}' is not a stage{where} (stages: {known or 'none'})")
        return candidates[0].id

    def stage_name(self, stage_id: Any) -> str | None:
        return next((s.name for s in self.stages if s.id == stage_id), None)

    # activities' types

    def activity_type(self, text: str) -> str:
        """An activity type's ``key_string``, by its name or key (case aside)."""
        wanted = normalize_key(text)
        for kind in self.activity_types:
            if wanted in (normalize_key(kind.key), normalize_key(kind.name)):
                return kind.key
        known = ", ".join(kind.name for kind in self.activity_types) or "none"
        raise ValueProblem(f"type '{text}' is not an activity type of Pipedrive (types: {known})")

    def activity_type_name(self, key: Any) -> str | None:
        return next((kind.name for kind in self.activity_types if kind.key == key), _text(key))


def is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


def domain_of(website: str | None) -> str | None:
    """The bare host of a site (``https://www.Example.com/x`` -> ``example.com``), as our
    companies' ``domain``."""
    if is_blank(website):
        return None
    text = (website or "").strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.\-]*://", "", text)
    text = re.split(r"[/?#]", text, maxsplit=1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0]
    return re.sub(r"^www[0-9]{0,3}\.", "", text) or None


def index_key(field_name: str, key: str) -> str:
    """A key of the match index: our field and a normalized value (``email:ada@acme.com``)."""
    return f"{field_name}:{key}"


def keys_of(entity: Entity, item: Mapping[str, Any]) -> list[str]:
    """The index keys an item answers to: every email of a person, an organization's domain
    and name, a deal's title, an activity's subject, a note's content."""
    keys = [
        index_key(field_name, normalize_key(value))
        for field_name, values_of in KEY_FIELDS[entity].items()
        for value in values_of(item)
        if isinstance(value, str) and value.strip()
    ]
    return list(dict.fromkeys(keys))


def record_keys(entity: Entity, record: Record) -> list[str]:
    """The index keys an item written from our ``record`` answers to."""
    return [
        index_key(name, normalize_key(value))
        for name in KEY_FIELDS[entity]
        if (value := record.get(name)) and value.strip()
    ]


# --- from Pipedrive ------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _primary(contacts: Any) -> dict[str, Any] | None:
    entries = [c for c in contacts or () if isinstance(c, dict) and _text(c.get("value"))]
    return next((c for c in entries if c.get("primary")), entries[0] if entries else None)


def _phone_entries(phones: Any) -> dict[str, dict[str, Any]]:
    """Which of a person's phones our ``phone`` and ``mobile_phone`` are: the first labelled
    mobile is the mobile; the primary other one (else the first other one) is the phone."""
    entries = [p for p in phones or () if isinstance(p, dict) and _text(p.get("value"))]
    found: dict[str, dict[str, Any]] = {}
    mobile = next((p for p in entries if p.get("label") == "mobile"), None)
    if mobile is not None:
        found["mobile_phone"] = mobile
    others = [p for p in entries if p is not mobile]
    phone = next((p for p in others if p.get("primary")), others[0] if others else None)
    if phone is not None:
        found["phone"] = phone
    return found


def _composed(parts: Mapping[str, Any]) -> str:
    """An address's value made of its parts, when no street was given."""
    order = ("postal_code", "locality", "admin_area_level_1", "country")
    return ", ".join(str(parts[p]) for p in order if _text(parts.get(p)))


def _address_from(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        return {}
    fields: dict[str, str | None] = {
        ours: _text(value.get(part)) for ours, part in ADDRESS_PARTS.items()
    }
    text = _text(value.get("value"))
    fields["address"] = None if text is None or text == _composed(value) else text
    return fields


def _linked_id(value: Any) -> str | None:
    """The id a foreign key holds (v1 answers may nest it as ``{"value": id, ...}``)."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return str(value)


def _custom_from(value: Any, definition: FieldDef) -> str | None:
    if value is None:
        return None
    if definition.type == "enum":
        return definition.options.get(value) if isinstance(value, int) else _text(value)
    if definition.type == "set":
        items = value if isinstance(value, list) else [value]
        labels = [
            definition.options.get(v, str(v)) if isinstance(v, int) else str(v) for v in items
        ]
        return ", ".join(labels) or None
    if definition.type == "address":
        return _text(value.get("value")) if isinstance(value, dict) else _text(value)
    return _text(value)


def from_item(
    entity: Entity, item: Mapping[str, Any], catalog: Catalog | None
) -> dict[str, str | None]:
    """Our fields (and the custom fields by name) of a Pipedrive item."""
    fields: dict[str, str | None] = {
        ours: _text(item.get(theirs)) for ours, theirs in PLAIN.get(entity, {}).items()
    }
    for ours, (theirs, _) in NUMBERS.get(entity, {}).items():
        fields[ours] = _text(item.get(theirs))
    if entity in ADDRESS_FIELDS:
        fields |= _address_from(item.get(ADDRESS_FIELDS[entity]))
    if entity is Entity.CONTACTS:
        email = _primary(item.get("emails"))
        fields["email"] = _text(email.get("value")) if email else None
        phones = _phone_entries(item.get("phones"))
        for ours in PHONE_LABELS:
            fields[ours] = _text(phones[ours].get("value")) if ours in phones else None
    elif entity is Entity.COMPANIES:
        fields["domain"] = domain_of(_text(item.get("website")))
        industry = catalog.standard("industry") if catalog else None
        if industry is not None and industry.options:
            fields["industry"] = _custom_from(item.get("industry"), industry)
    elif entity is Entity.DEALS and catalog is not None:
        fields["pipeline"] = catalog.pipelines.get(item.get("pipeline_id"))  # type: ignore[arg-type]
        fields["stage"] = catalog.stage_name(item.get("stage_id"))
    elif entity is Entity.ACTIVITIES:
        fields["done"] = _text(item.get("done"))
        if catalog is not None:
            fields["type"] = catalog.activity_type_name(item.get("type"))
            priority = catalog.priority()
            if priority is not None:
                fields["priority"] = _custom_from(item.get("priority"), priority)
    elif entity is Entity.NOTES:
        added = _text(item.get("add_time"))
        fields["date"] = added[:10] if added else None
    for ours, theirs in FOREIGN_KEYS[entity].items():
        fields[ours] = _linked_id(item.get(theirs))
    custom = item.get("custom_fields")
    if catalog is not None and isinstance(custom, dict):
        for definition in catalog.fields:
            if definition.custom and definition.type in WRITABLE_CUSTOM_TYPES:
                fields[definition.name] = _custom_from(custom.get(definition.code), definition)
        for ours in ENTITY_SPECS[entity].fields:
            held_by = catalog.custom_field(ours)
            if ours not in catalog.native() and held_by is not None:
                fields[ours] = fields[held_by.name]
    return fields


# --- to Pipedrive --------------------------------------------------------------------------------


def _number(name: str, text: str, whole: bool) -> int | float:
    try:
        number = float(text)
    except ValueError:
        raise ValueProblem(f"{name} '{text}' is not a number") from None
    if whole:
        if not number.is_integer():
            raise ValueProblem(f"{name} '{text}': Pipedrive holds whole numbers here")
        return int(number)
    return int(number) if number.is_integer() else number


def _custom_to(definition: FieldDef, text: str) -> Any:
    match definition.type:
        case "double":
            return _number(definition.name, text, whole=False)
        case "enum":
            return definition.option_id(text)
        case "set":
            return [definition.option_id(part) for part in text.split(",") if part.strip()]
        case "address":
            return {"value": text}
        case _:
            return text


def _with_contact(
    entries: list[dict[str, Any]], replaced: dict[str, Any] | None, value: str | None, label: str
) -> list[dict[str, Any]]:
    """A phone list with one entry set to ``value`` (added when new), or removed when blank."""
    kept = [dict(e) for e in entries if e is not replaced]
    if value is None:
        if kept and not any(e.get("primary") for e in kept):
            kept[0]["primary"] = True
        return kept
    if replaced is not None:
        entry = {**replaced, "value": value}
        return [entry if e is replaced else dict(e) for e in entries]
    return [
        *kept,
        {"value": value, "primary": not any(e.get("primary") for e in kept), "label": label},
    ]


@dataclass
class Body:
    """A request body being built from our record."""

    values: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {**self.values, **({"custom_fields": self.custom} if self.custom else {})}


def to_body(
    entity: Entity,
    record: Record,
    catalog: Catalog,
    current: Mapping[str, Any] | None = None,
    *,
    clear_blanks: bool = False,
) -> dict[str, Any]:
    """The body that writes ``record`` (a create when ``current`` is None, else an update
    of that item). Blanks are left out unless ``clear_blanks`` (a rollback), which clears them.
    Raises ``ValueProblem`` for a value Pipedrive cannot hold, or a field it has no place for."""
    values = {
        name: (None if is_blank(value) else (value or "").strip()) for name, value in record.items()
    }
    if not clear_blanks:
        values = {name: value for name, value in values.items() if value is not None}
    body = Body()
    handled: set[str] = set()
    for write in _WRITERS[entity]:
        handled |= write(body, values, catalog, current or {})
    for name, value in values.items():
        if name in handled:
            continue
        definition = catalog.custom_field(name)
        if definition is None:
            raise ValueProblem(f"Pipedrive has no {entity.value} field for '{name}'")
        body.custom[definition.code] = None if value is None else _custom_to(definition, value)
    if current is None and entity is Entity.CONTACTS:
        _name_a_person(body, values)
    parents = set(NOTE_PARENTS.values())
    if current is None and entity is Entity.NOTES and not body.values.keys() & parents:
        raise ValueProblem(
            "Pipedrive attaches every note to a person, an organization or a deal: give the "
            "note a contact, company or deal it is about"
        )
    return body.json()


Writer = Callable[[Body, Mapping[str, str | None], Catalog, Mapping[str, Any]], set[str]]


def _plain(entity: Entity) -> Writer:
    def write(
        body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
    ) -> set[str]:
        done = set()
        for ours, theirs in PLAIN.get(entity, {}).items():
            if ours in values:
                body.values[theirs] = values[ours] or ""
                done.add(ours)
        for ours, (theirs, whole) in NUMBERS.get(entity, {}).items():
            if ours in values:
                value = values[ours]
                body.values[theirs] = (
                    CLEARED_NUMBERS.get(theirs) if value is None else _number(ours, value, whole)
                )
                done.add(ours)
        return done

    return write


def _address(entity: Entity) -> Writer:
    name = ADDRESS_FIELDS[entity]

    def write(
        body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
    ) -> set[str]:
        ours = [n for n in ("address", *ADDRESS_PARTS) if n in values]
        if not ours:
            return set()
        existing = current.get(name) if isinstance(current.get(name), dict) else {}
        parts = {k: v for k, v in dict(existing or {}).items() if k != "value" and _text(v)}
        street = _address_from(existing).get("address")
        for field_name in ours:
            if field_name == "address":
                street = values[field_name]
            else:
                parts[ADDRESS_PARTS[field_name]] = values[field_name] or ""
        kept = {k: v for k, v in parts.items() if _text(v)}
        body.values[name] = {**parts, "value": street or _composed(kept)}
        return set(ours)

    return write


def _emails(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    email = values.get("email")
    if email is None:
        return {"email"} if "email" in values else set()
    others = [
        {**e, "primary": False}
        for e in current.get("emails") or ()
        if isinstance(e, dict) and normalize_key(str(e.get("value") or "")) != normalize_key(email)
    ]
    body.values["emails"] = [{"value": email, "primary": True, "label": EMAIL_LABEL}, *others]
    return {"email"}


def _phones(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    ours = [n for n in PHONE_LABELS if n in values]
    if not ours:
        return set()
    entries = [dict(p) for p in current.get("phones") or () if isinstance(p, dict)]
    for name in ours:
        found = _phone_entries(entries).get(name)
        entries = _with_contact(entries, found, values[name], PHONE_LABELS[name])
    body.values["phones"] = entries
    return set(ours)


def _industry(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    industry = catalog.standard("industry")
    if "industry" not in values or industry is None or not industry.options:
        return set()
    value = values["industry"]
    body.values["industry"] = None if value is None else industry.option_id(value)
    return {"industry"}


def _website(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    if "domain" not in values:
        return set()
    body.values["website"] = values["domain"]
    return {"domain"}


def _pipeline_and_stage(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    pipeline_id: int | None = None
    if values.get("pipeline"):
        pipeline_id = catalog.pipeline_id(values["pipeline"] or "")
        body.values["pipeline_id"] = pipeline_id
    stage = values.get("stage")
    if stage:
        current_pipeline = current.get("pipeline_id")
        within = pipeline_id or (current_pipeline if isinstance(current_pipeline, int) else None)
        body.values["stage_id"] = catalog.stage_id(stage, within)
    return {n for n in ("pipeline", "stage") if n in values}


def _name_a_person(body: Body, values: Mapping[str, str | None]) -> None:
    """Pipedrive shows people by name: one with neither first nor last name is named by email."""
    if not values.get("first_name") and not values.get("last_name") and values.get("email"):
        body.values["name"] = values["email"]


def _links(entity: Entity) -> Writer:
    """Link fields into their foreign keys: an id, or ``null`` to unlink (a rollback)."""

    def write(
        body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
    ) -> set[str]:
        done = set()
        for ours, theirs in FOREIGN_KEYS[entity].items():
            if ours not in values:
                continue
            value = values[ours]
            if value is not None and not value.isdigit():
                raise ValueProblem(f"{ours} '{value}' is not a Pipedrive id")
            body.values[theirs] = None if value is None else int(value)
            done.add(ours)
        return done

    return write


def _activity(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    """``done`` as a boolean, ``type`` as a type's key, ``priority`` as an option id."""
    done = set()
    if "done" in values:
        flag = values["done"]
        if flag not in (None, "true", "false"):
            raise ValueProblem(f"done '{flag}' is neither done nor open (true or false)")
        body.values["done"] = flag == "true"
        done.add("done")
    if "type" in values and catalog.activity_types:
        kind = values["type"]
        if kind is not None:
            body.values["type"] = catalog.activity_type(kind)
        done.add("type")
    priority = catalog.priority()
    if "priority" in values and priority is not None:
        level = values["priority"]
        body.values["priority"] = None if level is None else priority.option_id(level)
        done.add("priority")
    return done


def _note_date(
    body: Body, values: Mapping[str, str | None], catalog: Catalog, current: Mapping[str, Any]
) -> set[str]:
    """A note's date is its ``add_time`` (v1: ``YYYY-MM-DD HH:MM:SS``, UTC)."""
    if "date" not in values:
        return set()
    date = values["date"]
    if date is not None:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            raise ValueProblem(f"date '{date}' is not a date (YYYY-MM-DD)")
        body.values["add_time"] = f"{date} 00:00:00"
    return {"date"}


_WRITERS: dict[Entity, Sequence[Writer]] = {
    Entity.CONTACTS: (
        _plain(Entity.CONTACTS),
        _emails,
        _phones,
        _address(Entity.CONTACTS),
        _links(Entity.CONTACTS),
    ),
    Entity.COMPANIES: (
        _plain(Entity.COMPANIES),
        _website,
        _industry,
        _address(Entity.COMPANIES),
    ),
    Entity.DEALS: (_plain(Entity.DEALS), _pipeline_and_stage, _links(Entity.DEALS)),
    Entity.ACTIVITIES: (_plain(Entity.ACTIVITIES), _activity, _links(Entity.ACTIVITIES)),
    Entity.NOTES: (_plain(Entity.NOTES), _note_date, _links(Entity.NOTES)),
}
