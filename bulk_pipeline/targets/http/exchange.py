"""The retry loop, written once for every CRM: send one request until it gets a definite answer.

The loop is a generator (:func:`exchange`) that *yields effects* (:class:`Send` this request,
:class:`Pause` this long) and receives their results; the drivers in ``drivers.py`` carry them
out on ``httpx.Client`` or ``httpx.AsyncClient``. Dialect logic built on top (batch splitting,
reading back after an unclear create) is written the same way, so the sync and async targets
share every decision and differ only in how they wait and send.

What is CRM-specific (which budget a request spends, what a 429 means) comes from the account's
:class:`~bulk_pipeline.targets.http.limits.Budget`; the rule that a create whose outcome is unclear
is never resent blindly is generic and lives here.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from bulk_pipeline.errors import TargetConfigError
from bulk_pipeline.redaction import redact, redacting_logger, safe_str

if TYPE_CHECKING:
    from bulk_pipeline.targets.http.clock import CrmClock
    from bulk_pipeline.targets.http.limits import Budget

log = redacting_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP call as dialect logic describes it, before any client is involved."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    kind: str = "read"
    """Which part of the account's budget it spends (``read``, ``write``, ``search``...); the
    dialect's budget maps kinds to limits and costs."""
    idempotent: bool = True
    """False for creates: resending after an unclear failure could write a record twice."""
    patience: float | None = None
    """Seconds this request may spend on retries, when shorter than the policy's window (a
    preflight should fail fast, naming the CRM's address)."""

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Send:
    """Effect: send ``request`` once; the driver answers with a response or the transport error."""

    request: ApiRequest


@dataclass(frozen=True)
class Pause:
    """Effect: wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``); the driver answers None."""

    seconds: float


Effect = Send | Pause
Operation = Generator[Effect, Any, T]
"""Logic that yields effects and finally returns a ``T``; run it with a driver."""


class Verdict(StrEnum):
    OK = "ok"
    """2xx."""
    REJECTED = "rejected"
    """A definite answer that retrying will not change (4xx other than 429)."""
    GAVE_UP = "gave_up"
    """Transient failures until the retry window closed; a later run may succeed."""
    AMBIGUOUS = "ambiguous"
    """A non-idempotent request failed in a way that may or may not have applied it."""


@dataclass(frozen=True)
class Outcome:
    request: ApiRequest
    verdict: Verdict
    response: httpx.Response | None
    """The last response, when there was one."""
    failure: str
    """What went wrong last, for messages (redacted); empty when OK."""
    attempts: int

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None


class TransportFailure(StrEnum):
    NOT_SENT = "not_sent"
    """The request never reached the server (connection refused, pool exhausted)."""
    AMBIGUOUS = "ambiguous"
    """The server may have received and applied it (timeout or connection lost mid-exchange)."""
    FATAL = "fatal"
    """A local problem (bad URL, protocol misuse) that retrying cannot fix."""


def classify_transport_error(exc: httpx.RequestError) -> TransportFailure:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransportFailure.NOT_SENT
    if isinstance(exc, httpx.ProxyError):
        return TransportFailure.NOT_SENT
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return TransportFailure.AMBIGUOUS
    return TransportFailure.FATAL


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


DEFAULT_RETRY_SECONDS = 60.0
PREFLIGHT_SECONDS = 10.0
"""How long the preflight waits for a CRM that does not answer before saying so."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how patiently to retry transient failures (429, 5xx, timeouts, drops).

    ``max_elapsed`` bounds the whole exchange in time, whatever the number of attempts: a CRM
    that went away is given that long to come back before the push stops with its state saved.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    """A ``Retry-After`` longer than this is cut short; the budget still paces what follows."""
    max_elapsed: float = DEFAULT_RETRY_SECONDS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed <= 0:
            raise ValueError("max_elapsed must be positive")

    @staticmethod
    def retries_status(status: int) -> bool:
        return status == 429 or status >= 500

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter: spreads clients out instead of syncing them."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return rng.uniform(0.0, ceiling)

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt, rng)


def _short_body(response: httpx.Response) -> str:
    return redact(response.text[:300]) if response.content else ""


@dataclass(frozen=True)
class Exchange:
    """What every request of one target shares: its retry policy, its account's budget and
    clock, where it is sent (for messages), and the randomness of backoff."""

    policy: RetryPolicy
    budget: Budget
    clock: CrmClock
    where: str
    """The CRM's base URL, redacted, as messages name it."""
    rng: random.Random
    now: Callable[[], float] = time.monotonic

    def send(self, request: ApiRequest) -> Operation[Outcome]:
        return exchange(request, self)


