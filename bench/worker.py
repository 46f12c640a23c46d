"""What the harness and its measurement processes share: how a result is handed back, and how a
process reads its own memory.

Every measurement runs in a fresh interpreter so that its peak RSS is its own; it prints one
JSON object after ``RESULT_PREFIX`` and the harness reads the last such line. Standard library
only, so that importing it adds nothing to the memory of the lightest measurement (the floor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse(stdout: str) -> dict[str, Any] | None:
    """The result a measurement printed, or None when it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    return None


def status_mib(name: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{name} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel cannot.

    Writing 5 to /proc/self/clear_refs does it (Linux 4.0 and later), which lets one process
    report a peak per stage.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
