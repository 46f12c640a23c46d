"""The HubSpot dialect against the real sandbox server, with faults and rate limits switched on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from bulk_pipeline import api
from bulk_pipeline.config import SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import TargetConfigError
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.base import BatchResult, FailureKind
from bulk_pipeline.targets.http import RetryPolicy
from bulk_pipeline.targets.hubspot.dialect import hubspot_budget
from bulk_pipeline.targets.runner import AsyncTarget, SyncTarget


def contacts(n: int, start: int = 0) -> list[dict[str, str | None]]:
    return [
        {"email": f"user{i}@example.com", "first_name": f"User{i}", "city": "Lyon"}
        for i in range(start, start + n)
    ]


def settings(sandbox: RunningSandbox, token: str | None = None) -> dict[str, str]:
    return {SANDBOX_URL_ENV: sandbox.url, SANDBOX_TOKEN_ENV: token or sandbox.token}


def target_for(sandbox: RunningSandbox, retry: RetryPolicy | None = None) -> SyncTarget:
    """A target with a budget of its own, so no other test's learnt limits carry over."""
    return open_target("sandbox", settings(sandbox), retry=retry, budget=hubspot_budget())


def async_target_for(
    sandbox: RunningSandbox, concurrency: int, retry: RetryPolicy | None = None
) -> AsyncTarget:
    return open_async_target(
        "sandbox",
        settings(sandbox),
        concurrency=concurrency,
        retry=retry,
        budget=hubspot_budget(),
    )


def assert_no_duplicate_emails(sandbox: RunningSandbox, expected: int) -> None:
    emails = Counter(r["properties"]["email"] for r in sandbox.admin.records("contacts"))
    assert sum(emails.values()) == expected
    assert max(emails.values()) == 1
    assert sandbox.admin.counts()["contacts"] == expected


@pytest.mark.timeout(180)
def test_upsert_of_5000_contacts_survives_faults_and_paces_to_the_rate_limit(
    sandbox: RunningSandbox,
) -> None:
    sandbox.admin.configure(
        error_rate=0.10, drop_rate=0.02, rate_limit={"max": 50, "interval_ms": 10_000}, seed=11
    )
    records = contacts(5000)
    target = target_for(sandbox)
    try:
        started = time.monotonic()
        result = target.upsert(Entity.CONTACTS, records)
        elapsed = time.monotonic() - started
    finally:
        target.close()

    assert not result.failed
    assert [w.index for w in result.successful] == list(range(5000))
    assert_no_duplicate_emails(sandbox, 5000)
    requests = sandbox.admin.stats()["requests"]
    assert requests["by_status"].get("500", 0) + requests["by_status"].get("503", 0) > 0
    assert requests["dropped"] > 0
    # 50 batches + retries at 50 requests per 10 s: paced, not bounced off the limit.
    assert requests["rate_limited"] <= 2
    assert elapsed >= 9.0


def test_create_writes_the_good_records_and_reports_each_bad_one(sandbox: RunningSandbox) -> None:
    target = target_for(sandbox)
    try:
        seeded = [contacts(1, 10)[0], contacts(1, 70)[0]]
        existing = target.upsert(Entity.CONTACTS, seeded)
        existing_ids = {seeded[w.index]["email"]: w.id for w in existing.successful}
        records = contacts(100)
        for bad in (5, 50, 97):
            records[bad] = {"email": f"broken-address-{bad}", "first_name": "Bad"}
        result = target.create(Entity.CONTACTS, records)
    finally:
        target.close()

    assert len(result.successful) == 95
    assert all(w.created for w in result.successful)
    failed = {f.index: f for f in result.failed}
    assert sorted(failed) == [5, 10, 50, 70, 97]
    for bad in (5, 50, 97):
        assert failed[bad].kind is FailureKind.INVALID
        assert f"broken-address-{bad}" in failed[bad].message
    for dup in (10, 70):
        assert failed[dup].kind is FailureKind.CONFLICT
        record = failed[dup].existing
        assert record is not None
        assert record.id == existing_ids[f"user{dup}@example.com"]
    assert_no_duplicate_emails(sandbox, 97)


