"""The nightly sync: each declared source, once a day, through the import's own steps.

A day's sync of a source is an import like any other, with the id ``sync-<source>-<date>``: its
snapshot is registered, then ingested, validated, staged and pushed by ``import_steps``. Staging
remembers what was last pushed to each target, so rows that did not change since the last
successful sync cost no CRM call at all, and a re-run of a failed day sends only what the CRM has
not acknowledged. A source that already finished its day is not run again.

Rows that vanished since the source's last successful sync are listed in ``vanished.csv``; with
``mirror: true`` the records this pipeline created for them are archived in the CRM.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bulk_pipeline import config, import_steps
from bulk_pipeline.csv_export import write_rows
from bulk_pipeline.errors import BudgetExhausted, BulkPipelineError, TransientError, UserInputError
from bulk_pipeline.imports import ORIGIN_SYNC, ImportRequest, register_import
from bulk_pipeline.outcomes import ChangeState
from bulk_pipeline.redaction import redact
from bulk_pipeline.reports.render import write_reports
from bulk_pipeline.sources import Source, load_sources, sources_path
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import Failed, Target

SYNC_TIME_ENV = "BULK_PIPELINE_SYNC_TIME"
SYNC_TIMEZONE_ENV = "BULK_PIPELINE_SYNC_TIMEZONE"
SYNC_START_ENV = "BULK_PIPELINE_SYNC_START"
DEFAULT_SYNC_TIME = "02:00"
DEFAULT_SYNC_TIMEZONE = "UTC"
DEFAULT_SYNC_START = "2026-01-01"
VANISHED_FILE = "vanished.csv"
SYNC_FILE = "sync.json"


@dataclass(frozen=True)
class SyncSchedule:
    """When the nightly sync runs: a time of day in a time zone, and the first day it covers."""

    hour: int
    minute: int
    timezone: str
    start: date

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SyncSchedule:
        at = environ.get(SYNC_TIME_ENV) or DEFAULT_SYNC_TIME
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", at.strip())
        if match is None:
            raise ValueError(f"{SYNC_TIME_ENV} must be HH:MM (24-hour), got {at!r}")
        timezone = environ.get(SYNC_TIMEZONE_ENV) or DEFAULT_SYNC_TIMEZONE
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{SYNC_TIMEZONE_ENV}: unknown time zone {timezone!r}") from exc
        start = environ.get(SYNC_START_ENV) or DEFAULT_SYNC_START
        try:
            first_day = date.fromisoformat(start)
        except ValueError as exc:
            raise ValueError(
                f"{SYNC_START_ENV} must be a date (YYYY-MM-DD), got {start!r}"
            ) from exc
        return cls(int(match.group(1)), int(match.group(2)), timezone, first_day)

    @property
    def cron(self) -> str:
        return f"{self.minute} {self.hour} * * *"

    def day_of(self, moment: datetime) -> date:
        """The sync day a scheduled time belongs to: its date in the schedule's time zone."""
        return moment.astimezone(ZoneInfo(self.timezone)).date()


def sync_import_id(source_name: str, day: date) -> str:
    return f"sync-{source_name}-{day.isoformat()}"


def sources_declared() -> bool:
    """Whether there is a sources.yaml to sync (a broken one counts: its run will say why)."""
    return sources_path().is_file()


@dataclass(frozen=True)
class Vanished:
    key: str
    crm_id: str | None
    created_by: str | None
    """The import that created the CRM record, when this pipeline created it."""
    action: str


@dataclass
class SourceResult:
    source: str
    import_id: str
    status: str
    """``synced``, ``already synced`` or ``failed``."""
    summary: dict[str, Any] = field(default_factory=dict)
    vanished: int = 0
    archived: int = 0
    error: str = ""
    retryable: bool = False


@dataclass
class SyncReport:
    day: date
    results: list[SourceResult] = field(default_factory=list)

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def retryable(self) -> bool:
        """Every failure is one a later attempt may fix (the CRM was unreachable or failing)."""
        return bool(self.failed) and all(r.retryable for r in self.failed)

    def describe_failures(self) -> str:
        return f"nightly sync of {self.day}: " + "; ".join(
            f"source {r.source} failed: {r.error}" for r in self.failed
        )


class SyncError(UserInputError):
    """A source's sync stopped for a reason that a re-run alone will not fix."""


def _completed_summary(import_id: str) -> dict[str, Any] | None:
    path = config.data_home() / "reports" / import_id / "summary.json"
    if not path.is_file():
        return None
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return summary


