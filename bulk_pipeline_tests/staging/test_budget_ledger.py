"""Rolling windows shared through PostgreSQL: several processes' budgets for one CRM account stay
under its limit together. Each budget here has its own ledger connection, as separate processes
(or machines) would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bulk_pipeline import config
from bulk_pipeline.staging.budget_ledger import PostgresWindowLedger, shared_ledger
from bulk_pipeline.staging.postgres_store import StagingDatabaseError
from bulk_pipeline.targets.http.exchange import ApiRequest
from bulk_pipeline.targets.http.limits import Budget, RollingWindow, SharedWindow
from bulk_pipeline.targets.registry import account_budget, entry

pytestmark = pytest.mark.needs_postgres
WINDOW = "hubspot:https://api.example.test#abc | ten-secondly request limit"


@pytest.fixture
def ledgers(postgres_url: str) -> Iterator[list[PostgresWindowLedger]]:
    made = [PostgresWindowLedger(postgres_url) for _ in range(3)]
    yield made
    for ledger in made:
        ledger.close()


def test_slots_are_counted_across_ledgers_and_freed_by_time_or_when_given_back(
    ledgers: list[PostgresWindowLedger],
) -> None:
    first, second, _ = ledgers
    slots = [ledger.take(WINDOW, 4, 0.5) for ledger in (first, second, first, second)]
    assert all(isinstance(slot, int) for slot in slots)

    wait = second.take(WINDOW, 4, 0.5)
    assert isinstance(wait, float) and 0 < wait <= 0.5
    assert isinstance(first.take("another account | ten-secondly request limit", 4, 0.5), int)
    first.give_back(int(slots[0]))
    assert isinstance(second.take(WINDOW, 4, 0.5), int)
    time.sleep(0.55)
    assert first.used(WINDOW, 0.5) == 0
    assert isinstance(first.take(WINDOW, 4, 0.5), int)


def test_three_processes_hammering_one_account_never_exceed_its_window(
    ledgers: list[PostgresWindowLedger],
) -> None:
    limit, interval = 20, 0.5
    granted: list[float] = []
    guard = threading.Lock()

    def process(ledger: PostgresWindowLedger) -> None:
        window = SharedWindow(RollingWindow("ten-secondly", limit, interval), ledger, WINDOW)
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            slot = window.take()
            if isinstance(slot, float):
                time.sleep(min(slot, 0.05))
                continue
            with guard:
                granted.append(time.monotonic())
            window.settle(slot, None)

    threads = [threading.Thread(target=process, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    granted.sort()
    slack = 0.02  # the database's clock decides; ours reads it a round trip later
    busiest = max(
        sum(1 for other in granted if at - interval + slack < other <= at) for at in granted
    )
    assert busiest <= limit
    assert len(granted) >= 3 * limit, "the processes together should fill several windows"
    assert len(granted) <= 5 * limit


def test_a_request_refused_by_the_shared_window_gives_its_local_slot_back(
    ledgers: list[PostgresWindowLedger],
) -> None:
    first, second, _ = ledgers
    busy = SharedWindow(RollingWindow("w", 2, 5.0), first, WINDOW)
    idle_local = RollingWindow("w", 2, 5.0)
    idle = SharedWindow(idle_local, second, WINDOW)
    assert not isinstance(busy.take(), float)
    assert not isinstance(busy.take(), float)

    assert isinstance(idle.take(), float)
    assert idle_local.in_window() == 0


def test_with_a_database_url_every_rolling_window_of_a_crm_budget_is_shared(
    postgres_url: str,
) -> None:
    settings = {config.DATABASE_URL_ENV: postgres_url, "HUBSPOT_ACCESS_TOKEN": "pat-test-123456"}
    hubspot = entry("hubspot")

    shared = account_budget(hubspot, settings, "hubspot:x", "hubspot:x at https://h")
    alone = account_budget(hubspot, {}, "hubspot:x", "hubspot:x at https://h")

    def kinds(budget: Budget) -> set[str]:
        return {type(limit).__name__ for limits in budget.lanes.values() for limit in limits}

    assert kinds(shared) == {"SharedWindow", "DailyAllowance"}
    assert kinds(alone) == {"RollingWindow", "DailyAllowance"}
    request = ApiRequest("POST", "/crm/v3/objects/contacts/batch/create", kind="write")
    acquiring = shared.acquire(request)
    with pytest.raises(StopIteration) as granted:
        next(acquiring)
    shared.settle(granted.value.value, httpx.Response(200))

    window = "hubspot:x at https://h | ten-secondly request limit"
    assert shared_ledger(postgres_url).used(window, 10.0) == 1


def test_when_the_database_is_gone_the_request_is_not_sent_and_its_local_slot_comes_back() -> None:
    local = RollingWindow("ten-secondly", 10, 1.0)
    window = SharedWindow(local, PostgresWindowLedger("postgresql://bulk@127.0.0.1:1/none"), WINDOW)

    with pytest.raises(StagingDatabaseError, match=r"127\.0\.0\.1:1"):
        window.take()

    assert local.in_window() == 0
