"""The Pipedrive target's requests, checked against Pipedrive's spec by a fake transport.

Every request below goes through ``FakePipedrive``, which validates it (and its answer) against
the v2/v1 spec fixtures, asserts the token is a header and never in the URL, and charges each
call the spec's ``x-token-cost``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import BudgetExhausted, CrmRefused, TargetConfigError
from bulk_pipeline.targets import open_target
from bulk_pipeline.targets.base import FailureKind, NoteParent, Work
from bulk_pipeline.targets.http import ApiRequest, Pause, RetryPolicy
from bulk_pipeline.targets.pipedrive import derive_costs
from bulk_pipeline.targets.pipedrive.budget import pipedrive_budget, template
from bulk_pipeline.targets.pipedrive.costs import TOKEN_COSTS
from bulk_pipeline.targets.pipedrive.fields import domain_of
from bulk_pipeline.targets.runner import SyncTarget
from bulk_pipeline_tests.specs import load_spec
from bulk_pipeline_tests.targets.fake_hubspot import answer, apply_then
from bulk_pipeline_tests.targets.fake_pipedrive import BASE_URL, TOKEN, FakePipedrive, spec_cost

QUICK = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)
SETTINGS = {"PIPEDRIVE_API_TOKEN": TOKEN, "PIPEDRIVE_BASE_URL": BASE_URL}


@pytest.fixture
def fake() -> FakePipedrive:
    return FakePipedrive()


def opened(fake: FakePipedrive, **settings: str) -> SyncTarget:
    return open_target(
        "pipedrive",
        {**SETTINGS, **settings},
        retry=QUICK,
        budget=pipedrive_budget({**SETTINGS, **settings}),
        transport=fake.transport(),
    )


@pytest.fixture
def target(fake: FakePipedrive) -> Iterator[SyncTarget]:
    opened_target = opened(fake)
    try:
        yield opened_target
    finally:
        opened_target.close()


def sent(fake: FakePipedrive, method: str, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in fake.calls(method, path)]


def person(fake: FakePipedrive, email: str, **fields: Any) -> dict[str, Any]:
    return fake.add("persons", {"name": email, "emails": [{"value": email}], **fields})


# --- the cost table ------------------------------------------------------------------------------


def test_the_cost_table_is_the_specs_x_token_cost_for_every_call_the_target_sends() -> None:
    assert set(TOKEN_COSTS) == set(derive_costs.OPERATIONS)
    for (method, path), cost in TOKEN_COSTS.items():
        assert spec_cost(method, path) == cost, f"{method} {path}"
    assert template("/api/v2/persons/123") == "/api/v2/persons/{id}"


def test_derive_costs_reads_x_token_cost_and_names_an_operation_the_spec_lacks(
    tmp_path: Any,
) -> None:
    v2 = load_spec("pipedrive", "v2.json")
    v1 = load_spec("pipedrive", "v1.json")
    (tmp_path / "v2.yaml").write_text(json.dumps(v2), encoding="utf-8")
    (tmp_path / "v1.yaml").write_text(json.dumps(v1), encoding="utf-8")
    assert derive_costs.costs(tmp_path) == TOKEN_COSTS
    module: dict[str, object] = {}
    exec(derive_costs.render(TOKEN_COSTS), module)
    assert module["TOKEN_COSTS"] == TOKEN_COSTS

    del v2["paths"]["/persons/search"]["get"]["x-token-cost"]
    (tmp_path / "v2.yaml").write_text(json.dumps(v2), encoding="utf-8")
    with pytest.raises(LookupError, match="GET /api/v2/persons/search"):
        derive_costs.costs(tmp_path)


# --- request shapes ------------------------------------------------------------------------------


def test_a_contact_becomes_a_person_with_emails_and_phones_as_pipedrive_lists(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    result = target.create(
        Entity.CONTACTS,
        [
            {
                "email": "zoe@example.fr",
                "first_name": "Zoë",
                "last_name": "Martin",
                "phone": "+33142685300",
                "mobile_phone": "+33612345678",
                "city": "Paris",
                "date_of_birth": "1990-03-05",
            }
        ],
    )

    assert [w.created for w in result.successful] == [True]
    (body,) = sent(fake, "POST", "/api/v2/persons")
    assert body["first_name"] == "Zoë" and body["last_name"] == "Martin"
    assert body["emails"] == [{"value": "zoe@example.fr", "primary": True, "label": "work"}]
    assert body["phones"] == [
        {"value": "+33142685300", "primary": True, "label": "work"},
        {"value": "+33612345678", "primary": False, "label": "mobile"},
    ]
    assert body["postal_address"] == {"locality": "Paris", "value": "Paris"}
    assert body["birthday"] == "1990-03-05"
    assert "name" not in body, "Pipedrive derives the name from first and last name"


def test_a_person_without_names_is_named_by_email(fake: FakePipedrive, target: SyncTarget) -> None:
    target.create(Entity.CONTACTS, [{"email": "info@example.com"}])
    (body,) = sent(fake, "POST", "/api/v2/persons")
    assert body["name"] == "info@example.com"


def test_companies_keep_their_domain_in_website_and_whole_numbers_as_integers(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    result = target.create(
        Entity.COMPANIES,
        [{"name": "Acme", "domain": "acme.com", "number_of_employees": "250"}],
    )
    assert len(result.successful) == 1
    (body,) = sent(fake, "POST", "/api/v2/organizations")
    assert body == {"name": "Acme", "website": "acme.com", "employee_count": 250}
    assert domain_of("https://www.ACME.com/about?x=1") == "acme.com"
    found = target.lookup(Entity.COMPANIES, ["acme.com"])
    assert found["acme.com"].fields["domain"] == "acme.com"

    refused = target.create(
        Entity.COMPANIES, [{"name": "Half", "domain": "half.io", "number_of_employees": "2.5"}]
    )
    (failed,) = refused.failed
    assert failed.kind is FailureKind.INVALID
    assert "whole numbers" in failed.message
    assert len(fake.calls("POST", "/api/v2/organizations")) == 1, "a bad value is never sent"


def test_deals_find_their_pipeline_and_stage_by_name(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    target.create(
        Entity.DEALS,
        [
            {"name": "Q1", "pipeline": "partners", "stage": "Lead In", "amount": "1500.5"},
            {"name": "Q2", "stage": "Qualified"},
        ],
    )
    bodies = sent(fake, "POST", "/api/v2/deals")
    assert bodies[0] == {"title": "Q1", "value": 1500.5, "pipeline_id": 2, "stage_id": 3}
    assert bodies[1] == {"title": "Q2", "stage_id": 2}

    refused = target.create(Entity.DEALS, [{"name": "Q3", "stage": "Negotiation"}])
    assert "stage 'Negotiation' is not a stage" in refused.failed[0].message


def test_an_update_changes_one_phone_and_keeps_the_others_and_the_address(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    existing = person(
        fake,
        "ada@example.com",
        phones=[
            {"value": "+4420", "primary": True, "label": "work"},
            {"value": "+4477", "primary": False, "label": "mobile"},
        ],
        postal_address={"value": "12 St James's Square", "locality": "London"},
    )
    target.update(Entity.CONTACTS, [str(existing["id"])], [{"phone": "+4421", "zip": "SW1"}])

    (body,) = sent(fake, "PATCH", f"/api/v2/persons/{existing['id']}")
    assert body["phones"] == [
        {"value": "+4421", "primary": True, "label": "work"},
        {"value": "+4477", "primary": False, "label": "mobile"},
    ]
    assert body["postal_address"] == {
        "locality": "London",
        "postal_code": "SW1",
        "value": "12 St James's Square",
    }
    assert "emails" not in body


def test_a_rollback_clears_fields_that_were_blank(fake: FakePipedrive, target: SyncTarget) -> None:
    existing = person(fake, "ada@example.com", first_name="Ada", job_title="Engineer")
    target.update(
        Entity.CONTACTS,
        [str(existing["id"])],
        [{"job_title": None, "first_name": "Ada"}],
        clear_blanks=True,
    )
    (body,) = sent(fake, "PATCH", f"/api/v2/persons/{existing['id']}")
    assert body == {"job_title": "", "first_name": "Ada"}
    assert target.read(Entity.CONTACTS, [str(existing["id"])])[str(existing["id"])].fields[
        "job_title"
    ] in (None, "")


def test_columns_named_like_custom_fields_are_written_there_and_others_refused(
    fake: FakePipedrive,
) -> None:
    colour = fake.add_custom_field("persons", "Favourite Colour", "varchar")
    tier = fake.add_custom_field("persons", "Tier", "enum", ["Gold", "Silver"])
    tags = fake.add_custom_field("persons", "Tags", "set", ["a", "b", "c"])
    target = opened(fake)
    try:
        held = target.fields(Entity.CONTACTS)
        assert {"Favourite Colour", "Tier", "Tags", "email", "phone"} <= held
        assert "company" not in held

        result = target.create(
            Entity.CONTACTS,
            [
                {"email": "a@x.io", "favourite_colour": "Blue", "Tier": "gold", "Tags": "a, c"},
                {"email": "b@x.io", "company": "Acme"},
                {"email": "c@x.io", "Tier": "Bronze"},
            ],
        )
    finally:
        target.close()

    (body,) = sent(fake, "POST", "/api/v2/persons")
    assert body["custom_fields"] == {colour: "Blue", tier: 100, tags: [100, 102]}
    failures = {f.index: f for f in result.failed}
    assert failures[1].message.startswith("the CRM has no contacts field for 'company'")
    assert "'Bronze' is not one of the options of Tier (Gold, Silver)" in failures[2].message
    found = target.lookup(Entity.CONTACTS, ["a@x.io"])["a@x.io"]
    assert (found.fields["Tier"], found.fields["Tags"]) == ("Gold", "a, c")


def test_a_field_of_ours_without_a_place_goes_to_the_custom_field_of_its_name(
    fake: FakePipedrive,
) -> None:
    code = fake.add_custom_field("persons", "Company", "varchar")
    target = opened(fake)
    try:
        assert {"Company"} <= target.fields(Entity.CONTACTS) - {"company"}
        target.create(Entity.CONTACTS, [{"email": "a@x.io", "company": "Acme"}])
        found = target.lookup(Entity.CONTACTS, ["a@x.io"])["a@x.io"]
    finally:
        target.close()
    assert sent(fake, "POST", "/api/v2/persons")[0]["custom_fields"] == {code: "Acme"}
    assert found.fields["company"] == found.fields["Company"] == "Acme", (
        "read back under the name it was written by, so a re-import sees it unchanged"
    )


# --- the match index -----------------------------------------------------------------------------


def test_a_first_import_lists_the_account_once_and_never_searches(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    for i in range(3):
        person(fake, f"old{i}@example.com")
    emails = [f"new{i}@example.com" for i in range(40)] + ["OLD1@example.com"]

    found = target.lookup(Entity.CONTACTS, emails)
    result = target.create(Entity.CONTACTS, [{"email": e} for e in emails[:40]])

    assert set(found) == {"old1@example.com"}
    assert len(result.successful) == 40
    assert len(fake.calls("GET", "/api/v2/persons")) == 1
    assert not fake.calls("GET", "/api/v2/persons/search")
    again = target.lookup(Entity.CONTACTS, emails)
    assert len(again) == 41
    assert len(fake.calls("GET", "/api/v2/persons")) == 1, "answered from the index"


def test_a_push_in_chunks_lists_the_account_once_whatever_the_order_of_its_keys(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    emails = [f"p{i}@example.com" for i in range(2_600)]
    created = list(emails)
    created[499], created[-1] = created[-1], created[499]  # creates in flight land out of order
    for email in created:
        person(fake, email)["update_time"] = "2026-01-01T00:00:00Z"

    found = {}
    for start in range(0, len(emails), 1_000):
        found |= target.lookup(Entity.CONTACTS, emails[start : start + 1_000])

    assert len(found) == len(emails)
    assert len(fake.calls("GET", "/api/v2/persons")) == 6, "6 pages of 500, nothing else"
    assert not fake.calls("GET", "/api/v2/persons/search")


def test_a_few_keys_in_a_large_account_are_searched_once_the_listing_costs_as_much(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    for i in range(3_500):
        person(fake, f"p{i}@example.com")["update_time"] = "2026-01-01T00:00:00Z"
    recent = person(fake, "recent@example.com")

    found = target.lookup(
        Entity.CONTACTS, ["p3499@example.com", "nobody@example.com", "recent@example.com"]
    )

    assert set(found) == {"p3499@example.com", "recent@example.com"}
    listing = [
        r
        for r in fake.calls("GET", "/api/v2/persons")
        if "updated_since" not in r.url.query.decode()
    ]
    assert len(listing) == 6, "it listed until that cost what searching the keys costs"
    assert len(fake.calls("GET", "/api/v2/persons/search")) == 2, "the recent one was listed"
    assert fake.calls("GET", f"/api/v2/persons/{found['p3499@example.com'].id}"), (
        "search results are abridged: the item is read in full"
    )
    lag = [r for r in fake.calls("GET", "/api/v2/persons") if r not in listing]
    assert len(lag) == 1, "items changed within the search index's lag were listed first"
    assert found["recent@example.com"].id == str(recent["id"])


def test_a_create_whose_answer_was_lost_is_read_back_by_listing_not_by_search(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    target.lookup(Entity.CONTACTS, ["ada@example.com"])
    fake.lose_create_answers = 1

    result = target.create(Entity.CONTACTS, [{"email": "ada@example.com", "first_name": "Ada"}])

    assert [w.created for w in result.successful] == [True]
    assert len(fake.items["persons"]) == 1, "not created twice"
    refreshes = [
        r for r in fake.calls("GET", "/api/v2/persons") if "updated_since" in r.url.query.decode()
    ]
    assert len(refreshes) == 1
    assert not fake.calls("GET", "/api/v2/persons/search")


def test_duplicates_in_the_crm_are_named_and_the_oldest_is_used(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    first = person(fake, "dup@example.com", first_name="Old")
    second = person(fake, "Dup@Example.com", first_name="New")
    other = person(
        fake,
        "main@example.com",
        emails=[{"value": "main@example.com"}, {"value": "alias@example.com"}],
    )

    found = target.lookup(Entity.CONTACTS, ["dup@example.com", "alias@example.com"])

    assert found["dup@example.com"].id == str(first["id"])
    assert found["dup@example.com"].duplicates == (str(second["id"]),)
    assert found["alias@example.com"].id == str(other["id"])
    assert found["alias@example.com"].fields["email"] == "alias@example.com"
    assert found["alias@example.com"].duplicates == ()
    read = target.read(Entity.CONTACTS, [str(second["id"])])[str(second["id"])]
    assert read.duplicates == (str(first["id"]),)


def test_reads_of_deleted_items_come_back_absent(fake: FakePipedrive, target: SyncTarget) -> None:
    kept = person(fake, "kept@example.com")
    gone = person(fake, "gone@example.com")
    del fake.items["persons"][gone["id"]]

    found = target.read(Entity.CONTACTS, [str(kept["id"]), str(gone["id"])])

    assert set(found) == {str(kept["id"])}


def test_an_update_of_an_item_deleted_meanwhile_is_not_found(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    doomed = person(fake, "doomed@example.com")
    target.read(Entity.CONTACTS, [str(doomed["id"])])
    del fake.items["persons"][doomed["id"]]

    result = target.update(Entity.CONTACTS, [str(doomed["id"])], [{"first_name": "X"}])

    assert result.failed[0].kind is FailureKind.NOT_FOUND
    assert target.read(Entity.CONTACTS, [str(doomed["id"])]) == {}


# --- the budget ----------------------------------------------------------------------------------


def test_the_push_stops_before_a_call_the_days_tokens_cannot_pay(fake: FakePipedrive) -> None:
    fake.daily_budget = 2 + 10 + 10 + 5 * 3 + 2
    target = opened(fake)
    try:
        target.check()
        target.lookup(Entity.CONTACTS, ["a@x.io"])
        result = target.create(Entity.CONTACTS, [{"email": f"p{i}@x.io"} for i in range(6)])
    finally:
        target.close()

    assert len(result.successful) == 3
    assert {f.kind for f in result.failed} == {FailureKind.NOT_SENT}
    assert result.exhausted is not None
    assert result.exhausted.budget == "daily token budget"
    assert len(fake.calls("POST", "/api/v2/persons")) == 3, "no call it could not pay was sent"


def test_pipedrive_daily_tokens_is_the_budget_until_pipedrive_says(fake: FakePipedrive) -> None:
    states = opened(fake, PIPEDRIVE_DAILY_TOKENS="180,000").budget()
    tokens = next(s for s in states if s.name == "daily token budget")
    assert (tokens.limit, tokens.unit) == (180_000, "tokens")
    with pytest.raises(TargetConfigError, match="PIPEDRIVE_DAILY_TOKENS"):
        pipedrive_budget({"PIPEDRIVE_DAILY_TOKENS": "lots"})


def test_a_budget_429_stops_with_the_reset_time_from_retry_after(fake: FakePipedrive) -> None:
    target = opened(fake)
    target.check()
    fake.faults = [
        answer(
            429,
            {"success": False, "error": "daily request budget exceeded", "errorCode": 429},
            {"Retry-After": "7200", "Date": "Mon, 30 Nov 2026 22:00:00 GMT"},
        )
    ]
    try:
        result = target.create(Entity.CONTACTS, [{"email": "a@x.io"}])
    finally:
        target.close()
    assert result.exhausted is not None
    assert result.exhausted.resume_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert "daily token budget" in str(result.exhausted)


def test_a_burst_429_holds_every_request_of_the_lane_for_its_retry_after() -> None:
    budget = pipedrive_budget({})
    refused = ApiRequest("POST", "/api/v2/persons", kind="post")
    waiting = ApiRequest("GET", "/api/v2/deals")
    search = ApiRequest("GET", "/api/v2/persons/search", kind="search")
    too_many = httpx.Response(429, json={"success": False, "error": "Rate limit exceeded"})

    assert budget.rate_limited(refused, too_many, 3.0) == 3.0

    pause = next(budget.acquire(waiting))
    assert isinstance(pause, Pause) and 2.9 < pause.seconds <= 3.0
    assert not isinstance(next(budget.acquire(search), None), Pause), "search has its own window"


def test_429s_that_keep_coming_stop_the_push_before_pipedrive_blocks_the_token(
    fake: FakePipedrive,
) -> None:
    target = open_target(
        "pipedrive",
        SETTINGS,
        retry=RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.02),
        budget=pipedrive_budget(SETTINGS),
        transport=fake.transport(),
    )
    target.check()
    fake.faults = [answer(429, {"success": False}, {"Retry-After": "0"}) for _ in range(10)]
    try:
        with pytest.raises(BudgetExhausted, match="before Pipedrive blocks the API token"):
            target.lookup(Entity.CONTACTS, ["a@x.io"])
    finally:
        target.close()
    assert len(fake.requests) == 1 + 6, "it stopped at the sixth 429"


def test_a_block_page_stops_the_push_instead_of_blaming_the_token(fake: FakePipedrive) -> None:
    target = opened(fake)
    fake.faults = [
        answer(
            403,
            "<html><title>Access denied | Cloudflare</title></html>",
            {"content-type": "text/html"},
        )
    ]
    try:
        with pytest.raises(BudgetExhausted, match="blocked the API token"):
            target.check()
    finally:
        target.close()


def test_a_refused_token_is_a_configuration_error(fake: FakePipedrive) -> None:
    target = opened(fake)
    fake.faults = [
        answer(401, {"success": False, "error": "unauthorized access", "errorCode": 401})
    ]
    try:
        with pytest.raises(TargetConfigError, match="HTTP 401"):
            target.check()
    finally:
        target.close()


def test_the_estimate_is_in_tokens(fake: FakePipedrive, target: SyncTarget) -> None:
    estimate = target.estimate(Entity.CONTACTS, Work(lookups=1_000, creates=600, updates=100))
    assert estimate.unit == "tokens"
    assert estimate.units == 2 * 10 + 2 + 10 + 700 * 5
    deals = target.estimate(Entity.DEALS, Work(lookups=10, creates=10))
    assert deals.units == 10 + 2 + 10 + 5 + 5 + 50


# --- notes ---------------------------------------------------------------------------------------


def test_a_note_needs_a_parent_and_is_attached_to_it(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    ada = person(fake, "ada@example.com")
    note_id = target.add_note("imported", NoteParent(Entity.CONTACTS, str(ada["id"])))
    assert sent(fake, "POST", "/api/v1/notes") == [{"content": "imported", "person_id": ada["id"]}]
    assert int(note_id) in fake.items["notes"]
    with pytest.raises(CrmRefused, match="attaches every note"):
        target.add_note("orphan", None)


def test_a_note_whose_answer_was_lost_is_found_not_written_twice(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    deal = fake.add("deals", {"title": "Big"})
    fake.faults = [apply_then(httpx.ReadTimeout)]
    note_id = target.add_note("summary", NoteParent(Entity.DEALS, str(deal["id"])))
    assert len(fake.items["notes"]) == 1
    assert int(note_id) in fake.items["notes"]


# --- links, activities and notes -----------------------------------------------------------------


def test_links_are_foreign_keys_written_with_the_record_and_read_back(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    acme = fake.add("organizations", {"name": "Acme", "website": "acme.com"})
    ada = person(fake, "ada@acme.com")

    assert {"company_crm_id"} <= target.fields(Entity.CONTACTS)
    assert {"company_crm_id", "contact_crm_id"} <= target.fields(Entity.DEALS)
    result = target.create(
        Entity.DEALS,
        [{"name": "Renewal", "company_crm_id": str(acme["id"]), "contact_crm_id": str(ada["id"])}],
    )

    (body,) = sent(fake, "POST", "/api/v2/deals")
    assert (body["org_id"], body["person_id"]) == (acme["id"], ada["id"])
    deal = target.read(Entity.DEALS, [result.successful[0].id])[result.successful[0].id]
    assert deal.fields["company_crm_id"] == str(acme["id"])
    assert deal.fields["contact_crm_id"] == str(ada["id"])


def test_a_link_to_a_record_that_exists_is_an_update_of_its_key_and_a_rollback_clears_it(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    acme = fake.add("organizations", {"name": "Acme", "website": "acme.com"})
    ada = person(fake, "ada@acme.com")

    target.update(Entity.CONTACTS, [str(ada["id"])], [{"company_crm_id": str(acme["id"])}])
    target.update(Entity.CONTACTS, [str(ada["id"])], [{"company_crm_id": ""}], clear_blanks=True)

    assert sent(fake, "PATCH", f"/api/v2/persons/{ada['id']}") == [
        {"org_id": acme["id"]},
        {"org_id": None},
    ]
    assert "org_id" not in fake.items["persons"][ada["id"]]


def test_a_link_field_that_holds_no_id_is_refused_before_sending(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    result = target.create(Entity.CONTACTS, [{"email": "a@b.io", "company_crm_id": "new:acme"}])

    assert result.failed[0].kind is FailureKind.INVALID
    assert "is not a Pipedrive id" in result.failed[0].message
    assert not fake.calls("POST", "/api/v2/persons")


def test_companies_are_found_by_name_and_deals_searched_by_title_with_their_links(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    acme = fake.add("organizations", {"name": "Acme Corp", "website": "https://acme.com"})
    globex = fake.add("organizations", {"name": "Globex"})
    at_acme = fake.add("deals", {"title": "Renewal", "org_id": acme["id"]})
    at_globex = fake.add("deals", {"title": "renewal", "org_id": globex["id"]})
    fake.add("deals", {"title": "Pilot"})

    by_name = target.lookup(Entity.COMPANIES, ["ACME corp"], by="name")
    by_domain = target.lookup(Entity.COMPANIES, ["acme.com"], by="domain")
    renewals = target.search(Entity.DEALS, ["Renewal"], "name")

    assert by_name["acme corp"].id == by_domain["acme.com"].id == str(acme["id"])
    assert {(r.id, r.fields["company_crm_id"]) for r in renewals} == {
        (str(at_acme["id"]), str(acme["id"])),
        (str(at_globex["id"]), str(globex["id"])),
    }
    assert target.lookup(Entity.COMPANIES, ["x"], by="industry") == {}, "not a field to find by"


def test_search_by_title_is_never_answered_by_part_of_a_listing(fake: FakePipedrive) -> None:
    """A partial listing knows the oldest deal of a title, not every one: a deal with the
    title further on would be missed and the other company's deal created twice."""
    for number in range(1_200):
        fake.add("deals", {"title": f"Deal {number}"})
    later = fake.add("deals", {"title": "Deal 3"})
    target = opened(fake)
    try:
        target.lookup(Entity.DEALS, ["Deal 1"], by="name")
        found = target.search(Entity.DEALS, ["Deal 3"], "name")
    finally:
        target.close()

    assert str(later["id"]) in {r.id for r in found}
    assert len(found) == 2


