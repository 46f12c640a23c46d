"""Stop a push between batches when asked (Ctrl-C, SIGTERM, a run terminated in the UI).

Inside a batch, the first interrupt only raises a flag: the batch finishes and is checkpointed,
then the push stops with its state saved. A second interrupt stops at once, as people expect
from pressing Ctrl-C twice; it raises ``StoppedAtOnce``, a ``PushStopped``, so that the step's
retry policy does not start the push again (Dagster retries a step interrupted by a bare
``KeyboardInterrupt``). Either way, every change sent was written down first, so running the
import again resumes without writing anything twice.

Commands also want to know whether a person interrupted them at all, wherever the signal
landed (Dagster and DuckDB turn an interrupt into errors of their own): ``interrupts_seen``
counts the interrupt signals received meanwhile, whoever handled them.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from bulk_pipeline.push import PushStopped

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedAtOnce(PushStopped):
    """A second interrupt: the push stopped in the middle of a batch."""


class StopRequest:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def stop_between_batches() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current batch."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[signal.Signals, Any] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def _request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.requested:
            raise StoppedAtOnce(
                "stopped at once on a second request, in the middle of a batch; every change "
                "sent was recorded first, and running the import again resumes where it stopped"
            )
        stop.requested = True

    for sig in STOP_SIGNALS:
        signal.signal(sig, _request_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class InterruptCount:
    def __init__(self) -> None:
        self.count = 0


@contextmanager
def interrupts_seen() -> Iterator[InterruptCount]:
    """Count SIGINT and SIGTERM received inside the block, whichever handler took them.

    Python writes the number of every signal it handles to the "wakeup" descriptor; this
    points it at a pipe for the duration and reads the pipe at the end.
    """
    seen = InterruptCount()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield seen
    finally:
        signal.set_wakeup_fd(previous)
        try:
            received = os.read(read_end, 4096)
        except BlockingIOError:
            received = b""
        os.close(read_end)
        os.close(write_end)
        seen.count = sum(byte in (signal.SIGINT, signal.SIGTERM) for byte in received)
