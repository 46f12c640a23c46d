"""What a command shows while it works and when it fails: one progress display for every phase,
and a short error block.

Progress comes from the import's ``progress.json`` (see ``progress.py``), polled from a thread.
It is drawn on a duplicate of the terminal's file descriptor taken before the run starts: while
Dagster runs a job it captures the process's stdout and stderr by pointing their descriptors at
a log file, so anything drawn on them would stop being drawn on the terminal (Rich then sees a
file, not a terminal, and stops refreshing its bar until the run is over).

On a terminal the display is a bar refreshed several times a second; on a pipe or in CI it is a
plain line at most every ``PLAIN_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bulk_pipeline.progress import ProgressSnapshot, read_progress

POLL_SECONDS = 0.25
REFRESHES_PER_SECOND = 4
PLAIN_INTERVAL_SECONDS = 5.0
MAX_MESSAGE_LINES = 8
"""Of an error message; the rest is in the run's log file."""
STEP_WORDS = {
    "source_rows": "reading the file",
    "validated_rows": "validating rows",
    "staged_records": "staging records",
    "crm_push": "pushing to the CRM",
    "import_results": "writing the results",
    "rollback_import": "rolling back",
    "nightly_sync": "syncing",
}


@contextmanager
def terminal_stream() -> Iterator[TextIO]:
    """A text stream on a duplicate of stderr's descriptor, unaffected by Dagster's capture."""
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        yield stream
    finally:
        stream.close()


def counts_text(snapshot: ProgressSnapshot) -> str:
    if snapshot.total is None:
        return f"{snapshot.processed:,} records" if snapshot.processed else ""
    return f"{snapshot.processed:,}/{snapshot.total:,}"


def rate_text(snapshot: ProgressSnapshot) -> str:
    return f"{snapshot.records_per_second:,.0f} records/s" if snapshot.records_per_second else ""


def eta_text(snapshot: ProgressSnapshot) -> str:
    """How long until the phase is done; empty while unknown (no total, or nothing done yet)."""
    if snapshot.done or snapshot.total is None or snapshot.eta_seconds is None:
        return ""
    return f"ETA {duration_text(snapshot.eta_seconds)}"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def plain_line(snapshot: ProgressSnapshot, elapsed: float) -> str:
    """One progress line for logs: phase, counts, share, rate, ETA."""
    parts = [f"[{duration_text(elapsed)}] {snapshot.phase}"]
    if snapshot.total is not None:
        share = snapshot.processed / snapshot.total if snapshot.total else 1.0
        parts.append(f"{snapshot.processed:,} of {snapshot.total:,} records ({share:.0%})")
    if snapshot.records_per_second:
        parts.append(rate_text(snapshot))
    if eta_text(snapshot):
        parts.append(eta_text(snapshot))
    return ", ".join(parts)


class ProgressDisplay:
    """Polls ``progress.json`` from a thread and shows it, live or as plain lines."""

    def __init__(
        self,
        path: Path,
        stream: TextIO,
        *,
        live: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.stream = stream
        self.live = live
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress")

    def __enter__(self) -> ProgressDisplay:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        if self.live:
            self._run_live()
        else:
            self._run_plain()

    def _run_plain(self) -> None:
        started = self.clock()
        last_line = float("-inf")
        while not self._stop.wait(POLL_SECONDS):
            snapshot = read_progress(self.path)
            now = self.clock()
            if snapshot is None or now - last_line < PLAIN_INTERVAL_SECONDS:
                continue
            last_line = now
            self.stream.write(plain_line(snapshot, now - started) + "\n")
            self.stream.flush()

    def _run_live(self) -> None:
        console = Console(file=self.stream, force_terminal=True, stderr=False)
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=True,
            refresh_per_second=REFRESHES_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as bar:
            task: TaskID | None = None
            phase = ""
            while not self._stop.wait(POLL_SECONDS):
                snapshot = read_progress(self.path)
                if snapshot is None:
                    continue
                counts = counts_text(snapshot)
                rate = rate_text(snapshot)
                eta = eta_text(snapshot)
                if task is None or snapshot.phase != phase:
                    if task is not None:
                        bar.remove_task(task)
                    phase = snapshot.phase
                    task = bar.add_task(phase, total=snapshot.total, counts="", rate="", eta="")
                bar.update(
                    task,
                    total=snapshot.total,
                    completed=snapshot.processed,
                    counts=counts,
                    rate=rate,
                    eta=eta,
                )


def error_block(
    what: str,
    message: str,
    *,
    run_id: str | None = None,
    log_path: Path | None = None,
    step: str | None = None,
) -> str:
    """A few lines: what failed (and in which step), why in the user's terms, where the full
    log is. Long messages are cut; the log has all of it."""
    heading = f"error: {what} failed" + (f" while {STEP_WORDS[step]}" if step in STEP_WORDS else "")
    lines = message.strip().splitlines() or ["no reason was recorded"]
    if len(lines) > MAX_MESSAGE_LINES:
        lines = [*lines[: MAX_MESSAGE_LINES - 1], "... (the rest is in the log)"]
    block = [heading, *(f"  {line}" for line in lines)]
    if run_id is not None:
        block.append(f"  run {run_id}" + (f"; full log: {log_path}" if log_path else ""))
    if log_path is not None:
        block.append("  (--verbose prints the log records as they happen)")
    return "\n".join(block)


def stopped_block(what: str, reason: str, *, run_id: str, step: str | None = None) -> str:
    """A run a person stopped: not an error, and how to go on."""
    where = f" while {STEP_WORDS[step]}" if step in STEP_WORDS else ""
    return f"stopped: {what}{where}: {reason}\n  run {run_id}"
