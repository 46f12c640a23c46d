"""A client for the sandbox's admin view (``/_sandbox/``), which tests and benchmarks drive."""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

import httpx

from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.stats import SandboxStats


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

    def counts(self) -> dict[str, int]:
        """Active records per object type (types without records are absent)."""
        return self.stats()["counts"]

    def reset(self) -> None:
        """Delete every record and zero the request counters."""
        self._client.post("/reset").raise_for_status()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change ``error_rate``, ``drop_rate``, ``latency_ms``, ``seed``, ``daily_limit``,
        ``rate_limit`` or ``search_rate_limit`` (a ``RateLimit``, or ``None`` for no limit).

        Returns the whole configuration now in force; rolling windows start empty again.
        """
        body = {
            name: {"max": value.max_requests, "interval_ms": value.interval_ms}
            if isinstance(value, RateLimit)
            else value
            for name, value in changes.items()
        }
        answer = self._client.post("/config", json=body)
        answer.raise_for_status()
        return cast(dict[str, Any], answer.json())

    def records(self, object_type: str) -> list[dict[str, Any]]:
        """Every active record of a type, with all its properties, in id order."""
        return cast(list[dict[str, Any]], self._get(f"/records/{object_type}")["results"])

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