def exchange(request: ApiRequest, setup: Exchange) -> Operation[Outcome]:
    """Send ``request`` until it gets a definite answer or the retry window closes.

    Retries 429, 5xx, timeouts and dropped connections with backoff (honouring ``Retry-After``);
    other 4xx are answers, not failures. 401/403 raise ``TargetConfigError``: no record can
    succeed (unless the budget reads the refusal as a limit: a block for ignoring 429s). The
    budget may raise ``BudgetExhausted`` before a request that it cannot afford, or on a 429
    that means a long-term budget is spent. A non-idempotent request is not resent after
    a failure that may have applied it: the outcome is AMBIGUOUS and the caller checks what
    happened before sending anything again.
    """
    policy = setup.policy
    started = setup.now()
    failure = ""
    response: httpx.Response | None = None
    attempt = 0
    while True:
        attempt += 1
        grant = yield from setup.budget.acquire(request)
        result = yield Send(request)
        setup.budget.settle(grant, result if isinstance(result, httpx.Response) else None)
        retry_after: float | None = None
        if isinstance(result, httpx.Response):
            response = result
            setup.clock.observe(result.headers.get("Date"))
            status = result.status_code
            if status in (401, 403):
                setup.budget.refused(request, result)
                raise TargetConfigError(
                    f"the CRM at {setup.where} refused {request.describe()} with HTTP {status}: "
                    "the token is invalid, expired or lacks the scopes for this object; "
                    f"check it and its permissions. CRM said: {_short_body(result)}"
                )
            if not policy.retries_status(status):
                verdict = Verdict.OK if result.is_success else Verdict.REJECTED
                failure = "" if result.is_success else f"HTTP {status}: {_short_body(result)}"
                return Outcome(request, verdict, result, failure, attempt)
            failure = f"HTTP {status}: {_short_body(result)}"
            retry_after = parse_retry_after(result.headers.get("Retry-After"))
            if status == 429:
                retry_after = setup.budget.rate_limited(request, result, retry_after)
            maybe_applied = status != 429
        else:
            kind = classify_transport_error(result)
            failure = f"{type(result).__name__}: {safe_str(result) or 'no detail'}"
            if kind is TransportFailure.FATAL:
                raise TargetConfigError(
                    f"{request.describe()} to {setup.where} could not be sent: {failure}"
                )
            response = None
            maybe_applied = kind is TransportFailure.AMBIGUOUS
        if maybe_applied and not request.idempotent:
            log.warning("%s: %s; checking what was applied", request.describe(), failure)
            return Outcome(request, Verdict.AMBIGUOUS, response, failure, attempt)
        delay = policy.delay(attempt, setup.rng, retry_after)
        elapsed = setup.now() - started
        window = min(policy.max_elapsed, request.patience or policy.max_elapsed)
        if attempt >= policy.max_attempts or elapsed + delay > window:
            break
        log.debug("%s: %s; retry %d in %.2fs", request.describe(), failure, attempt, delay)
        yield Pause(delay)
    log.warning(
        "%s to %s: giving up after %d attempts in %.0f s: %s",
        request.describe(),
        setup.where,
        attempt,
        setup.now() - started,
        failure,
    )
    return Outcome(request, Verdict.GAVE_UP, response, failure, attempt)
