"""Push staged records to a CRM target in checkpointed chunks.

For each chunk: look the records up by unique key, create the missing ones, update only the
fields that differ, and leave identical ones alone. What is about to change is written down
before it is sent (with the CRM's previous values, for rollback), and the CRM's answers are
checkpointed after. A crash, a retry, a terminated run or a backfill therefore resumes safely:
the next lookup finds whatever the lost answer had created, and nothing is written twice.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bulk_pipeline.entities import Entity
from bulk_pipeline.plan import Action, PlannedRecord, plan_record
from bulk_pipeline.progress import ProgressSnapshot, ProgressTracker
from bulk_pipeline.staging import (
    Change,
    Outcome,
    PendingRecord,
    PushOutcome,
    discard_intended_changes,
    import_changes,
    plan_push,
    record_intended_changes,
    record_push_outcomes,
    staged_records,
)
from bulk_pipeline.targets.base import BatchResult, CrmError, CrmRecord, CrmTarget

CONFLICT = "CONFLICT"
CHUNK_SIZE = 1_000
"""Records per checkpoint: ten CRM batches of 100 (each checkpoint costs a staging write)."""
BATCH_LOG_COLUMNS = ("batch", "records", "seconds", "records_per_second", "finished_at")


@dataclass(frozen=True)
class PushReport:
    sent: int
    created: int
    updated: int
    unchanged: int
    failed: int
    retryable_failures: int
    """Failures that a later attempt may fix (CRM unreachable, 5xx after all retries)."""
    seconds: float
    final: ProgressSnapshot


class RetryableFailuresError(RuntimeError):
    """Some records could not be written for transient reasons; re-running the push may fix it."""


class PushStopped(RuntimeError):
    """The push was asked to stop and did, between two batches, with its state saved."""


class _BatchLog:
    """Appends one row per chunk, so the figures survive a crash mid-push."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        if path is not None:
            with path.open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow(BATCH_LOG_COLUMNS)

    def add(self, records: int, seconds: float) -> None:
        self.count += 1
        if self.path is None:
            return
        rate = records / seconds if seconds > 0 else 0.0
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(
                [self.count, records, round(seconds, 4), round(rate, 1), finished]
            )


CLOCK_SKEW = timedelta(seconds=2)
"""How far the CRM's clock may run behind ours when telling who created a record."""


def _settle_unconfirmed_creates(
    earlier: dict[str, Change],
    found: dict[str, CrmRecord],
    *,
    db_path: Path,
    import_id: str,
    target_id: str,
) -> dict[str, Change]:
    """Decide creates that a crashed attempt recorded but never saw confirmed.

    A record the CRM created after the intent was recorded is ours. One that is older was there
    before the import (the crash fell between a refused create and forgetting its intent): its
    intent is dropped, so it is never counted as created nor archived by a rollback.
    """
    theirs = [
        key
        for key, change in earlier.items()
        if change.action == Action.CREATE.value
        and change.state == "intended"
        and change.recorded_at is not None
        and (record := found.get(key.casefold())) is not None
        and record.created_at is not None
        and record.created_at < change.recorded_at - CLOCK_SKEW
    ]
    if not theirs:
        return earlier
    discard_intended_changes(db_path, theirs, import_id=import_id, target=target_id)
    return {key: change for key, change in earlier.items() if key not in theirs}


def lookup_plan(
    target: CrmTarget, entity: Entity, records: Sequence[PendingRecord]
) -> list[PlannedRecord]:
    """Compare records with what the CRM holds under their keys (batched reads, no writes)."""
    found = target.find_by_keys(entity, [r.key for r in records]).found
    return [
        plan_record(r.key, r.line, r.fields, found.get(r.key.casefold()), known_crm_id=r.crm_id)
        for r in records
    ]


def plan_import(
    db_path: Path,
    target: CrmTarget,
    entity: Entity,
    *,
    import_id: str,
    target_id: str,
    chunk_size: int = CHUNK_SIZE,
) -> list[PlannedRecord]:
    """What pushing this import would do to every record it staged; reads only."""
    records = staged_records(db_path, entity, import_id=import_id, target=target_id)
    planned: list[PlannedRecord] = []
    for start in range(0, len(records), chunk_size):
        planned += lookup_plan(target, entity, records[start : start + chunk_size])
    return planned


@dataclass
class _ChunkOutcome:
    outcomes: list[PushOutcome]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    retryable: int = 0
    written: dict[str, str] = field(default_factory=dict)
    """CRM ids of the records this chunk wrote, by key."""
    existing: int = 0
    """Records this pipeline never wrote that the CRM held already (their key exists)."""


