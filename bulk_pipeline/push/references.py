"""References between records resolved to CRM ids, and records matched to what the CRM holds.

A record names the records it refers to by values from the file (a contact's company by domain
or name, a task's deal by its id or name). Those values are looked for first among the records
this pipeline staged (this import's, whose outcome is known, then earlier imports'), then in the
CRM. What they name becomes the record's link field (``company_crm_id``); a value that names
nothing, or names several records, is the line's error, with the value and what to do.

Records are matched to CRM records by their identity: a unique value (an email) by lookup; a
value narrowed by a reference (a deal's name at its company) by search and the found records'
links; ids from the source system and tasks' subjects never, since the CRM cannot tell them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bulk_pipeline.entities import ENTITY_SPECS, Entity, EntitySpec, Reference, normalize_key
from bulk_pipeline.outcomes import LineOutcome, PendingRecord, ReferenceMatch
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import CrmRecord, LinkStyle, Target

UNWRITTEN = (LineOutcome.PENDING, LineOutcome.FAILED)


@dataclass
class Resolved:
    """A chunk's records with their link fields set, and the ones whose references failed."""

    records: list[PendingRecord] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)
    """Reason by key: a reference that names nothing, or several records."""
    failed: dict[str, str] = field(default_factory=dict)
    """Reason by key: a reference to a record of this import that was not written."""


def _ref(theirs: str, key: str) -> str:
    return f"{theirs}:{key}"


REMEMBERED = 100_000
"""Reference values a push keeps the answers of (then it starts afresh): enough for the
companies of millions of contacts, bounded whatever their number."""


@dataclass
class KnownReferences:
    """Records reference values named, found written in staging or found in the CRM, kept from
    chunk to chunk of one entity's push, so each is looked for once, not per chunk: the records
    they name are of entities written before it, and a written record keeps its CRM id. A value
    that names nothing written yet is looked for again (another import may write it)."""

    staged: dict[tuple[Entity, str], list[ReferenceMatch]] = field(default_factory=dict)
    in_crm: dict[tuple[Entity, str, str], CrmRecord] = field(default_factory=dict)

    def resolve(
        self,
        store: StagingStore,
        entity: Entity,
        refs: Sequence[str],
        *,
        account: str,
        import_id: str,
    ) -> dict[str, list[ReferenceMatch]]:
        missing = [r for r in dict.fromkeys(refs) if (entity, r) not in self.staged]
        found = store.resolve(entity, missing, account=account, import_id=import_id)
        settled = {r: m for r, m in found.items() if m and all(match.crm_id for match in m)}
        if len(self.staged) + len(settled) > REMEMBERED:
            self.staged.clear()
        self.staged |= {(entity, r): m for r, m in settled.items()}
        return {r: m for r in refs if (m := self.staged.get((entity, r)) or found.get(r))}

    def look_up(
        self, target: Target, entity: Entity, keys: Sequence[str], by: str
    ) -> dict[str, CrmRecord]:
        missing = sorted({k for k in keys if (entity, by, k) not in self.in_crm})
        found = target.lookup(entity, missing, by=by) if missing else {}
        if len(self.in_crm) + len(found) > REMEMBERED:
            self.in_crm.clear()
        self.in_crm |= {(entity, by, k): record for k, record in found.items()}
        return {k: record for k in keys if (record := self.in_crm.get((entity, by, k)))}


