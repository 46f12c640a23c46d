"""The Pipedrive dialect's limits: token costs per the spec, the daily budget and its reset, burst
and search windows with their headers, and the block for clients that ignore 429."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from bulk_pipeline.sandbox.pipedrive.costs import TOKEN_COSTS
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.pipedrive.conftest import (
    DEALS,
    NOTES,
    ORGANIZATIONS,
    PERSONS,
    data,
    person,
)
from bulk_pipeline_tests.specs import load_spec

WINDOW_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
BUDGET_HEADERS = ("x-daily-ratelimit-token-limit", "x-daily-ratelimit-token-remaining")


def spec_cost(method: str, path: str) -> int:
    """The operation's ``x-token-cost`` in the committed spec fixture (not the sandbox's table)."""
    version, template = path.removeprefix("/api/").split("/", 1)
    spec = load_spec("pipedrive", f"{version}.json")
    return int(spec["paths"][f"/{template}"][method.lower()]["x-token-cost"])


def remaining(answer: httpx.Response) -> int:
    return int(answer.headers["x-daily-ratelimit-token-remaining"])


def test_every_call_costs_what_the_spec_says(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(pipedrive={"daily_budget": 100_000})
    ada = person(pipedrive, "Ada", "ada@example.com")
    calls = [
        ("GET", PERSONS, f"{PERSONS}", None),
        ("GET", f"{PERSONS}/{{id}}", f"{PERSONS}/{ada['id']}", None),
        ("PATCH", f"{PERSONS}/{{id}}", f"{PERSONS}/{ada['id']}", {"name": "Ada L"}),
        ("GET", f"{PERSONS}/search", f"{PERSONS}/search?term=ada", None),
        ("GET", "/api/v2/itemSearch", "/api/v2/itemSearch?term=ada", None),
        ("POST", ORGANIZATIONS, ORGANIZATIONS, {"name": "Acme"}),
        ("POST", DEALS, DEALS, {"title": "Big"}),
        ("GET", "/api/v2/stages", "/api/v2/stages", None),
        ("GET", "/api/v2/dealFields", "/api/v2/dealFields", None),
        ("POST", NOTES, NOTES, {"content": "x", "person_id": ada["id"]}),
        ("GET", NOTES, NOTES, None),
        ("GET", "/api/v1/users/me", "/api/v1/users/me", None),
        ("GET", "/api/v1/users/find", "/api/v1/users/find?term=ada", None),
        ("GET", f"{PERSONS}/{{id}}", f"{PERSONS}/999", None),
        ("DELETE", f"{PERSONS}/{{id}}", f"{PERSONS}/{ada['id']}", None),
    ]
    before = remaining(pipedrive.get("/api/v1/users/me"))
    for method, template, url, body in calls:
        answer = pipedrive.request(method, url, json=body)
        assert answer.status_code in (200, 404), answer.text
        after = remaining(answer)
        assert before - after == spec_cost(method, template), f"{method} {template}"
        before = after
    used = sandbox.admin.limits("pipedrive")["tokens_used"]
    assert 100_000 - used == before


def test_the_cost_table_is_the_specs(sandbox: RunningSandbox) -> None:
    """costs.py is derived from the vendor specs; every operation the fixtures keep agrees."""
    checked = 0
    for version in ("v1", "v2"):
        for template, operations in load_spec("pipedrive", f"{version}.json")["paths"].items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "x-token-cost" in operation:
                    key = (method.upper(), f"/api/{version}{template}")
                    assert TOKEN_COSTS[key] == operation["x-token-cost"], key
                    checked += 1
    assert checked > 50


def test_the_daily_budget_runs_out_and_comes_back(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(pipedrive={"daily_budget": 12})
    first = pipedrive.post(PERSONS, json={"name": "A"})
    assert first.headers["x-daily-ratelimit-token-limit"] == "12"
    assert remaining(first) == 7
    assert first.headers["x-daily-requests-left"] == "7", "documented for POST with an api_token"
    assert remaining(pipedrive.post(PERSONS, json={"name": "B"})) == 2
    refused = pipedrive.post(PERSONS, json={"name": "C"})
    assert refused.status_code == 429
    assert refused.json() == {
        "success": False,
        "error": "daily request budget exceeded",
        "errorCode": 429,
    }
    midnight = datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
    )
    to_midnight = (midnight - datetime.now(UTC)).total_seconds()
    assert abs(int(refused.headers["Retry-After"]) - to_midnight) <= 2
    assert remaining(refused) == 2
    assert data(pipedrive.get(f"{PERSONS}/1"))["name"] == "A", "2 tokens still buy a read by id"
    assert [p["name"] for p in sandbox.admin.records("persons", dialect="pipedrive")] == ["A", "B"]

    sandbox.admin.reset_limits()
    assert pipedrive.post(PERSONS, json={"name": "C"}).status_code == 200
    assert pipedrive.post(PERSONS, json={"name": "D"}).status_code == 200
    assert pipedrive.post(PERSONS, json={"name": "E"}).status_code == 429

    sandbox.admin.configure(pipedrive={"clock_offset_s": 86_400})
    tomorrow = pipedrive.post(PERSONS, json={"name": "E"})
    assert tomorrow.status_code == 200, "a new UTC day brings the whole budget back"
    assert remaining(tomorrow) == 7


def test_the_budget_resets_at_utc_midnight(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    offset = (midnight - now).total_seconds() - 2.0
    sandbox.admin.configure(pipedrive={"daily_budget": 5, "clock_offset_s": offset})
    assert pipedrive.post(PERSONS, json={"name": "A"}).status_code == 200
    refused = pipedrive.post(PERSONS, json={"name": "B"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] in ("1", "2"), "seconds until the sandbox's midnight"
    time.sleep(float(refused.headers["Retry-After"]) + 0.2)
    assert pipedrive.post(PERSONS, json={"name": "B"}).status_code == 200


def test_spent_tokens_stay_spent_when_settings_change(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(pipedrive={"daily_budget": 10})
    pipedrive.post(PERSONS, json={"name": "A"})
    sandbox.admin.configure(pipedrive={"burst_limit": {"max": 50, "interval_ms": 2000}})
    assert remaining(pipedrive.get(f"{PERSONS}/1")) == 4


def test_the_burst_window_and_its_headers(pipedrive: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(pipedrive={"burst_limit": RateLimit(3, 60_000), "block_after": None})
    answers = [pipedrive.get(PERSONS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
    assert {a.headers["x-ratelimit-limit"] for a in answers} == {"3"}
    assert 59 <= int(answers[0].headers["x-ratelimit-reset"]) <= 60
    refused = pipedrive.post(PERSONS, json={"name": "A"})
    assert refused.status_code == 429
    assert refused.json()["success"] is False and refused.json()["errorCode"] == 429
    assert 58 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert sandbox.admin.counts("pipedrive").get("persons") is None, "a refused call does nothing"
    assert sandbox.admin.limits("pipedrive")["tokens_used"] == 30, "nor costs anything"
    assert sandbox.admin.requests("pipedrive")["rate_limited"] == 1

    oauth = {"x-api-token": "", "Authorization": f"Bearer {sandbox.token}"}
    assert pipedrive.get(PERSONS, headers=oauth).status_code == 200, "an OAuth token has its own"

    sandbox.admin.configure(pipedrive={"burst_limit": RateLimit(2, 300)})
    assert [pipedrive.get(PERSONS).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(0.35)
    assert pipedrive.get(PERSONS).status_code == 200, "the window rolls"


def test_search_has_its_own_window(pipedrive: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(
        pipedrive={"burst_limit": RateLimit(4, 60_000), "search_limit": RateLimit(2, 60_000)}
    )
    searches = [pipedrive.get(f"{PERSONS}/search", params={"term": "ada"}) for _ in range(2)]
    assert [s.headers["x-ratelimit-limit"] for s in searches] == ["2", "2"]
    refused = pipedrive.get("/api/v2/itemSearch", params={"term": "ada"})
    assert refused.status_code == 429
    lists = [pipedrive.get(PERSONS) for _ in range(4)]
    assert [a.status_code for a in lists] == [200] * 4, "search calls spend no burst slots"
    assert lists[0].headers["x-ratelimit-limit"] == "4"


def test_the_default_windows_are_pipedrives(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(
        pipedrive={"plan": "growth", "seats": 2, "search_limit": RateLimit(10, 2000)}
    )
    config = sandbox.admin.configure(pipedrive={})
    assert config["pipedrive"]["daily_budget"] == 30_000 * 2 * 2
    assert config["pipedrive"]["burst_limit"] == {"max": 40, "interval_ms": 2000}
    assert config["pipedrive"]["oauth_burst_limit"] == {"max": 160, "interval_ms": 2000}
    answer = pipedrive.get(PERSONS)
    assert answer.headers["x-ratelimit-limit"] == "40"
    assert answer.headers["x-daily-ratelimit-token-limit"] == "120000"
    search = pipedrive.get(f"{PERSONS}/search", params={"term": "ada"})
    assert search.headers["x-ratelimit-limit"] == "10"
    with httpx.Client(base_url=f"{sandbox.url}/_sandbox", trust_env=False) as raw:
        assert raw.post("/config", json={"pipedrive": {"plan": "platinum"}}).status_code == 400
        assert raw.post("/config", json={"pipedrive": {"budget": 5}}).status_code == 400
        assert raw.post("/config", json={"pipedrive": 5}).status_code == 400


def test_headers_on_every_answer_after_a_valid_token(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    answers = {
        "200": pipedrive.get(PERSONS),
        "400": pipedrive.post(PERSONS, json={"name": 5}),
        "404": pipedrive.get(f"{PERSONS}/999"),
        "404 path": pipedrive.get("/api/v2/products"),
    }
    sandbox.admin.configure(error_rate=1.0)
    answers["5xx"] = pipedrive.get(PERSONS)
    sandbox.admin.configure(error_rate=0.0, pipedrive={"burst_limit": RateLimit(1, 60_000)})
    pipedrive.get(PERSONS)
    answers["429"] = pipedrive.get(PERSONS)
    for label, answer in answers.items():
        missing = [h for h in (*WINDOW_HEADERS, *BUDGET_HEADERS) if h not in answer.headers]
        assert not missing, f"{label} answer lacks {missing}"
    assert "x-daily-requests-left" not in answers["200"].headers, "POST and PUT only"
    oauth = pipedrive.post(
        PERSONS,
        json={"name": "A"},
        headers={"x-api-token": "", "Authorization": f"Bearer {sandbox.token}"},
    )
    assert "x-daily-requests-left" not in oauth.headers, "api_token requests only"


def test_a_client_that_ignores_429_is_blocked(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(
        pipedrive={"burst_limit": RateLimit(2, 60_000), "block_after": 3, "block_seconds": 0.5}
    )
    statuses = [pipedrive.get(PERSONS).status_code for _ in range(7)]
    assert statuses == [200, 200, 429, 429, 429, 429, 403]
    blocked = pipedrive.get(PERSONS)
    assert blocked.status_code == 403
    assert blocked.headers["content-type"].startswith("text/html")
    assert "Cloudflare" in blocked.text
    assert sandbox.admin.limits("pipedrive")["blocked_for_s"] > 0
    oauth = {"x-api-token": "", "Authorization": f"Bearer {sandbox.token}"}
    assert pipedrive.get(PERSONS, headers=oauth).status_code == 200, "OAuth apps are not blocked"
    time.sleep(0.6)
    assert pipedrive.get(PERSONS).status_code == 429, "after the block, the window still applies"


def test_a_client_that_waits_as_told_is_never_blocked(
    pipedrive: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(
        pipedrive={"burst_limit": RateLimit(1, 300), "block_after": 1, "block_seconds": 60}
    )
    for _ in range(2):
        assert pipedrive.get(PERSONS).status_code == 200
        refused = pipedrive.get(PERSONS)
        assert refused.status_code == 429
        time.sleep(int(refused.headers["Retry-After"]))
    assert pipedrive.get(PERSONS).status_code == 200
    assert sandbox.admin.limits("pipedrive")["blocked_for_s"] == 0
