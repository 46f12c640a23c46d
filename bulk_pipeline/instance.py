"""The persistent Dagster instance shared by the UI and the CLI, under the data home.

Its runs, events and schedules are kept in SQLite files there, or in PostgreSQL when
``BULK_PIPELINE_DATABASE_URL`` is set (dagster-postgres): SQLite reports "database is locked"
under many parallel runs, and a deployment on several machines needs one storage for all.

Two pools keep concurrent runs safe, their limits following the staging store:

- ``staging_db``, the steps that write staging. DuckDB allows one writer process per file, so 1;
  PostgreSQL takes many writers at once ($BULK_PIPELINE_STAGING_POOL_LIMIT, default 8).
- ``crm_api``, the steps that call a CRM. With DuckDB, budgets are shared only within a process,
  so 1 keeps parallel runs from each spending a whole account's limit; with PostgreSQL every
  process shares each account's rolling windows through the database (``budget_ledger.py``), so
  pushes run side by side ($BULK_PIPELINE_CRM_POOL_LIMIT, default 8).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bulk_pipeline import config
from bulk_pipeline.config import file_lock

if TYPE_CHECKING:
    import dagster as dg

CRM_POOL = "crm_api"
STAGING_POOL = "staging_db"
CRM_POOL_LIMIT_ENV = "BULK_PIPELINE_CRM_POOL_LIMIT"
STAGING_POOL_LIMIT_ENV = "BULK_PIPELINE_STAGING_POOL_LIMIT"
EMBEDDED_POOL_LIMIT = 1
SHARED_POOL_LIMIT = 8
"""Default limit of both pools when staging and budgets are in PostgreSQL."""
INIT_LOCK_FILE = ".bulk_pipeline.lock"

DAGSTER_YAML = """\
# Written by bulk_pipeline on first use; edit freely, it is not overwritten.
telemetry:
  enabled: false
concurrency:
  runs:
    # The run queue: at most this many runs launched by the daemon (sensors, schedules,
    # backfills, the UI) are in progress at once; the others wait in the queue.
    max_concurrent_runs: {max_runs}
  pools:
    # One step at a time in a pool unless it has its own limit. bulk-pipeline commands set
    # staging_db and crm_api from $BULK_PIPELINE_STAGING_POOL_LIMIT and
    # $BULK_PIPELINE_CRM_POOL_LIMIT (default 1 with DuckDB, 8 with PostgreSQL), or:
    # dagster instance concurrency set crm_api N
    default_limit: 1
    granularity: op
"""
POSTGRES_STORAGE = f"""\
# Runs, events and schedules in PostgreSQL, at the URL in ${config.DATABASE_URL_ENV} (read
# when the instance opens, never written here).
storage:
  postgres:
    postgres_url:
      env: {config.DATABASE_URL_ENV}
"""


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at ``<data home>/dagster`` (unless set) and give it a dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.data_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    shared = config.database_url() is not None
    if not settings.exists():
        max_runs = SHARED_POOL_LIMIT if shared else 4
        text = DAGSTER_YAML.format(max_runs=max_runs)
        settings.write_text(text + (POSTGRES_STORAGE if shared else ""), encoding="utf-8")
    elif shared and not _has_storage(settings):
        with settings.open("a", encoding="utf-8") as handle:
            handle.write("\n" + POSTGRES_STORAGE)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _has_storage(settings: Path) -> bool:
    """Whether dagster.yaml already says where runs are stored (then it is left as written)."""
    loaded = yaml.safe_load(settings.read_text(encoding="utf-8")) or {}
    return isinstance(loaded, dict) and any(
        key in loaded for key in ("storage", "run_storage", "event_log_storage")
    )


def _pool_limit(variable: str) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return SHARED_POOL_LIMIT if config.database_url() else EMBEDDED_POOL_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{variable} must be a whole number of at least 1, got {raw!r}")
    if variable == STAGING_POOL_LIMIT_ENV and not config.database_url() and int(raw) > 1:
        raise ValueError(
            f"{variable}={raw}: the DuckDB staging file takes one writer at a time; more "
            f"need PostgreSQL ({config.DATABASE_URL_ENV})"
        )
    return int(raw)


def crm_pool_limit() -> int:
    return _pool_limit(CRM_POOL_LIMIT_ENV)


def staging_pool_limit() -> int:
    return _pool_limit(STAGING_POOL_LIMIT_ENV)


def pool_limits() -> dict[str, int]:
    return {CRM_POOL: crm_pool_limit(), STAGING_POOL: staging_pool_limit()}


def open_instance() -> dg.DagsterInstance:
    """The persistent instance, with the pool limits applied.

    Opening it is serialized between the processes of a machine: several commands starting at
    once on a new data home would otherwise all create the instance's tables and fail on each
    other's.
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
