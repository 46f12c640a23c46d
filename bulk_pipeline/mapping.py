"""From the file's own headers to our field names: built-in aliases, overridden by a mapping file.

Header matching ignores case, spaces, punctuation and accents ("E-mail", "e_mail" and "EMAIL" are
one header), because exports from different tools spell the same column differently. A column
that maps to no field is never dropped silently: it is listed in ``MappedTable.unmapped`` for the
report, and it is not sent.

The mapping file is YAML, one section per entity::

    contacts:
      "E-Mail Adresse": email
      "Notes": null          # deliberately ignored (still listed as ignored)
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import polars.selectors as cs
import yaml

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.errors import UserInputError
from bulk_pipeline.ingest import LINE_COLUMN, RawTable

MappingSpec = dict[str, dict[str, str | None]]
"""Per entity name: source column -> our field, or None to ignore the column."""

_COMPANY_DOMAIN_ALIASES = (
    "Company Domain",
    "Company Domain Name",
    "Company Website",
    "Company Web Site",
    "Company URL",
    "Organization Domain",
    "Organization Website",
    "Organisation Website",
    "Account Domain",
    "Account Website",
)
_COMPANY_NAME_ALIASES = (
    "Company",
    "Company Name",
    "Organization",
    "Organisation",
    "Organization Name",
    "Account",
    "Account Name",
)
_CONTACT_EMAIL_ALIASES = (
    "Contact Email",
    "Contact E-mail",
    "Contact Email Address",
    "Person Email",
    "Email",
    "E-mail",
    "Email Address",
)
_DEAL_ID_ALIASES = ("Deal ID", "Deal Number", "Deal No", "Opportunity ID")
_DEAL_NAME_ALIASES = ("Deal", "Deal Name", "Opportunity", "Opportunity Name")
_PARENT_ALIASES: dict[str, tuple[str, ...]] = {
    "contact_email": _CONTACT_EMAIL_ALIASES,
    "company_domain": _COMPANY_DOMAIN_ALIASES,
    "company": _COMPANY_NAME_ALIASES,
    "deal_id": _DEAL_ID_ALIASES,
    "deal_name": _DEAL_NAME_ALIASES,
}
"""Columns saying which contact, company and deal an activity or note is about."""

_ADDRESS_ALIASES: dict[str, tuple[str, ...]] = {
    "address": ("Address", "Street", "Street Address", "Address 1", "Address Line 1", "Strasse"),
    "city": ("City", "Town", "Ort", "Ville"),
    "state": ("State", "Province", "Region", "State/Region", "State/Province", "County"),
    "zip": ("Zip", "Zip Code", "Postal Code", "Postcode", "Post Code", "PLZ", "Postleitzahl"),
    "country": ("Country", "Country/Region", "Country Code", "Land", "Pays"),
}

ALIASES: dict[Entity, dict[str, tuple[str, ...]]] = {
    Entity.CONTACTS: {
        "email": (
            "E-mail",
            "Email Address",
            "E-mail Address",
            "e_mail",
            "Mail",
            "Email 1",
            "Primary Email",
            "Work Email",
            "Business Email",
            "E-Mail Adresse",
            "Courriel",
            "Correo",
        ),
        "first_name": (
            "First Name",
            "Firstname",
            "First",
            "Given Name",
            "Forename",
            "Vorname",
            "Prénom",
            "Nombre",
        ),
        "last_name": (
            "Last Name",
            "Lastname",
            "Last",
            "Surname",
            "Family Name",
            "Nachname",
            "Nom de famille",
            "Nom",
            "Apellido",
            "Apellidos",
        ),
        "phone": (
            "Phone",
            "Phone Number",
            "Tel",
            "Telephone",
            "Work Phone",
            "Business Phone",
            "Office Phone",
            "Telefon",
            "Teléfono",
        ),
        "mobile_phone": ("Mobile", "Mobile Phone", "Mobile Number", "Cell", "Cell Phone", "Handy"),
        "company": (
            "Company",
            "Company Name",
            "Organization",
            "Organisation",
            "Organization Name",
            "Employer",
            "Account Name",
            "Firma",
            "Société",
            "Entreprise",
            "Empresa",
            "Unternehmen",
        ),
        "company_domain": _COMPANY_DOMAIN_ALIASES,
        "job_title": ("Job Title", "Title", "Position", "Role", "Job Role"),
        "website": ("Website", "URL", "Web", "Homepage", "Website URL", "Web Site"),
        **_ADDRESS_ALIASES,
        "lifecycle_stage": ("Lifecycle Stage", "Lifecycle"),
        "date_of_birth": ("Date of Birth", "Birthday", "Birth Date", "Birthdate", "DOB"),
    },
    Entity.COMPANIES: {
        "name": (
            "Name",
            "Company",
            "Company Name",
            "Organization",
            "Organisation",
            "Organization Name",
            "Account",
            "Account Name",
            "Business Name",
            "Raison sociale",
            "Société",
            "Entreprise",
            "Empresa",
            "Unternehmen",
        ),
        "domain": ("Domain", "Company Domain", "Company Domain Name", "Domain Name"),
        "website": ("Website", "URL", "Web", "Homepage", "Website URL", "Web Site"),
        "phone": ("Phone", "Phone Number", "Tel", "Telephone", "Company Phone"),
        "industry": ("Industry", "Sector", "Vertical"),
        **_ADDRESS_ALIASES,
        "description": ("Description", "About", "Company Description", "Summary"),
        "number_of_employees": (
            "Employees",
            "Number of Employees",
            "No. of Employees",
            "Employee Count",
            "Headcount",
        ),
        "annual_revenue": ("Annual Revenue", "Revenue", "Turnover"),
    },
    Entity.DEALS: {
        "external_id": (*_DEAL_ID_ALIASES, "ID", "External ID"),
        "name": ("Deal Name", "Deal", "Name", "Opportunity", "Opportunity Name", "Title"),
        "amount": ("Amount", "Deal Amount", "Deal Value", "Value"),
        "stage": ("Stage", "Deal Stage", "Sales Stage"),
        "pipeline": ("Pipeline", "Deal Pipeline"),
        "close_date": ("Close Date", "Expected Close Date", "Closing Date"),
        "description": ("Description", "Deal Description", "Summary"),
        "owner": ("Owner", "Deal Owner", "Owner Email", "Deal Owner Email"),
        "company_domain": _COMPANY_DOMAIN_ALIASES,
        "company": _COMPANY_NAME_ALIASES,
        "contact_email": _CONTACT_EMAIL_ALIASES,
    },
    Entity.ACTIVITIES: {
        "external_id": ("Activity ID", "Task ID", "ID", "External ID"),
        "subject": ("Subject", "Title", "Task", "Activity", "Task Title", "Activity Subject"),
        "type": ("Type", "Activity Type", "Task Type", "Kind"),
        "due_date": ("Due Date", "Due", "Due On", "Date", "Activity Date", "Scheduled Date"),
        "done": ("Done", "Completed", "Complete", "Is Done", "Status"),
        "priority": ("Priority",),
        "body": ("Body", "Notes", "Note", "Description", "Details"),
        **_PARENT_ALIASES,
    },
    Entity.NOTES: {
        "external_id": ("Note ID", "ID", "External ID"),
        "body": ("Body", "Note", "Notes", "Content", "Text", "Comment"),
        "date": ("Date", "Created", "Created At", "Created Date", "Timestamp", "Note Date"),
        **_PARENT_ALIASES,
    },
}
"""Headers people use for our fields, per entity (compared with ``header_key``)."""

DEAL_NAME_HEADERS = ("Deal Name", "Deal", "Opportunity", "Opportunity Name")
"""Deal-name headers that no other entity uses, unlike a bare "Name"."""
DEAL_DETAIL_FIELDS = ("amount", "stage", "close_date", "pipeline")
COMPANY_NAME_HEADERS = ALIASES[Entity.COMPANIES]["name"]
COMPANY_LOCATION_FIELDS = ("domain", "website")


class MappingError(UserInputError, ValueError):
    """A mapping file (or mapping) that cannot be applied; the message says where and why."""


REJECTED_REPORT_COLUMNS = frozenset({"line", "reason"})
REJECTED_PLACE_COLUMNS = frozenset({"sheet", "entity"})
"""Also added by rejected.csv, for imports of several sheets or entities."""
"""Added by rejected.csv; a corrected rejected.csv imports as it is, without them."""


@dataclass
class MappedTable:
    """A file's rows under our field names, and what happened to each source column."""

    frame: pl.DataFrame
    """Our field names (only the entity's fields that were found) as ``pl.String``, + ``_line``."""
    column_map: dict[str, str]
    """Our field -> the source column it came from."""
    unmapped: list[str]
    """Source columns that feed no field (including ``ignored``): reported, never sent."""
    ignored: list[str] = field(default_factory=list)
    """The subset of ``unmapped`` that the mapping file deliberately ignores (``null``)."""


