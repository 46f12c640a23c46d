"""Linked imports into the sandbox's HubSpot over loopback, through the command: records written
once, associations made on creates or apart, broken references rejected with their sheet and
line, nothing written by a re-import, everything undone by a rollback, and the same under
injected faults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.linked_files import BROKEN, csv_file, migration, rejected
from bulk_pipeline_tests.postgres import PostgresServer

OBJECTS = {
    "companies": "domain",
    "contacts": "email",
    "deals": "dealname",
    "tasks": "hs_task_subject",
}


def imported(path: Path, *args: str) -> dict[str, Any]:
    assert cli.main(["import", str(path), "--no-progress", *args]) == 0
    folder = config.data_home() / "reports" / register_import(path).import_id
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return summary


def names(sandbox: RunningSandbox, object_type: str) -> dict[str, str]:
    """Each active record's id -> the property that names it."""
    prop = OBJECTS[object_type]
    return {r["id"]: r["properties"].get(prop) for r in sandbox.admin.records(object_type)}


def linked(sandbox: RunningSandbox, from_type: str, to_type: str) -> set[tuple[str, str]]:
    """(from name, to name) of every association, read as a HubSpot client would (v4, in
    batches of at most 100)."""
    sources, targets = names(sandbox, from_type), names(sandbox, to_type)
    ids = list(sources)
    pairs: set[tuple[str, str]] = set()
    for start in range(0, len(ids), 100):
        answer = httpx.post(
            f"{sandbox.url}/crm/v4/associations/{from_type}/{to_type}/batch/read",
            json={"inputs": [{"id": record_id} for record_id in ids[start : start + 100]]},
            headers={"Authorization": f"Bearer {sandbox.token}"},
        ).json()
        pairs |= {
            (sources[str(row["from"]["id"])], targets[str(to["toObjectId"])])
            for row in answer.get("results", [])
            for to in row["to"]
        }
    return pairs


def writes(sandbox: RunningSandbox) -> int:
    return int(sandbox.admin.requests("hubspot")["writes"])


