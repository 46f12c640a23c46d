"""HubSpotTarget against the real sandbox server, with faults and rate limits switched on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from bulk_pipeline import api
from bulk_pipeline.config import SANDBOX_URL_ENV
from bulk_pipeline.entities import Entity
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.targets.base import BatchResult, CrmError
from bulk_pipeline.targets.http import Pacer, RetryPolicy
from bulk_pipeline.targets.hubspot import AsyncHubSpotTarget, HubSpotTarget


def contacts(n: int, start: int = 0) -> list[dict[str, str | None]]:
    return [
        {"email": f"user{i}@example.com", "first_name": f"User{i}", "city": "Lyon"}
        for i in range(start, start + n)
    ]


def target_for(sandbox: RunningSandbox, retry: RetryPolicy | None = None) -> HubSpotTarget:
    """A target with its own pacer, so no other test's learnt limits carry over."""
    return HubSpotTarget(sandbox.url, sandbox.token, name="sandbox", pacer=Pacer(), retry=retry)


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
        result = target.upsert_many(Entity.CONTACTS, records)
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
        existing = target.upsert_many(Entity.CONTACTS, [contacts(1, 10)[0], contacts(1, 70)[0]])
        existing_ids = {w.input["email"]: w.id for w in existing.successful}
        records = contacts(100)
        for bad in (5, 50, 97):
            records[bad] = {"email": f"broken-address-{bad}", "first_name": "Bad"}
        result = target.create_many(Entity.CONTACTS, records)
    finally:
        target.close()

    assert len(result.successful) == 95
    assert all(w.created for w in result.successful)
    failed = {f.index: f for f in result.failed}
    assert sorted(failed) == [5, 10, 50, 70, 97]
    for bad in (5, 50, 97):
        assert failed[bad].category == "VALIDATION_ERROR"
        assert f"broken-address-{bad}" in failed[bad].message
    for dup in (10, 70):
        assert failed[dup].category == "CONFLICT"
        assert f"Existing ID: {existing_ids[f'user{dup}@example.com']}" in failed[dup].message
    assert_no_duplicate_emails(sandbox, 97)


@pytest.mark.timeout(120)
def test_creates_whose_answers_are_lost_never_make_duplicates(sandbox: RunningSandbox) -> None:
    """Every answer is cut after the write for a while; the creates must be read back, not
    resent."""
    sandbox.admin.configure(drop_rate=1.0)
    target = target_for(sandbox, RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=2))
    results = []
    worker = threading.Thread(
        target=lambda: results.append(target.create_many(Entity.CONTACTS, contacts(250)))
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
    assert all(stored[w.input["email"] or ""] == w.id for w in result.successful)


def test_a_wrong_token_raises_without_showing_any_token(sandbox: RunningSandbox) -> None:
    wrong = "pat-na1-wrong-0000-1111-2222"
    target = HubSpotTarget(sandbox.url, wrong, pacer=Pacer())
    try:
        with pytest.raises(CrmError) as caught:
            target.upsert_many(Entity.CONTACTS, contacts(3))
    finally:
        target.close()
    assert caught.value.status == 401
    for secret in (wrong, sandbox.token):
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
    assert sandbox.admin.counts().get("contacts", 0) == 0


@pytest.mark.timeout(120)
def test_async_target_with_four_batches_in_flight(sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(error_rate=0.10, drop_rate=0.02, seed=5)

    async def push() -> None:
        target = AsyncHubSpotTarget(
            sandbox.url, sandbox.token, name="sandbox", max_concurrent=4, pacer=Pacer()
        )
        try:
            created = await api.async_create_many("contacts", contacts(1500), target=target)
            assert not created.failed
            upserted = await api.async_upsert_many("contacts", contacts(1000, 1000), target=target)
            assert not upserted.failed
            assert Counter(w.created for w in upserted.successful) == {False: 500, True: 500}
            found = await api.async_get_many(
                "contacts",
                ["USER1@example.com", "nobody@example.com"],
                id_property="email",
                target=target,
            )
            assert list(found.found) == ["user1@example.com"]
            assert found.missing == ["nobody@example.com"]
        finally:
            await target.aclose()

    asyncio.run(push())
    assert_no_duplicate_emails(sandbox, 2000)


def test_public_api_on_the_named_sandbox_target(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SANDBOX_URL_ENV, sandbox.url)
    created = api.create_many("contacts", contacts(3))
    ids = [w.id for w in created.successful]
    assert len(ids) == 3

    updated = api.update_many(
        "contacts", [{"id": ids[0], "city": "Nantes", "phone": ""}, {"id": "", "city": "X"}]
    )
    assert [(w.index, w.id, w.created) for w in updated.successful] == [(0, ids[0], False)]
    assert updated.successful[0].input["id"] == ids[0]
    assert [f.index for f in updated.failed] == [1]

    read = api.get_many("contacts", ids)
    assert read.found[ids[0]].fields["city"] == "Nantes"
    assert read.found[ids[0]].fields["first_name"] == "User0"

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
        first = target.upsert_many(Entity.COMPANIES, companies)
        assert not first.failed
        assert all(w.created for w in first.successful)
        again = [{**c, "domain": (c["domain"] or "").upper(), "city": "Oslo"} for c in companies]
        second = target.upsert_many(Entity.COMPANIES, again)
        assert not second.failed
        assert [w.id for w in second.successful] == [w.id for w in first.successful]
        assert not any(w.created for w in second.successful)
        conflict = target.create_many(Entity.COMPANIES, [{"name": "Dup", "domain": "CO7.example"}])
        assert conflict.failed[0].category == "CONFLICT"
        assert f"Existing ID: {first.successful[7].id}" in conflict.failed[0].message

        deals = [{"name": f"Deal {i}", "amount": str(i * 100), "stage": "open"} for i in range(120)]
        assert all(w.created for w in target.upsert_many(Entity.DEALS, deals).successful)
        changed = target.upsert_many(Entity.DEALS, [{**d, "stage": "won"} for d in deals])
        assert not any(w.created for w in changed.successful)
    finally:
        target.close()
    counts = sandbox.admin.counts()
    assert (counts["companies"], counts["deals"]) == (150, 120)
    stages = {r["properties"].get("dealstage") for r in sandbox.admin.records("deals")}
    assert stages == {"won"}
    requests = sandbox.admin.stats()["requests"]
    assert requests["rate_limited"] == 0


@pytest.mark.timeout(120)
def test_async_creates_whose_answers_are_lost_never_make_duplicates(
    sandbox: RunningSandbox,
) -> None:
    sandbox.admin.configure(drop_rate=1.0)

    async def push() -> BatchResult:
        target = AsyncHubSpotTarget(
            sandbox.url,
            sandbox.token,
            max_concurrent=4,
            pacer=Pacer(),
            retry=RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=2),
        )
        try:
            pushing = asyncio.create_task(target.create_many(Entity.CONTACTS, contacts(800)))
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


def test_one_pacer_is_shared_by_threads_and_the_async_target(sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(rate_limit={"max": 20, "interval_ms": 2000})
    first = HubSpotTarget(sandbox.url, sandbox.token)
    second = HubSpotTarget(sandbox.url, sandbox.token)
    third = AsyncHubSpotTarget(sandbox.url, sandbox.token, max_concurrent=4)
    assert first.pacer is second.pacer is third.pacer
    results: list[BatchResult] = []

    def sync_push(target: HubSpotTarget, start: int) -> None:
        results.append(target.upsert_many(Entity.CONTACTS, contacts(1500, start)))

    async def async_push() -> None:
        results.append(await third.upsert_many(Entity.CONTACTS, contacts(1500, 3000)))
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
