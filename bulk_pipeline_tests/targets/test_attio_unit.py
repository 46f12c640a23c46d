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
    assert "company" not in target.fields(Entity.CONTACTS), "a reference: linked imports"
    assert {"email", "first_name", "city", "phone"} <= target.fields(Entity.CONTACTS)
    assert target.fields(Entity.DEALS) == frozenset({"name", "amount", "stage", "owner"})

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
