"""A client for the sandbox's admin view (``/_sandbox/``), which tests and benchmarks drive."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

import httpx

from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.stats import RequestStats, SandboxStats


class SandboxAdmin:
    """Stats, reset, fault injection and raw records of one sandbox. No token needed."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=f"{self.url}/_sandbox", timeout=timeout, trust_env=False
        )

    def health(self) -> bool:
        try:
            return self._client.get("/health").json().get("ok") is True
        except (httpx.HTTPError, ValueError):
            return False

    def stats(self) -> SandboxStats:
        return cast(SandboxStats, self._get("/stats"))

    def counts(self, dialect: str = "hubspot") -> dict[str, int]:
        """A dialect's active records per object type (types without records are absent)."""
        return self.stats()["dialects"][dialect]["counts"]

    def requests(self, dialect: str) -> RequestStats:
        """What one dialect was asked: totals, by route, by status."""
        return self.stats()["dialects"][dialect]["requests"]

    def limits(self, dialect: str) -> dict[str, Any]:
        """A dialect's limit state now (for Pipedrive: tokens used today, blocks)."""
        return self.stats()["dialects"][dialect]["limits"]

    def reset(self) -> None:
        """Delete every record of every dialect, zero the request counters, empty the limits."""
        self._client.post("/reset").raise_for_status()

    def reset_limits(self) -> None:
        """Empty every rolling window, daily counter, token budget and block; keep records."""
        self._client.post("/limits/reset").raise_for_status()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change ``error_rate``, ``drop_rate``, ``latency_ms``, ``seed`` (every dialect);
        HubSpot's ``daily_limit``, ``rate_limit`` or ``search_rate_limit``; or another
        dialect's settings as a mapping, e.g. ``pipedrive={"daily_budget": 500}``.

        Rate limits are given as ``RateLimit`` (or ``None`` for no limit). Returns the whole
        configuration now in force; rolling windows start empty again.
        """
        answer = self._client.post("/config", json=_as_json(changes))
        answer.raise_for_status()
        return cast(dict[str, Any], answer.json())

    def records(self, object_type: str, dialect: str = "hubspot") -> list[dict[str, Any]]:
        """Every active record of a dialect's type, as its API shows it, in id order."""
        path = (
            f"/records/{object_type}"
            if dialect == "hubspot"
            else f"/records/{dialect}/{object_type}"
        )
        return cast(list[dict[str, Any]], self._get(path)["results"])

    def post(self, path: str, body: Any = None) -> Any:
        """A dialect's own admin action, e.g. ``post("/pipedrive/fields/person", {...})``."""
        answer = self._client.post(path, json=body)
        answer.raise_for_status()
        return answer.json()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SandboxAdmin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _get(self, path: str) -> Any:
        answer = self._client.get(path)
        answer.raise_for_status()
        return answer.json()


def _as_json(value: Any) -> Any:
    """Configuration values as the admin view reads them (rate limits as objects)."""
    if isinstance(value, RateLimit):
        return value.as_json()
    if isinstance(value, Mapping):
        return {name: _as_json(item) for name, item in value.items()}
    return value
