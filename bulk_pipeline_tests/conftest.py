"""Fixtures shared by every test: an isolated data home, a sandbox CRM on demand, the pipeline
pointed at it, and the persistent Dagster instance under the test's data home. The whole session
runs under the repository guard (no test may open a file beside the repository), and tests that
need a Debian program (markers in programs.py) skip without it, or fail under CI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline.config import HOME_ENV, SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.instance import open_instance
from bulk_pipeline.sandbox.server import (
    RATE_LIMIT_ENV,
    SEARCH_RATE_LIMIT_ENV,
    RunningSandbox,
    SandboxConfig,
    start_in_thread,
)
from bulk_pipeline.staging import StagingStore, open_store
from bulk_pipeline_tests import programs, repository_guard
from bulk_pipeline_tests.postgres import PostgresServer


def pytest_configure(config: pytest.Config) -> None:
    repository_guard.install()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``needs_<program>`` skips when the program is missing, and fails under CI."""
    for program in programs.PROGRAMS:
        if item.get_closest_marker(program.marker):
            programs.skip_or_fail_without(program)


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


@pytest.fixture
def crm(sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> RunningSandbox:
    """The sandbox as the target the pipeline, the CLI and its subprocesses use."""
    monkeypatch.setenv(SANDBOX_URL_ENV, sandbox.url)
    monkeypatch.setenv(SANDBOX_TOKEN_ENV, sandbox.token)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return sandbox


@pytest.fixture
def instance(monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The persistent instance the CLI and `make dev` share, under the test's data home."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with open_instance() as persistent:
        yield persistent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, started by the first test needing it."""
    programs.skip_or_fail_without(programs.POSTGRES)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.needs_postgres)])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each staging store in turn: a test asking for it runs over DuckDB and PostgreSQL."""
    return str(request.param)


@pytest.fixture
def new_store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str], StagingStore]:
    """Empty staging stores of the test's kind, by name: DuckDB files, or new databases on the
    session's PostgreSQL server."""

    def make(name: str) -> StagingStore:
        if store_kind == "duckdb":
            return open_store(tmp_path / f"{name}.duckdb")
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return open_store(database_url=server.new_database())

    return make
