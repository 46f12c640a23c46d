"""Find the sandbox CRM of the current data home, or start one in the background.

Commands and Dagster runs call ``ensure_sandbox()`` and get a base URL; the first caller starts a
detached server (it outlives the caller and is shared by later ones), which announces itself in
``<data home>/sandbox/server.json`` once it listens. A lock file stops two callers starting two.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

import bulk_pipeline
from bulk_pipeline.config import HOME_ENV, SANDBOX_URL_ENV, data_home, file_lock

STATE_FILE = "server.json"
LOG_FILE = "server.log"
LOCK_FILE = "launch.lock"
DEFAULT_START_TIMEOUT_S = 30.0


class SandboxStartError(RuntimeError):
    """The background sandbox did not come up; the message points at its log."""


class SandboxStopError(RuntimeError):
    """The sandbox did not stop when asked."""


def sandbox_dir() -> Path:
    path = data_home() / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_sandbox(*, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> str:
    """The base URL of a running sandbox for this data home, starting one if none answers.

    ``BULK_PIPELINE_SANDBOX_URL`` wins when set (a sandbox someone runs elsewhere).
    """
    configured = os.environ.get(SANDBOX_URL_ENV)
    if configured:
        return configured.rstrip("/")
    directory = sandbox_dir()
    with file_lock(directory / LOCK_FILE):
        url = running_url()
        if url is not None:
            return url
        return _start(directory, timeout_s)


def running_url() -> str | None:
    """The URL in ``server.json`` if a sandbox answers there, else ``None``."""
    server = running_server()
    return server.url if server is not None else None


def is_healthy(url: str) -> bool:
    try:
        answer = httpx.get(f"{url}/_sandbox/health", timeout=2.0, trust_env=False)
        return answer.status_code == 200 and answer.json().get("ok") is True
    except (httpx.HTTPError, ValueError):
        return False


def publish(url: str) -> Path:
    """Announce this process's sandbox to ``ensure_sandbox`` callers (written atomically)."""
    path = sandbox_dir() / STATE_FILE
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    partial.replace(path)
    return path


def withdraw(path: Path) -> None:
    """Remove the announcement, unless another sandbox has replaced it since."""
    state = _read_state(path)
    if state is not None and state[1] == os.getpid():
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def running_server() -> RunningServer | None:
    """The sandbox announced for this data home, if it answers."""
    state = _read_state(sandbox_dir() / STATE_FILE)
    if state is None or not is_healthy(state[0]):
        return None
    return RunningServer(*state)


def stop_server(*, timeout_s: float = 10.0) -> RunningServer | None:
    """Stop the data home's sandbox (the one ``ensure_sandbox`` started, or one serving in the
    foreground); returns what was stopped, or None when none was running."""
    server = running_server()
    if server is None:
        return None
    try:
        os.kill(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return server
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(server.pid):
            return server
        time.sleep(0.05)
    raise SandboxStopError(
        f"The sandbox CRM (process {server.pid}) did not stop within {timeout_s:.0f} s; "
        f"stop it with: kill {server.pid}"
    )


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        finished = 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
    return finished == 0


def _read_state(path: Path) -> tuple[str, int] | None:
    try:
        state = json.loads(path.read_text())
        return str(state["url"]), int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _start(directory: Path, timeout_s: float) -> str:
    """Spawn a detached server (own session, output to the log) and wait until it answers."""
    log = directory / LOG_FILE
    package_root = str(Path(bulk_pipeline.__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
    env = {**os.environ, HOME_ENV: str(data_home()), "PYTHONPATH": python_path}
    argv = [sys.executable, "-m", "bulk_pipeline.sandbox", "--port", "0"]
    pid = os.posix_spawn(
        sys.executable,
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _read_state(directory / STATE_FILE)
        if state is not None and state[1] == pid and is_healthy(state[0]):
            return state[0]
        exited, status = os.waitpid(pid, os.WNOHANG)
        if exited:
            raise SandboxStartError(
                f"The sandbox CRM exited while starting (status {status}). Its log, {log}, "
                f"ends with:\n{_tail(log)}"
            )
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    raise SandboxStartError(
        f"The sandbox CRM did not answer within {timeout_s:.0f} s; it was stopped. See {log}."
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
