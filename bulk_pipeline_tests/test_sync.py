"""The nightly sync: sources.yaml, the schedule, changed rows only, vanished rows, mirroring.

Days run through Dagster on the persistent instance against a real sandbox over loopback and a
real DuckDB file; the sources are real files, databases and an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
import yaml

from bulk_pipeline import cli, config, sync
from bulk_pipeline.defs.resources import CrmResource, default_resources
from bulk_pipeline.defs.schedules import nightly_sync_schedule
from bulk_pipeline.defs.sync_assets import sync_assets
from bulk_pipeline.entities import Entity
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.sources import SourceError, load_sources, sources_path
from bulk_pipeline.staging import open_store
from bulk_pipeline.targets import open_target
from bulk_pipeline_tests.recurring import QUIET, age, contacts_csv

REPOSITORY = Path(__file__).resolve().parents[1]


def declare(*sources: dict[str, object]) -> None:
    sources_path().write_text(yaml.safe_dump({"sources": list(sources)}), encoding="utf-8")


def sync_day(instance: dg.DagsterInstance, day: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        sync_assets,
        partition_key=day,
        instance=instance,
        resources=default_resources(),
        raise_on_error=False,
        run_config=QUIET,
    )


def summary(source: str, day: str) -> dict[str, object]:
    path = config.data_home() / "reports" / f"sync-{source}-{day}" / "summary.json"
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def writes(crm: RunningSandbox) -> int:
    return crm.admin.stats()["requests"]["writes"]


def export(name: str, emails: list[str], *, hours_ago: float, city: str = "Paris") -> Path:
    return age(contacts_csv(config.data_home() / "exports" / name, emails, city=city), hours_ago)


def test_the_schedule_requests_the_sync_of_its_own_day() -> None:
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 5, 2, 2, 0, tzinfo=UTC)
    )
    assert isinstance(nightly_sync_schedule(context), dg.SkipReason)

    declare({"name": "crm", "entity": "contacts", "path": "exports/*.csv"})
    request = nightly_sync_schedule(context)

    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-05-02"
    assert request.run_key == "2026-05-02"


def test_the_schedule_time_and_zone_come_from_the_environment() -> None:
    settings = sync.SyncSchedule.from_env(
        {sync.SYNC_TIME_ENV: "23:45", sync.SYNC_TIMEZONE_ENV: "Pacific/Auckland"}
    )

    assert settings.cron == "45 23 * * *"
    auckland_evening = datetime(2026, 5, 2, 23, 45, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert settings.day_of(auckland_evening.astimezone(UTC)) == date(2026, 5, 2)
    with pytest.raises(ValueError, match="HH:MM"):
        sync.SyncSchedule.from_env({sync.SYNC_TIME_ENV: "2am"})
    with pytest.raises(ValueError, match="unknown time zone"):
        sync.SyncSchedule.from_env({sync.SYNC_TIMEZONE_ENV: "Mars/Olympus"})


def test_an_unchanged_night_writes_nothing_and_a_changed_row_is_pushed_alone(
    crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    emails = [f"member{n:02d}@example.com" for n in range(20)]
    export("contacts-0501.csv", emails, hours_ago=30)
    declare({"name": "members", "entity": "contacts", "path": "exports/contacts-*.csv"})

    assert sync_day(instance, "2026-05-01").success
    first = summary("members", "2026-05-01")
    assert first["created"] == 20
    after_first = writes(crm)
    assert after_first > 0

    assert sync_day(instance, "2026-05-02").success
    assert summary("members", "2026-05-02")["unchanged"] == 20
    assert writes(crm) == after_first

    moved = export("contacts-0503.csv", emails, hours_ago=1)
    rows = list(csv.DictReader(moved.open(encoding="utf-8")))
    rows[7]["City"] = "Lyon"
    with moved.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert sync_day(instance, "2026-05-03").success

    third = summary("members", "2026-05-03")
    assert (third["updated"], third["unchanged"], third["created"]) == (1, 19, 0)
    assert writes(crm) == after_first + 1
    cities = {
        r["properties"]["email"]: r["properties"]["city"] for r in crm.admin.records("contacts")
    }
    assert cities["member07@example.com"] == "Lyon"
    assert sum(city == "Paris" for city in cities.values()) == 19


def test_the_sync_command_runs_a_day_and_a_rerun_of_it_sends_nothing(
    crm: RunningSandbox, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sync", "--date", "2026-06-01"]) == 2
    export("contacts.csv", ["once@example.com"], hours_ago=5)
    declare({"name": "once", "entity": "contacts", "path": "exports/contacts.csv"})

    assert cli.main(["sync", "--date", "2026-06-01"]) == 0
    first = capsys.readouterr().out
    assert "already synced" not in first
    before = writes(crm)
    assert cli.main(["sync", "--date", "2026-06-01"]) == 0

    assert writes(crm) == before
    assert summary("once", "2026-06-01")["created"] == 1
    printed = capsys.readouterr().out
    assert "sync-<source>-2026-06-01" in printed
    assert re.search(r"│ once\s+│\s+1\s+│\s+0\s+│\s+0\s+│", printed)
    assert "2026-06-01 was already synced for every source: nothing was read or sent" in printed
    assert "bulk-pipeline sync --date 2026-06-01 --again" in printed
    runs = instance.get_runs()
    assert len(runs) == 2
    assert {run.job_name for run in runs} == {"sync_job"}

    export("contacts.csv", ["once@example.com", "again@example.com"], hours_ago=1)
    assert cli.main(["sync", "--date", "2026-06-01", "--again"]) == 0

    assert "already synced" not in capsys.readouterr().out
    assert writes(crm) == before + 1, "read afresh, only the new row is written"
    assert (summary("once", "2026-06-01")["rows"], summary("once", "2026-06-01")["created"]) == (
        2,
        1,
    )


def test_vanished_rows_are_reported_and_only_mirrored_sources_archive_what_we_created(
    crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    seeded = open_target("sandbox")
    try:
        assert not seeded.create(Entity.CONTACTS, [{"email": "theirs@example.com"}]).failed
    finally:
        seeded.close()
    people = [f"p{n}@example.com" for n in range(10)] + ["theirs@example.com"]
    leads = [f"lead{n}@example.org" for n in range(4)]
    declare(
        {"name": "people", "entity": "contacts", "path": "exports/people-*.csv", "mirror": True},
        {"name": "leads", "entity": "contacts", "path": "exports/leads-*.csv"},
    )
    export("people-1.csv", people, hours_ago=50)
    export("leads-1.csv", leads, hours_ago=50)
    assert sync_day(instance, "2026-05-01").success
    archived_before = crm.admin.counts()["contacts"]

    export(
        "people-2.csv",
        [e for e in people if e not in ("p3@example.com", "theirs@example.com")],
        hours_ago=20,
    )
    export("leads-2.csv", [e for e in leads if e != "lead1@example.org"], hours_ago=20)
    assert sync_day(instance, "2026-05-02").success

    active = {r["properties"]["email"] for r in crm.admin.records("contacts")}
    assert "p3@example.com" not in active
    assert {"theirs@example.com", "lead1@example.org"} <= active
    assert crm.admin.counts()["contacts"] == archived_before - 1
    people_vanished = _vanished("people", "2026-05-02")
    assert people_vanished == {
        "p3@example.com": "archived",
        "theirs@example.com": "kept: not created by bulk_pipeline",
    }
    assert _vanished("leads", "2026-05-02") == {"lead1@example.org": "kept: mirror is off"}

    export("people-3.csv", [e for e in people if e != "theirs@example.com"], hours_ago=5)
    assert sync_day(instance, "2026-05-03").success
    assert summary("people", "2026-05-03")["created"] == 1
    assert "p3@example.com" in {r["properties"]["email"] for r in crm.admin.records("contacts")}

    export("people-4.csv", ["p0@example.com"], hours_ago=1)
    truncated = sync_day(instance, "2026-05-04")

    assert not truncated.success
    assert crm.admin.counts()["contacts"] == archived_before
    assert set(_vanished("people", "2026-05-04").values()) == {
        "kept: more than 50% of the records vanished"
    }


def _vanished(source: str, day: str) -> dict[str, str]:
    path = config.data_home() / "reports" / f"sync-{source}-{day}" / sync.VANISHED_FILE
    with path.open(encoding="utf-8-sig") as handle:
        return {row["key"]: row["action"] for row in csv.DictReader(handle)}


class _ExportServer(BaseHTTPRequestHandler):
    body = b""
    seen_authorization: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen_authorization.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def export_server() -> Iterator[str]:
    _ExportServer.body = b"Deal Name,Amount\nBig renewal,12000\nSmall upsell,800\n"
    _ExportServer.seen_authorization = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ExportServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/export.csv"
    finally:
        server.shutdown()
        server.server_close()


def test_sql_and_http_sources_are_snapshotted_and_synced(
    crm: RunningSandbox, export_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = config.data_home()
    with sqlite3.connect(home / "app.sqlite3") as conn:
        conn.execute("CREATE TABLE users (email TEXT, first_name TEXT, signup INTEGER)")
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [("sq1@example.com", "Sam", 2024), ("sq2@example.com", "Sue", None)],
        )
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        conn.execute("CREATE TABLE accounts (name VARCHAR, domain VARCHAR, employees INTEGER)")
        conn.execute("INSERT INTO accounts VALUES ('Acme', 'acme.example', 40)")
    secret = "export-token-0123456789"
    monkeypatch.setenv("EXPORT_TOKEN", secret)
    declare(
        {
            "name": "app-users",
            "entity": "contacts",
            "sql": {
                "engine": "sqlite",
                "database": "app.sqlite3",
                "query": "SELECT email, first_name FROM users",
            },
        },
        {
            "name": "accounts",
            "entity": "companies",
            "sql": {
                "engine": "duckdb",
                "database": "warehouse.duckdb",
                "query": "SELECT name, domain, employees AS number_of_employees FROM accounts",
            },
        },
        {
            "name": "partner-deals",
            "entity": "deals",
            "url": export_server,
            "headers": {"Authorization": "Bearer ${EXPORT_TOKEN}"},
        },
    )
    logged: list[str] = []
    crm_resource = CrmResource()

    report = sync.run_sync(
        date(2026, 5, 1),
        store=open_store(config.staging_db_path()),
        open_target=crm_resource.open,
        account_of=crm_resource.account,
        log=logged.append,
    )

    assert [(r.source, r.status) for r in report.results] == [
        ("app-users", "synced"),
        ("accounts", "synced"),
        ("partner-deals", "synced"),
    ]
    assert _ExportServer.seen_authorization == [f"Bearer {secret}"]
    counts = crm.admin.counts()
    assert (counts["contacts"], counts["companies"], counts["deals"]) == (2, 1, 2)
    snapshots = sorted(
        p.relative_to(home / "sources").as_posix() for p in (home / "sources").rglob("*.*")
    )
    assert snapshots == [
        "accounts/2026-05-01.parquet",
        "app-users/2026-05-01.parquet",
        "partner-deals/2026-05-01.csv",
    ]
    reports = "".join(p.read_text(encoding="utf-8") for p in (home / "reports").rglob("*.json"))
    assert secret not in reports + "".join(logged)


def test_a_broken_source_fails_its_day_naming_it_while_the_others_sync(
    crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    export("good.csv", ["good@example.com"], hours_ago=2)
    declare(
        {"name": "good", "entity": "contacts", "path": "exports/good.csv"},
        {"name": "missing", "entity": "contacts", "path": "exports/nothing-*.csv"},
    )

    result = sync_day(instance, "2026-05-01")

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None
    assert "source missing failed" in (failure.description or "")
    assert "no file matches exports/nothing-*.csv" in (failure.description or "")
    assert summary("good", "2026-05-01")["created"] == 1
    good_writes = writes(crm)

    export("nothing-yet.csv", ["late@example.com"], hours_ago=1)
    assert cli.main(["retry-failed"]) == 0

    assert summary("missing", "2026-05-01")["created"] == 1
    assert writes(crm) == good_writes + 1
    assert cli.main(["retry-failed", "--dry-run"]) == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "Bad Name", "entity": "contacts", "path": "x.csv"}, "needs a name"),
        ({"name": "a", "entity": "leads", "path": "x.csv"}, "entity must be one of"),
        ({"name": "a", "entity": "contacts"}, "exactly one of path, sql or url"),
        ({"name": "a", "entity": "contacts", "path": "x", "url": "http://h"}, "exactly one"),
        ({"name": "a", "entity": "contacts", "sql": {"engine": "oracle", "query": "q"}}, "engine"),
        ({"name": "a", "entity": "contacts", "sql": {"engine": "postgres", "query": "q"}}, "dsn"),
        ({"name": "a", "entity": "contacts", "url": "ftp://h/x.csv"}, "http:// or https://"),
        ({"name": "a", "entity": "contacts", "path": "x", "mirror": "yes"}, "true or false"),
        ({"name": "a", "entity": "contacts", "path": "x", "colour": "red"}, "unknown keys colour"),
        ({"name": "a", "entity": "contacts", "path": "x", "list": ""}, "name of a list"),
        ({"name": "a", "entity": "contacts", "path": "x", "create_list": True}, "needs list"),
    ],
)
def test_mistakes_in_sources_yaml_name_the_source_and_the_field(
    entry: dict[str, object], message: str
) -> None:
    declare(entry)
    with pytest.raises(SourceError, match=message):
        load_sources()


def test_the_shipped_example_declares_valid_sources() -> None:
    example = REPOSITORY / "data" / "sources.example.yaml"

    sources = load_sources(example)

    assert {s.origin.__class__.__name__ for s in sources} == {
        "FileOrigin",
        "SqlOrigin",
        "UrlOrigin",
    }
    assert any(s.mirror for s in sources)
    assert [(s.target, s.list_name, s.create_list) for s in sources if s.list_name] == [
        ("attio", "Event signups", True)
    ]


@pytest.mark.needs_postgres
def test_a_postgres_query_is_a_source(
    crm: RunningSandbox, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE users (email text, first_name text, deleted boolean)")
        conn.execute(
            "INSERT INTO users VALUES ('pg1@example.com', 'Pia', false), "
            "('pg2@example.com', 'Per', true)"
        )
    monkeypatch.setenv("APP_DATABASE_URL", postgres_url)
    declare(
        {
            "name": "app-signups",
            "entity": "contacts",
            "sql": {
                "engine": "postgres",
                "dsn": "${APP_DATABASE_URL}",
                "query": "SELECT email, first_name FROM users WHERE NOT deleted",
            },
        }
    )
    crm_resource = CrmResource()

    report = sync.run_sync(
        date(2026, 5, 1),
        store=open_store(config.staging_db_path()),
        open_target=crm_resource.open,
        account_of=crm_resource.account,
    )

    assert [r.status for r in report.results] == ["synced"]
    assert [r["properties"]["email"] for r in crm.admin.records("contacts")] == ["pg1@example.com"]
