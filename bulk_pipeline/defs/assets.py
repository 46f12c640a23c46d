"""The import asset graph: file -> validated rows -> staged records -> CRM push -> results.

Each asset is a thin call into ``import_steps``; this module only translates between Dagster
(partitions, checks, retries, metadata) and those plain functions. Errors become Dagster
failures in one place (``failures.py``).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from bulk_pipeline import config, import_steps
from bulk_pipeline.defs.failures import import_failures
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.resources import CrmResource, StagingResource
from bulk_pipeline.imports import ImportRequest, UnknownImportError, load_import
from bulk_pipeline.instance import CRM_POOL, STAGING_POOL
from bulk_pipeline.interrupts import stop_between_batches
from bulk_pipeline.reports.metadata import plan_metadata, results_metadata
from bulk_pipeline.reports.render import write_reports
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets import Target
from bulk_pipeline.targets.base import DeleteKind

GROUP = "imports"
PUSH_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""For crashes of the step itself; the CRM's own failures are retried inside the push, within
the configured retry window, and then fail the step for good."""
INVALID_RATIO_CHECK = "invalid_ratio_within_threshold"
CREATE_SHARE_CHECK = "create_share_within_threshold"


class PushConfig(dg.Config):
    dry_run: bool = False
    """Look every record up in the CRM and report the plan; write nothing."""


class RollbackConfig(dg.Config):
    force: bool = False
    """Undo fields and records even where the CRM's values changed since the import."""
    dry_run: bool = False
    """Report what the rollback would do; change nothing."""
    confirm_permanent_delete: bool = False
    """Where the CRM deletes records for good, the rollback removes created records only when
    this confirms it."""


