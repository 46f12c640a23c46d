"""The staging store in PostgreSQL, for deployments where many runs stage and push at once.

Chosen by ``BULK_PIPELINE_DATABASE_URL=postgresql://...``. The SQL is the DuckDB store's
(``sql_store.py``); this module brings the connection: frames arrive by ``COPY`` (text format)
into temporary tables, and results leave as typed polars frames. The tables live in their own schema
(``bulk_pipeline``), beside the Dagster instance's tables when both share a database.

Writers of different imports wait on each other only for the records they share: row locks,
taken in key order by the staging upsert and by checkpoints so that two writers cannot deadlock,
and a lock per account and entity while an import rewrites the values its records are named by
(so none is kept twice). Two runs of the same import are kept apart by an advisory lock per
import (:meth:`PostgresStore.import_lock`), and pushes that could create the same record by one
per account and entity (:meth:`PostgresStore.write_lock`). PostgreSQL releases them by itself
when the session holding one ends, whether the process finished or died.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import polars as pl
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import BulkPipelineError
from bulk_pipeline.redaction import MASK, Secret, register_secret
from bulk_pipeline.staging.sql_store import SqlConnection, SqlStore, ensure_schema, literal

SCHEMA = "bulk_pipeline"
CONNECT_TIMEOUT_SECONDS = 10
NULL_TEXT = "\\N"
INDEXES = (
    "CREATE INDEX IF NOT EXISTS record_refs_by_ref ON record_refs (account, entity, ref)",
    "CREATE INDEX IF NOT EXISTS record_refs_by_key ON record_refs (account, entity, key)",
    "CREATE INDEX IF NOT EXISTS import_rows_by_key ON import_rows (import_id, entity, key)",
    "CREATE INDEX IF NOT EXISTS import_links_by_from ON import_links "
    "(account, entity, reference, from_id)",
)
"""Lookups the shared SQL makes by other columns than a table's key: PostgreSQL reads a whole
table without an index, while DuckDB scans by column with zone maps and keeps no index but its
keys (an index costs it memory on every write)."""
_schema_ready: set[str] = set()
_schema_ready_lock = threading.Lock()

_PG_TYPES: dict[type[pl.DataType], str] = {
    pl.Int8: "BIGINT",
    pl.Int16: "BIGINT",
    pl.Int32: "BIGINT",
    pl.Int64: "BIGINT",
    pl.UInt8: "BIGINT",
    pl.UInt16: "BIGINT",
    pl.UInt32: "BIGINT",
    pl.Float32: "DOUBLE PRECISION",
    pl.Float64: "DOUBLE PRECISION",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
    pl.Datetime: "TIMESTAMP",
}
"""Column types of the temporary tables frames are copied into; anything else goes as text."""
_POLARS_TYPES: dict[int, pl.DataType] = {
    20: pl.Int64(),
    21: pl.Int64(),
    23: pl.Int64(),
    16: pl.Boolean(),
    700: pl.Float64(),
    701: pl.Float64(),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
}
"""Polars types of result columns by PostgreSQL type oid; anything else is read as text."""


class StagingDatabaseError(BulkPipelineError):
    """The staging database cannot be reached or refused us; the message names where (never the
    password) and what to check."""


def libpq_url(url: str) -> str:
    """The URL as libpq reads it: a SQLAlchemy driver suffix (``postgresql+psycopg2://``) is
    dropped, so one variable serves Dagster's storage and ours."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme.startswith(("postgresql+", "postgres+")):
        return f"postgresql://{rest}"
    return url


def describe_url(url: str) -> str:
    """The database URL for people: its password masked."""
    try:
        parts = conninfo_to_dict(libpq_url(url))
    except psycopg.ProgrammingError:
        return MASK
    if "password" in parts:
        parts["password"] = MASK
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"postgresql://{parts.get('user', '')}@{host}:{port}/{parts.get('dbname', '')}"


def connect(url: str, **options: Any) -> psycopg.Connection[Any]:
    """A connection to ``url`` with the staging schema first on the search path."""
    try:
        conninfo = make_conninfo(
            libpq_url(url),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=f"-c search_path={SCHEMA},public",
            application_name="bulk_pipeline",
        )
        return psycopg.connect(conninfo, autocommit=True, **options)
    except psycopg.Error as exc:
        raise StagingDatabaseError(
            f"the staging database at {describe_url(url)} did not accept a connection "
            f"({type(exc).__name__}); check BULK_PIPELINE_DATABASE_URL and that the server runs"
        ) from None


def advisory_key(namespace: str, name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` within ``namespace``."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresConnection(SqlConnection):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @staticmethod
    def _sql(sql: str) -> str:
        """The shared SQL's ``?`` placeholders in psycopg's style."""
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self._conn.execute(self._sql(sql), list(params))

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(self._sql(sql), list(params)).fetchall()

    def frame(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        cursor = self._conn.execute(self._sql(sql), list(params))
        columns = cursor.description or []
        schema = {c.name: _POLARS_TYPES.get(c.type_code, pl.String()) for c in columns}
        return pl.DataFrame(cursor.fetchall(), schema=schema, orient="row")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def lock_in_key_order(self, table: str, where: str, params: Sequence[object]) -> None:
        self.execute(f"SELECT 1 FROM {table} WHERE {where} ORDER BY key FOR UPDATE", params)

    def hold(self, name: str) -> None:
        """A transaction-level advisory lock: released at commit or rollback."""
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key("hold", name)])

    @contextmanager
    def table(self, name: str, frame: pl.DataFrame) -> Iterator[None]:
        """A temporary table filled by ``COPY`` from the frame in PostgreSQL's text format."""
        self._create(name, frame)
        try:
            self._copy(name, frame)
            yield
        finally:
            self._conn.execute(f"DROP TABLE IF EXISTS {name}")

    def copy_into(self, name: str, frames: Iterable[pl.DataFrame]) -> None:
        created = False
        for frame in frames:
            if not created:
                self._create(name, frame)
                created = True
            self._copy(name, frame)

    def _create(self, name: str, frame: pl.DataFrame) -> None:
        columns = ", ".join(
            f'"{column}" {_PG_TYPES.get(type(dtype), "TEXT")}'
            for column, dtype in frame.schema.items()
        )
        self._conn.execute(f"CREATE TEMP TABLE {name} ({columns})")

    def _copy(self, name: str, frame: pl.DataFrame) -> None:
        quoted = ", ".join(f'"{c}"' for c in frame.columns)
        with self._conn.cursor().copy(f"COPY {name} ({quoted}) FROM STDIN") as copy:
            copy.write(copy_text(frame))


def copy_text(frame: pl.DataFrame) -> bytes:
    """The frame as ``COPY ... FROM STDIN`` reads it by default: a line per row, tab-separated,
    ``\\N`` for null, backslash escapes for backslashes, tabs and line breaks; built by vectorized
    string operations, never a loop over rows."""
    if frame.height == 0 or frame.width == 0:
        return b""
    cells = [
        pl.col(column)
        .cast(pl.String)
        .str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all("\t", "\\t", literal=True)
        .str.replace_all("\n", "\\n", literal=True)
        .str.replace_all("\r", "\\r", literal=True)
        .fill_null(NULL_TEXT)
        for column in frame.columns
    ]
    lines = frame.select(pl.concat_str(cells, separator="\t").alias("line"))["line"]
    return (lines.str.join("\n").item() + "\n").encode()


class PostgresStore(SqlStore):
    """The staging store in the PostgreSQL database at ``url``."""

    concurrent_readers = True

    def __init__(self, url: str) -> None:
        self._url = Secret(url)
        password = conninfo_to_dict(libpq_url(url)).get("password")
        if password:
            register_secret(str(password))

    def __repr__(self) -> str:
        return f"PostgresStore({describe_url(self._url.reveal())!r})"

    __str__ = __repr__

    @contextmanager
    def _connect(self) -> Iterator[SqlConnection]:
        conn = connect(self._url.reveal())
        try:
            self._ensure_schema(conn)
            yield PostgresConnection(conn)
        finally:
            conn.close()

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        url = self._url.reveal()
        with _schema_ready_lock:  # the first creation of the tables, one process at a time
            if url in _schema_ready:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key("schema", SCHEMA)])
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                ensure_schema(PostgresConnection(conn))
                for statement in INDEXES:
                    conn.execute(statement)
            _schema_ready.add(url)

    def _record_json(self, values: Mapping[str, str]) -> str:
        return (
            "json_build_object(" + ", ".join(f"{literal(f)}, {v}" for f, v in values.items()) + ")"
        )

    def _upsert(
        self, conn: SqlConnection, table: str, kept: str, *, account: str, source: Sequence[str]
    ) -> None:
        """One upsert by the primary key, its rows locked in key order: writers of different
        imports run at once here, and two upserts locking shared rows in different orders
        would deadlock."""
        conn.execute(
            f"""
            INSERT INTO {table} (account, key, record, content_hash, source_file, source_sheet,
                                 source_line, import_id)
            SELECT ?, k.key, k.record, k.content_hash, ?, k.sheet, k.line, ?
            FROM ({kept}) AS k ORDER BY k.key
            ON CONFLICT (account, key) DO UPDATE SET
                record = excluded.record,
                content_hash = excluded.content_hash,
                source_file = excluded.source_file,
                source_sheet = excluded.source_sheet,
                source_line = excluded.source_line,
                import_id = excluded.import_id,
                updated_at = now()
            """,
            [account, *source],
        )

    def import_lock(self, import_id: str) -> AbstractContextManager[None]:
        return self._advisory_lock("import", import_id)

    def write_lock(self, account: str, entity: Entity) -> AbstractContextManager[None]:
        return self._advisory_lock("write", f"{account}/{entity.value}")

    @contextmanager
    def _advisory_lock(self, namespace: str, name: str) -> Iterator[None]:
        """An advisory lock, held on its own connection while inside; a second holder waits.
        PostgreSQL lets go when the connection ends, so a killed run does not keep it."""
        conn = connect(self._url.reveal())
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", [advisory_key(namespace, name)])
            yield
        finally:
            conn.close()
