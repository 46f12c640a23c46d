"""The import's steps as plain functions, one per asset, each reading and writing its work folder.

Each step reads what the previous step left in ``<data home>/work/<import id>/`` and writes its
own output there (or in staging), so any step can be re-run alone (a retry, a backfill, a UI
re-execution) and can be tested without Dagster.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import polars as pl

from bulk_pipeline import config
from bulk_pipeline.chunk_files import ParquetSink, read_chunks
from bulk_pipeline.csv_export import CsvSink, write_frames
from bulk_pipeline.entities import DEPENDENCY_ORDER, Entity, describe_key
from bulk_pipeline.errors import CrmRefused, UserInputError
from bulk_pipeline.import_parts import (
    CONTACT_COMPANY_LINK,
    DERIVED_COMPANY_FIELDS,
    ISSUE_REASON,
    Part,
    derived_companies,
    issue_files,
    issues_path,
    table_path,
)
from bulk_pipeline.imports import ORIGIN_INBOX, ImportRequest
from bulk_pipeline.ingest import (
    DEFAULT_LIMITS,
    LINE_COLUMN,
    InputFileError,
    Limits,
    RawTable,
    TableStream,
    stream_tables,
)
from bulk_pipeline.ingest.table import empty_frame
from bulk_pipeline.mapping import (
    MappedTable,
    MappingSpec,
    infer_entity,
    keep_fields,
    load_mapping,
    map_columns,
)
from bulk_pipeline.normalize import normalize
from bulk_pipeline.outcomes import (
    SUMMARY_KEYS,
    SUMMARY_OUTCOMES,
    ImportState,
    ImportSummary,
    LineOutcome,
    LinkState,
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
from bulk_pipeline.reports.crm_duplicates import (
    CRM_DUPLICATES_FILE,
    write_crm_duplicates_report,
)
from bulk_pipeline.reports.note import WrittenNote, read_note
from bulk_pipeline.reports.rejected import write_rejected_csv
from bulk_pipeline.staging import StagingRows, StagingStore, line_pages
from bulk_pipeline.staging.keys import keyed
from bulk_pipeline.targets.base import Estimate, ListResult, NoteParent, Target, Work
from bulk_pipeline.validate import validate_rows

INVALID_SCHEMA = {"_line": pl.Int64, "column": pl.String, "value": pl.String, "reason": pl.String}
REJECTED_OUTCOMES = (LineOutcome.INVALID, LineOutcome.FAILED)
PLAN_SCHEMA = {
    "sheet": pl.String,
    "line": pl.Int64,
    "entity": pl.String,
    "key": pl.String,
    "action": pl.String,
    "crm_id": pl.String,
    "changed_fields": pl.String,
    "new_links": pl.String,
    "reason": pl.String,
}
"""plan.csv: a row per record, entity by entity in the order a push writes them."""
DUPLICATES_SCHEMA = {
    "sheet": pl.String,
    "line": pl.Int64,
    "entity": pl.String,
    "key": pl.String,
    "reason": pl.String,
}
BATCHES_FILE = "push_batches.csv"
ROLLBACK_FILE = "rollback.json"
ROLLBACK_PLAN_FILE = "rollback_plan.json"
LIST_FILE = "list.json"
LISTED_OUTCOMES = (LineOutcome.CREATED, LineOutcome.UPDATED, LineOutcome.UNCHANGED)
"""Records a list option adds: those the import wrote, and those it found as they were."""


@dataclass(frozen=True)
class IngestReport:
    entity: Entity
    """The first part's entity (the only one, for most files)."""
    rows: int
    """Lines read, over every table."""
    columns: list[str]
    column_map: dict[str, str]
    unmapped: list[str]
    unreadable_rows: int
    sheet: str | None = None
    skipped_sheets: list[dict[str, str]] = field(default_factory=list)
    """The workbook's sheets not read: ``sheet``, ``reason`` and ``to_import`` (a command)."""
    warnings: list[str] = field(default_factory=list)
    """What a person should know although the import goes on (a file with no data rows)."""
    parts: list[Part] = field(default_factory=list)

    @property
    def entities(self) -> list[Entity]:
        return [e for e in DEPENDENCY_ORDER if any(p.entity is e for p in self.parts)]


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    """Outcomes to come: one per line and entity the line carries."""
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


def import_parts(import_id: str) -> list[Part]:
    """The parts the ingest step found, in reading order."""
    return [Part.from_json(part) for part in _ingest_info(import_id)["parts"]]


