"""The Pipedrive dialect's records: credentials, envelopes, duplicates, writes, pagination,
deletes, notes and their parents, custom fields, users."""

from __future__ import annotations

import time

import httpx
import pytest

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.pipedrive.conftest import (
    ACTIVITIES,
    DEALS,
    NOTES,
    ORGANIZATIONS,
    PERSONS,
    data,
    error,
    person,
)


def test_credentials_header_query_or_bearer_and_pipedrives_401(sandbox: RunningSandbox) -> None:
    with httpx.Client(base_url=sandbox.url, trust_env=False) as anonymous:
        for headers, params in (
            ({"x-api-token": sandbox.token}, {}),
            ({"X-API-TOKEN": sandbox.token}, {}),
            ({}, {"api_token": sandbox.token}),
            ({"Authorization": f"Bearer {sandbox.token}"}, {}),
        ):
            answer = anonymous.get(PERSONS, headers=headers, params=params)
            assert answer.status_code == 200, (headers, params)
        for headers, params in (
            ({}, {}),
            ({"x-api-token": "not-the-token"}, {}),
            ({}, {"api_token": "not-the-token"}),
            ({"Authorization": "Bearer not-the-token"}, {}),
            ({"Authorization": f"Token {sandbox.token}"}, {}),
        ):
            refused = anonymous.get(PERSONS, headers=headers, params=params)
            assert refused.status_code == 401, (headers, params)
            assert refused.json() == {
                "success": False,
                "error": "unauthorized access",
                "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com",
            }
    assert sandbox.admin.counts("pipedrive").get("persons") is None


def test_the_same_email_makes_two_persons(pipedrive: httpx.Client, sandbox: RunningSandbox) -> None:
    """Pipedrive has no unique key: a client must find existing persons itself."""
    first = person(pipedrive, "Ada Lovelace", "ada@example.com")
    second = person(pipedrive, "Ada Lovelace", "ADA@example.com")
    assert first["id"] != second["id"]
    assert sandbox.admin.counts("pipedrive")["persons"] == 2
    found = data(
        pipedrive.get(
            f"{PERSONS}/search",
            params={"term": "ada@example.com", "fields": "email", "exact_match": "true"},
        )
    )
    assert sorted(entry["item"]["id"] for entry in found["items"]) == [first["id"], second["id"]]


def test_person_shape_names_and_contacts(pipedrive: httpx.Client) -> None:
    created = person(
        pipedrive,
        "Grace Brewster Hopper",
        "grace@example.com",
        phones=[{"value": "+1 555 0100", "label": "mobile"}, {"value": "+1 555 0101"}],
    )
    assert created["first_name"] == "Grace"
    assert created["last_name"] == "Brewster Hopper"
    assert created["emails"] == [{"value": "grace@example.com", "primary": True, "label": "work"}]
    assert created["phones"] == [
        {"value": "+1 555 0100", "primary": True, "label": "mobile"},
        {"value": "+1 555 0101", "primary": False, "label": "work"},
    ]
    assert created["owner_id"] == 1 and created["is_deleted"] is False
    assert created["add_time"].endswith("Z") and "T" in created["add_time"]
    assert "org_id" not in created, "fields without a value are left out unless nullable"

    by_parts = data(pipedrive.post(PERSONS, json={"first_name": "Linus", "last_name": "Torvalds"}))
    assert by_parts["name"] == "Linus Torvalds"
    assert "name" in error(pipedrive.post(PERSONS, json={"emails": []}), 400)


def test_v2_is_strict_about_types_and_fields(pipedrive: httpx.Client) -> None:
    org = data(pipedrive.post(ORGANIZATIONS, json={"name": "Acme"}))
    assert "org_id" in error(
        pipedrive.post(PERSONS, json={"name": "A", "org_id": str(org["id"])}), 400
    )
    assert "emails" in error(pipedrive.post(PERSONS, json={"name": "A", "emails": "a@x.io"}), 400)
    custom_key = "a" * 40
    message = error(pipedrive.post(PERSONS, json={"name": "A", custom_key: "x"}), 400)
    assert "custom_fields" in message, "a hash key at the top level is v1's habit"
    assert "org_id" in error(pipedrive.post(PERSONS, json={"name": "A", "org_id": 999}), 400)
    assert "owner_id" in error(pipedrive.post(PERSONS, json={"name": "A", "owner_id": 99}), 400)
    assert "name" in error(pipedrive.post(ORGANIZATIONS, json={"address": {"value": "x"}}), 400)
    assert error(pipedrive.post(PERSONS, content=b"{not json"), 400)


