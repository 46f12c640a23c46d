"""The HubSpot dialect against an in-memory HubSpot (MockTransport): every request checked against
the official OpenAPI specs, and the per-record bookkeeping (bisecting, duplicate-safe creates)."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from openapi_core.exceptions import OpenAPIError

from bulk_pipeline import api
from bulk_pipeline.entities import DEPENDENCY_ORDER, ENTITY_SPECS, Entity, normalize_key
from bulk_pipeline.errors import TargetConfigError
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.base import FailureKind, Link, NoteParent
from bulk_pipeline.targets.http import Budget, RetryPolicy, RollingWindow
from bulk_pipeline.targets.hubspot.properties import PROPERTY_MAP, to_properties, unmapped_fields
from bulk_pipeline.targets.runner import SyncTarget
from bulk_pipeline_tests.targets.fake_hubspot import (
    BASE_URL,
    FakeHubSpot,
    answer,
    apply_then,
    refuse,
    validate_against_spec,
)

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)


SETTINGS = {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": BASE_URL}


def roomy() -> Budget:
    """No pacing to speak of: these tests are about requests, not rates."""
    return Budget({"*": (RollingWindow("w", 10_000, 1.0),)})


def make_target(fake: FakeHubSpot, retry: RetryPolicy = FAST) -> SyncTarget:
    return open_target(
        "hubspot",
        SETTINGS,
        retry=retry,
        budget=roomy(),
        transport=fake.transport(),
        rng=random.Random(1),
    )


def contact(i: int, **extra: str | None) -> dict[str, str | None]:
    return {"email": f"person{i}@example.com", "first_name": f"P{i}", **extra}


@pytest.fixture
def fake() -> FakeHubSpot:
    return FakeHubSpot()


HUBSPOT_NAMES = {
    Entity.CONTACTS: "contacts",
    Entity.COMPANIES: "companies",
    Entity.DEALS: "deals",
    Entity.ACTIVITIES: "tasks",
    Entity.NOTES: "notes",
}
"""HubSpot's object type for each entity, as its URLs name it."""


def full(entity: Entity, i: int) -> dict[str, str | None]:
    """A record with every field HubSpot has a property for, each with a value HubSpot takes."""
    values: dict[Entity, dict[str, str | None]] = {
        Entity.CONTACTS: {"email": f"k{i}@example.com"},
        Entity.COMPANIES: {"domain": f"k{i}.example", "name": f"Co {i}"},
        Entity.DEALS: {
            "name": f"Deal {i}",
            "stage": "Closed Won",
            "pipeline": "Sales Pipeline",
            "close_date": "2024-01-02",
        },
        Entity.ACTIVITIES: {
            "subject": f"Call {i}",
            "due_date": "2024-05-01",
            "done": "true",
            "priority": "high",
            "type": "call",
        },
        Entity.NOTES: {"body": f"Note {i}", "date": "2024-05-01"},
    }
    return {**{name: "1" for name in PROPERTY_MAP[entity]}, **values[entity]}


CHANGES: dict[Entity, dict[str, str | None]] = {
    Entity.CONTACTS: {"first_name": "2"},
    Entity.COMPANIES: {"description": "2"},
    Entity.DEALS: {"stage": "Contract Sent"},
    Entity.ACTIVITIES: {"done": "false"},
    Entity.NOTES: {"date": "2024-06-01"},
}


def found_by(entity: Entity) -> str:
    """The field a record is looked up by: its key where HubSpot has a property for it (a
    deal's key is an id from the source system, which HubSpot has not), else its searched one."""
    spec = ENTITY_SPECS[entity]
    return spec.key_field if spec.key_field in PROPERTY_MAP[entity] else spec.search_field


