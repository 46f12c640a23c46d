"""Push staged records to a CRM target in checkpointed chunks.

Only records whose content differs from what was last pushed to this target are sent. After each
chunk the CRM's answer is written back to staging, so a crash, a retry or a backfill resumes with
what is not yet in the CRM; writes go through the target's upsert, which never creates a second
record for a key, so even a chunk that was sent but not checkpointed is safe to send again.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bulk_pipeline.entities import Entity
from bulk_pipeline.progress import ProgressSnapshot, ProgressTracker
from bulk_pipeline.staging import (
    Outcome,
    PendingRecord,
    PushOutcome,
    plan_push,
    record_push_outcomes,
)
from bulk_pipeline.targets.base import BatchResult, CrmTarget

CHUNK_SIZE = 1_000
"""Records per checkpoint: ten CRM batches of 100."""
BATCH_LOG_COLUMNS = ("batch", "records", "seconds", "records_per_second", "finished_at")


@dataclass(frozen=True)
class PushReport:
    sent: int
    created: int
    updated: int
    failed: int
    retryable_failures: int
    """Failures that a later attempt may fix (CRM unreachable, 5xx after all retries)."""
    seconds: float
    final: ProgressSnapshot


class RetryableFailuresError(RuntimeError):
    """Some records could not be written for transient reasons; re-running the push may fix it."""


def _outcomes(chunk: tuple[PendingRecord, ...], result: BatchResult) -> list[PushOutcome]:
    outcomes: list[PushOutcome] = []
    for written in result.successful:
        record = chunk[written.index]
        outcomes.append(
            PushOutcome(
                key=record.key,
                outcome=Outcome.CREATED if written.created else Outcome.UPDATED,
                crm_id=written.id,
                content_hash=record.content_hash,
            )
        )
    for failed in result.failed:
        record = chunk[failed.index]
        outcomes.append(
            PushOutcome(
                key=record.key,
                outcome=Outcome.FAILED,
                reason=f"{failed.category}: {failed.message}",
            )
        )
    return outcomes


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
) -> PushReport:
    """Send this import's new and changed records; return what the CRM did with them.

    ``batches_path`` receives one CSV row per chunk (records, seconds, records/s) for the
    throughput chart of the report.
    """
    started = time.monotonic()
    pending = plan_push(db_path, entity, import_id=import_id, target=target_id)
    tracker = ProgressTracker(total=len(pending), path=progress_path)
    log(f"{len(pending)} records to push to {target_id}")
    retryable = 0
    batch_log = _BatchLog(batches_path)
    for start in range(0, len(pending), chunk_size):
        chunk = tuple(pending[start : start + chunk_size])
        chunk_started = time.monotonic()
        result = target.upsert_many(entity, [record.fields for record in chunk])
        record_push_outcomes(
            db_path, entity, _outcomes(chunk, result), import_id=import_id, target=target_id
        )
        batch_log.add(len(chunk), time.monotonic() - chunk_started)
        created = sum(1 for w in result.successful if w.created)
        retryable += sum(1 for f in result.failed if f.retryable)
        tracker.add(
            created=created,
            updated=len(result.successful) - created,
            failed=len(result.failed),
        )
        if tracker.due_for_log():
            log(tracker.snapshot().describe())
    final = tracker.finish()
    log(final.describe())
    report = PushReport(
        sent=len(pending),
        created=final.created,
        updated=final.updated,
        failed=final.failed,
        retryable_failures=retryable,
        seconds=time.monotonic() - started,
        final=final,
    )
    if retryable:
        raise RetryableFailuresError(
            f"{retryable} of {len(pending)} records could not be written for transient reasons "
            "(CRM unreachable or failing); they are saved as failed and will be sent again when "
            "the import is re-run"
        )
    return report
