"""Linked imports into the sandbox's Pipedrive over loopback: records written once, linked by
their foreign keys (``org_id``, ``person_id``, ``deal_id``), broken references rejected with their
sheet and line, nothing written by a re-import, everything undone by a rollback, and the same
when the push stops, or the process is killed, between writing records and linking them.

The workbook is the one every CRM's linked tests import (``linked_files.migration``).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulk_pipeline import cli, config, import_steps
from bulk_pipeline.imports import register_import
from bulk_pipeline.push import PushStopped
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.staging import open_store
from bulk_pipeline.targets import open_target
from bulk_pipeline_tests.cli_processes import cli_process, kill_mid_push
from bulk_pipeline_tests.linked_files import BROKEN, csv_file, migration, rejected, workbook

TARGET = "sandbox-pipedrive"
ORGANIZATIONS = "/api/v2/organizations"
PERSONS = "/api/v2/persons"
NAMED_BY = {
    "organizations": "website",
    "persons": "emails",
    "deals": "title",
    "activities": "subject",
}
"""What each item type is told apart by in these tests."""


def items(sandbox: RunningSandbox, kind: str) -> list[dict[str, Any]]:
    return sandbox.admin.records(kind, "pipedrive")


def names(sandbox: RunningSandbox, kind: str) -> dict[int, str]:
    """Each active item's id -> what names it (a person's first email)."""
    prop = NAMED_BY[kind]
    return {
        item["id"]: item[prop][0]["value"] if prop == "emails" else item.get(prop)
        for item in items(sandbox, kind)
    }


def linked(sandbox: RunningSandbox, kind: str, key: str, to: str) -> set[tuple[str, str | None]]:
    """(item's name, the name of the item its foreign key ``key`` holds) of every item."""
    targets = names(sandbox, to)
    return {
        (names(sandbox, kind)[item["id"]], targets.get(item[key]) if key in item else None)
        for item in items(sandbox, kind)
    }


def writes(sandbox: RunningSandbox) -> int:
    return int(sandbox.admin.requests("pipedrive")["writes"])


def imported(path: Path, *args: str) -> dict[str, Any]:
    assert cli.main(["import", str(path), "--target", TARGET, "--no-progress", *args]) == 0
    folder = config.data_home() / "reports" / register_import(path, target=TARGET).import_id
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return summary


def assert_the_migration_is_held_once_and_linked(crm: RunningSandbox) -> None:
    assert sorted(names(crm, "organizations").values()) == ["acme.com", "globex.io", "initech.com"]
    assert sorted(names(crm, "persons").values()) == [
        "ada@acme.com",
        "bob@globex.io",
        "cy@initech.com",
    ]
    assert sorted(names(crm, "deals").values()) == ["Acme renewal", "Globex pilot"]
    assert sorted(names(crm, "activities").values()) == ["Call Ada", "Email Bob"]
    assert linked(crm, "persons", "org_id", "organizations") == {
        ("ada@acme.com", "acme.com"),
        ("bob@globex.io", "globex.io"),
        ("cy@initech.com", "initech.com"),
    }
    assert linked(crm, "deals", "org_id", "organizations") == {
        ("Acme renewal", "acme.com"),
        ("Globex pilot", "globex.io"),
    }
    assert linked(crm, "deals", "person_id", "persons") == {
        ("Acme renewal", "ada@acme.com"),
        ("Globex pilot", "bob@globex.io"),
    }
    assert linked(crm, "activities", "deal_id", "deals") == {
        ("Call Ada", "Acme renewal"),
        ("Email Bob", "Globex pilot"),
    }
    assert linked(crm, "activities", "person_id", "persons") == {
        ("Call Ada", "ada@acme.com"),
        ("Email Bob", "bob@globex.io"),
    }


def test_a_migration_workbook_is_imported_linked_reimported_for_free_and_rolled_back(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    path = migration(tmp_path / "migration.xlsx")
    summary = imported(path)

    assert_the_migration_is_held_once_and_linked(crm)
    assert set(rejected(summary)) == BROKEN
    reasons = rejected(summary)
    assert "'nowhere.org' names no company" in reasons[("Contacts", "5")]
    assert "'ghost.example' names no company" in reasons[("Deals", "4")]
    assert "'nobody@acme.com' names no contact" in reasons[("Activities", "4")]
    assert "'D-404' names no deal" in reasons[("Activities", "5")]
    assert {e: c["created"] for e, c in summary["entities"].items()} == {
        "companies": 3,
        "contacts": 3,
        "deals": 2,
        "activities": 2,
    }
    routes = crm.admin.requests("pipedrive")["by_route"]
    assert not any(route.startswith("PATCH") for route in routes), "links ride on creates"

    before = writes(crm)
    again = imported(path)
    assert writes(crm) == before, "a re-import makes no write call"
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 10)

    assert cli.main(["rollback", summary["import_id"]]) == 0
    assert all(not items(crm, kind) for kind in NAMED_BY)


def test_links_to_records_that_exist_are_updates_of_their_keys_sent_only_where_they_differ(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    client = httpx.Client(base_url=crm.url, headers={"x-api-token": crm.token})
    acme = client.post(ORGANIZATIONS, json={"name": "Acme", "website": "acme.com"}).json()["data"]
    old = client.post(ORGANIZATIONS, json={"name": "Old", "website": "old.com"}).json()["data"]

    def person(email: str, **links: int) -> int:
        body = {"name": email, "emails": [{"value": email}], **links}
        return int(client.post(PERSONS, json=body).json()["data"]["id"])

    ada = person("ada@acme.com", org_id=acme["id"])
    bob = person("bob@acme.com")
    cy = person("cy@acme.com", org_id=old["id"])
    client.close()
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "Company", "Company Domain"],
            ["ada@acme.com", "Acme", "acme.com"],
            ["bob@acme.com", "Acme", "ACME.com"],
            ["cy@acme.com", "Acme", "https://www.acme.com/"],
        ],
    )
    before = crm.admin.requests("pipedrive")["by_route"]
    summary = imported(path)

    assert linked(crm, "persons", "org_id", "organizations") == {
        ("ada@acme.com", "acme.com"),
        ("bob@acme.com", "acme.com"),
        ("cy@acme.com", "acme.com"),
    }
    contacts = summary["entities"]["contacts"]
    assert (contacts["unchanged"], contacts["updated"], contacts["created"]) == (1, 2, 0)
    assert summary["entities"]["companies"]["unchanged"] == 1
    after = crm.admin.requests("pipedrive")["by_route"]
    sent = {route: n - before.get(route, 0) for route, n in after.items()}
    assert sent.get("PATCH /api/v2/persons/{id}") == 2, "Ada holds her link already"
    assert not any(route.startswith(("POST", "DELETE")) and n for route, n in sent.items())
    assert not sent.get("PATCH /api/v2/organizations/{id}")

    assert cli.main(["rollback", summary["import_id"]]) == 0
    held = {item["id"]: item.get("org_id") for item in items(crm, "persons")}
    assert held == {ada: acme["id"], bob: None, cy: old["id"]}
    assert len(items(crm, "organizations")) == 2


