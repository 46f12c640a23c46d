"""Request counters of one sandbox process, so tests and people can see what an importer did."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TypedDict


class RequestStats(TypedDict):
    total: int
    writes: int
    """Write calls that passed auth, rate limiting and fault injection, successful or not."""
    reads: int
    by_status: dict[str, int]
    by_route: dict[str, int]
    rate_limited: int
    dropped: int
    """Calls whose work was done but whose connection was then cut (``drop_rate``)."""


class SandboxStats(TypedDict):
    counts: dict[str, int]
    """Active records per object type."""
    requests: RequestStats


class RequestCounters:
    """Thread-safe counters for HubSpot-path requests (the admin view is not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = self._writes = self._reads = self._rate_limited = self._dropped = 0
            self._by_status: Counter[str] = Counter()
            self._by_route: Counter[str] = Counter()

    def answered(self, status: int) -> None:
        with self._lock:
            self._total += 1
            self._by_status[str(status)] += 1
            if status == 429:
                self._rate_limited += 1

    def dropped(self) -> None:
        with self._lock:
            self._total += 1
            self._dropped += 1

    def routed(self, route: str, *, write: bool) -> None:
        with self._lock:
            self._by_route[route] += 1
            if write:
                self._writes += 1
            else:
                self._reads += 1

    def snapshot(self) -> RequestStats:
        with self._lock:
            return RequestStats(
                total=self._total,
                writes=self._writes,
                reads=self._reads,
                by_status=dict(self._by_status),
                by_route=dict(self._by_route),
                rate_limited=self._rate_limited,
                dropped=self._dropped,
            )
