"""The true state of each import, from what it left behind: its Dagster runs, then its files.

An import's latest run says most: running or queued, stopped by a person, failed (and why),
completed, or rolled back (a successful ``rollback_job`` run). Dry runs change nothing, so they
do not count. Imports that ran without runs of their own (a nightly sync's sources run inside
the day's run) are told by their files: ``summary.json`` once completed, ``rollback.json``
once rolled back.

This module is the one place that reads import state for people (``status``, ``report``), so
the source of truth can move without touching them. Where the staging store takes readers while
others write (PostgreSQL), imports without runs of their own are told by its ``imports`` table,
the store's typed state with its reason, instead of their files. The DuckDB file allows one
process at a time, and ``status`` must answer while an import holds it: there, files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import dagster as dg

from bulk_pipeline import config
from bulk_pipeline import outcomes as staged
from bulk_pipeline.runs import (
    PARTITION_TAG,
    failure_message,
    is_dry_run,
    stop_reason,
)
from bulk_pipeline.staging import StagingStore, open_store

ROLLBACK_JOB = "rollback_job"
SUMMARY_FILE = "summary.json"
ROLLBACK_FILE = "rollback.json"


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled back"
    NOT_RUN = "not run"
    """Registered, never run (or only dry-run)."""


WAITING = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}
GOING = {
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.MANAGED,
    dg.DagsterRunStatus.SUSPENDED,
}


@dataclass(frozen=True)
class ImportState:
    import_id: str
    state: State
    when: datetime | None
    """When it got there: finished, failed, rolled back; started for a running import."""
    reason: str = ""
    """Why it failed or stopped."""
    run_id: str | None = None
    """The run that decided the state, when a run did."""


STORED_STATES = {
    staged.ImportState.RUNNING: State.RUNNING,
    staged.ImportState.STOPPED: State.STOPPED,
    staged.ImportState.FAILED: State.FAILED,
    staged.ImportState.COMPLETED: State.COMPLETED,
    staged.ImportState.ROLLED_BACK: State.ROLLED_BACK,
}


def import_states(
    instance: dg.DagsterInstance,
    import_ids: Iterable[str],
    store: StagingStore | None = None,
) -> dict[str, ImportState]:
    """The state of each import, by id; ``store`` defaults to the deployment's PostgreSQL
    store when one is configured."""
    ids = list(import_ids)
    if store is None and config.database_url():
        store = open_store()
    stored = store.statuses(ids) if store is not None and store.concurrent_readers else None
    latest: dict[str, dg.RunRecord] = {}
    if ids:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: ids}))
        for record in records:
            run = record.dagster_run
            key = run.tags.get(PARTITION_TAG, "")
            if key not in ids or is_dry_run(run):
                continue
            if key not in latest or record.create_timestamp > latest[key].create_timestamp:
                latest[key] = record
    return {
        import_id: (
            _from_run(instance, import_id, latest[import_id])
            if import_id in latest
            else _from_store(import_id, stored)
            if stored is not None
            else _from_files(import_id)
        )
        for import_id in ids
    }


def _from_run(instance: dg.DagsterInstance, import_id: str, record: dg.RunRecord) -> ImportState:
    run = record.dagster_run
    rollback = run.job_name == ROLLBACK_JOB
    ended = _time(record.end_time) or record.update_timestamp
    if run.status in WAITING:
        return ImportState(import_id, State.QUEUED, record.create_timestamp, run_id=run.run_id)
    if run.status in GOING:
        started = _time(record.start_time) or record.create_timestamp
        return ImportState(import_id, State.RUNNING, started, run_id=run.run_id)
    if run.status == dg.DagsterRunStatus.SUCCESS:
        state = State.ROLLED_BACK if rollback else State.COMPLETED
        return ImportState(import_id, state, ended, run_id=run.run_id)
    stopped = stop_reason(instance, run.run_id)
    if stopped is not None and not rollback:
        return ImportState(import_id, State.STOPPED, ended, stopped, run.run_id)
    reason = stopped or failure_message(instance, run.run_id)
    if rollback:
        reason = f"the rollback did not finish: {reason}"
    return ImportState(import_id, State.FAILED, ended, reason, run.run_id)


def _from_store(import_id: str, stored: dict[str, staged.ImportStatus]) -> ImportState:
    status = stored.get(import_id)
    if status is None:
        return ImportState(import_id, State.NOT_RUN, None)
    reason = "" if status.state is staged.ImportState.COMPLETED else (status.reason or "")
    when = status.updated_at.astimezone(UTC) if status.updated_at else None
    return ImportState(import_id, STORED_STATES[status.state], when, reason)


def _from_files(import_id: str) -> ImportState:
    folder = config.data_home() / "reports" / import_id
    summary = _read(folder / SUMMARY_FILE)
    rollback = _read(folder / ROLLBACK_FILE)
    finished = _iso(summary.get("finished_at")) if summary else None
    rolled_back = _iso(rollback.get("rolled_back_at")) if rollback else None
    if (
        rolled_back is not None
        and not rollback.get("failed")
        and (finished is None or rolled_back >= finished)
    ):
        return ImportState(import_id, State.ROLLED_BACK, rolled_back)
    if summary:
        return ImportState(import_id, State.COMPLETED, finished)
    return ImportState(import_id, State.NOT_RUN, None)


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _iso(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _time(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None