def resolve_references(
    store: StagingStore,
    target: Target,
    entity: Entity,
    records: Sequence[PendingRecord],
    *,
    import_id: str,
    linked: frozenset[str],
    known: KnownReferences,
    planning: bool = False,
) -> Resolved:
    """Set each record's link fields from the values it refers by; see the module's text.

    ``linked``: the link fields the CRM writes (references it cannot link are left alone).
    ``known``: what earlier chunks of the push found. ``planning`` (a dry run): a reference to
    a record the import has yet to write links to the CRM id an earlier run wrote it to, else
    to ``new:<its key>``, since nothing was written."""
    spec = ENTITY_SPECS[entity]
    links: dict[str, dict[str, str]] = {r.key: {} for r in records}
    by_key = {r.key: r for r in records}
    resolved = Resolved()
    for reference in spec.references:
        if reference.link_field not in linked:
            continue
        wanted = {
            r.key: named for r in records if (named := reference.value_of(r.fields)) is not None
        }
        if not wanted:
            continue
        matches = known.resolve(
            store,
            reference.entity,
            [_ref(theirs, key) for _, theirs, key in wanted.values()],
            account=target.account,
            import_id=import_id,
        )
        in_crm = _look_up_in_crm(target, reference, list(wanted.values()), matches, known)
        for record_key, (ours, theirs, key) in wanted.items():
            found = _usable(matches.get(_ref(theirs, key), []))
            value = by_key[record_key].fields.get(ours, "")
            if len({m.key for m in found}) > 1:
                places = ", ".join(sorted({m.where for m in found}))
                resolved.invalid[record_key] = (
                    f"{ours} '{value}' names {len({m.key for m in found})} "
                    f"{reference.entity.value} ({places}); name one by a value that only it has"
                )
            elif planning and found and found[0].outcome is LineOutcome.PENDING:
                links[record_key][reference.link_field] = found[0].crm_id or f"new:{found[0].key}"
            elif found and found[0].outcome in UNWRITTEN:
                resolved.failed[record_key] = (
                    f"its {reference.name} ({found[0].where}) was not written"
                    + (f": {found[0].reason}" if found[0].reason else "")
                )
            elif found and found[0].crm_id:
                links[record_key][reference.link_field] = found[0].crm_id
            elif (theirs, key) in in_crm:
                links[record_key][reference.link_field] = in_crm[(theirs, key)].id
            else:
                resolved.invalid[record_key] = (
                    f"{ours} '{value}' names no {reference.name}: no {reference.entity.value} "
                    f"record with {theirs} '{value}' in this import or in the CRM. Add it to "
                    f"the import, correct the value, or clear it"
                )
    preference = target.capabilities.one_link.get(entity)
    for r in records:
        if r.key in resolved.invalid or r.key in resolved.failed:
            continue
        made = links[r.key] if preference is None else _first_link(spec, links[r.key], preference)
        resolved.records.append(
            PendingRecord(r.key, r.line, {**r.fields, **made}, r.crm_id, r.sheet)
        )
    return resolved


def _first_link(
    spec: EntitySpec, links: dict[str, str], preference: Sequence[str]
) -> dict[str, str]:
    """Of a record's resolved links, the one its CRM keeps: the first by preference."""
    by_name = {reference.name: reference.link_field for reference in spec.references}
    chosen = next((by_name[name] for name in preference if by_name[name] in links), None)
    return {} if chosen is None else {chosen: links[chosen]}


def _usable(matches: Sequence[ReferenceMatch]) -> list[ReferenceMatch]:
    """Staged records that stand for a CRM record: this import's (written or not), and earlier
    imports' that were written."""
    return [m for m in matches if m.outcome is not None or m.crm_id]


def _look_up_in_crm(
    target: Target,
    reference: Reference,
    wanted: Sequence[tuple[str, str, str]],
    matches: dict[str, list[ReferenceMatch]],
    known: KnownReferences,
) -> dict[tuple[str, str], CrmRecord]:
    """CRM records for the values staging does not know, by the field they name (never by an
    id from the source system, which the CRM does not hold)."""
    spec = ENTITY_SPECS[reference.entity]
    missing: dict[str, set[str]] = {}
    for _ours, theirs, key in wanted:
        identity = next((i for i in spec.identities if i.field == theirs), None)
        if identity is not None and not identity.matches_crm:
            continue
        if not _usable(matches.get(_ref(theirs, key), [])):
            missing.setdefault(theirs, set()).add(key)
    found: dict[tuple[str, str], CrmRecord] = {}
    for theirs, keys in missing.items():
        for key, record in known.look_up(target, reference.entity, sorted(keys), theirs).items():
            found[(theirs, key)] = record
    return found


def sendable(spec: EntitySpec, fields: dict[str, str], style: LinkStyle) -> dict[str, str]:
    """The fields the CRM stores as values: local fields never; link fields only where links
    are fields (FOREIGN_KEY, REFERENCE)."""
    dropped = set(spec.local)
    if style is LinkStyle.ASSOCIATION:
        dropped |= set(spec.link_fields)
    return {name: value for name, value in fields.items() if name not in dropped}


def links_of(fields: dict[str, str], spec: EntitySpec) -> dict[str, str]:
    """Link field -> CRM id of the records a record links to."""
    return {name: fields[name] for name in spec.link_fields if fields.get(name)}


