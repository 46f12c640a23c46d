"""Request counters of one sandbox process, so tests and people can see what an importer did."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, TypedDict


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


class DialectStats(TypedDict):
    counts: dict[str, int]
    """Active records per object type."""
    requests: RequestStats
    limits: dict[str, Any]
    """The dialect's limits now (budget used today, blocks), where it keeps such state."""


class SandboxStats(TypedDict):
    counts: dict[str, int]
    """HubSpot's active records per object type, as before the sandbox had other dialects."""
    requests: RequestStats
    """Every API request of every dialect (the admin view is not counted)."""
    dialects: dict[str, DialectStats]


class _Tally:
    def __init__(self) -> None:
        self.total = self.writes = self.reads = self.rate_limited = self.dropped = 0
        self.by_status: Counter[str] = Counter()
        self.by_route: Counter[str] = Counter()

    def snapshot(self) -> RequestStats:
        return RequestStats(
            total=self.total,
            writes=self.writes,
            reads=self.reads,
            by_status=dict(self.by_status),
            by_route=dict(self.by_route),
            rate_limited=self.rate_limited,
            dropped=self.dropped,
        )


class RequestCounters:
    """Thread-safe counters of API requests, in total and per dialect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = _Tally()
            self._dialects: dict[str, _Tally] = {}

    def answered(self, dialect: str | None, status: int) -> None:
        with self._lock:
            for tally in self._tallies(dialect):
                tally.total += 1
                tally.by_status[str(status)] += 1
                if status == 429:
                    tally.rate_limited += 1

    def dropped(self, dialect: str) -> None:
        with self._lock:
            for tally in self._tallies(dialect):
                tally.total += 1
                tally.dropped += 1

    def routed(self, dialect: str, route: str, *, write: bool) -> None:
        with self._lock:
            for tally in self._tallies(dialect):
                tally.by_route[route] += 1
                if write:
                    tally.writes += 1
                else:
                    tally.reads += 1

    def snapshot(self) -> RequestStats:
        with self._lock:
            return self._total.snapshot()

    def snapshot_of(self, dialect: str) -> RequestStats:
        with self._lock:
            return self._dialects.get(dialect, _Tally()).snapshot()

    def _tallies(self, dialect: str | None) -> tuple[_Tally, ...]:
        if dialect is None:
            return (self._total,)
        tally = self._dialects.get(dialect)
        if tally is None:
            tally = self._dialects[dialect] = _Tally()
        return (self._total, tally)