def _request(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> ImportRequest:
    try:
        return load_import(context.partition_key)
    except UnknownImportError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


@contextmanager
def _target(
    crm: CrmResource, request: ImportRequest, store: StagingStore | None
) -> Iterator[Target]:
    with import_failures(store, request.import_id):
        target = crm.open(request.target)
        try:
            yield target
        finally:
            target.close()


@dg.asset(partitions_def=imports_partitions, group_name=GROUP, kinds={"polars"})
def source_rows(
    context: dg.AssetExecutionContext, crm: CrmResource, staging: StagingResource
) -> dg.MaterializeResult:
    """The file's rows, mapped to our fields and normalized; first, a preflight of the CRM
    (credentials accepted, CRM answering, the import's options possible there), so a wrong token
    fails before the file is read. Columns the CRM has no place for are reported, not sent."""
    request = _request(context)
    store = staging.store
    with _target(crm, request, store) as target:
        import_steps.preflight(request, target)
        report = import_steps.ingest(request, target.fields)
    entities = ", ".join(e.value for e in report.entities)
    context.log.info("read %d rows of %s from %s", report.rows, entities, request.file_name)
    for skipped in report.skipped_sheets:
        context.log.warning(
            "sheet %r not imported: %s; to import it: %s",
            skipped["sheet"],
            skipped["reason"],
            skipped["to_import"],
        )
    for warning in report.warnings:
        context.log.warning(warning)
    return dg.MaterializeResult(
        metadata={
            "file": request.source_path,
            "entity": entities,
            "rows": report.rows,
            "parts": dg.MetadataValue.md(
                "\n".join(
                    ["| sheet | entity | rows |", "|---|---|---:|"]
                    + [
                        f"| {p.sheet or '-'} | {p.entity.value}"
                        f"{' (from company columns)' if p.derived else ''} | {p.rows:,} |"
                        for p in report.parts
                    ]
                )
            ),
            "unreadable_rows": report.unreadable_rows,
            "column_map": report.column_map,
            "unmapped_columns": ", ".join(report.unmapped) or "none",
            "sheet": report.sheet or "-",
            "skipped_sheets": ", ".join(s["sheet"] for s in report.skipped_sheets) or "none",
            "warnings": "; ".join(report.warnings) or "none",
        }
    )


def _check_identity(request: ImportRequest) -> dict[str, str]:
    """On every check result, so a check's history (all imports together) reads per import."""
    return {"import_id": request.import_id, "file": request.file_name}


@dg.asset(
    partitions_def=imports_partitions,
    group_name=GROUP,
    deps=[source_rows],
    kinds={"pandera"},
    check_specs=[
        dg.AssetCheckSpec(
            INVALID_RATIO_CHECK,
            asset="validated_rows",
            blocking=True,
            description="Blocks the push when too many rows are invalid (a wrong file or mapping).",
        )
    ],
)
def validated_rows(
    context: dg.AssetExecutionContext, staging: StagingResource
) -> dg.MaterializeResult:
    """Rows that pass the entity's pandera model; the rest are quarantined with reasons."""
    request = _request(context)
    with import_failures(staging.store, request.import_id):
        report = import_steps.validate(request)
    context.log.info("%d valid rows, %d quarantined", report.valid, report.invalid)
    passed = report.invalid_ratio <= request.max_invalid_ratio
    check = dg.AssetCheckResult(
        check_name=INVALID_RATIO_CHECK,
        passed=passed,
        description=(
            f"{request.file_name}: {report.invalid} of {report.rows} rows are invalid "
            f"({report.invalid_ratio:.0%}); the threshold is {request.max_invalid_ratio:.0%}"
            + ("" if passed else ": nothing was sent to the CRM; fix the file or the mapping")
        ),
        metadata={
            **_check_identity(request),
            "invalid_ratio": report.invalid_ratio,
            "threshold": request.max_invalid_ratio,
        },
    )
    if not passed:
        import_steps.write_validation_rejects(request)
    return dg.MaterializeResult(
        metadata={"valid": report.valid, "invalid": report.invalid},
        check_results=[check],
    )


@dg.asset(
    partitions_def=imports_partitions,
    group_name=GROUP,
    deps=[validated_rows],
    kinds={"postgres" if config.database_url() else "duckdb"},
    pool=STAGING_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            CREATE_SHARE_CHECK,
            asset="staged_records",
            blocking=True,
            description="When the import sets max_create_share, blocks a push that would "
            "create more new records than that share.",
        )
    ],
)
def staged_records(
    context: dg.AssetExecutionContext, crm: CrmResource, staging: StagingResource
) -> dg.MaterializeResult:
    """One record per dedupe key in the staging store, with its sync state."""
    request = _request(context)
    store = staging.store
    with import_failures(store, request.import_id):
        result = import_steps.stage(request, store, crm.account(request.target))
    context.log.info("staged %d records, %d duplicate rows", result.staged, result.duplicates)
    if request.max_create_share is None:
        check = dg.AssetCheckResult(
            check_name=CREATE_SHARE_CHECK,
            passed=True,
            description=f"{request.file_name}: no threshold set",
            metadata=_check_identity(request),
        )
    else:
        with _target(crm, request, store) as target:
            plan = import_steps.plan(request, store, target)
        passed = plan.create_share <= request.max_create_share
        check = dg.AssetCheckResult(
            check_name=CREATE_SHARE_CHECK,
            passed=passed,
            description=(
                f"{request.file_name}: {plan.creates} of {plan.total} records would be created "
                f"({plan.create_share:.0%}); the threshold is {request.max_create_share:.0%}"
            ),
            metadata={
                **_check_identity(request),
                "create_share": plan.create_share,
                "creates": plan.creates,
            },
        )
    return dg.MaterializeResult(
        metadata={"staged": result.staged, "duplicates": result.duplicates},
        check_results=[check],
    )


