"""Push staged records to a CRM target in checkpointed chunks.

For each chunk: read back what this pipeline wrote before (by CRM id), look the others up by key
(or, where the CRM refuses duplicate keys, create them without a lookup), compare, and send only
what differs. Every change is written down before it is sent (with the CRM's previous values and
the values sent, for rollback), and the CRM's answers are checkpointed after, in one transaction.
A crash, a retry, a budget pause, a terminated run or a backfill therefore resumes safely: the next
attempt finds whatever a lost answer created and claims it only by what the import knew when it
sent the create, never by comparing two clocks.

Each line's outcome is what the CRM did in this run: created, updated (only the changed fields),
unchanged, or failed with the CRM's reason. A record deleted in the CRM since the last import is
found missing and created again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from bulk_pipeline.entities import (
    DEPENDENCY_ORDER,
    ENTITY_SPECS,
    Entity,
    EntitySpec,
    Reference,
)
from bulk_pipeline.errors import BudgetExhausted, TransientError
from bulk_pipeline.outcomes import (
    Change,
    ChangeAction,
    ChangeState,
    Intent,
    LineOutcome,
    LinkChange,
    LinkState,
    PendingRecord,
    Proof,
    PushOutcome,
)
from bulk_pipeline.progress import ProgressSnapshot, ProgressTracker
from bulk_pipeline.push.plan import Action, PlannedRecord, created_by, plan_record
from bulk_pipeline.push.references import (
    KnownReferences,
    links_of,
    match_in_crm,
    resolve_references,
    sendable,
)
from bulk_pipeline.reports.batches import BatchLog
from bulk_pipeline.reports.crm_duplicates import append_crm_duplicates
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import (
    BatchResult,
    Capabilities,
    CrmRecord,
    Failed,
    FailureKind,
    Link,
    LinkStyle,
    Target,
)

CHUNK_SIZE = 1_000
"""Records per chunk of a dry run's plan, and the fewest per checkpoint of a push."""
CHUNK_WRITE_CALLS = 25
"""Write calls per checkpoint of a push where calls carry batches: each checkpoint opens the
staging file and writes to it several times (intents, outcomes, links), which took about half
of an unthrottled push at 1,000 records per checkpoint. 25 calls of 100 (HubSpot) are about
2.5 s at HubSpot's lowest limit: the progress counter moves, and a stop or a spent budget
lands, within seconds."""


def checkpoint_records(capabilities: Capabilities) -> int:
    """Records a push sends between two checkpoints: ``CHUNK_WRITE_CALLS`` write calls, and
    at least ``CHUNK_SIZE`` (a CRM without batch writes)."""
    return max(CHUNK_SIZE, CHUNK_WRITE_CALLS * capabilities.batch_size)


@dataclass(frozen=True)
class PushReport:
    sent: int
    created: int
    updated: int
    unchanged: int
    failed: int
    seconds: float
    final: ProgressSnapshot


class PushStopped(RuntimeError):
    """The push was asked to stop and did, between two chunks, with its state saved."""


