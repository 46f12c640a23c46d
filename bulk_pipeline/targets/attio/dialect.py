"""Attio REST v2 as a dialect: its requests, its answers, its budget.

What Attio needs that a loop of POSTs does not give:

- records hold typed values; which attribute a field goes to is found in the workspace
  (``attributes.py``), and each value is checked before it is sent (``values.py``): a value the
  attribute cannot take fails its record, naming the field, without a call;
- people and companies are created by POST, which Attio refuses for a unique value (email,
  domain) that exists: a first import needs no lookup, a record that exists is never overwritten
  by a create, and the runner settles refusals and lost answers by reading the keys back.
  ``upsert`` asserts the records it did not find on the unique attribute (PUT, safe to repeat)
  and patches those it found;
- deals have no unique attribute: they are found through a match index by name (``index.py``);
- links are record references: a person's company, a deal's company and people (``attributes.py``),
  written, compared and restored like the other values; a task's linked records
  (``tasks.py``); a note's one parent (``notes.py``);
- updates PATCH only the changed values: a multiselect attribute (phone numbers, emails,
  domains) gets our value added in front, nothing removed; a rollback PUTs the attribute back as
  it was (the value the import added removed);
- no batch writes: one record per call, several calls in flight, paced by the budget;
- deletes are permanent.

Limits: 100 reads and 25 writes per second, separately (``query`` listings are reads), answered
429 with ``Retry-After`` as an HTTP date. Attio sends no rate-limit headers: a 429 teaches the
window the limit in force (Attio lowers it during incidents).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bulk_pipeline.entities import ENTITY_SPECS, Entity, normalize_key
from bulk_pipeline.errors import CrmRefused, TargetConfigError, TransientError, UserInputError
from bulk_pipeline.targets.attio import notes as note_parents
from bulk_pipeline.targets.attio import tasks as task_fields
from bulk_pipeline.targets.attio.attributes import (
    CHOICE_TYPES,
    OBJECTS,
    PLACES,
    Attribute,
    Choice,
    Workspace,
    place_fields,
)
from bulk_pipeline.targets.attio.calls import WRITE, Calls, error_code
from bulk_pipeline.targets.attio.index import NameIndex, first_created
from bulk_pipeline.targets.attio.notes import NoteCalls
from bulk_pipeline.targets.attio.tasks import TaskCalls
from bulk_pipeline.targets.attio.values import (
    Value,
    ValueProblem,
    active,
    composites,
    read_record,
    restored_list,
    text_of,
    write_values,
)
from bulk_pipeline.targets.base import (
    BatchResult,
    Capabilities,
    CreateResult,
    CrmList,
    CrmRecord,
    DeleteKind,
    Dialect,
    Estimate,
    Failed,
    FailureKind,
    Item,
    LinkStyle,
    NoteParent,
    Record,
    Work,
    Written,
)
from bulk_pipeline.targets.http.exchange import (
    PREFLIGHT_SECONDS,
    ApiRequest,
    Exchange,
    Operation,
    Pause,
    Verdict,
)
from bulk_pipeline.targets.http.limits import Budget, RollingWindow

READS_PER_SECOND = 100
WRITES_PER_SECOND = 25
LOOKUP_BATCH = 50
"""Keys or ids per query (its filter is one ``$or`` or ``$in`` of them)."""
PAGE = 500
CONCURRENCY = 8
"""Writes in flight: enough to use the write limit at the latency of a distant API."""
HELD_RECORDS = 20_000
"""Records whose names and locations are remembered from their last read (an update of a first
name sends the last name it keeps)."""
FILTER_PROPERTY = {"email-address": "email_address", "domain": "domain", "text": "value"}
"""The property of a key attribute's values a lookup compares."""

CAPABILITIES = Capabilities(
    entities=frozenset(Entity),
    batch_size=1,
    lookup_batch_size=LOOKUP_BATCH,
    concurrency=CONCURRENCY,
    refuses_duplicate_keys=frozenset({Entity.CONTACTS, Entity.COMPANIES}),
    native_upsert=frozenset({Entity.CONTACTS, Entity.COMPANIES}),
    delete=DeleteKind.PERMANENT,
    links=LinkStyle.REFERENCE,
    note_needs_parent=True,
    lists=True,
    one_link={Entity.NOTES: note_parents.PARENTS},
)
FIELDS_APART = {Entity.ACTIVITIES: task_fields.FIELDS, Entity.NOTES: note_parents.FIELDS}
"""Our fields of the entities Attio keeps apart from its objects' records: tasks and notes."""


