"""The persistent Dagster instance shared by the UI and the CLI, under the data home.

Two pools keep concurrent runs safe: ``staging_db`` (steps that write the DuckDB staging file,
which allows one writer process at a time) and ``crm_api`` (steps that call the CRM, so that
parallel runs share its rate limit instead of each spending all of it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bulk_pipeline import config
from bulk_pipeline.config import file_lock

if TYPE_CHECKING:
    import dagster as dg

CRM_POOL = "crm_api"
STAGING_POOL = "staging_db"
CRM_POOL_LIMIT_ENV = "BULK_PIPELINE_CRM_POOL_LIMIT"
DEFAULT_CRM_POOL_LIMIT = 1
STAGING_POOL_LIMIT = 1
INIT_LOCK_FILE = ".bulk_pipeline.lock"

DAGSTER_YAML = """\
# Written by bulk_pipeline on first use; edit freely, it is not overwritten.
telemetry:
  enabled: false
concurrency:
  runs:
    # The run queue: at most this many runs launched by the daemon (sensors, schedules,
    # backfills, the UI) are in progress at once; the others wait in the queue.
    max_concurrent_runs: 4
  pools:
    # One step at a time in a pool unless it has its own limit. staging_db (writers of
    # staging.duckdb) stays at 1; bulk-pipeline commands set crm_api from
    # $BULK_PIPELINE_CRM_POOL_LIMIT (default 1), or: dagster instance concurrency set crm_api N
    default_limit: 1
    granularity: op
"""


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at ``<data home>/dagster`` (unless set) and give it a dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.data_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def crm_pool_limit() -> int:
    raw = os.environ.get(CRM_POOL_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_CRM_POOL_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{CRM_POOL_LIMIT_ENV} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def pool_limits() -> dict[str, int]:
    return {CRM_POOL: crm_pool_limit(), STAGING_POOL: STAGING_POOL_LIMIT}


def open_instance() -> dg.DagsterInstance:
    """The persistent instance, with the pool limits applied.

    Opening it is serialized between processes: several commands starting at once on a new data
    home would otherwise all create the instance's SQLite tables and fail on each other's.
    """
    import dagster as dg

    home = ensure_dagster_home()
    with file_lock(home / INIT_LOCK_FILE):
        instance = dg.DagsterInstance.get()
        apply_pool_limits(instance)
    return instance


def apply_pool_limits(instance: dg.DagsterInstance) -> None:
    """Give each pool its limit, writing only when it differs (slots may be held meanwhile)."""
    storage = instance.event_log_storage
    for pool, limit in pool_limits().items():
        if storage.get_concurrency_info(pool).slot_count != limit:
            storage.set_concurrency_slots(pool, limit)
