"""Associations as HubSpot keeps them: both directions, default and primary types, links made
on creates, refusals, archive, paging, limits and statistics. Answers are checked against the
v4 associations spec and the v3 object specs (``spec_check``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.spec_check import CheckedClient

V3 = "/crm/v3/objects"
DUE = "2024-05-01T10:00:00Z"
HUBSPOT_TABLE = [
    ("contacts", "companies", 279, 280),
    ("contacts", "companies", 1, 2),
    ("deals", "contacts", 3, 4),
    ("deals", "companies", 341, 342),
    ("deals", "companies", 5, 6),
    ("tasks", "contacts", 204, 203),
    ("tasks", "companies", 192, 191),
    ("tasks", "deals", 216, 215),
    ("notes", "contacts", 202, 201),
    ("notes", "companies", 190, 189),
    ("notes", "deals", 214, 213),
]
"""HubSpot-defined type ids (from, to, type, inverse), as HubSpot's association guide lists them."""
PRIMARY = {1: 279, 2: 280, 5: 341, 6: 342}
"""Primary types and the unlabeled type each comes with."""
DEFAULTS = {
    ("contacts", "companies"): (279, 280),
    ("companies", "contacts"): (280, 279),
    ("deals", "contacts"): (3, 4),
    ("deals", "companies"): (341, 342),
    ("companies", "deals"): (342, 341),
    ("tasks", "contacts"): (204, 203),
    ("contacts", "tasks"): (203, 204),
    ("tasks", "companies"): (192, 191),
    ("deals", "tasks"): (215, 216),
    ("notes", "contacts"): (202, 201),
    ("companies", "notes"): (189, 190),
    ("notes", "deals"): (214, 213),
}


def spec(type_id: int) -> dict[str, Any]:
    return {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}


def to(record_id: str, *type_ids: int) -> dict[str, Any]:
    return {"to": {"id": record_id}, "types": [spec(t) for t in type_ids]}


def properties(object_type: str, n: int) -> dict[str, str]:
    return {
        "contacts": {"email": f"person{n}@example.com"},
        "companies": {"name": f"Company {n}"},
        "deals": {"dealname": f"Deal {n}"},
        "tasks": {"hs_timestamp": DUE, "hs_task_subject": f"Task {n}"},
        "notes": {"hs_timestamp": DUE, "hs_note_body": f"Note {n}"},
    }[object_type]


counter = iter(range(1_000_000))


