"""The nightly sync's schedule: each day at the configured time, that day's partition."""

import dagster as dg

from bulk_pipeline import sync
from bulk_pipeline.defs.sync_assets import schedule_settings, sync_job


@dg.schedule(
    name="nightly_sync_schedule",
    job=sync_job,
    cron_schedule=schedule_settings.cron,
    execution_timezone=schedule_settings.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sync every source of sources.yaml once a day (BULK_PIPELINE_SYNC_TIME, "
    "BULK_PIPELINE_SYNC_TIMEZONE).",
)
def nightly_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    if not sync.sources_declared():
        return dg.SkipReason("no sources.yaml in the data home: nothing to sync")
    day = schedule_settings.day_of(context.scheduled_execution_time).isoformat()
    return dg.RunRequest(run_key=day, partition_key=day)
