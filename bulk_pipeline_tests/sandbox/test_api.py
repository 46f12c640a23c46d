"""The HubSpot dialect: shapes, unique keys, validation and partial failures."""

from __future__ import annotations

import httpx

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.answers import invalid_values

CONTACTS = "/crm/v3/objects/contacts"
COMPANIES = "/crm/v3/objects/companies"


def upsert(crm: httpx.Client, *emails: str, **properties: str) -> httpx.Response:
    inputs = [
        {"id": email, "idProperty": "email", "properties": dict(properties)} for email in emails
    ]
    return crm.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs})


def test_missing_or_wrong_token_is_refused(sandbox: RunningSandbox) -> None:
    with httpx.Client(base_url=sandbox.url, trust_env=False) as anonymous:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            answer = anonymous.post(f"{CONTACTS}/batch/read", json={"inputs": []}, headers=headers)
            assert answer.status_code == 401
            body = answer.json()
            assert body["category"] == "INVALID_AUTHENTICATION"
            assert body["status"] == "error"
            assert body["message"].startswith("Authentication credentials not found.")
            assert body["correlationId"]


def test_upsert_then_read_by_email(crm: httpx.Client) -> None:
    first = upsert(crm, "Ada@Example.com", "grace@example.com", "linus@example.com", city="Paris")
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "COMPLETE"
    assert [result["new"] for result in body["results"]] == [True, True, True]
    ids = [result["id"] for result in body["results"]]
    assert all(record_id.isdigit() for record_id in ids) and len(set(ids)) == 3

    again = upsert(crm, "ada@example.com", lastname="Lovelace")
    assert again.json()["results"][0] == {
        **again.json()["results"][0],
        "id": ids[0],
        "new": False,
    }

    read = crm.post(
        f"{CONTACTS}/batch/read",
        json={
            "idProperty": "email",
            "properties": ["email", "city", "lastname"],
            "inputs": [{"id": "ADA@example.com"}, {"id": "grace@example.com"}],
        },
    )
    assert read.status_code == 200
    results = {result["id"]: result for result in read.json()["results"]}
    assert set(results) == {ids[0], ids[1]}
    ada = results[ids[0]]["properties"]
    assert ada["email"] == "ada@example.com"
    assert ada["city"] == "Paris"
    assert ada["lastname"] == "Lovelace"
    assert ada["hs_object_id"] == ids[0]
    assert {"createdate", "lastmodifieddate"} <= set(ada)
    assert "firstname" not in ada


def test_reads_return_requested_properties_only(crm: httpx.Client) -> None:
    record_id = upsert(crm, "a@example.com", firstname="A", city="Oslo").json()["results"][0]["id"]
    only_city = crm.get(f"{CONTACTS}/{record_id}", params={"properties": "city"}).json()
    assert set(only_city["properties"]) == {
        "city",
        "createdate",
        "hs_object_id",
        "lastmodifieddate",
    }
    defaults = crm.get(f"{CONTACTS}/{record_id}").json()["properties"]
    assert defaults["email"] == "a@example.com" and defaults["firstname"] == "A"
    assert "city" not in defaults