def make(crm: httpx.Client, object_type: str, *associations: dict[str, Any]) -> str:
    answer = crm.post(
        f"{V3}/{object_type}",
        json={
            "properties": properties(object_type, next(counter)),
            "associations": list(associations),
        },
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def v4(crm: httpx.Client) -> CheckedClient:
    return CheckedClient(crm, "associations-v4.json")


def read(crm: httpx.Client, from_type: str, to_type: str, *ids: str) -> dict[str, Any]:
    """What a v4 batch read answers, checked against the spec, keyed by from-id."""
    answer = crm.post(
        f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
        json={"inputs": [{"id": record_id} for record_id in ids]},
    )
    assert answer.status_code in (200, 207), answer.text
    v4(crm).call(
        "POST",
        f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
        answer.status_code,
        body={"inputs": [{"id": record_id} for record_id in ids]},
    )
    return {result["from"]["id"]: result["to"] for result in answer.json()["results"]}


def linked(crm: httpx.Client, from_type: str, to_type: str, record_id: str) -> dict[str, set[int]]:
    """The records associated with one record, and the type ids of each association."""
    found = read(crm, from_type, to_type, record_id).get(record_id, [])
    return {
        item["toObjectId"]: {kind["typeId"] for kind in item["associationTypes"]} for item in found
    }


@pytest.mark.parametrize(("from_type", "to_type", "type_id", "inverse"), HUBSPOT_TABLE)
def test_each_hubspot_defined_type_reads_from_both_sides(
    crm: httpx.Client, from_type: str, to_type: str, type_id: int, inverse: int
) -> None:
    target = make(crm, to_type)
    source = make(crm, from_type)
    created = v4(crm).call(
        "POST",
        f"/crm/v4/associations/{from_type}/{to_type}/batch/create",
        201,
        body={"inputs": [{"from": {"id": source}, "to": {"id": target}, "types": [spec(type_id)]}]},
    )
    (result,) = created["results"]
    assert (result["fromObjectId"], result["toObjectId"]) == (source, target)
    assert result["labels"] == (["Primary"] if type_id in PRIMARY else [])

    assert linked(crm, from_type, to_type, source) == {
        target: {type_id, PRIMARY.get(type_id, type_id)}
    }
    assert linked(crm, to_type, from_type, target) == {
        source: {inverse, PRIMARY.get(inverse, inverse)}
    }


@pytest.mark.parametrize(("pair", "ids"), list(DEFAULTS.items()))
def test_default_associations_use_the_unlabeled_type(
    crm: httpx.Client, pair: tuple[str, str], ids: tuple[int, int]
) -> None:
    from_type, to_type = pair
    first, second = make(crm, from_type), make(crm, to_type)
    answer = v4(crm).call(
        "POST",
        f"/crm/v4/associations/{from_type}/{to_type}/batch/associate/default",
        200,
        body={"inputs": [{"from": {"id": first}, "to": {"id": second}}]},
    )
    made = [
        (r["from"]["id"], r["to"]["id"], r["associationSpec"]["associationTypeId"])
        for r in answer["results"]
    ]
    assert made == [(first, second, ids[0]), (second, first, ids[1])]
    assert linked(crm, from_type, to_type, first) == {second: {ids[0]}}
    assert linked(crm, to_type, from_type, second) == {first: {ids[1]}}


def test_single_record_endpoints(crm: httpx.Client) -> None:
    contact, company, deal = make(crm, "contacts"), make(crm, "companies"), make(crm, "deals")
    api = v4(crm)
    default = api.call(
        "PUT", f"/crm/v4/objects/contact/{contact}/associations/default/company/{company}", 200
    )
    assert [r["associationSpec"]["associationTypeId"] for r in default["results"]] == [279, 280]
    labelled = api.call(
        "PUT", f"/crm/v4/objects/deals/{deal}/associations/0-2/{company}", 201, body=[spec(5)]
    )
    assert labelled == {
        "fromObjectTypeId": "0-3",
        "fromObjectId": deal,
        "toObjectTypeId": "0-2",
        "toObjectId": company,
        "labels": ["Primary"],
    }
    listed = api.call("GET", f"/crm/v4/objects/companies/{company}/associations/deals", 200)
    assert listed == {
        "results": [
            {
                "toObjectId": deal,
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": 6, "label": "Primary"},
                    {"category": "HUBSPOT_DEFINED", "typeId": 342, "label": None},
                ],
            }
        ]
    }
    api.call("DELETE", f"/crm/v4/objects/companies/{company}/associations/deals/{deal}", 204)
    assert linked(crm, "deals", "companies", deal) == {}
    assert linked(crm, "contacts", "companies", contact) == {company: {279}}
    unknown = api.call("GET", "/crm/v4/objects/companies/424242/associations/deals", 200)
    assert unknown == {"results": []}


