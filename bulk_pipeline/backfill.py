"""Re-running what failed: import partitions and nightly sync days whose latest run failed.

The Dagster UI does this with a backfill of the failed (and missing) partitions, or "Re-execute
from failure" on a run; ``bulk-pipeline retry-failed`` is the scripted way. Every step is safe to
run again (staging remembers what the CRM acknowledged, sync days already finished are skipped),
so a re-run sends only the rows not yet written and never duplicates a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from bulk_pipeline.command_runs import import_tags, run_job
from bulk_pipeline.imports import UnknownImportError, load_import
from bulk_pipeline.runs import FAILED, PARTITION_TAG, failure_message, is_dry_run, run_kind

RETRY_OF_TAG = "bulk_pipeline/retry_of"
JOBS = {"import": "import_job", "sync": "sync_job"}


@dataclass(frozen=True)
class FailedPartition:
    kind: str
    """``import`` or ``sync``."""
    partition_key: str
    run_id: str
    """The failed run."""
    error: str


@dataclass(frozen=True)
class RetryResult:
    failed: FailedPartition
    run_id: str
    succeeded: bool
    error: str
    log_path: Path


def failed_partitions(instance: dg.DagsterInstance) -> list[FailedPartition]:
    """Import partitions and sync days whose latest run failed (dry runs aside: they write
    nothing, and re-running one must not write either)."""
    latest: dict[str, tuple[str, dg.DagsterRun]] = {}
    for record in instance.get_run_records():
        run = record.dagster_run
        key = run.tags.get(PARTITION_TAG)
        if key is None or key in latest or is_dry_run(run):
            continue
        kind = run_kind(instance, run)
        if kind is not None:
            latest[key] = (kind, run)
    return [
        FailedPartition(kind, key, run.run_id, failure_message(instance, run.run_id))
        for key, (kind, run) in sorted(latest.items(), key=lambda item: (item[1][0], item[0]))
        if run.status in FAILED
    ]


def retry_partition(
    failed: FailedPartition, *, run_config: Mapping[str, Any] | None = None
) -> RetryResult:
    """Run the failed partition again in this process, on the same instance, as the job the
    code location defines for it (so the UI lists and can re-execute it like any other)."""
    tags = {RETRY_OF_TAG: failed.run_id}
    if failed.kind == "import":
        with suppress(UnknownImportError):
            tags |= import_tags(load_import(failed.partition_key))
    run = run_job(
        JOBS[failed.kind],
        partition_key=failed.partition_key,
        tags=tags,
        run_config=run_config,
        launched_by="retry-failed",
    )
    return RetryResult(failed, run.run_id, run.success, run.error, run.log_path)
