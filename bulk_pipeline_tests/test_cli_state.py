"""The truth about each import, in the terminal and in the UI: `status` and `report` after a
rollback, a failed run and a run that failed after an earlier success; command runs named and
tagged as the code location's jobs, and re-executable from failure like a run the UI launched.

Everything runs through the real command against a sandbox over loopback, on the persistent
instance under the test's data home.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.command_runs import FILE_TAG, IMPORT_TAG, TARGET_TAG
from bulk_pipeline.imports import file_digest, import_id_for
from bulk_pipeline.reports.listing import WIDTH
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.targets.hubspot import HUBSPOT
from bulk_pipeline_tests.recurring import contacts_csv

EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com"]
CHECKOUT = Path(__file__).resolve().parents[1]


def import_job_of_the_code_location() -> dg.JobDefinition:
    """The job the UI re-executes, rebuilt in each process of a re-execution."""
    from bulk_pipeline.definitions import defs

    return defs.resolve_job_def("import_job")


def _import_id(path: Path) -> str:
    return import_id_for(path.name, file_digest(path))


def _status(capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert cli.main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("data home: ")
    assert max(len(line) for line in lines[1:]) <= WIDTH
    return lines[1:]


def _report(capsys: pytest.CaptureFixture[str], import_id: str) -> str:
    capsys.readouterr()
    assert cli.main(["report", import_id]) == 0
    return capsys.readouterr().out


def _entry(lines: list[str], import_id: str) -> tuple[str, str]:
    """An import's two lines in the status table."""
    index = next(i for i, line in enumerate(lines) if line.startswith(import_id))
    return lines[index], lines[index + 1]