def test_a_primary_company_is_one_and_moves(crm: httpx.Client) -> None:
    first, second = make(crm, "companies"), make(crm, "companies")
    contact = make(crm, "contacts", to(first, 1))
    assert linked(crm, "contacts", "companies", contact) == {first: {1, 279}}
    api = v4(crm)
    api.call(
        "POST",
        "/crm/v4/associations/companies/contacts/batch/create",
        201,
        body={"inputs": [{"from": {"id": second}, "to": {"id": contact}, "types": [spec(2)]}]},
    )
    assert linked(crm, "contacts", "companies", contact) == {first: {279}, second: {1, 279}}
    assert linked(crm, "companies", "contacts", first) == {contact: {280}}

    labels_archive = "/crm/v4/associations/contacts/companies/batch/labels/archive"
    one = {"from": {"id": contact}, "to": {"id": second}}
    api.call("POST", labels_archive, 204, body={"inputs": [{**one, "types": [spec(1)]}]})
    assert linked(crm, "contacts", "companies", contact) == {first: {279}, second: {279}}
    api.call("POST", labels_archive, 204, body={"inputs": [{**one, "types": [spec(279)]}]})
    assert linked(crm, "contacts", "companies", contact) == {first: {279}}


def test_records_without_associations_are_errors_of_a_207(crm: httpx.Client) -> None:
    contact, company = make(crm, "contacts"), make(crm, "companies")
    lonely = make(crm, "contacts")
    v4(crm).call(
        "PUT", f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}", 200
    )
    body = {"inputs": [{"id": contact}, {"id": lonely}, {"id": "424242"}]}
    answer = v4(crm).call(
        "POST", "/crm/v4/associations/contacts/companies/batch/read", 207, body=body
    )
    assert [r["from"]["id"] for r in answer["results"]] == [contact]
    assert answer["numErrors"] == 2
    assert answer["errors"][0] == {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No company is associated with contact {lonely}.",
        "context": {
            "fromObjectId": [lonely],
            "fromObjectType": ["contact"],
            "toObjectType": ["company"],
        },
        "errors": [],
        "links": {},
    }
    assert answer["errors"][1]["context"]["fromObjectId"] == ["424242"]
    only_found = v4(crm).call(
        "POST",
        "/crm/v4/associations/contacts/companies/batch/read",
        200,
        body={"inputs": [{"id": contact}]},
    )
    assert "errors" not in only_found


def test_associations_page_inside_each_result(crm: httpx.Client) -> None:
    company = make(crm, "companies")
    contacts: list[str] = []
    for start in range(0, 501, 100):
        inputs = [
            {"properties": properties("contacts", 10_000 + n), "associations": [to(company, 279)]}
            for n in range(start, min(start + 100, 501))
        ]
        answer = crm.post(f"{V3}/contacts/batch/create", json={"inputs": inputs})
        assert answer.status_code == 201, answer.text
        contacts.extend(result["id"] for result in answer.json()["results"])
    path = "/crm/v4/associations/companies/contacts/batch/read"
    first = v4(crm).call("POST", path, 200, body={"inputs": [{"id": company}]})["results"][0]
    assert len(first["to"]) == 500
    after = first["paging"]["next"]["after"]
    rest = v4(crm).call("POST", path, 200, body={"inputs": [{"id": company, "after": after}]})
    (tail,) = rest["results"]
    assert "paging" not in tail
    seen = [item["toObjectId"] for item in first["to"] + tail["to"]]
    assert sorted(seen, key=int) == sorted(contacts, key=int) and len(set(seen)) == 501

    listed = v4(crm).call(
        "GET",
        f"/crm/v4/objects/companies/{company}/associations/contacts",
        200,
        params={"limit": "2"},
    )
    assert len(listed["results"]) == 2
    more = v4(crm).call(
        "GET",
        f"/crm/v4/objects/companies/{company}/associations/contacts",
        200,
        params={"limit": "2", "after": listed["paging"]["next"]["after"]},
    )
    assert more["results"][0]["toObjectId"] not in {r["toObjectId"] for r in listed["results"]}