def test_batch_create_conflicting_with_existing_email_fails_whole(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    existing = upsert(crm, "taken@example.com").json()["results"][0]["id"]
    answer = crm.post(
        f"{CONTACTS}/batch/create",
        json={
            "inputs": [
                {"properties": {"email": "new@example.com"}, "associations": []},
                {"properties": {"email": "TAKEN@example.com"}, "associations": []},
            ]
        },
    )
    assert answer.status_code == 409
    body = answer.json()
    assert body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {existing}"
    assert [r["properties"]["email"] for r in sandbox.admin.records("contacts")] == [
        "taken@example.com"
    ]


def test_batch_with_the_same_key_twice_is_refused(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    twice = [{"properties": {"email": "x@example.com"}}, {"properties": {"email": "X@example.com"}}]
    created = crm.post(f"{CONTACTS}/batch/create", json={"inputs": twice})
    assert created.status_code == 409
    assert created.json()["category"] == "CONFLICT"

    upserted = upsert(crm, "y@example.com", "Y@EXAMPLE.COM")
    assert upserted.status_code == 400
    assert upserted.json()["category"] == "VALIDATION_ERROR"
    assert "Duplicate IDs" in upserted.json()["message"]
    assert sandbox.admin.counts() == {}


def test_unknown_property_and_invalid_email_are_refused_like_hubspot(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    unknown = crm.post(CONTACTS, json={"properties": {"email": "a@b.com", "shoe_size": "42"}})
    assert unknown.status_code == 400
    assert unknown.json()["category"] == "VALIDATION_ERROR"
    assert invalid_values(unknown) == [
        {
            "isValid": False,
            "message": 'Property "shoe_size" does not exist',
            "error": "PROPERTY_DOESNT_EXIST",
            "name": "shoe_size",
        }
    ]

    bad_email = upsert(crm, "good@example.com", "foo")
    assert bad_email.status_code == 400
    body = bad_email.json()
    assert set(body) == {"status", "message", "correlationId", "category"}
    assert body["status"] == "error"
    assert invalid_values(bad_email) == [
        {
            "isValid": False,
            "message": "Email address foo is invalid",
            "error": "INVALID_EMAIL",
            "name": "email",
        }
    ]
    assert sandbox.admin.counts() == {}, "a batch with one bad input must write nothing"


def test_numeric_properties_must_be_numbers(crm: httpx.Client) -> None:
    answer = crm.post(
        f"{COMPANIES}/batch/create",
        json={"inputs": [{"properties": {"domain": "a.com", "numberofemployees": "many"}}]},
    )
    assert answer.status_code == 400
    assert invalid_values(answer)[0]["name"] == "numberofemployees"
    fine = crm.post(
        "/crm/v3/objects/deals", json={"properties": {"dealname": "D", "amount": "1200.50"}}
    )
    assert fine.status_code == 201
    assert fine.json()["properties"]["amount"] == "1200.50"


def test_batch_read_with_missing_ids_answers_207(crm: httpx.Client) -> None:
    record_id = upsert(crm, "a@example.com").json()["results"][0]["id"]
    answer = crm.post(
        f"{CONTACTS}/batch/read",
        json={"properties": ["email"], "inputs": [{"id": record_id}, {"id": "999999"}]},
    )
    assert answer.status_code == 207
    body = answer.json()
    assert [result["id"] for result in body["results"]] == [record_id]
    assert body["numErrors"] == 1
    error = body["errors"][0]
    assert error["category"] == "OBJECT_NOT_FOUND"
    assert error["context"] == {"ids": ["999999"]}
    assert set(error) >= {"status", "category", "message", "context", "errors", "links"}

    by_email = crm.post(
        f"{CONTACTS}/batch/read",
        json={"idProperty": "email", "inputs": [{"id": "nobody@example.com"}]},
    )
    assert by_email.status_code == 207
    assert by_email.json()["errors"][0]["context"] == {"ids": ["nobody@example.com"]}


def test_batch_update_with_unknown_ids_answers_207_and_updates_the_rest(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    record_id = upsert(crm, "a@example.com", city="Rome").json()["results"][0]["id"]
    answer = crm.post(
        f"{CONTACTS}/batch/update",
        json={
            "inputs": [
                {"id": record_id, "properties": {"city": "Milan"}},
                {"id": "424242", "properties": {"city": "Turin"}},
            ]
        },
    )
    assert answer.status_code == 207
    body = answer.json()
    assert [result["id"] for result in body["results"]] == [record_id]
    assert body["results"][0]["properties"]["city"] == "Milan"
    assert body["errors"][0]["context"] == {"ids": ["424242"]}
    assert sandbox.admin.records("contacts")[0]["properties"]["city"] == "Milan"


def test_update_onto_an_existing_email_conflicts(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    first, second = (
        r["id"] for r in upsert(crm, "a@example.com", "b@example.com").json()["results"]
    )
    answer = crm.patch(f"{CONTACTS}/{second}", json={"properties": {"email": "A@example.com"}})
    assert answer.status_code == 409
    assert answer.json()["message"] == f"Contact already exists. Existing ID: {first}"
    batch = crm.post(
        f"{CONTACTS}/batch/update",
        json={"inputs": [{"id": second, "properties": {"email": "a@example.com"}}]},
    )
    assert batch.status_code == 409
    emails = sorted(r["properties"]["email"] for r in sandbox.admin.records("contacts"))
    assert emails == ["a@example.com", "b@example.com"]

    moved = crm.patch(f"{CONTACTS}/{second}", json={"properties": {"email": "c@example.com"}})
    assert moved.status_code == 200
    found = crm.get(f"{CONTACTS}/c@example.com", params={"idProperty": "email"})
    assert found.json()["id"] == second


def test_more_than_100_inputs_is_a_validation_error(crm: httpx.Client) -> None:
    inputs = [{"properties": {"email": f"u{i}@example.com"}} for i in range(101)]
    for operation in ("create", "upsert", "read", "update", "archive"):
        answer = crm.post(f"{CONTACTS}/batch/{operation}", json={"inputs": inputs})
        assert answer.status_code == 400, operation
        assert answer.json()["category"] == "VALIDATION_ERROR"


def test_single_record_lifecycle_and_archived_records_disappear(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    created = crm.post(COMPANIES, json={"properties": {"name": "Acme", "domain": "Acme.com"}})
    assert created.status_code == 201
    company_id = created.json()["id"]
    assert created.json()["archived"] is False

    patched = crm.patch(f"{COMPANIES}/{company_id}", json={"properties": {"industry": "Tools"}})
    assert patched.status_code == 200
    fetched = crm.get(f"{COMPANIES}/{company_id}", params={"properties": "industry,name"})
    assert fetched.json()["properties"]["industry"] == "Tools"
    assert fetched.json()["properties"]["name"] == "Acme"

    assert crm.delete(f"{COMPANIES}/{company_id}").status_code == 204
    assert crm.get(f"{COMPANIES}/{company_id}").status_code == 404
    search = crm.post(f"{COMPANIES}/search", json={"filterGroups": []})
    assert search.json()["total"] == 0
    assert sandbox.admin.counts() == {}
    recreated = upsert(crm, "a@example.com")
    contact_id = recreated.json()["results"][0]["id"]
    assert crm.delete(f"{CONTACTS}/{contact_id}").status_code == 204
    again = crm.post(CONTACTS, json={"properties": {"email": "A@example.com"}})
    assert again.status_code == 201, "an archived record's key is free again"


def test_batch_archive(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    ids = [r["id"] for r in upsert(crm, "a@example.com", "b@example.com").json()["results"]]
    answer = crm.post(f"{CONTACTS}/batch/archive", json={"inputs": [{"id": ids[0]}]})
    assert answer.status_code == 204
    assert answer.content == b""
    assert [r["id"] for r in sandbox.admin.records("contacts")] == [ids[1]]


def test_deals_answer_under_their_object_type_id(crm: httpx.Client) -> None:
    created = crm.post("/crm/v3/objects/0-3", json={"properties": {"dealname": "Big"}})
    assert created.status_code == 201
    deal_id = created.json()["id"]
    assert crm.get(f"/crm/v3/objects/deals/{deal_id}").json()["properties"]["dealname"] == "Big"


def test_search_eq_in_limit_and_paging(crm: httpx.Client) -> None:
    emails = [f"user{i:02d}@example.com" for i in range(25)]
    assert upsert(crm, *emails, city="Lyon").status_code == 200
    upsert(crm, "other@example.com", city="Nice")

    eq = crm.post(
        f"{CONTACTS}/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "email", "operator": "EQ", "value": "USER07@example.com"}
                    ]
                }
            ],
            "properties": ["email"],
        },
    ).json()
    assert eq["total"] == 1
    assert eq["results"][0]["properties"]["email"] == "user07@example.com"
    assert "paging" not in eq

    wanted = ["User01@Example.com", "user02@example.com", "nobody@example.com"]
    in_ = crm.post(
        f"{CONTACTS}/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "email", "operator": "IN", "values": wanted}]}
            ]
        },
    ).json()
    assert sorted(r["properties"]["email"] for r in in_["results"]) == [
        "user01@example.com",
        "user02@example.com",
    ]

    by_city = {
        "filterGroups": [{"filters": [{"propertyName": "city", "operator": "EQ", "value": "lyon"}]}]
    }
    default_page = crm.post(f"{CONTACTS}/search", json=by_city).json()
    assert default_page["total"] == 25 and len(default_page["results"]) == 10

    seen: list[str] = []
    after = None
    while True:
        page = crm.post(f"{CONTACTS}/search", json={**by_city, "limit": 10, "after": after}).json()
        seen.extend(r["properties"]["email"] for r in page["results"])
        after = page.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
    assert seen == emails

    too_many = crm.post(f"{CONTACTS}/search", json={**by_city, "limit": 201})
    assert too_many.status_code == 400
    assert too_many.json()["category"] == "VALIDATION_ERROR"
    assert crm.post(f"{CONTACTS}/search", json={**by_city, "limit": 200}).status_code == 200
    assert crm.post(f"{CONTACTS}/search", json={**by_city, "limit": 0}).status_code == 400


def test_search_or_groups_and_unknown_properties(crm: httpx.Client) -> None:
    upsert(crm, "a@example.com", city="Lyon")
    upsert(crm, "b@example.com", city="Nice")
    upsert(crm, "c@example.com", city="Metz")
    either = crm.post(
        f"{CONTACTS}/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "city", "operator": "EQ", "value": "Lyon"}]},
                {"filters": [{"propertyName": "city", "operator": "EQ", "value": "Nice"}]},
            ]
        },
    ).json()
    assert either["total"] == 2
    unknown = crm.post(
        f"{CONTACTS}/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "shoe", "operator": "EQ", "value": "1"}]}
            ]
        },
    )
    assert unknown.status_code == 400


