"""The sandbox's answers, checked against HubSpot's official OpenAPI files (as spec fixtures).

HubSpot's 429 body has no ``category`` and so does not fit ``Error``; ``test_limits_and_faults``
checks it field by field. How answers are checked: ``spec_check``.
"""

from __future__ import annotations

import json

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline_tests.sandbox.spec_check import (
    CORRECTIONS,
    HUBSPOT,
    CheckedClient,
    corrected,
    spec,
)
from bulk_pipeline_tests.specs import load_spec

CASES = [
    ("contacts.json", "contacts", "email", {"firstname": "Ada"}),
    ("companies.json", "companies", None, {"name": "Acme", "domain": "acme.example"}),
    ("deals.json", "0-3", None, {"dealname": "Big one", "amount": "100"}),
    (
        "notes.json",
        "notes",
        None,
        {"hs_note_body": "Called", "hs_timestamp": "2024-05-01T10:00:00Z"},
    ),
    (
        "tasks.json",
        "tasks",
        None,
        {
            "hs_task_subject": "Call back",
            "hs_task_status": "NOT_STARTED",
            "hs_timestamp": "2024-05-01T10:00:00Z",
        },
    ),
    ("objects.json", "contacts", "email", {"lastname": "Lovelace"}),
]


def key_value(key: str, n: int) -> str:
    return f"person{n}@example.com"


def props(key: str | None, base: dict[str, str], n: int) -> dict[str, str]:
    return {**base, key: key_value(key, n)} if key else dict(base)


@pytest.mark.parametrize(("spec_file", "segment", "key", "sample"), CASES)
def test_answers_match_the_official_spec(
    crm: httpx.Client,
    spec_file: str,
    segment: str,
    key: str | None,
    sample: dict[str, str],
) -> None:
    api = CheckedClient(crm, spec_file, f"/crm/v3/objects/{segment}")

    created = api.call(
        "POST", "", 201, body={"properties": props(key, sample, 0), "associations": []}
    )
    record_id = created["id"]
    api.call("GET", f"/{record_id}", 200, params={"properties": ",".join(sample)})
    api.call("PATCH", f"/{record_id}", 200, body={"properties": sample})
    api.call("GET", "", 200, params={"limit": "1"})

    batch = api.call(
        "POST",
        "/batch/create",
        201,
        body={
            "inputs": [{"properties": props(key, sample, n), "associations": []} for n in (1, 2)]
        },
    )
    ids = [result["id"] for result in batch["results"]]
    read_body = {"properties": list(sample), "propertiesWithHistory": [], "inputs": []}
    api.call("POST", "/batch/read", 200, body={**read_body, "inputs": [{"id": i} for i in ids]})
    partial = api.call(
        "POST", "/batch/read", 207, body={**read_body, "inputs": [{"id": ids[0]}, {"id": "987654"}]}
    )
    assert partial["numErrors"] == 1
    updates = [{"id": i, "properties": sample} for i in ids]
    api.call("POST", "/batch/update", 200, body={"inputs": updates})
    api.call(
        "POST",
        "/batch/update",
        207,
        body={"inputs": [*updates, {"id": "987654", "properties": sample}]},
    )
    page = api.call(
        "POST",
        "/search",
        200,
        body={
            "filterGroups": [
                {"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": ids}]}
            ],
            "properties": list(sample),
            "sorts": [],
            "limit": 1,
            "after": "0",
        },
    )
    assert page["total"] == 2 and page["paging"]["next"]["after"]

    if key is not None:
        upserted = api.call(
            "POST",
            "/batch/upsert",
            200,
            body={
                "inputs": [
                    {"id": key_value(key, n), "idProperty": key, "properties": sample}
                    for n in (2, 3)
                ]
            },
        )
        assert [result["new"] for result in upserted["results"]] == [False, True]
        api.call("GET", f"/{key_value(key, 0)}", 200, params={"idProperty": key})
        api.call("POST", "", 409, body={"properties": props(key, sample, 1), "associations": []})

    api.call("POST", "", 400, body={"properties": {"no_such_property": "x"}, "associations": []})
    api.call("GET", "/987654", 404)
    api.call("POST", "/batch/archive", 204, body={"inputs": [{"id": ids[0]}]})
    api.call("DELETE", f"/{record_id}", 204)


def test_the_check_rejects_a_wrong_shape() -> None:
    """Guards the test above against passing vacuously: a result without timestamps must fail."""
    contacts, _ = spec("contacts.json")
    request = MockRequest(HUBSPOT, "POST", "/crm/v3/objects/contacts/batch/read")
    wrong = {"status": "COMPLETE", "results": [{"id": "1", "properties": {}}]}
    response = MockResponse(json.dumps(wrong).encode(), status_code=200)
    with pytest.raises(OpenAPIError):
        contacts.validate_response(request, response)


def test_each_spec_correction_is_needed(crm: httpx.Client) -> None:
    """``spec_check.CORRECTIONS`` name real contradictions: HubSpot's answer (which the sandbox
    gives) passes the corrected spec and fails it when any one correction is left out."""
    contact = crm.post("/crm/v3/objects/contacts", json={"properties": {}}).json()["id"]
    company = crm.post("/crm/v3/objects/companies", json={"properties": {}}).json()["id"]
    put = f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}"
    assert crm.put(put).status_code == 200
    path = "/crm/v4/associations/contacts/companies/batch/read"
    answer = crm.post(path, json={"inputs": [{"id": contact}, {"id": "424242"}]})
    assert answer.status_code == 207
    request = MockRequest(HUBSPOT, "POST", path, data=answer.request.content)
    response = MockResponse(answer.content, status_code=207, content_type="application/json")
    published = load_spec("hubspot", "associations-v4.json")
    OpenAPI.from_dict(corrected(published)).validate_response(request, response)
    for left_out in CORRECTIONS:
        others = {name: fix for name, fix in CORRECTIONS.items() if name != left_out}
        with pytest.raises(OpenAPIError):
            OpenAPI.from_dict(corrected(published, others)).validate_response(request, response)