def custom_fields(entity: Entity, accepted: Collection[str]) -> list[str]:
    """The CRM's own fields among ``accepted``: neither fields of ours nor link fields (which
    only the push fills, never a column)."""
    spec = ENTITY_SPECS[entity]
    ours = {*spec.fields, *spec.link_fields}
    return [name for name in accepted if name not in ours]


def keep_fields(
    mapped: MappedTable, entity: Entity, accepted: Collection[str], columns: Sequence[str]
) -> MappedTable:
    """Only the fields the CRM has a place for (the entity's identities, required fields, fields
    kept only in staging and the fields references name other records by, always): the columns
    that fed the others become unmapped, in the file's ``columns`` order, unless ``accepted``
    names a custom field of the CRM like the field or its column (compared as headers are),
    which then holds them. Applied after normalizing, so a website still gives a company its
    domain."""
    spec = ENTITY_SPECS[entity]
    keep = (
        set(accepted)
        | set(spec.required)
        | {identity.field for identity in spec.identities}
        | set(spec.local)
        | {ours for reference in spec.references for ours, _ in reference.by}
    )
    custom = {header_key(name): name for name in custom_fields(entity, accepted)}
    dropped: list[str] = []
    moved: dict[str, str] = {}
    for name, column in mapped.column_map.items():
        if name in keep:
            continue
        target = custom.get(header_key(name)) or custom.get(header_key(column))
        if target is None or target in mapped.column_map or target in moved.values():
            dropped.append(name)
        else:
            moved[name] = target
    if not dropped and not moved:
        return mapped
    unmapped = set(mapped.unmapped) | {mapped.column_map[name] for name in dropped}
    return MappedTable(
        frame=mapped.frame.drop(dropped).rename(moved),
        column_map={moved.get(n, n): c for n, c in mapped.column_map.items() if n not in dropped},
        unmapped=[column for column in columns if column in unmapped],
        ignored=mapped.ignored,
    )


