"""The Pipedrive dialect's search: terms, fields, exact matches, filters, paging, and the lag
before new or changed records show up in search (but not in lists or reads by id)."""

from __future__ import annotations

import time

import httpx

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.pipedrive.conftest import (
    DEALS,
    ORGANIZATIONS,
    PERSONS,
    data,
    error,
    person,
)


def found(client: httpx.Client, path: str, **params: str) -> list[tuple[str, int]]:
    items = data(client.get(path, params=params))["items"]
    scores = [entry["result_score"] for entry in items]
    assert scores == sorted(scores, reverse=True), "best matches first"
    return [(entry["item"]["type"], entry["item"]["id"]) for entry in items]


def test_person_search_by_field_exact_or_partial(pipedrive: httpx.Client) -> None:
    ada = person(pipedrive, "Ada Lovelace", "ada@example.com", phones=[{"value": "+44 20 7946"}])
    adam = person(pipedrive, "Adam Smith", "adam@example.org")
    search = f"{PERSONS}/search"
    assert set(found(pipedrive, search, term="ada")) == {
        ("person", ada["id"]),
        ("person", adam["id"]),
    }
    assert found(pipedrive, search, term="ADA@example.com", exact_match="true") == [
        ("person", ada["id"])
    ]
    assert found(pipedrive, search, term="Ada", exact_match="true") == []
    assert found(pipedrive, search, term="example.org", fields="email") == [("person", adam["id"])]
    assert found(pipedrive, search, term="smith", fields="email") == []
    assert found(pipedrive, search, term="7946", fields="phone") == [("person", ada["id"])]
    assert error(pipedrive.get(search, params={"term": "a"}), 400)
    assert found(pipedrive, search, term="a", exact_match="true") == []
    assert error(pipedrive.get(search, params={"term": "ada", "fields": "title"}), 400)
    item = data(pipedrive.get(search, params={"term": "lovelace"}))["items"][0]["item"]
    assert item["emails"] == ["ada@example.com"] and item["name"] == "Ada Lovelace"
    quoted = person(pipedrive, 'Ann "Nan" Müller')
    assert found(pipedrive, search, term='"nan" mü') == [("person", quoted["id"])]


def test_search_filters_custom_fields_and_item_search(pipedrive: httpx.Client) -> None:
    acme = data(
        pipedrive.post(
            ORGANIZATIONS, json={"name": "Acme", "address": {"value": "1 Main St, Oslo"}}
        )
    )
    ada = person(pipedrive, "Ada", "ada@acme.example", org_id=acme["id"])
    person(pipedrive, "Ada Two", "ada@other.example")
    in_acme = found(pipedrive, f"{PERSONS}/search", term="ada", organization_id=str(acme["id"]))
    assert in_acme == [("person", ada["id"])]
    assert found(pipedrive, f"{ORGANIZATIONS}/search", term="oslo", fields="address") == [
        ("organization", acme["id"])
    ]

    code = data(
        pipedrive.post("/api/v2/dealFields", json={"field_name": "Ref", "field_type": "varchar"})
    )["field_code"]
    deal = data(
        pipedrive.post(
            DEALS,
            json={
                "title": "Acme renewal",
                "person_id": ada["id"],
                "custom_fields": {code: "PO-7731"},
            },
        )
    )
    assert found(pipedrive, f"{DEALS}/search", term="po-7731", fields="custom_fields") == [
        ("deal", deal["id"])
    ]
    assert found(pipedrive, f"{DEALS}/search", term="renewal", person_id=str(ada["id"] + 1)) == []
    assert found(pipedrive, f"{DEALS}/search", term="renewal", status="won") == []
    item = data(pipedrive.get(f"{DEALS}/search", params={"term": "renewal"}))["items"][0]["item"]
    assert item["person"] == {"id": ada["id"], "name": "Ada"} and item["stage"]["name"]

    everything = found(pipedrive, "/api/v2/itemSearch", term="acme")
    assert set(everything) == {
        ("organization", acme["id"]),
        ("person", ada["id"]),
        ("deal", deal["id"]),
    }
    only_deals = found(pipedrive, "/api/v2/itemSearch", term="acme", item_types="deal")
    assert only_deals == [("deal", deal["id"])]
    answer = pipedrive.get("/api/v2/itemSearch", params={"term": "acme"}).json()
    assert answer["data"]["related_items"] == []
    assert error(
        pipedrive.get("/api/v2/itemSearch", params={"term": "acme", "item_types": "file"}), 400
    )


def test_search_pages_with_a_cursor(pipedrive: httpx.Client) -> None:
    ids = [person(pipedrive, f"Pat {n}")["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        params = {"term": "pat", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = pipedrive.get(f"{PERSONS}/search", params=params).json()
        seen += [entry["item"]["id"] for entry in body["data"]["items"]]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == ids and len(seen) == 5


def test_deleted_items_leave_search_at_once(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(pipedrive={"search_lag_s": 30})
    ada = person(pipedrive, "Ada")
    data(pipedrive.delete(f"{PERSONS}/{ada['id']}"))
    sandbox.admin.configure(pipedrive={"search_lag_s": 0})
    assert found(pipedrive, f"{PERSONS}/search", term="ada") == []


def test_search_lags_behind_writes(pipedrive: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(pipedrive={"search_lag_s": 0.6})
    search = f"{PERSONS}/search"
    ada = person(pipedrive, "Ada Lovelace", "ada@example.com")
    assert data(pipedrive.get(f"{PERSONS}/{ada['id']}"))["name"] == "Ada Lovelace"
    assert [p["id"] for p in data(pipedrive.get(PERSONS))] == [ada["id"]], "lists see it at once"
    assert found(pipedrive, search, term="lovelace") == [], "search does not, yet"
    time.sleep(0.7)
    assert found(pipedrive, search, term="lovelace") == [("person", ada["id"])]

    data(pipedrive.patch(f"{PERSONS}/{ada['id']}", json={"name": "Ada King"}))
    assert found(pipedrive, search, term="lovelace") == [("person", ada["id"])], "the old name"
    assert found(pipedrive, search, term="king") == []
    time.sleep(0.7)
    assert found(pipedrive, search, term="lovelace") == []
    assert found(pipedrive, search, term="king") == [("person", ada["id"])]