def _written(
    planned: Sequence[PlannedRecord],
    result: BatchResult,
    hashes: dict[str, str],
    earlier: dict[str, Change],
    chunk: _ChunkOutcome,
) -> dict[str, str]:
    """Turn a write result into outcomes; returns the CRM ids of what was written, by key."""
    ids: dict[str, str] = {}
    for written in result.successful:
        record = planned[written.index]
        ids[record.key] = written.id
        created = record.action is Action.CREATE or (
            record.key in earlier and earlier[record.key].action == "create"
        )
        chunk.outcomes.append(
            PushOutcome(
                key=record.key,
                outcome=Outcome.CREATED if created else Outcome.UPDATED,
                crm_id=written.id,
                content_hash=hashes[record.key],
            )
        )
        if created:
            chunk.created += 1
        else:
            chunk.updated += 1
    for failed in result.failed:
        record = planned[failed.index]
        chunk.outcomes.append(
            PushOutcome(key=record.key, outcome=Outcome.FAILED, reason=failed.message)
        )
        chunk.failed += 1
        chunk.retryable += int(failed.retryable)
    return ids


def _create_optimistically(
    target: CrmTarget,
    entity: Entity,
    fresh: Sequence[PendingRecord],
    chunk: _ChunkOutcome,
    *,
    db_path: Path,
    import_id: str,
    target_id: str,
    earlier: dict[str, Change],
) -> list[PendingRecord]:
    """Create records this pipeline never wrote without looking them up first.

    Only for CRMs that refuse a second record with the same key: a batch that hits an existing
    key is refused whole (nothing written), and its records are returned for the lookup path.
    A first import into a CRM that does not hold the records thus costs one call per batch.
    """
    planned = [PlannedRecord(r.key, r.line, Action.CREATE, r.fields) for r in fresh]
    keys = [r.key for r in fresh]
    record_intended_changes(
        db_path,
        entity,
        [Change(key, Action.CREATE.value, None, {}, "intended") for key in keys],
        import_id=import_id,
        target=target_id,
    )
    result = target.create_many(entity, [r.fields for r in fresh], isolate_conflicts=False)
    conflicted = {f.index for f in result.failed if f.category == CONFLICT}
    result.failed = [f for f in result.failed if f.index not in conflicted]
    chunk.written |= _written(
        planned, result, {r.key: r.content_hash for r in fresh}, earlier, chunk
    )
    discard_intended_changes(
        db_path, [keys[i] for i in conflicted], import_id=import_id, target=target_id
    )
    chunk.existing += len(conflicted)
    return [fresh[i] for i in sorted(conflicted)]


def _push_chunk(
    target: CrmTarget,
    entity: Entity,
    records: Sequence[PendingRecord],
    *,
    db_path: Path,
    import_id: str,
    target_id: str,
    earlier: dict[str, Change],
    optimistic: bool,
) -> _ChunkOutcome:
    chunk = _ChunkOutcome(outcomes=[])
    to_look_up = list(records)
    if optimistic and target.enforces_unique_keys(entity):
        fresh = [r for r in records if r.crm_id is None and r.key not in earlier]
        if fresh:
            known = [r for r in records if r.crm_id is not None or r.key in earlier]
            to_look_up = known + _create_optimistically(
                target,
                entity,
                fresh,
                chunk,
                db_path=db_path,
                import_id=import_id,
                target_id=target_id,
                earlier=earlier,
            )
    if to_look_up:
        _look_up_and_write(
            target,
            entity,
            to_look_up,
            chunk,
            db_path=db_path,
            import_id=import_id,
            target_id=target_id,
            earlier=earlier,
        )
    return chunk


