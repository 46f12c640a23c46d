"""The staging store written once in SQL that DuckDB and PostgreSQL both speak.

Tables: one per entity keyed by (account, key) with each record's staged values and the CRM id it
was last written to; ``record_refs``, the values other records may name a staged record by
(``domain:acme.com``); ``import_rows``, one outcome per (import, sheet, entity, line);
``import_changes``, the change log (before and after values, per run); ``import_links``, the links
an import made or found (for CRMs that link by separate calls, and for rollback); ``imports``, each
import's state.

Every statement of the protocol lives here, with ``?`` placeholders; a database brings only what
differs (:class:`SqlConnection`: how a statement runs, how a polars frame becomes a table the SQL
can join, how a result becomes a frame; plus the expression that packs a record's fields into
JSON, and the locks: per import, and per account and entity). A change to the protocol is made
once, and the contract tests (``bulk_pipeline_tests/staging/``) run it over both databases.

Work is set-based SQL over frames; no statement runs per record.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from bulk_pipeline import config
from bulk_pipeline.chunk_files import read_chunks
from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.outcomes import (
    Change,
    ChangeAction,
    ChangeState,
    ImportState,
    ImportStatus,
    Intent,
    LineOutcome,
    LinkChange,
    LinkState,
    OnDuplicate,
    OutcomeCounts,
    PendingRecord,
    Proof,
    PushOutcome,
    ReferenceMatch,
    StageResult,
)
from bulk_pipeline.staging import LinePosition, StagingRows, VanishedKey
from bulk_pipeline.staging.keys import (
    KEY,
    KEY_TEXT,
    LINE,
    PART,
    SHEET,
    custom_columns,
    key_reference,
    reference_column,
    stored_references,
)

STAGE_SLICE_ROWS = 500_000
"""Records updated per statement where a database holds a statement's changes in memory
(DuckDB): re-staging is idempotent, so slices need not share one transaction."""
LINE_SPAN = 2**40
"""Lines of one sheet are fewer: a sheet's position times this plus the line orders rows."""
ORDER = f"(i.{PART}::BIGINT * {LINE_SPAN} + i.{LINE})"
"""The order of a row (``i``) among the rows of an entity: its sheet's, then its line."""


def records_table(entity: Entity) -> str:
    return f"records_{entity.value}"


def quote(name: str) -> str:
    """A column name as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _positions_sql(merged: Sequence[str], on_duplicate: OnDuplicate) -> str:
    """``positions``: per key, the row whose record survives (the first in the order of
    sheets and lines; the last, for ``update``) as ``_kept`` (an ``ORDER``); with ``merged``
    columns, where each one's first value is (``_at_<column>``). Only minimums and maximums
    of numbers: a database spills those beyond its memory limit (DuckDB's ``DISTINCT ON``,
    window functions and ``arg_min`` of text hold their groups in memory)."""
    extreme = "max" if on_duplicate is OnDuplicate.UPDATE else "min"
    firsts = "".join(
        f", min({ORDER}) FILTER (WHERE i.{quote(c)} IS NOT NULL) AS {quote('_at_' + c)}"
        for c in merged
    )
    return f"""
        CREATE TEMP TABLE positions AS
        SELECT i.{KEY}, {extreme}({ORDER}) AS _kept{firsts}
        FROM incoming i GROUP BY i.{KEY}
        """


def _merged_sql(merged: Sequence[str]) -> str:
    """For ``merge``: joins that bring each merged column's first value given (``m<n>.v``)."""
    return "".join(
        f"""
        LEFT JOIN (SELECT i.{KEY}, {ORDER} AS o, i.{quote(c)} AS v FROM incoming i
                   WHERE i.{quote(c)} IS NOT NULL) m{n}
          ON m{n}.{KEY} = m.{KEY} AND m{n}.o = m.{quote("_at_" + c)}
        """
        for n, c in enumerate(merged)
    )


def _content_hash_sql(values: Mapping[str, str | None]) -> str:
    """A canonical hash over every field (by the expression of each, None for a column the
    file lacks), so a missing column equals a blank."""
    parts = ", ".join(
        f"'{f}=' || coalesce(CAST({v} AS VARCHAR), '')" if v is not None else f"'{f}='"
        for f, v in values.items()
    )
    return f"md5(concat_ws(chr(31), {parts}))"


PUSHABLE = ("pending", "failed")
"""Outcomes of lines whose record a push still has to send."""
STAGED = tuple(o.value for o in LineOutcome if o.value not in ("duplicate", "invalid"))


def pending_record(
    key: str, line: int, record: str, crm_id: str | None, sheet: str
) -> PendingRecord:
    return PendingRecord(
        key=key,
        line=int(line),
        fields={k: v for k, v in json.loads(record).items() if v is not None},
        crm_id=crm_id,
        sheet=sheet,
    )


