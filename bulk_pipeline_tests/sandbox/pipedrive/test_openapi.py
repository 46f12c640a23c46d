"""The Pipedrive dialect's answers, checked against Pipedrive's OpenAPI files (as spec fixtures).

Every operation the sandbox serves is called once and its answer validated with openapi-core
against ``pipedrive/v2.json`` or ``pipedrive/v1.json``. Two adjustments, both where the spec
contradicts Pipedrive's own documentation:

- ``additional_data.next_cursor`` is typed as a non-null string in most list schemas, while the
  pagination docs say it is ``null`` on the last page; the check lets it be null.
- The v1 spec's server is ``https://api.pipedrive.com/v1``; the sandbox (like Pipedrive's
  company domains) serves v1 under ``/api/v1``, so v1 paths are checked without ``/api``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline_tests.specs import load_spec, nullable_cursors

PIPEDRIVE = "https://api.pipedrive.com"


@pytest.fixture(scope="module")
def specs() -> dict[str, OpenAPI]:
    loaded = {}
    for version in ("v1", "v2"):
        raw = load_spec("pipedrive", f"{version}.json")
        nullable_cursors(raw)
        loaded[version] = OpenAPI.from_dict(raw)
    return loaded


class CheckedClient:
    """Calls the sandbox and validates each answer against the spec of its API version."""

    def __init__(self, client: httpx.Client, specs: dict[str, OpenAPI]) -> None:
        self.client = client
        self.specs = specs
        self.checked: list[str] = []

    def call(
        self,
        method: str,
        path: str,
        expect: int = 200,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        answer = self.client.request(method, path, json=body, params=params, headers=headers)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        version = path.split("/")[2]
        spec_path = path if version == "v2" else path.removeprefix("/api")
        request = MockRequest(PIPEDRIVE, method.lower(), spec_path, args=params)
        response = MockResponse(
            answer.content,
            status_code=answer.status_code,
            headers=dict(answer.headers),
            content_type=answer.headers.get("content-type", ""),
        )
        self.specs[version].validate_response(request, response)
        self.checked.append(f"{method} {path}")
        return answer.json()["data"] if expect < 300 else answer.json()


@pytest.fixture
def api(pipedrive: httpx.Client, specs: dict[str, OpenAPI]) -> Iterator[CheckedClient]:
    yield CheckedClient(pipedrive, specs)


def test_v2_records_match_the_spec(api: CheckedClient) -> None:
    org = api.call(
        "POST",
        "/api/v2/organizations",
        body={"name": "Acme", "address": {"value": "1 Main St", "locality": "Oslo"}},
    )
    person = api.call(
        "POST",
        "/api/v2/persons",
        body={
            "name": "Ada Lovelace",
            "org_id": org["id"],
            "emails": [{"value": "ada@example.com", "label": "work"}],
            "phones": [{"value": "+47 1234"}],
        },
    )
    api.call("POST", "/api/v2/persons", body={"name": "Ada Lovelace"})
    deal = api.call(
        "POST",
        "/api/v2/deals",
        body={"title": "Big", "value": 100, "person_id": person["id"], "org_id": org["id"]},
    )
    activity = api.call(
        "POST",
        "/api/v2/activities",
        body={"type": "call", "deal_id": deal["id"], "person_id": person["id"], "done": True},
    )
    pipeline = api.call("POST", "/api/v2/pipelines", body={"name": "Partners"})
    stage = api.call("POST", "/api/v2/stages", body={"name": "New", "pipeline_id": pipeline["id"]})
    records = {
        "persons": person["id"],
        "organizations": org["id"],
        "deals": deal["id"],
        "activities": activity["id"],
        "pipelines": pipeline["id"],
        "stages": stage["id"],
    }
    patches = {
        "persons": {"name": "Ada King"},
        "organizations": {"website": "https://acme.example"},
        "deals": {"status": "lost", "lost_reason": "Price"},
        "activities": {"done": False},
        "pipelines": {"name": "Partner deals"},
        "stages": {"deal_probability": 50},
    }
    for path, record_id in records.items():
        api.call("GET", f"/api/v2/{path}/{record_id}")
        api.call("PATCH", f"/api/v2/{path}/{record_id}", body=patches[path])
        for limit in ("1", "500"):
            api.call("GET", f"/api/v2/{path}", params={"limit": limit})
    for path, term in (("persons", "ada"), ("organizations", "acme"), ("deals", "big")):
        found = api.call("GET", f"/api/v2/{path}/search", params={"term": term})
        assert found["items"], path
    api.call("GET", "/api/v2/itemSearch", params={"term": "acme"})
    for path in ("activities", "deals", "stages", "pipelines", "persons", "organizations"):
        api.call("DELETE", f"/api/v2/{path}/{records[path]}")
    assert len(api.checked) == 7 + 6 * 4 + 4 + 6


def test_v2_fields_match_the_spec(api: CheckedClient) -> None:
    created = {}
    for path in ("personFields", "organizationFields", "dealFields"):
        created[path] = api.call(
            "POST",
            f"/api/v2/{path}",
            body={"field_name": "Tier", "field_type": "set", "options": [{"label": "Gold"}]},
        )
        api.call("GET", f"/api/v2/{path}/{created[path]['field_code']}")
        api.call("GET", f"/api/v2/{path}", params={"limit": "500"})
        api.call("GET", f"/api/v2/{path}", params={"limit": "2"})
    api.call("GET", "/api/v2/activityFields")
    api.call("GET", "/api/v2/activityFields/subject")
    tier = created["personFields"]
    gold = [tier["options"][0]["id"]]
    person = api.call(
        "POST", "/api/v2/persons", body={"name": "Ada", "custom_fields": {tier["field_code"]: gold}}
    )
    assert person["custom_fields"] == {tier["field_code"]: gold}


def test_v1_answers_match_the_spec(api: CheckedClient, sandbox: Any) -> None:
    person = api.call("POST", "/api/v2/persons", body={"name": "Ada"})
    deal = api.call("POST", "/api/v2/deals", body={"title": "Big", "person_id": person["id"]})
    note = api.call(
        "POST",
        "/api/v1/notes",
        body={"content": "<p>Met</p>", "deal_id": deal["id"], "pinned_to_deal_flag": 1},
    )
    api.call("GET", f"/api/v1/notes/{note['id']}")
    api.call("PUT", f"/api/v1/notes/{note['id']}", body={"content": "<p>Met again</p>"})
    api.call("GET", "/api/v1/notes", params={"deal_id": str(deal["id"]), "limit": "1"})
    api.call("DELETE", f"/api/v1/notes/{note['id']}")
    api.call("GET", "/api/v1/users")
    api.call("GET", "/api/v1/users/me")
    api.call("GET", "/api/v1/users/find", params={"term": "ada"})
    api.call("GET", "/api/v1/activityTypes")
    api.call("GET", "/api/v1/users/me", 401, headers={"x-api-token": "wrong"})


def test_the_check_rejects_a_wrong_shape(specs: dict[str, OpenAPI]) -> None:
    """Guards the tests above against passing vacuously: a person whose id is a string fails."""
    wrong = {"success": True, "data": {"id": "1", "name": "Ada"}}
    response = MockResponse(json.dumps(wrong).encode(), status_code=200)
    with pytest.raises(OpenAPIError):
        specs["v2"].validate_response(MockRequest(PIPEDRIVE, "get", "/api/v2/persons/1"), response)
