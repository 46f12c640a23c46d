"""Stop a push between batches when asked (Ctrl-C, SIGTERM, a run terminated in the UI).

Inside a batch, the first interrupt only raises a flag: the batch finishes and is checkpointed,
then the push stops with its state saved. A second interrupt stops at once, as people expect
from pressing Ctrl-C twice.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
            raise KeyboardInterrupt
        stop.requested = True

    for sig in STOP_SIGNALS:
        signal.signal(sig, _request_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
