"""The CRM's own clock, read from the ``Date`` header of its answers.

Deciding whether a record found after a crash is one this import created compares the CRM's
``createdAt`` with when the import sent its create. Reading "when" off the local clock trusts two
clocks to agree; this clock tells the CRM's time instead: the last ``Date`` it sent, advanced by
the local *monotonic* time since (which runs at the same rate however far apart the two wall
clocks are set).

A ``Date`` has whole seconds, so each answer says only that the CRM's time was at least that
second when the answer arrived. The clock keeps the highest of these bounds, carried forward
to now: after a few answers it lags the CRM's time by about one answer's latency rather than
by up to a second, which is what lets a record created by someone else a moment before our
create be told from ours.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

DATE_RESOLUTION = timedelta(seconds=1)
"""HTTP dates have whole seconds: one answer tells the CRM's time to within this."""
CREATED_MARGIN = DATE_RESOLUTION
"""How much earlier than our send a record we created may say it was created: the clock's
time is a lower bound of the CRM's, but a CRM may keep creation times in whole seconds."""
CLOCK_STEP = 2 * DATE_RESOLUTION
"""An answer whose date falls this far below the clock's bound means the CRM's clock was set
back: the clock starts again from that answer."""


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
            at = self._monotonic()
            if self._anchor is not None:
                bound = self._anchor[0] + timedelta(seconds=at - self._anchor[1])
                if bound - CLOCK_STEP < when <= bound:
                    return
            self._anchor = (when, at)

    def now(self) -> datetime | None:
        """The CRM's current time (at most a second behind it, and never ahead), or None before
        any answer with a Date."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return None
        when, at = anchor
        return when + timedelta(seconds=self._monotonic() - at)
