"""Imports that share records, pushed at once into one CRM account (PostgreSQL staging runs
pushes side by side): each shared record is written once, and every import links to it.

A company named by two contacts files, or a deal in two exports, is one CRM record. Where the CRM
refuses no duplicate (companies and deals in HubSpot), two pushes that both find it absent would
both create it; the fake CRM makes that moment certain by holding lookups until both imports
look. Each test runs over DuckDB and PostgreSQL staging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from bulk_pipeline import import_steps
from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import ImportRequest, register_import
from bulk_pipeline.outcomes import LineOutcome
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.fake import FakeCrm, Faults, fake_target
from bulk_pipeline.targets.runner import SyncTarget
from bulk_pipeline_tests.test_linked_imports import csv_file, named_links, workbook


def staged(path: Path, store: StagingStore, target: SyncTarget) -> ImportRequest:
    request = register_import(path)
    import_steps.ingest(request)
    import_steps.validate(request)
    import_steps.stage(request, store, target.account)
    return request


def push_at_once(
    pushes: list[Callable[[], object]],
) -> None:
    """Run the pushes in threads started together; re-raise the first failure."""
    failures: list[BaseException] = []

    def guarded(push: Callable[[], object]) -> None:
        try:
            push()
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(push,)) for push in pushes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a push did not finish"
    if failures:
        raise failures[0]


def test_two_contacts_files_naming_the_same_companies_create_each_company_once(
    tmp_path: Path, new_store: Callable[[str], StagingStore]
) -> None:
    store = new_store("staging")
    crm = FakeCrm(faults=Faults(lookups_meet=2))
    target = fake_target(crm)
    files = {
        "east": [["ada@acme.com", "Acme", "acme.com"], ["bob@globex.io", "Globex", "globex.io"]],
        "west": [["cy@acme.com", "Acme", "acme.com"], ["dee@globex.io", "Globex", "globex.io"]],
    }
    requests = [
        staged(
            csv_file(tmp_path / f"{name}.csv", [["Email", "Company", "Company Domain"], *rows]),
            store,
            target,
        )
        for name, rows in files.items()
    ]

    push_at_once(
        [
            lambda request=request: import_steps.push(
                request, store, fake_target(crm), log=lambda _message: None
            )
            for request in requests
        ]
    )

    domains = sorted(r.fields["domain"] or "" for r in crm.of(Entity.COMPANIES).values())
    assert domains == ["acme.com", "globex.io"]
    assert named_links(crm, Entity.CONTACTS, Entity.COMPANIES, "email", "domain") == {
        ("ada@acme.com", "acme.com"),
        ("bob@globex.io", "globex.io"),
        ("cy@acme.com", "acme.com"),
        ("dee@globex.io", "globex.io"),
    }
    outcomes = [
        store.line_outcomes(r.import_id).filter(entity="companies")["outcome"].to_list()
        for r in requests
    ]
    assert sorted(outcomes) == [
        [LineOutcome.CREATED.value] * 2,
        [LineOutcome.UNCHANGED.value] * 2,
    ]


DEALS = [
    ["Deal ID", "Deal Name", "Amount", "Company Domain"],
    ["D-1", "Acme renewal", "1200", "acme.com"],
    ["D-2", "Globex pilot", "500", "globex.io"],
]
COMPANIES = [["Name", "Domain"], ["Acme", "acme.com"], ["Globex", "globex.io"]]


def test_a_push_that_read_its_records_before_another_wrote_them_does_not_write_them_again(
    tmp_path: Path, new_store: Callable[[str], StagingStore]
) -> None:
    """Deals known by an id from the source system cannot be looked up in the CRM: only
    staging knows another import created them."""
    store = new_store("staging")
    crm = FakeCrm()
    target = fake_target(crm)
    first, second = (
        staged(
            workbook(tmp_path / f"{name}.xlsx", {"Companies": COMPANIES, "Deals": DEALS}),
            store,
            target,
        )
        for name in ("monday", "tuesday")
    )
    first_done = threading.Event()

    def wait_for_the_first(message: str) -> None:
        """Called once the second push has read its records, before it writes any."""
        if "records to push" in message:
            assert first_done.wait(60)

    def push_first() -> None:
        import_steps.push(first, store, fake_target(crm), log=lambda _message: None)
        first_done.set()

    push_at_once(
        [
            lambda: import_steps.push(second, store, fake_target(crm), log=wait_for_the_first),
            push_first,
        ]
    )

    assert sorted(r.fields["name"] or "" for r in crm.of(Entity.DEALS).values()) == [
        "Acme renewal",
        "Globex pilot",
    ]
    assert len(crm.of(Entity.COMPANIES)) == 2
    later = store.line_outcomes(second.import_id).filter(entity="deals")["outcome"].to_list()
    assert later == [LineOutcome.UNCHANGED.value] * 2
