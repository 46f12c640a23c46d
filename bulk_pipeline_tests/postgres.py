"""A throwaway PostgreSQL server for the tests that need one (marker ``needs_postgres``).

One server per test session, on a free loopback port, in a temporary folder; every test gets a
database of its own (``CREATE DATABASE`` takes milliseconds), so tests never see each other's
tables. Under root the server runs as the ``postgres`` user, which Debian's package creates.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from bulk_pipeline_tests.programs import POSTGRES

USER = "bulk"


class PostgresServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bulk-pipeline-pg-"))
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._data = self.folder / "data"
        self._databases = itertools.count(1)

    def start(self) -> PostgresServer:
        initdb = [POSTGRES.path("initdb"), "-D", str(self._data), "-A", "trust", "-U", USER]
        subprocess.run([*self._as_owner, *initdb, "--no-sync"], check=True, capture_output=True)
        options = (
            f"-k {self.folder} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._pg_ctl("-o", options, "-l", str(self.folder / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [*self._as_owner, POSTGRES.path("pg_ctl"), "-D", str(self._data), *args]
        subprocess.run(command, check=check, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