@pytest.mark.timeout(120)
def test_creates_whose_answers_are_lost_never_make_duplicates(sandbox: RunningSandbox) -> None:
    """Every answer is cut after the write for a while; the creates must be read back, not
    resent."""
    sandbox.admin.configure(drop_rate=1.0)
    target = target_for(sandbox, RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=2))
    results = []
    records = contacts(250)
    worker = threading.Thread(
        target=lambda: results.append(target.create(Entity.CONTACTS, records))
    )
    worker.start()
    time.sleep(2.0)
    sandbox.admin.configure(drop_rate=0.0)
    worker.join(timeout=90)
    target.close()

    (result,) = results
    assert not result.failed
    assert len(result.successful) == 250
    assert all(w.created for w in result.successful)
    assert sandbox.admin.stats()["requests"]["dropped"] >= 3
    assert_no_duplicate_emails(sandbox, 250)
    stored = {r["properties"]["email"]: r["id"] for r in sandbox.admin.records("contacts")}
    assert all(stored[records[w.index]["email"] or ""] == w.id for w in result.successful)


def test_a_wrong_token_raises_without_showing_any_token(sandbox: RunningSandbox) -> None:
    wrong = "pat-na1-wrong-0000-1111-2222"
    target = open_target("sandbox", settings(sandbox, wrong), budget=hubspot_budget())
    try:
        with pytest.raises(TargetConfigError) as caught:
            target.upsert(Entity.CONTACTS, contacts(3))
    finally:
        target.close()
    assert "HTTP 401" in str(caught.value)
    for secret in (wrong, sandbox.token):
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
    assert sandbox.admin.counts().get("contacts", 0) == 0


