"""HubSpot's request limits: a rolling window for most calls, a tighter one for search, a daily cap.

Importers learn their pacing against these, so the answers (429 body, ``X-HubSpot-RateLimit-*``
headers, ``Retry-After``) follow HubSpot's.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bulk_pipeline.sandbox.ratelimit import UNLIMITED, RateLimit, RollingWindow

HUBSPOT_RATE_LIMIT = RateLimit(100, 10_000)
"""HubSpot Free/Starter apps: 100 calls per rolling 10 s (Professional/Enterprise: 190)."""
HUBSPOT_SEARCH_RATE_LIMIT = RateLimit(4, 1_000)
HUBSPOT_DAILY_LIMIT = 250_000


@dataclass(frozen=True)
class Policy:
    name: str
    """HubSpot's ``policyName`` in a 429 body."""
    label: str
    """How HubSpot names the limit in the 429 message."""


TEN_SECONDLY = Policy("TEN_SECONDLY_ROLLING", "ten_secondly_rolling")
SECONDLY = Policy("SECONDLY", "secondly")
DAILY = Policy("DAILY", "daily")


@dataclass(frozen=True)
class Admission:
    """Whether one request may go ahead, and what the rate-limit headers say about it."""

    refused_by: Policy | None
    max_requests: int
    remaining: int
    interval_ms: int
    daily: int
    daily_remaining: int
    retry_after_s: int

    @property
    def allowed(self) -> bool:
        return self.refused_by is None

    def headers(self) -> dict[str, str]:
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.max_requests),
            "X-HubSpot-RateLimit-Remaining": str(self.remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
            "X-HubSpot-RateLimit-Daily": str(self.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(self.daily_remaining),
        }
        if self.refused_by is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RequestLimits:
    """The limits of one sandbox; thread-safe. Search calls are exempt from the general window,
    as in HubSpot, and every admitted call counts against the daily quota."""

    def __init__(
        self,
        general: RateLimit | None,
        search: RateLimit | None,
        daily: int | None,
    ) -> None:
        self._settings = (general, search, daily)
        self._general = RollingWindow(general)
        self._search = RollingWindow(search)
        self._daily_limit = daily
        self._day: date | None = None
        self._used_today = 0
        self._lock = threading.Lock()

    def emptied(self) -> RequestLimits:
        """The same limits with empty windows and nothing used today."""
        return RequestLimits(*self._settings)

    def admit(self, *, search: bool, now: float, consume: bool = True) -> Admission:
        """Decide on one request at monotonic time ``now``; ``consume=False`` only reports."""
        window, policy = (self._search, SECONDLY) if search else (self._general, TEN_SECONDLY)
        today = datetime.now(UTC).date()
        with self._lock:
            if today != self._day:
                self._day, self._used_today = today, 0
            max_requests, used, interval_ms, wait = window.state(now)
            daily = self._daily_limit or UNLIMITED
            refused: Policy | None = None
            retry_after = 0.0
            if self._daily_limit is not None and self._used_today >= self._daily_limit:
                refused, retry_after = DAILY, _seconds_to_midnight()
            elif used >= max_requests:
                refused, retry_after = policy, wait
            elif consume:
                window.record(now)
                used += 1
                self._used_today += 1
            return Admission(
                refused_by=refused,
                max_requests=max_requests,
                remaining=max(0, max_requests - used),
                interval_ms=interval_ms,
                daily=daily,
                daily_remaining=max(0, daily - self._used_today),
                retry_after_s=max(1, math.ceil(retry_after)) if refused else 0,
            )


def _seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()