def test_an_activity_names_its_type_and_priority_as_the_account_does(
    fake: FakePipedrive,
) -> None:
    fake.activity_priorities = ["Low", "Medium", "High"]
    target = opened(fake)
    ada = person(fake, "ada@acme.com")
    try:
        assert {"type", "priority", "done", "contact_crm_id", "deal_crm_id"} <= target.fields(
            Entity.ACTIVITIES
        )
        result = target.create(
            Entity.ACTIVITIES,
            [
                {
                    "subject": "Call Ada",
                    "type": "CALL",
                    "priority": "high",
                    "due_date": "2025-01-10",
                    "done": "false",
                    "body": "About the renewal",
                    "contact_crm_id": str(ada["id"]),
                }
            ],
        )
        read = target.read(Entity.ACTIVITIES, [result.successful[0].id])
        refused = target.create(Entity.ACTIVITIES, [{"subject": "Fax", "type": "fax"}])
    finally:
        target.close()

    (body,) = sent(fake, "POST", "/api/v2/activities")
    assert body == {
        "subject": "Call Ada",
        "due_date": "2025-01-10",
        "note": "About the renewal",
        "done": False,
        "type": "call",
        "priority": 2,
        "person_id": ada["id"],
    }
    record = read[result.successful[0].id]
    assert (record.fields["type"], record.fields["priority"]) == ("Call", "High")
    assert record.holds("type", "CALL") and record.holds("priority", "high")
    assert "types: Call, Meeting" in refused.failed[0].message


