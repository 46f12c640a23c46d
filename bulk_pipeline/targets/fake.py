"""An in-memory CRM behind the real runner, with capability and fault knobs, for tests.

:class:`FakeCrm` holds records the way a CRM would (ids, creation times on its own clock, unique
keys only where its capabilities say so); :class:`FakeDialect` answers the dialect calls from it
without HTTP. Faults: answers lost after a create was applied (the ambiguous outcome), calls that
fail for the whole retry window, lookups held until others are under way (two imports finding the
same record absent at once), a daily request allowance, a clock offset. The push core runs
against it exactly as against a real CRM, through :class:`~bulk_pipeline.targets.runner.SyncTarget`.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx

from bulk_pipeline.entities import ENTITY_SPECS, Entity, normalize_key
from bulk_pipeline.errors import TransientError, UserInputError
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
    LinkItem,
    LinkStyle,
    NoteParent,
    Record,
    Work,
    Written,
)
from bulk_pipeline.targets.http.clock import CrmClock
from bulk_pipeline.targets.http.drivers import SyncDriver
from bulk_pipeline.targets.http.exchange import ApiRequest, Exchange, Operation, RetryPolicy
from bulk_pipeline.targets.http.limits import Budget, DailyAllowance, Limit
from bulk_pipeline.targets.runner import SyncTarget

ALL_ENTITIES = frozenset(Entity)
MEETING_SECONDS = 2.0

BATCHED = Capabilities(
    entities=ALL_ENTITIES,
    batch_size=100,
    lookup_batch_size=100,
    concurrency=1,
    refuses_duplicate_keys=frozenset({Entity.CONTACTS}),
    native_upsert=frozenset({Entity.CONTACTS}),
    delete=DeleteKind.ARCHIVE,
    links=LinkStyle.ASSOCIATION,
    note_needs_parent=False,
)
"""Batches of 100, unique emails, upsert of contacts."""


@dataclass
class Faults:
    lose_create_answers: float = 0.0
    """Share of create calls applied whose answer is then lost."""
    fail_calls: float = 0.0
    """Share of calls that fail for the whole retry window (nothing applied)."""
    fail_next: dict[str, int] = field(default_factory=dict)
    """Calls by operation name that fail next, however many: ``{"add_links": 1}``."""
    lookups_meet: int = 0
    """The first lookup waits until this many are under way (at most ``MEETING_SECONDS``), so
    callers pushing at once all look before any writes: the moment two imports sharing a
    record both find it absent."""
    seed: int = 0


@dataclass
class FakeRecord:
    id: str
    fields: dict[str, str | None]
    created_at: datetime


@dataclass
class FakeCrm:
    """The CRM's state, shared by every target opened on it."""

    capabilities: Capabilities = BATCHED
    faults: Faults = field(default_factory=Faults)
    clock_offset: timedelta = timedelta(0)
    records: dict[Entity, dict[str, FakeRecord]] = field(default_factory=dict)
    links: dict[tuple[Entity, Entity], set[tuple[str, str]]] = field(default_factory=dict)
    """ASSOCIATION style: (from id, to id) per pair of entities."""
    notes: list[tuple[str, NoteParent | None]] = field(default_factory=list)
    lists: dict[str, list[str]] = field(default_factory=dict)
    """List name -> record ids in it, in the order added (where ``capabilities.lists``)."""
    calls: dict[str, int] = field(default_factory=dict)
    """Calls by operation (``create``, ``update``, ``lookup``...)."""

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        """Held by every call, as a server serializes its writes."""
        self._next_id = 1
        self._rng = random.Random(self.faults.seed)
        self._meeting = (
            threading.Barrier(self.faults.lookups_meet) if self.faults.lookups_meet > 1 else None
        )

    def meet_lookups(self) -> None:
        """Hold a lookup until ``faults.lookups_meet`` are under way, or ``MEETING_SECONDS``
        passed; once: later lookups answer at once."""
        if self._meeting is None:
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            self._meeting.wait(MEETING_SECONDS)
        self._meeting.abort()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def of(self, entity: Entity) -> dict[str, FakeRecord]:
        return self.records.setdefault(entity, {})

    def by_key(self, entity: Entity, by: str | None = None) -> dict[str, list[FakeRecord]]:
        """Records by the normalized value of field ``by`` (default: the key field)."""
        key_field = by or ENTITY_SPECS[entity].key_field
        found: dict[str, list[FakeRecord]] = {}
        for record in self.of(entity).values():
            value = record.fields.get(key_field)
            if value:
                found.setdefault(normalize_key(value), []).append(record)
        return found

    def linked(self, entity: Entity, to: Entity) -> set[tuple[str, str]]:
        return self.links.setdefault((entity, to), set())

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.faults.fail_next.get(name, 0) > 0:
                self.faults.fail_next[name] -= 1
                raise TransientError(f"the fake CRM failed {name} for the whole retry window")
            if self._rng.random() < self.faults.fail_calls:
                raise TransientError(f"the fake CRM failed {name} for the whole retry window")

    def loses_answer(self) -> bool:
        with self.lock:
            return self._rng.random() < self.faults.lose_create_answers

    def insert(self, entity: Entity, fields: Record) -> FakeRecord:
        """A new record; in ASSOCIATION style its link fields become links (when creates carry
        them) instead of values."""
        associated = self.capabilities.links is LinkStyle.ASSOCIATION
        link_fields = {r.link_field: r.entity for r in ENTITY_SPECS[entity].references}
        with self.lock:
            values: dict[str, str | None] = {
                k: v for k, v in fields.items() if v and not (associated and k in link_fields)
            }
            record = FakeRecord(str(self._next_id), values, self.now())
            self._next_id += 1
            self.of(entity)[record.id] = record
            if associated and self.capabilities.links_on_create:
                for name, to in link_fields.items():
                    if fields.get(name):
                        self.linked(entity, to).add((record.id, str(fields[name])))
        return record

    def writes(self) -> int:
        return sum(
            self.calls.get(name, 0)
            for name in ("create", "update", "upsert", "remove", "add_links", "remove_links")
        )