def test_every_call_sends_requests_the_hubspot_spec_accepts(fake: FakeHubSpot) -> None:
    """The fake validates each request, and each of its answers, with openapi-core against the
    spec files; any deviation fails the call."""
    target = make_target(fake)
    target.check()
    first: dict[Entity, str] = {}
    for entity in DEPENDENCY_ORDER:
        spec = ENTITY_SPECS[entity]
        links = {r.link_field: first[r.entity] for r in spec.references}
        records = [{**full(entity, i), **links} for i in range(3)]
        created = target.create(entity, records)
        assert len(created.successful) == 3, created.failed
        ids = [w.id for w in created.successful]
        first[entity] = ids[0]
        by = found_by(entity)
        change = CHANGES[entity]
        if entity in (Entity.CONTACTS, Entity.COMPANIES):
            assert not target.upsert(entity, [{**records[0], **change}]).failed
        assert not target.update(entity, ids[:2], [change] * 2).failed
        assert set(target.read(entity, ids)) == set(ids)
        value = records[2][by] or ""
        found = target.lookup(entity, [value, "absent@example.com"], by=by)
        assert list(found) == [normalize_key(value)]
        assert [r.id for r in target.search(entity, [value], by)] == [ids[2]]
        for reference in spec.references:
            to = reference.entity
            assert target.read_links(entity, ids[:1], to) == {ids[0]: {first[to]}}
            assert not target.remove_links(entity, to, [Link(ids[1], first[to])]).failed
            assert not target.add_links(entity, to, [Link(ids[1], first[to])]).failed
    target.add_note("a note", NoteParent(Entity.DEALS, first[Entity.DEALS]))
    for entity in reversed(DEPENDENCY_ORDER):
        assert len(target.remove(entity, [first[entity]]).successful) == 1
    paths = set(fake.paths())
    assert {f"{HUBSPOT_NAMES[e]}/batch/create" for e in Entity} <= paths
    assert {f"{HUBSPOT_NAMES[e]}/search" for e in Entity} <= paths
    assert {"contacts/batch/upsert", "pipelines/deals", "notes"} <= paths
    assert {f"associations/tasks/deals/batch/{op}" for op in ("read", "create", "archive")} <= paths


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("batch/create", {"inputs": [{"properties": {"email": "a@example.com"}}]}),
        ("batch/create", {"inputs": [{"properties": {"email": 1}, "associations": []}]}),
        ("batch/read", {"inputs": [{"properties": {"email": "a@example.com"}}]}),
        ("batch/upsert", {"records": []}),
    ],
)
def test_the_spec_check_rejects_a_request_hubspot_would_refuse(op: str, body: object) -> None:
    """Guards the test above against passing vacuously: the spec check must be able to fail."""
    create = {"inputs": [{"properties": {"email": "a@example.com"}, "associations": []}]}
    headers = {"authorization": f"Bearer {TOKEN}"}
    path = f"{BASE_URL}/crm/v3/objects/contacts/"
    validate_against_spec(
        httpx.Request("POST", path + "batch/create", json=create, headers=headers)
    )

    with pytest.raises(OpenAPIError):
        validate_against_spec(httpx.Request("POST", path + op, json=body, headers=headers))


def test_fields_are_mapped_in_one_place_and_blanks_are_never_sent(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    record = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "mobile_phone": "+44 20 1234",
        "phone": "",
        "city": None,
        "zip": "   ",
        "lifecycle_stage": "lead",
    }
    result = target.upsert(Entity.CONTACTS, [record])
    assert [w.created for w in result.successful] == [True]
    (body,) = fake.bodies("upsert")
    assert body["inputs"] == [
        {
            "id": "ada@example.com",
            "idProperty": "email",
            "properties": {
                "email": "ada@example.com",
                "firstname": "Ada",
                "mobilephone": "+44 20 1234",
                "lifecyclestage": "lead",
            },
            "objectWriteTraceId": "0",
        }
    ]
    deal = to_properties(Entity.DEALS, {"name": "Big", "stage": "won", "close_date": "2024-01-02"})
    assert deal == {"dealname": "Big", "dealstage": "won", "closedate": "2024-01-02"}


