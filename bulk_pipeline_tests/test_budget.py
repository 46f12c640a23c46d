"""A spent daily budget stops an import cleanly, with the reset time, and it resumes after.

The CLI runs in its own process (budgets are remembered per process, as in real use); the
sandbox enforces HubSpot's daily request limit and reports what is left in its headers.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from bulk_pipeline import config
from bulk_pipeline.defs.sensors import budget_resume_sensor
from bulk_pipeline.errors import BudgetExhausted
from bulk_pipeline.imports import register_import
from bulk_pipeline.outcomes import ImportState
from bulk_pipeline.resume import mark_paused, paused_dir
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.staging import open_store
from bulk_pipeline_tests.cli_processes import cli_process
from bulk_pipeline_tests.recurring import contacts_csv


def _cli(path: Path, sandbox: RunningSandbox) -> tuple[int, str]:
    """The import in a process of its own: its exit status and what it wrote to stderr."""
    process = cli_process(sandbox, "import", str(path), "--no-progress")
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def test_a_spent_daily_limit_stops_the_import_with_its_reset_time_and_a_rerun_resumes(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    emails = [f"person{i}@example.com" for i in range(3_000)]
    path = contacts_csv(tmp_path / "contacts.csv", emails)
    crm.admin.configure(daily_limit=12)

    started = time.monotonic()
    status, err = _cli(path, crm)
    elapsed = time.monotonic() - started

    assert status == 75, err  # EX_TEMPFAIL: try again later
    assert "daily request limit is spent until" in err
    midnight = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert f"{midnight}T00:00:00Z" in err
    assert elapsed < 60
    requests = crm.admin.stats()["requests"]
    assert requests["total"] == 12, "no request goes out once the day's limit is used"
    assert requests["rate_limited"] == 0
    written = len(crm.admin.records("contacts"))
    assert 0 < written < len(emails)
    import_id = register_import(path).import_id
    status = open_store(config.staging_db_path()).status(import_id)
    assert status is not None and status.state is ImportState.STOPPED
    assert status.resume_at is not None and status.resume_at.date().isoformat() == midnight

    # The day turns: the CRM's limit is fresh, and what this machine remembered has passed.
    crm.admin.configure(daily_limit=None)
    for remembered in (config.data_home() / "budgets").glob("*.json"):
        remembered.write_text(
            json.dumps({"exhausted_until": datetime.now(UTC).isoformat()}), encoding="utf-8"
        )

    status, err = _cli(path, crm)

    assert status == 0, err
    held = Counter(r["properties"]["email"] for r in crm.admin.records("contacts"))
    assert len(held) == len(emails)
    assert set(held.values()) == {1}
    summary = json.loads(
        (config.data_home() / "reports" / import_id / "summary.json").read_text(encoding="utf-8")
    )
    assert summary["created"] == len(emails)


def test_the_resume_sensor_relaunches_a_paused_import_once_its_budget_has_reset() -> None:
    soon = datetime.now(UTC) + timedelta(hours=3)
    mark_paused("later-0000000001", BudgetExhausted("daily token budget", soon))
    mark_paused(
        "due-0000000001",
        BudgetExhausted("daily token budget", datetime.now(UTC) - timedelta(seconds=1)),
    )

    result = budget_resume_sensor(dg.build_sensor_context())

    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == ["due-0000000001"]
    assert sorted(p.stem for p in paused_dir().glob("*.json")) == ["later-0000000001"]
    again = budget_resume_sensor(dg.build_sensor_context())
    assert isinstance(again, dg.SensorResult)
    assert not again.run_requests