@dataclass(frozen=True)
class PushContext:
    """Everything a chunk needs to know about the push it belongs to."""

    store: StagingStore
    target: Target
    entity: Entity
    import_id: str
    run: int
    accepted: frozenset[str] = frozenset()
    """Our fields of the entity the CRM has a place for (``Target.fields``)."""
    references: KnownReferences = field(default_factory=KnownReferences)
    """What the push's references named so far."""
    updates: bool = True
    """Whether a record the CRM holds is brought up to date; when not, it is only found (and
    linked to): the records an import derived from another entity's columns."""

    @classmethod
    def of(
        cls,
        store: StagingStore,
        target: Target,
        entity: Entity,
        import_id: str,
        run: int,
        *,
        updates: bool = True,
    ) -> PushContext:
        return cls(store, target, entity, import_id, run, target.fields(entity), updates=updates)

    @property
    def account(self) -> str:
        return self.target.account

    @property
    def spec(self) -> EntitySpec:
        return ENTITY_SPECS[self.entity]

    @property
    def associates(self) -> bool:
        """Links are separate objects in this CRM (ASSOCIATION), not fields of the record."""
        return self.target.capabilities.links is LinkStyle.ASSOCIATION

    def sent(self, record: PendingRecord) -> dict[str, str]:
        """What the CRM keeps of a record as its values: never a field it has no place for (a
        contact's company name where companies are only linked)."""
        values = sendable(self.spec, record.fields, self.target.capabilities.links)
        return {name: value for name, value in values.items() if name in self.accepted}

    def plan(self, record: PendingRecord, current: CrmRecord | None) -> PlannedRecord:
        fields = self.sent(record) if current is None or self.updates else {}
        planned = plan_record(record.key, record.line, fields, current, known_crm_id=record.crm_id)
        return replace(planned, sheet=record.sheet)


@dataclass
class ChunkOutcome:
    outcomes: dict[str, PushOutcome] = field(default_factory=dict)
    """The outcome of each record (by key) this chunk settled."""
    done: dict[str, str] = field(default_factory=dict)
    """CRM ids of the changes this chunk saw acknowledged, by key."""
    existing: int = 0
    """Records this pipeline never wrote that the CRM held already (their key exists)."""
    stop: BudgetExhausted | TransientError | None = None
    """Why the push must stop after checkpointing this chunk."""
    crm_duplicates: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    """Keys the CRM holds more than once: (key, id used, the other ids)."""

    def count(self, outcome: LineOutcome) -> int:
        return sum(o.outcome is outcome for o in self.outcomes.values())

    def add(
        self, key: str, outcome: LineOutcome, crm_id: str | None = None, reason: str = ""
    ) -> None:
        self.outcomes[key] = PushOutcome(key, outcome, crm_id, reason or None)


def current_records(
    ctx: PushContext, records: Sequence[PendingRecord]
) -> tuple[dict[str, CrmRecord], list[PendingRecord]]:
    """What the CRM holds for records this pipeline wrote before (read by id), and the records
    whose CRM record must be found otherwise (never written, or deleted or merged since)."""
    known = [r for r in records if r.crm_id]
    unknown = [r for r in records if not r.crm_id]
    current: dict[str, CrmRecord] = {}
    if known:
        by_id = ctx.target.read(ctx.entity, [r.crm_id or "" for r in known])
        for r in known:
            record = by_id.get(r.crm_id or "")
            if record is None:
                unknown.append(r)
            else:
                current[r.key] = record
    return current, unknown


def plan_chunk(ctx: PushContext, records: Sequence[PendingRecord]) -> list[PlannedRecord]:
    """What pushing these records would do, against the CRM's current values (reads only)."""
    resolved = resolve_references(
        ctx.store,
        ctx.target,
        ctx.entity,
        records,
        import_id=ctx.import_id,
        linked=ctx.accepted,
        known=ctx.references,
        planning=True,
    )
    current, unknown = current_records(ctx, resolved.records)
    current |= match_in_crm(ctx.target, ctx.entity, unknown)
    planned = [ctx.plan(r, current.get(r.key)) for r in resolved.records]
    if ctx.associates:
        new_links = LinkPhase(ctx).planned(resolved.records, planned)
        planned = [replace(p, new_links=new_links.get(p.key, ())) for p in planned]
    by_key = {r.key: r for r in records}
    rejected = {**resolved.invalid, **resolved.failed}
    return planned + [
        PlannedRecord(
            key, by_key[key].line, Action.REJECT, {}, reason=reason, sheet=by_key[key].sheet
        )
        for key, reason in rejected.items()
    ]


