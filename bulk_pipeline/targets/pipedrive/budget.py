"""Pipedrive's limits as one budget: a daily token budget per company, and windows per token.

From Pipedrive's "Rate limiting" page (token-based, 2025):

- every call costs its operation's ``x-token-cost`` (``costs.py``, from the specs) against a
  daily budget of 30,000 x plan multiplier x seats shared by the whole company, reset at the
  start of the day. What is left comes from ``x-daily-ratelimit-token-remaining`` (and the
  budget from ``x-daily-ratelimit-token-limit``) where Pipedrive sends them (seen from the live
  API, not in the docs), else from ``PIPEDRIVE_DAILY_TOKENS`` and our own count;
- ``x-daily-requests-left`` is documented as the POST/PUT requests an api_token may still make
  today: a limit of its own, in requests;
- a burst window of N requests per rolling 2 s per token (``x-ratelimit-limit`` and
  ``-remaining``), and 10 per 2 s for the Search API, whose calls do not count in the burst
  window;
- 429 when the budget or a window is spent (a budget 429 says so in its body and its
  ``Retry-After`` reaches to the reset); api_token clients that keep calling after 429s are
  blocked by Cloudflare (403 with an HTML page).

So: a request spends its lane's window and the day's tokens; the push stops *before* a call the
budget cannot pay (``BudgetExhausted``, with the reset time). A burst 429 holds the whole lane
for its ``Retry-After`` (not only the request refused), so the threads in flight do not collect
429s of their own; 429s that keep coming all the same stop the push before Pipedrive blocks the
token, and a block that happens anyway stops it too.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from bulk_pipeline.errors import TargetConfigError
from bulk_pipeline.targets.http.exchange import ApiRequest
from bulk_pipeline.targets.http.limits import (
    Budget,
    Cooldown,
    DailyAllowance,
    RollingWindow,
    WindowHeaders,
    next_utc_midnight,
)
from bulk_pipeline.targets.pipedrive.costs import TOKEN_COSTS

DAILY_TOKENS_ENV = "PIPEDRIVE_DAILY_TOKENS"
TOKENS_LEFT_HEADER = "x-daily-ratelimit-token-remaining"
TOKENS_LIMIT_HEADER = "x-daily-ratelimit-token-limit"
POST_PUT_LEFT_HEADER = "x-daily-requests-left"
BURST_HEADERS = WindowHeaders(max="x-ratelimit-limit", remaining="x-ratelimit-remaining")
BURST_REQUESTS = 20
"""The smallest plan's burst per 2 s, used until the first answer's ``x-ratelimit-limit``."""
BURST_SECONDS = 2.0
SEARCH_REQUESTS = 10
LONGEST_BURST_WAIT = 60.0
"""A 429 that asks to wait longer than this is the daily budget, not a burst window (whose
penalty is about 10 s)."""
PERSISTENT_429S = 6
PERSISTENT_WINDOW = 60.0
"""This many burst 429s within this many seconds, although every Retry-After was waited out,
stop the push: going on is what gets an api_token blocked."""
BLOCK_WAIT = timedelta(minutes=5)
"""How long to stay away after a block, or before one (Pipedrive does not say how long)."""

SEARCH = "search"
POST = "post"
"""Request kinds with lanes of their own: search endpoints, and POST/PUT (a daily limit)."""


def template(path: str) -> str:
    """A request path as the spec writes it: ids become ``{id}``."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path.split("?", 1)[0])


def token_cost(request: ApiRequest) -> int:
    """What the call costs, from the spec's ``x-token-cost`` (``costs.py``)."""
    key = (request.method, template(request.path))
    cost = TOKEN_COSTS.get(key)
    if cost is None:
        raise ValueError(
            f"no token cost for {key[0]} {key[1]}; add it to derive_costs.OPERATIONS and re-derive"
        )
    return cost


def daily_tokens(settings: Mapping[str, str]) -> int | None:
    raw = (settings.get(DAILY_TOKENS_ENV) or "").strip()
    if not raw:
        return None
    try:
        tokens = int(raw.replace(",", "").replace("_", ""))
    except ValueError:
        tokens = 0
    if tokens < 1:
        raise TargetConfigError(
            f"{DAILY_TOKENS_ENV} must be the company's daily token budget (30,000 x plan "
            f"multiplier x seats), a whole number; got {raw!r}"
        )
    return tokens


