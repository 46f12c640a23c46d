"""Sensors: the inbox that starts imports, the alert posted when any run fails, and the relaunch of
imports stopped by a spent CRM budget once it has reset.

Both are thin: the inbox logic lives in ``inbox.py``, the run queries in ``runs.py``, the
message and its delivery in ``alerts.py``.
"""

import time

import dagster as dg

from bulk_pipeline import alerts, inbox, resume, runs
from bulk_pipeline.defs.assets import import_job
from bulk_pipeline.defs.partitions import imports_partitions

INBOX_INTERVAL_SECONDS = 30


@dg.sensor(
    name="inbox_sensor",
    job=import_job,
    minimum_interval_seconds=INBOX_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Imports each complete file dropped into <data home>/inbox/.",
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    cursor = inbox.InboxCursor.from_json(context.cursor)
    finished = runs.finished_runs(context.instance, cursor.requested_times())
    tick = inbox.tick(cursor, finished, now=time.time(), settings=inbox.InboxSettings.from_env())
    context.log.info("inbox: %s", tick.describe())
    for planned in tick.runs:
        context.log.info(
            "inbox: %s -> partition %s", inbox.printable(planned.file_name), planned.import_id
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=planned.run_key,
                partition_key=planned.import_id,
                tags={runs.LAUNCHED_BY_TAG: "inbox"},
            )
            for planned in tick.runs
        ],
        dynamic_partitions_requests=(
            [imports_partitions.build_add_request([p.import_id for p in tick.runs])]
            if tick.runs
            else []
        ),
        cursor=tick.cursor.to_json(),
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs to the webhook in BULK_PIPELINE_ALERT_WEBHOOK, when set.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> dg.SkipReason | None:
    url = alerts.webhook_url()
    if url is None:
        return dg.SkipReason(f"{alerts.WEBHOOK_ENV} is not set")
    run = context.dagster_run
    failed = alerts.FailedRun(
        run_id=run.run_id,
        job_name=run.job_name,
        kind=runs.run_kind(context.instance, run),
        partition_key=run.tags.get(runs.PARTITION_TAG),
        error=runs.failure_message(context.instance, run.run_id),
    )
    alerts.post_alert(url, alerts.alert_message(failed))
    return None


RESUME_INTERVAL_SECONDS = 60


@dg.sensor(
    name="budget_resume_sensor",
    job=import_job,
    minimum_interval_seconds=RESUME_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches again each import stopped by a spent CRM budget, once it has reset.",
)
def budget_resume_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    due = resume.due(time.time())
    for paused in due:
        context.log.info("resuming %s: its %s has reset", paused.import_id, paused.budget)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{paused.import_id}@{paused.resume_at}",
                partition_key=paused.import_id,
                tags={runs.LAUNCHED_BY_TAG: "budget_resume_sensor"},
            )
            for paused in due
        ]
    )
