"""Commands run the code location's own jobs, named and tagged, with their records in a log file.

A command runs ``import_job``, ``rollback_job`` or ``sync_job`` of ``definitions.defs`` in its own
process, so the UI lists the run under the job's name, with tags saying which file, import and
target it is, and can re-execute it (from failure, too) like any run it launched itself.

Dagster's log records, stack traces included, go to ``<data home>/logs/<partition>.<run>.log``
instead of the terminal, where a person wants one short message about what went wrong;
``verbose`` also prints them as they happen.
"""

from __future__ import annotations

import sys
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.repository_definition.valid_definitions import (
    SINGLETON_REPOSITORY_NAME,
)
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from bulk_pipeline import config
from bulk_pipeline.imports import ImportRequest
from bulk_pipeline.instance import open_instance
from bulk_pipeline.interrupts import interrupts_seen
from bulk_pipeline.redaction import redact
from bulk_pipeline.runs import (
    INTERRUPTED_TAG,
    budget_reset,
    failure_message,
    failure_step,
    process_tags,
    recover_dead_runs,
    stop_reason,
)

FILE_TAG = "bulk_pipeline/file"
IMPORT_TAG = "bulk_pipeline/import_id"
TARGET_TAG = "bulk_pipeline/target"
LOGS_DIR = "logs"
RUN_ID_CHARS = 8
CODE_LOCATION = "bulk_pipeline"
"""``location_name`` in workspace.yaml, ``code_location_name`` in pyproject.toml."""
DEFINITIONS_MODULE = "bulk_pipeline.definitions"
"""Of the run id in a log file's name: enough to tell a partition's runs apart."""


@dataclass(frozen=True)
class CommandRun:
    run_id: str
    success: bool
    error: str
    """Why it failed, in the words of the step or check that failed; empty on success."""
    failed_step: str | None
    """The step (asset or op) that failed, when one did."""
    log_path: Path
    stopped: bool = False
    """A person stopped it (Ctrl-C, termination), or the CRM's budget ran out: not an error,
    and running again resumes."""
    resume_at: str | None = None
    """When the CRM's budget resets, for a run stopped because it was spent."""


def import_tags(request: ImportRequest) -> dict[str, str]:
    """What the UI's runs list shows about an import run: the file, the import and the CRM."""
    return {
        FILE_TAG: request.file_name,
        IMPORT_TAG: request.import_id,
        TARGET_TAG: request.target,
    }


def log_path_for(partition_key: str, run_id: str) -> Path:
    folder = config.data_home() / LOGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{partition_key}.{run_id[:RUN_ID_CHARS]}.log"


def run_job(
    job_name: str,
    *,
    partition_key: str,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    verbose: bool = False,
    launched_by: str = "cli",
) -> CommandRun:
    """Run one partition of a job of the code location in this process, on the shared instance.

    The run's records are written to its log file when it ends, however it ends (an interrupt
    included, which is then raised again).
    """
    from bulk_pipeline.definitions import defs
    from bulk_pipeline.defs.resources import default_resources

    instance = open_instance()
    recover_dead_runs(instance)
    run_id = str(uuid.uuid4())
    log_path = log_path_for(partition_key, run_id)
    level = "DEBUG" if verbose else "CRITICAL"
    with (
        _recorded_as_runs_of_the_code_location(instance, job_name),
        interrupts_seen() as interrupts,
        _warnings_kept() as caught,
    ):
        try:
            result = defs.resolve_job_def(job_name).execute_in_process(
                run_config={
                    **(run_config or {}),
                    "loggers": {"console": {"config": {"log_level": level}}},
                },
                instance=instance,
                partition_key=partition_key,
                raise_on_error=False,
                run_id=run_id,
                tags={**process_tags(launched_by), **(tags or {})},
                resources=default_resources(),
            )
        finally:
            write_run_log(instance, run_id, log_path, caught)
    if result.success:
        return CommandRun(run_id, True, "", None, log_path)
    if interrupts.count > 0:
        instance.add_run_tags(run_id, {INTERRUPTED_TAG: run_id})
    stopped = stop_reason(instance, run_id)
    return CommandRun(
        run_id,
        False,
        stopped or failure_message(instance, run_id),
        failure_step(instance, run_id),
        log_path,
        stopped=stopped is not None,
        resume_at=budget_reset(instance, run_id),
    )


def code_location_job_origin(job_name: str) -> RemoteJobOrigin:
    """Where the UI finds the job of a run: the code location of workspace.yaml (and
    ``[tool.dg.project]``), its one repository, the job's name."""
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE),
        location_name=CODE_LOCATION,
    )
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name)


@contextmanager
def _recorded_as_runs_of_the_code_location(
    instance: dg.DagsterInstance, job_name: str
) -> Iterator[None]:
    """Record the run ``execute_in_process`` creates with the code location it belongs to.

    ``execute_in_process`` records no origin, and the UI re-executes a run ("Re-execute",
    "From failure") through its origin: without one the button fails. The instance object is
    this command's own, and only this run is created on it meanwhile.
    """
    create = instance.create_run_for_job
    origin = code_location_job_origin(job_name)

    def create_with_origin(*args: Any, **kwargs: Any) -> dg.DagsterRun:
        return create(*args, **{**kwargs, "remote_job_origin": origin})

    instance.create_run_for_job = create_with_origin  # type: ignore[method-assign]
    try:
        yield
    finally:
        del instance.create_run_for_job


@contextmanager
def _warnings_kept() -> Iterator[list[warnings.WarningMessage]]:
    """Library warnings raised during a run go to its log file, not between progress lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        yield caught


def write_run_log(
    instance: dg.DagsterInstance,
    run_id: str,
    path: Path,
    caught: list[warnings.WarningMessage] | None = None,
) -> Path:
    """Every record of the run, failures with their stack traces, secrets masked."""
    lines: list[str] = []
    for entry in instance.all_logs(run_id):
        when = datetime.fromtimestamp(entry.timestamp, tz=UTC).isoformat(timespec="milliseconds")
        level = _level_name(entry.level)
        step = entry.step_key or "-"
        event = entry.dagster_event
        message = entry.user_message or (event.message if event is not None else "") or ""
        if event is not None and not entry.user_message:
            message = f"{event.event_type_value}: {message}"
        lines.append(f"{when} {level:<8} {step:<16} {message}")
        error = entry.error_info
        if error is None and event is not None and event.is_step_failure:
            error = event.step_failure_data.error
        if error is not None:
            lines.append(error.to_string())
    for warning in caught or []:
        lines.append(f"warning: {warning.category.__name__}: {warning.message}")
    path.write_text(redact("\n".join(lines)) + "\n", encoding="utf-8")
    return path


def _level_name(level: int | str) -> str:
    import logging

    return logging.getLevelName(level) if isinstance(level, int) else str(level)