def test_after_a_rollback_status_and_report_say_rolled_back(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", EMAILS)
    import_id = _import_id(path)
    assert cli.main(["import", str(path), "--no-progress"]) == 0
    first, counts = _entry(_status(capsys), import_id)
    assert "completed" in first
    assert counts.strip().startswith("3 rows: 3 created")

    assert cli.main(["rollback", import_id]) == 0

    first, detail = _entry(_status(capsys), import_id)
    assert "rolled back" in first
    assert "completed" not in first
    assert detail.strip().startswith("3 removed, 0 restored")
    report = _report(capsys, import_id)
    assert report.startswith("State:        rolled back since ")
    assert "Rolled back:  3 records removed" in report
    assert crm.admin.records("contacts") == []

    assert cli.main(["import", str(path), "--no-progress"]) == 0
    assert "completed" in _entry(_status(capsys), import_id)[0], "imported afresh"


def test_after_a_failed_run_status_says_failed_and_why(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("First Name,Last Name\nAda,Lovelace\n", encoding="utf-8")
    import_id = _import_id(path)

    assert cli.main(["import", str(path), "--entity", "contacts", "--no-progress"]) == 1

    first, reason = _entry(_status(capsys), import_id)
    assert "failed" in first
    assert "people.csv -> sandbox (contacts)" in first
    assert "people.csv: importing contacts" in reason
    report = _report(capsys, import_id)
    assert report.startswith("State:        failed since ")
    assert "needs the column 'email'" in report
    assert str(config.data_home() / "logs" / import_id) in report
    assert "has not completed" in report


def test_a_failed_run_after_a_completed_one_is_shown_failed(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", [*EMAILS, "not-an-email"])
    import_id = _import_id(path)
    assert cli.main(["import", str(path), "--max-invalid-ratio", "0.5", "--no-progress"]) == 0

    for _ in range(2):
        assert cli.main(["import", str(path), "--max-invalid-ratio", "0", "--no-progress"]) == 1

    first, reason = _entry(_status(capsys), import_id)
    assert "failed" in first
    assert "invalid_ratio_within_threshold" in reason
    report = _report(capsys, import_id)
    assert report.startswith("State:        failed since ")
    assert "The counts below are those of its last completed run" in report


def push_fails_for_the_day(sandbox: RunningSandbox) -> None:
    """The CRM's daily limit allows the preflights (the command's and the first step's) and
    nothing more, so the run stops at the push."""
    sandbox.admin.configure(daily_limit=2)


def the_day_turns(sandbox: RunningSandbox) -> None:
    """A new day: the CRM's limit is lifted and what this machine remembered of it is gone."""
    sandbox.admin.configure(daily_limit=None)
    for remembered in (config.data_home() / "budgets").glob("*.json"):
        remembered.unlink()


def test_command_runs_are_named_tagged_and_re_executable_from_failure(
    tmp_path: Path,
    sandbox: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(HUBSPOT.base_url_env, sandbox.url)
    monkeypatch.setenv(HUBSPOT.token_env, sandbox.token)
    monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, sandbox.token)  # as the code location was loaded
    path = contacts_csv(tmp_path / "people.csv", EMAILS)
    import_id = _import_id(path)
    push_fails_for_the_day(sandbox)

    assert cli.main(["import", str(path), "--target", "hubspot", "--no-progress"]) == 75

    [failed] = instance.get_runs()
    assert failed.job_name == "import_job"
    assert failed.tags[FILE_TAG] == "people.csv"
    assert failed.tags[IMPORT_TAG] == import_id
    assert failed.tags[TARGET_TAG] == "hubspot"
    assert failed.tags["dagster/partition"] == import_id
    the_day_turns(sandbox)

    result = dg.execute_job(
        dg.reconstructable(import_job_of_the_code_location),
        instance,
        tags=failed.tags,  # as the UI's "Re-execute from failure" does
        reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance),
    )

    assert result.success
    assert {e.step_key for e in result.all_events if e.is_step_success} == {
        "crm_push",
        "import_results",
    }, "only the failed step and the one after it ran again"
    emails = sorted(r["properties"]["email"] for r in sandbox.admin.records("contacts"))
    assert emails == sorted(EMAILS)
    rerun = instance.get_run_by_id(result.run_id)
    assert rerun is not None
    assert rerun.job_name == "import_job"
    assert rerun.tags[FILE_TAG] == "people.csv"


REEXECUTE = """
mutation ($parent: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def test_the_uis_re_execute_from_failure_finishes_a_failed_command_run(
    tmp_path: Path,
    sandbox: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The UI's button sends this mutation; it needs the run's code location, which
    ``execute_in_process`` alone does not record."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )
    from dagster_graphql.test.utils import execute_dagster_graphql

    monkeypatch.setenv(HUBSPOT.base_url_env, sandbox.url)
    monkeypatch.setenv(HUBSPOT.token_env, sandbox.token)
    path = contacts_csv(tmp_path / "people.csv", EMAILS)
    push_fails_for_the_day(sandbox)
    assert cli.main(["import", str(path), "--target", "hubspot", "--no-progress"]) == 75
    [failed] = instance.get_runs()
    the_day_turns(sandbox)
    workspace = WorkspaceFileTarget(paths=[str(CHECKOUT / "workspace.yaml")])

    with WorkspaceProcessContext(instance, workspace) as ui:
        answer = execute_dagster_graphql(
            ui.create_request_context(), REEXECUTE, {"parent": failed.run_id}
        )
        launched = answer.data["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        queue = QueuedRunCoordinatorDaemon(interval_seconds=1)  # what `make dev`'s daemon runs
        deadline = time.monotonic() + 180
        while (run := instance.get_run_by_id(run_id)) is not None and not run.is_finished:
            assert time.monotonic() < deadline, f"the re-execution is still {run.status}"
            if run.status == dg.DagsterRunStatus.QUEUED:
                list(queue.run_iteration(ui))
            time.sleep(0.5)

    assert run is not None
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.parent_run_id == failed.run_id
    assert run.tags[FILE_TAG] == "people.csv"
    emails = sorted(r["properties"]["email"] for r in sandbox.admin.records("contacts"))
    assert emails == sorted(EMAILS)