def test_get_patch_delete_and_the_trash(pipedrive: httpx.Client, sandbox: RunningSandbox) -> None:
    org = data(pipedrive.post(ORGANIZATIONS, json={"name": "Acme", "address": {"value": "Oslo"}}))
    ada = person(pipedrive, "Ada", "ada@example.com", org_id=org["id"])
    assert data(pipedrive.get(f"{PERSONS}/{ada['id']}"))["org_id"] == org["id"]

    patched = data(
        pipedrive.patch(f"{PERSONS}/{ada['id']}", json={"name": "Ada King", "org_id": None})
    )
    assert (patched["name"], patched["first_name"], patched["last_name"]) == (
        "Ada King",
        "Ada",
        "King",
    )
    assert "org_id" not in patched
    assert patched["emails"][0]["value"] == "ada@example.com", "PATCH keeps what it does not name"
    assert patched["update_time"] >= patched["add_time"]

    assert data(pipedrive.delete(f"{PERSONS}/{ada['id']}")) == {"id": ada["id"]}
    assert error(pipedrive.get(f"{PERSONS}/{ada['id']}"), 404) == "Person not found"
    assert error(pipedrive.patch(f"{PERSONS}/{ada['id']}", json={"name": "x"}), 404)
    assert error(pipedrive.delete(f"{PERSONS}/{ada['id']}"), 404)
    assert data(pipedrive.get(PERSONS)) == []
    assert error(pipedrive.get(f"{PERSONS}/not-a-number"), 404)
    assert sandbox.admin.counts("pipedrive") == {"organizations": 1, "pipelines": 1, "stages": 5}

    deal = data(pipedrive.post(DEALS, json={"title": "Big", "value": 100}))
    data(pipedrive.delete(f"{DEALS}/{deal['id']}"))
    assert data(pipedrive.get(DEALS)) == []
    trash = data(pipedrive.get(DEALS, params={"status": "deleted"}))
    assert [(d["id"], d["is_deleted"]) for d in trash] == [(deal["id"], True)]
    again = data(pipedrive.post(DEALS, json={"title": "Big", "value": 100}))
    assert again["id"] > deal["id"], "ids are never reused"


def test_cursor_pagination_and_order(pipedrive: httpx.Client) -> None:
    ids = [person(pipedrive, f"P{n}")["id"] for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = pipedrive.get(PERSONS, params=params).json()
        seen += [p["id"] for p in body["data"]]
        pages += 1
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids, 3)
    newest_first = data(pipedrive.get(PERSONS, params={"sort_direction": "desc", "limit": "3"}))
    assert [p["id"] for p in newest_first] == ids[::-1][:3]
    by_ids = data(pipedrive.get(PERSONS, params={"ids": f"{ids[3]},{ids[1]}"}))
    assert [p["id"] for p in by_ids] == [ids[1], ids[3]]
    assert error(pipedrive.get(PERSONS, params={"limit": "501"}), 400)
    assert error(pipedrive.get(PERSONS, params={"cursor": "garbage!"}), 400)
    assert error(pipedrive.get(PERSONS, params={"sort_by": "name"}), 400)


def test_list_filters(pipedrive: httpx.Client) -> None:
    acme = data(pipedrive.post(ORGANIZATIONS, json={"name": "Acme"}))
    ada = person(pipedrive, "Ada", org_id=acme["id"])
    person(pipedrive, "Bob", owner_id=2)
    assert [p["id"] for p in data(pipedrive.get(PERSONS, params={"org_id": acme["id"]}))] == [
        ada["id"]
    ]
    assert [p["name"] for p in data(pipedrive.get(PERSONS, params={"owner_id": 2}))] == ["Bob"]
    deal = data(pipedrive.post(DEALS, json={"title": "D", "person_id": ada["id"]}))
    assert [p["id"] for p in data(pipedrive.get(PERSONS, params={"deal_id": deal["id"]}))] == [
        ada["id"]
    ]
    later = data(pipedrive.get(PERSONS, params={"updated_since": "2999-01-01T00:00:00Z"}))
    assert later == []
    assert error(pipedrive.get(PERSONS, params={"updated_since": "yesterday"}), 400)


