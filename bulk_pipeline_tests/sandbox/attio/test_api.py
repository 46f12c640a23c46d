"""The Attio dialect's behaviour: credentials, value shapes, uniqueness, assert, PATCH against
PUT on multiselect attributes, record references, required values and defaults, filters,
permanent deletes, lists and entries, notes, tasks, custom attributes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bulk_pipeline.sandbox.attio.workspace import MEMBERS, OBJECTS, TOKEN_OWNER
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.attio.conftest import COMPANIES, DEALS, PEOPLE, values


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def refused(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status_code"] == status and body["code"] == code, body
    return str(body["message"])


def create(client: httpx.Client, path: str, **values_: Any) -> dict[str, Any]:
    return dict(ok(client.post(path, json={"data": {"values": values_}})))


def patch(
    client: httpx.Client, path: str, record: dict[str, Any], method: str = "PATCH", **values_: Any
) -> httpx.Response:
    return client.request(
        method, f"{path}/{record['id']['record_id']}", json={"data": {"values": values_}}
    )


def test_credentials_are_a_bearer_token(sandbox: RunningSandbox) -> None:
    with httpx.Client(base_url=sandbox.url, trust_env=False) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": sandbox.token}):
            message = refused(anonymous.get("/v2/self", headers=headers), 401, "unauthorized")
            assert sandbox.token not in message
        answer = anonymous.get("/v2/self", headers={"Authorization": f"Bearer {sandbox.token}"})
    assert answer.json()["active"] is True
    assert answer.json()["authorized_by_workspace_member_id"] == TOKEN_OWNER.id


def test_a_unique_value_makes_one_record(attio: httpx.Client, sandbox: RunningSandbox) -> None:
    ada = create(attio, PEOPLE, email_addresses=["Ada@Example.com"])
    assert values(ada, "email_addresses", "email_address") == ["ada@example.com"]
    assert values(ada, "email_addresses", "original_email_address") == ["Ada@Example.com"]
    message = refused(
        attio.post(PEOPLE, json={"data": {"values": {"email_addresses": ["ADA@example.com"]}}}),
        400,
        "uniqueness_conflict",
    )
    assert ada["id"]["record_id"] in message
    create(attio, COMPANIES, domains=["https://www.Acme.example/about"])
    refused(
        attio.post(COMPANIES, json={"data": {"values": {"domains": ["www.acme.example"]}}}),
        400,
        "uniqueness_conflict",
    )
    assert sandbox.admin.counts("attio") == {"people": 1, "companies": 1}
    other = create(attio, PEOPLE, email_addresses=["grace@example.com"])
    refused(
        patch(attio, PEOPLE, other, email_addresses=["ada@example.com"]), 400, "uniqueness_conflict"
    )


def test_value_shapes(attio: httpx.Client) -> None:
    person = create(
        attio,
        PEOPLE,
        email_addresses=[{"email_address": "zoe@example.fr"}],
        name=[{"first_name": "Zoë", "last_name": "Martin"}],
        phone_numbers=[{"original_phone_number": "01 42 68 53 00", "country_code": "FR"}],
    )
    assert values(person, "name", "full_name") == ["Zoë Martin"]
    assert values(person, "phone_numbers", "phone_number") == ["+33142685300"]
    assert values(person, "phone_numbers", "country_code") == ["FR"]
    company = create(attio, COMPANIES, domains=[{"domain": "shop.example.co.uk"}], name=["Shop"])
    assert values(company, "domains", "root_domain") == ["example.co.uk"]
    for path, given, code in (
        (
            PEOPLE,
            {"phone_numbers": [{"original_phone_number": "12", "country_code": "FR"}]},
            "validation_type",
        ),
        (PEOPLE, {"email_addresses": ["not-an-email"]}, "validation_type"),
        (PEOPLE, {"job_title": [{"value": 3}]}, "validation_type"),
        (PEOPLE, {"name": [{"first_name": "A"}, {"first_name": "B"}]}, "validation_type"),
        (PEOPLE, {"created_at": ["2024-01-01T00:00:00Z"]}, "immutable_value"),
        (PEOPLE, {"favourite_colour": ["Blue"]}, "value_not_found"),
        (COMPANIES, {"employee_range": [{"option": "Gigantic"}]}, "value_not_found"),
        (DEALS, {"name": ["X"], "value": [{"currency_value": 1.23456}]}, "validation_type"),
        (DEALS, {"name": ["X"], "owner": ["nobody@example.com"]}, "value_not_found"),
        (DEALS, {"name": ["X"], "stage": [{"status": "in progress"}]}, "value_not_found"),
    ):
        refused(attio.post(path, json={"data": {"values": given}}), 400, code)


def test_deals_require_a_name_and_default_their_stage_and_owner(attio: httpx.Client) -> None:
    refused(attio.post(DEALS, json={"data": {"values": {"stage": ["Lead"]}}}), 400, "missing_value")
    deal = create(attio, DEALS, name=["Pilot"], value=[4200])
    assert [v["status"]["title"] for v in deal["values"]["stage"]] == ["Lead"]
    assert values(deal, "owner", "referenced_actor_id") == [TOKEN_OWNER.id]
    assert values(deal, "value", "currency_code") == ["USD"]
    seller = MEMBERS[1]
    deal = create(attio, DEALS, name=["Expansion"], stage=["Won 🎉"], owner=[seller.email.upper()])
    assert values(deal, "owner", "referenced_actor_id") == [seller.id]
    refused(patch(attio, DEALS, deal, name=[]), 400, "missing_value")


def test_patch_adds_to_multiselect_values_and_put_overwrites_them(attio: httpx.Client) -> None:
    person = create(
        attio,
        PEOPLE,
        email_addresses=["ada@example.com"],
        phone_numbers=["+442079460018"],
        job_title=["Analyst"],
    )
    patched = ok(
        patch(attio, PEOPLE, person, phone_numbers=["+33142685300"], job_title=["Countess"])
    )
    assert values(patched, "phone_numbers", "phone_number") == ["+33142685300", "+442079460018"]
    assert values(patched, "job_title", "value") == ["Countess"]
    again = ok(patch(attio, PEOPLE, person, phone_numbers=["+442079460018"]))
    assert values(again, "phone_numbers", "phone_number") == ["+442079460018", "+33142685300"]
    put = ok(patch(attio, PEOPLE, person, "PUT", phone_numbers=["+33142685300"]))
    assert values(put, "phone_numbers", "phone_number") == ["+33142685300"]
    assert values(put, "email_addresses", "email_address") == ["ada@example.com"]
    cleared = ok(patch(attio, PEOPLE, person, job_title=[]))
    assert cleared["values"]["job_title"] == []


def test_assert_creates_or_updates_by_a_unique_attribute(
    attio: httpx.Client, sandbox: RunningSandbox
) -> None:
    def assert_(matching: str, **given: Any) -> httpx.Response:
        return attio.put(
            PEOPLE, params={"matching_attribute": matching}, json={"data": {"values": given}}
        )

    first = ok(
        assert_(
            "email_addresses", email_addresses=["ada@example.com"], phone_numbers=["+442079460018"]
        )
    )
    second = ok(
        assert_(
            "email_addresses",
            email_addresses=["ADA@example.com", "ada@work.example"],
            phone_numbers=["+33142685300"],
        )
    )
    assert first["id"] == second["id"]
    assert values(second, "email_addresses", "email_address") == [
        "ada@example.com",
        "ada@work.example",
    ]
    assert values(second, "phone_numbers", "phone_number") == ["+33142685300"]
    create(attio, PEOPLE, email_addresses=["grace@example.com"])
    refused(
        assert_("email_addresses", email_addresses=["ada@example.com", "grace@example.com"]),
        400,
        "multiple_match_results",
    )
    refused(
        assert_("job_title", email_addresses=["x@example.com"], job_title=["X"]),
        400,
        "value_not_found",
    )
    refused(assert_("email_addresses", job_title=["X"]), 400, "missing_value")
    assert sandbox.admin.counts("attio")["people"] == 2


def test_queries_filter_sort_and_page(attio: httpx.Client) -> None:
    for index, name in enumerate(("Cleo", "Ada", "Bea")):
        create(
            attio,
            PEOPLE,
            email_addresses=[f"p{index}@example.com"],
            name=[name],
            job_title=[f"Role {index}"],
        )

    def query(**body: Any) -> list[str]:
        return [
            r["values"]["name"][0]["first_name"]
            for r in ok(attio.post(f"{PEOPLE}/query", json=body))
        ]

    assert query() == ["Cleo", "Ada", "Bea"]
    assert query(filter={"email_addresses": "P1@example.com"}) == ["Ada"]
    assert query(
        filter={
            "$or": [
                {"email_addresses": {"email_address": {"$eq": "p0@example.com"}}},
                {"name": {"first_name": {"$eq": "Bea"}}},
            ]
        }
    ) == ["Cleo", "Bea"]
    assert query(filter={"job_title": {"$contains": "ROLE"}, "$not": {"name": "Ada"}}) == [
        "Cleo",
        "Bea",
    ]
    assert query(
        filter={"name": {"first_name": {"$in": ["Ada", "Cleo"]}}},
        sorts=[{"attribute": "name", "field": "first_name", "direction": "desc"}],
    ) == ["Cleo", "Ada"]
    assert query(limit=1, offset=1) == ["Ada"]
    ids = [r["id"]["record_id"] for r in ok(attio.post(f"{PEOPLE}/query", json={}))]
    assert query(filter={"record_id": {"$in": ids[1:]}}) == ["Ada", "Bea"]
    refused(
        attio.post(f"{PEOPLE}/query", json={"filter": {"name": {"$like": "A"}}}),
        400,
        "filter_error",
    )
    refused(attio.post(f"{PEOPLE}/query", json={"filter": {"$xor": []}}), 400, "filter_error")


def test_a_delete_is_for_good_and_takes_entries_and_notes(
    attio: httpx.Client, sandbox: RunningSandbox
) -> None:
    person = create(attio, PEOPLE, email_addresses=["ada@example.com"])
    record_id = person["id"]["record_id"]
    ok(
        attio.post(
            "/v2/lists",
            json={
                "data": {
                    "name": "Leads",
                    "api_slug": "leads",
                    "parent_object": "people",
                    "workspace_access": "full-access",
                    "workspace_member_access": [],
                }
            },
        )
    )
    ok(
        attio.post(
            "/v2/lists/leads/entries",
            json={
                "data": {
                    "parent_record_id": record_id,
                    "parent_object": "people",
                    "entry_values": {},
                }
            },
        )
    )
    ok(
        attio.post(
            "/v2/notes",
            json={
                "data": {
                    "parent_object": "people",
                    "parent_record_id": record_id,
                    "title": "t",
                    "format": "plaintext",
                    "content": "c",
                }
            },
        )
    )
    assert attio.delete(f"{PEOPLE}/{record_id}").status_code == 200
    refused(attio.get(f"{PEOPLE}/{record_id}"), 404, "not_found")
    refused(attio.delete(f"{PEOPLE}/{record_id}"), 404, "not_found")
    assert sandbox.admin.counts("attio") == {"lists": 1}
    again = create(attio, PEOPLE, email_addresses=["ada@example.com"])
    assert again["id"]["record_id"] != record_id


def test_lists_hold_entries_of_their_object(attio: httpx.Client) -> None:
    person = create(attio, PEOPLE, email_addresses=["ada@example.com"])
    company = create(attio, COMPANIES, domains=["acme.example"])
    body = {
        "name": "Leads",
        "api_slug": "leads",
        "parent_object": "people",
        "workspace_access": "full-access",
        "workspace_member_access": [],
    }
    ok(attio.post("/v2/lists", json={"data": body}))
    refused(attio.post("/v2/lists", json={"data": body}), 409, "slug_conflict")
    refused(
        attio.post(
            "/v2/lists",
            json={"data": {**body, "api_slug": "other", "workspace_access": "read-only"}},
        ),
        400,
        "value_not_found",
    )
    refused(attio.get("/v2/lists/nope"), 404, "not_found")
    parent = {
        "parent_record_id": person["id"]["record_id"],
        "parent_object": "people",
        "entry_values": {},
    }
    first = ok(attio.put("/v2/lists/leads/entries", json={"data": parent}))
    same = ok(attio.put("/v2/lists/leads/entries", json={"data": parent}))
    assert first["id"]["entry_id"] == same["id"]["entry_id"]
    ok(attio.post("/v2/lists/leads/entries", json={"data": parent}))
    entries = ok(attio.post("/v2/lists/leads/entries/query", json={}))
    assert [e["parent_record_id"] for e in entries] == [person["id"]["record_id"]] * 2
    refused(
        attio.put("/v2/lists/leads/entries", json={"data": parent}), 400, "multiple_match_results"
    )
    wrong = {
        "parent_record_id": company["id"]["record_id"],
        "parent_object": "companies",
        "entry_values": {},
    }
    refused(attio.post("/v2/lists/leads/entries", json={"data": wrong}), 400, "value_not_found")
    listed = ok(attio.get(f"{PEOPLE}/{person['id']['record_id']}/entries"))
    assert {e["list_api_slug"] for e in listed} == {"leads"} and len(listed) == 2
    page = ok(
        attio.post(
            "/v2/lists/leads/entries/query",
            json={"filter": {"parent_record_id": person["id"]["record_id"]}, "limit": 1},
        )
    )
    assert len(page) == 1


def test_notes_need_a_parent_record(attio: httpx.Client) -> None:
    note = {
        "parent_object": "people",
        "parent_record_id": "00000000-0000-4000-8000-000000000000",
        "title": "t",
        "format": "plaintext",
        "content": "c",
    }
    refused(attio.post("/v2/notes", json={"data": note}), 404, "not_found")
    person = create(attio, PEOPLE, email_addresses=["ada@example.com"])
    written = ok(
        attio.post(
            "/v2/notes", json={"data": {**note, "parent_record_id": person["id"]["record_id"]}}
        )
    )
    assert written["content_plaintext"] == "c"
    listed = ok(attio.get("/v2/notes", params={"parent_record_id": person["id"]["record_id"]}))
    assert [n["id"] for n in listed] == [written["id"]]


def test_record_references_name_records_of_their_allowed_objects(attio: httpx.Client) -> None:
    acme = create(attio, COMPANIES, domains=["acme.example"])["id"]["record_id"]
    ada = create(attio, PEOPLE, email_addresses=["ada@example.com"])["id"]["record_id"]
    bob = create(attio, PEOPLE, email_addresses=["bob@example.com"])["id"]["record_id"]
    person = create(
        attio,
        PEOPLE,
        email_addresses=["cy@example.com"],
        company=[{"target_object": "companies", "domains": [{"domain": "acme.example"}]}],
    )
    assert values(person, "company", "target_record_id") == [acme]
    assert values(person, "company", "target_object") == ["companies"]
    deal = create(
        attio,
        DEALS,
        name=["Pilot"],
        associated_company=[{"target_object": OBJECTS["companies"].id, "target_record_id": acme}],
        associated_people=[{"target_object": "people", "target_record_id": ada}],
    )
    assert values(deal, "associated_company", "target_object") == ["companies"]
    added = ok(
        patch(
            attio,
            DEALS,
            deal,
            associated_people=[{"target_object": "people", "target_record_id": bob}],
        )
    )
    assert values(added, "associated_people", "target_record_id") == [bob, ada]
    wrong = patch(
        attio,
        DEALS,
        deal,
        associated_company=[{"target_object": "people", "target_record_id": ada}],
    )
    assert "not people" in refused(wrong, 400, "validation_type")
    missing = patch(
        attio,
        DEALS,
        deal,
        associated_company=[
            {
                "target_object": "companies",
                "target_record_id": "00000000-0000-4000-8000-000000000000",
            }
        ],
    )
    refused(missing, 400, "value_not_found")
    two = patch(
        attio,
        PEOPLE,
        person,
        company=[
            {"target_object": "companies", "target_record_id": acme},
            {"target_object": "companies", "domains": ["other.example"]},
        ],
    )
    refused(two, 400, "validation_type")


def task_body(**changes: Any) -> dict[str, Any]:
    return {
        "data": {
            "content": "Call Ada",
            "format": "plaintext",
            "deadline_at": "2025-01-10",
            "is_completed": False,
            "linked_records": [],
            "assignees": [],
            **changes,
        }
    }


def test_tasks_link_records_and_change_only_what_attio_lets_change(
    attio: httpx.Client, sandbox: RunningSandbox
) -> None:
    ada = create(attio, PEOPLE, email_addresses=["ada@example.com"])["id"]["record_id"]
    deal = create(attio, DEALS, name=["Pilot"])["id"]["record_id"]
    task = ok(
        attio.post(
            "/v2/tasks",
            json=task_body(
                linked_records=[
                    {
                        "target_object": "people",
                        "email_addresses": [{"email_address": "ADA@example.com"}],
                    },
                    {"target_object": "deals", "target_record_id": deal},
                ],
                assignees=[{"workspace_member_email_address": MEMBERS[1].email}],
            ),
        )
    )
    task_id = task["id"]["task_id"]
    assert task["content_plaintext"] == "Call Ada"
    assert task["deadline_at"] == "2025-01-10T00:00:00.000000000Z"
    assert task["linked_records"] == [
        {"target_object_id": OBJECTS["people"].id, "target_record_id": ada},
        {"target_object_id": OBJECTS["deals"].id, "target_record_id": deal},
    ]
    assert task["assignees"] == [
        {"referenced_actor_type": "workspace-member", "referenced_actor_id": MEMBERS[1].id}
    ]
    refused(attio.post("/v2/tasks", json=task_body(content="x" * 2001)), 400, "validation_type")
    missing = {k: v for k, v in task_body()["data"].items() if k != "is_completed"}
    assert "is_completed" in refused(
        attio.post("/v2/tasks", json={"data": missing}), 400, "validation_type"
    )
    nowhere = [
        {"target_object": "people", "target_record_id": "00000000-0000-4000-8000-000000000000"}
    ]
    refused(attio.post("/v2/tasks", json=task_body(linked_records=nowhere)), 404, "not_found")
    refused(
        attio.post("/v2/tasks", json=task_body(linked_records=[{"target_object": "planets"}])),
        404,
        "not_found",
    )

    done = ok(
        attio.patch(
            f"/v2/tasks/{task_id}",
            json={
                "data": {
                    "is_completed": True,
                    "linked_records": [{"target_object": "deals", "target_record_id": deal}],
                }
            },
        )
    )
    assert done["is_completed"] is True and done["content_plaintext"] == "Call Ada"
    assert [link["target_record_id"] for link in done["linked_records"]] == [deal], "replaced"
    refused(
        attio.patch(f"/v2/tasks/{task_id}", json={"data": {"content": "Other"}}),
        400,
        "validation_type",
    )
    other = ok(attio.post("/v2/tasks", json=task_body(content="Email Ada")))
    listed = ok(attio.get("/v2/tasks", params={"linked_object": "deals", "linked_record_id": deal}))
    assert [t["id"]["task_id"] for t in listed] == [task_id]
    newest = ok(attio.get("/v2/tasks", params={"sort": "created_at:desc", "limit": "1"}))
    assert [t["id"]["task_id"] for t in newest] == [other["id"]["task_id"]]
    assert len(ok(attio.get("/v2/tasks", params={"is_completed": "false"}))) == 1
    assert ok(attio.get(f"/v2/tasks/{task_id}"))["is_completed"] is True
    assert sandbox.admin.counts("attio")["tasks"] == 2
    assert attio.delete(f"/v2/tasks/{task_id}").status_code == 200
    refused(attio.get(f"/v2/tasks/{task_id}"), 404, "not_found")
    refused(attio.delete(f"/v2/tasks/{task_id}"), 404, "not_found")


@pytest.mark.parametrize("kind", ["select", "text"])
def test_custom_attributes(attio: httpx.Client, kind: str) -> None:
    definition = {
        "title": "Tier",
        "description": None,
        "api_slug": "tier",
        "type": kind,
        "is_required": False,
        "is_unique": kind == "text",
        "is_multiselect": False,
        "config": {},
    }
    ok(attio.post("/v2/objects/people/attributes", json={"data": definition}))
    if kind == "select":
        ok(
            attio.post(
                "/v2/objects/people/attributes/tier/options", json={"data": {"title": "Gold"}}
            )
        )
        person = create(attio, PEOPLE, email_addresses=["ada@example.com"], tier=["Gold"])
        assert [v["option"]["title"] for v in person["values"]["tier"]] == ["Gold"]
        refused(
            attio.post(PEOPLE, json={"data": {"values": {"tier": ["Silver"]}}}),
            400,
            "value_not_found",
        )
    else:
        first = ok(
            attio.put(
                PEOPLE,
                params={"matching_attribute": "tier"},
                json={"data": {"values": {"tier": ["T-1"], "job_title": ["A"]}}},
            )
        )
        second = ok(
            attio.put(
                PEOPLE,
                params={"matching_attribute": "tier"},
                json={"data": {"values": {"tier": ["T-1"], "job_title": ["B"]}}},
            )
        )
        assert first["id"] == second["id"]
