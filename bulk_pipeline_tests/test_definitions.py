"""The whole code location loads and hangs together: jobs, schedules, sensors, pools, and the
persistent instance's dagster.yaml."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from bulk_pipeline import config, runs
from bulk_pipeline.definitions import defs
from bulk_pipeline.instance import (
    CRM_POOL,
    CRM_POOL_LIMIT_ENV,
    SHARED_POOL_LIMIT,
    STAGING_POOL,
    STAGING_POOL_LIMIT_ENV,
    ensure_dagster_home,
    open_instance,
    pool_limits,
)


def test_the_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)

    repository = defs.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= {
        "import_job",
        "rollback_job",
        "sync_job",
    }
    assert [s.name for s in repository.schedule_defs] == ["nightly_sync_schedule"]
    assert {s.name for s in repository.sensor_defs} == {
        "inbox_sensor",
        "alert_on_run_failure",
        "budget_resume_sensor",
    }
    schedule = repository.get_schedule_def("nightly_sync_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "sync_job"
    assert repository.get_sensor_def("inbox_sensor").job_name == "import_job"


def test_the_steps_that_share_scarce_things_are_in_their_pools() -> None:
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}

    assert pools["staged_records"] == {STAGING_POOL}
    assert pools["crm_push"] == {CRM_POOL}
    assert pools["nightly_sync"] == {CRM_POOL}


def test_the_run_kinds_name_real_steps() -> None:
    steps = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}

    assert {runs.IMPORT_LAST_STEP, runs.SYNC_STEP} <= steps


def test_the_instance_has_its_pools_and_a_run_queue_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv(CRM_POOL_LIMIT_ENV, "3")
    settings = yaml.safe_load((Path(ensure_dagster_home()) / "dagster.yaml").read_text())

    assert settings["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert settings["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    with open_instance() as instance:
        storage = instance.event_log_storage
        assert storage.get_concurrency_info(CRM_POOL).slot_count == 3
        assert storage.get_concurrency_info(STAGING_POOL).slot_count == 1
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_a_bad_pool_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv(CRM_POOL_LIMIT_ENV, "many")

    with pytest.raises(ValueError, match=CRM_POOL_LIMIT_ENV):
        open_instance()


def test_the_crm_resource_reads_every_registered_targets_token_as_an_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bulk_pipeline.defs.resources import crm_settings

    monkeypatch.setenv("ATTIO_ACCESS_TOKEN", "attio-secret-token")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "hubspot-secret-token")

    settings = crm_settings()

    assert settings["ATTIO_ACCESS_TOKEN"] == dg.EnvVar("ATTIO_ACCESS_TOKEN")
    assert settings["HUBSPOT_ACCESS_TOKEN"] == dg.EnvVar("HUBSPOT_ACCESS_TOKEN")


def test_with_a_database_url_the_instance_and_both_pools_go_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv(CRM_POOL_LIMIT_ENV, raising=False)
    assert pool_limits() == {CRM_POOL: 1, STAGING_POOL: 1}
    monkeypatch.setenv(config.DATABASE_URL_ENV, "postgresql://bulk:s3cret-pass@db.invalid/bulk")

    home = Path(ensure_dagster_home())
    settings, _ = dagster_instance_config(str(home))

    assert settings["storage"] == {"postgres": {"postgres_url": {"env": config.DATABASE_URL_ENV}}}
    assert settings["concurrency"]["runs"]["max_concurrent_runs"] == SHARED_POOL_LIMIT
    assert "s3cret-pass" not in (home / "dagster.yaml").read_text()
    assert pool_limits() == {CRM_POOL: SHARED_POOL_LIMIT, STAGING_POOL: SHARED_POOL_LIMIT}
    monkeypatch.setenv(STAGING_POOL_LIMIT_ENV, "3")
    assert pool_limits()[STAGING_POOL] == 3


def test_an_embedded_instance_gets_the_storage_block_when_the_url_appears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = Path(ensure_dagster_home())
    assert "storage" not in yaml.safe_load((home / "dagster.yaml").read_text())

    monkeypatch.setenv(config.DATABASE_URL_ENV, "postgresql://bulk@db.invalid/bulk")
    ensure_dagster_home()
    ensure_dagster_home()

    text = (home / "dagster.yaml").read_text()
    assert yaml.safe_load(text)["storage"]["postgres"]["postgres_url"] == {
        "env": config.DATABASE_URL_ENV
    }
    assert text.count("storage:") == 1


def test_more_than_one_duckdb_writer_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(config.DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv(STAGING_POOL_LIMIT_ENV, "4")

    with pytest.raises(ValueError, match="one writer at a time"):
        pool_limits()