def derived_entities(import_id: str) -> frozenset[Entity]:
    """The entities the import only names in another entity's columns (the companies of a
    contacts file): found or created, never updated, for a contacts file does not say what
    the companies it names should hold (their name may be only the domain it gave)."""
    parts = import_parts(import_id)
    return frozenset(p.entity for p in parts) - {p.entity for p in parts if not p.derived}


def import_entity(import_id: str) -> Entity:
    """The entity of the file's first table: what a list option adds to its list."""
    return Entity(_ingest_info(import_id)["entity"])


def import_entities(import_id: str) -> list[Entity]:
    """The entities the import holds, in dependency order."""
    held = {part.entity for part in import_parts(import_id)}
    return [e for e in DEPENDENCY_ORDER if e in held]


def preflight(request: ImportRequest, target: Target) -> None:
    """The CRM answers and accepts the credentials (one cheap call), and can do what the
    import's options ask, before the file is read."""
    target.check()
    if request.list_name and not target.capabilities.lists:
        raise UserInputError(
            f"the {request.target} target has no lists to add records to; import without a list"
        )


def ingest(
    request: ImportRequest,
    accepted: Callable[[Entity], frozenset[str]] | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> IngestReport:
    """Read every table of the file, map its columns to our fields and normalize the values,
    a chunk at a time (``config.chunk_rows``): the file's rows as read, the normalized rows of
    each part and the rows that cannot be read go to the import's work folder as they come.

    ``accepted`` says which of an entity's fields the target CRM has a place for (a workspace
    without a birthday attribute), and its custom fields; columns feeding the others are
    reported as not sent, and columns named like a custom field are kept for it. ``limits``
    bound what the file may hold (an operator raises them for a larger file).
    """
    started = time.monotonic()
    progress = progress_path(request.import_id)
    report_phase(progress, Phase.READING)
    mapping = load_mapping(Path(request.mapping_path)) if request.mapping_path else None
    work = config.work_dir(request.import_id)
    for folder in ("parts", "tables"):
        shutil.rmtree(work / folder, ignore_errors=True)
    try:
        tables = stream_tables(
            Path(request.stored_path),
            entity=request.entity,
            source=request.source,
            sheet=request.sheet,
            limits=limits,
        )
        entities = [_table_entity(request, table, mapping) for table in tables]
        unrecognized = _unrecognized_sheets(tables, entities, mapping)
        derive = (accepted is None or CONTACT_COMPANY_LINK in accepted(Entity.CONTACTS)) and all(
            e is not Entity.COMPANIES for i, e in enumerate(entities) if i not in unrecognized
        )
        read = [
            _ingest_table(
                request,
                index,
                table,
                entity,
                mapping,
                accepted=accepted,
                derive=derive,
                progress=lambda lines: report_phase(
                    progress,
                    Phase.READING,
                    processed=lines,
                    elapsed_seconds=time.monotonic() - started,
                ),
            )
            for index, (table, entity) in enumerate(zip(tables, entities, strict=True))
            if index not in unrecognized
        ]
    except InputFileError as exc:
        # A library's own message may name the internal copy; people know the file they gave.
        raise InputFileError(str(exc).replace(request.stored_path, request.source)) from exc
    parts = [t.part for t in read] + [t.companies for t in read if t.companies is not None]
    lines = sum(t.part.rows for t in read)
    skipped = [
        {"sheet": s.name, "reason": s.reason, "to_import": _sheet_choice(request, s.name)}
        for table in tables
        for s in table.skipped_sheets
    ] + [
        {
            "sheet": tables[index].sheet or "",
            "reason": f"none of its columns names a field of {entities[index].value}",
            "to_import": _sheet_choice(request, tables[index].sheet or ""),
        }
        for index in sorted(unrecognized)
    ]
    warnings = [
        f"{request.source}{f' sheet {p.sheet!r}' if p.sheet else ''}: 0 data rows (only a "
        "header); nothing to import"
        for p in parts
        if p.rows == 0 and not p.derived
    ]
    first = parts[0]
    first_table = tables[first.table]
    columns = read[0].columns
    unmapped = sorted({c for p in parts if not p.derived for c in p.unmapped})
    info: dict[str, Any] = {
        "entity": first.entity.value,
        "entities": [e.value for e in DEPENDENCY_ORDER if any(p.entity is e for p in parts)],
        "rows": lines,
        "columns": columns,
        "column_map": first.column_map,
        "unmapped": unmapped,
        "encoding": first_table.encoding,
        "delimiter": first_table.delimiter,
        "sheet": first_table.sheet,
        "skipped_sheets": skipped,
        "warnings": warnings,
        "parts": [p.as_json() for p in parts],
        "tables": [
            {"columns": t.columns, "issue_columns": t.issue_columns, "unreadable": t.unreadable}
            for t in read
        ],
    }
    _work(request.import_id, "ingest.json").write_text(json.dumps(info, indent=2), "utf-8")
    _record_timing(request.import_id, "ingest", started)
    report_phase(
        progress,
        Phase.READING,
        processed=lines,
        total=lines,
        elapsed_seconds=time.monotonic() - started,
        done=True,
    )
    return IngestReport(
        entity=first.entity,
        rows=lines,
        columns=columns,
        column_map=first.column_map,
        unmapped=unmapped,
        unreadable_rows=sum(t.unreadable for t in read),
        sheet=first_table.sheet,
        skipped_sheets=skipped,
        warnings=warnings,
        parts=parts,
    )


def _unrecognized_sheets(
    tables: Sequence[TableStream], entities: Sequence[Entity], mapping: MappingSpec | None
) -> set[int]:
    """Sheets named for an entity that hold none of its fields (a "Notes" sheet of remarks
    for the reader), skipped when another sheet holds data: a sheet with some of an entity's
    columns but not the required ones is an error instead, as is a file of such sheets only."""
    unrecognized = {
        index
        for index, (table, entity) in enumerate(zip(tables, entities, strict=True))
        if table.sheet
        and not map_columns(
            RawTable(frame=empty_frame(table.headers), source=table.source), entity, mapping
        ).column_map
    }
    return unrecognized if len(unrecognized) < len(tables) else set()


def _table_entity(
    request: ImportRequest, table: TableStream, mapping: MappingSpec | None
) -> Entity:
    entity = request.entity or infer_entity(table.headers, table.entity_hint, mapping)
    if entity is None:
        raise InputFileError(_entity_unknown(request, table.headers, table.sheet or ""))
    return entity


@dataclass(frozen=True)
class _TableRead:
    part: Part
    companies: Part | None
    """The companies the table's company columns name, when derived."""
    columns: list[str]
    """The table's columns as read (without the blank-headed ones that hold nothing)."""
    issue_columns: list[str]
    """Further columns of rows that cannot be records (the extra fields of a ragged row)."""
    unreadable: int


def _ingest_table(
    request: ImportRequest,
    index: int,
    table: TableStream,
    entity: Entity,
    mapping: MappingSpec | None,
    *,
    accepted: Callable[[Entity], frozenset[str]] | None,
    derive: bool,
    progress: Callable[[int], None],
) -> _TableRead:
    """Read one table chunk by chunk: its rows as read (for rejected.csv), its rows that
    cannot be records, and its mapped and normalized rows (and the companies its contacts
    name, when ``derive``)."""
    sheet = table.sheet or ""
    part = Part(id=str(index), table=index, sheet=sheet, entity=entity, rows=0)
    company = Part(
        id=f"{index}-companies",
        table=index,
        sheet=sheet,
        entity=Entity.COMPANIES,
        rows=0,
        derived=True,
    )
    derive = derive and entity is Entity.CONTACTS
    keep = accepted(entity) if accepted is not None else None
    filled: set[str] = set()
    issue_columns: dict[str, None] = {}
    unreadable = 0
    mapped: MappedTable | None = None
    with (
        ParquetSink(table_path(request.import_id, index)) as rows_sink,
        ParquetSink(part.path(request.import_id, "mapped.parquet")) as mapped_sink,
        ParquetSink(company.path(request.import_id, "mapped.parquet")) as company_sink,
    ):
        for number, chunk in enumerate(table.chunks):
            raw = RawTable(frame=chunk.frame, source=table.source)
            mapped = map_columns(raw, entity, mapping, custom=keep or ())
            mapped = replace(mapped, frame=normalize(mapped.frame, entity))
            if keep is not None:
                mapped = keep_fields(mapped, entity, keep, table.headers)
            rows_sink.write(chunk.frame)
            mapped_sink.write(mapped.frame)
            if derive:
                companies = derived_companies(mapped.frame)
                if companies.width:
                    company_sink.write(companies)
            if chunk.rejected:
                issues = pl.DataFrame(
                    [
                        {**issue.values, LINE_COLUMN: issue.line, ISSUE_REASON: issue.reason}
                        for issue in chunk.rejected
                    ],
                    schema_overrides={LINE_COLUMN: pl.Int64},
                )
                issues.write_parquet(issues_path(request.import_id, index, number))
                issue_columns |= dict.fromkeys(
                    c for c in issues.columns if c not in (LINE_COLUMN, ISSUE_REASON)
                )
                unreadable += issues.height
            height = chunk.frame.height
            filled |= {c for c in table.blank_headers if chunk.frame[c].null_count() < height}
            part = replace(part, rows=part.rows + height + len(chunk.rejected))
            company = replace(company, rows=company_sink.rows)
            progress(part.rows)
    assert mapped is not None, "a table stream yields at least one chunk"
    empty = set(table.blank_headers) - filled
    columns = [c for c in table.headers if c not in empty]
    part = replace(
        part,
        column_map=mapped.column_map,
        unmapped=[c for c in mapped.unmapped if c not in empty],
    )
    derived = None
    if company.rows:
        derived = replace(
            company,
            column_map={
                name: mapped.column_map[ours]
                for ours, name in DERIVED_COMPANY_FIELDS.items()
                if ours in mapped.column_map
            },
        )
    else:
        shutil.rmtree(company.path(request.import_id, "mapped.parquet").parent)
    return _TableRead(
        part=part,
        companies=derived,
        columns=columns,
        issue_columns=[c for c in issue_columns if c not in columns],
        unreadable=unreadable,
    )


def _entity_unknown(request: ImportRequest, columns: Sequence[str], sheet: str = "") -> str:
    """Why the entity is unknown, and what this person can do about it where the file came from."""
    listed = ", ".join(c for c in columns if c != "_line") or "(none)"
    where = f"{request.source} sheet '{sheet}'" if sheet else request.source
    entities = ", ".join(e.value for e in Entity)
    problem = (
        f"{where}: cannot tell which entity ({entities}) the rows are from the columns {listed}"
    )
    if request.origin == ORIGIN_INBOX:
        failed = config.data_home() / "inbox" / "failed" / request.file_name
        return (
            f"{problem}. A dropped file is recognised by its sheet names or columns: an Email "
            "column means contacts, a company name with a Domain or Website column means "
            "companies, a Deal Name column means deals. Rename the sheets or columns and drop "
            f"the file again, or import it by hand: bulk-pipeline import '{failed}' --entity "
            "contacts (or another entity)"
        )
    return (
        f"{problem}. Name the sheet after the entity, pass --entity contacts (or another "
        "entity), or --mapping with a file whose section names the entity (contacts:, "
        "companies:, deals:, activities: or notes:)"
    )


def _sheet_choice(request: ImportRequest, sheet: str) -> str:
    """How to import a sheet that was skipped."""
    path = request.source
    if request.origin == ORIGIN_INBOX:
        path = str(config.data_home() / "inbox" / "processed" / request.file_name)
    return f"bulk-pipeline import '{path}' --sheet '{sheet}'"


def validate(request: ImportRequest) -> ValidationReport:
    """Split each part's normalized rows into valid rows and quarantined rows with reasons, a
    chunk at a time; the rows that could not be read join the quarantined ones. Valid rows
    are written as staging takes them (``keys.keyed``: with their dedupe key)."""
    started = time.monotonic()
    parts = import_parts(request.import_id)
    progress = progress_path(request.import_id)
    total = sum(p.rows for p in parts)
    report_phase(progress, Phase.VALIDATING, total=total)
    valid = invalid = processed = 0
    samples: list[dict[str, Any]] = []
    for part in parts:
        source = f"{request.source} sheet '{part.sheet}'" if part.sheet else request.source
        position = [p for p in parts if p.entity is part.entity].index(part)
        # The first quarantined rows of each chunk, as values: a slice of a frame would keep
        # the whole frame alive.
        first: list[dict[str, Any]] = []
        with (
            ParquetSink(part.path(request.import_id, "valid.parquet")) as valid_sink,
            ParquetSink(part.path(request.import_id, "invalid.parquet")) as invalid_sink,
        ):
            mapped = part.path(request.import_id, "mapped.parquet")
            for frame in read_chunks(mapped, config.chunk_rows()):
                result = validate_rows(frame, part.entity, source=source)
                rejected = result.rejected.select(INVALID_SCHEMA.keys()).cast(INVALID_SCHEMA)  # type: ignore[arg-type]
                valid_sink.write(keyed(result.valid, part.entity, sheet=part.sheet, part=position))
                invalid_sink.write(rejected)
                first += rejected.head(5).to_dicts()
                processed += frame.height
                report_phase(
                    progress,
                    Phase.VALIDATING,
                    processed=processed,
                    total=total,
                    elapsed_seconds=time.monotonic() - started,
                )
            if not part.derived:
                for unreadable in _unreadable(request.import_id, part.table):
                    invalid_sink.write(unreadable)
                    first += unreadable.head(5).to_dicts()
            valid += valid_sink.rows
            invalid += invalid_sink.rows
        samples += [
            {**row, "sheet": part.sheet, "entity": part.entity.value}
            for row in sorted(first, key=lambda row: int(row[LINE_COLUMN]))[:5]
        ]
    _record_timing(request.import_id, "validate", started)
    report_phase(
        progress,
        Phase.VALIDATING,
        processed=total,
        total=total,
        elapsed_seconds=time.monotonic() - started,
        done=True,
    )
    return ValidationReport(rows=total, valid=valid, invalid=invalid, sample=samples[:5])


def _unreadable(import_id: str, table: int) -> Iterator[pl.DataFrame]:
    """The table's rows that cannot be records, as quarantined rows, a chunk at a time."""
    for path in issue_files(import_id, table):
        yield pl.read_parquet(path, columns=[LINE_COLUMN, ISSUE_REASON]).select(
            LINE_COLUMN,
            pl.lit(None, pl.String).alias("column"),
            pl.lit(None, pl.String).alias("value"),
            pl.col(ISSUE_REASON).alias("reason"),
        )


def stage(request: ImportRequest, store: StagingStore, account: str) -> StageResult:
    """Deduplicate by key and stage the records with their sync state, entity by entity (rows
    of every sheet holding the entity together); starts (or resumes) the import's run."""
    started = time.monotonic()
    parts = import_parts(request.import_id)
    progress = progress_path(request.import_id)
    total = sum(p.rows for p in parts)
    report_phase(progress, Phase.STAGING, total=total)
    staged = duplicates = 0
    with store.import_lock(request.import_id):
        store.begin_run(request.import_id)
        for entity in import_entities(request.import_id):
            held = [p for p in parts if p.entity is entity]
            result = store.stage(
                request.import_id,
                entity,
                [
                    StagingRows(
                        sheet=p.sheet,
                        valid=p.path(request.import_id, "valid.parquet"),
                        invalid=p.path(request.import_id, "invalid.parquet"),
                    )
                    for p in held
                ],
                account=account,
                source_file=request.source_path,
                on_duplicate=request.on_duplicate,
            )
            staged += result.staged
            duplicates += result.duplicates
    _record_timing(request.import_id, "stage", started)
    report_phase(
        progress,
        Phase.STAGING,
        processed=total,
        total=total,
        elapsed_seconds=time.monotonic() - started,
        done=True,
    )
    return StageResult(staged=staged, duplicates=duplicates)


def supported_entities(request: ImportRequest, target: Target) -> list[Entity]:
    """The import's entities, all of which the target must take: nothing is written when one
    cannot be (the message says which sheets hold it)."""
    entities = import_entities(request.import_id)
    missing = [e for e in entities if e not in target.capabilities.entities]
    if missing:
        held = [p for p in import_parts(request.import_id) if p.entity in missing]
        where = ", ".join(
            f"{p.entity.value} ({p.where})" for p in held if not p.derived
        ) or ", ".join(e.value for e in missing)
        raise UserInputError(
            f"the {request.target} target cannot take {where}; nothing was written. Import the "
            "other sheets one by one with --sheet, or move those rows out of the file"
        )
    return entities


def push(
    request: ImportRequest,
    store: StagingStore,
    target: Target,
    log: Callable[[str], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> PushReport:
    """Send the import's records; the import is running while it does, and says why it
    stopped when it does not finish. Another run of the same import waits until this one is
    done (then finds nothing left to send)."""
    started = time.monotonic()
    entities = supported_entities(request, target)
    try:
        with store.import_lock(request.import_id):
            run = store.begin_run(request.import_id)
            return push_import(
                store,
                target,
                entities,
                import_id=request.import_id,
                run=run,
                progress_path=progress_path(request.import_id),
                batches_path=_work(request.import_id, BATCHES_FILE),
                crm_duplicates_path=_work(request.import_id, CRM_DUPLICATES_FILE),
                log=log,
                duplicates=store.outcome_counts(request.import_id)[LineOutcome.DUPLICATE],
                should_stop=should_stop,
                found_only=derived_entities(request.import_id),
            )
    finally:
        _record_timing(request.import_id, "push", started)


def check_list(request: ImportRequest, target: Target) -> None:
    """Before anything is written: the import's list exists (or is created, when asked) and
    takes records of the import's entity (its first table's, for files of several); a clear
    error otherwise."""
    if request.list_name:
        target.find_list(
            request.list_name, import_entity(request.import_id), create=request.create_list
        )


def add_to_list(request: ImportRequest, store: StagingStore, target: Target) -> ListResult | None:
    """Add every record the import wrote or found to its list, each once however often the
    import runs (records already in the list are not added again); writes ``list.json``."""
    if not request.list_name:
        return None
    entity = import_entity(request.import_id)
    pages = line_pages(
        store, request.import_id, config.chunk_rows(), outcomes=LISTED_OUTCOMES, entity=entity
    )
    ids = list(
        dict.fromkeys(crm_id for page in pages for crm_id in page["crm_id"].drop_nulls().to_list())
    )
    result = target.add_to_list(request.list_name, entity, ids, create=request.create_list)
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
    request: ImportRequest,
    store: StagingStore,
    target: Target,
    each: Callable[[Entity, list[PlannedRecord]], None] = lambda _entity, _records: None,
) -> PlanSummary:
    """What pushing the import would do, with its split and its cost; reads only (the dry
    run, and the check that blocks imports that would create too much). The plan is made a
    chunk at a time: ``each`` sees every chunk's planned records (the dry run writes them)."""
    entities = supported_entities(request, target)
    summary = PlanSummary()
    parts = {entity: PlanSummary() for entity in DEPENDENCY_ORDER if entity in entities}
    lookups = dict.fromkeys(parts, 0)
    planned = plan_import(
        store,
        target,
        entities,
        import_id=request.import_id,
        found_only=derived_entities(request.import_id),
    )
    for entity, records in planned:
        summary.add(records)
        parts[entity].add(records)
        lookups[entity] += len(records)
        each(entity, records)
    estimates = [
        target.estimate(
            entity,
            Work(
                lookups=lookups[entity],
                creates=part.creates,
                updates=part.updates,
                links=part.links,
            ),
        )
        for entity, part in parts.items()
    ]
    if estimates:
        summary.estimate = Estimate(
            requests=sum(e.requests for e in estimates),
            units=sum(e.units for e in estimates),
            unit=estimates[0].unit,
        )
    summary.entities = {entity.value: part for entity, part in parts.items()}
    return summary


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
            **self.summary.as_json(),
            "entities": {name: s.as_json() for name, s in self.summary.entities.items()},
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
    started = time.monotonic()
    progress = progress_path(request.import_id)
    counts = store.outcome_counts(request.import_id)
    unstaged = (LineOutcome.DUPLICATE, LineOutcome.INVALID)
    total = sum(counts[o] for o in LineOutcome if o not in unstaged)
    report_phase(progress, Phase.PLANNING, total=total)
    planned = 0
    folder = config.reports_dir(request.import_id)
    with CsvSink(folder / "plan.csv") as plan_csv:
        plan_csv.write(pl.DataFrame(schema=PLAN_SCHEMA))

        def write(entity: Entity, records: list[PlannedRecord]) -> None:
            nonlocal planned
            plan_csv.write(_plan_rows(entity, records))
            planned += len(records)
            report_phase(
                progress,
                Phase.PLANNING,
                processed=planned,
                total=total,
                elapsed_seconds=time.monotonic() - started,
            )

        summary = plan(request, store, target, write)
    budget = target.budget()
    units = summary.estimate.units if summary.estimate is not None else 0
    unit = summary.estimate.unit if summary.estimate is not None else "requests"
    daily = [
        s for s in budget if s.resets_at is not None and s.remaining is not None and s.unit == unit
    ]
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


def _plan_rows(entity: Entity, planned: Sequence[PlannedRecord]) -> pl.DataFrame:
    """plan.csv's rows of some planned records of one entity."""
    return pl.DataFrame(
        {
            "sheet": [p.sheet for p in planned],
            "line": [p.line for p in planned],
            "entity": [entity.value] * len(planned),
            "key": [describe_key(p.key) for p in planned],
            "action": [p.action.value for p in planned],
            "crm_id": [p.crm_id for p in planned],
            "changed_fields": [
                ", ".join(sorted(p.fields)) if p.action is Action.UPDATE else "" for p in planned
            ],
            "new_links": [", ".join(p.new_links) for p in planned],
            "reason": [p.reason for p in planned],
        },
        schema=PLAN_SCHEMA,
    )


def write_note(
    request: ImportRequest, store: StagingStore, target: Target, summary: ImportSummary
) -> WrittenNote:
    """Write the summary to the CRM as a note, once per finished import run; where notes need
    a parent record, it is attached to the first record the import wrote."""
    folder = config.reports_dir(request.import_id)
    written = read_note(folder, summary.finished_at)
    if written is not None:
        return written
    body = (
        f"bulk_pipeline import of {request.file_name} ({summary.entity}): "
        f"{summary.rows} rows, {summary.created} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.duplicates} duplicates, "
        f"{summary.invalid} invalid, {summary.failed} failed. "
        f"Import id {request.import_id}."
    )
    parent = _note_parent(request, store) if target.capabilities.note_needs_parent else None
    note_id = target.add_note(body, parent)
    written = WrittenNote(
        note_id,
        summary.finished_at,
        None if parent is None else parent.entity.value,
        None if parent is None else parent.id,
    )
    written.save(folder)
    return written


def _note_parent(request: ImportRequest, store: StagingStore) -> NoteParent:
    """The first record the import wrote (else the first it found unchanged)."""
    for outcomes in ((LineOutcome.CREATED, LineOutcome.UPDATED), (LineOutcome.UNCHANGED,)):
        for page in line_pages(store, request.import_id, config.chunk_rows(), outcomes=outcomes):
            rows = page.filter(pl.col("crm_id").is_not_null()).head(1).to_dicts()
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
    with store.import_lock(request.import_id):
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
                "unlinked": report.unlinked,
                "delete": report.delete.value,
                "restorable_days": report.restorable_days,
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


def _write_rejected(import_id: str, pages: Iterable[pl.DataFrame]) -> Path:
    """rejected.csv: the original columns of each rejected line, with its sheet (when the file
    has named sheets), entity (when the import holds several), line and reason.

    ``pages`` hold ``_sheet``, ``_line``, ``_entity`` and ``reason``, in that order from page
    to page; each page is joined with its lines as read (found by their line numbers in the
    table's rows, which are in line order) and written before the next is read."""
    info = _ingest_info(import_id)
    parts = import_parts(import_id)
    tables = {p.sheet: p.table for p in parts}
    place = [
        *(["_sheet"] if any(tables) else []),
        *(["_entity"] if len({p.entity for p in parts}) > 1 else []),
    ]
    columns = dict.fromkeys(
        c for table in info["tables"] for c in [*table["columns"], *table["issue_columns"]]
    )
    schema = {
        **dict.fromkeys(columns, pl.String),
        **dict.fromkeys(place, pl.String),
        LINE_COLUMN: pl.Int64,
        "reason": pl.String,
    }
    issues = {table: _Issues(import_id, table) for table in tables.values()}

    def frames() -> Iterator[pl.DataFrame]:
        yield pl.DataFrame(schema=schema)
        for page in pages:
            for (sheet,), lines in page.group_by("_sheet", maintain_order=True):
                table = tables[str(sheet)]
                first, last = lines.select(
                    pl.min(LINE_COLUMN).alias("first"), pl.max(LINE_COLUMN).alias("last")
                ).row(0)
                read = (
                    pl.scan_parquet(table_path(import_id, table))
                    .filter(pl.col(LINE_COLUMN).is_between(first, last))
                    .collect()
                )
                rows = pl.concat(
                    [
                        read.join(lines, on=LINE_COLUMN),
                        issues[table].between(first, last).join(lines, on=LINE_COLUMN),
                    ],
                    how="diagonal_relaxed",
                ).sort(LINE_COLUMN, "_entity", maintain_order=True)
                yield rows.select(
                    pl.col(c).cast(t) if c in rows.columns else pl.lit(None, t).alias(c)
                    for c, t in schema.items()
                )

    path = config.reports_dir(import_id) / "rejected.csv"
    write_rejected_csv(path, frames())
    return path


class _Issues:
    """A table's rows that cannot be records, as read, found by line (its issues files are in
    line order; one is read at a time, as the pages asking for them move on)."""

    def __init__(self, import_id: str, table: int) -> None:
        self._files = iter(issue_files(import_id, table))
        self._held = pl.DataFrame(schema={LINE_COLUMN: pl.Int64})

    def between(self, first: int, last: int) -> pl.DataFrame:
        while self._held.height == 0 or self._held.select(pl.max(LINE_COLUMN)).item() < last:
            path = next(self._files, None)
            if path is None:
                break
            read = pl.read_parquet(path).drop(ISSUE_REASON)
            self._held = pl.concat([self._held, read], how="diagonal_relaxed")
        self._held = self._held.filter(pl.col(LINE_COLUMN) >= first)
        return self._held.filter(pl.col(LINE_COLUMN) <= last)


def write_validation_rejects(request: ImportRequest) -> Path:
    """For an import stopped by its checks: the invalid rows, so the file can be fixed."""
    return _write_rejected(request.import_id, _invalid_pages(request.import_id))


def _invalid_pages(import_id: str) -> Iterator[pl.DataFrame]:
    """Every part's quarantined rows, sheet by sheet and a window of lines at a time (each
    part's invalid rows are in line order): the windows are the table's own chunks."""
    parts = import_parts(import_id)
    for sheet, table in sorted({(p.sheet, p.table) for p in parts}):
        held = [p for p in parts if p.table == table]
        first = 0
        lines = read_chunks(table_path(import_id, table), config.chunk_rows(), [LINE_COLUMN])
        ends = [int(chunk.select(pl.max(LINE_COLUMN)).item() or 0) for chunk in lines]
        for last in [*ends[:-1], None]:
            window = [
                pl.scan_parquet(p.path(import_id, "invalid.parquet"))
                .filter(
                    pl.col(LINE_COLUMN) >= first
                    if last is None
                    else pl.col(LINE_COLUMN).is_between(first, last)
                )
                .select(
                    pl.lit(sheet).alias("_sheet"),
                    LINE_COLUMN,
                    pl.lit(p.entity.value).alias("_entity"),
                    "reason",
                )
                for p in held
            ]
            page = pl.concat(window).collect().sort(LINE_COLUMN, "_entity")
            if page.height:
                yield page
            first = (last or 0) + 1


def write_results(request: ImportRequest, store: StagingStore) -> ImportSummary:
    """Write summary.json, rejected.csv and duplicates.csv, reading the lines' outcomes a page
    at a time; the import is then completed."""
    info = _ingest_info(request.import_id)
    parts = import_parts(request.import_id)
    counts = store.outcome_counts(request.import_id)
    pending = counts[LineOutcome.PENDING]
    if pending:
        raise RuntimeError(
            f"import {request.import_id} still has {pending} unpushed records; run its push first"
        )
    rows = config.chunk_rows()
    rejected_pages = (
        page.select(
            pl.col("sheet").alias("_sheet"),
            pl.col("line").alias(LINE_COLUMN),
            pl.col("entity").alias("_entity"),
            "reason",
        )
        for page in line_pages(store, request.import_id, rows, outcomes=REJECTED_OUTCOMES)
    )
    folder = config.reports_dir(request.import_id)
    _write_rejected(request.import_id, rejected_pages)
    duplicate_pages = (
        page.select(
            "sheet", "line", "entity", pl.col("key").map_elements(describe_key, pl.String), "reason"
        )
        for page in line_pages(store, request.import_id, rows, outcomes=[LineOutcome.DUPLICATE])
    )
    write_frames(
        folder / "duplicates.csv",
        chain([pl.DataFrame(schema=DUPLICATES_SCHEMA)], duplicate_pages),
    )
    batches = _work(request.import_id, BATCHES_FILE)
    if batches.exists():
        shutil.copyfile(batches, folder / BATCHES_FILE)
    crm_duplicates = write_crm_duplicates_report(
        _work(request.import_id, CRM_DUPLICATES_FILE), folder / CRM_DUPLICATES_FILE
    )
    timings_path = _work(request.import_id, "timings.json")
    timings = json.loads(timings_path.read_text("utf-8")) if timings_path.exists() else {}
    listed = folder / LIST_FILE
    extra = {"list": json.loads(listed.read_text("utf-8"))} if listed.exists() else {}
    entities = import_entities(request.import_id)
    summary = ImportSummary(
        import_id=request.import_id,
        file=request.source_path,
        entity=", ".join(e.value for e in entities),
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
            "entities": _entity_counts(store, request.import_id, parts),
            "parts": [
                {"sheet": p.sheet, "entity": p.entity.value, "derived": p.derived, "rows": p.rows}
                for p in parts
            ],
            "links": _link_counts(store, request.import_id),
            **extra,
            **({"crm_duplicates": crm_duplicates} if crm_duplicates else {}),
        },
    )
    expected = sum(p.rows for p in parts)
    if counts.accounted != expected:
        raise RuntimeError(
            f"import {request.import_id}: {expected} outcomes expected (a line has one per "
            f"entity it carries) but {counts.accounted} recorded; refusing to write a summary "
            "that does not add up"
        )
    (folder / "summary.json").write_text(json.dumps(summary.as_json(), indent=2), encoding="utf-8")
    store.set_state(request.import_id, ImportState.COMPLETED)
    return summary


def _entity_counts(
    store: StagingStore, import_id: str, parts: Sequence[Part]
) -> dict[str, dict[str, Any]]:
    """Per entity: the lines that carry it, and their outcomes."""
    result: dict[str, dict[str, Any]] = {}
    for entity in DEPENDENCY_ORDER:
        held = [p for p in parts if p.entity is entity]
        if not held:
            continue
        counts = store.outcome_counts(import_id, entity=entity)
        result[entity.value] = {
            "rows": sum(p.rows for p in held),
            "sheets": [p.sheet for p in held if p.sheet],
            "derived": any(p.derived for p in held),
            **{SUMMARY_KEYS[o]: counts[o] for o in SUMMARY_OUTCOMES},
        }
    return result


def _link_counts(store: StagingStore, import_id: str) -> dict[str, int]:
    """Links the import made (on creates, or by separate calls), and links it found made."""
    counts = store.link_counts(import_id)
    return {"made": counts.get(LinkState.DONE, 0), "found": counts.get(LinkState.FOUND, 0)}
