"""Rolling-window rate limits, shared by the dialects (each applies them its own way)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

UNLIMITED = 1_000_000_000
"""What headers announce as the maximum when a limit is off."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``max_requests`` in any window of ``interval_ms``."""

    max_requests: int
    interval_ms: int

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """``"100/10000"`` (max / interval in ms), or ``"0"`` for no limit."""
        text = text.strip()
        if text in ("", "0"):
            return None
        count, _, interval = text.partition("/")
        try:
            limit = cls(int(count), int(interval))
        except ValueError:
            raise ValueError(
                f"rate limit {text!r} is not MAX/INTERVAL_MS, e.g. 100/10000"
            ) from None
        return limit.checked()

    def checked(self) -> RateLimit | None:
        """``None`` for a limit of 0 (off); refuses negative values and empty windows."""
        if self.max_requests == 0:
            return None
        if self.max_requests < 0 or self.interval_ms <= 0:
            raise ValueError(f"rate limit needs max >= 0 and interval_ms > 0, got {self}")
        return self

    def as_json(self) -> dict[str, int]:
        return {"max": self.max_requests, "interval_ms": self.interval_ms}


class RollingWindow:
    """Remembers when each admitted request came, forgetting those older than the window.

    Not thread-safe: the limits that own windows hold a lock around them.
    """

    def __init__(self, limit: RateLimit | None) -> None:
        self.limit = limit
        self._times: deque[float] = deque()

    def state(self, now: float) -> tuple[int, int, int, float]:
        """``(max, used, interval_ms, seconds until a slot frees)`` at monotonic time ``now``."""
        if self.limit is None:
            return UNLIMITED, 0, 10_000, 0.0
        interval_s = self.limit.interval_ms / 1000
        times = self._times
        while times and times[0] <= now - interval_s:
            times.popleft()
        wait = times[0] + interval_s - now if times else 0.0
        return self.limit.max_requests, len(times), self.limit.interval_ms, wait

    def record(self, now: float) -> None:
        if self.limit is not None:
            self._times.append(now)
