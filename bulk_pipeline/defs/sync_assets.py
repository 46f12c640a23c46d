"""The nightly sync as a daily-partitioned asset: one partition per day, every source in it.

The asset is a thin call into ``sync.run_sync``. A day with any failed source fails (so it shows
as failed in the UI and an alert goes out) after the healthy sources were synced; re-running the
day syncs only the sources that have not finished it. The schedule's time and time zone come from
the environment (see ``sync.SyncSchedule``), read when the code location loads.
"""

from datetime import date
from typing import Any

import dagster as dg

from bulk_pipeline import sync
from bulk_pipeline.defs.assets import PUSH_RETRY_POLICY
from bulk_pipeline.defs.resources import CrmResource, StagingResource
from bulk_pipeline.instance import CRM_POOL
from bulk_pipeline.sources import SourceError

SYNC_GROUP = "sync"
schedule_settings = sync.SyncSchedule.from_env()

sync_partitions = dg.DailyPartitionsDefinition(
    start_date=schedule_settings.start.isoformat(),
    timezone=schedule_settings.timezone,
    end_offset=1,
)
"""Days up to and including today: the sync at 02:00 on a day is that day's partition."""


class SyncConfig(dg.Config):
    again: bool = False
    """Read and sync again the sources that already finished the day."""


def _metadata(report: sync.SyncReport) -> dict[str, Any]:
    rows = [
        "| source | status | created | updated | unchanged | invalid | failed | vanished | "
        "archived |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.results:
        counts = [r.summary.get(k, "") for k in ("created", "updated", "unchanged")]
        counts += [r.summary.get(k, "") for k in ("invalid", "failed")]
        rows.append(
            f"| {r.source} | {r.status} | "
            + " | ".join(str(c) for c in counts)
            + f" | {r.vanished} | {r.archived} |"
        )
    return {
        "sources": len(report.results),
        "failed_sources": ", ".join(r.source for r in report.failed) or "none",
        "created": sum(int(r.summary.get("created", 0)) for r in report.results),
        "updated": sum(int(r.summary.get("updated", 0)) for r in report.results),
        "archived": sum(r.archived for r in report.results),
        "summary": dg.MetadataValue.md("\n".join(rows)),
    }


@dg.asset(
    partitions_def=sync_partitions,
    group_name=SYNC_GROUP,
    kinds={"duckdb", "crm"},
    pool=CRM_POOL,
    retry_policy=PUSH_RETRY_POLICY,
)
def nightly_sync(
    context: dg.AssetExecutionContext,
    config: SyncConfig,
    crm: CrmResource,
    staging: StagingResource,
) -> dg.MaterializeResult:
    """Every source of sources.yaml read once for the day; only changed rows are pushed."""
    try:
        report = sync.run_sync(
            date.fromisoformat(context.partition_key),
            store=staging.store,
            open_target=crm.open,
            account_of=crm.account,
            log=context.log.info,
            again=config.again,
        )
    except SourceError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    metadata = _metadata(report)
    if report.failed:
        raise dg.Failure(
            description=report.describe_failures(),
            metadata=metadata,
            allow_retries=report.retryable,
        )
    return dg.MaterializeResult(metadata=metadata)


sync_assets = [nightly_sync]

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.assets(*sync_assets),
    description="Sync every source of sources.yaml for one day.",
)
