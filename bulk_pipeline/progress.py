"""One progress tracker for a push: it feeds the Dagster log lines and the CLI's progress bar.

The tracker writes its snapshot to ``progress.json`` in the import's work folder, so any process
(the CLI running the job in-process, or a person tailing a UI run) reads the same figures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOG_INTERVAL_SECONDS = 5.0
WRITE_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True)
class ProgressSnapshot:
    processed: int
    total: int
    created: int
    updated: int
    failed: int
    elapsed_seconds: float
    records_per_second: float
    eta_seconds: float | None
    done: bool

    def describe(self) -> str:
        eta = "?" if self.eta_seconds is None else f"{self.eta_seconds:.0f}s"
        return (
            f"{self.processed}/{self.total} records pushed "
            f"({self.created} created, {self.updated} updated, {self.failed} failed), "
            f"{self.records_per_second:.0f} records/s, ETA {eta}"
        )


@dataclass
class ProgressTracker:
    total: int
    path: Path | None = None
    clock: Callable[[], float] = time.monotonic
    created: int = 0
    updated: int = 0
    failed: int = 0
    _started: float = field(init=False)
    _last_log: float = field(init=False)
    _last_write: float = field(init=False)

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._last_log = self._started
        self._last_write = float("-inf")
        self._write(done=False, force=True)

    @property
    def processed(self) -> int:
        return self.created + self.updated + self.failed

    def add(self, *, created: int = 0, updated: int = 0, failed: int = 0) -> None:
        self.created += created
        self.updated += updated
        self.failed += failed
        self._write(done=False, force=False)

    def snapshot(self, *, done: bool = False) -> ProgressSnapshot:
        elapsed = max(self.clock() - self._started, 0.0)
        rate = self.processed / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.processed
        eta = remaining / rate if rate > 0 else (0.0 if remaining <= 0 else None)
        return ProgressSnapshot(
            processed=self.processed,
            total=self.total,
            created=self.created,
            updated=self.updated,
            failed=self.failed,
            elapsed_seconds=elapsed,
            records_per_second=rate,
            eta_seconds=eta,
            done=done,
        )

    def due_for_log(self) -> bool:
        """True at most once per LOG_INTERVAL_SECONDS, for log lines that do not flood."""
        now = self.clock()
        if now - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = now
            return True
        return False

    def finish(self) -> ProgressSnapshot:
        self._write(done=True, force=True)
        return self.snapshot(done=True)

    def _write(self, *, done: bool, force: bool) -> None:
        now = self.clock()
        if self.path is None or (not force and now - self._last_write < WRITE_INTERVAL_SECONDS):
            return
        self._last_write = now
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.snapshot(done=done))), encoding="utf-8")
        os.replace(tmp, self.path)


def read_progress(path: Path) -> ProgressSnapshot | None:
    try:
        return ProgressSnapshot(**json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
