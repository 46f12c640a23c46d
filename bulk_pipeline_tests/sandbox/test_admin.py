"""The admin view: stats, reset, configuration, raw records, a page for people."""

from __future__ import annotations

import httpx

from bulk_pipeline.sandbox.server import RunningSandbox

CONTACTS = "/crm/v3/objects/contacts"


def test_stats_count_requests_by_route_and_status(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    body = {"inputs": [{"id": "a@example.com", "idProperty": "email", "properties": {}}]}
    crm.post(f"{CONTACTS}/batch/upsert", json=body)
    crm.post(f"{CONTACTS}/batch/upsert", json=body)
    crm.post(f"{CONTACTS}/batch/read", json={"inputs": [{"id": "999"}]})
    crm.post(CONTACTS, json={"properties": {"nope": "x"}})
    httpx.get(f"{sandbox.url}{CONTACTS}", trust_env=False)
    sandbox.admin.health()

    stats = sandbox.admin.stats()
    assert stats["counts"] == {"contacts": 1}
    requests = stats["requests"]
    assert requests["total"] == 5, "admin calls are not counted"
    assert requests["writes"] == 3
    assert requests["reads"] == 1
    assert requests["by_route"] == {"batch/upsert": 2, "batch/read": 1, "create": 1}
    assert requests["by_status"] == {"200": 2, "207": 1, "400": 1, "401": 1}
    assert requests["rate_limited"] == 0


def test_reset_deletes_records_and_zeroes_stats(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    crm.post(CONTACTS, json={"properties": {"email": "a@example.com"}})
    sandbox.admin.reset()
    stats = sandbox.admin.stats()
    assert stats["counts"] == {}
    assert stats["requests"]["total"] == 0
    assert crm.post(CONTACTS, json={"properties": {"email": "a@example.com"}}).status_code == 201


def test_configure_answers_the_configuration_and_refuses_nonsense(sandbox: RunningSandbox) -> None:
    config = sandbox.admin.configure(error_rate=0.25, rate_limit={"max": 7, "interval_ms": 1000})
    assert config["error_rate"] == 0.25
    assert config["rate_limit"] == {"max": 7, "interval_ms": 1000}
    assert config["search_rate_limit"] is None
    with httpx.Client(base_url=f"{sandbox.url}/_sandbox", trust_env=False) as raw:
        assert raw.post("/config", json={"error_rate": 2}).status_code == 400
        assert raw.post("/config", json={"colour": "blue"}).status_code == 400
        assert raw.get("/config").json()["error_rate"] == 0.25


def test_records_and_page(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    crm.post(CONTACTS, json={"properties": {"email": "a@example.com", "city": "Bergen"}})
    (record,) = sandbox.admin.records("contacts")
    assert record["properties"]["city"] == "Bergen"
    page = httpx.get(f"{sandbox.url}/_sandbox/", trust_env=False)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<th>contacts</th><td>1</td>" in page.text