def test_deals_follow_pipelines_stages_and_status(pipedrive: httpx.Client) -> None:
    stages = data(pipedrive.get("/api/v2/stages", params={"pipeline_id": 1, "sort_by": "order_nr"}))
    assert [s["order_nr"] for s in stages] == [1, 2, 3, 4, 5]
    deal = data(pipedrive.post(DEALS, json={"title": "Big", "value": 1200.5, "currency": "EUR"}))
    assert (deal["pipeline_id"], deal["stage_id"], deal["status"]) == (1, stages[0]["id"], "open")

    pipeline = data(pipedrive.post("/api/v2/pipelines", json={"name": "Partners"}))
    assert pipeline["order_nr"] == 2
    first = data(
        pipedrive.post("/api/v2/stages", json={"name": "New", "pipeline_id": pipeline["id"]})
    )
    moved = data(pipedrive.patch(f"{DEALS}/{deal['id']}", json={"pipeline_id": pipeline["id"]}))
    assert (moved["pipeline_id"], moved["stage_id"]) == (pipeline["id"], first["id"])
    assert moved["stage_change_time"]
    clash = {"stage_id": stages[1]["id"], "pipeline_id": pipeline["id"]}
    assert "stage_id" in error(pipedrive.patch(f"{DEALS}/{deal['id']}", json=clash), 400)

    lost = data(
        pipedrive.patch(f"{DEALS}/{deal['id']}", json={"status": "lost", "lost_reason": "Price"})
    )
    assert lost["lost_time"] and lost["close_time"] and lost["lost_reason"] == "Price"
    won = data(pipedrive.patch(f"{DEALS}/{deal['id']}", json={"status": "won"}))
    assert won["won_time"] and "lost_time" not in won and won["lost_reason"] is None
    assert "lost_reason" in error(
        pipedrive.patch(f"{DEALS}/{deal['id']}", json={"lost_reason": "x"}), 400
    )
    assert error(pipedrive.patch(f"{DEALS}/{deal['id']}", json={"status": "maybe"}), 400)
    assert [d["id"] for d in data(pipedrive.get(DEALS, params={"status": "won"}))] == [deal["id"]]
    assert data(pipedrive.get(DEALS, params={"status": "open"})) == []


def test_activities_link_people_and_mark_done(pipedrive: httpx.Client) -> None:
    ada = person(pipedrive, "Ada")
    call = data(
        pipedrive.post(
            ACTIVITIES,
            json={
                "type": "call",
                "person_id": ada["id"],
                "due_date": "2025-03-01",
                "due_time": "09:30",
            },
        )
    )
    assert call["subject"] == "Call" and call["done"] is False
    assert call["participants"] == [{"person_id": ada["id"], "primary": True}]
    done = data(pipedrive.patch(f"{ACTIVITIES}/{call['id']}", json={"done": True}))
    assert done["marked_as_done_time"]
    assert [a["id"] for a in data(pipedrive.get(ACTIVITIES, params={"done": "true"}))] == [
        call["id"]
    ]
    assert "type" in error(pipedrive.post(ACTIVITIES, json={"type": "karaoke"}), 400)
    assert "due_date" in error(pipedrive.post(ACTIVITIES, json={"due_date": "01/03/2025"}), 400)
    types = data(pipedrive.get("/api/v1/activityTypes"))
    assert {"call", "meeting", "task", "deadline", "email", "lunch"} <= {
        t["key_string"] for t in types
    }