class ChunkPush:
    """One chunk of a push: resolve references, decide, record intents, send, link, and say
    what happened per record."""

    def __init__(
        self,
        ctx: PushContext,
        earlier: dict[str, Change],
        earlier_links: set[tuple[str, str, str]],
        *,
        optimistic: bool,
    ) -> None:
        self.ctx = ctx
        self.earlier = earlier
        """This run's changes recorded by earlier attempts, by key."""
        self.earlier_links = earlier_links
        """(key, reference, to id) of this run's link intents recorded by earlier attempts."""
        self.optimistic = optimistic
        self.result = ChunkOutcome()

    def run(self, records: Sequence[PendingRecord]) -> ChunkOutcome:
        ctx = self.ctx
        try:
            resolved = resolve_references(
                ctx.store,
                ctx.target,
                ctx.entity,
                records,
                import_id=ctx.import_id,
                linked=ctx.accepted,
                known=ctx.references,
            )
            for key, reason in resolved.invalid.items():
                self.result.add(key, LineOutcome.INVALID, reason=reason)
            for key, reason in resolved.failed.items():
                self.result.add(key, LineOutcome.FAILED, reason=reason)
            records = resolved.records
            current, unknown = current_records(ctx, records)
            fresh: list[PendingRecord] = []
            if self.optimistic and self._may_create_without_lookup():
                fresh = [r for r in unknown if r.key not in self.earlier]
                unknown = [r for r in unknown if r.key in self.earlier]
            found = match_in_crm(ctx.target, ctx.entity, unknown)
            found |= self._unconfirmed_creates(unknown, found)
            self._settle_unconfirmed(found)
            current |= found
            self.result.existing += sum(
                r.key in found and r.key not in self.earlier for r in unknown
            )
            if fresh:
                current |= self._create_optimistically(fresh)
            self.result.crm_duplicates = [
                (key, record.id, record.duplicates)
                for key, record in current.items()
                if record.duplicates
            ]
            sent_fresh = {id(r) for r in fresh}
            to_plan = [r for r in records if id(r) not in sent_fresh or r.key in current]
            self._write([ctx.plan(r, current.get(r.key)) for r in to_plan], records)
            if ctx.associates and self.result.stop is None:
                LinkPhase(ctx).run(records, self.result, self.earlier_links)
        except (BudgetExhausted, TransientError) as stop:
            self.result.stop = stop
        return self.result

    def _may_create_without_lookup(self) -> bool:
        """Only where the CRM refuses duplicate keys, and only while its clock is known: a
        create whose answer is lost in a crash is then claimed by the CRM's own time."""
        target = self.ctx.target
        return (
            self.ctx.entity in target.capabilities.refuses_duplicate_keys
            and target.crm_now() is not None
        )

    def _unconfirmed_creates(
        self, unknown: Sequence[PendingRecord], found: dict[str, CrmRecord]
    ) -> dict[str, CrmRecord]:
        """Records the CRM cannot be asked for by their identity (an id from the source system,
        a task's subject) whose create an earlier attempt sent and never saw answered: found by
        search on the value the CRM holds, as the CRM created them after the create was sent."""
        ctx = self.ctx
        lost = [
            r
            for r in unknown
            if r.key not in found
            and (change := self.earlier.get(r.key)) is not None
            and change.action is ChangeAction.CREATE
            and change.state is ChangeState.INTENDED
        ]
        by = ctx.spec.search_field
        lost = [r for r in lost if r.fields.get(by)]
        if not lost:
            return {}
        candidates = ctx.target.search(ctx.entity, [r.fields[by] for r in lost], by)
        claimed: dict[str, CrmRecord] = {}
        for r in lost:
            change = self.earlier[r.key]
            sent = ctx.sent(r)
            match = next(
                (
                    c
                    for c in sorted(candidates, key=lambda c: (len(c.id), c.id))
                    if c.id not in {m.id for m in claimed.values()}
                    and created_by(replace(change, proof=Proof.OPTIMISTIC), c)
                    and all(c.holds(n, v) for n, v in sent.items() if n in c.fields)
                ),
                None,
            )
            if match is not None:
                claimed[r.key] = match
        return claimed

    def _settle_unconfirmed(self, found: dict[str, CrmRecord]) -> None:
        """Creates an earlier attempt recorded but never saw confirmed: keep them if the record
        found is theirs, else forget the intent (the record was there before the import)."""
        theirs = [
            key
            for key, change in self.earlier.items()
            if change.action is ChangeAction.CREATE
            and change.state is ChangeState.INTENDED
            and key in found
            and not created_by(change, found[key])
        ]
        if theirs:
            ctx = self.ctx
            ctx.store.discard_intents(
                ctx.import_id, ctx.entity, theirs, account=ctx.account, run=ctx.run
            )
            for key in theirs:
                del self.earlier[key]

    def _create_optimistically(self, fresh: Sequence[PendingRecord]) -> dict[str, CrmRecord]:
        """Create records this pipeline never wrote without looking them up first: the CRM
        refuses a key that exists, and answers with the record it holds, which is returned so
        those records are planned like the others."""
        ctx = self.ctx
        ctx.store.record_intents(
            ctx.import_id,
            ctx.entity,
            [Intent(r.key, ChangeAction.CREATE) for r in fresh],
            account=ctx.account,
            run=ctx.run,
            sent_at=ctx.target.crm_now(),
            proof=Proof.OPTIMISTIC,
        )
        result = ctx.target.create(ctx.entity, [self._created(r) for r in fresh])
        existing = {
            fresh[f.index].key: f.existing
            for f in result.failed
            if f.kind is FailureKind.CONFLICT and f.existing is not None
        }
        ctx.store.discard_intents(
            ctx.import_id, ctx.entity, list(existing), account=ctx.account, run=ctx.run
        )
        self.result.existing += len(existing)
        result.failed = [f for f in result.failed if fresh[f.index].key not in existing]
        self._account(
            [PlannedRecord(r.key, r.line, Action.CREATE, ctx.sent(r)) for r in fresh], result
        )
        return {key: record for key, record in existing.items() if record is not None}

    def _created(self, record: PendingRecord) -> dict[str, str]:
        """What a create sends: the values, and the links where they ride on creates."""
        ctx = self.ctx
        sent = ctx.sent(record)
        if ctx.associates and ctx.target.capabilities.links_on_create:
            sent |= {
                n: v for n, v in links_of(record.fields, ctx.spec).items() if n in ctx.accepted
            }
        return sent

    def _write(self, planned: Sequence[PlannedRecord], records: Sequence[PendingRecord]) -> None:
        ctx = self.ctx
        by_key = {r.key: r for r in records}
        creates = [p for p in planned if p.action is Action.CREATE]
        updates = [p for p in planned if p.action is Action.UPDATE]
        for p in planned:
            if p.action is Action.UNCHANGED:
                self._unchanged(p)
            elif p.action is Action.CONFLICT:
                self.result.add(p.key, LineOutcome.FAILED, reason=p.reason or "conflict")
        ctx.store.record_intents(
            ctx.import_id,
            ctx.entity,
            [Intent(p.key, ChangeAction.UPDATE, p.crm_id, p.before, p.fields) for p in updates]
            + [Intent(p.key, ChangeAction.CREATE) for p in creates],
            account=ctx.account,
            run=ctx.run,
            sent_at=ctx.target.crm_now(),
            proof=Proof.LOOKED_UP,
        )
        if updates:
            result = ctx.target.update(
                ctx.entity, [p.crm_id or "" for p in updates], [p.fields for p in updates]
            )
            self._account(updates, result)
        if creates:
            result = ctx.target.create(ctx.entity, [self._created(by_key[p.key]) for p in creates])
            self._account(creates, result)

    def _unchanged(self, p: PlannedRecord) -> None:
        """The CRM holds the staged values already; if an earlier attempt of this run wrote
        them, that write is this line's outcome."""
        previous = self.earlier.get(p.key)
        if previous is None or previous.state is ChangeState.ROLLED_BACK:
            self.result.add(p.key, LineOutcome.UNCHANGED, p.crm_id)
            return
        outcome = (
            LineOutcome.CREATED if previous.action is ChangeAction.CREATE else LineOutcome.UPDATED
        )
        self.result.add(p.key, outcome, p.crm_id)
        self.result.done[p.key] = p.crm_id or ""

    def _account(self, planned: Sequence[PlannedRecord], result: BatchResult) -> None:
        """Turn a write result into line outcomes and acknowledged changes."""
        for written in result.successful:
            p = planned[written.index]
            previous = self.earlier.get(p.key)
            created = written.created or (
                previous is not None
                and previous.action is ChangeAction.CREATE
                and previous.state is not ChangeState.ROLLED_BACK
            )
            outcome = LineOutcome.CREATED if created else LineOutcome.UPDATED
            self.result.add(p.key, outcome, written.id)
            self.result.done[p.key] = written.id
        refused: list[str] = []
        for failed in result.failed:
            p = planned[failed.index]
            if failed.retryable:
                self._stop_for(failed, result)
                continue
            self.result.add(p.key, LineOutcome.FAILED, reason=failed.message)
            refused.append(p.key)
        ctx = self.ctx
        ctx.store.discard_intents(
            ctx.import_id, ctx.entity, refused, account=ctx.account, run=ctx.run
        )

    def _stop_for(self, failed: Failed, result: BatchResult) -> None:
        """A record the CRM did not take for a reason that passes: it stays pending, and the
        push stops after this chunk (budget spent, or the CRM down for the retry window)."""
        if self.result.stop is not None:
            return
        if result.exhausted is not None:
            self.result.stop = result.exhausted
        else:
            self.result.stop = TransientError(failed.message)


