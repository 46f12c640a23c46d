"""A sandbox CRM left running in the background is announced once, and `sandbox stop` stops it.

The import starts a real background sandbox process for the test's data home.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline import cli
from bulk_pipeline.sandbox.launcher import running_server
from bulk_pipeline_tests.recurring import contacts_csv


@pytest.fixture
def leftover_sandbox_stopped() -> Iterator[None]:
    """Whatever the test's assertions say, no background sandbox outlives it."""
    yield
    server = running_server()
    if server is not None:
        os.kill(server.pid, signal.SIGTERM)
        os.waitpid(server.pid, 0)


def test_a_started_sandbox_is_announced_once_and_sandbox_stop_stops_it(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    leftover_sandbox_stopped: None,
) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", ["ann@example.com"])

    assert cli.main(["import", str(path), "--no-progress"]) == 0

    server = running_server()
    assert server is not None
    err = capsys.readouterr().err
    assert f"A sandbox CRM now runs in the background on {server.url} (process {server.pid}" in err
    assert "Stop it with: bulk-pipeline sandbox stop" in err

    assert cli.main(["import", str(path), "--no-progress"]) == 0
    assert "in the background" not in capsys.readouterr().err, "said once, when started"

    assert cli.main(["sandbox", "stop"]) == 0

    out = capsys.readouterr().out
    assert f"stopped the sandbox CRM on {server.url} (process {server.pid})" in out
    assert running_server() is None
    with pytest.raises(ChildProcessError):
        os.waitpid(server.pid, os.WNOHANG)  # already reaped: the process is gone
    assert cli.main(["sandbox", "stop"]) == 0
    assert "no sandbox CRM is running" in capsys.readouterr().out
