"""Several imports at once: the pools keep one writer on the DuckDB file and one run at a time on
the CRM, and a killed import does not keep its pool slot.

Real processes (the ``bulk-pipeline`` command) share one fresh data home, one DuckDB file and one
sandbox CRM with a rate limit, over loopback.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.import_steps import progress_path
from bulk_pipeline.imports import file_digest, import_id_for
from bulk_pipeline.instance import CRM_POOL, STAGING_POOL, open_instance
from bulk_pipeline.runs import PID_TAG
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import RunningSandbox, SandboxConfig, start_in_thread
from bulk_pipeline.staging import open_store
from bulk_pipeline_tests.recurring import contacts_csv

FILES = 4
CONTACTS_PER_FILE = 250
TIGHT_LIMIT = RateLimit(max_requests=8, interval_ms=1000)
LOCK_MESSAGES = ("could not set lock", "database is locked", "conflicting lock")


@pytest.fixture
def limited_crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningSandbox]:
    """A sandbox allowing 8 calls a second: four imports pushing together would go over it."""
    running = start_in_thread(
        db_path=tmp_path / "crm.sqlite3",
        config=SandboxConfig(rate_limit=TIGHT_LIMIT, search_rate_limit=None, daily_limit=None),
    )
    monkeypatch.setenv(config.SANDBOX_URL_ENV, running.url)
    monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, running.token)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    try:
        yield running
    finally:
        running.stop()


def _command(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulk_pipeline.cli", "import", str(path), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _step_windows(instance: dg.DagsterInstance, step: str) -> list[tuple[float, float]]:
    """(start, end) of one step in every run, from the event log."""
    windows = []
    for run in instance.get_runs():
        started = ended = None
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or event.step_key != step:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                ended = entry.timestamp
        assert started is not None and ended is not None, f"{step} did not finish in {run.run_id}"
        windows.append((started, ended))
    return sorted(windows)


def test_four_imports_launched_at_once_all_finish_without_lock_errors_or_429s(
    tmp_path: Path, limited_crm: RunningSandbox
) -> None:
    paths = [
        contacts_csv(
            tmp_path / f"part{n}.csv",
            [f"p{n}-{i:03d}@example.com" for i in range(CONTACTS_PER_FILE)],
        )
        for n in range(FILES)
    ]

    processes = [_command(path) for path in paths]
    outputs = [process.communicate(timeout=240) for process in processes]

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert not any(message in (out + err).lower() for message in LOCK_MESSAGES), err[-3000:]
    assert limited_crm.admin.counts()["contacts"] == FILES * CONTACTS_PER_FILE
    assert limited_crm.admin.stats()["requests"]["rate_limited"] == 0
    with open_instance() as instance:
        assert len(instance.get_runs()) == FILES
        for step in ("crm_push", "staged_records"):
            windows = _step_windows(instance, step)
            for (_, first_end), (second_start, _) in itertools.pairwise(windows):
                assert second_start >= first_end, f"two {step} steps overlapped"
        infos = [
            instance.event_log_storage.get_concurrency_info(p) for p in (CRM_POOL, STAGING_POOL)
        ]
        assert [(i.slot_count, len(i.claimed_slots)) for i in infos] == [(1, 0), (1, 0)]


def _claimed_by(instance: dg.DagsterInstance, pool: str) -> set[str]:
    return {
        slot.run_id for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    }


@pytest.mark.timeout(180)
def test_a_killed_import_gives_its_crm_slot_back_to_the_next_import(
    tmp_path: Path, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.SANDBOX_URL_ENV, sandbox.url)
    monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, sandbox.token)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    sandbox.admin.configure(latency_ms=2000)
    slow = contacts_csv(tmp_path / "slow.csv", [f"slow{i}@example.com" for i in range(30)])
    instance = open_instance()
    process = _command(slow)
    deadline = time.monotonic() + 90
    while not _claimed_by(instance, CRM_POOL):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the import never reached its CRM step"
        time.sleep(0.2)
    (killed_run,) = _claimed_by(instance, CRM_POOL)
    assert instance.get_run_by_id(killed_run).tags[PID_TAG] == str(process.pid)

    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert _claimed_by(instance, CRM_POOL) == {killed_run}
    sandbox.admin.configure(latency_ms=0)
    after = contacts_csv(tmp_path / "after.csv", ["after@example.com"])

    assert cli.main(["import", str(after), "--no-progress"]) == 0

    killed = instance.get_run_by_id(killed_run)
    assert killed.status == dg.DagsterRunStatus.FAILURE
    assert _claimed_by(instance, CRM_POOL) == set()
    assert "after@example.com" in {
        r["properties"]["email"] for r in sandbox.admin.records("contacts")
    }
    instance.dispose()


@pytest.mark.timeout(180)
def test_a_run_of_an_import_waits_while_another_holds_the_import(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    """The lock per import (a file lock with DuckDB, an advisory lock with PostgreSQL): held
    here as another run of the same import would hold it, the command stages nothing and sends
    nothing until it is let go."""
    path = contacts_csv(tmp_path / "held.csv", [f"held{i}@example.com" for i in range(5)])
    import_id = import_id_for(path.name, file_digest(path))
    progress = progress_path(import_id)

    with open_store().import_lock(import_id):
        process = _command(path)
        deadline = time.monotonic() + 120
        while '"staging"' not in (progress.read_text() if progress.exists() else ""):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the import never reached staging"
            time.sleep(0.2)
        time.sleep(2)
        assert process.poll() is None
        assert crm.admin.counts().get("contacts", 0) == 0
        assert open_store().status(import_id) is None

    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    assert crm.admin.counts()["contacts"] == 5
