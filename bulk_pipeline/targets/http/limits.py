"""What a CRM account may still spend, as small strategies composed per CRM.

A :class:`Budget` belongs to one CRM account and is shared by every target of that account in the
process (:func:`shared_budget`). It routes each request, by its ``kind``, to the limits it spends:

- :class:`RollingWindow`: at most N requests in any rolling interval, learnt from the CRM's headers
  (a ten-second window, a 2-second burst window, reads and writes per second);
- :class:`DailyAllowance`: a number of units per day (requests, or tokens at a cost per call), with
  what is left read from the CRM's headers where it sends them. When it is spent, the next request
  raises ``BudgetExhausted`` with the reset time instead of being sent, so a push stops before a
  storm of 429s; the exhaustion is written under the data home so other processes importing into
  the same account stop too;
- :class:`Cooldown`: a lane held back after the CRM said "too many" (every request of the lane
  waits out the CRM's ``Retry-After``, not only the one refused), or stopped until a given time
  when carrying on would get the client blocked.

Pacing is client-side and never blocks a thread: ``acquire`` is an effect-yielding generator that
pauses (``Pause``) until every limit of the request's lane has room.

Across processes and machines, a rolling window is shared through a :class:`WindowLedger` (a
table in the deployment's PostgreSQL database, ``staging/budget_ledger.py``): every request of
every process against the account takes a slot there too (:class:`SharedWindow`), so N parallel
imports stay under the account's limit together instead of each learning of the others only
from the CRM's headers, after the fact.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from bulk_pipeline.errors import BudgetExhausted
from bulk_pipeline.targets.http.exchange import ApiRequest, Effect, Operation, Pause


@dataclass(frozen=True)
class LimitState:
    """What one limit has left, for people (dry runs, status) and for tests."""

    name: str
    limit: int | None
    remaining: int | None
    resets_at: datetime | None = None
    exhausted_until: datetime | None = None
    unit: str = "requests"
    """What ``limit`` and ``remaining`` count (``requests``, ``tokens``): a cost estimate is
    compared only with limits of its own unit."""

    def describe(self) -> str:
        if self.exhausted_until is not None:
            return f"{self.name}: spent until {self.exhausted_until.isoformat(timespec='seconds')}"
        if self.remaining is None:
            return f"{self.name}: {self.limit if self.limit is not None else 'unknown'} limit"
        limit = f"{self.limit:,}" if self.limit is not None else "?"
        return f"{self.name}: {self.remaining:,} of {limit} {self.unit} left"


class Limit(ABC):
    """One limit of an account. ``take`` either grants a unit of it or says how long to wait."""

    name: str

    @abstractmethod
    def take(self, cost: int) -> object | float:
        """A grant token, or the seconds to wait before asking again; may raise
        ``BudgetExhausted`` when waiting would take until a reset."""

    @abstractmethod
    def settle(self, token: object, response: httpx.Response | None) -> None:
        """The answer arrived (``None``: no answer): learn from its headers."""

    @abstractmethod
    def give_back(self, token: object) -> None:
        """The request was not sent after all (another limit of its lane said wait)."""

    @abstractmethod
    def state(self) -> LimitState | None:
        """What the limit has left; None when it has nothing to say (a lane not held back)."""


# --- rolling windows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowHeaders:
    """The header names by which a CRM announces a rolling window."""

    max: str | None = None
    remaining: str | None = None
    interval_ms: str | None = None
    """The window's length in milliseconds, where the CRM announces it (else fixed)."""


def int_header(headers: Mapping[str, str], name: str | None) -> int | None:
    if name is None:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass
class Slot:
    """One request counted in a window."""

    at: float
    live: bool = True
    """False once superseded by the slot stamped when the answer arrived, or given back."""
    seen: int = 0
    """Requests in the window when this one was sent, itself included."""
    sequence: int = 0
    """How many requests the window had let through when this one went."""
    foreign: int = 0
    """How many requests of others the window had learnt of when this one went."""