def _crm_record(record: FakeRecord) -> CrmRecord:
    return CrmRecord(record.id, dict(record.fields), record.created_at)


class FakeDialect(Dialect):
    def __init__(self, crm: FakeCrm, exchange: Exchange) -> None:
        self.crm = crm
        self.capabilities = crm.capabilities
        self.exchange = exchange

    def _call(self, name: str, kind: str) -> Operation[None]:
        """Spend the budget like a request would, tick the CRM's clock, count the call."""
        request = ApiRequest("POST", f"/fake/{name}", kind=kind)
        grant = yield from self.exchange.budget.acquire(request)
        self.exchange.budget.settle(grant, None)
        self.exchange.clock.observe(email.utils.format_datetime(self.crm.now(), usegmt=True))
        self.crm.count(name)

    def unmapped(self, entity: Entity, record: Record) -> list[str]:
        spec = ENTITY_SPECS[entity]
        known = set(spec.fields) | set(spec.link_fields)
        return [name for name in record if name not in known]

    def check(self) -> Operation[None]:
        yield from self._call("check", "read")

    def estimate(self, entity: Entity, work: Work) -> Estimate:
        size = self.capabilities.batch_size
        requests = sum(
            -(-n // size)
            for n in (work.lookups, work.reads, work.creates, work.updates, work.links)
        )
        return Estimate(requests, requests, "requests")

    def lookup(
        self, entity: Entity, values: Sequence[str], by: str
    ) -> Operation[dict[str, CrmRecord]]:
        yield from self._call("lookup", "read")
        self.crm.meet_lookups()
        found: dict[str, CrmRecord] = {}
        with self.crm.lock:
            index = self.crm.by_key(entity, by)
            for value in values:
                key = normalize_key(value)
                matches = index.get(key)
                if matches:
                    found[key] = _crm_record(min(matches, key=lambda r: int(r.id)))
        return found

    def search(self, entity: Entity, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        yield from self._call("search", "read")
        with self.crm.lock:
            index = self.crm.by_key(entity, by)
            return [
                _crm_record(record)
                for key in dict.fromkeys(normalize_key(v) for v in values)
                for record in index.get(key, [])
            ]

    def read_links(
        self, entity: Entity, ids: Sequence[str], to: Entity
    ) -> Operation[dict[str, set[str]]]:
        yield from self._call("read_links", "read")
        with self.crm.lock:
            pairs = self.crm.linked(entity, to) | {(t, f) for f, t in self.crm.linked(to, entity)}
            return {i: {t for f, t in pairs if f == i} for i in ids}

    def add_links(
        self, entity: Entity, to: Entity, links: Sequence[LinkItem]
    ) -> Operation[BatchResult]:
        yield from self._call("add_links", "write")
        with self.crm.lock:
            self.crm.linked(entity, to).update((it.link.from_id, it.link.to_id) for it in links)
        return BatchResult(successful=[Written(it.index, it.link.from_id, False) for it in links])

    def remove_links(
        self, entity: Entity, to: Entity, links: Sequence[LinkItem]
    ) -> Operation[BatchResult]:
        yield from self._call("remove_links", "write")
        with self.crm.lock:
            self.crm.linked(entity, to).difference_update(
                (it.link.from_id, it.link.to_id) for it in links
            )
        return BatchResult(successful=[Written(it.index, it.link.from_id, False) for it in links])

    def read(self, entity: Entity, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        yield from self._call("read", "read")
        with self.crm.lock:
            records = self.crm.of(entity)
            return {i: _crm_record(records[i]) for i in ids if i in records}

    def create(self, entity: Entity, items: Sequence[Item]) -> Operation[CreateResult]:
        yield from self._call("create", "write")
        with self.crm.lock:
            return self._create(entity, items)

    def _create(self, entity: Entity, items: Sequence[Item]) -> CreateResult:
        if entity in self.capabilities.refuses_duplicate_keys:
            index = self.crm.by_key(entity)
            clashing = [it for it in items if it.key in index]
            if clashing:
                if len(items) > 1:
                    return CreateResult(conflicted=list(items))
                existing = index[clashing[0].key or ""][0]
                return CreateResult(
                    failed=[
                        Failed(
                            items[0].index,
                            FailureKind.CONFLICT,
                            f"exists as {existing.id}",
                            existing=_crm_record(existing),
                        )
                    ]
                )
        written = [Written(it.index, self.crm.insert(entity, it.record).id, True) for it in items]
        if self.crm.loses_answer():
            return CreateResult(unconfirmed=list(items))
        return CreateResult(successful=written)

    def update(
        self, entity: Entity, items: Sequence[Item], *, clear_blanks: bool
    ) -> Operation[BatchResult]:
        yield from self._call("update", "write")
        with self.crm.lock:
            return self._update(entity, items, clear_blanks)

    def _update(self, entity: Entity, items: Sequence[Item], clear_blanks: bool) -> BatchResult:
        records = self.crm.of(entity)
        result = BatchResult()
        for it in items:
            record = records.get(it.id or "")
            if record is None:
                result.failed.append(Failed(it.index, FailureKind.NOT_FOUND, "no such record"))
                continue
            for name, value in it.record.items():
                if value:
                    record.fields[name] = value
                elif clear_blanks:
                    record.fields.pop(name, None)
            result.successful.append(Written(it.index, record.id, False))
        return result

    def upsert(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        yield from self._call("upsert", "write")
        with self.crm.lock:
            return self._upsert(entity, items)

    def _upsert(self, entity: Entity, items: Sequence[Item]) -> BatchResult:
        index = self.crm.by_key(entity)
        result = BatchResult()
        for it in items:
            matches = index.get(it.key or "")
            if matches:
                matches[0].fields.update({k: v for k, v in it.record.items() if v})
                result.successful.append(Written(it.index, matches[0].id, False))
            else:
                result.successful.append(
                    Written(it.index, self.crm.insert(entity, it.record).id, True)
                )
        return result

    def remove(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        yield from self._call("remove", "write")
        with self.crm.lock:
            records = self.crm.of(entity)
            removed = {it.id or "" for it in items}
            for record_id in removed:
                records.pop(record_id, None)
            for (source, target), pairs in self.crm.links.items():
                pairs.difference_update(
                    {
                        (f, t)
                        for f, t in pairs
                        if (source is entity and f in removed)
                        or (target is entity and t in removed)
                    }
                )
        return BatchResult(successful=[Written(it.index, it.id or "", False) for it in items])

    def add_note(self, body: str, parent: NoteParent | None) -> Operation[str]:
        yield from self._call("note", "write")
        self.crm.notes.append((body, parent))
        return str(len(self.crm.notes))

    def find_list(self, name: str, entity: Entity, *, create: bool) -> Operation[CrmList]:
        yield from self._call("find_list", "read")
        with self.crm.lock:
            if name not in self.crm.lists:
                if not create:
                    raise UserInputError(f"the fake CRM has no list named {name!r}")
                self.crm.lists[name] = []
        return CrmList(name, name)

    def list_members(self, crm_list: CrmList, entity: Entity) -> Operation[frozenset[str]]:
        yield from self._call("list_members", "read")
        return frozenset(self.crm.lists[crm_list.id])

    def add_to_list(
        self, crm_list: CrmList, entity: Entity, items: Sequence[Item]
    ) -> Operation[BatchResult]:
        yield from self._call("add_to_list", "write")
        with self.crm.lock:
            members = self.crm.lists[crm_list.id]
            members += [it.id or "" for it in items if it.id not in members]
        return BatchResult(successful=[Written(it.index, it.id or "", False) for it in items])


def fake_target(
    crm: FakeCrm,
    *,
    name: str = "fake",
    account: str = "fake",
    daily_requests: int | None = None,
) -> SyncTarget:
    """A target on ``crm``; ``daily_requests`` gives it a daily allowance to run out of."""
    limits: tuple[Limit, ...] = ()
    if daily_requests is not None:
        limits = (DailyAllowance("daily request limit", daily_requests),)
    exchange = Exchange(
        policy=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0),
        budget=Budget({"*": limits}),
        clock=CrmClock(),
        where="fake://crm",
        rng=random.Random(0),
    )
    return SyncTarget(
        name=name,
        account=account,
        dialect=FakeDialect(crm, exchange),
        exchange=exchange,
        driver=SyncDriver("http://fake.invalid", httpx.Auth()),
    )


def with_capabilities(**changes: object) -> Capabilities:
    """``BATCHED`` with some capabilities changed (for contract tests over combinations)."""
    return replace(BATCHED, **changes)  # type: ignore[arg-type]
