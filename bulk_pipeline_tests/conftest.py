"""Fixtures shared by every test: an isolated data home, and a sandbox CRM on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bulk_pipeline.config import HOME_ENV, SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.sandbox.server import (
    RATE_LIMIT_ENV,
    SEARCH_RATE_LIMIT_ENV,
    RunningSandbox,
    SandboxConfig,
    start_in_thread,
)


@pytest.fixture(autouse=True)
def data_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data home, so no test writes to the repository's data/."""
    home = tmp_path_factory.mktemp("data_home")
    monkeypatch.setenv(HOME_ENV, str(home))
    for name in (SANDBOX_URL_ENV, SANDBOX_TOKEN_ENV, RATE_LIMIT_ENV, SEARCH_RATE_LIMIT_ENV):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    """A sandbox CRM on a free loopback port, without rate limits, stopped after the test."""
    running = start_in_thread(db_path=tmp_path / "crm.sqlite3", config=SandboxConfig.unlimited())
    try:
        yield running
    finally:
        running.stop()
