"""The staging store in one DuckDB file (the embedded default).

Connections are short-lived: DuckDB allows one read-write process per file, so every access
opens, works and closes, waiting while another process holds the lock; threads of one process
take turns (a database closed by one thread while another opens it loses its Arrow scans). The
SQL is shared with the Postgres store (``sql_store.py``); frames reach it as Arrow, without a
copy. Locks (per import, per account and entity) are files beside the database.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from bulk_pipeline import config
from bulk_pipeline.chunk_files import open_parquet
from bulk_pipeline.config import file_lock
from bulk_pipeline.entities import Entity
from bulk_pipeline.outcomes import PendingRecord
from bulk_pipeline.staging import StagingRows, sql_store
from bulk_pipeline.staging.keys import LINE, SHEET
from bulk_pipeline.staging.sql_store import (
    PUSHABLE,
    STAGED,
    SqlConnection,
    SqlStore,
    ensure_schema,
    import_rows_ddl,
    literal,
    pending_record,
    quote,
    records_ddl,
    records_table,
)

LOCK_WAIT_SECONDS = 120.0
MEMORY_PER_THREAD = 64 * 1024**2
"""What each DuckDB thread needs of the memory limit for its share of a grouping or a join
that spills: with less, a thread runs out before it can spill."""
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
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

    def copy_into(self, name: str, frames: Iterable[pl.DataFrame]) -> None:
        created = False
        for frame in frames:
            self._conn.register("chunk", frame.to_arrow())
            if created:
                self._conn.execute(f"INSERT INTO {name} SELECT * FROM chunk")
            else:
                self._conn.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM chunk")
                created = True
            self._conn.unregister("chunk")


def threads_within(memory_limit: str) -> int:
    """Threads DuckDB can run within ``memory_limit`` (``128MB``, ``1GiB``): one per
    ``MEMORY_PER_THREAD``, at least one, at most the machine's cores."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", memory_limit)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read the memory limit {memory_limit!r}; write e.g. 128MB or 1GB")
    limit = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return max(1, min(os.cpu_count() or 1, int(limit // MEMORY_PER_THREAD)))


class DuckDBStore(SqlStore):
    def __init__(
        self, path: Path, *, memory_limit: str | None = None, temp_directory: Path | None = None
    ) -> None:
        """``memory_limit`` bounds what DuckDB holds in memory (``config.staging_memory``);
        beyond it, sorts, joins and temporary tables spill to ``temp_directory`` (by
        default beside the file, under the data home)."""
        self.path = path
        limit = memory_limit or config.staging_memory()
        self.settings: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": limit,
            "temp_directory": str(temp_directory or path.parent / f"{path.name}.tmp"),
            "preserve_insertion_order": False,
            "threads": threads_within(limit),
        }

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
                conn = duckdb.connect(str(self.path), config=self.settings)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            file_id = (self.path, self.path.stat().st_ino)
            if file_id not in _schema_ready:
                ensure_schema(DuckDBConnection(conn), primary_keys=False)
                _drop_primary_keys(DuckDBConnection(conn))
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
            for batch in open_parquet(path).iter_batches(batch_size=rows):
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

    def _record_json(self, values: Mapping[str, str]) -> str:
        return (
            "to_json(struct_pack("
            + ", ".join(f"{quote(f)} := {v}" for f, v in values.items())
            + "))"
        )

    def _load(self, conn: SqlConnection, rows: Sequence[StagingRows]) -> None:
        """Views over the Parquet files: DuckDB reads them itself, in parallel, a row group at
        a time, and only the columns each statement needs."""
        valid = ", ".join(literal(str(r.valid)) for r in rows)
        conn.execute(
            f"CREATE TEMP VIEW incoming AS SELECT * FROM read_parquet([{valid}], "
            "union_by_name = true)"
        )
        conn.execute(
            "CREATE TEMP VIEW incoming_invalid AS "
            + " UNION ALL ".join(
                f"SELECT {literal(r.sheet)} AS {SHEET}, {LINE}, reason "
                f"FROM read_parquet({literal(str(r.invalid))})"
                for r in rows
            )
        )

    def _upsert(
        self, conn: SqlConnection, table: str, kept: str, *, account: str, source: Sequence[str]
    ) -> None:
        """Updates in slices, each its own statement (DuckDB holds a statement's changes in
        memory until it ends), then one insert of the new keys: the records tables have no
        primary key here (DuckDB keeps a key's index in memory, which millions of records do
        not fit), and one process writes the file at a time, so the keys stay unique."""
        counted = conn.rows(f"SELECT count(*) FROM ({kept}) AS k")
        slices = max(1, -(-int(counted[0][0]) // sql_store.STAGE_SLICE_ROWS)) if counted else 1
        for number in range(slices):
            conn.execute(
                f"""
                UPDATE {table} SET
                    record = k.record,
                    content_hash = k.content_hash,
                    source_file = ?,
                    source_sheet = k.sheet,
                    source_line = k.line,
                    import_id = ?,
                    updated_at = now()
                FROM ({kept}) AS k
                WHERE {table}.account = ? AND {table}.key = k.key AND hash(k.key) % ? = ?
                """,
                [*source, account, slices, number],
            )
        conn.execute(
            f"""
            INSERT INTO {table} (account, key, record, content_hash, source_file, source_sheet,
                                 source_line, import_id)
            SELECT ?, k.key, k.record, k.content_hash, ?, k.sheet, k.line, ?
            FROM ({kept}) AS k
            WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE r.account = ? AND r.key = k.key)
            """,
            [account, *source, account],
        )

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


def _drop_primary_keys(conn: SqlConnection) -> None:
    """Tables of a file made before staging dropped their primary keys are copied into
    tables without (DuckDB cannot drop a constraint in place)."""
    tables = {records_table(entity): records_ddl for entity in Entity}
    for table, ddl in tables.items():
        _copy_without_key(conn, table, ddl(table, primary_keys=False))
    _copy_without_key(conn, "import_rows", import_rows_ddl("import_rows", primary_keys=False))


def _copy_without_key(conn: SqlConnection, table: str, ddl: str) -> None:
    keyed = conn.rows(
        """
        SELECT count(*) FROM duckdb_constraints()
        WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'
        """,
        [table],
    )
    if not keyed or not keyed[0][0]:
        return
    with conn.transaction():
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_keyed")
        conn.execute(ddl.replace("IF NOT EXISTS ", ""))
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {table}_keyed")
        conn.execute(f"DROP TABLE {table}_keyed")