def _look_up_and_write(
    target: CrmTarget,
    entity: Entity,
    records: Sequence[PendingRecord],
    chunk: _ChunkOutcome,
    *,
    db_path: Path,
    import_id: str,
    target_id: str,
    earlier: dict[str, Change],
) -> None:
    """Look records up by key, then create the missing and update only what differs."""
    hashes = {r.key: r.content_hash for r in records}
    try:
        found = target.find_by_keys(entity, [r.key for r in records]).found
    except CrmError as exc:
        if not exc.retryable:
            raise
        reason = f"could not look up existing records: {exc}"
        chunk.outcomes += [PushOutcome(r.key, Outcome.FAILED, reason=reason) for r in records]
        chunk.failed += len(records)
        chunk.retryable += len(records)
        return
    earlier = _settle_unconfirmed_creates(
        earlier, found, db_path=db_path, import_id=import_id, target_id=target_id
    )
    planned = [
        plan_record(r.key, r.line, r.fields, found.get(r.key.casefold()), known_crm_id=r.crm_id)
        for r in records
    ]
    unknown_to_us = {r.key for r in records if r.crm_id is None and r.key not in earlier}
    chunk.existing += sum(p.key in unknown_to_us and p.action is not Action.CREATE for p in planned)
    creates = [p for p in planned if p.action is Action.CREATE]
    updates = [p for p in planned if p.action is Action.UPDATE]
    for p in planned:
        if p.action is Action.UNCHANGED:
            previous = earlier.get(p.key)
            resumed = previous is not None and previous.state != "rolled_back"
            outcome = Outcome.UNCHANGED
            if resumed and previous is not None:
                outcome = Outcome.CREATED if previous.action == "create" else Outcome.UPDATED
            chunk.outcomes.append(
                PushOutcome(p.key, outcome, crm_id=p.crm_id, content_hash=hashes[p.key])
            )
            chunk.created += outcome is Outcome.CREATED
            chunk.updated += outcome is Outcome.UPDATED
            chunk.unchanged += outcome is Outcome.UNCHANGED
        elif p.action is Action.CONFLICT:
            chunk.outcomes.append(PushOutcome(p.key, Outcome.FAILED, reason=p.reason))
            chunk.failed += 1
    record_intended_changes(
        db_path,
        entity,
        [Change(p.key, p.action.value, p.crm_id, p.before, "intended") for p in creates + updates],
        import_id=import_id,
        target=target_id,
    )
    if updates:
        result = target.update_many(
            entity, [p.crm_id or "" for p in updates], [p.fields for p in updates]
        )
        chunk.written |= _written(updates, result, hashes, earlier, chunk)
    if creates:
        result = target.create_many(entity, [p.fields for p in creates], known_absent=True)
        chunk.written |= _written(creates, result, hashes, earlier, chunk)


def push_import(
    db_path: Path,
    target: CrmTarget,
    entity: Entity,
    *,
    import_id: str,
    target_id: str,
    progress_path: Path | None = None,
    batches_path: Path | None = None,
    log: Callable[[str], None] = lambda _message: None,
    chunk_size: int = CHUNK_SIZE,
    duplicates: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
) -> PushReport:
    """Send this import's new and changed records; return what the CRM did with them.

    ``batches_path`` receives one CSV row per chunk (records, seconds, records/s) for the
    throughput chart of the report.
    """
    started = time.monotonic()
    pending = plan_push(db_path, entity, import_id=import_id, target=target_id)
    earlier = {c.key: c for c in import_changes(db_path, import_id=import_id, target=target_id)}
    tracker = ProgressTracker(
        total=len(pending),
        path=progress_path,
        batches=-(-len(pending) // chunk_size),
        duplicates=duplicates,
    )
    log(f"{len(pending)} records to push to {target_id}")
    batch_log = _BatchLog(batches_path)
    unchanged = retryable = 0
    optimistic = True
    """Create without looking up first while the CRM turns out not to hold the records."""
    for start in range(0, len(pending), chunk_size):
        chunk_started = time.monotonic()
        records = pending[start : start + chunk_size]
        chunk = _push_chunk(
            target,
            entity,
            records,
            db_path=db_path,
            import_id=import_id,
            target_id=target_id,
            earlier=earlier,
            optimistic=optimistic,
        )
        optimistic = chunk.existing == 0
        record_push_outcomes(
            db_path,
            entity,
            chunk.outcomes,
            import_id=import_id,
            target=target_id,
            done_changes=chunk.written,
        )
        batch_log.add(len(records), time.monotonic() - chunk_started)
        unchanged += chunk.unchanged
        retryable += chunk.retryable
        tracker.add(
            created=chunk.created,
            updated=chunk.updated,
            failed=chunk.failed,
            unchanged=chunk.unchanged,
        )
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
    if retryable:
        raise RetryableFailuresError(
            f"{retryable} of {len(pending)} records could not be written for transient reasons "
            "(CRM unreachable or failing); they are saved as failed and will be sent again when "
            "the import is re-run"
        )
    return PushReport(
        sent=len(pending),
        created=final.created,
        updated=final.updated,
        unchanged=unchanged,
        failed=final.failed,
        retryable_failures=retryable,
        seconds=time.monotonic() - started,
        final=final,
    )