WRITTEN = (LineOutcome.CREATED, LineOutcome.UPDATED, LineOutcome.UNCHANGED)


class LinkPhase:
    """Links of records written, where the CRM keeps links apart from records (associations).

    A create carries its record's links; records that existed get theirs by separate calls,
    after the links this pipeline made or found before are left out and the rest are read from
    the CRM: only links the CRM does not hold are written, each written down first so that a
    rollback removes it and a crash never loses it.
    """

    def __init__(self, ctx: PushContext) -> None:
        self.ctx = ctx

    def _wanted(
        self, records: Sequence[PendingRecord], crm_ids: dict[str, str], rode: set[str]
    ) -> tuple[list[LinkChange], dict[Reference, list[LinkChange]]]:
        """Links that rode on creates, and the links of other records, by reference."""
        ctx = self.ctx
        on_create: list[LinkChange] = []
        apart: dict[Reference, list[LinkChange]] = {}
        for r in records:
            crm_id = crm_ids.get(r.key)
            if not crm_id:
                continue
            for reference in ctx.spec.references:
                to_id = r.fields.get(reference.link_field)
                if not to_id:
                    continue
                link = LinkChange(
                    ctx.entity,
                    r.key,
                    reference.name,
                    reference.entity,
                    crm_id,
                    to_id,
                    LinkState.DONE,
                    ctx.run,
                    with_create=r.key in rode,
                )
                if r.key in rode:
                    on_create.append(link)
                else:
                    apart.setdefault(reference, []).append(link)
        return on_create, apart

    def _missing(
        self, reference: Reference, links: Sequence[LinkChange]
    ) -> tuple[list[LinkChange], list[LinkChange]]:
        """Of links wanted: those the CRM holds, and those it does not. Links this pipeline made
        or found before are known; the others are read from whichever side names fewer records
        (a thousand contacts of ten companies: the ten companies' links, in one call)."""
        ctx = self.ctx
        from_ids = list({link.from_id for link in links})
        known = ctx.store.known_links(ctx.entity, reference.name, from_ids, account=ctx.account)
        unknown = [link for link in links if (link.from_id, link.to_id) not in known]
        if not unknown:
            return [], []
        sources = list(dict.fromkeys(link.from_id for link in unknown))
        targets = list(dict.fromkeys(link.to_id for link in unknown))
        if len(targets) < len(sources):
            by_target = ctx.target.read_links(reference.entity, targets, ctx.entity)
            held = {(f, t) for t, linked in by_target.items() for f in linked}
        else:
            by_source = ctx.target.read_links(ctx.entity, sources, reference.entity)
            held = {(f, t) for f, linked in by_source.items() for t in linked}
        present = [link for link in unknown if (link.from_id, link.to_id) in held]
        absent = [link for link in unknown if (link.from_id, link.to_id) not in held]
        return present, absent

    def planned(
        self, records: Sequence[PendingRecord], planned: Sequence[PlannedRecord]
    ) -> dict[str, tuple[str, ...]]:
        """For a dry run: the references each existing record would be linked by separately."""
        crm_ids = {p.key: p.crm_id for p in planned if p.crm_id and p.action is not Action.CREATE}
        _, apart = self._wanted(records, crm_ids, rode=set())
        new: dict[str, tuple[str, ...]] = {}
        for reference, links in apart.items():
            for link in self._missing(reference, links)[1]:
                new[link.key] = (*new.get(link.key, ()), reference.name)
        if not self.ctx.target.capabilities.links_on_create:
            for p in planned:
                if p.action is Action.CREATE:
                    record = next(r for r in records if r.key == p.key)
                    names = [
                        ref.name
                        for ref in self.ctx.spec.references
                        if record.fields.get(ref.link_field)
                    ]
                    new[p.key] = tuple(names)
        return new

    def run(
        self,
        records: Sequence[PendingRecord],
        result: ChunkOutcome,
        earlier_links: set[tuple[str, str, str]],
    ) -> None:
        """Link the chunk's written records. When the CRM stops answering or the budget runs
        out, records whose links are not all made go back to pending (the record itself is
        written and kept): the next run reads them by id and makes the rest."""
        ctx = self.ctx
        written = {
            key: outcome.crm_id
            for key, outcome in result.outcomes.items()
            if outcome.outcome in WRITTEN and outcome.crm_id
        }
        rode = (
            {k for k, o in result.outcomes.items() if o.outcome is LineOutcome.CREATED}
            if ctx.target.capabilities.links_on_create
            else set()
        )
        on_create, apart = self._wanted(records, written, rode)
        ctx.store.record_links(ctx.import_id, on_create, account=ctx.account, run=ctx.run)
        outstanding: dict[str, int] = {}
        for links in apart.values():
            for link in links:
                outstanding[link.key] = outstanding.get(link.key, 0) + 1
        try:
            for reference, links in apart.items():
                self._settle(reference, links, result, earlier_links)
                if result.stop is not None:
                    break
                for link in links:
                    outstanding[link.key] -= 1
        except (BudgetExhausted, TransientError) as stop:
            result.stop = stop
        if result.stop is not None:
            for key, left in outstanding.items():
                outcome = result.outcomes[key]
                if left and outcome.outcome in WRITTEN:
                    result.add(key, LineOutcome.PENDING, outcome.crm_id)

    def _settle(
        self,
        reference: Reference,
        links: Sequence[LinkChange],
        result: ChunkOutcome,
        earlier_links: set[tuple[str, str, str]],
    ) -> None:
        """Record the links the CRM holds; make the others."""
        ctx = self.ctx
        present, absent = self._missing(reference, links)
        ctx.store.record_links(
            ctx.import_id,
            [
                replace(
                    link,
                    state=LinkState.DONE
                    if (link.key, link.reference, link.to_id) in earlier_links
                    else LinkState.FOUND,
                )
                for link in present
            ],
            account=ctx.account,
            run=ctx.run,
        )
        if absent:
            self._add(reference, list(absent), result)

    def _add(self, reference: Reference, links: list[LinkChange], result: ChunkOutcome) -> None:
        ctx = self.ctx
        intended = [replace(link, state=LinkState.INTENDED) for link in links]
        ctx.store.record_links(ctx.import_id, intended, account=ctx.account, run=ctx.run)
        answer = ctx.target.add_links(
            ctx.entity, reference.entity, [Link(link.from_id, link.to_id) for link in links]
        )
        ctx.store.record_links(
            ctx.import_id,
            [links[w.index] for w in answer.successful],
            account=ctx.account,
            run=ctx.run,
        )
        refused = [(links[f.index], f) for f in answer.failed if not f.retryable]
        ctx.store.discard_links(
            ctx.import_id, [link for link, _ in refused], account=ctx.account, run=ctx.run
        )
        for link, failed in refused:
            previous = result.outcomes[link.key]
            result.add(
                link.key,
                LineOutcome.FAILED,
                previous.crm_id,
                f"{previous.outcome.value}, but not linked to its {reference.name} "
                f"({link.to_id}): {failed.message}",
            )
        pending = next((f for f in answer.failed if f.retryable), None)
        if pending is not None and result.stop is None:
            result.stop = answer.exhausted or TransientError(pending.message)


