"""Pipedrive's limits: a daily token budget per company, burst windows per token, a block.

Every call costs its operation's ``x-token-cost`` (``costs.py``) against the budget, which resets
at UTC midnight. Each token has a rolling 2-second burst window; search endpoints have their own
window instead. Headers on every answer (after a valid token):

- ``x-ratelimit-limit`` / ``-remaining`` / ``-reset``: the window the call counted against
  (documented); ``-reset`` is the seconds until its oldest call leaves the window.
- ``x-daily-ratelimit-token-limit`` / ``-remaining``: the budget. Not in Pipedrive's docs but
  sent by the live API (a Pipedrive staff member confirmed them in the developer community).
- ``x-daily-requests-left``: documented for POST and PUT calls with an api_token, as what is left
  of the day; the sandbox sends the tokens left there (a guess at its meaning today).
- ``Retry-After`` on 429: seconds until a window slot frees, or until midnight for the budget.

An api_token client that keeps calling while told to wait is blocked for a while (403, HTML).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

from bulk_pipeline.sandbox.dialect import ApiError
from bulk_pipeline.sandbox.pipedrive.errors import blocked, budget_exhausted, rate_limited
from bulk_pipeline.sandbox.pipedrive.settings import PipedriveSettings
from bulk_pipeline.sandbox.ratelimit import UNLIMITED, RollingWindow

IGNORED_429_PERIOD_S = 60.0
"""Premature calls (before a 429's Retry-After passed) count towards a block for this long."""


class Credential(Enum):
    """How a call authenticated; each has its own burst windows, as each is its own token."""

    API_TOKEN = "api_token"
    OAUTH = "oauth"


@dataclass
class BudgetLedger:
    """Tokens spent on one UTC day by the whole company; kept across configuration changes."""

    day: date | None = None
    used: int = 0


@dataclass
class _Client:
    """What the limits remember about one credential's behaviour after 429s."""

    wait_until: float = 0.0
    premature: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Admission:
    headers: dict[str, str]
    refusal: ApiError | None


class PipedriveLimits:
    """Thread-safe; one per sandbox. Windows start empty whenever settings change."""

    def __init__(self, settings: PipedriveSettings, ledger: BudgetLedger | None = None) -> None:
        self.settings = settings
        self.ledger = ledger or BudgetLedger()
        self._windows = {
            (Credential.API_TOKEN, False): RollingWindow(settings.burst_limit),
            (Credential.OAUTH, False): RollingWindow(settings.oauth_burst_limit),
            (Credential.API_TOKEN, True): RollingWindow(settings.search_limit),
            (Credential.OAUTH, True): RollingWindow(settings.search_limit),
        }
        self._clients = {credential: _Client() for credential in Credential}
        self._lock = threading.Lock()

    def with_settings(self, settings: PipedriveSettings) -> PipedriveLimits:
        """New windows and no blocks under new settings; today's spent tokens stay spent."""
        return PipedriveLimits(settings, self.ledger)

    def emptied(self) -> PipedriveLimits:
        """Empty windows, no blocks and the whole budget back."""
        return PipedriveLimits(self.settings)

    def admit(
        self, *, credential: Credential, search: bool, cost: int, method: str, now: float
    ) -> Admission:
        """Decide on one authenticated call at monotonic time ``now`` and charge it if let in."""
        settings = self.settings
        client = self._clients[credential]
        wall = time.time() + settings.clock_offset_s
        with self._lock:
            if credential is Credential.API_TOKEN and now < client.blocked_until:
                return Admission({}, blocked())
            today = datetime.fromtimestamp(wall, UTC).date()
            if today != self.ledger.day:
                self.ledger.day, self.ledger.used = today, 0
            window = self._windows[(credential, search)]
            max_requests, used, _, wait = window.state(now)
            budget = settings.daily_budget
            refusal: ApiError | None = None
            retry_after = 0
            if budget is not None and self.ledger.used + cost > budget:
                retry_after = _retry_after(_seconds_to_midnight(wall))
                refusal = budget_exhausted(retry_after)
            elif used >= max_requests:
                retry_after = _retry_after(wait)
                refusal = rate_limited(retry_after)
            else:
                window.record(now)
                used += 1
                self.ledger.used += cost
                wait = window.state(now)[3]
            if refusal is not None and credential is Credential.API_TOKEN:
                self._note_refusal(client, now, retry_after)
            left = UNLIMITED if budget is None else max(0, budget - self.ledger.used)
            headers = {
                "x-ratelimit-limit": str(max_requests),
                "x-ratelimit-remaining": str(max(0, max_requests - used)),
                "x-ratelimit-reset": str(math.ceil(wait) if max_requests < UNLIMITED else 0),
                "x-daily-ratelimit-token-limit": str(UNLIMITED if budget is None else budget),
                "x-daily-ratelimit-token-remaining": str(left),
            }
            if credential is Credential.API_TOKEN and method in ("POST", "PUT"):
                headers["x-daily-requests-left"] = str(left)
            return Admission(headers, refusal)

    def _note_refusal(self, client: _Client, now: float, retry_after: int) -> None:
        """Count a refused call made before the previous 429 said to come back; block a client
        that made ``block_after`` such calls within ``IGNORED_429_PERIOD_S``."""
        settings = self.settings
        if now < client.wait_until:
            client.premature.append(now)
            while client.premature and client.premature[0] <= now - IGNORED_429_PERIOD_S:
                client.premature.popleft()
            if settings.block_after is not None and len(client.premature) >= settings.block_after:
                client.blocked_until = now + settings.block_seconds
                client.premature.clear()
        client.wait_until = max(client.wait_until, now + retry_after)

    def state(self) -> dict[str, Any]:
        """Today's spending and any block, for the admin view."""
        now = time.monotonic()
        with self._lock:
            client = self._clients[Credential.API_TOKEN]
            return {
                "day": None if self.ledger.day is None else self.ledger.day.isoformat(),
                "tokens_used": self.ledger.used,
                "daily_budget": self.settings.daily_budget,
                "blocked_for_s": round(max(0.0, client.blocked_until - now), 3),
            }


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _seconds_to_midnight(wall: float) -> float:
    now = datetime.fromtimestamp(wall, UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()