def test_a_push_stopped_between_writing_companies_and_linking_contacts_is_finished_by_the_rerun(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    """The push stops after the companies (the contacts, deals and activities that link to them
    are not written); the re-run creates no company twice and makes every link."""
    path = migration(tmp_path / "migration.xlsx")
    request = register_import(path, target=TARGET)
    store = open_store(config.staging_db_path())
    target = open_target(TARGET)
    try:
        import_steps.preflight(request, target)
        import_steps.ingest(request, target.fields)
        import_steps.validate(request)
        import_steps.stage(request, store, target.account)
        with pytest.raises(PushStopped):
            import_steps.push(request, store, target, log=lambda _: None, should_stop=lambda: True)
        assert sorted(names(crm, "organizations").values()) == [
            "acme.com",
            "globex.io",
            "initech.com",
        ]
        assert not any(items(crm, kind) for kind in ("persons", "deals", "activities"))

        import_steps.push(request, store, target, log=lambda _: None)
        summary = import_steps.write_results(request, store).as_json()
    finally:
        target.close()

    assert_the_migration_is_held_once_and_linked(crm)
    assert {e: c["created"] for e, c in summary["entities"].items()} == {
        "companies": 3,
        "contacts": 3,
        "deals": 2,
        "activities": 2,
    }
    assert set(rejected(summary)) == BROKEN


def big_migration(path: Path, companies: int) -> Path:
    """``companies`` companies with two contacts, a deal and an activity each, referring to each
    other as the migration does (websites, domains, deal ids, contact emails)."""
    return workbook(
        path,
        {
            "Companies": [["Name", "Domain"]]
            + [[f"Company {n}", f"c{n}.example"] for n in range(companies)],
            "Contacts": [["Email", "Company Website"]]
            + [
                [f"{who}{n}@c{n}.example", f"https://www.c{n}.example/"]
                for n in range(companies)
                for who in ("a", "b")
            ],
            "Deals": [["Deal ID", "Deal Name", "Company Domain", "Contact Email"]]
            + [
                [f"D-{n}", f"Deal {n}", f"c{n}.example", f"a{n}@c{n}.example"]
                for n in range(companies)
            ],
            "Activities": [["Subject", "Due Date", "Contact Email", "Deal ID"]]
            + [
                [f"Call {n}", "2025-03-01", f"b{n}@c{n}.example", f"D-{n}"]
                for n in range(companies)
            ],
        },
    )


def test_kill_9_during_a_linked_push_then_a_rerun_writes_each_record_once_and_links_it(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    companies = 100
    crm.admin.configure(latency_ms=100)
    path = big_migration(tmp_path / "big.xlsx", companies)
    import_id = register_import(path, target=TARGET).import_id

    def start() -> subprocess.Popen[str]:
        return cli_process(crm, "import", str(path), "--target", TARGET, "--no-progress")

    kills = kill_mid_push(start, import_id, kills=4, moments=random.Random(15), within=(0.1, 1.0))
    assert kills == 4, "the push finished before four kills; raise the sandbox latency"

    crm.admin.configure(latency_ms=0)
    final = start()
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err

    for kind, count in (
        ("organizations", companies),
        ("persons", 2 * companies),
        ("deals", companies),
        ("activities", companies),
    ):
        held = list(names(crm, kind).values())
        assert len(held) == count and len(set(held)) == count, kind
    persons_to = linked(crm, "persons", "org_id", "organizations")
    assert persons_to == {
        (f"{who}{n}@c{n}.example", f"c{n}.example") for n in range(companies) for who in "ab"
    }
    deals_to = linked(crm, "deals", "person_id", "persons")
    assert deals_to == {(f"Deal {n}", f"a{n}@c{n}.example") for n in range(companies)}
    calls_to = linked(crm, "activities", "deal_id", "deals")
    assert calls_to == {(f"Call {n}", f"Deal {n}") for n in range(companies)}


def test_notes_and_activities_hang_on_their_records_and_a_note_without_one_is_refused(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            {
                "notes": [
                    {
                        "body": "Met at the fair",
                        "date": "2025-02-03",
                        "contact_email": "ada@acme.com",
                    },
                    {"body": "Nobody's note"},
                    {"body": "Terms agreed", "deal_name": "Big deal"},
                ],
                "activities": [
                    {"subject": "Call", "type": "Call", "done": "yes", "company": "Acme"},
                ],
                "deals": [{"name": "Big deal", "company": "Acme"}],
                "contacts": [{"email": "ada@acme.com", "company_domain": "acme.com"}],
                "organizations": [{"name": "Acme", "domain": "acme.com"}],
            }
        ),
        encoding="utf-8",
    )
    summary = imported(path)

    (acme,) = items(crm, "organizations")
    (ada,) = items(crm, "persons")
    (deal,) = items(crm, "deals")
    (call,) = items(crm, "activities")
    notes = {n["content"]: n for n in items(crm, "notes")}
    assert (ada["org_id"], deal["org_id"]) == (acme["id"], acme["id"])
    assert (call["type"], call["done"], call["org_id"]) == ("call", True, acme["id"])
    assert notes["Met at the fair"]["person_id"] == ada["id"]
    assert notes["Met at the fair"]["add_time"] == "2025-02-03 00:00:00"
    assert notes["Terms agreed"]["deal_id"] == deal["id"]
    assert set(notes) == {"Met at the fair", "Terms agreed"}
    assert "attaches every note to a person" in rejected(summary)[("notes", "2")]

    before = writes(crm)
    imported(path)
    assert writes(crm) == before, "a re-import makes no write call"

    assert cli.main(["rollback", summary["import_id"]]) == 0
    assert all(not items(crm, kind) for kind in (*NAMED_BY, "notes"))
