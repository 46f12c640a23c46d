"""The staging store in one DuckDB file (the embedded default).

Connections are short-lived: DuckDB allows one read-write process per file, so every access
opens, works and closes, waiting while another process holds the lock; threads of one process
take turns (a database closed by one thread while another opens it loses its Arrow scans). The
SQL is shared with the Postgres store (``sql_store.py``); frames reach it as Arrow, without a
copy. Locks (per import, per account and entity) are files beside the database.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq

from bulk_pipeline.config import file_lock
from bulk_pipeline.entities import Entity
from bulk_pipeline.outcomes import PendingRecord
from bulk_pipeline.staging.sql_store import (
    PUSHABLE,
    STAGED,
    SqlConnection,
    SqlStore,
    ensure_schema,
    pending_record,
)

LOCK_WAIT_SECONDS = 120.0
_schema_ready: set[tuple[Path, int]] = set()
"""Files whose tables this process already created: a push opens the file once per chunk."""
_in_use = threading.RLock()
"""Held by the thread that has a connection open."""


class DuckDBConnection(SqlConnection):
    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self._conn.execute(sql, list(params))

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, list(params)).fetchall()

    def frame(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        return self._conn.sql(sql, params=list(params)).pl()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def lock_in_key_order(self, table: str, where: str, params: Sequence[object]) -> None:
        """Nothing to do: one process writes the file at a time, its threads one by one."""

    def hold(self, name: str) -> None:
        """Nothing to do, as for :meth:`lock_in_key_order`."""

    @contextmanager
    def table(self, name: str, frame: pl.DataFrame) -> Iterator[None]:
        self._conn.register(name, frame.to_arrow())
        try:
            yield
        finally:
            self._conn.unregister(name)


class DuckDBStore(SqlStore):
    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"DuckDBStore({str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[SqlConnection]:
        """A short read-write connection, waiting while another process holds the file's lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _in_use, self._open() as conn:
            yield conn

    @contextmanager
    def _open(self) -> Iterator[SqlConnection]:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            file_id = (self.path, self.path.stat().st_ino)
            if file_id not in _schema_ready:
                ensure_schema(DuckDBConnection(conn))
                _schema_ready.add(file_id)
            yield DuckDBConnection(conn)
        finally:
            conn.close()

    def record_pages(
        self, import_id: str, entity: Entity, *, account: str, rows: int, staged: bool = False
    ) -> Iterator[list[PendingRecord]]:
        """Written to a Parquet file by one statement (DuckDB keeps no index on the lines, and
        sorts beyond its memory limit on disk), then read a page at a time: no connection, and
        so no lock on the staging file, is held between pages."""
        folder = self.path.parent / f"{self.path.name}.pages"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.parquet"
        quoted = str(path).replace("'", "''")
        outcomes = list(STAGED if staged else PUSHABLE)
        try:
            with self._connect() as conn:
                conn.execute(
                    f"COPY ({self._records_query(entity)}) TO '{quoted}' "
                    f"(FORMAT parquet, ROW_GROUP_SIZE {max(rows, 2048)})",
                    [account, import_id, entity.value, outcomes],
                )
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                columns = batch.to_pydict()
                yield [
                    pending_record(*row)
                    for row in zip(
                        columns["key"],
                        columns["line"],
                        columns["record"],
                        columns["crm_id"],
                        columns["sheet"],
                        strict=True,
                    )
                ]
        finally:
            path.unlink(missing_ok=True)

    def _record_json(self, fields: Sequence[str]) -> str:
        return "to_json(struct_pack(" + ", ".join(f'"{f}" := "{f}"' for f in fields) + "))"

    @contextmanager
    def import_lock(self, import_id: str) -> Iterator[None]:
        """A file lock beside the DuckDB file: the file serves one machine, and the lock goes
        with the process that holds it, however it ends."""
        with self._file_lock(f"{import_id}.lock"):
            yield

    @contextmanager
    def write_lock(self, account: str, entity: Entity) -> Iterator[None]:
        """A file lock as :meth:`import_lock`'s, named by a digest (accounts hold URLs)."""
        digest = hashlib.sha256(f"{account}/{entity.value}".encode()).hexdigest()[:24]
        with self._file_lock(f"write-{digest}.lock"):
            yield

    @contextmanager
    def _file_lock(self, name: str) -> Iterator[None]:
        folder = self.path.parent / f"{self.path.name}.locks"
        folder.mkdir(parents=True, exist_ok=True)
        with file_lock(folder / name):
            yield
