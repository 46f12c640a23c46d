"""Rate limits and injected faults: what importers must pace for and survive."""

from __future__ import annotations

import time

import httpx
import pytest

from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import RunningSandbox

CONTACTS = "/crm/v3/objects/contacts"
RATE_HEADERS = (
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
)


def upsert(crm: httpx.Client, email: str) -> httpx.Response:
    return crm.post(
        f"{CONTACTS}/batch/upsert",
        json={"inputs": [{"id": email, "idProperty": "email", "properties": {}}]},
    )


def search(crm: httpx.Client) -> httpx.Response:
    return crm.post(f"{CONTACTS}/search", json={"filterGroups": []})


def test_over_the_limit_answers_429_like_hubspot(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(rate_limit=RateLimit(3, 60_000))
    answers = [crm.get(CONTACTS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "60000"

    refused = upsert(crm, "a@example.com")
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"status", "message", "errorType", "correlationId", "policyName"}
    assert body["status"] == "error"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert 50 <= int(refused.headers["Retry-After"]) <= 60
    assert sandbox.admin.counts() == {}, "a refused call does no work"
    assert sandbox.admin.stats()["requests"]["rate_limited"] == 1


def test_the_window_rolls(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(rate_limit=RateLimit(2, 300))
    assert [crm.get(CONTACTS).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(0.35)
    assert crm.get(CONTACTS).status_code == 200


def test_search_has_its_own_secondly_limit(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(
        rate_limit=RateLimit(100, 60_000), search_rate_limit=RateLimit(2, 60_000)
    )
    assert [search(crm).status_code for _ in range(3)] == [200, 200, 429]
    refused = search(crm)
    assert refused.json()["policyName"] == "SECONDLY"
    assert refused.json()["message"] == "You have reached your secondly limit."
    assert refused.headers["X-HubSpot-RateLimit-Max"] == "2"
    assert crm.get(CONTACTS).status_code == 200, "search calls do not use up the general window"


def test_daily_quota(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(daily_limit=2)
    first = crm.get(CONTACTS)
    assert first.headers["X-HubSpot-RateLimit-Daily"] == "2"
    assert first.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "1"
    assert crm.get(CONTACTS).status_code == 200
    refused = crm.get(CONTACTS)
    assert refused.status_code == 429
    assert refused.json()["policyName"] == "DAILY"
    assert int(refused.headers["Retry-After"]) >= 1


def test_rate_limit_headers_on_every_hubspot_answer(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    record_id = upsert(crm, "a@example.com").json()["results"][0]["id"]
    answers = {
        "200": crm.get(f"{CONTACTS}/{record_id}"),
        "201": crm.post(CONTACTS, json={"properties": {"email": "b@example.com"}}),
        "207": crm.post(f"{CONTACTS}/batch/read", json={"inputs": [{"id": "999"}]}),
        "400": crm.post(CONTACTS, json={"properties": {"nope": "1"}}),
        "404": crm.get(f"{CONTACTS}/999"),
        "409": crm.post(CONTACTS, json={"properties": {"email": "a@example.com"}}),
        "204": crm.delete(f"{CONTACTS}/{record_id}"),
        "401": httpx.get(f"{sandbox.url}{CONTACTS}", trust_env=False),
    }
    sandbox.admin.configure(error_rate=1.0)
    answers["5xx"] = crm.get(CONTACTS)
    sandbox.admin.configure(error_rate=0.0, rate_limit=RateLimit(1, 60_000))
    crm.get(CONTACTS)
    answers["429"] = crm.get(CONTACTS)
    for label, answer in answers.items():
        assert label == "5xx" or str(answer.status_code) == label
        missing = [name for name in RATE_HEADERS if name not in answer.headers]
        assert not missing, f"{label} answer lacks {missing}"


def test_error_rate_one_answers_5xx_before_doing_anything(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(error_rate=1.0)
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        answer = upsert(crm, email)
        assert answer.status_code in (500, 502, 503, 504)
        assert answer.json()["category"] == "INTERNAL_ERROR"
        assert answer.json()["correlationId"]
    stats = sandbox.admin.stats()
    assert stats["counts"] == {}
    assert stats["requests"]["writes"] == 0
    assert stats["requests"]["total"] == 3


def test_drop_rate_one_does_the_work_then_cuts_the_connection(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        upsert(crm, "ghost@example.com")
    assert [r["properties"]["email"] for r in sandbox.admin.records("contacts")] == [
        "ghost@example.com"
    ]
    stats = sandbox.admin.stats()["requests"]
    assert stats["dropped"] == 1 and stats["writes"] == 1

    sandbox.admin.configure(drop_rate=0.0)
    retried = upsert(crm, "ghost@example.com")
    assert retried.status_code == 200
    assert retried.json()["results"][0]["new"] is False, "the retry finds the dropped write"


def test_faults_follow_the_seed(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    def statuses() -> list[int]:
        return [crm.get(CONTACTS).status_code for _ in range(30)]

    sandbox.admin.configure(error_rate=0.5, seed=7)
    first = statuses()
    sandbox.admin.configure(error_rate=0.5, seed=7)
    assert statuses() == first
    assert 200 in first and any(status >= 500 for status in first)


def test_latency_is_added(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(latency_ms=150)
    started = time.perf_counter()
    assert crm.get(CONTACTS).status_code == 200
    assert time.perf_counter() - started >= 0.15
