"""The HubSpot dialect against an in-memory HubSpot (MockTransport): every request checked against
the official OpenAPI specs, and the per-record bookkeeping (bisecting, duplicate-safe creates)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

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
    Fault,
    answer,
    apply_some_then,
    apply_then,
    pipeline,
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


# --- associations -------------------------------------------------------------------------------

PAIRS = [
    (Entity.CONTACTS, "company_crm_id", Entity.COMPANIES, 1),
    (Entity.DEALS, "company_crm_id", Entity.COMPANIES, 5),
    (Entity.DEALS, "contact_crm_id", Entity.CONTACTS, 3),
    (Entity.ACTIVITIES, "contact_crm_id", Entity.CONTACTS, 204),
    (Entity.ACTIVITIES, "company_crm_id", Entity.COMPANIES, 192),
    (Entity.ACTIVITIES, "deal_crm_id", Entity.DEALS, 216),
    (Entity.NOTES, "contact_crm_id", Entity.CONTACTS, 202),
    (Entity.NOTES, "company_crm_id", Entity.COMPANIES, 190),
    (Entity.NOTES, "deal_crm_id", Entity.DEALS, 214),
]
"""(entity, link field, the entity it links to, HubSpot's type id from the one to the other):
HubSpot's table of default association types; a contact's and a deal's company is their
primary company."""
PAIR_IDS = [f"{entity}->{to}" for entity, _, to, _ in PAIRS]


def sample(entity: Entity, i: int) -> dict[str, str | None]:
    return {
        Entity.CONTACTS: {"email": f"p{i}@example.com", "first_name": f"P{i}"},
        Entity.COMPANIES: {"name": f"Co {i}", "domain": f"co{i}.example"},
        Entity.DEALS: {"name": f"Deal {i}", "amount": "100"},
        Entity.ACTIVITIES: {"subject": f"Call {i}", "due_date": "2024-05-01"},
        Entity.NOTES: {"body": f"Note {i}", "date": "2024-05-01"},
    }[entity]


def held(fake: FakeHubSpot, entity: Entity, i: int) -> str:
    """A record HubSpot holds already."""
    properties = {
        Entity.CONTACTS: {"email": f"held{i}@example.com"},
        Entity.COMPANIES: {"name": f"Held {i}", "domain": f"held{i}.example"},
        Entity.DEALS: {"dealname": f"Held {i}"},
        Entity.ACTIVITIES: {"hs_task_subject": f"Held {i}", "hs_timestamp": "2024-01-01T00:00:00Z"},
        Entity.NOTES: {"hs_note_body": f"Held {i}", "hs_timestamp": "2024-01-01T00:00:00Z"},
    }[entity]
    return fake.add(HUBSPOT_NAMES[entity], properties)


def spec_of(type_id: int) -> dict[str, object]:
    return {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}


def sent_properties(fake: FakeHubSpot) -> list[dict[str, str]]:
    """The properties of every record input sent (creates, updates, upserts, single creates)."""
    found = []
    for body in fake.bodies():
        inputs = body.get("inputs") or ([body] if "properties" in body else [])
        found += [i["properties"] for i in inputs if isinstance(i.get("properties"), dict)]
    return found


@pytest.mark.parametrize(("entity", "link_field", "to", "type_id"), PAIRS, ids=PAIR_IDS)
def test_creates_carry_associations_of_the_hubspot_defined_type(
    fake: FakeHubSpot, entity: Entity, link_field: str, to: Entity, type_id: int
) -> None:
    to_id = held(fake, to, 1)
    target = make_target(fake)
    result = target.create(entity, [{**sample(entity, 1), link_field: to_id}, sample(entity, 2)])

    assert not result.failed
    linked, alone = (w.id for w in result.successful)
    (body,) = fake.bodies(f"{HUBSPOT_NAMES[entity]}/batch/create")
    assert [i["associations"] for i in body["inputs"]] == [
        [{"to": {"id": to_id}, "types": [spec_of(type_id)]}],
        [],
    ]
    assert all(not name.endswith("_crm_id") for p in sent_properties(fake) for name in p)
    one, other = HUBSPOT_NAMES[entity], HUBSPOT_NAMES[to]
    assert type_id in fake.linked(one, linked, other)[to_id]
    assert linked in fake.linked(other, to_id, one)
    assert fake.linked(one, alone, other) == {}
    assert target.read_links(entity, [linked, alone], to) == {linked: {to_id}, alone: set()}


def test_a_record_linked_three_ways_carries_three_associations(fake: FakeHubSpot) -> None:
    contact, company, deal = (
        held(fake, e, 1) for e in (Entity.CONTACTS, Entity.COMPANIES, Entity.DEALS)
    )
    target = make_target(fake)
    links = {"contact_crm_id": contact, "company_crm_id": company, "deal_crm_id": deal}
    result = target.create(Entity.NOTES, [{**sample(Entity.NOTES, 1), **links}])

    (written,) = result.successful
    (body,) = fake.bodies("notes/batch/create")
    (sent,) = body["inputs"]
    assert sorted(sent["associations"], key=lambda a: a["to"]["id"]) == sorted(
        [
            {"to": {"id": contact}, "types": [spec_of(202)]},
            {"to": {"id": company}, "types": [spec_of(190)]},
            {"to": {"id": deal}, "types": [spec_of(214)]},
        ],
        key=lambda a: a["to"]["id"],
    )
    assert sent["properties"] == {
        "hs_note_body": "Note 1",
        "hs_timestamp": "2024-05-01T00:00:00.000Z",
    }
    assert [fake.linked("notes", written.id, t) for t in ("contacts", "companies", "deals")] == [
        {contact: {202}},
        {company: {190}},
        {deal: {214}},
    ]


def test_link_fields_are_never_sent_as_properties(fake: FakeHubSpot) -> None:
    """Updates and upserts have no associations: their link fields are left out (links of
    records that exist are made by separate calls)."""
    company = held(fake, Entity.COMPANIES, 1)
    target = make_target(fake)
    created = target.create(Entity.CONTACTS, [contact(1, company_crm_id=company)])
    (written,) = created.successful
    assert not target.update(
        Entity.CONTACTS, [written.id], [{"city": "Oslo", "company_crm_id": company}]
    ).failed
    assert not target.upsert(Entity.CONTACTS, [contact(2, company_crm_id=company)]).failed
    assert not target.upsert(Entity.COMPANIES, [{"name": "Co", "domain": "co.example"}]).failed

    properties = sent_properties(fake)
    assert len(properties) == 4
    assert all(not name.endswith("_crm_id") for p in properties for name in p)
    assert fake.linked("contacts", written.id, "companies") == {company: {1, 279}}


def test_a_create_naming_a_record_hubspot_does_not_hold_fails_alone(fake: FakeHubSpot) -> None:
    """HubSpot refuses the whole batch ("One or more associations are invalid"); bisecting
    finds the record whose link names nothing, and the others are written."""
    contact_id = held(fake, Entity.CONTACTS, 1)
    target = make_target(fake)
    tasks = [{**sample(Entity.ACTIVITIES, i), "contact_crm_id": contact_id} for i in range(4)]
    tasks[2]["contact_crm_id"] = "999999"
    result = target.create(Entity.ACTIVITIES, tasks)

    assert [w.index for w in result.successful] == [0, 1, 3]
    (failed,) = result.failed
    assert (failed.index, failed.kind) == (2, FailureKind.INVALID)
    assert "One or more associations are invalid" in failed.message
    assert len(fake.records["tasks"]) == 3


def test_read_links_reads_hubspot_associations_from_either_side(fake: FakeHubSpot) -> None:
    """An association reads from both records whichever side made it; a record without any
    is an error of HubSpot's 207, which reads as no links."""
    contacts = [held(fake, Entity.CONTACTS, i) for i in range(3)]
    companies = [held(fake, Entity.COMPANIES, i) for i in range(3)]
    fake.associate("contacts", contacts[0], "companies", companies[0], 1)
    fake.associate("contacts", contacts[0], "companies", companies[1], 279)
    fake.associate("companies", companies[2], "contacts", contacts[1], 280)
    target = make_target(fake)

    assert target.read_links(Entity.CONTACTS, contacts, Entity.COMPANIES) == {
        contacts[0]: {companies[0], companies[1]},
        contacts[1]: {companies[2]},
        contacts[2]: set(),
    }
    assert target.read_links(Entity.COMPANIES, companies[:2], Entity.CONTACTS) == {
        companies[0]: {contacts[0]},
        companies[1]: {contacts[0]},
    }
    reads = fake.bodies("batch/read")
    assert reads[0] == {"inputs": [{"id": i} for i in contacts]}
    assert fake.paths() == [
        "associations/contacts/companies/batch/read",
        "associations/companies/contacts/batch/read",
    ]


def test_read_links_follows_the_pages_of_each_record(fake: FakeHubSpot) -> None:
    fake.link_page_size = 2
    deal = held(fake, Entity.DEALS, 1)
    other = held(fake, Entity.DEALS, 2)
    contacts = [held(fake, Entity.CONTACTS, i) for i in range(5)]
    for contact_id in contacts:
        fake.associate("deals", deal, "contacts", contact_id, 3)
    fake.associate("deals", other, "contacts", contacts[0], 3)
    target = make_target(fake)

    linked = target.read_links(Entity.DEALS, [deal, other], Entity.CONTACTS)

    assert linked == {deal: set(contacts), other: {contacts[0]}}
    assert [b["inputs"] for b in fake.bodies("batch/read")] == [
        [{"id": deal}, {"id": other}],
        [{"id": deal, "after": contacts[1]}],
        [{"id": deal, "after": contacts[3]}],
    ]


@pytest.mark.parametrize(("entity", "link_field", "to", "type_id"), PAIRS, ids=PAIR_IDS)
def test_add_links_sends_the_hubspot_defined_type_of_the_pair(
    fake: FakeHubSpot, entity: Entity, link_field: str, to: Entity, type_id: int
) -> None:
    froms = [held(fake, entity, i) for i in range(2)]
    tos = [held(fake, to, i) for i in range(2)]
    target = make_target(fake)
    result = target.add_links(entity, to, [Link(froms[0], tos[0]), Link(froms[1], tos[1])])

    assert [(w.index, w.id) for w in result.successful] == [(0, froms[0]), (1, froms[1])]
    one, other = HUBSPOT_NAMES[entity], HUBSPOT_NAMES[to]
    assert fake.paths() == [f"associations/{one}/{other}/batch/create"]
    (body,) = fake.bodies()
    assert body == {
        "inputs": [
            {"from": {"id": f}, "to": {"id": t}, "types": [spec_of(type_id)]}
            for f, t in zip(froms, tos, strict=True)
        ]
    }
    assert type_id in fake.linked(one, froms[0], other)[tos[0]]
    assert froms[1] in fake.linked(other, tos[1], one)


def test_remove_links_archives_every_association_between_each_pair(fake: FakeHubSpot) -> None:
    contact_id = held(fake, Entity.CONTACTS, 1)
    companies = [held(fake, Entity.COMPANIES, i) for i in range(3)]
    for company in companies:
        fake.associate("contacts", contact_id, "companies", company, 279)
    fake.associate("contacts", contact_id, "companies", companies[0], 1)
    target = make_target(fake)

    result = target.remove_links(
        Entity.CONTACTS,
        Entity.COMPANIES,
        [Link(contact_id, companies[0]), Link(contact_id, companies[2])],
    )

    assert [w.index for w in result.successful] == [0, 1]
    assert fake.paths() == ["associations/contacts/companies/batch/archive"]
    (body,) = fake.bodies()
    assert body == {
        "inputs": [
            {"from": {"id": contact_id}, "to": [{"id": companies[0]}]},
            {"from": {"id": contact_id}, "to": [{"id": companies[2]}]},
        ]
    }
    assert fake.linked("contacts", contact_id, "companies") == {companies[1]: {279}}
    assert fake.linked("companies", companies[0], "contacts") == {}


def test_a_207_refusing_some_links_fails_only_those(fake: FakeHubSpot) -> None:
    fake.partial_link_batches = True
    tasks = [held(fake, Entity.ACTIVITIES, i) for i in range(3)]
    deal = held(fake, Entity.DEALS, 1)
    target = make_target(fake)

    result = target.add_links(
        Entity.ACTIVITIES,
        Entity.DEALS,
        [Link(tasks[0], deal), Link(tasks[1], "424242"), Link(tasks[2], deal)],
    )

    assert [w.index for w in result.successful] == [0, 2]
    (failed,) = result.failed
    assert (failed.index, failed.kind, failed.retryable) == (1, FailureKind.INVALID, False)
    assert "One or more associations are invalid" in failed.message
    assert len(fake.requests) == 1
    assert set(fake.linked("deals", deal, "tasks")) == {tasks[0], tasks[2]}


def test_a_link_batch_refused_whole_is_bisected_to_the_bad_link(fake: FakeHubSpot) -> None:
    notes = [held(fake, Entity.NOTES, i) for i in range(4)]
    company = held(fake, Entity.COMPANIES, 1)
    target = make_target(fake)
    links = [Link(note, company) for note in notes]
    links[2] = Link(notes[2], "424242")

    result = target.add_links(Entity.NOTES, Entity.COMPANIES, links)

    assert [w.index for w in result.successful] == [0, 1, 3]
    (failed,) = result.failed
    assert (failed.index, failed.kind) == (2, FailureKind.INVALID)
    assert "One or more associations are invalid" in failed.message
    assert [len(b["inputs"]) for b in fake.bodies()] == [4, 2, 2, 1, 1]
    assert set(fake.linked("companies", company, "notes")) == {notes[0], notes[1], notes[3]}


@pytest.mark.parametrize(
    "fault", [apply_then(httpx.ReadTimeout), answer(502, {"message": "bad gateway"})]
)
def test_links_whose_answers_were_lost_are_sent_again(fake: FakeHubSpot, fault: Fault) -> None:
    """Linking, like unlinking, done twice is done once: HubSpot keeps one association per pair
    and type."""
    contact_id = held(fake, Entity.CONTACTS, 1)
    deals = [held(fake, Entity.DEALS, i) for i in range(2)]
    target = make_target(fake)
    links = [Link(deal, contact_id) for deal in deals]

    fake.faults = [fault]
    added = target.add_links(Entity.DEALS, Entity.CONTACTS, links)
    assert [w.index for w in added.successful] == [0, 1]
    assert fake.linked("contacts", contact_id, "deals") == {deals[0]: {4}, deals[1]: {4}}

    fake.faults = [fault]
    removed = target.remove_links(Entity.DEALS, Entity.CONTACTS, links)
    assert [w.index for w in removed.successful] == [0, 1]
    assert fake.linked("contacts", contact_id, "deals") == {}
    assert fake.paths() == [
        "associations/deals/contacts/batch/create",
        "associations/deals/contacts/batch/create",
        "associations/deals/contacts/batch/archive",
        "associations/deals/contacts/batch/archive",
    ]


# --- deal pipelines -----------------------------------------------------------------------------

RENEWALS = pipeline(
    "renewals",
    "Renewals",
    [("renewaldue", "Renewal due"), ("renewalwon", "Closed Won"), ("renewallost", "Closed Lost")],
)
SALES_STAGES = (
    "'Appointment Scheduled', 'Qualified To Buy', 'Presentation Scheduled', "
    "'Decision Maker Bought-In', 'Contract Sent', 'Closed Won', 'Closed Lost'"
)


def placed(body: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [
        (i["properties"].get("pipeline"), i["properties"].get("dealstage")) for i in body["inputs"]
    ]


def test_deal_stage_and_pipeline_labels_are_sent_as_ids(fake: FakeHubSpot) -> None:
    """Labels in any case, or ids; a stage without a pipeline is looked for in the default
    pipeline first, then in the only pipeline that has it."""
    fake.pipelines.append(RENEWALS)
    target = make_target(fake)
    deals: list[dict[str, str | None]] = [
        {"name": "A", "stage": "closed won"},
        {"name": "B", "stage": "CONTRACTSENT"},
        {"name": "C", "stage": "Renewal due"},
        {"name": "D", "stage": "Closed Won", "pipeline": "renewals"},
        {"name": "E", "stage": "closedlost", "pipeline": "sales pipeline"},
        {"name": "F", "pipeline": "RENEWALS"},
        {"name": "G", "amount": "5"},
    ]
    result = target.create(Entity.DEALS, deals)

    assert not result.failed
    (body,) = fake.bodies("deals/batch/create")
    assert placed(body) == [
        ("default", "closedwon"),
        ("default", "contractsent"),
        ("renewals", "renewaldue"),
        ("renewals", "renewalwon"),
        ("default", "closedlost"),
        ("renewals", "renewaldue"),
        (None, None),
    ]
    last = result.successful[-1].id
    assert not target.update(Entity.DEALS, [last], [{"stage": "Qualified to buy"}]).failed
    assert placed(fake.bodies("deals/batch/update")[0]) == [("default", "qualifiedtobuy")]
    target.read(Entity.DEALS, [w.id for w in result.successful])
    target.lookup(Entity.DEALS, ["A"], by="name")
    assert fake.paths().count("pipelines/deals") == 1

    again = make_target(fake)
    again.read(Entity.DEALS, [last])
    assert fake.paths().count("pipelines/deals") == 2


def test_a_deal_moved_to_another_pipeline_without_a_stage_starts_in_its_first_stage(
    fake: FakeHubSpot,
) -> None:
    """A deal's stage must belong to its pipeline: naming only a pipeline the deal is already
    in sends no stage; naming another moves the deal into that pipeline's first stage."""
    fake.pipelines.append(RENEWALS)
    target = make_target(fake)
    created = target.create(
        Entity.DEALS,
        [{"name": "A", "stage": "Contract Sent"}, {"name": "B", "stage": "Contract Sent"}],
    )
    ids = [w.id for w in created.successful]

    updated = target.update(
        Entity.DEALS, ids, [{"pipeline": "Sales Pipeline"}, {"pipeline": "Renewals"}]
    )

    assert not updated.failed
    assert placed(fake.bodies("deals/batch/update")[0]) == [
        ("default", None),
        ("renewals", "renewaldue"),
    ]
    read = target.read(Entity.DEALS, ids)
    assert [(read[i].fields["pipeline"], read[i].fields["stage"]) for i in ids] == [
        ("Sales Pipeline", "Contract Sent"),
        ("Renewals", "Renewal due"),
    ]


def test_deals_without_stage_or_pipeline_never_read_the_pipelines(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    created = target.create(Entity.DEALS, [{"name": "A", "amount": "1"}])
    ids = [w.id for w in created.successful]
    target.update(Entity.DEALS, ids, [{"amount": "2"}])
    assert target.read(Entity.DEALS, ids)[ids[0]].fields == {"name": "A", "amount": "2"}
    assert "pipelines/deals" not in fake.paths()


def test_an_unknown_stage_or_pipeline_fails_only_its_deal(fake: FakeHubSpot) -> None:
    fake.pipelines.append(RENEWALS)
    target = make_target(fake)
    deals: list[dict[str, str | None]] = [
        {"name": "A", "stage": "Closed Won"},
        {"name": "B", "stage": "Won-ish"},
        {"name": "C", "stage": "Renewal due", "pipeline": "Sales Pipeline"},
        {"name": "D", "stage": "Closed Won", "pipeline": "Partners"},
        {"name": "E"},
    ]
    result = target.create(Entity.DEALS, deals)

    assert [w.index for w in result.successful] == [0, 4]
    assert [(f.index, f.kind, f.retryable) for f in result.failed] == [
        (1, FailureKind.INVALID, False),
        (2, FailureKind.INVALID, False),
        (3, FailureKind.INVALID, False),
    ]
    messages = [f.message for f in result.failed]
    assert messages[0] == (
        "stage 'Won-ish' is not a stage of any deal pipeline; the stages are "
        f"pipeline 'Sales Pipeline': {SALES_STAGES}; "
        "pipeline 'Renewals': 'Renewal due', 'Closed Won', 'Closed Lost'"
    )
    assert messages[1] == (
        f"stage 'Renewal due' is not a stage of pipeline 'Sales Pipeline'; its stages are "
        f"{SALES_STAGES}"
    )
    assert messages[2] == (
        "pipeline 'Partners' is not a deal pipeline of this account ('Sales Pipeline', 'Renewals')"
    )
    (body,) = fake.bodies("deals/batch/create")
    assert [i["properties"]["dealname"] for i in body["inputs"]] == ["A", "E"]

    ids = [w.id for w in result.successful]
    updated = target.update(Entity.DEALS, ids, [{"stage": "Nope"}, {"stage": "Contract Sent"}])
    assert [w.index for w in updated.successful] == [1]
    assert [f.index for f in updated.failed] == [0]
    assert fake.records["deals"][ids[1]]["dealstage"] == "contractsent"


def test_hubspot_refuses_a_stage_it_does_not_have_by_id(fake: FakeHubSpot) -> None:
    """What the labels spare users: the fake, like HubSpot, takes only the ids of stages."""
    record = fake.add("deals", {"dealname": "A"})
    client = httpx.Client(
        transport=fake.transport(),
        base_url=BASE_URL,
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    with_label = {"inputs": [{"id": record, "properties": {"dealstage": "Closed Won"}}]}
    response = client.post("/crm/v3/objects/deals/batch/update", json=with_label)
    assert response.status_code == 400
    assert "INVALID_OPTION" in response.json()["message"]
    assert "dealstage" not in fake.records["deals"][record]

    target = make_target(fake)
    assert target.update(Entity.DEALS, [record], [{"stage": "Closed Won"}]).successful
    assert fake.records["deals"][record]["dealstage"] == "closedwon"


def test_deals_read_back_with_labels_compare_equal(fake: FakeHubSpot) -> None:
    fake.pipelines.append(RENEWALS)
    target = make_target(fake)
    deals: list[dict[str, str | None]] = [
        {"name": "Big", "amount": "100", "stage": "Closed Won", "pipeline": "Sales Pipeline"},
        {"name": "Renewal", "stage": "Closed Won", "pipeline": "Renewals"},
    ]
    created = target.create(Entity.DEALS, deals)
    ids = [w.id for w in created.successful]
    assert [fake.records["deals"][i]["dealstage"] for i in ids] == ["closedwon", "renewalwon"]

    read = target.read(Entity.DEALS, ids)
    assert [read[i].fields for i in ids] == deals
    found = target.lookup(Entity.DEALS, ["big"], by="name")
    assert found["big"].fields == deals[0]
    (renewal,) = target.search(Entity.DEALS, ["Renewal"], "name")
    assert renewal.fields == deals[1]


def test_a_stage_change_keeps_a_deal_in_its_pipeline(fake: FakeHubSpot) -> None:
    """An update that names a stage but no pipeline (the pipeline did not change) places the
    stage in the pipeline the deal is in, not in the default one that has a stage so named."""
    fake.pipelines.append(RENEWALS)
    renewal = fake.add(
        "deals", {"dealname": "R", "pipeline": "renewals", "dealstage": "renewaldue"}
    )
    sale = fake.add("deals", {"dealname": "S", "pipeline": "default", "dealstage": "contractsent"})
    target = make_target(fake)

    result = target.update(
        Entity.DEALS, [renewal, sale], [{"stage": "Closed Won"}, {"stage": "Closed Won"}]
    )

    assert [w.index for w in result.successful] == [0, 1]
    assert fake.records["deals"][renewal] == {
        "dealname": "R",
        "pipeline": "renewals",
        "dealstage": "renewalwon",
    }
    assert fake.records["deals"][sale] == {
        "dealname": "S",
        "pipeline": "default",
        "dealstage": "closedwon",
    }


# --- tasks and notes ----------------------------------------------------------------------------


def test_task_values_are_converted_both_ways(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    tasks: list[dict[str, str | None]] = [
        {
            "subject": "Call Ada",
            "body": "About the renewal",
            "due_date": "2024-05-01",
            "done": "true",
            "priority": "high",
            "type": "call",
        },
        {
            "subject": "Email Bo",
            "due_date": "2024-05-02",
            "done": "false",
            "priority": "low",
            "type": "email",
        },
    ]
    created = target.create(Entity.ACTIVITIES, tasks)
    ids = [w.id for w in created.successful]

    (body,) = fake.bodies("tasks/batch/create")
    assert [i["properties"] for i in body["inputs"]] == [
        {
            "hs_task_subject": "Call Ada",
            "hs_task_body": "About the renewal",
            "hs_timestamp": "2024-05-01T00:00:00.000Z",
            "hs_task_status": "COMPLETED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "CALL",
        },
        {
            "hs_task_subject": "Email Bo",
            "hs_timestamp": "2024-05-02T00:00:00.000Z",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "LOW",
            "hs_task_type": "EMAIL",
        },
    ]
    assert fake.records["tasks"][ids[0]]["hs_timestamp"] == "2024-05-01T00:00:00Z"
    read = target.read(Entity.ACTIVITIES, ids)
    assert [read[i].fields for i in ids] == tasks

    target.update(Entity.ACTIVITIES, ids, [{"done": "false"}, {"done": "true", "type": "todo"}])
    assert [fake.records["tasks"][i]["hs_task_status"] for i in ids] == ["NOT_STARTED", "COMPLETED"]
    assert fake.records["tasks"][ids[1]]["hs_task_type"] == "TODO"


def test_note_dates_are_converted_both_ways(fake: FakeHubSpot) -> None:
    target = make_target(fake)
    note: dict[str, str | None] = {"body": "Met at the fair", "date": "2024-05-01"}
    (written,) = target.create(Entity.NOTES, [note]).successful
    (body,) = fake.bodies("notes/batch/create")
    assert body["inputs"][0]["properties"] == {
        "hs_note_body": "Met at the fair",
        "hs_timestamp": "2024-05-01T00:00:00.000Z",
    }
    assert target.read(Entity.NOTES, [written.id])[written.id].fields == note


def test_a_task_or_note_without_a_date_is_dated_now(fake: FakeHubSpot) -> None:
    """HubSpot requires ``hs_timestamp`` on every task and note (the fake refuses a create
    without it, as HubSpot does); updates leave it alone."""
    target = make_target(fake)
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    (task,) = target.create(Entity.ACTIVITIES, [{"subject": "Call back"}]).successful
    (note,) = target.create(Entity.NOTES, [{"body": "Undated"}]).successful
    target.add_note("From the API")
    after = datetime.now(UTC)

    stamps = [
        datetime.fromisoformat(b["inputs"][0]["properties"]["hs_timestamp"])
        for b in (*fake.bodies("tasks/batch/create"), *fake.bodies("notes/batch/create"))
    ]
    stamps.append(datetime.fromisoformat(fake.bodies("notes")[-1]["properties"]["hs_timestamp"]))
    assert len(stamps) == 3
    assert all(before <= stamp <= after for stamp in stamps)

    target.update(Entity.ACTIVITIES, [task.id], [{"body": "Later"}])
    target.update(Entity.NOTES, [note.id], [{"body": "Still undated"}])
    assert [b["inputs"][0]["properties"] for b in fake.bodies("batch/update")] == [
        {"hs_task_body": "Later"},
        {"hs_note_body": "Still undated"},
    ]


def test_hubspot_refuses_a_task_without_a_timestamp_or_with_a_lower_case_option(
    fake: FakeHubSpot,
) -> None:
    """Why tasks are dated and their options upper-cased: the fake refuses what HubSpot does."""
    client = httpx.Client(
        transport=fake.transport(),
        base_url=BASE_URL,
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    undated = {"inputs": [{"properties": {"hs_task_subject": "x"}, "associations": []}]}
    lower = {
        "inputs": [
            {
                "properties": {
                    "hs_task_subject": "x",
                    "hs_timestamp": "2024-05-01T00:00:00Z",
                    "hs_task_priority": "high",
                },
                "associations": [],
            }
        ]
    }
    bare_date = {
        "inputs": [
            {
                "properties": {"hs_task_subject": "x", "hs_timestamp": "2024-05-01"},
                "associations": [],
            }
        ]
    }
    answers = [
        client.post("/crm/v3/objects/tasks/batch/create", json=b)
        for b in (undated, lower, bare_date)
    ]
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert "Some required properties were not set" in answers[0].json()["message"]
    assert "INVALID_OPTION" in answers[1].json()["message"]
    assert "INVALID_DATETIME" in answers[2].json()["message"]
    assert fake.records["tasks"] == {}


# --- lookups and searches -----------------------------------------------------------------------


def test_lookup_finds_companies_by_name_by_search_the_first_created(fake: FakeHubSpot) -> None:
    older = fake.add("companies", {"name": "Acme", "domain": "acme.example"})
    fake.add("companies", {"name": "ACME"})
    fake.add("companies", {"name": "Other"})
    target = make_target(fake)

    found = target.lookup(Entity.COMPANIES, ["acme ", "Nobody"], by="name")

    assert {key: record.id for key, record in found.items()} == {"acme": older}
    assert found["acme"].fields == {"name": "Acme", "domain": "acme.example"}
    assert fake.paths() == ["companies/search"]
    (search,) = fake.bodies("search")
    assert search["filterGroups"] == [
        {"filters": [{"propertyName": "name", "operator": "IN", "values": ["acme", "nobody"]}]}
    ]


def test_lookup_finds_contacts_by_email_by_batch_read(fake: FakeHubSpot) -> None:
    ada = fake.add("contacts", {"email": "ada@example.com", "lastname": "Lovelace"})
    fake.add("contacts", {"email": "bo@example.com", "lastname": "Lovelace"})
    target = make_target(fake)

    by_email = target.lookup(Entity.CONTACTS, ["ADA@example.com", "cy@example.com"], by="email")
    assert {key: record.id for key, record in by_email.items()} == {"ada@example.com": ada}
    assert fake.paths() == ["contacts/batch/read"]
    (read,) = fake.bodies("batch/read")
    assert read["idProperty"] == "email"
    assert read["inputs"] == [{"id": "ADA@example.com"}, {"id": "cy@example.com"}]

    by_name = target.lookup(Entity.CONTACTS, ["lovelace"], by="last_name")
    assert {key: record.id for key, record in by_name.items()} == {"lovelace": ada}
    assert fake.paths()[-1] == "contacts/search"

    by_property = target.lookup(Entity.CONTACTS, ["lovelace"], by="lastname")
    assert {key: record.id for key, record in by_property.items()} == {"lovelace": ada}
    assert fake.bodies("search")[-1]["filterGroups"][0]["filters"][0]["propertyName"] == "lastname"


def test_search_returns_every_match_across_pages() -> None:
    fake = FakeHubSpot(page_size=2)
    stamp = "2024-05-01T00:00:00Z"
    ids = [
        fake.add("tasks", {"hs_task_subject": "Follow up", "hs_timestamp": stamp}) for _ in range(5)
    ]
    fake.add("tasks", {"hs_task_subject": "Other", "hs_timestamp": stamp})
    target = make_target(fake)

    found = target.search(Entity.ACTIVITIES, ["FOLLOW UP"], "subject")

    assert sorted(r.id for r in found) == ids
    assert {r.fields["subject"] for r in found} == {"Follow up"}
    assert all(r.created_at is not None for r in found)
    bodies = fake.bodies("search")
    assert [b["after"] for b in bodies] == ["0", ids[1], ids[3]]
    assert bodies[0]["filterGroups"][0]["filters"] == [
        {"propertyName": "hs_task_subject", "operator": "EQ", "value": "follow up"}
    ]


# --- creates whose answers were lost ------------------------------------------------------------


def test_a_lost_task_create_is_settled_by_search_and_only_the_absent_resent(
    fake: FakeHubSpot,
) -> None:
    """Tasks have no unique value: the records found by subject that HubSpot made after the
    create was sent and that hold what was sent are ours, each claimed by the task it holds
    the values of; one made before (by HubSpot's clock) is someone else's, and a task not
    found is sent again, once."""
    earlier = fake.add(
        "tasks", {"hs_task_subject": "Follow up", "hs_timestamp": "2024-05-01T00:00:00Z"}
    )
    fake.created[earlier] = "2020-01-01T00:00:00Z"
    target = make_target(fake)
    target.check()
    tasks: list[dict[str, str | None]] = [
        {"subject": "Follow up", "due_date": "2024-05-03"},
        {"subject": "Follow up", "due_date": "2024-05-01", "priority": "high"},
        {"subject": "Follow up", "due_date": "2024-05-02"},
        {"subject": "Send contract", "due_date": "2024-05-01"},
    ]
    fake.faults = [apply_some_then({1, 2}, httpx.ReadTimeout)]

    result = target.create(Entity.ACTIVITIES, tasks)

    assert not result.failed
    assert [(w.index, w.created) for w in result.successful] == [(i, True) for i in range(4)]
    held_tasks = fake.records["tasks"]
    assert len(held_tasks) == 5
    dates = [held_tasks[w.id]["hs_timestamp"][:10] for w in result.successful]
    assert dates == ["2024-05-03", "2024-05-01", "2024-05-02", "2024-05-01"]
    assert earlier not in {w.id for w in result.successful}
    assert fake.paths() == [
        "contacts",
        "tasks/batch/create",
        "tasks/search",
        "tasks/batch/create",
    ]
    resent = fake.bodies("tasks/batch/create")[-1]
    assert [i["properties"]["hs_timestamp"][:10] for i in resent["inputs"]] == [
        "2024-05-03",
        "2024-05-01",
    ]


def test_identical_tasks_in_a_lost_create_are_each_claimed_once(fake: FakeHubSpot) -> None:
    """Two tasks alike in everything HubSpot holds (told apart by what they link to, or by
    keys of ours such as ids from the source system) are both sent, not refused as repeats;
    when their create was lost, both records are found and each is claimed once, and nothing
    is sent again."""
    target = make_target(fake)
    target.check()
    task: dict[str, str | None] = {"subject": "Follow up", "due_date": "2024-05-01"}
    fake.faults = [apply_then(httpx.ReadTimeout)]

    result = target.create(Entity.ACTIVITIES, [task, dict(task)])

    assert not result.failed
    assert sorted(w.id for w in result.successful) == sorted(fake.records["tasks"])
    assert len(fake.records["tasks"]) == 2
    assert fake.paths() == ["contacts", "tasks/batch/create", "tasks/search"]
