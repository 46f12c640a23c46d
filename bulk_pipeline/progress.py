"""One progress model for every phase of an import: reading, validating, staging, pushing.

Each phase writes a ``ProgressSnapshot`` to ``progress.json`` in the import's work folder, so any
process (the CLI running the job in-process, or a person tailing a UI run) reads the same figures.
The push counts its outcomes batch by batch through a ``ProgressTracker``; the other phases,
which work on the whole file at once, report where they are with ``report_phase``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

LOG_INTERVAL_SECONDS = 5.0
WRITE_INTERVAL_SECONDS = 0.5


class Phase(StrEnum):
    READING = "reading"
    VALIDATING = "validating"
    STAGING = "staging"
    PLANNING = "planning"
    """A dry run looking every record up in the CRM."""
    PUSHING = "pushing"


@dataclass(frozen=True)
class ProgressSnapshot:
    processed: int
    total: int | None
    """None while the phase does not know it yet (reading a file)."""
    created: int
    updated: int
    unchanged: int
    failed: int
    duplicates: int
    batch: int
    batches: int
    elapsed_seconds: float
    records_per_second: float
    eta_seconds: float | None
    done: bool
    phase: str = Phase.PUSHING.value

    @property
    def records_per_minute(self) -> float:
        return self.records_per_second * 60

    def describe(self) -> str:
        eta = "?" if self.eta_seconds is None else f"{self.eta_seconds:.0f}s"
        return (
            f"{self.processed}/{self.total} records processed, batch {self.batch}/{self.batches} "
            f"({self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed, {self.duplicates} duplicates merged), "
            f"{self.records_per_minute:.0f} records/min, ETA {eta}"
        )


@dataclass
class ProgressTracker:
    """The push's progress: outcomes counted batch by batch, written at most twice a second."""

    total: int
    path: Path | None = None
    clock: Callable[[], float] = time.monotonic
    batches: int = 0
    duplicates: int = 0
    """Rows merged before the push; shown so a person sees every row somewhere."""
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    batch: int = 0
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
        return self.created + self.updated + self.unchanged + self.failed

    def add(
        self, *, created: int = 0, updated: int = 0, unchanged: int = 0, failed: int = 0
    ) -> None:
        """Count one finished batch."""
        self.batch += 1
        self.created += created
        self.updated += updated
        self.unchanged += unchanged
        self.failed += failed
        self._write(done=False, force=False)

    def snapshot(self, *, done: bool = False) -> ProgressSnapshot:
        elapsed = max(self.clock() - self._started, 0.0)
        rate = self.processed / elapsed if elapsed > 0 else 0.0
        return ProgressSnapshot(
            processed=self.processed,
            total=self.total,
            created=self.created,
            updated=self.updated,
            unchanged=self.unchanged,
            failed=self.failed,
            duplicates=self.duplicates,
            batch=self.batch,
            batches=self.batches,
            elapsed_seconds=elapsed,
            records_per_second=rate,
            eta_seconds=_eta(self.processed, self.total, rate),
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
        write_progress(self.path, self.snapshot(done=done))


def _eta(processed: int, total: int | None, rate: float) -> float | None:
    if total is None:
        return None
    remaining = total - processed
    if remaining <= 0:
        return 0.0
    return remaining / rate if rate > 0 else None


def report_phase(
    path: Path,
    phase: Phase,
    *,
    processed: int = 0,
    total: int | None = None,
    elapsed_seconds: float = 0.0,
    done: bool = False,
) -> None:
    """Where a whole-file phase is: started (``processed=0``) or finished (``done=True``)."""
    rate = processed / elapsed_seconds if elapsed_seconds > 0 else 0.0
    write_progress(
        path,
        ProgressSnapshot(
            processed=processed,
            total=total,
            created=0,
            updated=0,
            unchanged=0,
            failed=0,
            duplicates=0,
            batch=0,
            batches=0,
            elapsed_seconds=elapsed_seconds,
            records_per_second=rate,
            eta_seconds=_eta(processed, total, rate),
            done=done,
            phase=phase.value,
        ),
    )


def write_progress(path: Path, snapshot: ProgressSnapshot) -> None:
    """Replace ``path`` atomically, so a reader never sees half a snapshot."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(snapshot)), encoding="utf-8")
    os.replace(tmp, path)


def read_progress(path: Path) -> ProgressSnapshot | None:
    try:
        return ProgressSnapshot(**json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