def test_a_note_needs_a_parent_that_exists(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    assert "needs one of deal_id" in error(pipedrive.post(NOTES, json={"content": "orphan"}), 400)
    assert "deal" in error(pipedrive.post(NOTES, json={"content": "x", "deal_id": 999}), 400)
    assert "lead_id" in error(
        pipedrive.post(
            NOTES, json={"content": "x", "lead_id": "adf21080-0e10-11eb-879b-05d71fb426ec"}
        ),
        400,
    )
    assert "content" in error(pipedrive.post(NOTES, json={"person_id": 1}), 400)
    assert sandbox.admin.counts("pipedrive").get("notes") is None

    ada = person(pipedrive, "Ada")
    note = data(pipedrive.post(NOTES, json={"content": "<p>Met</p>", "person_id": str(ada["id"])}))
    assert (note["person_id"], note["person"], note["active_flag"]) == (
        ada["id"],
        {"name": "Ada"},
        True,
    )
    assert len(note["add_time"]) == 19 and " " in note["add_time"], "v1 timestamps"
    updated = data(pipedrive.put(f"{NOTES}/{note['id']}", json={"content": "<p>Met twice</p>"}))
    assert updated["content"] == "<p>Met twice</p>" and updated["person_id"] == ada["id"]
    orphaned = {"person_id": None}
    assert "needs one of" in error(pipedrive.put(f"{NOTES}/{note['id']}", json=orphaned), 400)
    assert pipedrive.delete(f"{NOTES}/{note['id']}").json() == {"success": True, "data": True}
    assert error(pipedrive.get(f"{NOTES}/{note['id']}"), 404) == "Note not found"


def test_notes_page_by_offset(pipedrive: httpx.Client) -> None:
    ada = person(pipedrive, "Ada")
    for n in range(5):
        data(pipedrive.post(NOTES, json={"content": f"n{n}", "person_id": ada["id"]}))
    first = pipedrive.get(NOTES, params={"limit": "2", "person_id": ada["id"]}).json()
    assert [n["content"] for n in first["data"]] == ["n0", "n1"]
    assert first["additional_data"]["pagination"] == {
        "start": 0,
        "limit": 2,
        "more_items_in_collection": True,
        "next_start": 2,
    }
    last = pipedrive.get(NOTES, params={"start": "4", "limit": "2"}).json()
    assert [n["content"] for n in last["data"]] == ["n4"]
    assert last["additional_data"]["pagination"]["more_items_in_collection"] is False
    newest = data(pipedrive.get(NOTES, params={"sort": "id DESC", "limit": "1"}))
    assert newest[0]["content"] == "n4"


def test_notes_changed_since_a_time_are_listed_alone(pipedrive: httpx.Client) -> None:
    ada = person(pipedrive, "Ada")
    data(pipedrive.post(NOTES, json={"content": "old", "person_id": ada["id"]}))
    time.sleep(1.1)
    new = data(pipedrive.post(NOTES, json={"content": "new", "person_id": ada["id"]}))
    since = new["update_time"].replace(" ", "T") + "Z"

    changed = data(pipedrive.get(NOTES, params={"updated_since": since}))

    assert [n["content"] for n in changed] == ["new"]
    assert "updated_since" in error(pipedrive.get(NOTES, params={"updated_since": "soon"}), 400)


def test_custom_fields_by_hash_key(pipedrive: httpx.Client, sandbox: RunningSandbox) -> None:
    tier = data(
        pipedrive.post(
            "/api/v2/personFields",
            json={
                "field_name": "Tier",
                "field_type": "enum",
                "options": [{"label": "Gold"}, {"label": "Silver"}],
            },
        )
    )
    code = tier["field_code"]
    assert len(code) == 40 and all(c in "0123456789abcdef" for c in code)
    gold = tier["options"][0]["id"]
    listed = data(pipedrive.get("/api/v2/personFields", params={"limit": "500"}))
    assert {"name", "emails", code} <= {f["field_code"] for f in listed}
    assert data(pipedrive.get(f"/api/v2/personFields/{code}"))["field_name"] == "Tier"
    via_admin = sandbox.admin.post(
        "/pipedrive/fields/persons", {"field_name": "Nickname", "field_type": "varchar"}
    )
    nickname = via_admin["field_code"]

    ada = person(pipedrive, "Ada", custom_fields={code: gold, nickname: "Countess"})
    assert ada["custom_fields"] == {code: gold, nickname: "Countess"}
    bob = person(pipedrive, "Bob")
    assert bob["custom_fields"] == {code: None, nickname: None}, "every custom field is shown"
    patched = data(
        pipedrive.patch(f"{PERSONS}/{ada['id']}", json={"custom_fields": {nickname: None}})
    )
    assert patched["custom_fields"] == {code: gold, nickname: None}
    only = data(pipedrive.get(f"{PERSONS}/{ada['id']}", params={"custom_fields": code}))
    assert only["custom_fields"] == {code: gold}

    assert error(pipedrive.post(PERSONS, json={"name": "C", "custom_fields": {code: 12345}}), 400)
    assert error(pipedrive.post(PERSONS, json={"name": "C", "custom_fields": {"b" * 40: 1}}), 400)
    assert error(
        pipedrive.post("/api/v2/personFields", json={"field_name": "X", "field_type": "enum"}), 400
    )
    assert pipedrive.post("/api/v2/activityFields", json={"field_name": "X"}).status_code == 404


def test_users(pipedrive: httpx.Client) -> None:
    me = data(pipedrive.get("/api/v1/users/me"))
    assert me["id"] == 1 and me["is_you"] is True and me["company_domain"]
    users = data(pipedrive.get("/api/v1/users"))
    assert len(users) >= 2 and users[0]["id"] == 1
    found = data(pipedrive.get("/api/v1/users/find", params={"term": "lovelace"}))
    assert [u["name"] for u in found] == ["Ada Lovelace"]
    by_email = data(
        pipedrive.get("/api/v1/users/find", params={"term": "grace@", "search_by_email": "1"})
    )
    assert [u["name"] for u in by_email] == ["Grace Hopper"]
    assert data(pipedrive.get("/api/v1/users/2"))["name"] == "Ada Lovelace"
    assert error(pipedrive.get("/api/v1/users/99"), 404)


def test_unknown_paths_answer_in_pipedrives_shape(pipedrive: httpx.Client) -> None:
    assert error(pipedrive.get("/api/v2/products"), 404)
    assert error(pipedrive.put(f"{PERSONS}/1", json={}), 404), "v2 updates with PATCH, not PUT"
    assert pipedrive.get("/v3/objects").status_code == 404, "no dialect serves /v3"
    assert pipedrive.get("/v2/objects").json()["code"] == "unauthorized", "Attio's, by Bearer"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_injected_server_errors_have_pipedrives_shape(
    pipedrive: httpx.Client, sandbox: RunningSandbox, status: int
) -> None:
    sandbox.admin.configure(error_rate=1.0, seed=status)
    answers = [pipedrive.post(PERSONS, json={"name": "Ghost"}) for _ in range(8)]
    assert all(a.status_code in (500, 502, 503, 504) for a in answers)
    assert all(a.json()["success"] is False for a in answers)
    assert sandbox.admin.counts("pipedrive").get("persons") is None, "a 5xx does no work"


def test_a_dropped_connection_after_the_write(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        pipedrive.post(PERSONS, json={"name": "Ghost"})
    sandbox.admin.configure(drop_rate=0.0)
    assert [p["name"] for p in sandbox.admin.records("persons", dialect="pipedrive")] == ["Ghost"]
    requests = sandbox.admin.requests("pipedrive")
    assert requests["dropped"] == 1 and requests["by_route"] == {"POST /api/v2/persons": 1}


def test_stats_and_reset_per_dialect(
    pipedrive: httpx.Client, sandbox: RunningSandbox, crm: httpx.Client
) -> None:
    person(pipedrive, "Ada")
    pipedrive.get(PERSONS)
    crm.post("/crm/v3/objects/contacts", json={"properties": {"email": "a@example.com"}})
    stats = sandbox.admin.stats()
    assert stats["counts"] == {"contacts": 1}, "the top level keeps HubSpot's counts"
    assert stats["requests"]["total"] == 3
    own = stats["dialects"]["pipedrive"]
    assert own["requests"]["by_route"] == {"POST /api/v2/persons": 1, "GET /api/v2/persons": 1}
    assert own["requests"]["writes"] == 1 and own["requests"]["reads"] == 1
    assert stats["dialects"]["hubspot"]["requests"]["by_route"] == {"create": 1}
    assert own["limits"]["tokens_used"] == 5 + 10
    page = httpx.get(f"{sandbox.url}/_sandbox/", trust_env=False).text
    assert "<th>persons</th><td>1</td>" in page and "<th>contacts</th><td>1</td>" in page

    sandbox.admin.reset()
    assert sandbox.admin.counts("pipedrive") == {"pipelines": 1, "stages": 5}, "a fresh account"
    assert sandbox.admin.limits("pipedrive")["tokens_used"] == 0
    assert person(pipedrive, "Ada")["id"] == 1


def test_an_internal_failure_answers_500_and_logs_no_token(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, route: object, request: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr("bulk_pipeline.sandbox.pipedrive.api.PipedriveApi.handle", broken)
    with httpx.Client(base_url=sandbox.url, trust_env=False) as client:
        answer = client.get(PERSONS, params={"api_token": sandbox.token})
    assert error(answer, 500) == "An internal server error occurred"
    assert "boom" in caplog.text and "/api/v2/persons" in caplog.text
    assert sandbox.token not in caplog.text
