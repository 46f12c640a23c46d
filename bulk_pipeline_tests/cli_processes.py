"""The command line in a process of its own, as a person runs it: budgets are remembered per
process, and a kill -9 or a Ctrl-C must land on a real one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from bulk_pipeline import config
from bulk_pipeline.progress import Phase, read_progress
from bulk_pipeline.sandbox.server import RunningSandbox


def cli_process(sandbox: RunningSandbox, *args: str) -> subprocess.Popen[str]:
    """``bulk-pipeline <args>`` against ``sandbox``, under this test's data home."""
    env = {
        **os.environ,
        config.HOME_ENV: str(config.data_home()),
        config.SANDBOX_URL_ENV: sandbox.url,
        config.SANDBOX_TOKEN_ENV: sandbox.token,
    }
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bulk_pipeline.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_push(import_id: str, process: subprocess.Popen[str], timeout: float) -> None:
    """Until the push has started (its progress written), so a kill lands mid-push."""
    progress = config.data_home() / "work" / import_id / "progress.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        snapshot = read_progress(progress)
        if snapshot is not None and snapshot.phase == Phase.PUSHING:
            return
        time.sleep(0.05)


def kill_mid_push(
    start: Callable[[], subprocess.Popen[str]],
    import_id: str,
    *,
    kills: int,
    moments: random.Random,
    within: tuple[float, float],
) -> int:
    """Start the import and kill -9 it at a random moment of its push (``within`` seconds after
    the push began), ``kills`` times; how many kills landed (fewer when a push finished first)."""
    landed = 0
    while landed < kills:
        (config.data_home() / "work" / import_id / "progress.json").unlink(missing_ok=True)
        process = start()
        wait_for_push(import_id, process, timeout=60)
        time.sleep(moments.uniform(*within))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        landed += 1
    return landed