def crm_time(response: httpx.Response) -> datetime:
    """When the CRM answered (its ``Date``), else now."""
    try:
        when = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return datetime.now(UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


class RateLimitRules:
    """What a 429 or a 403 means from Pipedrive (see the module's docstring)."""

    def __init__(self, tokens: DailyAllowance, holds: Mapping[str, Cooldown]) -> None:
        self.tokens = tokens
        self.holds = holds
        self._refusals: deque[float] = deque()
        self._lock = threading.Lock()

    def _hold(self, request: ApiRequest) -> Cooldown:
        return self.holds[SEARCH if request.kind == SEARCH else "*"]

    def rate_limited(
        self, request: ApiRequest, response: httpx.Response, retry_after: float | None
    ) -> float:
        said = _error_text(response)
        budget_spent = (
            "budget" in said.lower()
            or response.headers.get(TOKENS_LEFT_HEADER, "").strip() == "0"
            or (retry_after is not None and retry_after > LONGEST_BURST_WAIT)
        )
        now = crm_time(response)
        if budget_spent:
            until = (
                now + timedelta(seconds=retry_after)
                if retry_after is not None and retry_after > LONGEST_BURST_WAIT
                else next_utc_midnight(now)
            )
            raise self.tokens.exhaust(until, f"Pipedrive answered 429: {said or 'no detail'}")
        wait = retry_after if retry_after is not None else BURST_SECONDS
        hold = self._hold(request)
        hold.hold(wait)
        with self._lock:
            moment = time.monotonic()
            self._refusals.append(moment)
            while self._refusals and self._refusals[0] < moment - PERSISTENT_WINDOW:
                self._refusals.popleft()
            persistent = len(self._refusals) >= PERSISTENT_429S
        if persistent:
            for each in self.holds.values():
                each.stop(now + BLOCK_WAIT)
            raise hold.stop(
                now + BLOCK_WAIT,
                f"{PERSISTENT_429S} answers 429 within {PERSISTENT_WINDOW:.0f} s although each "
                "wait was honoured; stopped before Pipedrive blocks the API token",
            )
        return wait

    def refused(self, request: ApiRequest, response: httpx.Response) -> None:
        """A 403 with an HTML page is Cloudflare's block of a client that ignored 429s."""
        if response.status_code != 403 or "html" not in response.headers.get("content-type", ""):
            return
        until = crm_time(response) + BLOCK_WAIT
        for each in self.holds.values():
            each.stop(until)
        raise self.holds["*"].stop(
            until, "Pipedrive blocked the API token (403 from Cloudflare) after 429s"
        )


def pipedrive_budget(settings: Mapping[str, str], state_file: Path | None = None) -> Budget:
    """The limits of one Pipedrive company (tokens) and API token (windows)."""
    tokens = DailyAllowance(
        "daily token budget",
        daily_tokens(settings),
        remaining_header=TOKENS_LEFT_HEADER,
        limit_header=TOKENS_LIMIT_HEADER,
        state_file=state_file,
        unit="tokens",
    )
    post_put = DailyAllowance(
        "daily POST/PUT request limit",
        None,
        remaining_header=POST_PUT_LEFT_HEADER,
        per_request=True,
    )
    burst = RollingWindow(
        "burst limit per 2 s", BURST_REQUESTS, BURST_SECONDS, headers=BURST_HEADERS
    )
    search = RollingWindow(
        "search limit per 2 s", SEARCH_REQUESTS, BURST_SECONDS, headers=BURST_HEADERS
    )
    holds = {"*": Cooldown("burst limit"), SEARCH: Cooldown("search limit")}
    rules = RateLimitRules(tokens, holds)
    return Budget(
        {
            "*": (holds["*"], burst, tokens),
            POST: (holds["*"], burst, tokens, post_put),
            SEARCH: (holds[SEARCH], search, tokens),
        },
        cost=token_cost,
        on_rate_limited=rules.rate_limited,
        on_refused=rules.refused,
    )