def test_list_pages_through_records(crm: httpx.Client) -> None:
    upsert(crm, *(f"u{i}@example.com" for i in range(5)))
    first = crm.get(CONTACTS, params={"limit": 3}).json()
    assert len(first["results"]) == 3
    rest = crm.get(CONTACTS, params={"limit": 3, "after": first["paging"]["next"]["after"]}).json()
    assert len(rest["results"]) == 2 and "paging" not in rest


def test_unknown_paths_and_bad_json(crm: httpx.Client) -> None:
    assert crm.get("/crm/v3/objects/tickets").status_code == 404
    bad = crm.post(
        f"{CONTACTS}/batch/create",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["category"] == "VALIDATION_ERROR"


def test_company_domains_are_not_unique(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    """HubSpot does not deduplicate companies created through the API by domain."""
    first = crm.post(COMPANIES, json={"properties": {"name": "Acme", "domain": "acme.com"}})
    second = crm.post(COMPANIES, json={"properties": {"name": "Acme EU", "domain": "ACME.com"}})
    batch = crm.post(
        f"{COMPANIES}/batch/create",
        json={"inputs": [{"properties": {"domain": "acme.com"}, "associations": []}] * 2},
    )
    assert (first.status_code, second.status_code, batch.status_code) == (201, 201, 201)
    assert sandbox.admin.counts() == {"companies": 4}
    found = crm.post(
        f"{COMPANIES}/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "domain", "operator": "EQ", "value": "acme.com"}]}
            ]
        },
    ).json()
    assert found["total"] == 4


