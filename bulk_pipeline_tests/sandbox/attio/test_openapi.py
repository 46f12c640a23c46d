"""The Attio dialect's answers, checked against Attio's OpenAPI file (as a spec fixture).

Every operation the sandbox serves is called, its request validated and its answer validated
with openapi-core against ``attio/api-00.json``. Five adjustments, explained in
``bulk_pipeline_tests/specs/attio_spec.py``:
3.0-style ``nullable: true`` is read as 3.1's ``null`` type (Attio's examples answer ``null``
there), a timestamp value is a ``date-time`` as Attio's documentation shows it (the spec says
``date``), error ``code``s beyond the one the spec names per status are allowed (Attio answers
``uniqueness_conflict`` for a unique value that exists), 401, 429 and 5xx answers, which the
spec declares on no operation, are checked against the spec's own error shape, and a query
parameter typed ``["string", "null"]`` is read as text (openapi-core reads one type).
"""

from __future__ import annotations

import json

import pytest
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.attio.conftest import (
    ATTIO,
    COMPANIES,
    DEALS,
    PEOPLE,
    CheckedClient,
)


def test_records_match_the_spec(api: CheckedClient) -> None:
    company = api.call(
        "POST",
        COMPANIES,
        body={
            "data": {
                "values": {
                    "name": ["Acme"],
                    "domains": [{"domain": "acme.example"}],
                    "categories": [{"option": "SAAS"}],
                    "employee_range": [{"option": "11-50"}],
                    "primary_location": [
                        {
                            "line_1": "1 Main St",
                            "line_2": None,
                            "line_3": None,
                            "line_4": None,
                            "locality": "Lyon",
                            "region": None,
                            "postcode": "69001",
                            "country_code": "FR",
                            "latitude": None,
                            "longitude": None,
                        }
                    ],
                }
            }
        },
    )
    company_id = company["id"]["record_id"]
    person = api.call(
        "POST",
        PEOPLE,
        body={
            "data": {
                "values": {
                    "name": [
                        {"first_name": "Ada", "last_name": "Lovelace", "full_name": "Ada Lovelace"}
                    ],
                    "email_addresses": [{"email_address": "ada@example.com"}],
                    "phone_numbers": [
                        {"original_phone_number": "+442079460018", "country_code": "GB"}
                    ],
                    "job_title": [{"value": "Mathematician"}],
                    "company": [{"target_object": "companies", "target_record_id": company_id}],
                }
            }
        },
    )
    person_id = person["id"]["record_id"]
    deal = api.call(
        "POST",
        DEALS,
        body={
            "data": {
                "values": {
                    "name": [{"value": "Big"}],
                    "stage": [{"status": "In Progress"}],
                    "owner": [{"workspace_member_email_address": "sam.seller@example.com"}],
                    "value": [{"currency_value": 4200.5}],
                    "associated_people": [
                        {"target_object": "people", "target_record_id": person_id}
                    ],
                }
            }
        },
    )
    api.call(
        "PUT",
        PEOPLE,
        params={"matching_attribute": "email_addresses"},
        body={
            "data": {"values": {"email_addresses": ["ada@example.com"], "job_title": ["Countess"]}}
        },
    )
    for path, record_id, change in (
        (PEOPLE, person_id, {"phone_numbers": [{"original_phone_number": "+33142685300"}]}),
        (COMPANIES, company_id, {"description": ["Engines"]}),
        (DEALS, deal["id"]["record_id"], {"stage": ["Won 🎉"]}),
    ):
        api.call("GET", f"{path}/{record_id}")
        api.call("PATCH", f"{path}/{record_id}", body={"data": {"values": change}})
        api.call("PUT", f"{path}/{record_id}", body={"data": {"values": change}})
        api.call("POST", f"{path}/query", body={"limit": 1})
        api.call("GET", f"{path}/{record_id}/entries", params={"limit": "10"})
    found = api.call(
        "POST",
        f"{PEOPLE}/query",
        body={
            "filter": {"$or": [{"email_addresses": {"email_address": {"$eq": "ada@example.com"}}}]},
            "sorts": [{"attribute": "name", "field": "last_name", "direction": "asc"}],
            "limit": 500,
            "offset": 0,
        },
    )
    assert [r["id"]["record_id"] for r in found] == [person_id]
    api.call(
        "POST", f"{DEALS}/query", body={"filter": {"record_id": {"$in": [deal["id"]["record_id"]]}}}
    )
    for path, record_id in (
        (DEALS, deal["id"]["record_id"]),
        (PEOPLE, person_id),
        (COMPANIES, company_id),
    ):
        api.call("DELETE", f"{path}/{record_id}")
        api.call("GET", f"{path}/{record_id}", 404)