@dg.asset(
    partitions_def=imports_partitions,
    group_name=GROUP,
    deps=[staged_records],
    kinds={"crm"},
    pool=CRM_POOL,
    retry_policy=PUSH_RETRY_POLICY,
    output_required=False,
)
def crm_push(
    context: dg.AssetExecutionContext,
    config: PushConfig,
    crm: CrmResource,
    staging: StagingResource,
) -> Iterator[dg.MaterializeResult]:
    """New and changed records sent to the CRM; acknowledged ones are never sent again.

    A dry run records the plan as an observation and materializes nothing, so the results
    asset after it is skipped.
    """
    request = _request(context)
    store = staging.store
    with _target(crm, request, store) as target:
        if not (config.dry_run and request.create_list):
            import_steps.check_list(request, target)
        if config.dry_run:
            plan = import_steps.dry_run(request, store, target)
            context.log.info(
                "dry run: %d creates, %d updates, %d unchanged, %d conflicts; nothing written",
                plan.summary.creates,
                plan.summary.updates,
                plan.summary.unchanged,
                plan.summary.conflicts,
            )
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    partition=context.partition_key,
                    metadata=plan_metadata(plan.as_json()),
                )
            )
            return
        with stop_between_batches() as stop:
            report = import_steps.push(request, store, target, context.log.info, stop)
        listed = import_steps.add_to_list(request, store, target)
    if listed is not None:
        context.log.info(
            "list %s: %d records added, %d already in it", listed.name, listed.added, listed.already
        )
    yield dg.MaterializeResult(
        metadata={
            "target": request.target,
            "sent": report.sent,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "failed": report.failed,
            "records_per_second": round(report.final.records_per_second, 1),
            "seconds": round(report.seconds, 2),
        }
    )


@dg.asset(partitions_def=imports_partitions, group_name=GROUP, deps=[crm_push])
def import_results(
    context: dg.AssetExecutionContext, crm: CrmResource, staging: StagingResource
) -> dg.MaterializeResult:
    """summary.json, rejected.csv and the HTML report in the import's folder; counts in the UI."""
    request = _request(context)
    store = staging.store
    with import_failures(store, request.import_id):
        summary = import_steps.write_results(request, store)
    html_report, _ = write_reports(config.reports_dir(request.import_id))
    context.log.info(
        "%s: %d rows, %d created, %d updated, %d unchanged, %d duplicates, %d invalid, %d failed",
        request.import_id,
        summary.rows,
        summary.created,
        summary.updated,
        summary.unchanged,
        summary.duplicates,
        summary.invalid,
        summary.failed,
    )
    if request.note:
        with _target(crm, request, store) as target:
            note = import_steps.write_note(request, store, target, summary)
        context.log.info("%s", note.describe())
    return dg.MaterializeResult(metadata=results_metadata(summary.as_json(), html_report))


import_assets = [source_rows, validated_rows, staged_records, crm_push, import_results]

import_job = dg.define_asset_job(
    "import_job",
    selection=dg.AssetSelection.assets(*import_assets),
    description="Import one file (one partition) into its CRM target.",
)


@dg.op(required_resource_keys={"crm", "staging"})
def rollback_import(context: dg.OpExecutionContext, config: RollbackConfig) -> dg.Output[None]:
    """Remove what the import created and restore what it updated, leaving alone what people
    changed since (unless forced); safe to run again after a stop."""
    request = _request(context)
    crm: CrmResource = context.resources.crm
    staging: StagingResource = context.resources.staging
    store = staging.store
    with _target(crm, request, store) as target:
        permanent = target.capabilities.delete is DeleteKind.PERMANENT
        if permanent and not (config.dry_run or config.confirm_permanent_delete):
            raise dg.Failure(
                description=(
                    f"{request.target} deletes records for good: run the rollback as a dry run "
                    "first, then confirm the deletion (bulk-pipeline rollback --yes)"
                ),
                allow_retries=False,
            )
        report = import_steps.rollback(
            request, store, target, force=config.force, dry_run=config.dry_run
        )
    context.log.info(
        "rollback of %s%s: %d removed (%s), %d restored, %d already rolled back, %d conflicts, "
        "%d failed",
        request.import_id,
        " (dry run)" if config.dry_run else "",
        report.removed,
        report.delete.value,
        report.restored,
        report.already_rolled_back,
        len(report.conflicts),
        len(report.failed),
    )
    if not report.complete:
        problems = report.failed[:10] + ([report.stopped] if report.stopped else [])
        raise dg.Failure(
            description="the rollback did not finish (run it again to complete it): "
            + "; ".join(problems)
        )
    return dg.Output(
        None,
        metadata={
            "removed": report.removed,
            "restored": report.restored,
            "already_rolled_back": report.already_rolled_back,
            "conflicts": len(report.conflicts),
            "dry_run": config.dry_run,
        },
    )


@dg.job(partitions_def=imports_partitions, description="Undo one import in its CRM.")
def rollback_job() -> None:
    rollback_import()
