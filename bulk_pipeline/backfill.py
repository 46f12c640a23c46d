"""Re-running what failed: import partitions and nightly sync days whose latest run failed.

The Dagster UI does this with a backfill of the failed (and missing) partitions, or "Re-execute
from failure" on a run; ``bulk-pipeline retry-failed`` is the scripted way. Every step is safe to
run again (staging remembers what the CRM acknowledged, sync days already finished are skipped),
so a re-run sends only the rows not yet written and never duplicates a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from bulk_pipeline.defs.assets import import_assets
from bulk_pipeline.defs.resources import default_resources
from bulk_pipeline.defs.sync_assets import sync_assets
from bulk_pipeline.runs import (
    FAILED,
    PARTITION_TAG,
    failure_message,
    is_dry_run,
    process_tags,
    run_kind,
)

RETRY_OF_TAG = "bulk_pipeline/retry_of"


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
    instance: dg.DagsterInstance,
    failed: FailedPartition,
    *,
    run_config: Mapping[str, Any] | None = None,
) -> RetryResult:
    """Run the failed partition again in this process, on the same instance."""
    assets = import_assets if failed.kind == "import" else sync_assets
    result = dg.materialize(
        assets,
        partition_key=failed.partition_key,
        instance=instance,
        resources=default_resources(),
        raise_on_error=False,
        run_config=dict(run_config or {}),
        tags={**process_tags("retry-failed"), RETRY_OF_TAG: failed.run_id},
    )
    error = "" if result.success else failure_message(instance, result.run_id)
    return RetryResult(failed, result.run_id, result.success, error)