def test_workspace_and_attributes_match_the_spec(api: CheckedClient) -> None:
    api.call("GET", "/v2/self")
    api.call("GET", "/v2/objects")
    members = api.call("GET", "/v2/workspace_members")
    api.call("GET", f"/v2/workspace_members/{members[0]['id']['workspace_member_id']}")
    for object_slug in ("people", "companies", "deals"):
        api.call("GET", f"/v2/objects/{object_slug}")
        api.call("GET", f"/v2/objects/{object_slug}/attributes", params={"limit": "50"})
        api.call("GET", f"/v2/objects/{object_slug}/attributes/name")
    api.call("GET", "/v2/objects/deals/attributes/stage/statuses")
    api.call("GET", "/v2/objects/deals/attributes/stage")
    api.call(
        "GET",
        "/v2/objects/companies/attributes/categories/options",
        params={"show_archived": "true"},
    )
    api.call(
        "POST",
        "/v2/objects/deals/attributes/stage/statuses",
        body={"data": {"title": "Negotiation"}},
    )
    api.call(
        "POST",
        "/v2/objects/companies/attributes/employee_range/options",
        body={"data": {"title": "Huge"}},
    )
    tier = api.call(
        "POST",
        "/v2/objects/people/attributes",
        body={
            "data": {
                "title": "Tier",
                "description": None,
                "api_slug": "tier",
                "type": "select",
                "is_required": False,
                "is_unique": False,
                "is_multiselect": False,
                "config": {},
            }
        },
    )
    assert tier["is_system_attribute"] is False
    api.call("POST", "/v2/objects/people/attributes/tier/options", body={"data": {"title": "Gold"}})
    api.call(
        "POST",
        "/v2/objects/people/attributes",
        409,
        body={
            "data": {
                "title": "Tier",
                "description": None,
                "api_slug": "tier",
                "type": "text",
                "is_required": False,
                "is_unique": False,
                "is_multiselect": False,
                "config": {},
            }
        },
    )


def test_lists_entries_and_notes_match_the_spec(api: CheckedClient) -> None:
    person = api.call(
        "POST", PEOPLE, body={"data": {"values": {"email_addresses": ["grace@example.com"]}}}
    )
    person_id = person["id"]["record_id"]
    created = api.call(
        "POST",
        "/v2/lists",
        body={
            "data": {
                "name": "Q3 leads",
                "api_slug": "q3_leads",
                "parent_object": "people",
                "workspace_access": "full-access",
                "workspace_member_access": [],
            }
        },
    )
    api.call("GET", "/v2/lists")
    api.call("GET", "/v2/lists/q3_leads")
    api.call("GET", f"/v2/lists/{created['id']['list_id']}/attributes")
    parent = {"parent_record_id": person_id, "parent_object": "people", "entry_values": {}}
    entry = api.call("POST", "/v2/lists/q3_leads/entries", body={"data": parent})
    api.call("PUT", "/v2/lists/q3_leads/entries", body={"data": parent})
    api.call("GET", f"/v2/lists/q3_leads/entries/{entry['id']['entry_id']}")
    api.call("POST", "/v2/lists/q3_leads/entries/query", body={"limit": 10, "offset": 0})
    api.call("POST", "/v2/lists/q3_leads/entries", body={"data": parent})
    api.call("PUT", "/v2/lists/q3_leads/entries", 400, body={"data": parent})
    api.call("DELETE", f"/v2/lists/q3_leads/entries/{entry['id']['entry_id']}")
    note = api.call(
        "POST",
        "/v2/notes",
        body={
            "data": {
                "parent_object": "people",
                "parent_record_id": person_id,
                "title": "Import",
                "format": "plaintext",
                "content": "12 rows",
            }
        },
    )
    api.call("GET", f"/v2/notes/{note['id']['note_id']}")
    api.call("GET", "/v2/notes", params={"parent_object": "people", "parent_record_id": person_id})
    api.call("DELETE", f"/v2/notes/{note['id']['note_id']}")
    api.call("GET", f"/v2/notes/{note['id']['note_id']}", 404)


