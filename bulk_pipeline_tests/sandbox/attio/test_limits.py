"""The Attio dialect's limits: reads and writes in separate windows, 429 with an HTTP-date
``Retry-After``, and a refused call that does nothing."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime

import httpx

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.attio.conftest import PEOPLE


def person(index: int) -> dict[str, object]:
    return {"data": {"values": {"email_addresses": [f"p{index}@example.com"]}}}


def test_writes_and_reads_have_separate_windows(
    attio: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(
        attio={
            "write_limit": {"max": 2, "interval_ms": 1000},
            "read_limit": {"max": 3, "interval_ms": 1000},
        }
    )
    assert [attio.post(PEOPLE, json=person(i)).status_code for i in range(3)] == [200, 200, 429]
    assert [attio.post(f"{PEOPLE}/query", json={}).status_code for _ in range(3)] == [200] * 3
    assert attio.get("/v2/objects").status_code == 429
    assert sandbox.admin.counts("attio") == {"people": 2}
    stats = sandbox.admin.requests("attio")
    assert stats["writes"] == 2 and stats["reads"] == 3 and stats["rate_limited"] == 2


def test_a_429_says_when_to_come_back_as_an_http_date(
    attio: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.configure(attio={"write_limit": {"max": 1, "interval_ms": 1500}})
    assert attio.post(PEOPLE, json=person(0)).status_code == 200
    limited = attio.post(PEOPLE, json=person(1))
    assert limited.status_code == 429
    assert limited.json() == {
        "status_code": 429,
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
        "message": "Rate limit exceeded, please try again later",
    }
    when = email.utils.parsedate_to_datetime(limited.headers["Retry-After"])
    wait = (when - datetime.now(UTC)).total_seconds()
    assert 0 < wait <= 2.6
    time.sleep(max(wait, 0) + 0.05)
    assert attio.post(PEOPLE, json=person(1)).status_code == 200


def test_limits_are_documented_defaults_and_can_be_off(sandbox: RunningSandbox) -> None:
    from bulk_pipeline.sandbox.config import SandboxConfig

    assert SandboxConfig().attio.as_json() == {
        "read_limit": {"max": 100, "interval_ms": 1000},
        "write_limit": {"max": 25, "interval_ms": 1000},
    }
    assert sandbox.admin.configure()["attio"] == {"read_limit": None, "write_limit": None}