def _frame(rows: dict[str, list[object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(rows, pl.String))


class SqlConnection(ABC):
    """One short connection to the store's database, as the shared SQL uses it."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> None: ...

    @abstractmethod
    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def frame(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        """The result as a polars frame, typed even when empty."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Statements inside commit together, or not at all."""

    @abstractmethod
    def table(self, name: str, frame: pl.DataFrame) -> AbstractContextManager[None]:
        """``frame`` visible to statements as the table ``name`` while inside."""

    @abstractmethod
    def copy_into(self, name: str, frames: Iterable[pl.DataFrame]) -> None:
        """A temporary table ``name`` of the frames' rows (each with the first one's columns),
        filled a frame at a time, for the rest of the connection."""

    @abstractmethod
    def lock_in_key_order(self, table: str, where: str, params: Sequence[object]) -> None:
        """Until the transaction ends, lock ``table``'s rows matching ``where`` in key order
        (where the database takes writers at once): an UPDATE locks rows in its plan's order,
        and two writers of shared rows in different orders deadlock; the staging upsert
        inserts in key order too."""

    @abstractmethod
    def hold(self, name: str) -> None:
        """Until the transaction ends, no other transaction holding ``name`` runs (where the
        database takes writers at once): for rows that every writer deletes and writes anew,
        which row locks cannot keep from being written twice."""


class SqlStore(ABC):
    """The :class:`~bulk_pipeline.staging.StagingStore` protocol over a :class:`SqlConnection`."""

    concurrent_readers: bool = False
    """Whether other processes may read while one writes (so status can read the store)."""

    @abstractmethod
    def _connect(self) -> AbstractContextManager[SqlConnection]: ...

    @abstractmethod
    def _record_json(self, values: Mapping[str, str]) -> str:
        """An expression packing the named expressions' values into one JSON object."""

    def _load(self, conn: SqlConnection, rows: Sequence[StagingRows]) -> None:
        """Make ``rows`` visible to the connection's statements: ``incoming``, every valid row
        as ``keys.keyed`` wrote it (a column missing from a file is null), and
        ``incoming_invalid`` (``_sheet``, ``_line``, ``reason``); copied in a chunk at a time."""
        size = config.chunk_rows()
        schema: dict[str, pl.DataType] = {}
        for r in rows:
            schema |= pl.read_parquet_schema(r.valid)

        def valid() -> Iterator[pl.DataFrame]:
            for r in rows:
                for chunk in read_chunks(r.valid, size):
                    yield chunk.select(
                        pl.col(c) if c in chunk.columns else pl.lit(None, t).alias(c)
                        for c, t in schema.items()
                    )

        def invalid() -> Iterator[pl.DataFrame]:
            for r in rows:
                for chunk in read_chunks(r.invalid, size, [LINE, "reason"]):
                    yield chunk.select(pl.lit(r.sheet, pl.String).alias(SHEET), LINE, "reason")

        conn.copy_into("incoming", valid())
        conn.copy_into("incoming_invalid", invalid())

    @abstractmethod
    def _upsert(
        self, conn: SqlConnection, table: str, kept: str, *, account: str, source: Sequence[str]
    ) -> None:
        """Write the records the query ``kept`` selects (``key, record, content_hash, sheet,
        line``) into ``table`` under ``account``: known keys updated, new ones inserted, with
        ``source`` (the source file and the import id)."""

    @abstractmethod
    def import_lock(self, import_id: str) -> AbstractContextManager[None]: ...

    @abstractmethod
    def write_lock(self, account: str, entity: Entity) -> AbstractContextManager[None]: ...

    # import state --------------------------------------------------------------------------

    def begin_run(self, import_id: str) -> int:
        with self._connect() as conn:
            found = conn.rows("SELECT state, run FROM imports WHERE import_id = ?", [import_id])
            if not found:
                run = 1
            else:
                state, previous = ImportState(found[0][0]), int(found[0][1])
                run = previous if state.resumable else previous + 1
            with conn.transaction():
                if found and run != int(found[0][1]):
                    conn.execute("DELETE FROM import_rows WHERE import_id = ?", [import_id])
                _set_state(conn, import_id, ImportState.RUNNING, run=run)
        return run

    def set_state(
        self,
        import_id: str,
        state: ImportState,
        *,
        reason: str | None = None,
        resume_at: datetime | None = None,
    ) -> None:
        with self._connect() as conn:
            _set_state(conn, import_id, state, reason=reason, resume_at=resume_at)

    def status(self, import_id: str) -> ImportStatus | None:
        return self.statuses([import_id]).get(import_id)

    def statuses(self, import_ids: Sequence[str] | None = None) -> dict[str, ImportStatus]:
        query = "SELECT import_id, state, run, reason, resume_at, updated_at FROM imports"
        params: list[object] = []
        if import_ids is not None:
            query += " WHERE import_id = ANY(?)"
            params = [list(import_ids)]
        with self._connect() as conn:
            rows = conn.rows(query, params)
        return {
            import_id: ImportStatus(
                import_id=import_id,
                state=ImportState(state),
                run=int(run),
                reason=reason,
                resume_at=resume_at,
                updated_at=updated_at,
            )
            for import_id, state, run, reason, resume_at, updated_at in rows
        }

    # staging -------------------------------------------------------------------------------

    def stage(
        self,
        import_id: str,
        entity: Entity,
        rows: Sequence[StagingRows],
        *,
        account: str,
        source_file: str,
        on_duplicate: OnDuplicate,
    ) -> StageResult:
        """Stage an import's valid rows of one entity and record one outcome per input line.

        The rows reach the database by ``_load``; then everything is set-based SQL, which a
        database with a memory limit runs by spilling (DuckDB): per key, the position of the
        row whose record survives (a grouping of numbers); one join that tells every row
        whether it is its key's record and brings its values; the upsert of the records; the
        values other records name them by (``record_refs``, for :meth:`resolve`); and the
        outcome of every line. Lines already written by an earlier attempt of the same run
        keep their outcome, so a resumed import reports what it really did (a new run starts
        with no outcomes: ``begin_run``).
        """
        spec = ENTITY_SPECS[entity]
        table = records_table(entity)
        names = set().union(*(pq.read_schema(r.valid).names for r in rows))
        present = [f for f in spec.fields if f in names] + custom_columns(list(names), entity)
        refs = [reference_column(name) for name in stored_references(entity)]
        columns = [*present, *refs]
        merged = on_duplicate is OnDuplicate.MERGE
        kept = f"{ORDER} = m._kept"
        chosen = [
            f"CASE WHEN {kept} THEN {f'm{n}.v' if merged else 'i.' + quote(c)} END AS {quote(c)}"
            for n, c in enumerate(columns)
        ]
        values = {c: f"k.{quote(c)}" for c in columns}
        record = self._record_json({f: values[f] for f in present})
        content_hash = _content_hash_sql(
            {f: values.get(f) for f in [*spec.fields, *custom_columns(present, entity)]}
        )
        with self._connect() as conn:
            self._load(conn, rows)
            conn.execute(
                "CREATE TEMP TABLE sheets AS SELECT * FROM (VALUES "
                + ", ".join(f"({part}, {literal(r.sheet)})" for part, r in enumerate(rows))
                + ") AS sheets(part, sheet)"
            )
            conn.execute(_positions_sql(columns if merged else [], on_duplicate))
            # One join tells every row whether it is its key's record and, when it is, brings
            # its values (else, the key as it reads, for the duplicate's reason): the upsert,
            # the references and the outcomes all read it. The records' JSON and hashes are
            # computed where they are written (a join computing them needs more memory than
            # the two apart).
            conn.execute(
                f"""
                CREATE TEMP TABLE joined AS
                SELECT i.{KEY} AS key, i.{SHEET} AS sheet, i.{LINE} AS line,
                       CASE WHEN {kept} THEN NULL ELSE i.{KEY_TEXT} END AS key_text,
                       m._kept AS kept_at, {kept} AS kept,
                       {", ".join(chosen)}
                FROM incoming i JOIN positions m ON i.{KEY} = m.{KEY}
                {_merged_sql(columns) if merged else ""}
                """
            )
            counted = conn.rows("SELECT count(*) FILTER (WHERE kept), count(*) FROM joined")
            staged, incoming = (int(counted[0][0]), int(counted[0][1])) if counted else (0, 0)
            self._upsert(
                conn,
                table,
                f"""
                SELECT k.key, {record} AS record, {content_hash} AS content_hash, k.sheet, k.line
                FROM joined k WHERE k.kept
                """,
                account=account,
                source=[source_file, import_id],
            )
            with conn.transaction():
                if refs:
                    conn.hold(f"record_refs/{account}/{entity.value}")
                    conn.execute(
                        """
                        DELETE FROM record_refs WHERE account = ? AND entity = ?
                          AND key IN (SELECT key FROM joined WHERE kept)
                        """,
                        [account, entity.value],
                    )
                    conn.execute(
                        """
                        INSERT INTO record_refs (account, entity, ref, key)
                        SELECT DISTINCT CAST(? AS VARCHAR), CAST(? AS VARCHAR), ref, key FROM (
                        """
                        + " UNION ALL ".join(
                            f"SELECT {quote(ref)} AS ref, key FROM joined "
                            f"WHERE kept AND {quote(ref)} IS NOT NULL"
                            for ref in refs
                        )
                        + ") AS named",
                        [account, entity.value],
                    )
                conn.execute(
                    """
                    CREATE TEMP TABLE kept_outcomes AS
                    SELECT sheet, line, outcome, crm_id FROM import_rows
                    WHERE import_id = ? AND entity = ? AND outcome IN ('created', 'updated')
                    """,
                    [import_id, entity.value],
                )
                conn.execute(
                    "DELETE FROM import_rows WHERE import_id = ? AND entity = ?",
                    [import_id, entity.value],
                )
                conn.execute(
                    f"""
                    INSERT INTO import_rows (import_id, sheet, entity, line, key, outcome, reason,
                                             crm_id)
                    SELECT CAST(? AS VARCHAR), j.sheet, CAST(? AS VARCHAR), j.line, j.key,
                           CASE WHEN j.kept THEN coalesce(o.outcome, 'pending')
                                ELSE 'duplicate' END,
                           CASE WHEN j.kept THEN NULL
                                ELSE 'duplicate of '
                                     || CASE WHEN s.sheet = '' THEN '' ELSE s.sheet || ' ' END
                                     || 'line ' || CAST(j.kept_at % {LINE_SPAN} AS VARCHAR)
                                     || ' (' || j.key_text || ')' END,
                           CASE WHEN j.kept THEN o.crm_id END
                    FROM joined j
                    JOIN sheets s ON s.part = CAST(floor(j.kept_at / {LINE_SPAN}) AS BIGINT)
                    LEFT JOIN kept_outcomes o ON o.sheet = j.sheet AND o.line = j.line
                    UNION ALL
                    SELECT CAST(? AS VARCHAR), {SHEET}, CAST(? AS VARCHAR), {LINE}, NULL,
                           'invalid', reason, NULL
                    FROM incoming_invalid
                    """,
                    [import_id, entity.value] * 2,
                )
        return StageResult(staged=staged, duplicates=incoming - staged)

    def resolve(
        self, entity: Entity, refs: Sequence[str], *, account: str, import_id: str
    ) -> dict[str, list[ReferenceMatch]]:
        if not refs:
            return {}
        table = records_table(entity)
        field_name = key_reference(entity)
        prefix = f"{field_name}:" if field_name is not None else None
        with (
            self._connect() as conn,
            conn.table("wanted", _frame({"ref": list(dict.fromkeys(refs))})),
        ):
            rows = conn.rows(
                f"""
                WITH named AS (
                    SELECT w.ref, r.key FROM wanted w
                    JOIN record_refs r ON r.account = ? AND r.entity = ? AND r.ref = w.ref
                    UNION ALL
                    SELECT w.ref, substr(w.ref, length(CAST(? AS VARCHAR)) + 1) FROM wanted w
                    WHERE CAST(? AS VARCHAR) IS NOT NULL AND starts_with(w.ref, ?)
                )
                SELECT n.ref, n.key, coalesce(i.crm_id, t.crm_id), i.outcome, i.reason,
                       i.sheet, i.line, t.import_id
                FROM named n
                JOIN {table} t ON t.account = ? AND t.key = n.key
                LEFT JOIN import_rows i
                  ON i.import_id = ? AND i.entity = ? AND i.key = n.key
                 AND i.outcome NOT IN ('duplicate', 'invalid')
                ORDER BY n.ref, n.key
                """,
                [account, entity.value, prefix, prefix, prefix, account, import_id, entity.value],
            )
        found: dict[str, list[ReferenceMatch]] = {}
        for ref, key, crm_id, outcome, reason, sheet, line, staged_by in rows:
            if line is not None:
                where = f"{sheet} line {line}" if sheet else f"line {line}"
            else:
                where = f"import {staged_by}"
            found.setdefault(ref, []).append(
                ReferenceMatch(
                    key=key,
                    crm_id=crm_id,
                    outcome=LineOutcome(outcome) if outcome is not None else None,
                    reason=reason,
                    where=where,
                )
            )
        return found

    def _records_query(self, entity: Entity, *, paged: bool = False) -> str:
        """Records of an import's lines with some outcomes (parameters: account, import id,
        entity, outcomes; when ``paged``, the page's last sheet and line, twice, and a row
        count), in line order."""
        return f"""
            SELECT r.key, i.line, CAST(r.record AS VARCHAR) AS record, r.crm_id, i.sheet
            FROM import_rows i JOIN {records_table(entity)} r
              ON r.account = ? AND r.key = i.key
            WHERE i.import_id = ? AND i.entity = ? AND i.outcome = ANY(?)
            {
            "AND ((i.sheet, i.line) > (?, CAST(? AS BIGINT)) OR CAST(? AS VARCHAR) IS NULL)"
            if paged
            else ""
        }
            ORDER BY i.sheet, i.line
            {"LIMIT ?" if paged else ""}
            """

    def _records(
        self, import_id: str, entity: Entity, account: str, outcomes: Sequence[str]
    ) -> list[PendingRecord]:
        with self._connect() as conn:
            rows = conn.rows(
                self._records_query(entity), [account, import_id, entity.value, list(outcomes)]
            )
        return [pending_record(*row) for row in rows]

    def pending(self, import_id: str, entity: Entity, *, account: str) -> list[PendingRecord]:
        return self._records(import_id, entity, account, PUSHABLE)

    def staged(self, import_id: str, entity: Entity, *, account: str) -> list[PendingRecord]:
        return self._records(import_id, entity, account, STAGED)

    def record_pages(
        self, import_id: str, entity: Entity, *, account: str, rows: int, staged: bool = False
    ) -> Iterator[list[PendingRecord]]:
        """A query per page, after the last line of the page before: the database finds a
        page's lines by its index on them."""
        outcomes = list(STAGED if staged else PUSHABLE)
        after: tuple[str, int] | None = None
        while True:
            sheet, line = after if after is not None else (None, None)
            with self._connect() as conn:
                found = conn.rows(
                    self._records_query(entity, paged=True),
                    [account, import_id, entity.value, outcomes, sheet, line, sheet, rows],
                )
            page = [pending_record(*row) for row in found]
            if page:
                yield page
            if len(page) < rows:
                return
            after = (page[-1].sheet, page[-1].line)

    def checkpoint(
        self,
        import_id: str,
        entity: Entity,
        outcomes: Sequence[PushOutcome],
        *,
        account: str,
        run: int,
        done: Mapping[str, str],
    ) -> None:
        if not outcomes and not done:
            return
        frame = _frame(
            {
                "key": [o.key for o in outcomes],
                "outcome": [o.outcome.value for o in outcomes],
                "crm_id": [o.crm_id for o in outcomes],
                "reason": [o.reason for o in outcomes],
            }
        )
        table = records_table(entity)
        with self._connect() as conn, conn.table("outcome_frame", frame), conn.transaction():
            conn.lock_in_key_order(
                table, "account = ? AND key IN (SELECT o.key FROM outcome_frame o)", [account]
            )
            conn.execute(
                f"""
                UPDATE {table} SET
                    crm_id = coalesce(o.crm_id, {table}.crm_id),
                    pushed_hash = CASE WHEN o.outcome IN ('failed', 'invalid', 'pending')
                                       THEN {table}.pushed_hash
                                       ELSE {table}.content_hash END,
                    last_error = o.reason,
                    updated_at = now()
                FROM outcome_frame o
                WHERE {table}.account = ? AND {table}.key = o.key
                """,
                [account],
            )
            conn.execute(
                """
                UPDATE import_rows SET outcome = o.outcome, reason = o.reason,
                    crm_id = coalesce(o.crm_id, import_rows.crm_id)
                FROM outcome_frame o
                WHERE import_rows.import_id = ? AND import_rows.entity = ?
                  AND import_rows.key = o.key AND import_rows.outcome IN ('pending', 'failed')
                """,
                [import_id, entity.value],
            )
            if done:
                _mark(conn, import_id, entity, done, account, run, ChangeState.DONE)

    # the change log ------------------------------------------------------------------------

    def record_intents(
        self,
        import_id: str,
        entity: Entity,
        intents: Sequence[Intent],
        *,
        account: str,
        run: int,
        sent_at: datetime | None,
        proof: Proof,
    ) -> None:
        if not intents:
            return
        frame = _frame(
            {
                "key": [i.key for i in intents],
                "action": [i.action.value for i in intents],
                "crm_id": [i.crm_id for i in intents],
                "before": [json.dumps(i.before) if i.before else "{}" for i in intents],
                "after": [None if i.after is None else json.dumps(i.after) for i in intents],
            }
        )
        with self._connect() as conn, conn.table("change_frame", frame):
            conn.execute(
                f"""
                INSERT INTO import_changes (import_id, run, account, entity, key, action, crm_id,
                                            before, after, state, sent_at, proof)
                SELECT ?, CAST(? AS BIGINT), ?, ?, c.key, c.action, c.crm_id,
                       CAST(c.before AS JSON), coalesce(CAST(c.after AS JSON), r.record),
                       'intended', CAST(? AS TIMESTAMPTZ), ?
                FROM change_frame c
                LEFT JOIN {records_table(entity)} r ON r.account = ? AND r.key = c.key
                ON CONFLICT (import_id, run, account, entity, key) DO UPDATE SET
                    action = excluded.action, crm_id = excluded.crm_id,
                    before = excluded.before, after = excluded.after, state = 'intended',
                    sent_at = excluded.sent_at, proof = excluded.proof, recorded_at = now()
                WHERE import_changes.state = 'rolled_back'
                """,
                [import_id, run, account, entity.value, sent_at, proof.value, account],
            )

    def discard_intents(
        self, import_id: str, entity: Entity, keys: Sequence[str], *, account: str, run: int
    ) -> None:
        if not keys:
            return
        with self._connect() as conn:
            conn.execute(
                """
                DELETE FROM import_changes
                WHERE import_id = ? AND run = ? AND account = ? AND entity = ?
                  AND state = 'intended' AND key = ANY(?)
                """,
                [import_id, run, account, entity.value, list(keys)],
            )

    def recorded_in_run(self, import_id: str, *, account: str, run: int) -> bool:
        with self._connect() as conn:
            found = conn.rows(
                """
                SELECT EXISTS (SELECT 1 FROM import_changes
                               WHERE import_id = ? AND account = ? AND run = CAST(? AS BIGINT))
                    OR EXISTS (SELECT 1 FROM import_links
                               WHERE import_id = ? AND account = ? AND run = CAST(? AS BIGINT))
                """,
                [import_id, account, run] * 2,
            )
        return bool(found and found[0][0])

    def changes(
        self,
        import_id: str,
        *,
        account: str,
        run: int | None = None,
        entity: Entity | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[Change]:
        chosen = list(keys) if keys is not None else None
        named = entity.value if entity is not None else None
        with self._connect() as conn:
            rows = conn.rows(
                """
                SELECT entity, key, action, crm_id, CAST(before AS VARCHAR),
                       CAST(after AS VARCHAR), state, run, sent_at, proof
                FROM import_changes WHERE import_id = ? AND account = ?
                  AND (run = CAST(? AS BIGINT) OR CAST(? AS BIGINT) IS NULL)
                  AND (entity = ? OR CAST(? AS VARCHAR) IS NULL)
                  AND (key = ANY(?) OR CAST(? AS VARCHAR[]) IS NULL)
                ORDER BY run DESC, entity, key
                """,
                [import_id, account, run, run, named, named, chosen, chosen],
            )
        return [
            Change(
                entity=Entity(entity),
                key=key,
                action=ChangeAction(action),
                crm_id=crm_id,
                before=json.loads(before or "{}"),
                after=json.loads(after or "{}"),
                state=ChangeState(state),
                run=int(run),
                sent_at=sent_at.astimezone(UTC) if sent_at is not None else None,
                proof=Proof(proof),
            )
            for entity, key, action, crm_id, before, after, state, run, sent_at, proof in rows
        ]

    def mark_changes(
        self,
        import_id: str,
        entity: Entity,
        ids_by_key: Mapping[str, str],
        *,
        account: str,
        run: int,
        state: ChangeState,
    ) -> None:
        if not ids_by_key:
            return
        with self._connect() as conn:
            _mark(conn, import_id, entity, ids_by_key, account, run, state)

    def forget_pushes(self, entity: Entity, keys: Sequence[str], *, account: str) -> None:
        if not keys:
            return
        table = records_table(entity)
        with self._connect() as conn, conn.transaction():
            conn.lock_in_key_order(table, "account = ? AND key = ANY(?)", [account, list(keys)])
            conn.execute(
                f"""
                UPDATE {table} SET pushed_hash = NULL, crm_id = NULL
                WHERE account = ? AND key = ANY(?)
                """,
                [account, list(keys)],
            )

    def crm_ids(self, entity: Entity, keys: Sequence[str], *, account: str) -> dict[str, str]:
        if not keys:
            return {}
        with self._connect() as conn:
            rows = conn.rows(
                f"""
                SELECT key, crm_id FROM {records_table(entity)}
                WHERE account = ? AND key = ANY(?) AND crm_id IS NOT NULL
                """,
                [account, list(keys)],
            )
        return dict(rows)

    # links ---------------------------------------------------------------------------------

    def record_links(
        self, import_id: str, links: Sequence[LinkChange], *, account: str, run: int
    ) -> None:
        if not links:
            return
        frame = pl.DataFrame(
            {
                "entity": [link.entity.value for link in links],
                "key": [link.key for link in links],
                "reference": [link.reference for link in links],
                "to_entity": [link.to_entity.value for link in links],
                "from_id": [link.from_id for link in links],
                "to_id": [link.to_id for link in links],
                "state": [link.state.value for link in links],
                "with_create": [link.with_create for link in links],
            },
            schema_overrides={"with_create": pl.Boolean},
        )
        with self._connect() as conn, conn.table("link_frame", frame):
            conn.execute(
                """
                INSERT INTO import_links (import_id, run, account, entity, key, reference,
                                          to_entity, from_id, to_id, state, with_create)
                SELECT DISTINCT ON (entity, key, reference, to_id)
                       CAST(? AS VARCHAR), CAST(? AS BIGINT), CAST(? AS VARCHAR), entity, key,
                       reference, to_entity, from_id, to_id, state, with_create
                FROM link_frame
                ON CONFLICT (import_id, run, account, entity, key, reference, to_id)
                DO UPDATE SET from_id = excluded.from_id, state = excluded.state,
                    with_create = excluded.with_create, recorded_at = now()
                """,
                [import_id, run, account],
            )

    def links(
        self,
        import_id: str,
        *,
        account: str | None = None,
        run: int | None = None,
        entity: Entity | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[LinkChange]:
        chosen = list(keys) if keys is not None else None
        named = entity.value if entity is not None else None
        with self._connect() as conn:
            rows = conn.rows(
                """
                SELECT entity, key, reference, to_entity, from_id, to_id, state, run, with_create
                FROM import_links
                WHERE import_id = ? AND (account = ? OR CAST(? AS VARCHAR) IS NULL)
                  AND (run = CAST(? AS BIGINT) OR CAST(? AS BIGINT) IS NULL)
                  AND (entity = ? OR CAST(? AS VARCHAR) IS NULL)
                  AND (key = ANY(?) OR CAST(? AS VARCHAR[]) IS NULL)
                ORDER BY run DESC, entity, key, reference
                """,
                [import_id, account, account, run, run, named, named, chosen, chosen],
            )
        return [
            LinkChange(
                entity=Entity(entity),
                key=key,
                reference=reference,
                to_entity=Entity(to_entity),
                from_id=from_id,
                to_id=to_id,
                state=LinkState(state),
                run=int(run),
                with_create=bool(with_create),
            )
            for entity, key, reference, to_entity, from_id, to_id, state, run, with_create in rows
        ]

    def link_counts(self, import_id: str) -> dict[LinkState, int]:
        with self._connect() as conn:
            rows = conn.rows(
                "SELECT state, count(*) FROM import_links WHERE import_id = ? GROUP BY state",
                [import_id],
            )
        return {LinkState(state): int(n) for state, n in rows}

    def known_links(
        self, entity: Entity, reference: str, from_ids: Sequence[str], *, account: str
    ) -> set[tuple[str, str]]:
        if not from_ids:
            return set()
        with self._connect() as conn:
            rows = conn.rows(
                """
                SELECT DISTINCT from_id, to_id FROM import_links
                WHERE account = ? AND entity = ? AND reference = ?
                  AND state IN ('done', 'found') AND from_id = ANY(?)
                """,
                [account, entity.value, reference, list(from_ids)],
            )
        return {(from_id, to_id) for from_id, to_id in rows}

    def discard_links(
        self, import_id: str, links: Sequence[LinkChange], *, account: str, run: int
    ) -> None:
        """Forget link intents the CRM refused (nothing was linked)."""
        if not links:
            return
        frame = _frame(
            {
                "entity": [link.entity.value for link in links],
                "key": [link.key for link in links],
                "reference": [link.reference for link in links],
                "to_id": [link.to_id for link in links],
            }
        )
        with self._connect() as conn, conn.table("link_frame", frame):
            conn.execute(
                """
                DELETE FROM import_links USING link_frame f
                WHERE import_links.import_id = ? AND import_links.run = ?
                  AND import_links.account = ? AND import_links.state = 'intended'
                  AND import_links.entity = f.entity AND import_links.key = f.key
                  AND import_links.reference = f.reference AND import_links.to_id = f.to_id
                """,
                [import_id, run, account],
            )

    # outcomes ------------------------------------------------------------------------------

    def outcome_counts(self, import_id: str, *, entity: Entity | None = None) -> OutcomeCounts:
        with self._connect() as conn:
            rows = conn.rows(
                """
                SELECT outcome, count(*) FROM import_rows
                WHERE import_id = ? AND (entity = ? OR CAST(? AS VARCHAR) IS NULL)
                GROUP BY outcome
                """,
                [import_id, *[entity.value if entity else None] * 2],
            )
        return OutcomeCounts({LineOutcome(outcome): int(n) for outcome, n in rows})

    def line_outcomes(
        self,
        import_id: str,
        *,
        outcomes: Sequence[LineOutcome] | None = None,
        entity: Entity | None = None,
        after: LinePosition | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        sheet, line, of = after if after is not None else (None, None, None)
        chosen = None if outcomes is None else [o.value for o in outcomes]
        with self._connect() as conn:
            return conn.frame(
                f"""
                SELECT sheet, line, entity, key, outcome, reason, crm_id FROM import_rows
                WHERE import_id = ?
                  AND (outcome = ANY(?) OR CAST(? AS VARCHAR[]) IS NULL)
                  AND (entity = ? OR CAST(? AS VARCHAR) IS NULL)
                  AND ((sheet, line, entity) > (?, CAST(? AS BIGINT), ?)
                       OR CAST(? AS VARCHAR) IS NULL)
                ORDER BY sheet, line, entity
                {"LIMIT " + str(int(limit)) if limit is not None else ""}
                """,
                [
                    import_id,
                    chosen,
                    chosen,
                    *[entity.value if entity else None] * 2,
                    sheet,
                    line,
                    of,
                    sheet,
                ],
            )

    # recurring syncs -----------------------------------------------------------------------

    def last_completed(self, prefix: str, *, before: str) -> str | None:
        with self._connect() as conn:
            rows = conn.rows(
                """
                SELECT max(import_id) FROM imports
                WHERE state = 'completed' AND starts_with(import_id, ?) AND import_id < ?
                """,
                [prefix, before],
            )
        return rows[0][0] if rows else None

    def vanished(
        self, previous: str, current: str, entity: Entity, *, account: str
    ) -> tuple[list[VanishedKey], int]:
        table = records_table(entity)
        with self._connect() as conn:
            count = conn.rows(
                """
                SELECT count(DISTINCT key) FROM import_rows
                WHERE import_id = ? AND entity = ? AND key IS NOT NULL
                """,
                [previous, entity.value],
            )
            rows = conn.rows(
                f"""
                WITH gone AS (
                    SELECT key FROM import_rows
                    WHERE import_id = ? AND entity = ? AND key IS NOT NULL
                    EXCEPT
                    SELECT key FROM import_rows
                    WHERE import_id = ? AND entity = ? AND key IS NOT NULL
                )
                SELECT g.key, r.crm_id, min(c.import_id),
                       (array_agg(c.run ORDER BY c.import_id))[1]
                FROM gone g
                LEFT JOIN {table} r ON r.account = ? AND r.key = g.key
                LEFT JOIN import_changes c
                    ON c.account = ? AND c.entity = ? AND c.key = g.key AND c.action = 'create'
                   AND c.state = 'done' AND c.crm_id = r.crm_id
                GROUP BY g.key, r.crm_id
                ORDER BY g.key
                """,
                [previous, entity.value, current, entity.value, account, account, entity.value],
            )
        return (
            [
                VanishedKey(key, crm_id, creator, int(run) if run is not None else 1)
                for key, crm_id, creator, run in rows
            ],
            int(count[0][0]) if count else 0,
        )


def _set_state(
    conn: SqlConnection,
    import_id: str,
    state: ImportState,
    *,
    run: int | None = None,
    reason: str | None = None,
    resume_at: datetime | None = None,
) -> None:
    conn.execute(
        """
        INSERT INTO imports (import_id, state, run, reason, resume_at)
        VALUES (?, ?, coalesce(CAST(? AS BIGINT), 1), ?, CAST(? AS TIMESTAMPTZ))
        ON CONFLICT (import_id) DO UPDATE SET
            state = excluded.state,
            run = coalesce(CAST(? AS BIGINT), imports.run),
            reason = excluded.reason,
            resume_at = excluded.resume_at,
            updated_at = now()
        """,
        [import_id, state.value, run, reason, resume_at, run],
    )


def _mark(
    conn: SqlConnection,
    import_id: str,
    entity: Entity,
    ids_by_key: Mapping[str, str],
    account: str,
    run: int,
    state: ChangeState,
) -> None:
    frame = _frame({"key": list(ids_by_key), "crm_id": [v or None for v in ids_by_key.values()]})
    with conn.table("id_frame", frame):
        conn.execute(
            """
            UPDATE import_changes SET state = ?,
                crm_id = coalesce(f.crm_id, import_changes.crm_id)
            FROM id_frame f
            WHERE import_changes.import_id = ? AND import_changes.run = ?
              AND import_changes.account = ? AND import_changes.entity = ?
              AND import_changes.key = f.key
            """,
            [state.value, import_id, run, account, entity.value],
        )


IMPORT_ROWS_TABLE = """
    CREATE TABLE {name} (
        import_id VARCHAR NOT NULL,
        sheet VARCHAR NOT NULL DEFAULT '',
        entity VARCHAR NOT NULL,
        line BIGINT NOT NULL,
        key VARCHAR,
        outcome VARCHAR NOT NULL,
        reason VARCHAR,
        crm_id VARCHAR
        {key}
    )
    """
IMPORT_ROWS_KEY = ", PRIMARY KEY (import_id, sheet, entity, line)"
RECORDS_KEY = ", PRIMARY KEY (account, key)"


def records_ddl(table: str, *, primary_keys: bool) -> str:
    return f"""
        CREATE TABLE IF NOT EXISTS {table} (
            account VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            record JSON NOT NULL,
            content_hash VARCHAR NOT NULL,
            source_file VARCHAR,
            source_line BIGINT,
            import_id VARCHAR,
            crm_id VARCHAR,
            pushed_hash VARCHAR,
            last_error VARCHAR,
            updated_at TIMESTAMP DEFAULT current_timestamp,
            source_sheet VARCHAR
            {RECORDS_KEY if primary_keys else ""}
        )
        """


def import_rows_ddl(name: str, *, primary_keys: bool) -> str:
    return IMPORT_ROWS_TABLE.format(name=name, key=IMPORT_ROWS_KEY if primary_keys else "")


def ensure_schema(conn: SqlConnection, *, primary_keys: bool = True) -> None:
    """Create the tables, in types both databases know, and bring older stores' up to date.
    Without ``primary_keys`` (DuckDB), the records and outcomes tables have none: DuckDB keeps
    a key's index in memory, which millions of records do not fit; staging keeps their keys
    unique itself."""
    for entity in Entity:
        conn.execute(records_ddl(records_table(entity), primary_keys=primary_keys))
        conn.execute(
            f"ALTER TABLE {records_table(entity)} ADD COLUMN IF NOT EXISTS source_sheet VARCHAR"
        )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS record_refs (
            account VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            ref VARCHAR NOT NULL,
            key VARCHAR NOT NULL
        )
        """
    )
    _migrate_import_rows(conn, primary_keys=primary_keys)
    conn.execute(import_rows_ddl("IF NOT EXISTS import_rows", primary_keys=primary_keys))
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS import_changes (
            import_id VARCHAR NOT NULL,
            run BIGINT NOT NULL,
            account VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            crm_id VARCHAR,
            before JSON,
            after JSON,
            state VARCHAR NOT NULL DEFAULT 'intended',
            sent_at TIMESTAMPTZ,
            proof VARCHAR NOT NULL DEFAULT 'looked_up',
            recorded_at TIMESTAMPTZ DEFAULT current_timestamp,
            PRIMARY KEY (import_id, run, account, entity, key)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS import_links (
            import_id VARCHAR NOT NULL,
            run BIGINT NOT NULL,
            account VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            reference VARCHAR NOT NULL,
            to_entity VARCHAR NOT NULL,
            from_id VARCHAR NOT NULL,
            to_id VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            with_create BOOLEAN NOT NULL DEFAULT false,
            recorded_at TIMESTAMPTZ DEFAULT current_timestamp,
            PRIMARY KEY (import_id, run, account, entity, key, reference, to_id)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS imports (
            import_id VARCHAR PRIMARY KEY,
            state VARCHAR NOT NULL,
            run BIGINT NOT NULL DEFAULT 1,
            reason VARCHAR,
            resume_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ DEFAULT current_timestamp
        )
        """
    )


def _migrate_import_rows(conn: SqlConnection, *, primary_keys: bool) -> None:
    """Outcomes kept before imports had several sheets get the sheet '' in their key. DuckDB
    cannot change a primary key in place, so the table is copied (to a new name: PostgreSQL
    keeps the old key's index name with a renamed table)."""
    columns = {
        name
        for (name,) in conn.rows(
            """
            SELECT column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'import_rows'
            """
        )
    }
    if not columns or "sheet" in columns:
        return
    with conn.transaction():
        conn.execute(import_rows_ddl("import_rows_sheeted", primary_keys=primary_keys))
        conn.execute(
            """
            INSERT INTO import_rows_sheeted
            SELECT import_id, '', entity, line, key, outcome, reason, crm_id FROM import_rows
            """
        )
        conn.execute("DROP TABLE import_rows")
        conn.execute("ALTER TABLE import_rows_sheeted RENAME TO import_rows")
