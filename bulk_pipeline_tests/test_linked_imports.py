"""Linked imports against the in-memory CRM: several entities in one file, written in dependency
order, linked the way the CRM links records, accounted for per (line, entity), undone whole.

The fake CRM runs behind the real runner, push and staging store; its capabilities (links as
associations that ride on creates or not, links as fields) and faults are knobs. The same
imports against the sandbox over HTTP are in ``test_linked_sandbox.py``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bulk_pipeline import import_steps
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import TransientError
from bulk_pipeline.imports import register_import
from bulk_pipeline.outcomes import ImportSummary
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import LinkStyle
from bulk_pipeline.targets.fake import FakeCrm, Faults, fake_target, with_capabilities
from bulk_pipeline.targets.runner import SyncTarget
from bulk_pipeline_tests.linked_files import (
    ACTIVITIES,
    COMPANIES,
    CONTACTS,
    DEALS,
    csv_file,
    migration,
    workbook,
)


def run(path: Path, target: SyncTarget, store: StagingStore) -> ImportSummary:
    request = register_import(path)
    import_steps.ingest(request)
    import_steps.validate(request)
    import_steps.stage(request, store, target.account)
    import_steps.push(request, store, target, log=lambda _message: None)
    return import_steps.write_results(request, store)


def rows_of(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def by_field(crm: FakeCrm, entity: Entity, field: str) -> dict[str, str]:
    """CRM id of each record, by a field's value."""
    return {r.fields[field] or "": r.id for r in crm.of(entity).values() if r.fields.get(field)}


def named_links(crm: FakeCrm, entity: Entity, to: Entity, key: str, to_key: str) -> set[tuple]:
    names = {r.id: r.fields.get(key) for r in crm.of(entity).values()}
    to_names = {r.id: r.fields.get(to_key) for r in crm.of(to).values()}
    return {(names[f], to_names[t]) for f, t in crm.linked(entity, to)}


@pytest.fixture
def store(new_store: Callable[[str], StagingStore]) -> StagingStore:
    """Each staging store in turn (DuckDB, PostgreSQL): linked imports take every method of
    the protocol."""
    return new_store("staging")


def test_a_workbook_of_four_linked_sheets_is_written_once_linked_and_undone_whole(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm()
    target = fake_target(crm)
    path = migration(tmp_path / "migration.xlsx")
    summary = run(path, target, store)

    assert sorted(by_field(crm, Entity.COMPANIES, "domain")) == [
        "acme.com",
        "globex.io",
        "initech.com",
    ]
    assert sorted(by_field(crm, Entity.CONTACTS, "email")) == [
        "ada@acme.com",
        "bob@globex.io",
        "cy@initech.com",
    ]
    assert named_links(crm, Entity.CONTACTS, Entity.COMPANIES, "email", "domain") == {
        ("ada@acme.com", "acme.com"),
        ("bob@globex.io", "globex.io"),
        ("cy@initech.com", "initech.com"),
    }
    assert named_links(crm, Entity.DEALS, Entity.COMPANIES, "name", "domain") == {
        ("Acme renewal", "acme.com"),
        ("Globex pilot", "globex.io"),
    }
    assert named_links(crm, Entity.DEALS, Entity.CONTACTS, "name", "email") == {
        ("Acme renewal", "ada@acme.com"),
        ("Globex pilot", "bob@globex.io"),
    }
    assert named_links(crm, Entity.ACTIVITIES, Entity.DEALS, "subject", "name") == {
        ("Call Ada", "Acme renewal"),
        ("Email Bob", "Globex pilot"),
    }
    assert named_links(crm, Entity.ACTIVITIES, Entity.CONTACTS, "subject", "email") == {
        ("Call Ada", "ada@acme.com"),
        ("Email Bob", "bob@globex.io"),
    }
    assert crm.calls.get("add_links", 0) == 0, "links ride on creates"

    entities = summary.extra["entities"]
    assert {e: (c["rows"], c["created"], c["invalid"]) for e, c in entities.items()} == {
        "companies": (3, 3, 0),
        "contacts": (4, 3, 1),
        "deals": (3, 2, 1),
        "activities": (4, 2, 2),
    }
    rejected = {(r["sheet"], r["line"]): r["reason"] for r in rows_of(summary.rejected_csv)}
    assert set(rejected) == {
        ("Contacts", "5"),
        ("Deals", "4"),
        ("Activities", "4"),
        ("Activities", "5"),
    }
    assert "company_domain 'nowhere.org' names no company" in rejected[("Contacts", "5")]
    assert "'nobody@acme.com'" in rejected[("Activities", "4")]
    assert "deal_id 'D-404'" in rejected[("Activities", "5")]

    writes = crm.writes()
    again = run(path, target, store)
    assert crm.writes() == writes, "a re-import writes nothing"
    assert again.extra["entities"]["activities"]["unchanged"] == 2

    report = import_steps.rollback(register_import(path), store, target)
    assert report.complete
    assert all(not crm.of(entity) for entity in Entity)
    assert all(not pairs for pairs in crm.links.values())


def test_a_contacts_csv_with_company_columns_creates_each_company_once_and_links_it(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm()
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "Company", "Company Website"],
            ["ada@acme.com", "Acme", "https://acme.com"],
            ["al@acme.com", "Acme Inc", "acme.com"],
            ["bob@globex.io", "Globex", "globex.io"],
            ["cy@solo.dev", "Solo", ""],
            ["dee@example.com", "", ""],
        ],
    )
    summary = run(path, fake_target(crm), store)

    companies = {
        r.fields["name"]: r.fields.get("domain") for r in crm.of(Entity.COMPANIES).values()
    }
    assert companies == {"Acme": "acme.com", "Globex": "globex.io", "Solo": None}
    assert named_links(crm, Entity.CONTACTS, Entity.COMPANIES, "email", "name") == {
        ("ada@acme.com", "Acme"),
        ("al@acme.com", "Acme"),
        ("bob@globex.io", "Globex"),
        ("cy@solo.dev", "Solo"),
    }
    entities = summary.extra["entities"]
    assert (entities["companies"]["created"], entities["companies"]["duplicates"]) == (3, 1)
    assert entities["contacts"]["created"] == 5
    assert summary.rows == 5


