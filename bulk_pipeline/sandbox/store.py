"""The sandbox's SQLite file, shared by every dialect, safe for many threads and processes.

Each dialect keeps its own tables (``Dialect.schema``) and its own queries; this module hands out
connections and the one way to write. Every write runs in one ``BEGIN IMMEDIATE`` transaction,
which takes SQLite's write lock up front: id allocation (``MAX(id) + 1``) and unique-key checks
then see every committed write of every process. Threads of one process queue on a Python lock
first, which hands over faster than SQLite's sleeping busy handler.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

_BUSY_TIMEOUT_S = 30.0


class Store:
    """One SQLite file. Hands out connections; each thread uses its own."""

    def __init__(self, path: Path, schemas: Iterable[str]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        with closing(self.open()) as conn, conn.write() as db:
            for schema in schemas:
                for statement in schema.split(";"):
                    if statement.strip():
                        db.execute(statement)

    def open(self) -> StoreConnection:
        """A connection the caller closes (a request handler keeps one per client connection)."""
        return StoreConnection(self.path, self._write_lock)


class StoreConnection:
    def __init__(self, path: Path, write_lock: threading.Lock) -> None:
        self.db = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.create_function("unicode_lower", 1, unicode_lower, deterministic=True)
        self._write_lock = write_lock

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement."""
        with self._write_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")


def unicode_lower(value: str | None) -> str | None:
    """SQLite's own ``lower()`` folds ASCII only; CRMs' searches ignore case in any script.
    Registered on every connection as the SQL function ``unicode_lower``."""
    return value.lower() if isinstance(value, str) else value


def marks(values: Iterable[object]) -> str:
    """Placeholders for an ``IN (...)`` list of these values."""
    return ",".join("?" for _ in values)
