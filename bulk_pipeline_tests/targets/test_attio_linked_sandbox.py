"""Linked imports into the sandbox's Attio over loopback, through the command: companies,
people, deals, tasks and notes written once and linked by record references, broken references
rejected with their sheet and line, nothing written by a re-import, the CRM as it was after a
rollback, and the same after a crash between creating records and linking them, and under
injected faults."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.defs.assets import import_assets
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.resources import default_resources
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.attio.values import BOOKKEEPING
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.cli_process import COMMAND, cli_env
from bulk_pipeline_tests.linked_files import (
    ACTIVITIES,
    COMPANIES,
    CONTACTS,
    DEALS,
    csv_file,
    workbook,
)

ATTIO = ["--target", "sandbox-attio", "--no-progress"]
NOTES = [
    ["Body", "Date", "Contact Email", "Company Domain", "Deal ID"],
    ["Met at the fair", "2025-01-05", "ada@acme.com", "acme.com", "D-1"],
    ["Prefers email", "", "bob@globex.io", "", ""],
    ["About a ghost", "", "ghost@nowhere.org", "", ""],
]
NAMED_BY = {"people": "email_addresses", "companies": "domains", "deals": "name"}


def migration_with_notes(path: Path) -> Path:
    return workbook(
        path,
        {
            "Companies": COMPANIES,
            "Contacts": CONTACTS,
            "Deals": DEALS,
            "Activities": ACTIVITIES,
            "Notes": NOTES,
        },
    )


def records(crm: RunningSandbox, kind: str) -> list[dict[str, Any]]:
    return crm.admin.records(kind, dialect="attio")


def name_of(record: dict[str, Any], slug: str) -> str:
    """An email, a company's domain (else its name), a deal's name."""
    values = record["values"][NAMED_BY[slug]] or record["values"]["name"]
    value = values[0]
    return str(value.get("email_address") or value.get("domain") or value.get("value"))


def names(crm: RunningSandbox, slug: str) -> dict[str, str]:
    """Record id -> what names it (an email, a domain, a deal's name)."""
    return {r["id"]["record_id"]: name_of(r, slug) for r in records(crm, slug)}


def every_name(crm: RunningSandbox) -> dict[str, str]:
    return {record_id: name for slug in NAMED_BY for record_id, name in names(crm, slug).items()}


def referenced(crm: RunningSandbox, slug: str, attribute: str) -> set[tuple[str, str]]:
    """(record's name, referenced record's name) of every value of a record reference."""
    named = every_name(crm)
    return {
        (name_of(r, slug), named[value["target_record_id"]])
        for r in records(crm, slug)
        for value in r["values"][attribute]
    }


def task_links(crm: RunningSandbox) -> set[tuple[str, str]]:
    named = every_name(crm)
    return {
        (task["content_plaintext"], named[link["target_record_id"]])
        for task in records(crm, "tasks")
        for link in task["linked_records"]
    }


def note_parents(crm: RunningSandbox) -> dict[str, str]:
    named = every_name(crm)
    return {n["content_plaintext"]: named[n["parent_record_id"]] for n in records(crm, "notes")}


def state(crm: RunningSandbox) -> dict[str, Any]:
    """Everything the workspace holds, without when and by whom values were written (a value
    put back by a rollback is the same value, written again)."""

    def what(value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in BOOKKEEPING}

    held: dict[str, Any] = {
        slug: {
            r["id"]["record_id"]: {a: [what(v) for v in vs] for a, vs in r["values"].items()}
            for r in records(crm, slug)
        }
        for slug in NAMED_BY
    }
    held["tasks"] = records(crm, "tasks")
    held["notes"] = records(crm, "notes")
    return held


def writes(crm: RunningSandbox) -> int:
    return int(crm.admin.requests("attio")["writes"])


def summary_of(path: Path) -> dict[str, Any]:
    folder = config.reports_dir(register_import(path, target="sandbox-attio").import_id)
    return dict(json.loads((folder / "summary.json").read_text(encoding="utf-8")))


def rejected(summary: dict[str, Any]) -> dict[tuple[str, str], str]:
    with open(summary["rejected_csv"], encoding="utf-8-sig", newline="") as handle:
        return {(r["sheet"], r["line"]): r["reason"] for r in csv.DictReader(handle)}


def attio(crm: RunningSandbox) -> httpx.Client:
    """A client of the workspace, as a person's other tools would write to it."""
    return httpx.Client(base_url=crm.url, headers={"Authorization": f"Bearer {crm.token}"})


def created(client: httpx.Client, path: str, data: dict[str, Any]) -> str:
    answer = client.post(path, json={"data": data})
    assert answer.status_code == 200, answer.text
    found = answer.json()["data"]["id"]
    return str(found.get("record_id") or found.get("task_id"))


def test_a_migration_workbook_is_imported_linked_reimported_for_free_and_rolled_back(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    with attio(crm) as client:
        initech = created(
            client,
            "/v2/objects/companies/records",
            {"values": {"name": ["Initech Corp"], "domains": ["initech.com"]}},
        )
        cy = created(
            client,
            "/v2/objects/people/records",
            {"values": {"email_addresses": ["cy@initech.com"], "job_title": ["Engineer"]}},
        )
        created(
            client,
            "/v2/objects/deals/records",
            {
                "values": {
                    "name": ["Legacy deal"],
                    "associated_company": [
                        {"target_object": "companies", "target_record_id": initech}
                    ],
                    "associated_people": [{"target_object": "people", "target_record_id": cy}],
                }
            },
        )
        created(
            client,
            "/v2/tasks",
            {
                "content": "Say hello to Cy",
                "format": "plaintext",
                "deadline_at": None,
                "is_completed": False,
                "linked_records": [{"target_object": "people", "target_record_id": cy}],
                "assignees": [],
            },
        )
    before = state(crm)
    path = migration_with_notes(tmp_path / "migration.xlsx")

    assert cli.main(["import", str(path), *ATTIO]) == 0
    summary = summary_of(path)

    assert sorted(names(crm, "companies").values()) == ["acme.com", "globex.io", "initech.com"]
    assert sorted(names(crm, "people").values()) == [
        "ada@acme.com",
        "bob@globex.io",
        "cy@initech.com",
    ]
    assert sorted(names(crm, "deals").values()) == ["Acme renewal", "Globex pilot", "Legacy deal"]
    assert referenced(crm, "people", "company") == {
        ("ada@acme.com", "acme.com"),
        ("bob@globex.io", "globex.io"),
        ("cy@initech.com", "initech.com"),
    }
    assert referenced(crm, "deals", "associated_company") == {
        ("Acme renewal", "acme.com"),
        ("Globex pilot", "globex.io"),
        ("Legacy deal", "initech.com"),
    }
    assert referenced(crm, "deals", "associated_people") == {
        ("Acme renewal", "ada@acme.com"),
        ("Globex pilot", "bob@globex.io"),
        ("Legacy deal", "cy@initech.com"),
    }
    assert task_links(crm) == {
        ("Call Ada", "ada@acme.com"),
        ("Call Ada", "Acme renewal"),
        ("Email Bob", "bob@globex.io"),
        ("Email Bob", "Globex pilot"),
        ("Say hello to Cy", "cy@initech.com"),
    }
    assert note_parents(crm) == {
        "Met at the fair": "Acme renewal",
        "Prefers email": "bob@globex.io",
    }
    (fair,) = [n for n in records(crm, "notes") if n["content_plaintext"] == "Met at the fair"]
    assert fair["title"] == "2025-01-05: Met at the fair"
    assert {
        entity: (counts["created"], counts["updated"], counts["invalid"])
        for entity, counts in summary["entities"].items()
    } == {
        "companies": (2, 1, 0),
        "contacts": (2, 1, 1),
        "deals": (2, 0, 1),
        "activities": (2, 0, 2),
        "notes": (2, 0, 1),
    }
    reasons = rejected(summary)
    assert set(reasons) == {
        ("Contacts", "5"),
        ("Deals", "4"),
        ("Activities", "4"),
        ("Activities", "5"),
        ("Notes", "4"),
    }
    assert "company_domain 'nowhere.org' names no company" in reasons[("Contacts", "5")]
    assert "'ghost.example' names no company" in reasons[("Deals", "4")]
    assert "deal_id 'D-404' names no deal" in reasons[("Activities", "5")]
    assert "'ghost@nowhere.org'" in reasons[("Notes", "4")]

    written = writes(crm)
    assert cli.main(["import", str(path), *ATTIO]) == 0
    assert writes(crm) == written, "a re-import makes no write call"
    again = summary_of(path)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 12)

    assert cli.main(["rollback", summary["import_id"], "--yes"]) == 0
    assert state(crm) == before, "the workspace is as it was"


def test_links_to_records_that_exist_are_added_beside_theirs_and_undone_alone(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    with attio(crm) as client:
        globex = created(
            client,
            "/v2/objects/companies/records",
            {"values": {"name": ["Globex"], "domains": ["globex.io"]}},
        )
        zed = created(
            client, "/v2/objects/people/records", {"values": {"email_addresses": ["zed@globex.io"]}}
        )
        created(
            client,
            "/v2/objects/deals/records",
            {
                "values": {
                    "name": ["Globex pilot"],
                    "associated_company": [
                        {"target_object": "companies", "target_record_id": globex}
                    ],
                    "associated_people": [{"target_object": "people", "target_record_id": zed}],
                }
            },
        )
    before = state(crm)
    path = workbook(
        tmp_path / "deals.xlsx",
        {
            "Contacts": [
                ["Email", "Company", "Company Website"],
                ["bob@globex.io", "Globex", "https://www.globex.io/team"],
                ["al@globex.io", "Globex", "globex.io"],
                ["cy@initech.com", "Initech", ""],
            ],
            "Deals": [
                ["Deal Name", "Company Domain", "Contact Email"],
                ["Globex pilot", "globex.io", "bob@globex.io"],
            ],
        },
    )

    assert cli.main(["import", str(path), *ATTIO]) == 0

    assert sorted(r["values"]["name"][0]["value"] for r in records(crm, "companies")) == [
        "Globex",
        "Initech",
    ], "Globex found, Initech created once"
    assert len(records(crm, "deals")) == 1, "the deal found by its name at its company"
    (deal,) = records(crm, "deals")
    assert [
        every_name(crm)[v["target_record_id"]] for v in deal["values"]["associated_people"]
    ] == [
        "bob@globex.io",
        "zed@globex.io",
    ], "Bob added in front of the people the deal had"
    assert referenced(crm, "people", "company") == {
        ("bob@globex.io", "globex.io"),
        ("al@globex.io", "globex.io"),
        ("cy@initech.com", "Initech"),
    }, "Zed's company left alone"
    summary = summary_of(path)
    assert summary["entities"]["deals"]["updated"] == 1
    assert summary["entities"]["companies"] == {
        **summary["entities"]["companies"],
        "created": 1,
        "unchanged": 1,
    }

    assert cli.main(["rollback", summary["import_id"], "--yes"]) == 0
    assert state(crm) == before, "only the link the import added was taken out"


def _import_process(path: Path, crm: RunningSandbox) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*COMMAND, "import", str(path), *ATTIO],
        env=cli_env(crm),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_crash_between_creating_records_and_linking_them_is_finished_by_the_rerun(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    """The import is killed (-9) once the people exist and before a deal, task or note, which
    link to them, is written: the re-run creates no company or person again and links the rest
    to the records the killed run made."""
    crm.admin.configure(latency_ms=60)
    path = migration_with_notes(tmp_path / "migration.xlsx")
    process = _import_process(path, crm)
    deadline = time.monotonic() + 120
    while len(records(crm, "people")) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "the import never created its people"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert (len(records(crm, "people")), records(crm, "deals"), records(crm, "tasks")) == (
        3,
        [],
        [],
    )
    people = set(names(crm, "people"))
    companies = set(names(crm, "companies"))

    crm.admin.configure(latency_ms=0)
    assert cli.main(["import", str(path), *ATTIO]) == 0

    assert set(names(crm, "people")) == people and set(names(crm, "companies")) == companies
    assert referenced(crm, "deals", "associated_people") == {
        ("Acme renewal", "ada@acme.com"),
        ("Globex pilot", "bob@globex.io"),
    }
    assert task_links(crm) == {
        ("Call Ada", "ada@acme.com"),
        ("Call Ada", "Acme renewal"),
        ("Email Bob", "bob@globex.io"),
        ("Email Bob", "Globex pilot"),
    }
    assert note_parents(crm) == {
        "Met at the fair": "Acme renewal",
        "Prefers email": "bob@globex.io",
    }
    counts = summary_of(path)["entities"]
    assert [counts[e]["created"] for e in ("companies", "contacts", "deals", "activities")] == [
        3,
        3,
        2,
        2,
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_under_lost_answers_and_server_errors_each_record_and_link_exists_once(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance, seed: int
) -> None:
    crm.admin.configure(error_rate=0.1, drop_rate=0.25, seed=seed)
    path = migration_with_notes(tmp_path / "migration.xlsx")
    outcome = cli.main(["import", str(path), *ATTIO])
    crm.admin.configure(error_rate=0.0, drop_rate=0.0)
    if outcome != 0:
        assert cli.main(["import", str(path), *ATTIO]) == 0

    for slug, count in (("companies", 3), ("people", 3), ("deals", 2)):
        held = list(names(crm, slug).values())
        assert len(held) == count and len(set(held)) == count, slug
    assert sorted(t["content_plaintext"] for t in records(crm, "tasks")) == [
        "Call Ada",
        "Email Bob",
    ]
    assert sorted(note_parents(crm)) == ["Met at the fair", "Prefers email"]
    assert len(referenced(crm, "people", "company")) == 3
    assert len(task_links(crm)) == 4
    assert crm.admin.requests("attio")["dropped"] > 0


def test_a_contacts_file_with_company_columns_links_each_person_through_dagster(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "First Name", "Company", "Company Website"],
            ["ada@acme.com", "Ada", "Acme", "https://www.acme.com/"],
            ["al@acme.com", "Al", "Acme", "acme.com"],
            ["cy@solo.dev", "Cy", "Solo", ""],
        ],
    )

    request = register_import(path, target="sandbox-attio")
    instance.add_dynamic_partitions(imports_partitions.name or "imports", [request.import_id])

    result = dg.materialize(
        import_assets,
        partition_key=request.import_id,
        instance=instance,
        resources=default_resources(),
    )

    assert result.success
    companies = {r["values"]["name"][0]["value"]: r for r in records(crm, "companies")}
    assert sorted(companies) == ["Acme", "Solo"]
    assert [v["domain"] for v in companies["Acme"]["values"]["domains"]] == ["acme.com"]
    assert {
        (name_of(p, "people"), p["values"]["company"][0]["target_record_id"])
        for p in records(crm, "people")
    } == {
        ("ada@acme.com", companies["Acme"]["id"]["record_id"]),
        ("al@acme.com", companies["Acme"]["id"]["record_id"]),
        ("cy@solo.dev", companies["Solo"]["id"]["record_id"]),
    }
