"""The import's steps as plain functions, one per asset, each reading and writing its work folder.

Each step reads what the previous step left in ``<data home>/work/<import id>/`` and writes its
own output there (or in staging), so any step can be re-run alone (a retry, a backfill, a UI
re-execution) and can be tested without Dagster.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bulk_pipeline import config
from bulk_pipeline.csv_export import write_frame
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import CrmRefused, UserInputError
from bulk_pipeline.imports import ORIGIN_INBOX, ImportRequest
from bulk_pipeline.ingest import InputFileError, read_file
from bulk_pipeline.mapping import infer_entity, keep_fields, load_mapping, map_columns
from bulk_pipeline.normalize import normalize
from bulk_pipeline.outcomes import (
    ImportState,
    ImportSummary,
    LineOutcome,
    StageResult,
)
from bulk_pipeline.progress import Phase, report_phase
from bulk_pipeline.push import (
    Action,
    PlannedRecord,
    PlanSummary,
    PushReport,
    RollbackReport,
    plan_import,
    push_import,
    rollback_import,
)
from bulk_pipeline.reports.rejected import write_rejected_csv
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import ListResult, NoteParent, Target, Work
from bulk_pipeline.validate import validate_rows

INVALID_SCHEMA = {"_line": pl.Int64, "column": pl.String, "value": pl.String, "reason": pl.String}
REJECTED_OUTCOMES = (LineOutcome.INVALID.value, LineOutcome.FAILED.value)
BATCHES_FILE = "push_batches.csv"
ROLLBACK_FILE = "rollback.json"
ROLLBACK_PLAN_FILE = "rollback_plan.json"
LIST_FILE = "list.json"
LISTED_OUTCOMES = (
    LineOutcome.CREATED.value,
    LineOutcome.UPDATED.value,
    LineOutcome.UNCHANGED.value,
)
"""Records a list option adds: those the import wrote, and those it found as they were."""


@dataclass(frozen=True)
class IngestReport:
    entity: Entity
    rows: int
    columns: list[str]
    column_map: dict[str, str]
    unmapped: list[str]
    unreadable_rows: int
    sheet: str | None = None
    skipped_sheets: list[dict[str, str]] = field(default_factory=list)
    """The workbook's sheets not read: ``sheet``, ``reason`` and ``to_import`` (a command)."""
    warnings: list[str] = field(default_factory=list)
    """What a person should know although the import goes on (a file with no data rows)."""


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    valid: int
    invalid: int
    sample: list[dict[str, Any]]

    @property
    def invalid_ratio(self) -> float:
        return self.invalid / self.rows if self.rows else 0.0


def _work(import_id: str, name: str) -> Path:
    return config.work_dir(import_id) / name


def _record_timing(import_id: str, step: str, started: float) -> None:
    """Add one step's wall-clock finish and duration; ``ingest`` starts a new record."""
    path = _work(import_id, "timings.json")
    timings = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if step == "ingest":
        timings = {}
    seconds = time.monotonic() - started
    now = datetime.now(UTC)
    timings[step] = {
        "started_at": (now - timedelta(seconds=seconds)).isoformat(timespec="seconds"),
        "finished_at": now.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
    }
    path.write_text(json.dumps(timings, indent=2), encoding="utf-8")


