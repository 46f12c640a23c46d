"""The Attio target's requests and decisions, against a fake transport that checks every request
against Attio's spec fixture (answers from the sandbox's Attio, in-process)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import TargetConfigError, UserInputError
from bulk_pipeline.targets import open_target
from bulk_pipeline.targets.attio import attio_budget
from bulk_pipeline.targets.attio.tasks import linked_after_update
from bulk_pipeline.targets.base import FailureKind
from bulk_pipeline.targets.http import ApiRequest, Budget, RetryPolicy
from bulk_pipeline.targets.runner import SyncTarget
from bulk_pipeline_tests.targets.fake_attio import (
    BASE_URL,
    TOKEN,
    FakeAttio,
    answer,
    apply_then,
)

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)
PEOPLE = "/v2/objects/people/records"
DEALS = "/v2/objects/deals/records"


@pytest.fixture
def attio(tmp_path: Any) -> Iterator[FakeAttio]:
    fake = FakeAttio(tmp_path / "attio.sqlite3")
    yield fake
    fake.close()


@pytest.fixture
def target(attio: FakeAttio) -> Iterator[SyncTarget]:
    opened = open_target(
        "attio",
        {"ATTIO_ACCESS_TOKEN": TOKEN, "ATTIO_BASE_URL": BASE_URL},
        retry=FAST,
        budget=Budget({"*": ()}),
        transport=attio.transport(),
    )
    yield opened
    opened.close()


def api(attio: FakeAttio, method: str, path: str, body: Any = None) -> Any:
    """Set the workspace up through the fake (as an Attio admin would), not through the target."""
    with httpx.Client(transport=attio.transport(), base_url=BASE_URL) as client:
        answered = client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answered.status_code == 200, answered.text
    attio.requests.clear()
    return answered.json()["data"]


def attribute(
    attio: FakeAttio, object_slug: str, slug: str, title: str, kind: str, **flags: bool
) -> None:
    api(
        attio,
        "POST",
        f"/v2/objects/{object_slug}/attributes",
        {
            "data": {
                "title": title,
                "description": None,
                "api_slug": slug,
                "type": kind,
                "is_required": flags.get("required", False),
                "is_unique": False,
                "is_multiselect": False,
                "config": {},
            }
        },
    )


ADA = {
    "email": "Ada@Example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "phone": "+442079460018",
    "job_title": "Mathematician",
    "city": "London",
    "country": "gb",
}


def test_a_create_sends_typed_values(target: SyncTarget, attio: FakeAttio) -> None:
    result = target.create(Entity.CONTACTS, [ADA])

    assert [w.created for w in result.successful] == [True]
    (body,) = attio.bodies("POST", "/records")
    assert body["data"]["values"] == {
        "email_addresses": [{"email_address": "ada@example.com"}],
        "name": [{"first_name": "Ada", "last_name": "Lovelace", "full_name": "Ada Lovelace"}],
        "phone_numbers": [{"original_phone_number": "+442079460018", "country_code": "GB"}],
        "job_title": [{"value": "Mathematician"}],
        "primary_location": [
            {
                "line_1": None,
                "line_2": None,
                "line_3": None,
                "line_4": None,
                "locality": "London",
                "region": None,
                "postcode": None,
                "country_code": "GB",
                "latitude": None,
                "longitude": None,
            }
        ],
    }
    assert [c for c in attio.calls() if "query" in c] == [], "no lookup before a create"


def test_fields_are_placed_on_the_workspaces_attributes(
    target: SyncTarget, attio: FakeAttio
) -> None:
    assert "date_of_birth" not in target.fields(Entity.CONTACTS)
    assert "company" not in target.fields(Entity.CONTACTS), "a reference, not a name"
    assert "company_crm_id" in target.fields(Entity.CONTACTS), "linked by the reference"
    assert {"email", "first_name", "city", "phone"} <= target.fields(Entity.CONTACTS)
    assert target.fields(Entity.DEALS) == frozenset(
        {"name", "amount", "stage", "owner", "company_crm_id", "contact_crm_id"}
    )

    attribute(attio, "people", "birthday_date", "Date of birth", "date")
    fresh = open_target(
        "attio",
        {"ATTIO_ACCESS_TOKEN": TOKEN, "ATTIO_BASE_URL": BASE_URL},
        budget=Budget({"*": ()}),
        transport=attio.transport(),
    )
    assert "date_of_birth" in fresh.fields(Entity.CONTACTS), "found by its title"
    result = fresh.create(
        Entity.CONTACTS, [{"email": "b@example.com", "date_of_birth": "1815-12-10"}]
    )
    assert not result.failed
    (body,) = attio.bodies("POST", "/records")
    assert body["data"]["values"]["birthday_date"] == [{"value": "1815-12-10"}]


def test_values_the_workspace_cannot_take_fail_their_record_only(
    target: SyncTarget, attio: FakeAttio
) -> None:
    deals = [
        {"name": "Fine", "stage": "won 🎉", "owner": "SAM.SELLER@example.com", "amount": "1200.50"},
        {"name": "Bad stage", "stage": "Negotiation"},
        {"name": "Bad owner", "owner": "nobody@example.com"},
        {"name": "Bad amount", "amount": "1.23456"},
    ]
    result = target.create(Entity.DEALS, deals)

    assert [w.index for w in result.successful] == [0]
    reasons = {f.index: f.message for f in result.failed}
    assert all(f.kind is FailureKind.INVALID for f in result.failed)
    assert reasons[1].startswith("stage: 'Negotiation' is not one of") and "Won 🎉" in reasons[1]
    assert reasons[2].startswith("owner: 'nobody@example.com' is not the email of a member")
    assert reasons[3].startswith("amount:")
    (sent,) = attio.bodies("POST", "/records")
    assert sent["data"]["values"]["stage"] == [{"status": "Won 🎉"}]
    assert sent["data"]["values"]["value"] == [{"currency_value": 1200.5}]
    people = target.create(Entity.CONTACTS, [{"email": "x@example.com", "phone": "020 7946 0018"}])
    assert people.failed[0].message.startswith("phone: '020 7946 0018' is not a phone number")
    countries = target.create(Entity.CONTACTS, [{"email": "y@example.com", "country": "France"}])
    assert countries.failed[0].message.startswith("country: 'France' is not a two-letter")


def test_a_required_attribute_without_default_fails_new_records_before_sending(
    target: SyncTarget, attio: FakeAttio
) -> None:
    attribute(attio, "people", "region_code", "Region code", "text", required=True)

    result = target.create(Entity.CONTACTS, [{"email": "ada@example.com"}])

    assert "Region code (region_code)" in result.failed[0].message
    assert attio.bodies("POST", "/records") == []


def test_an_existing_unique_value_is_a_conflict_naming_the_record(
    target: SyncTarget, attio: FakeAttio
) -> None:
    first = target.create(Entity.CONTACTS, [ADA]).successful[0]

    again = target.create(Entity.CONTACTS, [{"email": "ADA@example.com", "first_name": "A"}])

    (failed,) = again.failed
    assert failed.kind is FailureKind.CONFLICT
    assert failed.existing is not None and failed.existing.id == first.id
    assert failed.existing.fields["first_name"] == "Ada"
    assert len(attio.records("people")) == 1


def test_a_create_whose_answer_was_lost_is_found_not_sent_again(
    target: SyncTarget, attio: FakeAttio
) -> None:
    attio.lose_create_answers = 1

    result = target.create(Entity.CONTACTS, [ADA])

    assert [(w.created, w.id) for w in result.successful] == [
        (True, attio.records("people")[0]["id"]["record_id"])
    ]
    assert len(attio.bodies("POST", "/records")) == 1


def test_an_update_patches_only_what_changed_and_keeps_the_rest_of_a_name(
    target: SyncTarget, attio: FakeAttio
) -> None:
    record_id = target.create(Entity.CONTACTS, [ADA]).successful[0].id

    result = target.update(Entity.CONTACTS, [record_id], [{"first_name": "Augusta"}])

    assert result.successful and not result.failed
    (patch,) = attio.bodies("PATCH")
    assert patch == {
        "data": {
            "values": {
                "name": [
                    {
                        "first_name": "Augusta",
                        "last_name": "Lovelace",
                        "full_name": "Augusta Lovelace",
                    }
                ]
            }
        }
    }
    assert [c for c in attio.calls("GET") if record_id in c] == [], "the name was remembered"


def test_a_phone_is_added_to_the_numbers_and_a_rollback_puts_them_back(
    target: SyncTarget, attio: FakeAttio
) -> None:
    record_id = target.create(Entity.CONTACTS, [ADA]).successful[0].id
    target.update(Entity.CONTACTS, [record_id], [{"phone": "+33142685300"}])

    (patch,) = attio.bodies("PATCH")
    assert patch["data"]["values"] == {
        "phone_numbers": [{"original_phone_number": "+33142685300", "country_code": "FR"}]
    }
    now = target.read(Entity.CONTACTS, [record_id])[record_id]
    assert (now.fields["phone"], now.also["phone"]) == ("+33142685300", ("+442079460018",))

    target.update(
        Entity.CONTACTS, [record_id], [{"phone": "+442079460018", "city": None}], clear_blanks=True
    )

    (put,) = attio.bodies("PUT", record_id)
    assert put["data"]["values"]["phone_numbers"] == [
        {"original_phone_number": "+442079460018", "country_code": "GB"}
    ]
    assert put["data"]["values"]["primary_location"][0]["locality"] is None
    assert put["data"]["values"]["primary_location"][0]["country_code"] == "GB", "kept"
    after = target.read(Entity.CONTACTS, [record_id])[record_id]
    assert (after.fields["phone"], after.also.get("phone"), after.fields["city"]) == (
        "+442079460018",
        None,
        None,
    )


def test_lookups_query_the_unique_attribute_and_answer_in_our_keys(
    target: SyncTarget, attio: FakeAttio
) -> None:
    record_id = target.create(Entity.CONTACTS, [ADA]).successful[0].id
    target.update(Entity.CONTACTS, [record_id], [{"email": "countess@example.com"}])

    found = target.lookup(Entity.CONTACTS, ["ADA@example.com", "nobody@example.com"])

    assert set(found) == {"ada@example.com"}
    assert found["ada@example.com"].fields["email"] == "ada@example.com"
    assert found["ada@example.com"].also["email"] == ("countess@example.com",)
    query = attio.bodies("POST", "/query")[-1]
    assert query["filter"] == {
        "$or": [
            {"email_addresses": {"email_address": {"$eq": "ada@example.com"}}},
            {"email_addresses": {"email_address": {"$eq": "nobody@example.com"}}},
        ]
    }


def test_deals_are_found_by_name_through_an_index_listed_once(
    target: SyncTarget, attio: FakeAttio
) -> None:
    target.create(Entity.DEALS, [{"name": "Straße Pilot"}, {"name": "Expansion"}])
    attio.requests.clear()

    first = target.lookup(Entity.DEALS, ["STRASSE PILOT", "Nothing"])
    second = target.lookup(Entity.DEALS, ["expansion"])

    assert set(first) == {"strasse pilot"} and set(second) == {"expansion"}
    assert len(attio.bodies("POST", "/query")) == 1, "listed once, then kept current"


def test_a_lost_deal_create_lists_the_deals_again(target: SyncTarget, attio: FakeAttio) -> None:
    target.lookup(Entity.DEALS, ["Pilot"])
    attio.lose_create_answers = 1

    result = target.create(Entity.DEALS, [{"name": "Pilot"}])

    assert [w.created for w in result.successful] == [True]
    assert len(attio.records("deals")) == 1
    assert len(attio.bodies("POST", "/query")) == 2, "the index was listed again to settle it"


def test_upsert_asserts_what_is_absent_and_patches_what_it_found(
    target: SyncTarget, attio: FakeAttio
) -> None:
    first = target.upsert(Entity.CONTACTS, [ADA])
    second = target.upsert(Entity.CONTACTS, [{**ADA, "phone": "+33142685300"}])

    assert [w.created for w in first.successful] == [True]
    assert [w.created for w in second.successful] == [False]
    assert first.successful[0].id == second.successful[0].id
    (put,) = [r for r in attio.requests if r.method == "PUT"]
    assert put.url.params["matching_attribute"] == "email_addresses"
    numbers = target.read(Entity.CONTACTS, [first.successful[0].id])[first.successful[0].id]
    assert (numbers.fields["phone"], numbers.also["phone"]) == (
        "+33142685300",
        ("+442079460018",),
    ), "the number Attio held is kept, not replaced"


def test_remove_deletes_for_good_and_a_repeated_delete_is_no_failure(
    target: SyncTarget, attio: FakeAttio
) -> None:
    record_id = target.create(Entity.CONTACTS, [ADA]).successful[0].id

    assert target.remove(Entity.CONTACTS, [record_id]).successful
    assert target.remove(Entity.CONTACTS, [record_id]).successful
    assert attio.records("people") == []
    assert target.capabilities.delete.value == "permanent"


def test_a_note_is_attached_to_a_record(target: SyncTarget, attio: FakeAttio) -> None:
    from bulk_pipeline.targets.base import NoteParent

    record_id = target.create(Entity.CONTACTS, [ADA]).successful[0].id
    note_id = target.add_note("12 rows", NoteParent(Entity.CONTACTS, record_id))

    assert [n["id"]["note_id"] for n in attio.api.store.notes(record_id)] == [note_id]


def test_lists_are_found_created_and_hold_each_record_once(
    target: SyncTarget, attio: FakeAttio
) -> None:
    ids = [
        w.id for w in target.create(Entity.CONTACTS, [ADA, {"email": "g@example.com"}]).successful
    ]
    with pytest.raises(UserInputError, match="--create-list"):
        target.add_to_list("Q3 leads", Entity.CONTACTS, ids)

    first = target.add_to_list("Q3 leads", Entity.CONTACTS, ids, create=True)
    writes = attio.writes()
    again = target.add_to_list("q3 LEADS", Entity.CONTACTS, [*ids, ids[0]])

    assert (first.added, first.already, again.added, again.already) == (2, 0, 0, 2)
    assert attio.writes() == writes, "nothing written when every record is in the list"
    assert [b["data"]["api_slug"] for b in attio.bodies("POST", "/v2/lists")] == ["q3_leads"]
    assert len(attio.api.all_entries()) == 2
    with pytest.raises(UserInputError, match="holds people records, not companies"):
        target.add_to_list("Q3 leads", Entity.COMPANIES, ids)


def test_a_list_whose_creation_answer_was_lost_is_made_once(
    target: SyncTarget, attio: FakeAttio
) -> None:
    ids = [w.id for w in target.create(Entity.CONTACTS, [ADA]).successful]
    attio.faults = [None, apply_then(httpx.ReadTimeout)]

    result = target.add_to_list("Q3 leads", Entity.CONTACTS, ids, create=True)

    assert result.added == 1
    assert [d["api_slug"] for d in attio.api.store.lists()] == ["q3_leads"]
    assert len(attio.bodies("POST", "/v2/lists")) == 1


def test_a_429_waits_until_its_retry_after_date(target: SyncTarget, attio: FakeAttio) -> None:
    target.fields(Entity.CONTACTS)
    come_back = email.utils.formatdate(time.time() + 1.2, usegmt=True)
    attio.faults = [answer(429, {"status_code": 429}, {"Retry-After": come_back})]

    started = time.monotonic()
    result = target.create(Entity.CONTACTS, [ADA])

    assert result.successful
    assert time.monotonic() - started >= 0.2
    assert len(attio.bodies("POST", "/records")) == 2


def test_reads_and_writes_spend_separate_budgets() -> None:
    budget = attio_budget()
    reads = budget.limits_for(ApiRequest("POST", "/v2/objects/people/records/query"))
    writes = budget.limits_for(ApiRequest("POST", "/v2/objects/people/records", kind="write"))
    assert [(w.limit, w.name) for w in (r.state() for r in reads)] == [
        (100, "read requests per second")
    ]
    assert [w.state().limit for w in writes] == [25]
    for _ in range(25):
        writes[0].take()
    assert isinstance(writes[0].take(), float), "writes wait"
    assert not isinstance(reads[0].take(), float), "reads still go"


def test_a_refused_or_inactive_token_is_a_configuration_error_without_the_token(
    attio: FakeAttio,
) -> None:
    wrong = open_target(
        "attio",
        {"ATTIO_ACCESS_TOKEN": "not-the-token", "ATTIO_BASE_URL": BASE_URL},
        transport=attio.transport(),
        budget=Budget({"*": ()}),
    )
    with pytest.raises(TargetConfigError) as refused:
        wrong.check()
    assert "not-the-token" not in str(refused.value) and "not-the-token" not in repr(wrong)
    right = open_target(
        "attio",
        {"ATTIO_ACCESS_TOKEN": TOKEN, "ATTIO_BASE_URL": BASE_URL},
        transport=attio.transport(),
        budget=Budget({"*": ()}),
    )
    attio.faults = [answer(200, {"active": False})]
    with pytest.raises(TargetConfigError, match="not active"):
        right.check()
    with pytest.raises(TargetConfigError, match="ATTIO_ACCESS_TOKEN is not set"):
        open_target("attio", {})


# links, tasks and notes -------------------------------------------------------------------------


def _ids(result: Any) -> list[str]:
    assert not result.failed, result.failed
    return [w.id for w in result.successful]


def test_links_are_record_references_written_with_the_record(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (acme,) = _ids(target.create(Entity.COMPANIES, [{"name": "Acme", "domain": "acme.com"}]))
    (ada,) = _ids(
        target.create(Entity.CONTACTS, [{"email": "ada@acme.com", "company_crm_id": acme}])
    )
    (deal,) = _ids(
        target.create(
            Entity.DEALS, [{"name": "Pilot", "company_crm_id": acme, "contact_crm_id": ada}]
        )
    )

    person, sent_deal = attio.bodies("POST", "/records")[1:]
    assert person["data"]["values"]["company"] == [
        {"target_object": "companies", "target_record_id": acme}
    ]
    assert sent_deal["data"]["values"]["associated_company"] == [
        {"target_object": "companies", "target_record_id": acme}
    ]
    assert sent_deal["data"]["values"]["associated_people"] == [
        {"target_object": "people", "target_record_id": ada}
    ]
    assert target.read(Entity.CONTACTS, [ada])[ada].fields["company_crm_id"] == acme
    held = target.read(Entity.DEALS, [deal])[deal].fields
    assert (held["company_crm_id"], held["contact_crm_id"]) == (acme, ada)

    (bob,) = _ids(
        target.upsert(Entity.CONTACTS, [{"email": "bob@acme.com", "company_crm_id": acme}])
    )
    (asserted,) = attio.bodies("PUT")
    assert asserted["data"]["values"]["company"] == [
        {"target_object": "companies", "target_record_id": acme}
    ], "the link rides on the assert"
    assert target.read(Entity.CONTACTS, [bob])[bob].fields["company_crm_id"] == acme


def test_a_person_added_to_a_deal_keeps_its_people_and_a_rollback_takes_only_ours_out(
    target: SyncTarget, attio: FakeAttio
) -> None:
    ada, bob = _ids(
        target.create(Entity.CONTACTS, [{"email": "ada@x.com"}, {"email": "bob@x.com"}])
    )
    (deal,) = _ids(target.create(Entity.DEALS, [{"name": "Pilot", "contact_crm_id": bob}]))

    assert _ids(target.update(Entity.DEALS, [deal], [{"contact_crm_id": ada}])) == [deal]
    (patch,) = attio.bodies("PATCH")
    assert patch["data"]["values"] == {
        "associated_people": [{"target_object": "people", "target_record_id": ada}]
    }
    now = target.read(Entity.DEALS, [deal])[deal]
    assert (now.fields["contact_crm_id"], now.also["contact_crm_id"]) == (ada, (bob,))

    target.update(Entity.DEALS, [deal], [{"contact_crm_id": bob}], clear_blanks=True)
    (put,) = attio.bodies("PUT", deal)
    assert put["data"]["values"]["associated_people"] == [
        {"target_object": "people", "target_record_id": bob}
    ]
    after = target.read(Entity.DEALS, [deal])[deal]
    assert (after.fields["contact_crm_id"], after.also.get("contact_crm_id")) == (bob, None)


def test_a_persons_company_link_is_cleared_by_a_rollback_that_found_none(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (acme,) = _ids(target.create(Entity.COMPANIES, [{"name": "Acme", "domain": "acme.com"}]))
    (ada,) = _ids(target.create(Entity.CONTACTS, [{"email": "ada@acme.com"}]))
    target.update(Entity.CONTACTS, [ada], [{"company_crm_id": acme}])

    target.update(Entity.CONTACTS, [ada], [{"company_crm_id": None}], clear_blanks=True)

    (put,) = attio.bodies("PUT", ada)
    assert put["data"]["values"] == {"company": []}
    assert target.read(Entity.CONTACTS, [ada])[ada].fields["company_crm_id"] is None


def test_a_task_is_created_with_every_property_and_its_links(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (acme,) = _ids(target.create(Entity.COMPANIES, [{"name": "Acme", "domain": "acme.com"}]))
    (ada,) = _ids(target.create(Entity.CONTACTS, [{"email": "ada@acme.com"}]))
    (deal,) = _ids(target.create(Entity.DEALS, [{"name": "Pilot"}]))
    task = {
        "subject": "Call Ada",
        "body": "About the renewal.\nBring the numbers.",
        "due_date": "2025-01-10",
        "done": "true",
        "contact_crm_id": ada,
        "company_crm_id": acme,
        "deal_crm_id": deal,
    }

    (task_id,) = _ids(target.create(Entity.ACTIVITIES, [task]))

    (body,) = attio.bodies("POST", "/v2/tasks")
    assert body == {
        "data": {
            "content": "Call Ada\n\nAbout the renewal.\nBring the numbers.",
            "format": "plaintext",
            "deadline_at": "2025-01-10T00:00:00Z",
            "is_completed": True,
            "linked_records": [
                {"target_object": "people", "target_record_id": ada},
                {"target_object": "companies", "target_record_id": acme},
                {"target_object": "deals", "target_record_id": deal},
            ],
            "assignees": [],
        }
    }
    held = target.read(Entity.ACTIVITIES, [task_id])[task_id].fields
    assert held == task, "read back as written"
    assert target.fields(Entity.ACTIVITIES) >= {"subject", "due_date", "deal_crm_id"}
    assert "priority" not in target.fields(Entity.ACTIVITIES), "no place in an Attio task"


def test_a_task_update_adds_its_link_beside_the_others_and_a_rollback_takes_it_out(
    target: SyncTarget, attio: FakeAttio
) -> None:
    ada, bob = _ids(
        target.create(Entity.CONTACTS, [{"email": "ada@x.com"}, {"email": "bob@x.com"}])
    )
    (task_id,) = _ids(
        target.create(Entity.ACTIVITIES, [{"subject": "Call", "contact_crm_id": bob}])
    )
    attio.requests.clear()

    assert _ids(
        target.update(Entity.ACTIVITIES, [task_id], [{"contact_crm_id": ada, "done": "true"}])
    ) == [task_id]

    assert attio.calls() == [f"GET /v2/tasks/{task_id}", f"PATCH /v2/tasks/{task_id}"]
    (patch,) = attio.bodies("PATCH")
    assert patch == {
        "data": {
            "is_completed": True,
            "linked_records": [
                {"target_object": "people", "target_record_id": ada},
                {"target_object": "people", "target_record_id": bob},
            ],
        }
    }
    now = target.read(Entity.ACTIVITIES, [task_id])[task_id]
    assert (now.fields["contact_crm_id"], now.also["contact_crm_id"]) == (ada, (bob,))

    target.update(
        Entity.ACTIVITIES, [task_id], [{"contact_crm_id": bob, "done": None}], clear_blanks=True
    )
    after = target.read(Entity.ACTIVITIES, [task_id])[task_id]
    assert (after.fields["contact_crm_id"], after.also, after.fields["done"]) == (bob, {}, "false")


def test_a_task_whose_text_changed_fails_without_a_call(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (task_id,) = _ids(target.create(Entity.ACTIVITIES, [{"subject": "Call"}]))
    attio.requests.clear()

    result = target.update(Entity.ACTIVITIES, [task_id], [{"subject": "Call back"}])

    (failed,) = result.failed
    assert failed.kind is FailureKind.INVALID
    assert "Attio cannot change the text of a task" in failed.message
    assert attio.requests == []
    too_long = target.create(Entity.ACTIVITIES, [{"subject": "Long", "body": "x" * 2000}])
    assert "at most 2000" in too_long.failed[0].message
    assert attio.requests == []


def test_a_task_create_whose_answer_was_lost_is_found_by_listing_not_sent_again(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (ada,) = _ids(target.create(Entity.CONTACTS, [{"email": "ada@x.com"}]))
    target.create(Entity.ACTIVITIES, [{"subject": "Call", "due_date": "2025-01-10"}])
    attio.lose_create_answers = 1

    result = target.create(
        Entity.ACTIVITIES, [{"subject": "Call", "due_date": "2025-01-10", "contact_crm_id": ada}]
    )

    (written,) = result.successful
    assert written.created
    assert len(attio.api.store.tasks()) == 2
    assert len(attio.bodies("POST", "/v2/tasks")) == 2, "not resent"
    assert any(c.startswith("GET /v2/tasks") for c in attio.calls("GET"))
    mine = target.read(Entity.ACTIVITIES, [written.id])[written.id]
    assert mine.fields["contact_crm_id"] == ada, "the task it made, not the older one"


def test_a_note_goes_on_one_parent_with_its_date_in_the_title(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (ada,) = _ids(target.create(Entity.CONTACTS, [{"email": "ada@x.com"}]))
    (deal,) = _ids(target.create(Entity.DEALS, [{"name": "Pilot"}]))
    attio.requests.clear()

    both, alone = _ids(
        target.create(
            Entity.NOTES,
            [
                {
                    "body": "Met at the fair\nShe wants a demo",
                    "date": "2025-01-10",
                    "contact_crm_id": ada,
                    "deal_crm_id": deal,
                },
                {"body": "Called", "contact_crm_id": ada},
            ],
        )
    )
    orphan = target.create(Entity.NOTES, [{"body": "Nobody's"}])

    first, second = attio.bodies("POST", "/v2/notes")
    assert first == {
        "data": {
            "parent_object": "deals",
            "parent_record_id": deal,
            "title": "2025-01-10: Met at the fair",
            "format": "plaintext",
            "content": "Met at the fair\nShe wants a demo",
        }
    }
    assert (second["data"]["parent_object"], second["data"]["title"]) == ("people", "Called")
    assert "Attio attaches every note to a record" in orphan.failed[0].message
    read = target.read(Entity.NOTES, [both, alone])
    assert read[both].fields == {
        "body": "Met at the fair\nShe wants a demo",
        "date": "2025-01-10",
        "contact_crm_id": None,
        "company_crm_id": None,
        "deal_crm_id": deal,
    }
    assert read[alone].fields["contact_crm_id"] == ada
    changed = target.update(Entity.NOTES, [alone], [{"body": "Called twice"}])
    assert "Attio cannot change a note" in changed.failed[0].message
    assert _ids(target.remove(Entity.NOTES, [alone, alone])) == [alone, alone]
    assert [n["id"]["note_id"] for n in attio.api.store.notes()] == [both]


def test_notes_are_found_by_listing_page_after_page_and_a_lost_create_is_not_resent(
    target: SyncTarget, attio: FakeAttio
) -> None:
    (ada,) = _ids(target.create(Entity.CONTACTS, [{"email": "ada@x.com"}]))
    _ids(
        target.create(
            Entity.NOTES, [{"body": f"Note {i}", "contact_crm_id": ada} for i in range(50)]
        )
    )
    attio.lose_create_answers = 1
    attio.requests.clear()

    result = target.create(Entity.NOTES, [{"body": "Note 50", "contact_crm_id": ada}])

    assert [w.created for w in result.successful] == [True]
    assert len(attio.api.store.notes()) == 51
    assert len(attio.bodies("POST", "/v2/notes")) == 1
    listings = [
        r.url.params for r in attio.requests if r.url.path == "/v2/notes" and r.method == "GET"
    ]
    assert [(p["limit"], p["offset"]) for p in listings] == [
        ("50", "0"),
        ("50", "50"),
        ("50", "51"),
    ]


def test_a_task_patch_keeps_links_to_objects_of_no_entity_of_ours() -> None:
    current = [
        (None, "0b8ea1d6-object-of-projects", "project-1"),
        (Entity.CONTACTS, "people-object-id", "bob"),
    ]

    added = linked_after_update(current, {"contact_crm_id": "ada"}, rollback=False)
    undone = linked_after_update(
        [(None, "0b8ea1d6-object-of-projects", "project-1"), (Entity.CONTACTS, "p", "ada")],
        {"contact_crm_id": None},
        rollback=True,
    )

    assert added == [
        {"target_object": "0b8ea1d6-object-of-projects", "target_record_id": "project-1"},
        {"target_object": "people", "target_record_id": "ada"},
        {"target_object": "people", "target_record_id": "bob"},
    ]
    assert undone == [
        {"target_object": "0b8ea1d6-object-of-projects", "target_record_id": "project-1"}
    ]
