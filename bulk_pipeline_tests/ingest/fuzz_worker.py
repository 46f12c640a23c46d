"""Reads input files for the fuzz suite, in a child process whose memory is capped.

The parent (``test_fuzz.py``) writes one path per line; this process answers each with one JSON
line: what ``read_file`` gave (a table, or an ``InputFileError`` and its message, or anything
else with its traceback) and how far the resident memory grew above where the case began. The
address space is capped with ``RLIMIT_AS``, so an input that makes a reader allocate gigabytes
kills or fails this process instead of the machine; the parent enforces the time cap, since a
reader stuck in native code cannot be interrupted from inside.

    python -m bulk_pipeline_tests.ingest.fuzz_worker <address space bytes> <limits as JSON>
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import traceback
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK = "5"
"""Writing 5 to clear_refs resets the peak resident set size (VmHWM) of the process."""


def memory(field: str) -> int | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset), in bytes (Linux);
    None elsewhere."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        CLEAR_REFS.write_text(RESET_PEAK)


def main() -> None:
    address_space = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    from bulk_pipeline.ingest import InputFileError, Limits, read_file

    limits = Limits(**json.loads(sys.argv[2]))
    for line in sys.stdin:
        path = line.rstrip("\n")
        reset_peak()
        before = memory("VmRSS")
        answer: dict[str, object]
        try:
            table = read_file(Path(path), limits=limits)
            answer = {"outcome": "table", "rows": table.frame.height}
        except InputFileError as exc:
            answer = {"outcome": "input_error", "message": str(exc)}
        except BaseException:  # anything else is what the fuzz suite looks for
            answer = {"outcome": "crash", "message": traceback.format_exc()}
        peak = memory("VmHWM")
        answer["grew"] = None if peak is None or before is None else peak - before
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
