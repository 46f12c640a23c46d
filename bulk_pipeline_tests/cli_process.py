"""Running the real ``bulk-pipeline`` command in a separate process, on a pipe or in a
pseudo-terminal, pointed at the test's data home and sandbox."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from bulk_pipeline import config
from bulk_pipeline.sandbox.server import RunningSandbox

COMMAND = [sys.executable, "-m", "bulk_pipeline.cli"]


def cli_env(sandbox: RunningSandbox) -> dict[str, str]:
    env = {
        **os.environ,
        config.HOME_ENV: str(config.data_home()),
        config.SANDBOX_URL_ENV: sandbox.url,
        config.SANDBOX_TOKEN_ENV: sandbox.token,
        "TERM": "xterm-256color",
    }
    env.pop("DAGSTER_HOME", None)
    return env


def run_on_pipes(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_in_terminal(
    args: list[str], env: dict[str, str], *, columns: int = 120, timeout: float = 300
) -> tuple[str, int]:
    """Run the command with a pseudo-terminal as stdin, stdout and stderr, as a person would in
    a terminal ``columns`` wide; return everything it drew and its exit code."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [*COMMAND, *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: every process that held it has exited
                break
            if not chunk:
                break
            drawn += chunk
        else:
            process.kill()
            raise TimeoutError(f"bulk-pipeline {' '.join(args)} ran over {timeout} s")
    finally:
        os.close(controller)
    return drawn.decode("utf-8", errors="replace"), process.wait(timeout=30)
