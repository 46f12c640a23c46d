"""The one place that assembles the Dagster code location."""

import dagster as dg

from bulk_pipeline.defs.assets import import_assets, import_job, rollback_job
from bulk_pipeline.defs.resources import default_resources
from bulk_pipeline.defs.schedules import nightly_sync_schedule
from bulk_pipeline.defs.sensors import alert_on_run_failure, budget_resume_sensor, inbox_sensor
from bulk_pipeline.defs.sync_assets import sync_assets, sync_job

defs = dg.Definitions(
    assets=[*import_assets, *sync_assets],
    jobs=[import_job, rollback_job, sync_job],
    schedules=[nightly_sync_schedule],
    sensors=[inbox_sensor, alert_on_run_failure, budget_resume_sensor],
    resources=default_resources(),
)
