"""The import asset graph: file -> validated rows -> staged records -> CRM push -> results.

Each asset is a thin call into ``import_steps``; this module only translates between Dagster
(partitions, retries, failures, metadata) and those plain functions.
"""

import dagster as dg

from bulk_pipeline import config, import_steps
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.resources import CrmResource, StagingResource
from bulk_pipeline.imports import ImportRequest, UnknownImportError, load_import
from bulk_pipeline.ingest import InputFileError
from bulk_pipeline.mapping import MappingError
from bulk_pipeline.push import RetryableFailuresError
from bulk_pipeline.redaction import redact
from bulk_pipeline.reports.metadata import results_metadata
from bulk_pipeline.reports.render import write_reports
from bulk_pipeline.targets.base import CrmError
from bulk_pipeline.validate import MissingColumnsError

GROUP = "imports"
PUSH_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def _request(context: dg.AssetExecutionContext) -> ImportRequest:
    try:
        return load_import(context.partition_key)
    except UnknownImportError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


@dg.asset(partitions_def=imports_partitions, group_name=GROUP, kinds={"polars"})
def source_rows(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """The file's rows, mapped to our fields and normalized."""
    request = _request(context)
    try:
        report = import_steps.ingest(request)
    except (InputFileError, MappingError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info("read %d rows of %s from %s", report.rows, report.entity, request.file_name)
    return dg.MaterializeResult(
        metadata={
            "file": request.source_path,
            "entity": report.entity.value,
            "rows": report.rows,
            "unreadable_rows": report.unreadable_rows,
            "column_map": report.column_map,
            "unmapped_columns": ", ".join(report.unmapped) or "none",
        }
    )


@dg.asset(
    partitions_def=imports_partitions, group_name=GROUP, deps=[source_rows], kinds={"pandera"}
)
def validated_rows(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Rows that pass the entity's pandera model; the rest are quarantined with reasons."""
    request = _request(context)
    try:
        report = import_steps.validate(request)
    except MissingColumnsError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info("%d valid rows, %d quarantined", report.valid, report.invalid)
    return dg.MaterializeResult(metadata={"valid": report.valid, "invalid": report.invalid})


@dg.asset(
    partitions_def=imports_partitions,
    group_name=GROUP,
    deps=[validated_rows],
    kinds={"duckdb"},
    pool="staging_db",
)
def staged_records(
    context: dg.AssetExecutionContext, crm: CrmResource, staging: StagingResource
) -> dg.MaterializeResult:
    """One record per dedupe key in the DuckDB staging file, with its sync state."""
    request = _request(context)
    result = import_steps.stage(request, staging.db_path, crm.target_id(request.target))
    context.log.info("staged %d records, %d duplicate rows", result.staged, result.duplicates)
    return dg.MaterializeResult(metadata={"staged": result.staged, "duplicates": result.duplicates})


@dg.asset(
    partitions_def=imports_partitions,
    group_name=GROUP,
    deps=[staged_records],
    kinds={"hubspot"},
    pool="crm_api",
    retry_policy=PUSH_RETRY_POLICY,
)
def crm_push(
    context: dg.AssetExecutionContext, crm: CrmResource, staging: StagingResource
) -> dg.MaterializeResult:
    """New and changed records sent to the CRM; acknowledged ones are never sent again."""
    request = _request(context)
    try:
        target = crm.open(request.target)
    except CrmError as exc:
        raise dg.Failure(description=redact(str(exc)), allow_retries=False) from exc
    try:
        report = import_steps.push(
            request, staging.db_path, target, crm.target_id(request.target), context.log.info
        )
    except RetryableFailuresError as exc:
        raise dg.Failure(description=str(exc), allow_retries=True) from exc
    except CrmError as exc:
        raise dg.Failure(description=redact(str(exc)), allow_retries=exc.retryable) from exc
    finally:
        target.close()
    return dg.MaterializeResult(
        metadata={
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
    context: dg.AssetExecutionContext, staging: StagingResource
) -> dg.MaterializeResult:
    """summary.json and rejected.csv in the import's report folder; counts in the UI."""
    request = _request(context)
    summary = import_steps.write_results(request, staging.db_path)
    html_report, _ = write_reports(config.reports_dir(request.import_id))
    context.log.info(
        "%s: %d rows, %d created, %d updated, %d unchanged, %d duplicates, %d invalid, %d failed",
        request.import_id,
        summary["rows"],
        summary["created"],
        summary["updated"],
        summary["unchanged"],
        summary["duplicates"],
        summary["invalid"],
        summary["failed"],
    )
    return dg.MaterializeResult(metadata=results_metadata(summary, html_report))


import_assets = [source_rows, validated_rows, staged_records, crm_push, import_results]

import_job = dg.define_asset_job(
    "import_job",
    selection=dg.AssetSelection.assets(*import_assets),
    description="Import one file (one partition) into its CRM target.",
)