def handle_vanished(
    source: Source,
    request: ImportRequest,
    store: StagingStore,
    target: Target,
) -> list[Vanished]:
    """Report the rows gone since the last successful sync; archive them when mirroring.

    Only records this pipeline created are archived, and nothing at all when more than
    ``mirror_max_share`` of the last sync's records vanished at once (the source is then failed,
    for a person to look at). Archived records are forgotten by staging, so a row that comes back
    is created again.
    """
    previous = store.last_completed(f"sync-{source.name}-", before=request.import_id)
    if previous is None:
        return []
    gone, previous_count = store.vanished(
        previous, request.import_id, source.entity, account=target.account
    )
    too_many = bool(gone) and len(gone) > source.mirror_max_share * previous_count
    to_archive = [v for v in gone if source.mirror and not too_many and v.crm_id and v.created_by]
    done: set[str] = set()
    failures: dict[str, Failed] = {}
    if to_archive:
        archived = target.remove(source.entity, [v.crm_id or "" for v in to_archive])
        failures = {to_archive[f.index].key: f for f in archived.failed}
        done = {to_archive[w.index].key for w in archived.successful}
        store.forget_pushes(source.entity, sorted(done), account=target.account)
        for v in to_archive:
            if v.key in done and v.crm_id and v.created_by:
                store.mark_changes(
                    v.created_by,
                    source.entity,
                    {v.key: v.crm_id},
                    account=target.account,
                    run=v.created_run,
                    state=ChangeState.ROLLED_BACK,
                )
    report: list[Vanished] = []
    for v in gone:
        if v.key in done:
            action = "archived"
        elif v.key in failures:
            action = f"archive failed: {failures[v.key].message}"
        elif not source.mirror:
            action = "kept: mirror is off"
        elif not v.crm_id:
            action = "not in the CRM"
        elif not v.created_by:
            action = "kept: not created by bulk_pipeline"
        else:
            action = f"kept: more than {source.mirror_max_share:.0%} of the records vanished"
        report.append(Vanished(v.key, v.crm_id, v.created_by, action))
    _write_vanished(request.import_id, previous, report)
    if too_many and source.mirror:
        raise SyncError(
            f"{len(gone)} of the {previous_count} records of {previous} vanished, more than "
            f"mirror_max_share ({source.mirror_max_share:.0%}); nothing was archived. Check the "
            "source; if the rows really are gone, raise mirror_max_share and re-run the day"
        )
    if failures:
        message = f"{len(failures)} vanished records could not be archived"
        if all(f.retryable for f in failures.values()):
            raise TransientError(message)
        raise SyncError(message)
    return report


def _write_vanished(import_id: str, previous: str, vanished: list[Vanished]) -> None:
    write_rows(
        config.reports_dir(import_id) / VANISHED_FILE,
        ["key", "crm_id", "created_by", "action", "since"],
        ([v.key, v.crm_id or "", v.created_by or "", v.action, previous] for v in vanished),
    )


def sync_source(
    source: Source,
    day: date,
    *,
    store: StagingStore,
    open_target: Callable[[str], Target],
    account_of: Callable[[str], str],
    log: Callable[[str], None],
    again: bool = False,
) -> SourceResult:
    """One source's sync for one day; a failure is returned, not raised, so others go on.

    A source that finished the day is skipped, unless ``again``: then it is read afresh and
    synced again (only what changed since is written).
    """
    import_id = sync_import_id(source.name, day)
    done = _completed_summary(import_id)
    if done is not None and not again:
        log(f"{import_id}: already synced")
        return SourceResult(source.name, import_id, "already synced", summary=done)
    try:
        return _run(
            source, day, import_id, store, open_target, account_of(source.target), log, again
        )
    except (TransientError, BudgetExhausted) as exc:
        retryable = True
        error = redact(str(exc))
    except BulkPipelineError as exc:
        retryable = False
        error = redact(str(exc))
    except Exception as exc:  # one broken source must not stop the others; its error is shown
        retryable = False
        error = redact(f"{type(exc).__name__}: {exc}")
    log(f"{import_id} failed: {error}")
    return SourceResult(source.name, import_id, "failed", error=error, retryable=retryable)


def _run(
    source: Source,
    day: date,
    import_id: str,
    store: StagingStore,
    open_target: Callable[[str], Target],
    account: str,
    log: Callable[[str], None],
    fresh: bool = False,
) -> SourceResult:
    snapshot = source.snapshot(day, fresh=fresh)
    request = register_import(
        snapshot,
        entity=source.entity,
        target=source.target,
        on_duplicate=source.on_duplicate,
        mapping_path=source.mapping,
        max_invalid_ratio=source.max_invalid_ratio,
        list_name=source.list_name,
        create_list=source.create_list,
        import_id=import_id,
        origin=ORIGIN_SYNC,
    )
    with closing(open_target(source.target)) as target:
        import_steps.preflight(request, target)
        import_steps.ingest(request, target.fields)
    validation = import_steps.validate(request)
    if validation.invalid_ratio > source.max_invalid_ratio:
        rejected = import_steps.write_validation_rejects(request)
        raise SyncError(
            f"{validation.invalid} of {validation.rows} rows are invalid "
            f"({validation.invalid_ratio:.0%}, above max_invalid_ratio "
            f"{source.max_invalid_ratio:.0%}); nothing was sent. See {rejected}"
        )
    import_steps.stage(request, store, account)
    with closing(open_target(source.target)) as target:
        import_steps.check_list(request, target)
        import_steps.push(request, store, target, log)
        import_steps.add_to_list(request, store, target)
        vanished = handle_vanished(source, request, store, target)
    summary = import_steps.write_results(request, store)
    folder = config.reports_dir(import_id)
    write_reports(folder)
    archived = sum(v.action == "archived" for v in vanished)
    (folder / SYNC_FILE).write_text(
        json.dumps(
            {
                "source": source.name,
                "day": day.isoformat(),
                "origin": source.origin.describe(),
                "snapshot": str(snapshot),
                "vanished": len(vanished),
                "archived": archived,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    log(
        f"{import_id}: {summary.created} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.invalid} invalid, "
        f"{len(vanished)} vanished, {archived} archived"
    )
    return SourceResult(
        source.name,
        import_id,
        "synced",
        summary=summary.as_json(),
        vanished=len(vanished),
        archived=archived,
    )


def run_sync(
    day: date,
    *,
    store: StagingStore,
    open_target: Callable[[str], Target],
    account_of: Callable[[str], str],
    log: Callable[[str], None] = lambda _message: None,
    again: bool = False,
) -> SyncReport:
    """Sync every declared source for ``day`` (``again``: also those that finished it). A
    sources.yaml that cannot be read raises."""
    report = SyncReport(day)
    for source in load_sources():
        report.results.append(
            sync_source(
                source,
                day,
                store=store,
                open_target=open_target,
                account_of=account_of,
                log=log,
                again=again,
            )
        )
    return report
