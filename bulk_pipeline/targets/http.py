"""HTTP plumbing shared by CRM targets: retries with backoff, request pacing, one pooled client.

The retry and pacing logic is written once, as a generator (:func:`exchange`) that *yields effects*
(:class:`Send` this request, :class:`Pause` this long) and receives their results. Two small drivers
carry the effects out: :class:`SyncDriver` around one ``httpx.Client`` and :class:`AsyncDriver`
around one ``httpx.AsyncClient``. Target logic built on top (batch splitting, duplicate-safe
creates) is written the same way, so the sync and async targets share every decision and differ
only in how they wait and send.

Pacing is client-side: :class:`RateLimiter` keeps a rolling window of sent requests and learns the
CRM's limit from its ``X-HubSpot-RateLimit-*`` headers, so a long push runs at the ceiling instead
of bouncing off 429s. Limiters are thread-safe and never block, so threads and event loops share
them (see :func:`shared_pacer`).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

import httpx

from bulk_pipeline.redaction import Secret, redact, redacting_logger, safe_str
from bulk_pipeline.targets.base import CrmError

log = redacting_logger(__name__)

T = TypeVar("T")

RequestKind = Literal["standard", "search"]

DEFAULT_MAX_REQUESTS = 100
DEFAULT_INTERVAL_SECONDS = 10.0
"""HubSpot's Free/Starter burst limit; used until the CRM's headers say otherwise."""
DEFAULT_SEARCH_MAX_REQUESTS = 4
DEFAULT_SEARCH_INTERVAL_SECONDS = 1.0
"""HubSpot's search endpoints have their own, lower limit and send no rate-limit headers."""

MAX_HEADER = "X-HubSpot-RateLimit-Max"
REMAINING_HEADER = "X-HubSpot-RateLimit-Remaining"
INTERVAL_HEADER = "X-HubSpot-RateLimit-Interval-Milliseconds"


# --- requests, effects and outcomes -------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP call as target logic describes it, before any client is involved."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    kind: RequestKind = "standard"
    idempotent: bool = True
    """False for creates: resending after an unclear failure could write a record twice."""

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
    """Transient failures until the attempts ran out; a later run may succeed."""
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


# --- retry decisions ----------------------------------------------------------------------------


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


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures (429, 5xx, timeouts, drops)."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    """A ``Retry-After`` longer than this is cut short; the limiter still paces what follows."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

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


# --- pacing -------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One request counted in a limiter's window."""

    at: float
    live: bool = True
    """False once superseded by the slot stamped when the answer arrived."""
    seen: int = 0
    """Requests in the window when this one was sent, itself included."""
    sequence: int = 0
    """How many requests the limiter had let through when this one went."""
    foreign: int = 0
    """How many requests of others the limiter had learnt of when this one went."""