def test_a_company_created_by_name_is_the_one_a_later_file_gives_with_its_domain(
    tmp_path: Path, store: StagingStore
) -> None:
    """A contacts file names companies without domains; a companies file then gives them with
    their domains: the CRM's name-only company is matched and given its domain, not created
    again. A company of that name holding another domain is another company."""
    crm = FakeCrm()
    target = fake_target(crm)
    contacts = csv_file(
        tmp_path / "contacts.csv",
        [["Email", "Company"], ["ada@globex.io", "Globex"], ["bo@initech.com", "Initech"]],
    )
    run(contacts, target, store)
    target.create(Entity.COMPANIES, [{"name": "Umbrella", "domain": "umbrella.com"}])
    companies = csv_file(
        tmp_path / "companies.csv",
        [
            ["Name", "Website"],
            ["Globex", "https://globex.io"],
            ["Umbrella", "umbrella.eu"],
            ["Hooli", "hooli.xyz"],
        ],
    )

    summary = run(companies, target, store)

    held = sorted(
        (r.fields["name"], r.fields.get("domain")) for r in crm.of(Entity.COMPANIES).values()
    )
    assert held == [
        ("Globex", "globex.io"),
        ("Hooli", "hooli.xyz"),
        ("Initech", None),
        ("Umbrella", "umbrella.com"),
        ("Umbrella", "umbrella.eu"),
    ]
    assert (summary.updated, summary.created) == (1, 2)
    assert named_links(crm, Entity.CONTACTS, Entity.COMPANIES, "email", "name") == {
        ("ada@globex.io", "Globex"),
        ("bo@initech.com", "Initech"),
    }


