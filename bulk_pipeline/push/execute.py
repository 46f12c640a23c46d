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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.errors import BudgetExhausted, TransientError
from bulk_pipeline.outcomes import (
    Change,
    ChangeAction,
    ChangeState,
    Intent,
    LineOutcome,
    PendingRecord,
    Proof,
    PushOutcome,
)
from bulk_pipeline.progress import ProgressSnapshot, ProgressTracker
from bulk_pipeline.push.plan import Action, PlannedRecord, created_by, plan_record
from bulk_pipeline.reports.batches import BatchLog
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import BatchResult, CrmRecord, Failed, FailureKind, Target

CHUNK_SIZE = 1_000
"""Records per checkpoint: ten CRM batches of 100 (each checkpoint costs a staging write)."""


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

    @property
    def account(self) -> str:
        return self.target.account

    @property
    def key_field(self) -> str:
        return ENTITY_SPECS[self.entity].key_field

    def key_values(self, records: Sequence[PendingRecord]) -> list[str]:
        return [r.fields.get(self.key_field, r.key) for r in records]


@dataclass
class ChunkOutcome:
    outcomes: list[PushOutcome] = field(default_factory=list)
    done: dict[str, str] = field(default_factory=dict)
    """CRM ids of the changes this chunk saw acknowledged, by key."""
    existing: int = 0
    """Records this pipeline never wrote that the CRM held already (their key exists)."""
    stop: BudgetExhausted | TransientError | None = None
    """Why the push must stop after checkpointing this chunk."""

    def count(self, outcome: LineOutcome) -> int:
        return sum(o.outcome is outcome for o in self.outcomes)

    def add(
        self, key: str, outcome: LineOutcome, crm_id: str | None = None, reason: str = ""
    ) -> None:
        self.outcomes.append(PushOutcome(key, outcome, crm_id, reason or None))


def current_records(
    ctx: PushContext, records: Sequence[PendingRecord]
) -> tuple[dict[str, CrmRecord], list[PendingRecord]]:
    """What the CRM holds for records this pipeline wrote before (read by id), and the records
    whose CRM record must be found by key (never written, or deleted or merged since)."""
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


def look_up(ctx: PushContext, records: Sequence[PendingRecord]) -> dict[str, CrmRecord]:
    if not records:
        return {}
    return ctx.target.lookup(ctx.entity, ctx.key_values(records))


def plan_chunk(ctx: PushContext, records: Sequence[PendingRecord]) -> list[PlannedRecord]:
    """What pushing these records would do, against the CRM's current values (reads only)."""
    current, unknown = current_records(ctx, records)
    current |= look_up(ctx, unknown)
    return [
        plan_record(r.key, r.line, r.fields, current.get(r.key), known_crm_id=r.crm_id)
        for r in records
    ]


class ChunkPush:
    """One chunk of a push: decide, record intents, send, and say what happened per record."""

    def __init__(self, ctx: PushContext, earlier: dict[str, Change], *, optimistic: bool) -> None:
        self.ctx = ctx
        self.earlier = earlier
        """This run's changes recorded by earlier attempts, by key."""
        self.optimistic = optimistic
        self.result = ChunkOutcome()

    def run(self, records: Sequence[PendingRecord]) -> ChunkOutcome:
        ctx = self.ctx
        try:
            current, unknown = current_records(ctx, records)
            fresh: list[PendingRecord] = []
            if self.optimistic and self._may_create_without_lookup():
                fresh = [r for r in unknown if r.key not in self.earlier]
                unknown = [r for r in unknown if r.key in self.earlier]
            found = look_up(ctx, unknown)
            self._settle_unconfirmed(found)
            current |= found
            self.result.existing += sum(
                r.key in found and r.key not in self.earlier for r in unknown
            )
            if fresh:
                current |= self._create_optimistically(fresh)
            sent_fresh = {id(r) for r in fresh}
            to_plan = [r for r in records if id(r) not in sent_fresh or r.key in current]
            planned = [
                plan_record(r.key, r.line, r.fields, current.get(r.key), known_crm_id=r.crm_id)
                for r in to_plan
            ]
            self._write(planned)
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
        result = ctx.target.create(ctx.entity, [r.fields for r in fresh])
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
            [PlannedRecord(r.key, r.line, Action.CREATE, r.fields) for r in fresh], result
        )
        return {key: record for key, record in existing.items() if record is not None}

    def _write(self, planned: Sequence[PlannedRecord]) -> None:
        ctx = self.ctx
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
            self._account(creates, ctx.target.create(ctx.entity, [p.fields for p in creates]))

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