def match_in_crm(
    target: Target, entity: Entity, records: Sequence[PendingRecord]
) -> dict[str, CrmRecord]:
    """The CRM records that records never written by this pipeline are, by key (see the
    module's text); records the CRM cannot tell are absent."""
    spec = ENTITY_SPECS[entity]
    by_lookup: dict[str, list[PendingRecord]] = {}
    by_search: dict[str, list[PendingRecord]] = {}
    for r in records:
        identified = spec.identify(r.fields)
        if identified is None or not identified[0].matches_crm:
            continue
        identity = identified[0]
        grouped = by_lookup if spec.finds_by_lookup(identity) else by_search
        grouped.setdefault(identity.field, []).append(r)
    current: dict[str, CrmRecord] = {}
    for by, looked_up in by_lookup.items():
        found = target.lookup(entity, [r.fields[by] for r in looked_up], by=by)
        for r in looked_up:
            record = found.get(normalize_key(r.fields[by]))
            if record is not None:
                current[r.key] = record
        absent = [r for r in looked_up if r.key not in current]
        current |= _placeholders(target, entity, by, absent)
    for by, searched in by_search.items():
        current |= _search_in_crm(target, entity, by, searched)
    return current


def _placeholders(
    target: Target, entity: Entity, by: str, records: Sequence[PendingRecord]
) -> dict[str, CrmRecord]:
    """Records a unique value identifies (a company's domain) that the CRM does not hold under
    it may be held under a later identity without that value: a company created by name from
    a contacts file's Company column is the company a companies file later gives with its
    domain. Such a record is matched (and given the value) rather than created twice; one
    that holds another value of ``by`` is another record."""
    spec = ENTITY_SPECS[entity]
    later = [
        i.field
        for i in spec.identities
        if i.field != by and i.matches_crm and spec.finds_by_lookup(i)
    ]
    matched: dict[str, CrmRecord] = {}
    for field_name in later:
        wanted = [
            r for r in records if r.key not in matched and spec.key_of(r.fields.get(field_name))
        ]
        if not wanted:
            continue
        found = target.lookup(entity, [str(r.fields[field_name]) for r in wanted], by=field_name)
        for r in wanted:
            record = found.get(normalize_key(str(r.fields[field_name])))
            if record is not None and not spec.key_of(record.fields.get(by)):
                matched[r.key] = record
    return matched


def _search_in_crm(
    target: Target, entity: Entity, by: str, records: Sequence[PendingRecord]
) -> dict[str, CrmRecord]:
    """Records named by a value that is not unique (a deal's name): the CRM records with the
    value that link where the record links (the same company), the first created of them."""
    spec = ENTITY_SPECS[entity]
    candidates = target.search(entity, [r.fields[by] for r in records], by)
    if not candidates:
        return {}
    links = _current_links(target, entity, candidates)
    found: dict[str, CrmRecord] = {}
    for r in records:
        wanted = links_of(r.fields, spec)
        same = [
            c
            for c in candidates
            if normalize_key(c.fields.get(by) or "") == normalize_key(r.fields[by])
            and all(
                wanted.get(name) in links[c.id].get(name, set())
                if wanted.get(name)
                else not links[c.id].get(name)
                for name in _slot_links(spec)
            )
        ]
        if same:
            found[r.key] = min(same, key=lambda c: (len(c.id), c.id))
    return found


def _slot_links(spec: EntitySpec) -> list[str]:
    """Link fields of the references that narrow the entity's identity (a deal's company)."""
    slot_fields = {name for identity in spec.identities for slot in identity.slots for name in slot}
    return [
        reference.link_field
        for reference in spec.references
        if any(ours in slot_fields for ours, _ in reference.by)
    ]


def _current_links(
    target: Target, entity: Entity, records: Sequence[CrmRecord]
) -> dict[str, dict[str, set[str]]]:
    """Link field -> linked ids of CRM records (read from their fields, or from the CRM's
    associations), for the references that narrow the entity's identity."""
    spec = ENTITY_SPECS[entity]
    current: dict[str, dict[str, set[str]]] = {r.id: {} for r in records}
    if target.capabilities.links is not LinkStyle.ASSOCIATION:
        for r in records:
            current[r.id] = {n: {v} for n in _slot_links(spec) if (v := r.fields.get(n))}
        return current
    for reference in spec.references:
        if reference.link_field not in _slot_links(spec):
            continue
        linked = target.read_links(entity, [r.id for r in records], reference.entity)
        for record_id, ids in linked.items():
            if ids and record_id in current:
                current[record_id][reference.link_field] = set(ids)
    return current
