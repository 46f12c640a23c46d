"""How Pipedrive-like the sandbox's Pipedrive dialect behaves: budget, burst windows, block, lag.

Pipedrive documents (developers.pipedrive.com, "Rate limiting", token-based):
- a daily token budget per company: 30,000 x plan multiplier (Lite 1, Growth 2, Premium 5,
  Ultimate 7) x seats, spent by every call's ``x-token-cost`` and reset at the server's midnight
  (the sandbox: UTC midnight);
- burst limits per token in a rolling 2-second window: api_token Lite 20, Growth 40, Premium 100,
  Ultimate 120 requests; OAuth apps 80, 160, 400, 480; the Search API 10 on every plan;
- api_token integrations that keep sending after 429 get 403 from Cloudflare (an HTML page).
The block's trigger and length and the search index lag are not documented; they are guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bulk_pipeline.sandbox import settings
from bulk_pipeline.sandbox.ratelimit import RateLimit

BASE_TOKENS = 30_000
BURST_WINDOW_MS = 2_000


@dataclass(frozen=True)
class Plan:
    multiplier: int
    api_token_burst: int
    oauth_burst: int


PLANS = {
    "lite": Plan(1, 20, 80),
    "growth": Plan(2, 40, 160),
    "premium": Plan(5, 100, 400),
    "ultimate": Plan(7, 120, 480),
}
DEFAULT_PLAN = "growth"
DEFAULT_SEATS = 3
SEARCH_LIMIT = RateLimit(10, BURST_WINDOW_MS)
DEFAULT_BURST = RateLimit(PLANS[DEFAULT_PLAN].api_token_burst, BURST_WINDOW_MS)
DEFAULT_OAUTH_BURST = RateLimit(PLANS[DEFAULT_PLAN].oauth_burst, BURST_WINDOW_MS)


@dataclass(frozen=True)
class PipedriveSettings:
    """The defaults are a Growth plan with 3 seats: 180,000 tokens a day, 40 requests per 2 s."""

    daily_budget: int | None = BASE_TOKENS * PLANS[DEFAULT_PLAN].multiplier * DEFAULT_SEATS
    """Tokens per UTC day for the whole company; ``None`` for no budget."""
    burst_limit: RateLimit | None = DEFAULT_BURST
    """Requests per rolling window for the api_token (``x-api-token`` or ``api_token=``)."""
    oauth_burst_limit: RateLimit | None = DEFAULT_OAUTH_BURST
    """Requests per rolling window for an OAuth access token (``Authorization: Bearer``)."""
    search_limit: RateLimit | None = SEARCH_LIMIT
    """Requests per rolling window to the search endpoints, which the burst window skips."""
    block_after: int | None = 10
    """Requests an api_token client may send while told to wait (before a 429's Retry-After
    passed) before it is blocked; ``None`` never blocks. A guess: Pipedrive gives no number."""
    block_seconds: float = 60.0
    """How long a block lasts (403 with Cloudflare's HTML page). A guess as well."""
    search_lag_s: float = 0.0
    """Seconds before a new or changed record shows in search results (lists and reads by id
    see it at once). Pipedrive's search index lags by seconds; the sandbox does not by default."""
    clock_offset_s: float = 0.0
    """Added to the wall clock for the budget's day, so tests can live near midnight."""

    @classmethod
    def for_plan(cls, plan: str, seats: int) -> PipedriveSettings:
        """A plan's budget and burst limits (``lite``, ``growth``, ``premium``, ``ultimate``)."""
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}, got {plan!r}")
        if seats < 1:
            raise ValueError(f"seats must be at least 1, got {seats}")
        terms = PLANS[plan]
        return cls(
            daily_budget=BASE_TOKENS * terms.multiplier * seats,
            burst_limit=RateLimit(terms.api_token_burst, BURST_WINDOW_MS),
            oauth_burst_limit=RateLimit(terms.oauth_burst, BURST_WINDOW_MS),
        )

    @classmethod
    def unlimited(cls) -> PipedriveSettings:
        return cls(daily_budget=None, burst_limit=None, oauth_burst_limit=None, search_limit=None)

    def changed(self, changes: Mapping[str, Any]) -> PipedriveSettings:
        """A copy with the admin view's changes; ``plan`` (with ``seats``) sets budget and bursts
        first, then the other changes apply."""
        rest = dict(changes)
        base = self
        if "plan" in rest or "seats" in rest:
            planned = PipedriveSettings.for_plan(
                str(rest.pop("plan", DEFAULT_PLAN)), int(rest.pop("seats", DEFAULT_SEATS))
            )
            base = replace(
                self,
                daily_budget=planned.daily_budget,
                burst_limit=planned.burst_limit,
                oauth_burst_limit=planned.oauth_burst_limit,
            )
        return settings.changed(base, rest, _PARSERS)

    def as_json(self) -> dict[str, Any]:
        def limit(value: RateLimit | None) -> dict[str, int] | None:
            return None if value is None else value.as_json()

        return {
            "daily_budget": self.daily_budget,
            "burst_limit": limit(self.burst_limit),
            "oauth_burst_limit": limit(self.oauth_burst_limit),
            "search_limit": limit(self.search_limit),
            "block_after": self.block_after,
            "block_seconds": self.block_seconds,
            "search_lag_s": self.search_lag_s,
            "clock_offset_s": self.clock_offset_s,
        }


_PARSERS: dict[str, settings.Parser] = {
    "daily_budget": settings.positive_int_or_none,
    "burst_limit": settings.rate_limit,
    "oauth_burst_limit": settings.rate_limit,
    "search_limit": settings.rate_limit,
    "block_after": settings.positive_int_or_none,
    "block_seconds": settings.non_negative,
    "search_lag_s": settings.non_negative,
    "clock_offset_s": settings.number,
}