def test_id_property_must_name_a_unique_property(crm: httpx.Client) -> None:
    company = crm.post(COMPANIES, json={"properties": {"domain": "acme.com"}}).json()["id"]
    expected = "Unable to perform {} by non-unique 0-2 property domain in portal ID 1000001"
    answers = {
        "read": crm.post(
            f"{COMPANIES}/batch/read",
            json={"idProperty": "domain", "properties": [], "inputs": [{"id": "acme.com"}]},
        ),
        "get": crm.get(f"{COMPANIES}/acme.com", params={"idProperty": "domain"}),
        "upsert": crm.post(
            f"{COMPANIES}/batch/upsert",
            json={"inputs": [{"id": "acme.com", "idProperty": "domain", "properties": {}}]},
        ),
        "update": crm.post(
            f"{COMPANIES}/batch/update",
            json={"inputs": [{"id": "acme.com", "idProperty": "domain", "properties": {}}]},
        ),
    }
    for operation, answer in answers.items():
        assert answer.status_code == 400, operation
        verb = "read" if operation in ("read", "get") else "update/upsert"
        assert answer.json()["message"] == expected.format(verb), operation
        assert answer.json()["category"] == "VALIDATION_ERROR"

    by_object_id = crm.post(
        f"{COMPANIES}/batch/read",
        json={"idProperty": "hs_object_id", "properties": [], "inputs": [{"id": company}]},
    )
    assert by_object_id.status_code == 200
    assert [result["id"] for result in by_object_id.json()["results"]] == [company]
    update_by_object_id = crm.post(
        f"{COMPANIES}/batch/update",
        json={"inputs": [{"id": company, "idProperty": "hs_object_id", "properties": {}}]},
    )
    assert update_by_object_id.status_code == 400
    assert "non-unique 0-2 property hs_object_id" in update_by_object_id.json()["message"]
    upsert_without_id_property = crm.post(
        f"{CONTACTS}/batch/upsert", json={"inputs": [{"id": "a@example.com", "properties": {}}]}
    )
    assert upsert_without_id_property.status_code == 400
