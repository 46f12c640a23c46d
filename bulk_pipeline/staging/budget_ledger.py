"""CRM rolling windows counted in PostgreSQL, shared by every process and machine of a deployment.

A table of request slots (``budget_slots``: window, time): taking a slot locks its window for the
transaction (an advisory lock), counts the slots of the last interval by the database's clock and
adds one when there is room; otherwise it answers how long until the oldest slot leaves the
window. Times are the database server's, so machines with drifting clocks agree. A slot is
stamped again when the CRM's answer arrives, as the in-process window does, and slots older than
their window are deleted as windows are used.

Each process keeps one connection for its ledger; a request costs a few round trips on it (well
under a millisecond on a local network), against windows of one request in tens or hundreds of
milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from bulk_pipeline.redaction import Secret
from bulk_pipeline.staging.postgres_store import (
    SCHEMA,
    StagingDatabaseError,
    advisory_key,
    connect,
    describe_url,
)

T = TypeVar("T")

_TABLES = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    """
    CREATE TABLE IF NOT EXISTS budget_slots (
        id BIGSERIAL PRIMARY KEY,
        window_key TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )
    """,
    "CREATE INDEX IF NOT EXISTS budget_slots_by_window ON budget_slots (window_key, at)",
)
_TAKE = """
    WITH expired AS (
        DELETE FROM budget_slots
        WHERE window_key = %(window)s
          AND at <= clock_timestamp() - %(interval)s * interval '1 second'
    ),
    live AS (
        SELECT count(*) AS used, min(at) AS oldest FROM budget_slots
        WHERE window_key = %(window)s
          AND at > clock_timestamp() - %(interval)s * interval '1 second'
    ),
    slot AS (
        INSERT INTO budget_slots (window_key)
        SELECT %(window)s FROM live WHERE used < %(max)s
        RETURNING id
    )
    SELECT (SELECT id FROM slot),
           extract(epoch FROM oldest + %(interval)s * interval '1 second' - clock_timestamp())
    FROM live
"""
MIN_WAIT_SECONDS = 0.001


class PostgresWindowLedger:
    """A :class:`~bulk_pipeline.targets.http.limits.WindowLedger` in the database at ``url``."""

    def __init__(self, url: str) -> None:
        self._url = Secret(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        return f"PostgresWindowLedger({describe_url(self._url.reveal())!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = connect(self._url.reveal())
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key("schema", SCHEMA)])
                for statement in _TABLES:
                    conn.execute(statement)
            self._conn = conn
        return self._conn

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` on the ledger's connection, once more on a new one if the first was lost."""
        with self._lock:
            try:
                return work(self._connection())
            except psycopg.OperationalError:
                self._drop()
            try:
                return work(self._connection())
            except psycopg.OperationalError:
                self._drop()
                raise StagingDatabaseError(
                    f"the shared budget at {describe_url(self._url.reveal())} stopped "
                    "answering; the push stops with its state saved and resumes when run again"
                ) from None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def take(self, window: str, max_requests: int, interval: float) -> int | float:
        def take(conn: psycopg.Connection[Any]) -> int | float:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key("window", window)])
                row = conn.execute(
                    _TAKE, {"window": window, "interval": interval, "max": max_requests}
                ).fetchone()
            assert row is not None
            slot, wait = row
            if slot is not None:
                return int(slot)
            return max(float(wait or 0.0), MIN_WAIT_SECONDS)

        return self._run(take)

    def restamp(self, slot: int) -> None:
        self._run(
            lambda conn: conn.execute(
                "UPDATE budget_slots SET at = clock_timestamp() WHERE id = %s", [slot]
            )
        )

    def give_back(self, slot: int) -> None:
        self._run(lambda conn: conn.execute("DELETE FROM budget_slots WHERE id = %s", [slot]))

    def used(self, window: str, interval: float) -> int:
        """Slots of ``window`` in the last ``interval`` seconds (for tests and status)."""

        def count(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                """
                SELECT count(*) FROM budget_slots WHERE window_key = %s
                  AND at > clock_timestamp() - %s * interval '1 second'
                """,
                [window, interval],
            ).fetchone()
            return int(row[0]) if row else 0

        return self._run(count)

    def close(self) -> None:
        with self._lock:
            self._drop()


_ledgers: dict[str, PostgresWindowLedger] = {}
_ledgers_lock = threading.Lock()


def shared_ledger(url: str) -> PostgresWindowLedger:
    """The process's one ledger for the database at ``url``."""
    with _ledgers_lock:
        ledger = _ledgers.get(url)
        if ledger is None:
            ledger = _ledgers[url] = PostgresWindowLedger(url)
        return ledger
