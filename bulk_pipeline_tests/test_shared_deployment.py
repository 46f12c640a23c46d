"""One deployment, many runs at once: staging and the Dagster instance in PostgreSQL.

Real processes only, on the session's throwaway PostgreSQL server and sandbox CRMs over
loopback: the Dagster daemon (``dagster-daemon run``, its queued run coordinator and the inbox
sensor) launching eight linked imports as runs in their own processes (contacts naming companies
that every file shares); and four ``bulk-pipeline import`` processes pushing at once into one
rate-limited account.
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
import polars as pl
import pytest

from bulk_pipeline import config, inbox, runs
from bulk_pipeline.instance import CRM_POOL, STAGING_POOL, open_instance
from bulk_pipeline.outcomes import ImportState, LineOutcome
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import RunningSandbox, SandboxConfig, start_in_thread
from bulk_pipeline.staging import open_store
from bulk_pipeline_tests.recurring import contacts_csv
from bulk_pipeline_tests.test_linked_sandbox import linked

pytestmark = pytest.mark.needs_postgres
CHECKOUT = Path(__file__).resolve().parents[1]
IMPORTS = 8
CONTACTS_PER_FILE = 40
COMPANIES = 5
LOCK_MESSAGES = ("could not set lock", "database is locked", "conflicting lock", "deadlock")


@pytest.fixture
def shared_deployment(
    crm: RunningSandbox, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The pipeline pointed at one PostgreSQL database for staging and the instance."""
    monkeypatch.setenv(config.DATABASE_URL_ENV, postgres_url)
    monkeypatch.setenv(inbox.SETTLE_SECONDS_ENV, "0")
    open_instance().dispose()  # what `bulk-pipeline dev` does first: the pools get their limits
    return postgres_url


@pytest.fixture
def daemon(shared_deployment: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on the checkout's workspace; its output goes to ``daemon.log``."""
    log = tmp_path / "daemon.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"],
            cwd=CHECKOUT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _most_at_once(windows: list[tuple[float, float]]) -> int:
    edges = sorted(itertools.chain(((s, 1) for s, _ in windows), ((e, -1) for _, e in windows)))
    running = busiest = 0
    for _, change in edges:
        running += change
        busiest = max(busiest, running)
    return busiest


def _company_of(email: str) -> str:
    return f"firm{int(email.split('-')[1].split('@')[0]) % COMPANIES}.example"


