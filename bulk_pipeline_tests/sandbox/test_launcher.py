"""ensure_sandbox: one background sandbox per data home, started once, found again after."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bulk_pipeline.config import SANDBOX_URL_ENV, sandbox_token
from bulk_pipeline.sandbox.launcher import STATE_FILE, ensure_sandbox, is_healthy


@pytest.fixture
def launched() -> Iterator[list[int]]:
    """Pids of background sandboxes the test started; they are stopped and reaped afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        stop(pid)


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def state(data_home: Path) -> dict[str, object]:
    return json.loads((data_home / "sandbox" / STATE_FILE).read_text())


def test_the_environment_names_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, data_home: Path
) -> None:
    monkeypatch.setenv(SANDBOX_URL_ENV, "http://127.0.0.1:9/")
    assert ensure_sandbox() == "http://127.0.0.1:9"
    assert not (data_home / "sandbox" / STATE_FILE).exists()


def test_starts_one_sandbox_and_reuses_it(data_home: Path, launched: list[int]) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        urls = list(pool.map(lambda _: ensure_sandbox(), range(2)))
    announced = state(data_home)
    pid = int(str(announced["pid"]))
    launched.append(pid)
    assert pid != os.getpid()
    assert urls == [announced["url"], announced["url"]]
    assert is_healthy(urls[0])
    log = (data_home / "sandbox" / "server.log").read_text()
    assert log.count("listening on") == 1, "two callers at once start a single sandbox"

    assert ensure_sandbox() == urls[0]
    answer = httpx.post(
        f"{urls[0]}/crm/v3/objects/contacts",
        json={"properties": {"email": "a@example.com"}},
        headers={"Authorization": f"Bearer {sandbox_token()}"},
        trust_env=False,
    )
    assert answer.status_code == 201
    assert (data_home / "sandbox" / "crm.sqlite3").exists(), "it serves the data home's database"

    launched.remove(pid)
    stop(pid)
    assert not (data_home / "sandbox" / STATE_FILE).exists(), "a stopped sandbox withdraws"


def test_a_stale_announcement_is_replaced(data_home: Path, launched: list[int]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    (data_home / "sandbox").mkdir(exist_ok=True)
    (data_home / "sandbox" / STATE_FILE).write_text(json.dumps({"url": dead_url, "pid": 1}))

    url = ensure_sandbox()
    launched.append(int(str(state(data_home)["pid"])))
    assert url != dead_url
    assert is_healthy(url)
