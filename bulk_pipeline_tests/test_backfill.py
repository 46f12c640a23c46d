"""Re-running failed partitions: a partition that failed while the CRM was down succeeds when
re-run after it is back, and nothing is written twice.

The CRM is really down: the sandbox server is stopped, its port closed, and it comes back on the
same port with the same database.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.backfill import failed_partitions
from bulk_pipeline.definitions import defs
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.server import SandboxConfig, start_in_thread
from bulk_pipeline_tests.recurring import QUIET, contacts_csv

EMAILS = [f"customer{n:02d}@example.com" for n in range(12)]
NO_STEP_RETRIES = {
    **QUIET,
    "execution": {"config": {"in_process": {"retries": {"disabled": {}}}}},
}
"""crm_push's RetryPolicy would try again for about a minute; the failure is what matters here."""


def import_job() -> dg.JobDefinition:
    """The import job as the daemon runs it (``execute_job`` needs a reconstructable job)."""
    return defs.resolve_job_def("import_job")


def test_a_partition_that_failed_while_the_crm_was_down_succeeds_when_retried(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm_db = tmp_path / "crm.sqlite3"
    down = start_in_thread(db_path=crm_db, config=SandboxConfig.unlimited())
    port = down.server.server_port
    monkeypatch.setenv(config.SANDBOX_URL_ENV, down.url)
    monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, down.token)
    down.stop()
    request = register_import(contacts_csv(tmp_path / "customers.csv", EMAILS))
    instance.add_dynamic_partitions(imports_partitions.name or "imports", [request.import_id])

    with dg.execute_job(
        dg.reconstructable(import_job),
        instance,
        run_config=NO_STEP_RETRIES,
        tags={"dagster/partition": request.import_id},
        raise_on_error=False,
    ) as attempt:
        assert not attempt.success
        assert attempt.dagster_run.status == dg.DagsterRunStatus.FAILURE

    failed = failed_partitions(instance)
    assert [(f.kind, f.partition_key) for f in failed] == [("import", request.import_id)]
    assert "did not answer" in failed[0].error
    assert f"127.0.0.1:{port}" in failed[0].error

    back = start_in_thread(db_path=crm_db, port=port, config=SandboxConfig.unlimited())
    try:
        assert cli.main(["retry-failed"]) == 0

        emails = Counter(r["properties"]["email"] for r in back.admin.records("contacts"))
        assert emails == Counter(EMAILS)
        assert cli.main(["retry-failed"]) == 0
        assert back.admin.stats()["requests"]["writes"] == 1
    finally:
        back.stop()
    assert failed_partitions(instance) == []
    retried = instance.get_runs(
        filters=dg.RunsFilter(tags={"bulk_pipeline/retry_of": attempt.run_id})
    )
    assert [run.status for run in retried] == [dg.DagsterRunStatus.SUCCESS]
