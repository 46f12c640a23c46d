"""What bulk_pipeline reads from the Dagster instance's runs, and how it repairs runs whose
process died.

Commands run imports in their own process (``dg.materialize``), not through the daemon. Such a
run holds its pool slots until it finishes; a process killed with ``kill -9`` never finishes, so
its run would stay "started" and its slots claimed, and every later run in that pool would wait
forever. Runs started by a command are therefore tagged with the host and process id, and each
command first marks this host's runs whose process is gone as failed and frees their slots.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from bulk_pipeline.redaction import redact
from bulk_pipeline.resume import RESUME_AT

LAUNCHED_BY_TAG = "bulk_pipeline/launched_by"
HOST_TAG = "bulk_pipeline/host"
PID_TAG = "bulk_pipeline/pid"
PARTITION_TAG = "dagster/partition"
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
IMPORT_LAST_STEP = "import_results"
SYNC_STEP = "nightly_sync"
MAX_MESSAGE_CHARS = 2_000
STOPPED_ON_REQUEST = "stopped_on_request"
"""Metadata of the failure of a push that stopped between batches when asked (Ctrl-C, SIGTERM)."""
INTERRUPTED_TAG = "bulk_pipeline/interrupted"
"""Added to a command's run that a person interrupted (Ctrl-C) outside the push, with the run's
own id: a re-execution copies its parent's tags, and was not interrupted for that."""
INTERRUPTED = (
    "interrupted (Ctrl-C or a termination signal); nothing is lost: running the same import "
    "again resumes"
)


def process_tags(launched_by: str = "cli") -> dict[str, str]:
    """Tags of a run executed by this process: who launched it, and where it runs."""
    return {LAUNCHED_BY_TAG: launched_by, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def run_kind(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """``import`` for a run of an import partition, ``sync`` for a nightly sync day, whichever
    way it was launched (the job, the UI, a backfill or a command); None for anything else,
    including runs of only some of an import's steps.

    Told by the steps the run executes: runs launched with ``materialize`` (commands, the UI's
    Materialize button) carry neither our job's name nor an asset selection.
    """
    if PARTITION_TAG not in run.tags or run.execution_plan_snapshot_id is None:
        return None
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    steps = set(plan.step_keys_to_execute)
    if IMPORT_LAST_STEP in steps:
        return "import"
    if SYNC_STEP in steps:
        return "sync"
    return None


DRY_RUN_OPS = ("crm_push", "rollback_import")


def is_dry_run(run: dg.DagsterRun) -> bool:
    """A dry run of an import or of its rollback (configured with ``dry_run: true``): it
    changes nothing, so it says nothing of the import's state."""
    ops: Any = run.run_config.get("ops") or {}
    return any(((ops.get(op) or {}).get("config") or {}).get("dry_run") for op in DRY_RUN_OPS)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail this host's command runs whose process is gone and free their pool slots.

    Returns the ids of the runs repaired. Runs of other hosts are left alone: their processes
    cannot be checked from here. So are re-executions (from the UI): they copy their parent's
    tags, the process id included, but run in a process of the daemon's.
    """
    host = socket.gethostname()
    repaired: list[str] = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: host})):
        pid_text = run.tags.get(PID_TAG, "")
        if run.parent_run_id is not None or not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        pid = int(pid_text)
        if _process_exists(pid):
            continue
        instance.report_run_failed(
            run,
            message=(
                f"the process {pid} that ran this run on {host} is gone (killed or crashed); "
                "the run was marked failed and its pool slots freed; re-run the partition to "
                "finish it"
            ),
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        repaired.append(run.run_id)
    return repaired


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed, in the words of the step that failed (or the check that blocked it)."""
    messages: list[str] = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        if isinstance(data, dg.AssetCheckEvaluation) and not data.passed:
            messages.append(f"stopped by the check {data.check_name}: {data.description}")
        elif event.is_step_failure:
            failure = event.step_failure_data
            if failure.user_failure_data is not None and failure.user_failure_data.description:
                messages.append(failure.user_failure_data.description)
            elif failure.error is not None:
                messages.append(_raised(failure.error))
        elif event.is_run_failure and not messages and event.message:
            messages.append(event.message)
    text = messages[0] if messages else "the run failed; see its logs in the Dagster UI"
    return redact(text)[:MAX_MESSAGE_CHARS]


def _raised(error: SerializableErrorInfo) -> str:
    """The message of the exception the step's code raised: Dagster wraps it in "Error occurred
    while executing op", which says nothing of the cause."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def failure_step(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The step whose failure (or blocking check) failed the run, if one did."""
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        if isinstance(data, dg.AssetCheckEvaluation) and not data.passed:
            return entry.step_key or data.asset_key.to_user_string()
        if event.is_step_failure:
            return event.step_key
    return None


def stop_reason(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Why the run stopped with its state saved (a person terminated or interrupted it, a push
    was told to stop, the CRM's budget was spent), or None when it failed of an error instead."""
    interrupted = False
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        failure = event.step_failure_data if event is not None else None
        if failure is None:
            continue
        user = failure.user_failure_data
        metadata = (user.metadata or {}) if user is not None else {}
        if user is not None and (STOPPED_ON_REQUEST in metadata or RESUME_AT in metadata):
            return redact(user.description or "stopped on request")
        interrupted |= getattr(failure.error_source, "name", None) == "INTERRUPT"
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status == dg.DagsterRunStatus.CANCELED:
        return "terminated; running the import again resumes where it stopped"
    if interrupted or (run is not None and run.tags.get(INTERRUPTED_TAG) == run.run_id):
        return INTERRUPTED
    return None


def budget_reset(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """When the CRM budget that stopped the run resets (ISO time), or None."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        failure = event.step_failure_data if event is not None else None
        user = failure.user_failure_data if failure is not None else None
        value = (user.metadata or {}).get(RESUME_AT) if user is not None else None
        if value is not None:
            return str(getattr(value, "value", value))
    return None


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    succeeded: bool
    message: str
    """Why it failed; empty when it succeeded."""


def finished_runs(
    instance: dg.DagsterInstance, requested: Mapping[str, float]
) -> dict[str, FinishedRun]:
    """For each partition key requested at a time (epoch seconds), the newest run of that
    partition created since, if it has finished. Keys whose newest run is still going, or that
    have no run yet, are absent.
    """
    if not requested:
        return {}
    since = datetime.fromtimestamp(min(requested.values()), tz=UTC)
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={PARTITION_TAG: list(requested)}, created_after=since)
    )
    newest: dict[str, dg.RunRecord] = {}
    for record in records:
        key = record.dagster_run.tags.get(PARTITION_TAG, "")
        if key not in requested or record.create_timestamp.timestamp() < requested[key]:
            continue
        if key not in newest or record.create_timestamp > newest[key].create_timestamp:
            newest[key] = record
    finished: dict[str, FinishedRun] = {}
    for key, record in newest.items():
        run = record.dagster_run
        if run.status == dg.DagsterRunStatus.SUCCESS:
            finished[key] = FinishedRun(run.run_id, succeeded=True, message="")
        elif run.status in FAILED:
            finished[key] = FinishedRun(
                run.run_id, succeeded=False, message=failure_message(instance, run.run_id)
            )
    return finished