def _ingest_info(import_id: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(_work(import_id, "ingest.json").read_text(encoding="utf-8"))
    return info


def import_entity(import_id: str) -> Entity:
    """The entity the ingest step settled on."""
    return Entity(_ingest_info(import_id)["entity"])


def preflight(request: ImportRequest, target: Target) -> None:
    """The CRM answers and accepts the credentials (one cheap call), and can do what the
    import's options ask, before the file is read."""
    target.check()
    if request.list_name and not target.capabilities.lists:
        raise UserInputError(
            f"the {request.target} target has no lists to add records to; import without a list"
        )


def ingest(
    request: ImportRequest, accepted: Callable[[Entity], frozenset[str]] | None = None
) -> IngestReport:
    """Read the file, map its columns to our fields and normalize the values.

    ``accepted`` says which of an entity's fields the target CRM has a place for (a workspace
    without a birthday attribute); columns feeding the others are reported as not sent.
    """
    started = time.monotonic()
    progress = progress_path(request.import_id)
    report_phase(progress, Phase.READING)
    mapping = load_mapping(Path(request.mapping_path)) if request.mapping_path else None
    try:
        raw = read_file(
            Path(request.stored_path),
            entity=request.entity,
            source=request.source,
            sheet=request.sheet,
        )
    except InputFileError as exc:
        # A library's own message may name the internal copy; people know the file they gave.
        raise InputFileError(str(exc).replace(request.stored_path, request.source)) from exc
    entity = request.entity or infer_entity(raw.frame.columns, raw.entity_hint, mapping)
    if entity is None:
        raise InputFileError(_entity_unknown(request, raw.frame.columns))
    mapped = map_columns(raw, entity, mapping)
    mapped = replace(mapped, frame=normalize(mapped.frame, entity))
    columns = [c for c in raw.frame.columns if c != "_line"]
    if accepted is not None:
        mapped = keep_fields(mapped, entity, accepted(entity), columns)
    normalized = mapped.frame
    unreadable = pl.DataFrame(
        [{**issue.values, "_line": issue.line} for issue in raw.rejected],
        schema_overrides={"_line": pl.Int64},
    )
    source_rows = pl.concat([raw.frame, unreadable], how="diagonal_relaxed").sort("_line")
    source_rows.write_parquet(_work(request.import_id, "source.parquet"))
    normalized.write_parquet(_work(request.import_id, "mapped.parquet"))
    skipped = [
        {"sheet": s.name, "reason": s.reason, "to_import": _sheet_choice(request, s.name)}
        for s in raw.skipped_sheets
    ]
    warnings = [f"{request.source}: 0 data rows (only a header); nothing to import"] * (
        source_rows.height == 0
    )
    info = {
        "entity": entity.value,
        "rows": source_rows.height,
        "columns": columns,
        "column_map": mapped.column_map,
        "unmapped": mapped.unmapped,
        "encoding": raw.encoding,
        "delimiter": raw.delimiter,
        "sheet": raw.sheet,
        "skipped_sheets": skipped,
        "warnings": warnings,
        "unreadable": [{"_line": i.line, "reason": i.reason} for i in raw.rejected],
    }
    _work(request.import_id, "ingest.json").write_text(json.dumps(info, indent=2), "utf-8")
    _record_timing(request.import_id, "ingest", started)
    report_phase(
        progress,
        Phase.READING,
        processed=source_rows.height,
        total=source_rows.height,
        elapsed_seconds=time.monotonic() - started,
        done=True,
    )
    return IngestReport(
        entity=entity,
        rows=source_rows.height,
        columns=columns,
        column_map=mapped.column_map,
        unmapped=mapped.unmapped,
        unreadable_rows=len(raw.rejected),
        sheet=raw.sheet,
        skipped_sheets=skipped,
        warnings=warnings,
    )


def _entity_unknown(request: ImportRequest, columns: list[str]) -> str:
    """Why the entity is unknown, and what this person can do about it where the file came from."""
    listed = ", ".join(c for c in columns if c != "_line") or "(none)"
    problem = (
        f"{request.source}: cannot tell whether the rows are contacts, companies or deals from "
        f"the columns {listed}"
    )
    if request.origin == ORIGIN_INBOX:
        failed = config.data_home() / "inbox" / "failed" / request.file_name
        return (
            f"{problem}. A dropped file is recognised by its columns: an Email column means "
            "contacts, a company name with a Domain or Website column means companies, a Deal "
            "Name column means deals. Rename the columns and drop the file again, or import it "
            f"by hand: bulk-pipeline import '{failed}' --entity contacts (or companies, deals)"
        )
    return (
        f"{problem}. Pass --entity contacts (or companies, deals), or --mapping with a file "
        "whose section names the entity (contacts:, companies: or deals:)"
    )


def _sheet_choice(request: ImportRequest, sheet: str) -> str:
    """How to import a sheet that was skipped."""
    path = request.source
    if request.origin == ORIGIN_INBOX:
        path = str(config.data_home() / "inbox" / "processed" / request.file_name)
    return f"bulk-pipeline import '{path}' --sheet '{sheet}'"


def validate(request: ImportRequest) -> ValidationReport:
    """Split the normalized rows into valid rows and quarantined rows with reasons."""
    started = time.monotonic()
    info = _ingest_info(request.import_id)
    frame = pl.read_parquet(_work(request.import_id, "mapped.parquet"))
    progress = progress_path(request.import_id)
    report_phase(progress, Phase.VALIDATING, total=frame.height)
    result = validate_rows(frame, Entity(info["entity"]), source=request.source)
    unreadable = pl.DataFrame(info["unreadable"], schema={"_line": pl.Int64, "reason": pl.String})
    invalid = pl.concat(
        [
            result.rejected.select(INVALID_SCHEMA.keys()).cast(INVALID_SCHEMA),  # type: ignore[arg-type]
            unreadable.with_columns(
                pl.lit(None, pl.String).alias("column"), pl.lit(None, pl.String).alias("value")
            ).select(INVALID_SCHEMA.keys()),
        ]
    ).sort("_line")
    result.valid.write_parquet(_work(request.import_id, "valid.parquet"))
    invalid.write_parquet(_work(request.import_id, "invalid.parquet"))
    _record_timing(request.import_id, "validate", started)
    report_phase(
        progress,
        Phase.VALIDATING,
        processed=frame.height,
        total=frame.height,
        elapsed_seconds=time.monotonic() - started,
        done=True,
    )
    return ValidationReport(
        rows=int(info["rows"]),
        valid=result.valid.height,
        invalid=invalid.height,
        sample=invalid.head(5).to_dicts(),
    )


def stage(request: ImportRequest, store: StagingStore, account: str) -> StageResult:
    """Deduplicate by key and stage the records with their sync state; starts (or resumes)
    the import's run."""
    started = time.monotonic()
    valid = pl.read_parquet(_work(request.import_id, "valid.parquet"))
    invalid = pl.read_parquet(_work(request.import_id, "invalid.parquet"))
    progress = progress_path(request.import_id)
    report_phase(progress, Phase.STAGING, total=valid.height)
    store.begin_run(request.import_id)
    result = store.stage(
        request.import_id,
        import_entity(request.import_id),
        valid,
        invalid,
        account=account,
        source_file=request.source_path,
        on_duplicate=request.on_duplicate,
    )
    _record_timing(request.import_id, "stage", started)
    report_phase(
        progress,
        Phase.STAGING,
        processed=valid.height,
        total=valid.height,
        elapsed_seconds=time.monotonic() - started,
        done=True,
    )
    return result


def push(
    request: ImportRequest,
    store: StagingStore,
    target: Target,
    log: Callable[[str], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> PushReport:
    """Send the import's records; the import is running while it does, and says why it
    stopped when it does not finish."""
    started = time.monotonic()
    run = store.begin_run(request.import_id)
    try:
        return push_import(
            store,
            target,
            import_entity(request.import_id),
            import_id=request.import_id,
            run=run,
            progress_path=progress_path(request.import_id),
            batches_path=_work(request.import_id, BATCHES_FILE),
            log=log,
            duplicates=store.outcome_counts(request.import_id)[LineOutcome.DUPLICATE],
            should_stop=should_stop,
        )
    finally:
        _record_timing(request.import_id, "push", started)


def check_list(request: ImportRequest, target: Target) -> None:
    """Before anything is written: the import's list exists (or is created, when asked) and
    takes records of the import's entity; a clear error otherwise."""
    if request.list_name:
        target.find_list(
            request.list_name, import_entity(request.import_id), create=request.create_list
        )


def add_to_list(request: ImportRequest, store: StagingStore, target: Target) -> ListResult | None:
    """Add every record the import wrote or found to its list, each once however often the
    import runs (records already in the list are not added again); writes ``list.json``."""
    if not request.list_name:
        return None
    lines = store.line_outcomes(request.import_id).filter(
        pl.col("outcome").is_in(LISTED_OUTCOMES) & pl.col("crm_id").is_not_null()
    )
    ids = lines["crm_id"].unique(maintain_order=True).to_list()
    result = target.add_to_list(
        request.list_name, import_entity(request.import_id), ids, create=request.create_list
    )
    (config.reports_dir(request.import_id) / LIST_FILE).write_text(
        json.dumps(
            {
                "name": result.name,
                "added": result.added,
                "already": result.already,
                "failed": [f"{ids[f.index]}: {f.message}" for f in result.failed],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    if result.exhausted is not None:
        raise result.exhausted
    if result.failed:
        raise CrmRefused(
            f"{len(result.failed)} of {len(ids)} records could not be added to the list "
            f"{result.name} (first: {result.failed[0].message}); running the import again adds "
            "them without adding any record twice"
        )
    return result


def plan(
    request: ImportRequest, store: StagingStore, target: Target
) -> tuple[list[PlannedRecord], PlanSummary]:
    """What pushing the import would do, record by record, with its split and its cost; reads
    only (the dry run, and the check that blocks imports that would create too much)."""
    entity = import_entity(request.import_id)
    planned = plan_import(store, target, entity, import_id=request.import_id)
    summary = PlanSummary.of(planned)
    summary.estimate = target.estimate(
        entity, Work(lookups=len(planned), creates=summary.creates, updates=summary.updates)
    )
    return planned, summary


@dataclass(frozen=True)
class DryRunReport:
    """A dry run's plan, as plan.json holds it."""

    import_id: str
    file: str
    target: str
    summary: PlanSummary
    duplicates: int
    invalid: int
    budget: list[str]
    """What the CRM account's budget has left, limit by limit."""
    fits_budget: bool | None
    """Whether the push fits today's remaining budget (None: the CRM does not say)."""
    planned_at: str
    plan_csv: str

    def as_json(self) -> dict[str, Any]:
        estimate = self.summary.estimate
        return {
            "import_id": self.import_id,
            "file": self.file,
            "target": self.target,
            "creates": self.summary.creates,
            "updates": self.summary.updates,
            "unchanged": self.summary.unchanged,
            "conflicts": self.summary.conflicts,
            "changed_fields": self.summary.changed_field_counts,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "cost": None
            if estimate is None
            else {"requests": estimate.requests, "units": estimate.units, "unit": estimate.unit},
            "budget": self.budget,
            "fits_budget": self.fits_budget,
            "planned_at": self.planned_at,
            "plan_csv": self.plan_csv,
        }


def dry_run(request: ImportRequest, store: StagingStore, target: Target) -> DryRunReport:
    """Look every staged record up in the CRM and write the plan; nothing is written."""
    report_phase(progress_path(request.import_id), Phase.PLANNING)
    planned, summary = plan(request, store, target)
    folder = config.reports_dir(request.import_id)
    plan_rows = pl.DataFrame(
        {
            "line": [p.line for p in planned],
            "key": [p.key for p in planned],
            "action": [p.action.value for p in planned],
            "crm_id": [p.crm_id for p in planned],
            "changed_fields": [
                ", ".join(sorted(p.fields)) if p.action is Action.UPDATE else "" for p in planned
            ],
            "reason": [p.reason for p in planned],
        },
        schema_overrides={"line": pl.Int64, "crm_id": pl.String, "reason": pl.String},
    )
    write_frame(folder / "plan.csv", plan_rows)
    counts = store.outcome_counts(request.import_id)
    budget = target.budget()
    daily = [s for s in budget if s.resets_at is not None and s.remaining is not None]
    units = summary.estimate.units if summary.estimate is not None else 0
    report = DryRunReport(
        import_id=request.import_id,
        file=request.source_path,
        target=request.target,
        summary=summary,
        duplicates=counts[LineOutcome.DUPLICATE],
        invalid=counts[LineOutcome.INVALID],
        budget=[state.describe() for state in budget],
        fits_budget=all(units <= (s.remaining or 0) for s in daily) if daily else None,
        planned_at=datetime.now(UTC).isoformat(timespec="seconds"),
        plan_csv=str(folder / "plan.csv"),
    )
    (folder / "plan.json").write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    return report


def write_note(
    request: ImportRequest, store: StagingStore, target: Target, summary: ImportSummary
) -> str:
    """Write the summary to the CRM as a note, once per finished import run; where notes need
    a parent record, it is attached to the first record the import wrote."""
    folder = config.reports_dir(request.import_id)
    marker = folder / "note.json"
    if marker.exists():
        noted = json.loads(marker.read_text(encoding="utf-8"))
        if noted.get("finished_at") == summary.finished_at:
            return str(noted["note_id"])
    body = (
        f"bulk_pipeline import of {request.file_name} ({summary.entity}): "
        f"{summary.rows} rows, {summary.created} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.duplicates} duplicates, "
        f"{summary.invalid} invalid, {summary.failed} failed. "
        f"Import id {request.import_id}."
    )
    parent = _note_parent(request, store) if target.capabilities.note_needs_parent else None
    note_id = target.add_note(body, parent)
    marker.write_text(
        json.dumps(
            {
                "note_id": note_id,
                "finished_at": summary.finished_at,
                "attached_to": (
                    None if parent is None else {"entity": parent.entity.value, "id": parent.id}
                ),
            }
        ),
        encoding="utf-8",
    )
    return note_id


def _note_parent(request: ImportRequest, store: StagingStore) -> NoteParent:
    """The first record the import wrote (else the first it found unchanged)."""
    lines = store.line_outcomes(request.import_id).filter(pl.col("crm_id").is_not_null())
    for outcomes in (("created", "updated"), ("unchanged",)):
        rows = lines.filter(pl.col("outcome").is_in(outcomes)).head(1).to_dicts()
        if rows:
            return NoteParent(Entity(rows[0]["entity"]), str(rows[0]["crm_id"]))
    raise UserInputError(
        f"this CRM attaches notes to a record, and import {request.import_id} has none to "
        "attach the summary to"
    )


def rollback(
    request: ImportRequest,
    store: StagingStore,
    target: Target,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> RollbackReport:
    """Undo the import in the CRM and write ``rollback.json`` beside its summary (a dry run
    writes ``rollback_plan.json`` and changes nothing)."""
    report = rollback_import(
        store, target, import_id=request.import_id, force=force, dry_run=dry_run
    )
    if report.complete and not dry_run:
        store.set_state(
            request.import_id,
            ImportState.ROLLED_BACK,
            reason=(
                f"{len(report.conflicts)} changes left in place: changed in the CRM since"
                if report.conflicts
                else None
            ),
        )
    folder = config.reports_dir(request.import_id)
    (folder / (ROLLBACK_PLAN_FILE if dry_run else ROLLBACK_FILE)).write_text(
        json.dumps(
            {
                "import_id": request.import_id,
                "dry_run": dry_run,
                "removed": report.removed,
                "delete": report.delete.value,
                "restored": report.restored,
                "already_rolled_back": report.already_rolled_back,
                "not_found": report.not_found,
                "conflicts": report.conflicts,
                "failed": report.failed,
                "stopped": report.stopped,
                "forced": force,
                "rolled_back_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return report


def progress_path(import_id: str) -> Path:
    return _work(import_id, "progress.json")


def _write_rejected(import_id: str, rejected_lines: pl.DataFrame) -> Path:
    """rejected.csv: the original columns of each rejected line, with its line and reason."""
    source_rows = pl.read_parquet(_work(import_id, "source.parquet"))
    rejected = source_rows.join(rejected_lines, on="_line", how="inner").sort("_line")
    path = config.reports_dir(import_id) / "rejected.csv"
    write_rejected_csv(path, rejected)
    return path


def write_validation_rejects(request: ImportRequest) -> Path:
    """For an import stopped by its checks: the invalid rows, so the file can be fixed."""
    invalid = pl.read_parquet(_work(request.import_id, "invalid.parquet"))
    return _write_rejected(request.import_id, invalid.select("_line", "reason"))


def write_results(request: ImportRequest, store: StagingStore) -> ImportSummary:
    """Write summary.json and rejected.csv; the import is then completed."""
    info = _ingest_info(request.import_id)
    counts = store.outcome_counts(request.import_id)
    pending = counts[LineOutcome.PENDING]
    if pending:
        raise RuntimeError(
            f"import {request.import_id} still has {pending} unpushed records; run its push first"
        )
    lines = store.line_outcomes(request.import_id)
    rejected_lines = lines.filter(pl.col("outcome").is_in(REJECTED_OUTCOMES)).select(
        pl.col("line").alias("_line"), "reason"
    )
    folder = config.reports_dir(request.import_id)
    _write_rejected(request.import_id, rejected_lines)
    duplicates = lines.filter(pl.col("outcome") == LineOutcome.DUPLICATE.value).select(
        "line", "key", "reason"
    )
    write_frame(folder / "duplicates.csv", duplicates)
    batches = _work(request.import_id, BATCHES_FILE)
    if batches.exists():
        shutil.copyfile(batches, folder / BATCHES_FILE)
    timings_path = _work(request.import_id, "timings.json")
    timings = json.loads(timings_path.read_text("utf-8")) if timings_path.exists() else {}
    listed = folder / LIST_FILE
    extra = {"list": json.loads(listed.read_text("utf-8"))} if listed.exists() else {}
    summary = ImportSummary(
        import_id=request.import_id,
        file=request.source_path,
        entity=info["entity"],
        target=request.target,
        on_duplicate=request.on_duplicate.value,
        rows=int(info["rows"]),
        created=counts[LineOutcome.CREATED],
        updated=counts[LineOutcome.UPDATED],
        unchanged=counts[LineOutcome.UNCHANGED],
        duplicates=counts[LineOutcome.DUPLICATE],
        invalid=counts[LineOutcome.INVALID],
        failed=counts[LineOutcome.FAILED],
        unmapped_columns=info["unmapped"],
        column_map=info["column_map"],
        timings=timings,
        started_at=timings.get("ingest", {}).get("started_at"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        rejected_csv=str(folder / "rejected.csv"),
        extra={
            "sheet": info.get("sheet"),
            "skipped_sheets": info.get("skipped_sheets", []),
            "warnings": info.get("warnings", []),
            **extra,
        },
    )
    if counts.accounted != summary.rows:
        raise RuntimeError(
            f"import {request.import_id}: {summary.rows} rows read but {counts.accounted} "
            "outcomes recorded; refusing to write a summary that does not add up"
        )
    (folder / "summary.json").write_text(json.dumps(summary.as_json(), indent=2), encoding="utf-8")
    store.set_state(request.import_id, ImportState.COMPLETED)
    return summary