def test_a_field_without_a_hubspot_property_is_reported_and_never_sent(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    result = target.create(
        Entity.CONTACTS, [contact(1), contact(2, favourite_colour="blue"), contact(3)]
    )
    assert [w.index for w in result.successful] == [0, 2]
    (failed,) = result.failed
    assert failed.index == 1
    assert failed.kind is FailureKind.INVALID
    assert "'favourite_colour'" in failed.message
    assert all("favourite_colour" not in r.content.decode() for r in fake.requests)
    assert unmapped_fields(Entity.CONTACTS, {"favourite_colour": "blue", "email": "x"}) == [
        "favourite_colour"
    ]


def test_inputs_go_in_batches_of_at_most_100(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    result = target.upsert(Entity.CONTACTS, [contact(i) for i in range(250)])
    assert [len(b["inputs"]) for b in fake.bodies("upsert")] == [100, 100, 50]
    assert [w.index for w in result.successful] == list(range(250))


def test_missing_or_repeated_keys_are_refused_before_sending(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    records: list[dict[str, str | None]] = [
        contact(1),
        {"first_name": "no email"},
        contact(2),
        {"email": "PERSON1@example.com"},
    ]
    result = target.upsert(Entity.CONTACTS, records)
    assert [w.index for w in result.successful] == [0, 2]
    assert [(f.index, f.kind) for f in result.failed] == [
        (1, FailureKind.INVALID),
        (3, FailureKind.INVALID),
    ]
    assert "email is empty" in result.failed[0].message
    assert "repeats input 0" in result.failed[1].message


def test_a_refused_batch_is_bisected_so_good_records_are_written(fake: FakeHubSpot) -> None:
    existing = {7: fake.add("contacts", {"email": "person7@example.com"})}
    existing[60] = fake.add("contacts", {"email": "person60@example.com"})
    target = make_target(fake)
    records = [contact(i) for i in range(100)]
    for bad in (3, 41, 99):
        records[bad] = {"email": f"not-an-email-{bad}", "first_name": "x"}
    result = target.create(Entity.CONTACTS, records)

    assert len(result.successful) == 95
    assert all(w.created for w in result.successful)
    by_index = {f.index: f for f in result.failed}
    assert sorted(by_index) == [3, 7, 41, 60, 99]
    for bad in (3, 41, 99):
        assert by_index[bad].kind is FailureKind.INVALID
        assert f"not-an-email-{bad} is invalid" in by_index[bad].message
        assert not by_index[bad].retryable
    for dup in (7, 60):
        assert by_index[dup].kind is FailureKind.CONFLICT
        record = by_index[dup].existing
        assert record is not None
        assert record.id == existing[dup]
    emails = [p["email"] for p in fake.records["contacts"].values()]
    assert len(emails) == len(set(emails)) == 97


def test_results_are_matched_to_inputs_whatever_order_hubspot_answers_in() -> None:
    fake = FakeHubSpot(echo_trace_ids=False, shuffle_results=True)
    target = make_target(fake)
    records = [contact(i) for i in range(50)]
    result = target.create(Entity.CONTACTS, records)
    for written in result.successful:
        stored = fake.records["contacts"][written.id]
        assert stored["email"] == records[written.index]["email"]


def test_an_unclear_create_is_read_back_instead_of_resent(fake: FakeHubSpot) -> None:
    fake.faults = [apply_then(httpx.ReadTimeout)]
    target = make_target(fake)
    result = target.create(Entity.CONTACTS, [contact(i) for i in range(10)])
    assert len(result.successful) == 10
    assert all(w.created for w in result.successful)
    assert len(fake.records["contacts"]) == 10
    assert fake.paths() == ["contacts/batch/create", "contacts/batch/read"]


def test_after_an_unclear_create_only_the_absent_records_are_sent_again(
    fake: FakeHubSpot,
) -> None:
    fake.faults = [answer(502, {"message": "bad gateway"})]
    target = make_target(fake)
    result = target.create(Entity.CONTACTS, [contact(i) for i in range(5)])
    assert len(result.successful) == 5
    assert fake.paths() == ["contacts/batch/create", "contacts/batch/read", "contacts/batch/create"]


def test_a_create_that_never_left_is_simply_retried(fake: FakeHubSpot) -> None:
    fake.faults = [refuse(httpx.ConnectError), answer(429, {"category": "RATE_LIMIT"})]
    target = make_target(fake)
    result = target.create(Entity.CONTACTS, [contact(1)])
    assert len(result.successful) == 1
    assert fake.paths() == ["contacts/batch/create"] * 3


def test_unclear_company_creates_are_checked_by_domain_search(fake: FakeHubSpot) -> None:
    fake.faults = [apply_then(httpx.RemoteProtocolError)]
    target = make_target(fake)
    companies = [{"name": f"Co {i}", "domain": f"CO{i}.example"} for i in range(3)]
    result = target.create(Entity.COMPANIES, companies)
    assert len(result.successful) == 3
    assert len(fake.records["companies"]) == 3
    assert fake.paths() == ["companies/batch/create", "companies/search"]


def test_company_creates_report_existing_domains_as_conflicts(fake: FakeHubSpot) -> None:
    existing = fake.add("companies", {"name": "Acme", "domain": "acme.example"})
    target = make_target(fake)
    result = api.create_many(
        "companies",
        [
            {"name": "Acme again", "domain": "ACME.example"},
            {"name": "New", "domain": "new.example"},
        ],
        target=target,
    )
    assert [w.index for w in result.successful] == [1]
    (conflict,) = result.failed
    assert (conflict.index, conflict.kind) == (0, FailureKind.CONFLICT)
    assert conflict.existing is not None and conflict.existing.id == existing
    (search,) = fake.bodies("search")
    (condition,) = search["filterGroups"][0]["filters"]
    assert condition == {
        "propertyName": "domain",
        "operator": "IN",
        "values": ["acme.example", "new.example"],
    }
    assert search["limit"] == 100


def test_company_upsert_updates_existing_domains_and_creates_the_rest(fake: FakeHubSpot) -> None:
    existing = fake.add("companies", {"name": "Acme", "domain": "acme.example"})
    target = make_target(fake)
    result = target.upsert(
        Entity.COMPANIES,
        [{"name": "Acme Inc", "domain": "acme.example"}, {"name": "New", "domain": "new.example"}],
    )
    assert [(w.index, w.created) for w in result.successful] == [(0, False), (1, True)]
    assert result.successful[0].id == existing
    assert fake.records["companies"][existing]["name"] == "Acme Inc"
    assert fake.paths() == ["companies/search", "companies/batch/update", "companies/batch/create"]


def test_search_follows_pages() -> None:
    fake = FakeHubSpot(page_size=2)
    ids = [fake.add("deals", {"dealname": f"Deal {i}"}) for i in range(5)]
    target = make_target(fake)
    found = target.lookup(Entity.DEALS, [f"Deal {i}" for i in range(5)], by="name")
    assert {k: r.id for k, r in found.items()} == {f"deal {i}": ids[i] for i in range(5)}
    assert [b["after"] for b in fake.bodies("search")] == ["0", ids[1], ids[3]]


def test_get_many_by_id_and_by_email(fake: FakeHubSpot) -> None:
    record_id = fake.add("contacts", {"email": "ada@example.com", "firstname": "Ada"})
    target = make_target(fake)
    by_id = target.read(Entity.CONTACTS, [record_id, "999999"])
    assert by_id[record_id].fields == {"email": "ada@example.com", "first_name": "Ada"}
    assert "999999" not in by_id
    by_email = target.lookup(Entity.CONTACTS, ["ADA@example.com"])
    assert by_email["ada@example.com"].id == record_id
    assert fake.bodies("read")[-1]["idProperty"] == "email"
    with pytest.raises(ValueError, match="not the unique key"):
        api.get_many("contacts", ["x"], id_property="phone", target=target)


def test_update_reports_unknown_ids_per_record(fake: FakeHubSpot) -> None:
    record_id = fake.add("contacts", {"email": "ada@example.com"})
    target = make_target(fake)
    result = target.update(
        Entity.CONTACTS, [record_id, "424242"], [{"city": "Paris"}, {"city": "Rome"}]
    )
    assert [(w.index, w.id, w.created) for w in result.successful] == [(0, record_id, False)]
    (failed,) = result.failed
    assert (failed.index, failed.kind, failed.retryable) == (1, FailureKind.NOT_FOUND, False)


def test_transient_failures_are_retried_and_then_reported_as_retryable(fake: FakeHubSpot) -> None:
    fake.faults = [answer(503), refuse(httpx.ConnectError), apply_then(httpx.ReadError)]
    target = make_target(fake)
    assert len(target.upsert(Entity.CONTACTS, [contact(1)]).successful) == 1
    assert len(fake.requests) == 4

    fake.faults = [answer(500, {"message": "boom"})] * 10
    fake.requests.clear()
    result = target.upsert(Entity.CONTACTS, [contact(2), contact(3)])
    assert not result.successful
    assert [(f.index, f.retryable) for f in result.failed] == [(0, True), (1, True)]
    assert "gave up after 4 attempts" in result.failed[0].message
    assert len(fake.requests) == FAST.max_attempts


def test_other_client_errors_are_answers_not_retried(fake: FakeHubSpot) -> None:
    fake.faults = [answer(400, {"category": "VALIDATION_ERROR", "message": "nope"})]
    target = make_target(fake)
    result = target.update(Entity.CONTACTS, ["1"], [{"city": "Paris"}])
    (failed,) = result.failed
    assert (failed.kind, failed.message, failed.retryable) == (FailureKind.INVALID, "nope", False)
    assert len(fake.requests) == 1


def test_unauthorized_raises(fake: FakeHubSpot) -> None:
    fake.faults = [answer(401, {"category": "INVALID_AUTHENTICATION", "message": "bad token"})]
    with pytest.raises(TargetConfigError) as caught:
        make_target(fake).upsert(Entity.CONTACTS, [contact(1)])
    assert "HTTP 401" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(fake.requests) == 1


def test_async_target_sends_the_same_requests_concurrently(fake: FakeHubSpot) -> None:
    fake.faults = [None, apply_then(httpx.ReadTimeout)]

    async def run() -> None:
        target = open_async_target(
            "hubspot",
            SETTINGS,
            concurrency=3,
            retry=FAST,
            budget=roomy(),
            transport=fake.transport(),
        )
        try:
            created = await target.create(Entity.CONTACTS, [contact(i) for i in range(450)])
            assert [w.index for w in created.successful] == list(range(450))
            upserted = await target.upsert(Entity.CONTACTS, [contact(i) for i in range(420, 460)])
            assert [w.created for w in upserted.successful] == [False] * 30 + [True] * 10
            found = await target.lookup(Entity.CONTACTS, ["person3@example.com"])
            assert list(found) == ["person3@example.com"]
        finally:
            await target.aclose()

    asyncio.run(run())
    assert len(fake.records["contacts"]) == 460
    assert len(fake.bodies("create")) == 5
