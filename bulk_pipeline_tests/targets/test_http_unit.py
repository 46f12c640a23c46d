"""Retry decisions, Retry-After parsing, pacing and budgets, on a fake clock (no network)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulk_pipeline.errors import BudgetExhausted, TargetConfigError
from bulk_pipeline.targets.http import (
    ApiRequest,
    Budget,
    CrmClock,
    DailyAllowance,
    Exchange,
    Operation,
    Outcome,
    Pause,
    RetryPolicy,
    RollingWindow,
    Send,
    Verdict,
    exchange,
    parse_retry_after,
    shared_budget,
)
from bulk_pipeline.targets.http.exchange import TransportFailure, classify_transport_error
from bulk_pipeline.targets.http.limits import Slot
from bulk_pipeline.targets.hubspot.dialect import STANDARD_WINDOW, hubspot_budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Reply = httpx.Response | httpx.RequestError


def simulate(
    operation: Operation[Outcome],
    clock: FakeClock,
    reply: Callable[[ApiRequest], Reply],
    *,
    latency: float = 0.0,
) -> tuple[Outcome, list[float], list[float]]:
    """Run an operation on the fake clock: pauses advance it; returns send times and pauses."""
    sends: list[float] = []
    pauses: list[float] = []
    answer: Any = None
    while True:
        try:
            effect = operation.send(answer)
        except StopIteration as stop:
            return stop.value, sends, pauses
        if isinstance(effect, Pause):
            pauses.append(effect.seconds)
            clock.now += effect.seconds
            answer = None
        else:
            assert isinstance(effect, Send)
            sends.append(clock.now)
            clock.now += latency
            answer = reply(effect.request)


def response(status: int, headers: dict[str, str] | None = None, body: Any = None) -> Reply:
    return httpx.Response(
        status, json=body, headers=headers, request=httpx.Request("POST", "https://x/y")
    )


REQUEST = ApiRequest("POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": []})
CREATE = ApiRequest("POST", "/crm/v3/objects/contacts/batch/create", idempotent=False)


def windows(clock: FakeClock, standard: int = 100, search: int = 4) -> Budget:
    """HubSpot-shaped lanes on the fake clock: a ten-second window, and search apart."""
    return Budget(
        {
            "*": (RollingWindow("standard", standard, 10.0, headers=STANDARD_WINDOW, clock=clock),),
            "search": (RollingWindow("search", search, 1.0, clock=clock),),
        }
    )


def setup(
    clock: FakeClock, budget: Budget | None = None, policy: RetryPolicy | None = None
) -> Exchange:
    return Exchange(
        policy=policy or RetryPolicy(),
        budget=budget or windows(clock),
        clock=CrmClock(clock),
        where="https://x (x:443)",
        rng=random.Random(3),
        now=clock,
    )


def run_exchange(
    replies: list[Reply],
    request: ApiRequest = REQUEST,
    policy: RetryPolicy | None = None,
    budget: Budget | None = None,
) -> tuple[Outcome, list[float], list[float]]:
    clock = FakeClock()
    queue = list(replies)
    operation = exchange(request, setup(clock, budget, policy))
    return simulate(operation, clock, lambda _request: queue.pop(0))


# --- Retry-After ---------------------------------------------------------------------------------


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0


def test_retry_after_as_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after("Wed, 01 May 2024 11:59:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "inf", "nan", "Thu, 99 Foo 2024"])
def test_unusable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


# --- backoff and classification -----------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        samples = [policy.backoff(attempt, rng) for _ in range(500)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.9
        assert min(samples) < ceiling * 0.1
    assert policy.delay(1, rng, retry_after=12.0) == 12.0
    assert RetryPolicy(max_retry_after=60).delay(1, rng, retry_after=3600.0) == 60.0


def test_which_statuses_are_retried() -> None:
    assert all(RetryPolicy.retries_status(s) for s in (429, 500, 502, 503, 504))
    assert not any(RetryPolicy.retries_status(s) for s in (400, 401, 403, 404, 409, 422))


def test_transport_errors_are_classified_by_whether_the_request_may_have_arrived() -> None:
    request = httpx.Request("POST", "https://x")
    expected = {
        httpx.ConnectError: TransportFailure.NOT_SENT,
        httpx.ConnectTimeout: TransportFailure.NOT_SENT,
        httpx.PoolTimeout: TransportFailure.NOT_SENT,
        httpx.ReadTimeout: TransportFailure.AMBIGUOUS,
        httpx.WriteTimeout: TransportFailure.AMBIGUOUS,
        httpx.ReadError: TransportFailure.AMBIGUOUS,
        httpx.RemoteProtocolError: TransportFailure.AMBIGUOUS,
        httpx.UnsupportedProtocol: TransportFailure.FATAL,
    }
    for exc_type, kind in expected.items():
        assert classify_transport_error(exc_type("x", request=request)) is kind


# --- the retry loop -------------------------------------------------------------------------------


def test_transient_failures_are_retried_with_backoff_until_an_answer() -> None:
    drop = httpx.RemoteProtocolError("Server disconnected", request=httpx.Request("POST", "x"))
    outcome, sends, pauses = run_exchange([response(503), drop, response(200, body={})])
    assert outcome.verdict is Verdict.OK
    assert outcome.attempts == 3
    assert len(sends) == 3
    assert len(pauses) == 2
    assert pauses[0] <= 0.5
    assert pauses[1] <= 1.0


def test_retry_after_is_honoured() -> None:
    outcome, _, pauses = run_exchange([response(429, {"Retry-After": "7"}), response(200, body={})])
    assert outcome.verdict is Verdict.OK
    assert 7.0 in pauses


def test_attempts_are_bounded_and_the_last_failure_is_kept() -> None:
    outcome, sends, _ = run_exchange(
        [response(500, body={"message": "boom"})] * 5, policy=RetryPolicy(max_attempts=5)
    )
    assert outcome.verdict is Verdict.GAVE_UP
    assert outcome.attempts == 5
    assert len(sends) == 5
    assert "HTTP 500" in outcome.failure
    assert "boom" in outcome.failure


def test_client_errors_are_not_retried() -> None:
    outcome, sends, _ = run_exchange([response(409, body={"category": "CONFLICT"})])
    assert outcome.verdict is Verdict.REJECTED
    assert len(sends) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_raise_a_configuration_error_naming_the_crm(status: int) -> None:
    with pytest.raises(TargetConfigError) as caught:
        run_exchange([response(status)])
    assert f"HTTP {status}" in str(caught.value)
    assert "x:443" in str(caught.value)


def test_the_retry_window_bounds_the_time_spent_whatever_the_attempts() -> None:
    """A CRM that stays down is given ``max_elapsed`` seconds, not attempts x backoff."""
    policy = RetryPolicy(max_attempts=1000, base_delay=5.0, max_delay=5.0, max_elapsed=30.0)
    clock = FakeClock()
    refused = httpx.ConnectError("refused", request=httpx.Request("POST", "x"))
    outcome, sends, _ = simulate(
        exchange(REQUEST, setup(clock, policy=policy)), clock, lambda _r: refused, latency=1.0
    )
    assert outcome.verdict is Verdict.GAVE_UP
    assert clock.now - 1000.0 <= 30.0 + 1.0
    assert len(sends) >= 5


def test_a_preflight_request_gives_up_sooner_than_the_window() -> None:
    clock = FakeClock()
    refused = httpx.ConnectError("refused", request=httpx.Request("GET", "x"))
    quick = ApiRequest("GET", "/check", patience=5.0)
    outcome, _, _ = simulate(
        exchange(quick, setup(clock, policy=RetryPolicy(max_attempts=1000))),
        clock,
        lambda _r: refused,
        latency=1.0,
    )
    assert outcome.verdict is Verdict.GAVE_UP
    assert clock.now - 1000.0 <= 6.0


def test_a_create_is_not_resent_after_a_failure_that_may_have_applied_it() -> None:
    timeout = httpx.ReadTimeout("timed out", request=httpx.Request("POST", "x"))
    outcome, sends, _ = run_exchange([timeout], request=CREATE)
    assert outcome.verdict is Verdict.AMBIGUOUS
    assert len(sends) == 1
    outcome, sends, _ = run_exchange([response(502)], request=CREATE)
    assert outcome.verdict is Verdict.AMBIGUOUS


def test_a_create_is_resent_when_it_surely_did_not_arrive() -> None:
    refused = httpx.ConnectError("refused", request=httpx.Request("POST", "x"))
    outcome, sends, _ = run_exchange(
        [refused, response(429), response(201, body={})], request=CREATE
    )
    assert outcome.verdict is Verdict.OK
    assert len(sends) == 3


# --- pacing ---------------------------------------------------------------------------------------


def max_in_any_window(times: list[float], interval: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - interval:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_limiter_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limiter = RollingWindow("w", 3, 10.0, clock=clock)
    slots = [limiter.take() for _ in range(3)]
    assert all(isinstance(s, Slot) for s in slots)
    clock.now += 4.0
    assert limiter.take() == pytest.approx(6.0)
    clock.now += 6.0
    assert isinstance(limiter.take(), Slot)


def test_a_request_counts_from_when_its_answer_arrived() -> None:
    clock = FakeClock()
    limiter = RollingWindow("w", 1, 10.0, clock=clock)
    slot = limiter.take()
    assert isinstance(slot, Slot)
    clock.now += 3.0
    limiter.settle(slot, None)
    clock.now += 8.0
    assert limiter.take() == pytest.approx(2.0)


def test_limiter_adopts_the_advertised_limit_and_remaining_budget() -> None:
    clock = FakeClock()
    limiter = RollingWindow("w", 100, 10.0, headers=STANDARD_WINDOW, clock=clock)
    limiter.observe_headers(
        {
            "X-HubSpot-RateLimit-Max": "50",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "5000",
            "X-HubSpot-RateLimit-Remaining": "10",
        }
    )
    assert (limiter.max_requests, limiter.interval) == (50, 5.0)
    assert limiter.in_window() == 40
    granted = [limiter.take() for _ in range(11)]
    assert sum(isinstance(g, Slot) for g in granted) == 10
    assert granted[-1] == pytest.approx(5.0)


def test_remaining_is_compared_with_the_window_as_it_was_when_the_request_went() -> None:
    """Our own slots expiring while a request is in flight are not mistaken for other clients."""
    clock = FakeClock()
    limiter = RollingWindow("w", 10, 10.0, clock=clock)
    old = [limiter.take() for _ in range(5)]
    clock.now += 9.9
    sent = limiter.take()
    assert isinstance(sent, Slot)
    clock.now += 0.2  # the 5 old slots expire before the answer arrives
    limiter.settle(sent, None)
    limiter.observe(remaining=4, sent=sent)  # the server counted 6 at admission: all ours
    assert limiter.in_window() == 1
    assert all(isinstance(s, Slot) for s in old)


def test_requests_of_other_clients_are_counted_once() -> None:
    clock = FakeClock()
    limiter = RollingWindow("w", 100, 10.0, clock=clock)
    first, second = limiter.take(), limiter.take()
    assert isinstance(first, Slot)
    assert isinstance(second, Slot)
    # Someone else sent 30 requests; both answers report it. The first answer cannot tell
    # whether our second request overtook the first, so it assumes so.
    limiter.observe(remaining=100 - 31, sent=first)
    assert limiter.in_window() == 2 + 29
    limiter.observe(remaining=100 - 32, sent=second)
    assert limiter.in_window() == 2 + 30
    # A later answer learns of 10 more.
    third = limiter.take()
    assert isinstance(third, Slot)
    limiter.observe(remaining=100 - 43, sent=third)
    assert limiter.in_window() == 3 + 40


def test_a_429_without_headers_fills_the_window() -> None:
    clock = FakeClock()
    standard = RollingWindow("w", 10, 10.0, headers=STANDARD_WINDOW, clock=clock)
    search = RollingWindow("s", 4, 1.0, clock=clock)
    slot = standard.take()
    standard.settle(slot, httpx.Response(429))
    assert standard.in_window() == 10
    assert search.in_window() == 0


def test_a_429_without_headers_teaches_a_learning_window_the_lower_limit() -> None:
    """A CRM that lowered its limit (5 a second where 25 are advertised) and announces no
    window: the first refusal sets the limit to what went through before it; after the
    recovery time without a refusal it grows back one request at a time, to the advertised
    limit at most."""
    clock = FakeClock()
    window = RollingWindow("writes", 25, 1.0, clock=clock, learn_from_refusals=True, recovery=30.0)
    slots: list[Any] = [window.take() for _ in range(6)]
    assert all(isinstance(s, Slot) for s in slots)
    for slot in slots[:5]:
        window.settle(slot, httpx.Response(200))
    window.settle(slots[5], httpx.Response(429))
    assert window.state().limit == 5
    clock.now += 1.0
    sent = [window.take() for _ in range(6)]
    assert [isinstance(s, Slot) for s in sent] == [True] * 5 + [False]
    clock.now += 31.0
    window.take()
    assert window.state().limit == 6
    for _ in range(100):
        clock.now += 31.0
        window.take()
    assert window.state().limit == 25


def test_refusals_of_requests_sent_together_teach_the_limit_whatever_their_order() -> None:
    """Eight requests in flight, five let through: the refused ones may have left in any order
    and their 429s come back before the answers of the others."""
    clock = FakeClock()
    window = RollingWindow("writes", 25, 1.0, clock=clock, learn_from_refusals=True)
    slots: list[Any] = [window.take() for _ in range(8)]
    for refused in (slots[1], slots[6], slots[7]):
        window.settle(refused, httpx.Response(429))
    assert window.state().limit == 5


def test_a_window_that_does_not_learn_keeps_its_limit_after_a_429() -> None:
    clock = FakeClock()
    window = RollingWindow("w", 25, 1.0, clock=clock)
    slot = window.take()
    window.settle(slot, httpx.Response(429))
    assert window.state().limit == 25


def test_a_long_push_runs_at_the_ceiling_without_exceeding_it() -> None:
    """300 requests through exchange() on a fake clock: the window is never exceeded and the
    push takes as long as the limit requires, not longer."""
    clock = FakeClock()
    shared = setup(clock)
    sends: list[float] = []
    for _ in range(300):
        outcome, sent, _ = simulate(
            exchange(REQUEST, shared),
            clock,
            lambda _r: response(200, body={}),
            latency=0.01,
        )
        assert outcome.verdict is Verdict.OK
        sends += sent
    assert max_in_any_window(sends, 10.0) == 100
    assert 20.0 <= sends[-1] - sends[0] <= 21.5


def test_search_has_its_own_budget() -> None:
    clock = FakeClock()
    shared = setup(clock)
    search = ApiRequest("POST", "/crm/v3/objects/companies/search", kind="search")
    sends: list[float] = []
    for _ in range(12):
        _, sent, _ = simulate(exchange(search, shared), clock, lambda _r: response(200, body={}))
        sends += sent
    assert max_in_any_window(sends, 1.0) == 4
    standard = shared.budget.lanes["*"][0]
    assert isinstance(standard, RollingWindow)
    assert standard.in_window() == 0


def test_limiter_is_shared_safely_between_threads() -> None:
    limiter = RollingWindow("w", 5, 0.5)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            while True:
                got = limiter.take()
                if isinstance(got, Slot):
                    with lock:
                        stamps.append(time.monotonic())
                    limiter.settle(got, None)
                    break
                time.sleep(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stamps) == 20
    assert max_in_any_window(stamps, 0.5) <= 5


def test_hubspots_daily_limit_429_stops_with_the_reset_time_instead_of_retrying() -> None:
    daily = response(429, {"Retry-After": "40000"}, {"policyName": "DAILY", "message": "daily"})
    with pytest.raises(BudgetExhausted) as caught:
        run_exchange([daily], budget=hubspot_budget())
    assert caught.value.budget == "daily request limit"
    assert caught.value.resume_at > datetime.now(UTC) + timedelta(seconds=39_000)
    assert "daily request limit" in str(caught.value)


def test_a_daily_allowance_stops_before_the_request_that_would_overspend_it(
    tmp_path: Path,
) -> None:
    """No request goes out once what is left today cannot pay for it; the CRM's own count
    (a remaining header) wins over ours, and the stop is remembered for other processes."""
    state = tmp_path / "budget.json"
    daily = DailyAllowance("daily token budget", 100, remaining_header="x-left", state_file=state)
    budget = Budget({"*": (daily,)}, cost=lambda _request: 30)
    clock = FakeClock()
    shared = setup(clock, budget)
    sent = 0

    def answer(_request: ApiRequest) -> Reply:
        nonlocal sent
        sent += 1
        return response(200, {"x-left": str(100 - 40 * sent)}, body={})

    for _ in range(2):
        outcome, _, _ = simulate(exchange(REQUEST, shared), clock, answer)
        assert outcome.verdict is Verdict.OK
    assert daily.state().remaining == 20
    with pytest.raises(BudgetExhausted) as caught:
        simulate(exchange(REQUEST, shared), clock, answer)
    assert sent == 2
    assert caught.value.resume_at.hour == 0
    other_process = DailyAllowance("daily token budget", 100, state_file=state)
    with pytest.raises(BudgetExhausted):
        other_process.take(1)


def test_budgets_are_shared_per_account_within_a_process() -> None:
    first = shared_budget("account-a", lambda: Budget({"*": ()}))
    assert shared_budget("account-a", lambda: Budget({"*": ()})) is first
    assert shared_budget("account-b", lambda: Budget({"*": ()})) is not first


def test_the_crm_clock_keeps_the_tightest_bound_its_whole_second_dates_give() -> None:
    """The CRM's true time is 12:00:00.700 when the first answer arrives: its Date says
    12:00:00. An answer 0.5 s later says 12:00:01, which bounds the time from below more
    tightly; one after it with an earlier second changes nothing; a date far below means the
    CRM's clock was set back, and the clock follows it."""
    monotonic = FakeClock()
    clock = CrmClock(monotonic)
    assert clock.now() is None

    clock.observe("Mon, 30 Nov 2026 12:00:00 GMT")
    assert clock.now() == datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    monotonic.now += 0.5
    clock.observe("Mon, 30 Nov 2026 12:00:01 GMT")
    monotonic.now += 0.3
    clock.observe("Mon, 30 Nov 2026 12:00:00 GMT")
    assert clock.now() == datetime(2026, 11, 30, 12, 0, 1, 300_000, tzinfo=UTC)

    monotonic.now += 1.0
    clock.observe("Mon, 30 Nov 2026 11:59:50 GMT")
    assert clock.now() == datetime(2026, 11, 30, 11, 59, 50, tzinfo=UTC)