def test_entities_are_written_in_dependency_order_whatever_the_sheet_order(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm()
    path = workbook(
        tmp_path / "backwards.xlsx",
        {"Activities": ACTIVITIES, "Deals": DEALS, "Contacts": CONTACTS, "Companies": COMPANIES},
    )
    run(path, fake_target(crm), store)

    def ids(entity: Entity) -> list[int]:
        return [int(i) for i in crm.of(entity)]

    assert max(ids(Entity.COMPANIES)) < min(ids(Entity.CONTACTS))
    assert max(ids(Entity.CONTACTS)) < min(ids(Entity.DEALS))
    assert max(ids(Entity.DEALS)) < min(ids(Entity.ACTIVITIES))


def test_an_ambiguous_or_unwritten_reference_rejects_only_its_own_line(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm()
    path = workbook(
        tmp_path / "ambiguous.xlsx",
        {
            "Companies": [["Name", "Domain"], ["Acme", "acme.com"], ["Acme", "acme.de"]],
            "Contacts": [
                ["Email", "Company"],
                ["ada@acme.com", "Acme"],
                ["bob@example.com", ""],
            ],
        },
    )
    summary = run(path, fake_target(crm), store)

    rejected = {(r["sheet"], r["line"]): r["reason"] for r in rows_of(summary.rejected_csv)}
    assert list(rejected) == [("Contacts", "2")]
    assert "names 2 companies (Companies line 2, Companies line 3)" in rejected[("Contacts", "2")]
    assert sorted(by_field(crm, Entity.CONTACTS, "email")) == ["bob@example.com"]


def test_links_the_crm_holds_already_are_not_written_again_nor_undone(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm()
    acme = crm.insert(Entity.COMPANIES, {"name": "Acme", "domain": "acme.com"})
    ada = crm.insert(Entity.CONTACTS, {"email": "ada@acme.com", "first_name": "Ada"})
    bob = crm.insert(Entity.CONTACTS, {"email": "bob@acme.com", "first_name": "Bob"})
    crm.linked(Entity.CONTACTS, Entity.COMPANIES).add((ada.id, acme.id))
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "First Name", "Company Domain"],
            ["ada@acme.com", "Ada", "acme.com"],
            ["bob@acme.com", "Bob", "acme.com"],
        ],
    )
    target = fake_target(crm)
    summary = run(path, target, store)

    assert crm.linked(Entity.CONTACTS, Entity.COMPANIES) == {(ada.id, acme.id), (bob.id, acme.id)}
    assert crm.calls["add_links"] == 1
    assert summary.extra["links"] == {"made": 1, "found": 1}
    assert summary.extra["entities"]["contacts"]["unchanged"] == 2

    reads = crm.calls["read_links"]
    run(path, target, store)
    assert crm.calls["add_links"] == 1
    assert crm.calls["read_links"] == reads, "links known made or found are not read again"

    import_steps.rollback(register_import(path), store, target)
    assert crm.linked(Entity.CONTACTS, Entity.COMPANIES) == {(ada.id, acme.id)}
    assert set(crm.of(Entity.CONTACTS)) == {ada.id, bob.id}


def test_a_crash_between_creating_records_and_linking_them_is_finished_by_the_rerun(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm(
        capabilities=with_capabilities(links_on_create=False),
        faults=Faults(fail_next={"add_links": 1}),
    )
    target = fake_target(crm)
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "Company", "Company Domain"],
            ["ada@acme.com", "Acme", "acme.com"],
            ["bob@globex.io", "Globex", "globex.io"],
        ],
    )
    request = register_import(path)
    import_steps.ingest(request)
    import_steps.validate(request)
    import_steps.stage(request, store, target.account)
    with pytest.raises(TransientError):
        import_steps.push(request, store, target, log=lambda _message: None)
    assert len(crm.of(Entity.CONTACTS)) == 2
    assert not crm.linked(Entity.CONTACTS, Entity.COMPANIES)

    import_steps.push(request, store, target, log=lambda _message: None)
    summary = import_steps.write_results(request, store)

    assert len(crm.of(Entity.CONTACTS)) == 2
    assert len(crm.of(Entity.COMPANIES)) == 2
    assert named_links(crm, Entity.CONTACTS, Entity.COMPANIES, "email", "name") == {
        ("ada@acme.com", "Acme"),
        ("bob@globex.io", "Globex"),
    }
    assert summary.extra["entities"]["contacts"]["created"] == 2

    import_steps.rollback(request, store, target)
    assert not crm.of(Entity.CONTACTS) and not crm.of(Entity.COMPANIES)


