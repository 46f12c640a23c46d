"""The CRM's own clock, read from the ``Date`` header of its answers.

Deciding whether a record found after a crash is one this import created compares the CRM's
``createdAt`` with when the import sent its create. Reading "when" off the local clock trusts two
clocks to agree; this clock tells the CRM's time instead: the last ``Date`` it sent, advanced by
the local *monotonic* time since (which runs at the same rate however far apart the two wall
clocks are set).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

DATE_RESOLUTION = timedelta(seconds=1)
"""HTTP dates have whole seconds: the CRM's time is known to within this."""


class CrmClock:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._anchor: tuple[datetime, float] | None = None

    def observe(self, date_header: str | None) -> None:
        if not date_header:
            return
        try:
            when = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            return
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            self._anchor = (when, self._monotonic())

    def now(self) -> datetime | None:
        """The CRM's current time (to within a second), or None before any answer with a Date."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return None
        when, at = anchor
        return when + timedelta(seconds=self._monotonic() - at)