def header_key(header: str) -> str:
    """The comparable form of a header: accents, case, spaces and punctuation removed."""
    decomposed = unicodedata.normalize("NFKD", header)
    return "".join(ch for ch in decomposed.casefold() if ch.isalnum())


_ALIAS_INDEX: dict[Entity, dict[str, str]] = {
    entity: {
        **{header_key(alias): name for name, aliases in fields.items() for alias in aliases},
        **{header_key(name): name for name in ENTITY_SPECS[entity].fields},
    }
    for entity, fields in ALIASES.items()
}


def load_mapping(path: Path) -> MappingSpec:
    """Read and check a YAML mapping file.

    Raises:
        MappingError: the file is missing or not valid YAML, a section is not an entity, or a
            column maps to something that is not a field of that entity.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc}).") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError(
            f"{path}: {where}not valid YAML ({problem}). Write one section per entity, e.g.\n"
            'contacts:\n  "E-Mail Adresse": email\n  "Notes": null'
        ) from exc
    if document is None:
        return {}
    return check_mapping(document, str(path))


def check_mapping(document: object, source: str = "mapping") -> MappingSpec:
    """Validate a mapping given as data (what ``load_mapping`` reads from YAML)."""
    if not isinstance(document, Mapping):
        raise MappingError(
            f"{source}: expected sections named after entities "
            f"({', '.join(e.value for e in Entity)}), found a {type(document).__name__}."
        )
    result: MappingSpec = {}
    for section, columns in document.items():
        entity = _entity(section, source)
        if columns is None:
            result[entity.value] = {}
            continue
        if not isinstance(columns, Mapping):
            raise MappingError(
                f"{source}: section '{section}' must map source columns to fields "
                f'(e.g. "E-Mail Adresse": email), found a {type(columns).__name__}.'
            )
        fields = ENTITY_SPECS[entity].fields
        checked: dict[str, str | None] = {}
        for column, target in columns.items():
            if target is not None and (not isinstance(target, str) or target not in fields):
                hint = difflib.get_close_matches(str(target), fields, n=1)
                suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
                raise MappingError(
                    f"{source}: {entity.value}: column '{column}' maps to '{target}', which is "
                    f"not a {entity.value} field.{suggestion} Fields: {', '.join(fields)}; use "
                    "null to ignore the column."
                )
            checked[str(column)] = target
        result[entity.value] = checked
    return result


def _entity(section: object, source: str) -> Entity:
    try:
        return Entity(str(section).strip().lower())
    except ValueError:
        raise MappingError(
            f"{source}: unknown section '{section}'; sections are entities: "
            f"{', '.join(e.value for e in Entity)}."
        ) from None


def map_columns(
    raw: RawTable,
    entity: Entity,
    mapping: Mapping[str, Mapping[str, str | None]] | None = None,
    *,
    custom: Collection[str] = (),
) -> MappedTable:
    """Rename the source columns that feed the entity's fields; list the others as unmapped.

    Precedence: the mapping file, then a header spelled exactly like a field ("first_name"),
    then the built-in aliases (which include each field name in any case and punctuation). When
    two columns claim one field, the first column wins and the other is listed as unmapped.
    ``custom`` are the CRM's own extra fields (custom fields): a column that feeds none of ours
    and is named like one of them (compared as headers are) is kept, under its name.
    """
    explicit = dict(check_mapping(mapping or {}, "mapping").get(entity.value, {}))
    explicit_by_key = {header_key(column): target for column, target in explicit.items()}
    columns = [name for name in raw.frame.columns if name != LINE_COLUMN]
    fields = ENTITY_SPECS[entity].fields
    aliases = _ALIAS_INDEX[entity]

    column_map: dict[str, str] = {}
    ignored: list[str] = []
    claimed: set[str] = set()

    def claim(target: str, column: str) -> None:
        if target not in column_map and column not in claimed:
            column_map[target] = column
            claimed.add(column)

    for column in columns:
        if column in explicit or header_key(column) in explicit_by_key:
            target = explicit[column] if column in explicit else explicit_by_key[header_key(column)]
            if target is None:
                ignored.append(column)
                claimed.add(column)
            else:
                claim(target, column)
    for column in columns:
        if column in fields:
            claim(column, column)
    for column in columns:
        target = aliases.get(header_key(column))
        if target is not None:
            claim(target, column)

    ordered = {name: column_map[name] for name in fields if name in column_map}
    by_key = {header_key(name): name for name in custom_fields(entity, custom)}
    for column in columns:
        target = by_key.get(header_key(column))
        if column not in claimed and target is not None and target not in ordered:
            ordered[target] = column
    used = set(ordered.values())
    frame = raw.frame.select(
        *(cs.by_name(column).cast(pl.String).alias(name) for name, column in ordered.items()),
        pl.col(LINE_COLUMN),
    )
    report_columns = (
        REJECTED_REPORT_COLUMNS | REJECTED_PLACE_COLUMNS
        if set(columns) >= REJECTED_REPORT_COLUMNS
        else set()
    )
    return MappedTable(
        frame=frame,
        column_map=ordered,
        unmapped=[c for c in columns if c not in used and c not in report_columns],
        ignored=ignored,
    )


def infer_entity(
    columns: Sequence[str], hint: Entity | None = None, mapping: MappingSpec | None = None
) -> Entity | None:
    """Which entity a file holds; None when neither its labels nor its headers make it clear.

    A hint from a sheet name or JSON key wins. Then the mapping file: its only entity section, or
    the only section that names one of the file's columns. Otherwise the headers: an email column
    means contacts; a deal name, or two of amount/stage/close date/pipeline, means deals; a
    company name with a domain or website (and no email) means companies. When two of these
    hold, the answer is None.
    """
    if hint is not None:
        return hint
    keys = {header_key(column) for column in columns if column != LINE_COLUMN}
    from_mapping = _entity_from_mapping(mapping or {}, keys)
    if from_mapping is not None:
        return from_mapping

    def has(entity: Entity, name: str) -> bool:
        return any(_ALIAS_INDEX[entity].get(key) == name for key in keys)

    has_email = has(Entity.CONTACTS, "email")
    deal_name = any(header_key(alias) in keys for alias in DEAL_NAME_HEADERS)
    deal_details = sum(has(Entity.DEALS, name) for name in DEAL_DETAIL_FIELDS)
    company_name = any(header_key(alias) in keys for alias in COMPANY_NAME_HEADERS)
    company_site = any(has(Entity.COMPANIES, name) for name in COMPANY_LOCATION_FIELDS)

    candidates: list[Entity] = []
    if has_email:
        candidates.append(Entity.CONTACTS)
    if deal_name or deal_details >= 2:
        candidates.append(Entity.DEALS)
    if company_name and company_site and not has_email:
        candidates.append(Entity.COMPANIES)
    return candidates[0] if len(candidates) == 1 else None


def _entity_from_mapping(mapping: MappingSpec, header_keys: set[str]) -> Entity | None:
    """The entity a mapping file was written for: its only section, or the only section whose
    columns the file has."""
    sections = [Entity(name) for name in mapping]
    if len(sections) == 1:
        return sections[0]
    used = [
        entity
        for entity in sections
        if any(header_key(column) in header_keys for column in mapping[entity.value])
    ]
    return used[0] if len(used) == 1 else None