def test_links_that_are_fields_are_written_with_the_record_and_restored_by_rollback(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm(capabilities=with_capabilities(links=LinkStyle.FOREIGN_KEY))
    old = crm.insert(Entity.COMPANIES, {"name": "Old", "domain": "old.com"})
    ada = crm.insert(
        Entity.CONTACTS, {"email": "ada@acme.com", "company_crm_id": old.id, "first_name": "Ada"}
    )
    path = csv_file(
        tmp_path / "contacts.csv",
        [
            ["Email", "First Name", "Company", "Company Domain"],
            ["ada@acme.com", "Ada", "Acme", "acme.com"],
        ],
    )
    target = fake_target(crm)
    summary = run(path, target, store)

    (acme,) = [r for r in crm.of(Entity.COMPANIES).values() if r.fields["name"] == "Acme"]
    assert crm.of(Entity.CONTACTS)[ada.id].fields["company_crm_id"] == acme.id
    assert summary.extra["entities"]["contacts"]["updated"] == 1
    assert "add_links" not in crm.calls

    import_steps.rollback(register_import(path), store, target)
    assert crm.of(Entity.CONTACTS)[ada.id].fields["company_crm_id"] == old.id
    assert set(crm.of(Entity.COMPANIES)) == {old.id}


def test_a_record_the_crm_links_to_one_record_only_is_linked_by_its_first_reference(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm(
        capabilities=with_capabilities(
            links=LinkStyle.REFERENCE, one_link={Entity.NOTES: ("deal", "contact", "company")}
        )
    )
    path = workbook(
        tmp_path / "notes.xlsx",
        {
            "Contacts": [["Email"], ["ada@acme.com"]],
            "Deals": [["Deal ID", "Deal Name"], ["D-1", "Acme renewal"]],
            "Notes": [
                ["Body", "Contact Email", "Deal ID"],
                ["Both named", "ada@acme.com", "D-1"],
                ["Only Ada", "ada@acme.com", ""],
                ["A ghost deal", "ada@acme.com", "D-404"],
            ],
        },
    )
    target = fake_target(crm)
    summary = run(path, target, store)

    deal = by_field(crm, Entity.DEALS, "name")["Acme renewal"]
    ada = by_field(crm, Entity.CONTACTS, "email")["ada@acme.com"]
    notes = {r.fields["body"]: r.fields for r in crm.of(Entity.NOTES).values()}
    assert {
        body: {k: v for k, v in f.items() if k.endswith("_crm_id")} for body, f in notes.items()
    } == {
        "Both named": {"deal_crm_id": deal},
        "Only Ada": {"contact_crm_id": ada},
    }
    rejected = {(r["sheet"], r["line"]): r["reason"] for r in rows_of(summary.rejected_csv)}
    assert list(rejected) == [("Notes", "4")], "a reference not written is still checked"
    writes = crm.writes()
    again = run(path, target, store)
    assert crm.writes() == writes, "the link left out is not missed on a re-import"
    assert again.extra["entities"]["notes"]["unchanged"] == 2


def _plan(path: Path, target: SyncTarget, store: StagingStore) -> dict[str, Any]:
    request = register_import(path)
    import_steps.ingest(request)
    import_steps.validate(request)
    import_steps.stage(request, store, target.account)
    return import_steps.dry_run(request, store, target).as_json()


def test_a_dry_run_plans_each_entity_and_the_links_to_make(
    tmp_path: Path, store: StagingStore
) -> None:
    crm = FakeCrm()
    acme = crm.insert(Entity.COMPANIES, {"name": "Acme", "domain": "acme.com"})
    crm.insert(Entity.CONTACTS, {"email": "ada@acme.com"})
    path = migration(tmp_path / "migration.xlsx")
    plan = _plan(path, fake_target(crm), store)

    entities: dict[str, dict[str, int]] = plan["entities"]
    assert (entities["companies"]["creates"], entities["companies"]["unchanged"]) == (2, 1)
    assert entities["contacts"]["creates"] == 2
    assert entities["contacts"]["links"] == 1, "Ada exists: her company link is made apart"
    assert entities["contacts"]["rejected"] == 1
    assert entities["deals"] == {**entities["deals"], "creates": 2, "rejected": 1}
    assert crm.writes() == 0
    assert acme.id in crm.of(Entity.COMPANIES)


def test_a_json_object_keyed_by_entity_is_imported_entity_by_entity(
    tmp_path: Path, store: StagingStore
) -> None:
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            {
                "notes": [{"body": "Met at the fair", "contact_email": "ada@acme.com"}],
                "contacts": [{"email": "ada@acme.com", "company_domain": "acme.com"}],
                "organizations": [{"name": "Acme", "domain": "acme.com"}],
            }
        ),
        encoding="utf-8",
    )
    crm = FakeCrm()
    summary = run(path, fake_target(crm), store)

    assert named_links(crm, Entity.CONTACTS, Entity.COMPANIES, "email", "domain") == {
        ("ada@acme.com", "acme.com")
    }
    assert named_links(crm, Entity.NOTES, Entity.CONTACTS, "body", "email") == {
        ("Met at the fair", "ada@acme.com")
    }
    assert [(p["sheet"], p["entity"]) for p in summary.extra["parts"]] == [
        ("notes", "notes"),
        ("contacts", "contacts"),
        ("organizations", "companies"),
    ]


@pytest.mark.parametrize("links", [LinkStyle.FOREIGN_KEY, LinkStyle.ASSOCIATION])
def test_a_dry_run_of_a_file_imported_already_plans_no_change_and_no_link(
    tmp_path: Path, store: StagingStore, links: LinkStyle
) -> None:
    crm = FakeCrm(capabilities=with_capabilities(links=links))
    target = fake_target(crm)
    path = migration(tmp_path / "migration.xlsx")
    run(path, target, store)

    plan = _plan(path, target, store)

    for entity, counts in plan["entities"].items():
        assert (counts["creates"], counts["updates"], counts["links"]) == (0, 0, 0), entity