class RateLimiter:
    """At most ``max_requests`` in any rolling ``interval`` seconds; thread-safe, never blocks.

    A request is counted from when it is sent; when its answer arrives it is counted again from
    then instead (the server saw it no later than that), so our window always covers the
    server's. An answer's ``X-HubSpot-RateLimit-Remaining`` is compared with what the window
    held when that request was sent: requests the server counted beyond ours (another process
    using the same app) fill the window as placeholders.
    """

    def __init__(
        self,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1 or interval <= 0:
            raise ValueError("a rate limit needs max_requests >= 1 and interval > 0")
        self._max = max_requests
        self._interval = interval
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
        return f"RateLimiter({self._max} per {self._interval:g}s)"

    def _purge(self, now: float) -> None:
        horizon = now - self._interval
        window = self._window
        while window and (not window[0].live or window[0].at <= horizon):
            if window.popleft().live:
                self._live -= 1

    def _add(self, now: float, count: int = 1) -> None:
        self._window.extend(Slot(now) for _ in range(count))
        self._live += count

    def try_acquire(self) -> Slot | float:
        """A slot when a request may go now, else the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            if self._live >= self._max:
                return max(self._window[0].at + self._interval - now, 0.001)
            self._live += 1
            self._sent += 1
            slot = Slot(now, seen=self._live, sequence=self._sent, foreign=self._foreign)
            self._window.append(slot)
            return slot

    def complete(self, slot: Slot) -> None:
        """The answer arrived: count the request from now."""
        with self._lock:
            if slot.live:
                slot.live = False
                self._live -= 1
                self._add(self._clock())

    def in_window(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return self._live

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
                self._max = max_requests
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
        interval_ms = _int_header(headers, INTERVAL_HEADER)
        self.observe(
            max_requests=_int_header(headers, MAX_HEADER),
            interval=interval_ms / 1000 if interval_ms is not None else None,
            remaining=_int_header(headers, REMAINING_HEADER),
            sent=sent,
        )


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass
class Pacer:
    """The limiters of one CRM account: every request, and the stricter search budget."""

    standard: RateLimiter = field(default_factory=RateLimiter)
    search: RateLimiter = field(
        default_factory=lambda: RateLimiter(
            DEFAULT_SEARCH_MAX_REQUESTS, DEFAULT_SEARCH_INTERVAL_SECONDS
        )
    )

    def limiter_for(self, kind: RequestKind) -> RateLimiter:
        """Search has its own budget and does not count against the general one (as in HubSpot)."""
        return self.search if kind == "search" else self.standard

    def observe(
        self, kind: RequestKind, response: httpx.Response, sent: Slot | None = None
    ) -> None:
        """Headers describe the budget of the endpoint that answered."""
        limiter = self.limiter_for(kind)
        limiter.observe_headers(response.headers, sent)
        if response.status_code == 429 and REMAINING_HEADER not in response.headers:
            limiter.observe(remaining=0, sent=sent)


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def shared_pacer(base_url: str, token: Secret) -> Pacer:
    """The one pacer of a CRM account in this process, shared by its sync and async targets."""
    digest = hashlib.sha256(token.reveal().encode()).hexdigest()[:16]
    key = f"{base_url.rstrip('/')}#{digest}"
    with _pacers_lock:
        return _pacers.setdefault(key, Pacer())


# --- the retry loop, written once ---------------------------------------------------------------


def _acquire(limiter: RateLimiter) -> Generator[Effect, Any, Slot]:
    while True:
        got = limiter.try_acquire()
        if isinstance(got, Slot):
            return got
        yield Pause(got)


def _policy_name(response: httpx.Response) -> str | None:
    """``policyName`` of a 429 body: which limit was hit (TEN_SECONDLY_ROLLING, DAILY...)."""
    try:
        body = response.json()
    except ValueError:
        return None
    name = body.get("policyName") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _short_body(response: httpx.Response) -> str:
    return redact(response.text[:300]) if response.content else ""


def exchange(
    request: ApiRequest, *, policy: RetryPolicy, pacer: Pacer, rng: random.Random
) -> Operation[Outcome]:
    """Send ``request`` until it gets a definite answer or the attempts run out.

    Retries 429, 5xx, timeouts and dropped connections with backoff (honouring ``Retry-After``);
    other 4xx are answers, not failures. 401/403 raise ``CrmError``: no record can succeed. A
    non-idempotent request is not resent after a failure that may have applied it: the outcome is
    AMBIGUOUS and the caller checks what happened before sending anything again.
    """
    failure = ""
    response: httpx.Response | None = None
    for attempt in range(1, policy.max_attempts + 1):
        limiter = pacer.limiter_for(request.kind)
        slot = yield from _acquire(limiter)
        result = yield Send(request)
        limiter.complete(slot)
        retry_after: float | None = None
        if isinstance(result, httpx.Response):
            response = result
            pacer.observe(request.kind, result, slot)
            status = result.status_code
            if status in (401, 403):
                raise CrmError(
                    f"{request.describe()} was refused with HTTP {status}: the access token is "
                    "invalid, expired or lacks the CRM scopes for this object",
                    status=status,
                )
            if not policy.retries_status(status):
                verdict = Verdict.OK if result.is_success else Verdict.REJECTED
                failure = "" if result.is_success else f"HTTP {status}: {_short_body(result)}"
                return Outcome(request, verdict, result, failure, attempt)
            if status == 429 and _policy_name(result) == "DAILY":
                raise CrmError(
                    f"{request.describe()}: the CRM's daily request limit is used up; "
                    "nothing more can be written before it resets (HubSpot: midnight)",
                    status=status,
                    retryable=True,
                )
            failure = f"HTTP {status}: {_short_body(result)}"
            retry_after = parse_retry_after(result.headers.get("Retry-After"))
            maybe_applied = status != 429
        else:
            kind = classify_transport_error(result)
            failure = f"{type(result).__name__}: {safe_str(result) or 'no detail'}"
            if kind is TransportFailure.FATAL:
                raise CrmError(f"{request.describe()} could not be sent: {failure}")
            response = None
            maybe_applied = kind is TransportFailure.AMBIGUOUS
        if maybe_applied and not request.idempotent:
            log.warning("%s: %s; checking what was applied", request.describe(), failure)
            return Outcome(request, Verdict.AMBIGUOUS, response, failure, attempt)
        if attempt == policy.max_attempts:
            break
        delay = policy.delay(attempt, rng, retry_after)
        log.debug(
            "%s: %s; retry %d/%d in %.2fs",
            request.describe(),
            failure,
            attempt,
            policy.max_attempts - 1,
            delay,
        )
        yield Pause(delay)
    log.warning("%s: giving up after %d attempts: %s", request.describe(), attempt, failure)
    return Outcome(request, Verdict.GAVE_UP, response, failure, policy.max_attempts)


# --- drivers ------------------------------------------------------------------------------------


class BearerAuth(httpx.Auth):
    """Adds the token per request, so it sits in no client default headers and no repr."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


@dataclass(frozen=True)
class ClientSettings:
    """Connection settings for the one client a target keeps."""

    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_connections: int = 16
    max_keepalive: int = 8

    def timeout_config(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive,
        )


USER_AGENT = "bulk_pipeline/0.1 (+httpx)"


def is_loopback(base_url: str) -> bool:
    """A CRM on this machine (the sandbox) is never reached through an HTTP proxy."""
    host = httpx.URL(base_url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_request(client: httpx.Client | httpx.AsyncClient, request: ApiRequest) -> httpx.Request:
    return client.build_request(
        request.method, request.path, json=request.json, params=request.params
    )


class SyncDriver:
    """Runs operations on one ``httpx.Client``; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        settings: ClientSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = settings or ClientSettings()
        self.client = httpx.Client(
            base_url=base_url,
            auth=BearerAuth(token),
            timeout=settings.timeout_config(),
            limits=settings.limits(),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            trust_env=not is_loopback(base_url),
        )

    def run(self, operation: Operation[T]) -> T:
        reply: Any = None
        try:
            while True:
                try:
                    effect = operation.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                reply = self._perform(effect)
        finally:
            operation.close()

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Pause):
            time.sleep(effect.seconds)
            return None
        try:
            return self.client.send(build_request(self.client, effect.request))
        except httpx.RequestError as exc:
            return exc

    def close(self) -> None:
        self.client.close()


class AsyncDriver:
    """Runs operations on one ``httpx.AsyncClient``; many may run concurrently on one loop."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        settings: ClientSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = settings or ClientSettings()
        self.client = httpx.AsyncClient(
            base_url=base_url,
            auth=BearerAuth(token),
            timeout=settings.timeout_config(),
            limits=settings.limits(),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            trust_env=not is_loopback(base_url),
        )

    async def run(self, operation: Operation[T]) -> T:
        reply: Any = None
        try:
            while True:
                try:
                    effect = operation.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                reply = await self._perform(effect)
        finally:
            operation.close()

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Pause):
            await asyncio.sleep(effect.seconds)
            return None
        try:
            return await self.client.send(build_request(self.client, effect.request))
        except httpx.RequestError as exc:
            return exc

    async def aclose(self) -> None:
        await self.client.aclose()