@pytest.fixture
def staging(
    store_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The command's staging and instance in the data home (DuckDB, SQLite), or both in a new
    PostgreSQL database (``BULK_PIPELINE_DATABASE_URL``); asked for before ``instance``."""
    if store_kind == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch.setenv(config.DATABASE_URL_ENV, server.new_database())
    return store_kind


def test_a_migration_workbook_is_imported_linked_reimported_for_free_and_rolled_back(
    tmp_path: Path, staging: str, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = migration(tmp_path / "migration.xlsx")
    summary = imported(path)
    assert type(instance.run_storage).__name__ == (
        "PostgresRunStorage" if staging == "postgres" else "SqliteRunStorage"
    )
    assert (config.data_home() / "staging.duckdb").exists() == (staging == "duckdb")

    assert sorted(names(crm, "companies").values()) == ["acme.com", "globex.io", "initech.com"]
    assert sorted(names(crm, "contacts").values()) == [
        "ada@acme.com",
        "bob@globex.io",
        "cy@initech.com",
    ]
    assert sorted(names(crm, "deals").values()) == ["Acme renewal", "Globex pilot"]
    assert sorted(names(crm, "tasks").values()) == ["Call Ada", "Email Bob"]
    assert linked(crm, "contacts", "companies") == {
        ("ada@acme.com", "acme.com"),
        ("bob@globex.io", "globex.io"),
        ("cy@initech.com", "initech.com"),
    }
    assert linked(crm, "deals", "companies") == {
        ("Acme renewal", "acme.com"),
        ("Globex pilot", "globex.io"),
    }
    assert linked(crm, "deals", "contacts") == {
        ("Acme renewal", "ada@acme.com"),
        ("Globex pilot", "bob@globex.io"),
    }
    assert linked(crm, "tasks", "deals") == {
        ("Call Ada", "Acme renewal"),
        ("Email Bob", "Globex pilot"),
    }
    assert linked(crm, "tasks", "contacts") == {
        ("Call Ada", "ada@acme.com"),
        ("Email Bob", "bob@globex.io"),
    }
    assert set(rejected(summary)) == BROKEN
    assert "'ghost.example' names no company" in rejected(summary)[("Deals", "4")]

    before = writes(crm)
    again = imported(path)
    assert writes(crm) == before, "a re-import makes no write call"
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 10)

    assert cli.main(["rollback", summary["import_id"]]) == 0
    assert all(not names(crm, object_type) for object_type in OBJECTS)


def test_a_contacts_csv_with_company_columns_links_each_contact_to_its_one_company(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "First Name", "Company", "Company Website"],
            ["ada@acme.com", "Ada", "Acme", "https://www.acme.com/"],
            ["al@acme.com", "Al", "Acme", "acme.com"],
            ["bob@globex.io", "Bob", "Globex", "http://globex.io/team"],
            ["cy@initech.com", "Cy", "Initech", ""],
        ],
    )
    summary = imported(path)

    companies = {
        r["properties"]["name"]: r["properties"].get("domain")
        for r in crm.admin.records("companies")
    }
    assert companies == {"Acme": "acme.com", "Globex": "globex.io", "Initech": None}
    assert linked(crm, "contacts", "companies") == {
        ("ada@acme.com", "acme.com"),
        ("al@acme.com", "acme.com"),
        ("bob@globex.io", "globex.io"),
        ("cy@initech.com", None),
    }
    assert summary["entities"]["companies"]["created"] == 3
    assert summary["entities"]["contacts"]["created"] == 4


def test_links_to_records_that_exist_are_made_apart_once_and_undone_alone(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    client = httpx.Client(base_url=crm.url, headers={"Authorization": f"Bearer {crm.token}"})
    acme = client.post(
        "/crm/v3/objects/companies", json={"properties": {"name": "Acme", "domain": "acme.com"}}
    ).json()["id"]
    ada = client.post(
        "/crm/v3/objects/contacts", json={"properties": {"email": "ada@acme.com"}}
    ).json()["id"]
    client.put(f"/crm/v4/objects/contacts/{ada}/associations/default/companies/{acme}")
    bob = client.post(
        "/crm/v3/objects/contacts", json={"properties": {"email": "bob@acme.com"}}
    ).json()["id"]
    path = csv_file(
        tmp_path / "contacts.csv",
        [["Email", "Company Domain"], ["ada@acme.com", "acme.com"], ["bob@acme.com", "acme.com"]],
    )
    summary = imported(path)

    assert linked(crm, "contacts", "companies") == {
        ("ada@acme.com", "acme.com"),
        ("bob@acme.com", "acme.com"),
    }
    assert summary["links"] == {"made": 1, "found": 1}
    stats = crm.admin.requests("hubspot")["by_route"]
    assert stats.get("associations/batch/create") == 1, stats

    assert cli.main(["rollback", summary["import_id"]]) == 0
    assert linked(crm, "contacts", "companies") == {("ada@acme.com", "acme.com")}
    assert set(names(crm, "contacts")) == {ada, bob}
    client.close()


def test_a_contacts_file_finds_the_companies_it_names_and_never_rewrites_them(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    """A contacts file's company columns say which company a contact works at, not what the
    company should hold: one the CRM has keeps its name (not the domain that named it, nor
    another spelling), one it lacks is created."""
    client = httpx.Client(base_url=crm.url, headers={"Authorization": f"Bearer {crm.token}"})
    client.post(
        "/crm/v3/objects/companies",
        json={"properties": {"name": "Acme Incorporated", "domain": "acme.com"}},
    )
    client.close()
    by_domain = csv_file(
        tmp_path / "by_domain.csv",
        [["Email", "Company Domain"], ["ada@acme.com", "acme.com"], ["bo@hooli.xyz", "hooli.xyz"]],
    )
    by_name = csv_file(
        tmp_path / "by_name.csv",
        [["Email", "Company", "Company Domain"], ["al@acme.com", "ACME", "acme.com"]],
    )

    first = imported(by_domain)
    assert cli.main(["import", str(by_name), "--dry-run", "--no-progress"]) == 0
    plan_path = config.data_home() / "reports" / register_import(by_name).import_id / "plan.json"
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    assert (plan["creates"], plan["updates"], plan["unchanged"]) == (1, 0, 1)
    second = imported(by_name)

    companies = {
        r["properties"]["domain"]: r["properties"]["name"] for r in crm.admin.records("companies")
    }
    assert companies == {"acme.com": "Acme Incorporated", "hooli.xyz": "hooli.xyz"}
    assert linked(crm, "contacts", "companies") == {
        ("ada@acme.com", "acme.com"),
        ("bo@hooli.xyz", "hooli.xyz"),
        ("al@acme.com", "acme.com"),
    }
    assert (
        first["entities"]["companies"]["created"],
        first["entities"]["companies"]["unchanged"],
    ) == (1, 1)
    assert second["entities"]["companies"]["unchanged"] == 1
    assert second["entities"]["companies"]["updated"] == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_under_lost_answers_and_server_errors_each_record_and_link_exists_once(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance, seed: int
) -> None:
    crm.admin.configure(error_rate=0.1, drop_rate=0.1, seed=seed)
    path = migration(tmp_path / "migration.xlsx")
    imported(path)
    crm.admin.configure(error_rate=0.0, drop_rate=0.0)

    for object_type, count in (("companies", 3), ("contacts", 3), ("deals", 2), ("tasks", 2)):
        values = list(names(crm, object_type).values())
        assert len(values) == count and len(set(values)) == count, object_type
    assert len(linked(crm, "contacts", "companies")) == 3
    assert len(linked(crm, "tasks", "deals")) == 2
