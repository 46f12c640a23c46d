"""Attio's limits in the sandbox: reads and writes in separate rolling windows, no headers.

Attio sends no rate-limit headers; a call over a limit is answered 429 with ``Retry-After`` as an
HTTP date, and is not processed (so it is safe to send again).
"""

from __future__ import annotations

import threading
from typing import Any

from bulk_pipeline.sandbox.attio.errors import rate_limited
from bulk_pipeline.sandbox.attio.settings import AttioSettings
from bulk_pipeline.sandbox.dialect import ApiError
from bulk_pipeline.sandbox.ratelimit import RollingWindow


class AttioLimits:
    """Thread-safe; one per sandbox. Windows start empty whenever settings change."""

    def __init__(self, settings: AttioSettings) -> None:
        self.settings = settings
        self._windows = {
            False: RollingWindow(settings.read_limit),
            True: RollingWindow(settings.write_limit),
        }
        self._refused = {False: 0, True: 0}
        self._lock = threading.Lock()

    def with_settings(self, settings: AttioSettings) -> AttioLimits:
        return AttioLimits(settings)

    def admit(self, *, write: bool, now: float) -> ApiError | None:
        """Count one call at monotonic time ``now``, or the 429 that refuses it."""
        with self._lock:
            window = self._windows[write]
            max_requests, used, _, wait = window.state(now)
            if used >= max_requests:
                self._refused[write] += 1
                return rate_limited(wait)
            window.record(now)
            return None

    def state(self) -> dict[str, Any]:
        return {
            "read_limit": self.settings.as_json()["read_limit"],
            "write_limit": self.settings.as_json()["write_limit"],
            "reads_refused": self._refused[False],
            "writes_refused": self._refused[True],
        }
