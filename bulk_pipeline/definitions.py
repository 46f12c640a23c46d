"""The one place that assembles the Dagster code location."""

import dagster as dg

from bulk_pipeline.defs.assets import import_assets, import_job, rollback_job
from bulk_pipeline.defs.resources import default_resources

defs = dg.Definitions(
    assets=import_assets,
    jobs=[import_job, rollback_job],
    resources=default_resources(),
)
