"""push_batches.csv: one row per pushed chunk, for the throughput chart of the report.

Each row's seconds run from the end of the previous chunk (or the start of the push) to the end
of this one, so they include every wait between chunks (rate limits, checkpoints): the per-chunk
rates then average to the push's overall rate instead of flattering it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bulk_pipeline.csv_export import append_rows, write_rows

BATCH_LOG_COLUMNS = ("batch", "records", "seconds", "records_per_second", "finished_at")


class BatchLog:
    """Appends one row per chunk, so the figures survive a crash mid-push."""

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.count = 0
        self._clock = clock
        self._last = clock()
        if path is not None:
            write_rows(path, BATCH_LOG_COLUMNS, [])

    def add(self, records: int) -> None:
        now = self._clock()
        seconds, self._last = now - self._last, now
        self.count += 1
        if self.path is None:
            return
        rate = records / seconds if seconds > 0 else 0.0
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        append_rows(self.path, [[self.count, records, round(seconds, 4), round(rate, 1), finished]])