def push_import(
    store: StagingStore,
    target: Target,
    entity: Entity,
    *,
    import_id: str,
    run: int,
    progress_path: Path | None = None,
    batches_path: Path | None = None,
    log: Callable[[str], None] = lambda _message: None,
    chunk_size: int = CHUNK_SIZE,
    duplicates: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
) -> PushReport:
    """Send this import's records; return what the CRM did with them.

    Raises ``BudgetExhausted`` or ``TransientError`` after saving what was done when the CRM's
    budget runs out or the CRM stops answering, and ``PushStopped`` when asked to stop.
    """
    started = time.monotonic()
    ctx = PushContext(store, target, entity, import_id, run)
    pending = store.pending(import_id, entity, account=target.account)
    earlier = {
        c.key: c
        for c in store.changes(import_id, account=target.account)
        if c.run == run and c.entity is entity
    }
    tracker = ProgressTracker(
        total=len(pending),
        path=progress_path,
        batches=-(-len(pending) // chunk_size),
        duplicates=duplicates,
    )
    log(f"{len(pending)} records to push to {target.name}")
    if pending and target.crm_now() is None:
        target.check()
    batch_log = BatchLog(batches_path)
    optimistic = True
    """Create without looking up first while the CRM turns out not to hold the records."""
    for start in range(0, len(pending), chunk_size):
        records = pending[start : start + chunk_size]
        chunk = ChunkPush(ctx, earlier, optimistic=optimistic).run(records)
        optimistic = chunk.existing == 0
        store.checkpoint(
            import_id, entity, chunk.outcomes, account=target.account, run=run, done=chunk.done
        )
        batch_log.add(len(chunk.outcomes))
        tracker.add(
            created=chunk.count(LineOutcome.CREATED),
            updated=chunk.count(LineOutcome.UPDATED),
            failed=chunk.count(LineOutcome.FAILED),
            unchanged=chunk.count(LineOutcome.UNCHANGED),
        )
        if chunk.stop is not None:
            tracker.finish()
            raise chunk.stop
        if tracker.due_for_log():
            log(tracker.snapshot().describe())
        if should_stop() and start + chunk_size < len(pending):
            snapshot = tracker.finish()
            raise PushStopped(
                f"stopped on request after batch {snapshot.batch} of {snapshot.batches} "
                f"({snapshot.processed} of {snapshot.total} records done); the state is saved "
                "and running the import again resumes where it stopped"
            )
    final = tracker.finish()
    log(final.describe())
    return PushReport(
        sent=len(pending),
        created=final.created,
        updated=final.updated,
        unchanged=final.unchanged,
        failed=final.failed,
        seconds=time.monotonic() - started,
        final=final,
    )


def plan_import(
    store: StagingStore,
    target: Target,
    entity: Entity,
    *,
    import_id: str,
    chunk_size: int = CHUNK_SIZE,
) -> list[PlannedRecord]:
    """What pushing this import would do to every record it staged; reads only."""
    ctx = PushContext(store, target, entity, import_id, run=0)
    records = store.staged(import_id, entity, account=target.account)
    planned: list[PlannedRecord] = []
    for start in range(0, len(records), chunk_size):
        planned += plan_chunk(ctx, records[start : start + chunk_size])
    return planned