def test_an_activity_priority_without_options_has_no_place(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    assert "priority" not in target.fields(Entity.ACTIVITIES)
    result = target.create(Entity.ACTIVITIES, [{"subject": "Call", "priority": "high"}])
    assert result.failed[0].kind is FailureKind.INVALID


def test_a_lost_activity_create_is_found_in_the_listing_and_not_sent_again(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    ada = person(fake, "ada@acme.com")
    fake.add("activities", {"subject": "Call Ada", "type": "meeting"})
    target.search(Entity.ACTIVITIES, ["Call Ada"], "subject")
    fake.lose_create_answers = 1

    result = target.create(
        Entity.ACTIVITIES,
        [{"subject": "Call Ada", "type": "call", "contact_crm_id": str(ada["id"])}],
    )

    assert [w.created for w in result.successful] == [True]
    assert len(fake.items["activities"]) == 2, "the other call is not ours; ours is not sent twice"
    assert fake.items["activities"][int(result.successful[0].id)]["type"] == "call"
    assert len(fake.calls("POST", "/api/v2/activities")) == 1


def test_notes_are_v1_with_a_parent_a_date_and_put_updates(
    fake: FakePipedrive, target: SyncTarget
) -> None:
    ada = person(fake, "ada@acme.com")

    assert "contact_crm_id" in target.fields(Entity.NOTES)
    orphan = target.create(Entity.NOTES, [{"body": "Nobody's"}])
    made = target.create(
        Entity.NOTES,
        [{"body": "Met at the fair", "date": "2025-02-03", "contact_crm_id": str(ada["id"])}],
    )
    note_id = made.successful[0].id
    found = target.search(Entity.NOTES, ["met at the fair"], "body")
    target.update(Entity.NOTES, [note_id], [{"body": "Met at the fair, again"}])
    target.remove(Entity.NOTES, [note_id])

    assert "attaches every note" in orphan.failed[0].message
    assert sent(fake, "POST", "/api/v1/notes") == [
        {"content": "Met at the fair", "add_time": "2025-02-03 00:00:00", "person_id": ada["id"]}
    ]
    assert [(r.id, r.fields["date"], r.fields["contact_crm_id"]) for r in found] == [
        (note_id, "2025-02-03", str(ada["id"]))
    ]
    assert sent(fake, "PUT", f"/api/v1/notes/{note_id}") == [{"content": "Met at the fair, again"}]
    assert not fake.items["notes"]
    assert not fake.calls("GET", "/api/v2/noteFields"), "notes have no fields to read"