def written_since(
    store: StagingStore, account: str, entity: Entity, records: Sequence[PendingRecord]
) -> list[PendingRecord]:
    """The records with the CRM ids other imports wrote them to since this push read them (an
    id from the source system is found nowhere else)."""
    ids = store.crm_ids(entity, [r.key for r in records if not r.crm_id], account=account)
    return [replace(r, crm_id=ids[r.key]) if r.key in ids else r for r in records]


def push_import(
    store: StagingStore,
    target: Target,
    entities: Sequence[Entity],
    *,
    import_id: str,
    run: int,
    progress_path: Path | None = None,
    batches_path: Path | None = None,
    crm_duplicates_path: Path | None = None,
    log: Callable[[str], None] = lambda _message: None,
    chunk_size: int | None = None,
    duplicates: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
    found_only: Collection[Entity] = (),
) -> PushReport:
    """Send this import's records, entity after entity in dependency order (a contact's
    company is written before the contact links to it); return what the CRM did with them.

    Other imports may push into the same account at once. Records the CRM would take twice
    (no duplicate of their key refused) are pushed chunk by chunk under the store's write lock
    for the account and entity, with the CRM ids other imports wrote them to meanwhile: a
    record two imports share is created once.

    Raises ``BudgetExhausted`` or ``TransientError`` after saving what was done when the CRM's
    budget runs out or the CRM stops answering, and ``PushStopped`` when asked to stop. Keys the
    CRM already holds more than once are appended to ``crm_duplicates_path``. Records of the
    ``found_only`` entities are created when the CRM does not hold them, never updated. What
    was sent is checkpointed every ``chunk_size`` records (``checkpoint_records`` by default).
    """
    started = time.monotonic()
    chunk_size = chunk_size or checkpoint_records(target.capabilities)
    ordered = [e for e in DEPENDENCY_ORDER if e in entities]
    counts = {e: store.outcome_counts(import_id, entity=e) for e in ordered}
    left = {e: counts[e][LineOutcome.PENDING] + counts[e][LineOutcome.FAILED] for e in ordered}
    total = sum(left.values())
    tracker = ProgressTracker(
        total=total,
        path=progress_path,
        batches=sum(-(-n // chunk_size) for n in left.values()),
        duplicates=duplicates,
    )
    log(f"{total} records to push to {target.name}")
    if total and target.crm_now() is None:
        target.check()
    batch_log = BatchLog(batches_path)
    done = 0
    resumed = store.recorded_in_run(import_id, account=target.account, run=run)
    """An earlier attempt of this run recorded changes or links, which chunks then read: a
    run's first attempt has none to read."""
    for entity in ordered:
        ctx = PushContext.of(
            store, target, entity, import_id, run, updates=entity not in found_only
        )
        optimistic = True
        """Create without looking up first while the CRM turns out not to hold the records."""
        shared = entity not in target.capabilities.refuses_duplicate_keys
        pages = store.record_pages(import_id, entity, account=target.account, rows=chunk_size)
        for records in pages:
            with store.write_lock(target.account, entity) if shared else nullcontext():
                if shared:
                    records = written_since(store, target.account, entity, records)
                earlier, earlier_links = _earlier(ctx, records) if resumed else ({}, set())
                chunk = ChunkPush(ctx, earlier, earlier_links, optimistic=optimistic).run(records)
                optimistic = chunk.existing == 0
                store.checkpoint(
                    import_id,
                    entity,
                    list(chunk.outcomes.values()),
                    account=target.account,
                    run=run,
                    done=chunk.done,
                )
            batch_log.add(len(chunk.outcomes))
            append_crm_duplicates(crm_duplicates_path, entity.value, chunk.crm_duplicates)
            tracker.add(
                created=chunk.count(LineOutcome.CREATED),
                updated=chunk.count(LineOutcome.UPDATED),
                failed=chunk.count(LineOutcome.FAILED) + chunk.count(LineOutcome.INVALID),
                unchanged=chunk.count(LineOutcome.UNCHANGED),
            )
            done += len(records)
            if chunk.stop is not None:
                tracker.finish()
                raise chunk.stop
            if tracker.due_for_log():
                log(tracker.snapshot().describe())
            if should_stop() and done < total:
                snapshot = tracker.finish()
                raise PushStopped(
                    f"stopped on request after batch {snapshot.batch} of {snapshot.batches} "
                    f"({snapshot.processed} of {snapshot.total} records done); the state is "
                    "saved and running the import again resumes where it stopped"
                )
    final = tracker.finish()
    log(final.describe())
    return PushReport(
        sent=total,
        created=final.created,
        updated=final.updated,
        unchanged=final.unchanged,
        failed=final.failed,
        seconds=time.monotonic() - started,
        final=final,
    )


def _earlier(
    ctx: PushContext, records: Sequence[PendingRecord]
) -> tuple[dict[str, Change], set[tuple[str, str, str]]]:
    """What earlier attempts of this run recorded for these records: their changes, by key,
    and their link intents (key, reference, to id)."""
    keys = [r.key for r in records]
    changes = ctx.store.changes(
        ctx.import_id, account=ctx.account, run=ctx.run, entity=ctx.entity, keys=keys
    )
    links = ctx.store.links(
        ctx.import_id, account=ctx.account, run=ctx.run, entity=ctx.entity, keys=keys
    )
    return (
        {c.key: c for c in changes},
        {
            (link.key, link.reference, link.to_id)
            for link in links
            if link.state is LinkState.INTENDED
        },
    )


def plan_import(
    store: StagingStore,
    target: Target,
    entities: Sequence[Entity],
    *,
    import_id: str,
    chunk_size: int = CHUNK_SIZE,
    found_only: Collection[Entity] = (),
) -> Iterator[tuple[Entity, list[PlannedRecord]]]:
    """What pushing this import would do to every record it staged, a chunk of one entity at a
    time, entity after entity in the order a push writes them; reads only.

    References to records the import would create cannot be resolved before they exist: they
    are planned as links to the record to be created. Records of the ``found_only`` entities
    are planned as ``push_import`` writes them: created or left alone, never updated.
    """
    for entity in (e for e in DEPENDENCY_ORDER if e in entities):
        ctx = PushContext.of(
            store, target, entity, import_id, run=0, updates=entity not in found_only
        )
        pages = store.record_pages(
            import_id, entity, account=target.account, rows=chunk_size, staged=True
        )
        for records in pages:
            yield entity, plan_chunk(ctx, records)