def _linked_contacts_csv(path: Path, emails: list[str]) -> Path:
    """Contacts naming their company by name and website; every file names the same ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "Email": emails,
            "First Name": [e.split("@")[0].title() for e in emails],
            "Company": [_company_of(e).split(".")[0].title() for e in emails],
            "Company Website": [f"https://www.{_company_of(e)}/" for e in emails],
        }
    ).write_csv(path)
    return path


@pytest.mark.timeout(600)
def test_the_daemon_runs_eight_imports_at_once_on_postgres_without_lock_errors(
    crm: RunningSandbox,
    daemon: subprocess.Popen[bytes],
    shared_deployment: str,
    data_home: Path,
    tmp_path: Path,
) -> None:
    emails = {
        n: [f"shared{n}-{i:03d}@example.com" for i in range(CONTACTS_PER_FILE)]
        for n in range(IMPORTS)
    }
    for n, addresses in emails.items():
        _linked_contacts_csv(data_home / inbox.INBOX_DIR / f"accounts-{n}.csv", addresses)
    instance = open_instance()

    deadline = time.monotonic() + 480
    while True:
        records = instance.get_run_records()
        if len(records) == IMPORTS and all(r.dagster_run.is_finished for r in records):
            break
        assert daemon.poll() is None and time.monotonic() < deadline, (
            f"{len(records)} runs, {[r.dagster_run.status.value for r in records]}; daemon: "
            + (tmp_path / "daemon.log").read_text()[-3000:]
        )
        time.sleep(1)

    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
    assert {r.dagster_run.tags[runs.LAUNCHED_BY_TAG] for r in records} == {"inbox"}
    every_email = {e for addresses in emails.values() for e in addresses}
    in_crm = [r["properties"]["email"] for r in crm.admin.records("contacts")]
    assert sorted(in_crm) == sorted(every_email)
    companies = sorted(r["properties"]["domain"] for r in crm.admin.records("companies"))
    assert companies == sorted({_company_of(e) for e in every_email}), "a company twice"
    assert linked(crm, "contacts", "companies") == {(e, _company_of(e)) for e in every_email}
    messages = " ".join(
        entry.message.lower() for r in records for entry in instance.all_logs(r.dagster_run.run_id)
    )
    output = (tmp_path / "daemon.log").read_text().lower()
    assert not [m for m in LOCK_MESSAGES if m in messages or m in output]
    assert list(data_home.rglob("*.duckdb")) == []
    statuses = open_store(database_url=shared_deployment).statuses()
    assert len(statuses) == IMPORTS
    assert {s.state for s in statuses.values()} == {ImportState.COMPLETED}
    spans = [(r.start_time or 0.0, r.end_time or 0.0) for r in records]
    assert _most_at_once(spans) >= IMPORTS // 2, "the daemon did not run the imports at once"
    limits = {
        pool: instance.event_log_storage.get_concurrency_info(pool).slot_count
        for pool in (CRM_POOL, STAGING_POOL)
    }
    assert limits == {CRM_POOL: 8, STAGING_POOL: 8}
    instance.dispose()


PARALLEL = 4
CONTACTS_PER_PUSH = 1_500
TIGHT_LIMIT = RateLimit(max_requests=8, interval_ms=1000)


def _step_windows(instance: dg.DagsterInstance, step: str) -> list[tuple[float, float]]:
    windows = []
    for run in instance.get_runs():
        times = {
            entry.dagster_event.event_type: entry.timestamp
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None and entry.dagster_event.step_key == step
        }
        windows.append(
            (times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS])
        )
    return windows


@pytest.mark.timeout(600)
def test_four_parallel_imports_into_one_limited_account_share_its_limit(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each import is its own ``bulk-pipeline import`` process; with PostgreSQL their pushes run
    side by side (the crm_api pool allows 8) and share the account's window through it."""
    limited = start_in_thread(
        db_path=tmp_path / "crm.sqlite3",
        config=SandboxConfig(rate_limit=TIGHT_LIMIT, search_rate_limit=None, daily_limit=None),
    )
    monkeypatch.setenv(config.SANDBOX_URL_ENV, limited.url)
    monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, limited.token)
    monkeypatch.setenv(config.DATABASE_URL_ENV, postgres_url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    files = [
        contacts_csv(
            tmp_path / f"portal-{n}.csv",
            [f"p{n}-{i:04d}@example.com" for i in range(CONTACTS_PER_PUSH)],
        )
        for n in range(PARALLEL)
    ]
    try:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bulk_pipeline.cli", "import", str(path), "--no-progress"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for path in files
        ]
        errors = [process.communicate(timeout=420)[1] for process in processes]
        stats = limited.admin.stats()["requests"]
        in_crm = limited.admin.counts()["contacts"]
    finally:
        limited.stop()

    for process, err in zip(processes, errors, strict=True):
        assert process.returncode == 0, err[-3000:]
    store = open_store(database_url=postgres_url)
    imports = store.statuses()
    assert len(imports) == PARALLEL
    for import_id in imports:
        counts = store.outcome_counts(import_id)
        assert (counts[LineOutcome.CREATED], counts[LineOutcome.FAILED]) == (CONTACTS_PER_PUSH, 0)
    assert in_crm == PARALLEL * CONTACTS_PER_PUSH
    assert stats["rate_limited"] <= 0.01 * stats["total"], stats
    with open_instance() as instance:
        assert _most_at_once(_step_windows(instance, "crm_push")) >= 2, "pushes did not overlap"