def test_tasks_match_the_spec(api: CheckedClient) -> None:
    person = api.call(
        "POST", PEOPLE, body={"data": {"values": {"email_addresses": ["grace@example.com"]}}}
    )
    person_id = person["id"]["record_id"]
    task = api.call(
        "POST",
        "/v2/tasks",
        body={
            "data": {
                "content": "Call Grace",
                "format": "plaintext",
                "deadline_at": "2025-01-10T00:00:00Z",
                "is_completed": False,
                "linked_records": [{"target_object": "people", "target_record_id": person_id}],
                "assignees": [],
            }
        },
    )
    task_id = task["id"]["task_id"]
    api.call("GET", f"/v2/tasks/{task_id}")
    api.call(
        "GET",
        "/v2/tasks",
        params={"linked_object": "people", "linked_record_id": person_id, "limit": "10"},
    )
    api.call("PATCH", f"/v2/tasks/{task_id}", body={"data": {"is_completed": True}})
    api.call(
        "PATCH", f"/v2/tasks/{task_id}", 400, body={"data": {"content": "x"}}, check_request=False
    )
    api.call("DELETE", f"/v2/tasks/{task_id}")
    api.call("GET", f"/v2/tasks/{task_id}", 404)


def test_errors_match_the_spec(api: CheckedClient, sandbox: RunningSandbox) -> None:
    body = {"data": {"values": {"email_addresses": ["eve@example.com"]}}}
    api.call("POST", PEOPLE, body=body)
    conflict = api.call("POST", PEOPLE, 400, body=body)
    assert conflict["code"] == "uniqueness_conflict"
    api.call("POST", f"{PEOPLE}/query", 400, body={"filter": {"no_such_attribute": "x"}})
    api.call("POST", PEOPLE, 400, body={"data": {"values": {"job_title": [{"value": 3}]}}})
    api.call("POST", DEALS, 400, body={"data": {"values": {"name": ["X"], "stage": ["Nope"]}}})
    api.call("GET", "/v2/objects/planets", 404)
    api.call("GET", "/v2/self", 401, headers={"Authorization": "Bearer wrong"})
    sandbox.admin.configure(attio={"read_limit": {"max": 1, "interval_ms": 60_000}})
    api.call("GET", "/v2/objects")
    limited = api.call("GET", "/v2/objects", 429)
    assert limited["type"] == "rate_limit_error"


def test_the_check_rejects_a_wrong_shape(api: CheckedClient) -> None:
    """Guards the tests above against passing vacuously: a record whose id is a string fails."""
    wrong = {"data": {"id": "1", "created_at": "x", "web_url": "https://x", "values": {}}}
    response = MockResponse(json.dumps(wrong).encode(), status_code=200)
    with pytest.raises(OpenAPIError):
        api.spec.validate_response(MockRequest(ATTIO, "get", f"{PEOPLE}/abc"), response)