class RollingWindow(Limit):
    """At most ``max_requests`` in any rolling ``interval`` seconds; thread-safe, never blocks.

    A request is counted from when it is sent; when its answer arrives it is counted again from
    then instead (the server saw it no later than that), so our window always covers the
    server's. An answer's remaining-requests header is compared with what the window held when
    that request was sent: requests the server counted beyond ours (another process using the same
    account) fill the window as placeholders.

    A CRM that announces no window in its headers may still lower its limit (during an
    incident, or for an account shared with other clients): with ``learn_from_refusals``, a 429
    sets the limit to the requests the window let through before the refused one (those sent
    before it, less those refused too; of several refusals in one interval, the highest count,
    since requests in flight together may arrive out of order), and after ``recovery`` seconds
    without a 429 the limit grows back by one request at a time, up to the advertised one. A push
    then meets a lowered limit with a few 429s, not one in every few calls.
    """

    def __init__(
        self,
        name: str,
        max_requests: int,
        interval: float,
        *,
        headers: WindowHeaders | None = None,
        clock: Callable[[], float] = time.monotonic,
        learn_from_refusals: bool = False,
        recovery: float = 60.0,
    ) -> None:
        if max_requests < 1 or interval <= 0:
            raise ValueError("a rate limit needs max_requests >= 1 and interval > 0")
        self.name = name
        self._max = max_requests
        self._ceiling = max_requests
        self._learns = learn_from_refusals
        self._recovery = recovery
        self._refused_at: float | None = None
        self._refusals: list[tuple[float, int, int]] = []
        """Recent 429s: when, the refused request's sequence, and how many requests the window
        held when it was sent (itself included)."""
        self._interval = interval
        self._headers = headers
        self._clock = clock
        self._lock = threading.Lock()
        self._window: deque[Slot] = deque()
        """Slots in time order; stale and superseded ones are dropped from the left."""
        self._live = 0
        self._sent = 0
        self._foreign = 0

    @property
    def max_requests(self) -> int:
        return self._max

    @property
    def interval(self) -> float:
        return self._interval

    def __repr__(self) -> str:
        return f"RollingWindow({self.name!r}, {self._max} per {self._interval:g}s)"

    def _purge(self, now: float) -> None:
        horizon = now - self._interval
        window = self._window
        while window and (not window[0].live or window[0].at <= horizon):
            if window.popleft().live:
                self._live -= 1

    def _add(self, now: float, count: int = 1) -> None:
        self._window.extend(Slot(now) for _ in range(count))
        self._live += count

    def take(self, cost: int = 1) -> Slot | float:
        """A slot when a request may go now, else the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            self._recover(now)
            self._purge(now)
            if self._live >= self._max:
                return max(self._window[0].at + self._interval - now, 0.001)
            self._live += 1
            self._sent += 1
            slot = Slot(now, seen=self._live, sequence=self._sent, foreign=self._foreign)
            self._window.append(slot)
            return slot

    def settle(self, token: object, response: httpx.Response | None) -> None:
        """The answer arrived: count the request from now, and learn from the headers."""
        assert isinstance(token, Slot)
        with self._lock:
            if token.live:
                token.live = False
                self._live -= 1
                self._add(self._clock())
        if response is not None:
            self.observe_headers(response.headers, token)
            if response.status_code == 429 and (
                self._headers is None or self._headers.remaining not in response.headers
            ):
                if self._learns:
                    self._lower(token)
                self.observe(remaining=0, sent=token)

    def _lower(self, refused: Slot) -> None:
        """A 429 without headers: the CRM let through the requests sent before the refused one
        in its interval, less those it refused too (counted over every refusal of the interval,
        whichever order their answers came back in)."""
        with self._lock:
            now = self._clock()
            self._refusals = [r for r in self._refusals if r[0] > now - self._interval]
            self._refusals.append((now, refused.sequence, refused.seen))
            sequences = sorted(sequence for _, sequence, _ in self._refusals)
            suggested = [
                seen - 1 - sequences.index(sequence) for _, sequence, seen in self._refusals
            ]
            self._max = min(self._ceiling, max(1, *suggested))
            self._refused_at = now

    def _recover(self, now: float) -> None:
        """One request more per ``recovery`` seconds without a 429, up to the advertised limit."""
        refused_at = self._refused_at
        recovered = refused_at is not None and now - refused_at >= self._recovery
        if recovered and self._max < self._ceiling:
            self._max += 1
            self._refused_at = now

    def give_back(self, token: object) -> None:
        assert isinstance(token, Slot)
        with self._lock:
            if token.live:
                token.live = False
                self._live -= 1
                self._sent -= 1

    def in_window(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return self._live

    def state(self) -> LimitState:
        with self._lock:
            self._purge(self._clock())
            return LimitState(self.name, self._max, self._max - self._live)

    def observe(
        self,
        *,
        max_requests: int | None = None,
        interval: float | None = None,
        remaining: int | None = None,
        sent: Slot | None = None,
    ) -> None:
        """Adopt the limit the CRM advertises; count requests of others it reports.

        ``remaining`` is compared with the window as it was when ``sent`` went (minus requests
        sent since, which may have overtaken it, and others already learnt of); without
        ``sent``, with the window as it is now.
        """
        with self._lock:
            if max_requests is not None and max_requests >= 1:
                self._max = self._ceiling = max_requests
            if interval is not None and interval > 0:
                self._interval = interval
            if remaining is None:
                return
            now = self._clock()
            self._purge(now)
            used = self._max - max(remaining, 0)
            if sent is None:
                unseen = used - self._live
            else:
                unseen = (
                    used - sent.seen - (self._sent - sent.sequence) - (self._foreign - sent.foreign)
                )
            unseen = min(unseen, self._max - self._live)
            if unseen > 0:
                self._foreign += unseen
                self._add(now, unseen)

    def observe_headers(self, headers: Mapping[str, str], sent: Slot | None = None) -> None:
        if self._headers is None:
            return
        interval_ms = int_header(headers, self._headers.interval_ms)
        self.observe(
            max_requests=int_header(headers, self._headers.max),
            interval=interval_ms / 1000 if interval_ms is not None else None,
            remaining=int_header(headers, self._headers.remaining),
            sent=sent,
        )


class WindowLedger(Protocol):
    """Where the requests of rolling windows are counted for every process of a deployment."""

    def take(self, window: str, max_requests: int, interval: float) -> int | float:
        """A slot (an id) when one more request fits in ``window`` now, else the seconds to
        wait before asking again."""

    def restamp(self, slot: int) -> None:
        """The answer arrived: count the request from now (the server saw it no later)."""

    def give_back(self, slot: int) -> None:
        """The request was not sent after all."""


@dataclass
class _SharedSlot:
    local: Slot
    shared: int


class SharedWindow(Limit):
    """A rolling window counted both in this process (which learns the limit and others' use
    from the CRM's headers) and in a ledger every process shares: a request goes when both have
    room, under the limit the CRM last advertised."""

    def __init__(self, local: RollingWindow, ledger: WindowLedger, window: str) -> None:
        self.name = local.name
        self.local = local
        self._ledger = ledger
        self._window = window

    def __repr__(self) -> str:
        return f"SharedWindow({self.local!r})"

    def take(self, cost: int = 1) -> _SharedSlot | float:
        local = self.local.take(cost)
        if isinstance(local, float):
            return local
        try:
            shared = self._ledger.take(self._window, self.local.max_requests, self.local.interval)
        except Exception:
            self.local.give_back(local)
            raise
        if isinstance(shared, float):
            self.local.give_back(local)
            return shared
        return _SharedSlot(local, shared)

    def settle(self, token: object, response: httpx.Response | None) -> None:
        assert isinstance(token, _SharedSlot)
        self.local.settle(token.local, response)
        self._ledger.restamp(token.shared)

    def give_back(self, token: object) -> None:
        assert isinstance(token, _SharedSlot)
        self.local.give_back(token.local)
        self._ledger.give_back(token.shared)

    def state(self) -> LimitState:
        return self.local.state()


# --- daily allowances ---------------------------------------------------------------------------


def next_utc_midnight(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class _Spend:
    cost: int
    settled: bool = False


class DailyAllowance(Limit):
    """Units (requests or tokens) per day, reset at a known time (UTC midnight by default).

    What is left comes from ``remaining_header`` when the CRM sends it (it then also counts other
    clients of the account), else from our own count against ``limit``. A request that would
    overspend is not sent: ``take`` raises ``BudgetExhausted`` with the reset time, and the
    exhaustion is written to ``state_file`` so other processes of this machine stop too.
    """

    def __init__(
        self,
        name: str,
        limit: int | None,
        *,
        remaining_header: str | None = None,
        limit_header: str | None = None,
        state_file: Path | None = None,
        unit: str = "requests",
        per_request: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        next_reset: Callable[[datetime], datetime] = next_utc_midnight,
    ) -> None:
        self.name = name
        self.unit = unit
        self._per_request = per_request
        """Count each request as one unit, whatever it costs in the lane's other limits."""
        self._limit = limit
        self._remaining: int | None = limit
        self._remaining_header = remaining_header
        self._limit_header = limit_header
        self._state_file = state_file
        self._now = now
        self._next_reset = next_reset
        self._lock = threading.Lock()
        self._in_flight = 0
        self._day_ends = next_reset(now())
        self._exhausted_until: datetime | None = self._read_exhaustion()

    def _read_exhaustion(self) -> datetime | None:
        if self._state_file is None:
            return None
        try:
            saved = json.loads(self._state_file.read_text(encoding="utf-8"))
            until = datetime.fromisoformat(saved["exhausted_until"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return until if until > self._now() else None

    def _roll_over(self, now: datetime) -> None:
        if now >= self._day_ends:
            self._day_ends = self._next_reset(now)
            self._remaining = self._limit
        if self._exhausted_until is not None and now >= self._exhausted_until:
            self._exhausted_until = None

    def exhaust(self, until: datetime | None = None, detail: str = "") -> BudgetExhausted:
        """Mark the allowance spent (the CRM said so) and return the error to raise."""
        with self._lock:
            now = self._now()
            resume = until or self._next_reset(now)
            self._exhausted_until = resume
            self._remaining = 0
        if self._state_file is not None:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            partial = self._state_file.with_suffix(".tmp")
            partial.write_text(
                json.dumps({"budget": self.name, "exhausted_until": resume.isoformat()}),
                encoding="utf-8",
            )
            partial.replace(self._state_file)
        return BudgetExhausted(self.name, resume, detail)

    def take(self, cost: int = 1) -> _Spend:
        if self._per_request:
            cost = 1
        with self._lock:
            now = self._now()
            self._roll_over(now)
            until = self._exhausted_until
            overspend = self._remaining is not None and self._remaining - self._in_flight < cost
        if until is not None:
            raise BudgetExhausted(self.name, until)
        if overspend:
            raise self.exhaust(
                detail=f"{cost} needed for the next call, {self._remaining} left today"
            )
        with self._lock:
            self._in_flight += cost
        return _Spend(cost)

    def settle(self, token: object, response: httpx.Response | None) -> None:
        assert isinstance(token, _Spend)
        with self._lock:
            if token.settled:
                return
            token.settled = True
            self._in_flight -= token.cost
            headers = response.headers if response is not None else {}
            limit = int_header(headers, self._limit_header)
            if limit is not None:
                self._limit = limit
            remaining = int_header(headers, self._remaining_header)
            if remaining is not None:
                self._remaining = remaining
            elif self._remaining is not None:
                self._remaining -= token.cost

    def give_back(self, token: object) -> None:
        assert isinstance(token, _Spend)
        with self._lock:
            if not token.settled:
                token.settled = True
                self._in_flight -= token.cost

    def state(self) -> LimitState:
        with self._lock:
            self._roll_over(self._now())
            return LimitState(
                self.name,
                self._limit,
                self._remaining,
                resets_at=self._day_ends,
                exhausted_until=self._exhausted_until,
                unit=self.unit,
            )


# --- holding a lane back after "too many" -------------------------------------------------------


class Cooldown(Limit):
    """Holds every request of a lane back after the CRM answered "too many" (``hold``), or stops
    them all until a time (``stop``) when carrying on would get the client blocked.

    A 429 tells one request to wait; the requests in flight on other threads would go on and
    meet 429s of their own, which a CRM that blocks clients who ignore 429s counts against us.
    Thread-safe; never blocks a thread (``take`` says how long to wait).
    """

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._held_until = 0.0
        self._stopped: BudgetExhausted | None = None

    def hold(self, seconds: float) -> None:
        """No request of the lane goes in the next ``seconds``."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + max(seconds, 0.0))

    def stop(self, until: datetime, detail: str = "") -> BudgetExhausted:
        """Every request of the lane raises until ``until``; the error to raise now."""
        error = BudgetExhausted(self.name, until, detail)
        with self._lock:
            self._stopped = error
        return error

    def take(self, cost: int = 1) -> object | float:
        with self._lock:
            stopped = self._stopped
            if stopped is not None and stopped.resume_at <= datetime.now(UTC):
                stopped = self._stopped = None
            wait = self._held_until - self._clock()
        if stopped is not None:
            raise stopped
        return max(wait, 0.001) if wait > 0 else self

    def settle(self, token: object, response: httpx.Response | None) -> None:
        """Nothing to learn: the CRM's 429 rule calls ``hold``."""

    def give_back(self, token: object) -> None:
        """Nothing was counted."""

    def state(self) -> LimitState | None:
        with self._lock:
            stopped = self._stopped
        if stopped is None:
            return None
        return LimitState(self.name, None, None, exhausted_until=stopped.resume_at)


# --- the budget of one account ------------------------------------------------------------------


Cost = Callable[[ApiRequest], int]
RateLimitRule = Callable[[ApiRequest, httpx.Response, float | None], float | None]
"""What a 429 means for a CRM: the seconds to wait (given the parsed ``Retry-After``), or it
raises ``BudgetExhausted`` when a long-term budget is spent."""
RefusalRule = Callable[[ApiRequest, httpx.Response], None]
"""What a 401/403 means beyond a refused token: it may raise ``BudgetExhausted`` when the answer
is the CRM's block of a client that kept sending after 429s."""


def wait_as_told(request: ApiRequest, response: httpx.Response, retry_after: float | None) -> float:
    """The default reading of a 429: a short-term limit; wait for ``Retry-After`` or a moment."""
    return retry_after if retry_after is not None else 1.0


def token_refused(request: ApiRequest, response: httpx.Response) -> None:
    """The default reading of a 401/403: the token (the exchange says so)."""


@dataclass
class Grant:
    taken: list[tuple[Limit, object]] = field(default_factory=list)


class Budget:
    """The limits of one CRM account, by request kind (lanes), with the cost of each request.

    A request spends every limit of its lane (``lanes[request.kind]``, else ``lanes["*"]``); it
    goes only when all of them have room.
    """

    def __init__(
        self,
        lanes: Mapping[str, Sequence[Limit]],
        *,
        cost: Cost = lambda _request: 1,
        on_rate_limited: RateLimitRule = wait_as_told,
        on_refused: RefusalRule = token_refused,
    ) -> None:
        if "*" not in lanes:
            raise ValueError("a budget needs a default lane '*'")
        self.lanes = {kind: tuple(limits) for kind, limits in lanes.items()}
        self.cost = cost
        self._on_rate_limited = on_rate_limited
        self._on_refused = on_refused

    def limits_for(self, request: ApiRequest) -> tuple[Limit, ...]:
        return self.lanes.get(request.kind, self.lanes["*"])

    def acquire(self, request: ApiRequest) -> Operation[Grant]:
        """Wait (by yielding pauses) until every limit of the request's lane grants it."""
        cost = self.cost(request)
        while True:
            wait = self._try(request, cost)
            if isinstance(wait, Grant):
                return wait
            pause: Effect = Pause(wait)
            yield pause

    def _try(self, request: ApiRequest, cost: int) -> Grant | float:
        grant = Grant()
        for limit in self.limits_for(request):
            try:
                got = limit.take(cost)
            except BudgetExhausted:
                self._give_back(grant)
                raise
            if isinstance(got, float):
                self._give_back(grant)
                return got
            grant.taken.append((limit, got))
        return grant

    @staticmethod
    def _give_back(grant: Grant) -> None:
        for limit, token in grant.taken:
            limit.give_back(token)

    def settle(self, grant: Grant, response: httpx.Response | None) -> None:
        for limit, token in grant.taken:
            limit.settle(token, response)

    def rate_limited(
        self, request: ApiRequest, response: httpx.Response, retry_after: float | None
    ) -> float | None:
        return self._on_rate_limited(request, response, retry_after)

    def shared_through(self, ledger: WindowLedger, account: str) -> Budget:
        """This budget with each rolling window also counted in ``ledger``, under the account
        and the window's name."""
        shared: dict[int, Limit] = {}
        for limits in self.lanes.values():
            for limit in limits:
                if isinstance(limit, RollingWindow) and id(limit) not in shared:
                    shared[id(limit)] = SharedWindow(limit, ledger, f"{account} | {limit.name}")
        return Budget(
            {
                kind: [shared.get(id(limit), limit) for limit in limits]
                for kind, limits in self.lanes.items()
            },
            cost=self.cost,
            on_rate_limited=self._on_rate_limited,
            on_refused=self._on_refused,
        )

    def refused(self, request: ApiRequest, response: httpx.Response) -> None:
        self._on_refused(request, response)

    def state(self) -> list[LimitState]:
        seen: dict[int, Limit] = {}
        for limits in self.lanes.values():
            for limit in limits:
                seen.setdefault(id(limit), limit)
        states = (limit.state() for limit in seen.values())
        return [state for state in states if state is not None]


_budgets: dict[str, Budget] = {}
_budgets_lock = threading.Lock()


def shared_budget(account: str, build: Callable[[], Budget]) -> Budget:
    """The one budget of a CRM account in this process, shared by all its targets."""
    with _budgets_lock:
        budget = _budgets.get(account)
        if budget is None:
            budget = _budgets[account] = build()
        return budget


def describe_states(states: Sequence[LimitState]) -> str:
    return "; ".join(state.describe() for state in states)


def as_json(states: Sequence[LimitState]) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "limit": s.limit,
            "remaining": s.remaining,
            "resets_at": s.resets_at.isoformat() if s.resets_at else None,
            "exhausted_until": s.exhausted_until.isoformat() if s.exhausted_until else None,
            "unit": s.unit,
        }
        for s in states
    ]