@pytest.mark.timeout(120)
def test_async_target_with_four_batches_in_flight(sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(error_rate=0.10, drop_rate=0.02, seed=5)

    async def push() -> None:
        target = async_target_for(sandbox, 4)
        try:
            created = await api.async_create_many("contacts", contacts(1500), target=target)
            assert not created.failed
            upserted = await api.async_upsert_many("contacts", contacts(1000, 1000), target=target)
            assert not upserted.failed
            assert sorted(w.index for w in upserted.successful) == list(range(1000))
            # The first 500 existed: none reads as created. The other 500 read as created,
            # except those whose batch answer was lost and resent (HubSpot then says "not
            # new": the dialect's documented limit), so they are counted, not pinned.
            created = {w.index for w in upserted.successful if w.created}
            assert created <= set(range(500, 1000))
            assert len(created) >= 300
            found = await api.async_get_many(
                "contacts",
                ["USER1@example.com", "nobody@example.com"],
                id_property="email",
                target=target,
            )
            assert list(found) == ["user1@example.com"]
        finally:
            await target.aclose()

    asyncio.run(push())
    assert_no_duplicate_emails(sandbox, 2000)


def test_public_api_on_the_named_sandbox_target(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SANDBOX_URL_ENV, sandbox.url)
    monkeypatch.setenv(SANDBOX_TOKEN_ENV, sandbox.token)
    created = api.create_many("contacts", contacts(3))
    ids = [w.id for w in created.successful]
    assert len(ids) == 3

    updated = api.update_many(
        "contacts", [{"id": ids[0], "city": "Nantes", "phone": ""}, {"id": "", "city": "X"}]
    )
    assert [(w.index, w.id, w.created) for w in updated.successful] == [(0, ids[0], False)]
    assert [f.index for f in updated.failed] == [1]

    read = api.get_many("contacts", ids)
    assert read[ids[0]].fields["city"] == "Nantes"
    assert read[ids[0]].fields["first_name"] == "User0"

    archived = api.archive_many("contacts", ids[:2])
    assert len(archived.successful) == 2
    assert sandbox.admin.counts()["contacts"] == 1

    async_result = asyncio.run(api.async_upsert_many("contacts", contacts(3), max_concurrent=2))
    assert [w.created for w in async_result.successful] == [True, True, False]


def test_companies_and_deals_upsert_by_their_keys(sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(search_rate_limit={"max": 4, "interval_ms": 1000})
    target = target_for(sandbox)
    try:
        companies = [
            {"name": f"Company {i}", "domain": f"co{i}.example", "number_of_employees": str(i)}
            for i in range(150)
        ]
        first = target.upsert(Entity.COMPANIES, companies)
        assert not first.failed
        assert all(w.created for w in first.successful)
        again = [{**c, "domain": (c["domain"] or "").upper(), "city": "Oslo"} for c in companies]
        second = target.upsert(Entity.COMPANIES, again)
        assert not second.failed
        assert [w.id for w in second.successful] == [w.id for w in first.successful]
        assert not any(w.created for w in second.successful)
        conflict = api.create_many(
            "companies", [{"name": "Dup", "domain": "CO7.example"}], target=target
        )
        assert conflict.failed[0].kind is FailureKind.CONFLICT
        existing = conflict.failed[0].existing
        assert existing is not None and existing.id == first.successful[7].id

        deals = [
            {"name": f"Deal {i}", "amount": str(i * 100), "stage": "qualifiedtobuy"}
            for i in range(120)
        ]
        assert all(w.created for w in target.upsert(Entity.DEALS, deals).successful)
        changed = target.upsert(Entity.DEALS, [{**d, "stage": "closedwon"} for d in deals])
        assert not any(w.created for w in changed.successful)
    finally:
        target.close()
    counts = sandbox.admin.counts()
    assert (counts["companies"], counts["deals"]) == (150, 120)
    stages = {r["properties"].get("dealstage") for r in sandbox.admin.records("deals")}
    assert stages == {"closedwon"}
    requests = sandbox.admin.stats()["requests"]
    assert requests["rate_limited"] == 0


@pytest.mark.timeout(120)
def test_async_creates_whose_answers_are_lost_never_make_duplicates(
    sandbox: RunningSandbox,
) -> None:
    sandbox.admin.configure(drop_rate=1.0)

    async def push() -> BatchResult:
        target = async_target_for(
            sandbox, 4, RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=2)
        )
        try:
            pushing = asyncio.create_task(target.create(Entity.CONTACTS, contacts(800)))
            await asyncio.sleep(2.0)
            sandbox.admin.configure(drop_rate=0.0)
            return await pushing
        finally:
            await target.aclose()

    result = asyncio.run(push())
    assert not result.failed
    assert len(result.successful) == 800
    assert sandbox.admin.stats()["requests"]["dropped"] >= 4
    assert_no_duplicate_emails(sandbox, 800)


def test_one_budget_is_shared_by_threads_and_the_async_target(sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(rate_limit={"max": 20, "interval_ms": 2000})
    first = open_target("sandbox", settings(sandbox))
    second = open_target("sandbox", settings(sandbox))
    third = open_async_target("sandbox", settings(sandbox), concurrency=4)
    assert first.exchange.budget is second.exchange.budget is third.exchange.budget
    results: list[BatchResult] = []

    def sync_push(target: SyncTarget, start: int) -> None:
        results.append(target.upsert(Entity.CONTACTS, contacts(1500, start)))

    async def async_push() -> None:
        results.append(await third.upsert(Entity.CONTACTS, contacts(1500, 3000)))
        await third.aclose()

    threads = [
        threading.Thread(target=sync_push, args=(first, 0)),
        threading.Thread(target=sync_push, args=(second, 1500)),
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    asyncio.run(async_push())
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    first.close()
    second.close()

    assert sum(len(r.successful) for r in results) == 4500
    assert not any(r.failed for r in results)
    assert sandbox.admin.stats()["requests"]["rate_limited"] == 0
    assert elapsed >= 4.0  # 45 requests at 20 per 2 s
    assert_no_duplicate_emails(sandbox, 4500)