def test_archives_remove_associations(crm: httpx.Client) -> None:
    company = make(crm, "companies")
    kept, unlinked, deleted, archived = (make(crm, "contacts", to(company, 279)) for _ in range(4))
    api = v4(crm)
    api.call(
        "POST",
        "/crm/v4/associations/companies/contacts/batch/archive",
        204,
        body={"inputs": [{"from": {"id": company}, "to": [{"id": unlinked}]}]},
    )
    assert crm.delete(f"{V3}/contacts/{deleted}").status_code == 204
    archive = crm.post(f"{V3}/contacts/batch/archive", json={"inputs": [{"id": archived}]})
    assert archive.status_code == 204
    assert set(linked(crm, "companies", "contacts", company)) == {kept}
    assert linked(crm, "contacts", "companies", unlinked) == {}
    assert read(crm, "contacts", "companies", deleted, archived) == {}
    refused = crm.put(
        f"/crm/v4/objects/contacts/{archived}/associations/default/companies/{company}"
    )
    assert refused.status_code == 400, "an archived record cannot be associated"


def test_v3_reads_show_associations(crm: httpx.Client) -> None:
    contact, deal = make(crm, "contacts"), make(crm, "deals")
    task = make(crm, "tasks", to(contact, 204), to(deal, 216))
    api = CheckedClient(crm, "tasks.json", f"{V3}/tasks")
    got = api.call(
        "GET", f"/{task}", 200, params={"associations": "contacts,deals,widgets,companies"}
    )
    assert got["associations"] == {
        "contacts": {"results": [{"id": contact, "type": "task_to_contact"}]},
        "deals": {"results": [{"id": deal, "type": "task_to_deal"}]},
    }
    plain = api.call("GET", f"/{task}", 200)
    assert "associations" not in plain
    listed = api.call("GET", "", 200, params={"associations": "contacts"})
    assert listed["results"][0]["associations"]["contacts"]["results"][0]["id"] == contact
    from_contact = CheckedClient(crm, "contacts.json", f"{V3}/contacts").call(
        "GET", f"/{contact}", 200, params={"associations": "tasks"}
    )
    assert from_contact["associations"] == {
        "tasks": {"results": [{"id": task, "type": "contact_to_task"}]}
    }