def attio_budget() -> Budget:
    """Reads and writes per second, each in its own window (Attio's documented limits)."""
    reads = RollingWindow(
        "read requests per second", READS_PER_SECOND, 1.0, learn_from_refusals=True
    )
    writes = RollingWindow(
        "write requests per second", WRITES_PER_SECOND, 1.0, learn_from_refusals=True
    )
    return Budget({"*": (reads,), WRITE: (writes,)})


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.casefold()).strip("_")
    return slug if slug[:1].isalpha() else f"list_{slug}"


class AttioDialect(Dialect):
    """Every Attio call sequence as an operation; each write handles one record."""

    capabilities = CAPABILITIES

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.calls = Calls(exchange)
        self._workspaces: dict[Entity, Workspace] = {}
        self._members: dict[str, str] | None = None
        self._held: OrderedDict[str, dict[str, Value]] = OrderedDict()
        self._lock = threading.Lock()
        self._deals = NameIndex(ENTITY_SPECS[Entity.DEALS].search_field)
        self._apart: dict[Entity, TaskCalls | NoteCalls] = {
            Entity.ACTIVITIES: TaskCalls(self.calls),
            Entity.NOTES: NoteCalls(self.calls),
        }

    # plumbing -------------------------------------------------------------------------------

    def _query(self, path: str, filter_: Mapping[str, Any] | None) -> Operation[list[Any]]:
        """Every row of a ``.../query`` listing (a read), page after page."""
        rows: list[Any] = []
        while True:
            body: dict[str, Any] = {"limit": PAGE, "offset": len(rows)}
            if filter_:
                body["filter"] = filter_
            outcome = yield from self.calls.send(ApiRequest("POST", path, json=body))
            page = self.calls.body(outcome).get("data") or []
            rows += page
            if len(page) < PAGE:
                return rows

    def _remember(self, workspace: Workspace, data: Mapping[str, Any]) -> CrmRecord:
        """A record from an answer; its names and locations kept for later updates."""
        record = read_record(workspace, data)
        with self._lock:
            self._held[record.id] = composites(workspace, data)
            self._held.move_to_end(record.id)
            while len(self._held) > HELD_RECORDS:
                self._held.popitem(last=False)
        if workspace.entity is Entity.DEALS:
            self._deals.wrote(record.id, record)
        return record

    def _forget(self, entity: Entity, record_id: str) -> None:
        with self._lock:
            self._held.pop(record_id, None)
        if entity is Entity.DEALS:
            self._deals.wrote(record_id, None)

    # the workspace ----------------------------------------------------------------------------

    def workspace(self, entity: Entity) -> Operation[Workspace]:
        """The object's attributes, where our fields go, the choices of its selects and
        statuses, and the members an owner can be; asked once per target."""
        known = self._workspaces.get(entity)
        if known is not None:
            return known
        object_slug = OBJECTS[entity]
        object_ids = yield from self.calls.objects()
        listed = yield from self.calls.get(f"/v2/objects/{object_slug}/attributes")
        attributes = [Attribute.from_api(a) for a in listed or [] if not a.get("is_archived")]
        slots = place_fields(entity, attributes, object_ids)
        for name, slot in list(slots.items()):
            attribute = slot.attribute
            if attribute.type in CHOICE_TYPES:
                kind, key = (
                    ("statuses", "status_id")
                    if attribute.type == "status"
                    else (
                        "options",
                        "option_id",
                    )
                )
                found = yield from self.calls.get(
                    f"/v2/objects/{object_slug}/attributes/{attribute.slug}/{kind}"
                )
                choices = tuple(
                    Choice(str(c["id"][key]), str(c["title"]))
                    for c in found or []
                    if not c.get("is_archived")
                )
                slots[name] = replace(slot, attribute=replace(attribute, choices=choices))
        members: dict[str, str] = {}
        if any(slot.attribute.type == "actor-reference" for slot in slots.values()):
            members = yield from self._workspace_members()
        workspace = Workspace(entity, tuple(attributes), slots, members)
        self._workspaces[entity] = workspace
        return workspace

    def _workspace_members(self) -> Operation[dict[str, str]]:
        if self._members is None:
            found = yield from self.calls.get("/v2/workspace_members")
            self._members = {
                str(m["email_address"]).casefold(): str(m["id"]["workspace_member_id"])
                for m in found or []
            }
        return self._members

    def fields(self, entity: Entity) -> Operation[frozenset[str]]:
        if entity in FIELDS_APART:
            return FIELDS_APART[entity]
        workspace = yield from self.workspace(entity)
        return frozenset(workspace.slots)

    def unmapped(self, entity: Entity, record: Record) -> list[str]:
        """Fields that are not ours, or that the workspace (once asked) has no place for."""
        if entity in FIELDS_APART:
            return [name for name in record if name not in FIELDS_APART[entity]]
        workspace = self._workspaces.get(entity)
        return [
            name
            for name in record
            if name not in PLACES[entity] or (workspace is not None and name not in workspace.slots)
        ]

    def check(self) -> Operation[None]:
        request = ApiRequest("GET", "/v2/self", patience=PREFLIGHT_SECONDS)
        body = self.calls.body((yield from self.calls.send(request)))
        if body.get("active") is False:
            raise TargetConfigError(
                f"the CRM at {self.exchange.where} says the access token is not active; create "
                "a new one in Attio's developer settings"
            )

    def estimate(self, entity: Entity, work: Work) -> Estimate:
        """Records are read 50 to a query; tasks and notes one by one, and a task whose links
        change is read before its update."""
        if entity in FIELDS_APART:
            updates = work.updates * (2 if entity is Entity.ACTIVITIES else 1)
            requests = work.lookups + work.reads + work.creates + updates
            return Estimate(requests=requests, units=requests, unit="requests")
        reads = math.ceil(work.lookups / LOOKUP_BATCH) + math.ceil(work.reads / LOOKUP_BATCH)
        requests = reads + work.creates + work.updates
        return Estimate(requests=requests, units=requests, unit="requests")

    # reads ------------------------------------------------------------------------------------

    def _records_path(self, workspace: Workspace, suffix: str = "") -> str:
        return f"/v2/objects/{workspace.object}/records{suffix}"

    def read(self, entity: Entity, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        apart = self._apart.get(entity)
        if apart is not None:
            return (yield from apart.read(ids))
        workspace = yield from self.workspace(entity)
        rows = yield from self._query(
            self._records_path(workspace, "/query"), {"record_id": {"$in": list(ids)}}
        )
        return {record.id: record for record in (self._remember(workspace, r) for r in rows)}

    def lookup(
        self, entity: Entity, values: Sequence[str], by: str
    ) -> Operation[dict[str, CrmRecord]]:
        """People and companies by their unique attribute; deals by the match index; tasks and
        notes from a listing (the first created per value). A field Attio cannot filter on finds
        nothing (the records are created)."""
        apart = self._apart.get(entity)
        if apart is not None:
            listed = yield from apart.search(values, by)
            return first_created(listed, by)
        workspace = yield from self.workspace(entity)
        wanted = {normalize_key(v) for v in values if v.strip()}
        if entity not in CAPABILITIES.refuses_duplicate_keys:
            index = yield from self._deal_index(workspace)
            return {key: index[key] for key in wanted if key in index}
        key_field = by
        slot = workspace.slots.get(key_field)
        if key_field == ENTITY_SPECS[entity].key_field and (
            slot is None or slot.attribute.type not in FILTER_PROPERTY
        ):
            raise TargetConfigError(
                f"Attio's {workspace.object} have no unique attribute for {key_field} "
                "(email_addresses, domains) in this workspace"
            )
        if slot is None or slot.attribute.type not in FILTER_PROPERTY:
            return {}
        attribute = slot.attribute
        prop = FILTER_PROPERTY[attribute.type]
        condition = [
            {attribute.slug: {prop: {"$eq": v.strip().lower() if prop != "value" else v}}}
            for v in values
            if v.strip()
        ]
        rows = yield from self._query(self._records_path(workspace, "/query"), {"$or": condition})
        found: dict[str, CrmRecord] = {}
        for row in rows:
            record = self._remember(workspace, row)
            held = [
                text
                for value in active(row.get("values") or {}, attribute.slug)
                if (text := text_of(workspace, attribute, value, None)) is not None
            ]
            for text in held:
                key = normalize_key(text)
                if key in wanted and key not in found:
                    others = tuple(t for t in held if t != text)
                    found[key] = replace(
                        record,
                        fields={**record.fields, key_field: text},
                        also={**record.also, key_field: others},
                    )
        return found

    def search(self, entity: Entity, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        """Every deal with one of the names, from the match index; people and companies by
        their unique attribute (one each); tasks and notes from a listing."""
        apart = self._apart.get(entity)
        if apart is not None:
            return (yield from apart.search(values, by))
        workspace = yield from self.workspace(entity)
        wanted = {normalize_key(v) for v in values if v.strip()}
        if entity in CAPABILITIES.refuses_duplicate_keys:
            found = yield from self.lookup(entity, values, by)
            return list(found.values())
        yield from self._deal_index(workspace)
        return self._deals.named(wanted)

    def _deal_index(self, workspace: Workspace) -> Operation[dict[str, CrmRecord]]:
        """The match index, listed again when stale (others wait while one target lists)."""
        index = self._deals
        while not index.fresh():
            started = index.start_listing()
            if started is None:
                yield Pause(0.05)
                continue
            listed: dict[str, CrmRecord] | None = None
            try:
                rows = yield from self._query(self._records_path(workspace, "/query"), None)
                listed = {r.id: r for r in (read_record(workspace, row) for row in rows)}
            finally:
                index.listed(listed, started)
        return index.by_key()

    # writes -----------------------------------------------------------------------------------

    def _values(
        self, workspace: Workspace, item: Item, *, held: Mapping[str, Value] | None = None
    ) -> dict[str, list[Value]] | Failed:
        try:
            return write_values(workspace, item.record, held=held)
        except ValueProblem as problem:
            return Failed(item.index, FailureKind.INVALID, str(problem))

    def create(self, entity: Entity, items: Sequence[Item]) -> Operation[CreateResult]:
        """POST each record; a unique value that exists is reported as ``conflicted`` (the
        runner reads it), a lost answer as ``unconfirmed``; never resent blindly."""
        apart = self._apart.get(entity)
        if apart is not None:
            return (yield from apart.create(items))
        workspace = yield from self.workspace(entity)
        result = CreateResult()
        for item in items:
            values = self._values(workspace, item)
            if isinstance(values, Failed):
                result.failed.append(values)
                continue
            missing = workspace.required_unfilled(set(values))
            if missing:
                titles = ", ".join(f"{a.title} ({a.slug})" for a in missing)
                result.failed.append(
                    Failed(
                        item.index,
                        FailureKind.INVALID,
                        f"Attio needs {titles} for new {workspace.object}; add a column for it "
                        "or a default value in Attio",
                    )
                )
                continue
            request = ApiRequest(
                "POST",
                self._records_path(workspace),
                json={"data": {"values": values}},
                kind=WRITE,
                idempotent=False,
            )
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.AMBIGUOUS:
                result.unconfirmed.append(item)
                self._deals.invalidate()
            elif outcome.verdict is Verdict.OK:
                record = self._remember(workspace, self.calls.body(outcome)["data"])
                result.successful.append(Written(item.index, record.id, created=True))
            elif error_code(outcome) == "uniqueness_conflict":
                result.conflicted.append(item)
            else:
                result.failed.append(self.calls.failed(item.index, outcome, workspace))
        return result

    def upsert(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Create or update by the unique attribute, the keys read first (reads are plentiful):
        a record absent is asserted (``PUT ?matching_attribute=``: created, and safe to repeat
        after a lost answer), one found is PATCHed, so that its multiselect values (other
        emails, phone numbers) are added to, never replaced as an assert would replace them."""
        workspace = yield from self.workspace(entity)
        key_field = ENTITY_SPECS[entity].key_field
        matching = workspace.slots[key_field].attribute.slug
        held = yield from self.lookup(
            entity, [str(it.record.get(key_field) or "") for it in items], key_field
        )
        result = BatchResult()
        for item in items:
            values = self._values(workspace, item)
            if isinstance(values, Failed):
                result.failed.append(values)
                continue
            found = held.get(item.key or "")
            request = (
                ApiRequest(
                    "PATCH",
                    self._records_path(workspace, f"/{found.id}"),
                    json={"data": {"values": values}},
                    kind=WRITE,
                )
                if found is not None
                else ApiRequest(
                    "PUT",
                    self._records_path(workspace),
                    json={"data": {"values": values}},
                    params={"matching_attribute": matching},
                    kind=WRITE,
                )
            )
            outcome = yield from self.calls.send(request)
            if outcome.verdict is not Verdict.OK:
                result.failed.append(self.calls.failed(item.index, outcome, workspace))
                continue
            record = self._remember(workspace, self.calls.body(outcome)["data"])
            result.successful.append(Written(item.index, record.id, created=found is None))
        return result

    def update(
        self, entity: Entity, items: Sequence[Item], *, clear_blanks: bool
    ) -> Operation[BatchResult]:
        """PATCH the changed values (a multiselect attribute gets ours added in front). With
        ``clear_blanks`` (a rollback) PUT them back: blanks cleared, and the value an import
        added in front of a multiselect attribute removed. Tasks and notes: see their
        modules."""
        apart = self._apart.get(entity)
        if apart is not None:
            return (yield from apart.update(items, clear_blanks=clear_blanks))
        workspace = yield from self.workspace(entity)
        result = BatchResult()
        for item in items:
            record_id = item.id or ""
            current = yield from self._current(workspace, item, full=clear_blanks)
            if isinstance(current, Failed):
                result.failed.append(current)
                continue
            held, now = current
            try:
                values = write_values(workspace, item.record, held=held, clear_blanks=clear_blanks)
            except ValueProblem as problem:
                result.failed.append(Failed(item.index, FailureKind.INVALID, str(problem)))
                continue
            if clear_blanks:
                for name in item.record:
                    slot = workspace.slots[name]
                    if slot.attribute.multiselect and slot.part is None:
                        given = values.get(slot.attribute.slug) or []
                        values[slot.attribute.slug] = restored_list(
                            slot.attribute,
                            active(now, slot.attribute.slug),
                            given[0] if given else None,
                        )
            request = ApiRequest(
                "PUT" if clear_blanks else "PATCH",
                self._records_path(workspace, f"/{record_id}"),
                json={"data": {"values": values}},
                kind=WRITE,
            )
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.OK:
                self._remember(workspace, self.calls.body(outcome)["data"])
                result.successful.append(Written(item.index, record_id, created=False))
            else:
                if entity is Entity.DEALS:
                    self._deals.invalidate()
                result.failed.append(self.calls.failed(item.index, outcome, workspace))
        return result

    def _current(
        self, workspace: Workspace, item: Item, *, full: bool
    ) -> Operation[tuple[dict[str, Value], dict[str, Any]] | Failed]:
        """The record's names and locations, and (``full``, for a rollback) all its values:
        remembered from its last read where an update only changes a part of a name or a
        location, else read now."""
        record_id = item.id or ""
        with self._lock:
            held = self._held.get(record_id)
        needs_parts = any(
            workspace.slots[n].part is not None for n in item.record if n in workspace.slots
        )
        if not full and (held is not None or not needs_parts):
            return held or {}, {}
        outcome = yield from self.calls.send(
            ApiRequest("GET", self._records_path(workspace, f"/{record_id}"))
        )
        if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
            return Failed(
                item.index, FailureKind.NOT_FOUND, f"no {workspace.object} record {record_id}"
            )
        data = self.calls.body(outcome)["data"]
        self._remember(workspace, data)
        return composites(workspace, data), dict(data.get("values") or {})

    def remove(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Delete for good; a record already gone (a repeated delete) counts as removed."""
        apart = self._apart.get(entity)
        if apart is not None:
            return (yield from apart.remove(items))
        workspace = yield from self.workspace(entity)
        result = BatchResult()
        for item in items:
            record_id = item.id or ""
            outcome = yield from self.calls.send(
                ApiRequest("DELETE", self._records_path(workspace, f"/{record_id}"), kind=WRITE)
            )
            if outcome.verdict is Verdict.OK or outcome.status == 404:
                self._forget(entity, record_id)
                result.successful.append(Written(item.index, record_id, created=False))
            else:
                result.failed.append(self.calls.failed(item.index, outcome, workspace))
        return result

    def add_note(self, body: str, parent: NoteParent | None) -> Operation[str]:
        """One note on a record (Attio's notes always have one); not resent after an unclear
        failure, so never doubled."""
        if parent is None:
            raise CrmRefused("Attio attaches every note to a record; none was given")
        request = ApiRequest(
            "POST",
            "/v2/notes",
            json={
                "data": {
                    "parent_object": OBJECTS[parent.entity],
                    "parent_record_id": parent.id,
                    "title": "bulk_pipeline import",
                    "format": "plaintext",
                    "content": body,
                }
            },
            kind=WRITE,
            idempotent=False,
        )
        outcome = yield from self.calls.send(request)
        return str(self.calls.body(outcome)["data"]["id"]["note_id"])

    # lists ------------------------------------------------------------------------------------

    def find_list(self, name: str, entity: Entity, *, create: bool) -> Operation[CrmList]:
        """A list by its name or slug (case aside); created when asked. It must hold records
        of the entity's object."""
        object_slug = OBJECTS[entity]
        lists = yield from self.calls.get("/v2/lists")
        wanted = name.strip().casefold()
        found = next(
            (
                data
                for data in lists or []
                if wanted
                in (
                    str(data["name"]).casefold(),
                    str(data["api_slug"]).casefold(),
                    data["id"]["list_id"],
                )
            ),
            None,
        )
        if found is None and create:
            found = yield from self._create_list(name.strip(), object_slug)
        if found is None:
            known = ", ".join(sorted(str(d["name"]) for d in lists or [])) or "none"
            raise UserInputError(
                f"Attio has no list named {name!r} (its lists: {known}); create it in Attio, "
                "or import with --create-list to create it"
            )
        parents = found.get("parent_object") or []
        if object_slug not in parents:
            raise UserInputError(
                f"Attio's list {found['name']!r} holds {', '.join(parents)} records, not "
                f"{object_slug}; choose a list of {object_slug}"
            )
        return CrmList(str(found["id"]["list_id"]), str(found["name"]))

    def _create_list(self, name: str, object_slug: str) -> Operation[dict[str, Any]]:
        """A new list open to the workspace; when the answer is lost, the lists are read to
        see whether it was made (its slug is unique), never created blindly again."""
        request = ApiRequest(
            "POST",
            "/v2/lists",
            json={
                "data": {
                    "name": name,
                    "api_slug": _slug(name),
                    "parent_object": object_slug,
                    "workspace_access": "full-access",
                    "workspace_member_access": [],
                }
            },
            kind=WRITE,
            idempotent=False,
        )
        outcome = yield from self.calls.send(request)
        if outcome.verdict is Verdict.OK:
            return dict(self.calls.body(outcome)["data"])
        if outcome.verdict is not Verdict.AMBIGUOUS:
            self.calls.body(outcome)
        lists = yield from self.calls.get("/v2/lists")
        made = next((d for d in lists or [] if d["api_slug"] == _slug(name)), None)
        if made is None:
            raise TransientError(
                f"the list {name!r} was not created ({outcome.failure}); import again to create it"
            )
        return dict(made)

    def list_members(self, crm_list: CrmList, entity: Entity) -> Operation[frozenset[str]]:
        rows = yield from self._query(f"/v2/lists/{crm_list.id}/entries/query", None)
        return frozenset(str(row["parent_record_id"]) for row in rows)

    def add_to_list(
        self, crm_list: CrmList, entity: Entity, items: Sequence[Item]
    ) -> Operation[BatchResult]:
        """Assert each record's entry by parent record: a record is never in the list twice,
        and a repeated call after a lost answer adds nothing more."""
        workspace = yield from self.workspace(entity)
        result = BatchResult()
        for item in items:
            request = ApiRequest(
                "PUT",
                f"/v2/lists/{crm_list.id}/entries",
                json={
                    "data": {
                        "parent_record_id": item.id,
                        "parent_object": OBJECTS[entity],
                        "entry_values": {},
                    }
                },
                kind=WRITE,
            )
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.OK or error_code(outcome) == "multiple_match_results":
                result.successful.append(Written(item.index, item.id or "", created=True))
            else:
                result.failed.append(self.calls.failed(item.index, outcome, workspace))
        return result