def test_batch_create_with_associations_links_each_record(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    contact, company = make(crm, "contacts"), make(crm, "companies")
    inputs = [
        {"properties": properties("notes", 1), "associations": [to(contact, 202)]},
        {
            "properties": properties("notes", 2),
            "associations": [to(company, 190), to(contact, 202)],
        },
    ]
    created = CheckedClient(crm, "notes.json", f"{V3}/notes").call(
        "POST", "/batch/create", 201, body={"inputs": inputs}
    )
    first, second = (result["id"] for result in created["results"])
    assert set(linked(crm, "contacts", "notes", contact)) == {first, second}
    assert linked(crm, "companies", "notes", company) == {second: {189}}


def test_a_create_naming_a_missing_record_is_refused_whole(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    contact, company = make(crm, "contacts"), make(crm, "companies")
    before = sandbox.admin.counts()
    inputs = [
        {"properties": properties("notes", 1), "associations": [to(contact, 202)]},
        {"properties": properties("notes", 2), "associations": [to("999999", 202)]},
        {"properties": properties("notes", 3), "associations": [to(company, 202)]},
    ]
    answer = CheckedClient(crm, "notes.json", f"{V3}/notes").call(
        "POST", "/batch/create", 400, body={"inputs": inputs}
    )
    assert answer["category"] == "VALIDATION_ERROR"
    assert answer["message"] == "One or more associations are invalid"
    assert answer["context"] == {
        "INVALID_OBJECT_IDS": ["CONTACT=999999 is not valid", f"CONTACT={company} is not valid"],
        "objectId": ["999999", company],
        "objectType": ["CONTACT", "CONTACT"],
    }
    assert sandbox.admin.counts() == before, "nothing is created"
    assert linked(crm, "contacts", "notes", contact) == {}


@pytest.mark.parametrize(
    ("types", "message", "context"),
    [
        (
            [spec(190)],
            "invalid from object type 0-1 for associations to be created. expected: 0-46. "
            "For definition 0-190",
            None,
        ),
        (
            [{"associationCategory": "USER_DEFINED", "associationTypeId": 3}],
            "One or more associations are invalid",
            {
                "associationSpec": ["USER_DEFINED=3"],
                "INVALID_ASSOCIATION_TYPE_ID": [
                    "USER_DEFINED=3 is not a valid association definition id"
                ],
            },
        ),
        ([spec(99999)], "One or more associations are invalid", None),
    ],
)
def test_a_create_with_a_type_that_does_not_fit_is_refused(
    crm: httpx.Client,
    sandbox: RunningSandbox,
    types: list[dict[str, Any]],
    message: str,
    context: dict[str, list[str]] | None,
) -> None:
    company = make(crm, "companies")
    body = {
        "properties": properties("contacts", 1),
        "associations": [{"to": {"id": company}, "types": types}],
    }
    answer = CheckedClient(crm, "contacts.json", f"{V3}/contacts").call("POST", "", 400, body=body)
    assert answer["message"] == message
    if context is not None:
        assert answer["context"] == context
    assert sandbox.admin.counts() == {"companies": 1}


def test_v4_writes_naming_missing_records_are_refused(crm: httpx.Client) -> None:
    deal, company = make(crm, "deals"), make(crm, "companies")
    api = v4(crm)
    refused = api.call(
        "POST",
        "/crm/v4/associations/deals/companies/batch/create",
        400,
        body={
            "inputs": [
                {"from": {"id": deal}, "to": {"id": company}, "types": [spec(341)]},
                {"from": {"id": deal}, "to": {"id": "777777"}, "types": [spec(341)]},
            ]
        },
    )
    assert refused["context"]["INVALID_OBJECT_IDS"] == ["COMPANY=777777 is not valid"]
    assert linked(crm, "deals", "companies", deal) == {}, "the batch is refused whole"
    # HubSpot checks ids against the type's object types: type 1 is contact to company.
    wrong_type = api.call(
        "PUT", f"/crm/v4/objects/deal/{deal}/associations/company/{company}", 400, body=[spec(1)]
    )
    assert wrong_type["context"] == {
        "INVALID_OBJECT_IDS": [f"CONTACT={deal} is not valid"],
        "objectId": [deal],
        "objectType": ["CONTACT"],
    }
    no_default = crm.put("/crm/v4/objects/tasks/1/associations/default/notes/2")
    assert no_default.status_code == 400
    assert (
        crm.post(
            "/crm/v4/associations/contacts/widgets/batch/read", json={"inputs": []}
        ).status_code
        == 404
    )


def test_association_calls_count_in_limits_and_statistics(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    contact, company = make(crm, "contacts"), make(crm, "companies")
    sandbox.admin.reset_limits()
    sandbox.admin.configure(rate_limit=RateLimit(3, 60_000), daily_limit=10)
    put = f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}"
    read_body = {"inputs": [{"id": contact}]}
    answers = [
        crm.put(put),
        crm.post("/crm/v4/associations/contacts/companies/batch/read", json=read_body),
        crm.get(f"/crm/v4/objects/contacts/{contact}/associations/companies"),
        crm.post("/crm/v4/associations/contacts/companies/batch/read", json=read_body),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[2].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "7"
    assert answers[3].json()["policyName"] == "TEN_SECONDLY_ROLLING"
    requests = sandbox.admin.requests("hubspot")
    assert requests["by_route"] == {
        "create": 2,
        "associations/create/default": 1,
        "associations/batch/read": 1,
        "associations/list": 1,
    }
    assert (requests["writes"], requests["reads"], requests["rate_limited"]) == (3, 2, 1)

    sandbox.admin.reset()
    assert sandbox.admin.requests("hubspot")["by_route"] == {}
    sandbox.admin.configure(rate_limit=None, daily_limit=None)
    again_contact, again_company = make(crm, "contacts"), make(crm, "companies")
    assert (again_contact, again_company) == (contact, company), "ids start over after a reset"
    assert linked(crm, "contacts", "companies", again_contact) == {}, "and links are gone"
