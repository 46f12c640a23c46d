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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import polars as pl

from bulk_pipeline.entities import (
    ENTITY_SPECS,
    KEY_PARTS_SEPARATOR,
    Entity,
    EntitySpec,
    describe_key,
    normalize_key,
)
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
from bulk_pipeline.staging import LinePosition, VanishedKey

STAGE_SLICE_ROWS = 500_000
"""Records upserted per statement: the memory of an upsert grows with its size, and re-staging
is idempotent, so slices need not share one transaction."""
KEY = "_key"
LINE = "_line"
SHEET = "_sheet"
"""The sheet (or JSON key) a row comes from; empty for a file with one table."""


def records_table(entity: Entity) -> str:
    return f"records_{entity.value}"


def key_expression(column: str) -> pl.Expr:
    """``entities.normalize_key`` as a polars expression: ASCII values in vectorized string
    operations (where case folding is lower-casing), the rest through the Python rule."""
    text = pl.col(column).cast(pl.String)
    ascii_key = text.str.replace_all(r"\s+", " ").str.strip_chars().str.to_lowercase()
    general = text.map_elements(normalize_key, return_dtype=pl.String)
    key = pl.when(text.str.contains(r"^[\x00-\x7F]*$")).then(ascii_key).otherwise(general)
    return pl.when(key == "").then(None).otherwise(key)


def identity_key_expression(spec: EntitySpec, columns: Sequence[str]) -> pl.Expr:
    """``EntitySpec.identify``'s key as a polars expression over a frame's ``columns``."""

    def value(name: str) -> pl.Expr:
        return key_expression(name) if name in columns else pl.lit(None, pl.String)

    keys = []
    for position, identity in enumerate(spec.identities):
        parts = [value(identity.field)] + [
            pl.coalesce(*(value(name) for name in slot), pl.lit("")) for slot in identity.slots
        ]
        key = pl.concat_str(parts, separator=KEY_PARTS_SEPARATOR)
        keys.append(key if position == 0 else pl.lit(f"{identity.field}:") + key)
    return pl.coalesce(keys)


REFERENCED_FIELDS: dict[Entity, tuple[str, ...]] = {
    entity: tuple(
        dict.fromkeys(
            theirs
            for spec in ENTITY_SPECS.values()
            for reference in spec.references
            if reference.entity is entity
            for _, theirs in reference.by
        )
    )
    for entity in Entity
}
"""Per entity, the fields other records name it by (a company's domain and name)."""


def _reference_rows(entity: Entity, kept: pl.DataFrame) -> pl.DataFrame:
    """``ref, key`` for every value other records may name a staged record by
    (``domain:acme.com``, as ``push.references`` asks for it)."""
    frames = [
        kept.select(
            (pl.lit(f"{name}:") + key_expression(name)).alias("ref"), pl.col(KEY).alias("key")
        ).drop_nulls()
        for name in REFERENCED_FIELDS[entity]
        if name in kept.columns
    ]
    return (
        pl.concat(frames) if frames else pl.DataFrame(schema={"ref": pl.String, "key": pl.String})
    )


def _dedupe(valid: pl.DataFrame, on_duplicate: OnDuplicate) -> pl.DataFrame:
    """One row per key with the sheet and line whose record survives (``_kept_sheet``,
    ``_kept_line``) and all its rows (``_rows``); rows are taken in the frame's order."""
    fields = [c for c in valid.columns if c not in (LINE, KEY, SHEET)]
    grouped = valid.group_by(KEY, maintain_order=True)
    row = pl.struct(pl.col(SHEET).alias("sheet"), pl.col(LINE).alias("line"))
    if on_duplicate is OnDuplicate.SKIP:
        agg = [pl.col(f).first() for f in fields]
        kept = row.first()
    elif on_duplicate is OnDuplicate.UPDATE:
        agg = [pl.col(f).last() for f in fields]
        kept = row.last()
    else:
        agg = [pl.col(f).drop_nulls().first() for f in fields]
        kept = row.first()
    return (
        grouped.agg([*agg, kept.alias("_kept"), row.alias("_rows")])
        .unnest("_kept")
        .rename({"sheet": "_kept_sheet", "line": "_kept_line"})
    )


def _duplicate_rows(deduped: pl.DataFrame) -> pl.DataFrame:
    """``sheet, line, key, reason`` of every row merged into another row's record."""
    rows = (
        deduped.select(KEY, "_kept_sheet", "_kept_line", "_rows")
        .explode("_rows")
        .unnest("_rows")
        .filter(
            (pl.col("line") != pl.col("_kept_line")) | (pl.col("sheet") != pl.col("_kept_sheet"))
        )
    )
    kept_at = (
        pl.when(pl.col("_kept_sheet") == "").then(pl.lit("")).otherwise(pl.col("_kept_sheet") + " ")
    )
    readable = pl.col(KEY).map_elements(describe_key, return_dtype=pl.String)
    return rows.select(
        "sheet",
        pl.col("line").cast(pl.Int64),
        pl.col(KEY).alias("key"),
        pl.format("duplicate of {}line {} ({})", kept_at, pl.col("_kept_line"), readable).alias(
            "reason"
        ),
    )


def _with_sheet(frame: pl.DataFrame) -> pl.DataFrame:
    if SHEET in frame.columns:
        return frame.with_columns(pl.col(SHEET).fill_null(""))
    return frame.with_columns(pl.lit("").alias(SHEET))


def _content_hash_sql(fields: Sequence[str]) -> str:
    """A canonical hash over every field of the entity, so a missing column equals a blank."""
    parts = ", ".join(f"'{f}=' || coalesce(CAST(\"{f}\" AS VARCHAR), '')" for f in fields)
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
    upsert_order: str = ""
    """Appended to the staging upsert's SELECT: where writers of different imports run at once,
    rows are locked in key order, so two upserts cannot deadlock."""

    @abstractmethod
    def _connect(self) -> AbstractContextManager[SqlConnection]: ...

    @abstractmethod
    def _record_json(self, fields: Sequence[str]) -> str:
        """An expression packing the named columns into one JSON object."""

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
        valid: pl.DataFrame,
        invalid: pl.DataFrame,
        *,
        account: str,
        source_file: str,
        on_duplicate: OnDuplicate,
    ) -> StageResult:
        """Stage an import's valid rows of one entity and record one outcome per input line.

        ``valid`` holds our fields plus ``_line`` (and ``_sheet`` when the rows come from
        several sheets), in the order that decides which duplicate comes first; ``invalid``
        holds ``_line``, ``reason`` (and ``_sheet``) for every line that will not be written.
        Lines already written by an earlier attempt of the same run keep their outcome, so a
        resumed import reports what it really did (a new run starts with no outcomes:
        ``begin_run``). The values other records may name each record by are kept beside it
        (``record_refs``), for :meth:`resolve`.
        """
        spec = ENTITY_SPECS[entity]
        valid, invalid = _with_sheet(valid), _with_sheet(invalid)
        keyed = valid.with_columns(identity_key_expression(spec, valid.columns).alias(KEY))
        deduped = _dedupe(keyed, on_duplicate)
        custom = sorted(
            c for c in deduped.columns if c not in spec.fields and not c.startswith("_")
        )
        """The CRM's custom fields the file feeds (``mapping.map_columns``), after ours."""
        present = [f for f in spec.fields if f in deduped.columns] + custom
        table = records_table(entity)
        duplicates = _duplicate_rows(deduped)
        kept = deduped.drop("_rows").rename({"_kept_line": LINE, "_kept_sheet": SHEET})
        for f in spec.fields:
            if f not in kept.columns:
                kept = kept.with_columns(pl.lit(None, dtype=pl.String).alias(f))
        refs = _reference_rows(entity, kept)
        invalid_rows = invalid.select(pl.col(SHEET), pl.col(LINE).cast(pl.Int64), pl.col("reason"))
        upsert = f"""
            INSERT INTO {table} (account, key, record, content_hash, source_file, source_sheet,
                                 source_line, import_id)
            SELECT ?, {KEY}, {self._record_json(present)},
                   {_content_hash_sql([*spec.fields, *custom])}, ?,
                   {SHEET}, {LINE}, ?
            FROM kept_slice{self.upsert_order}
            ON CONFLICT (account, key) DO UPDATE SET
                record = excluded.record,
                content_hash = excluded.content_hash,
                source_file = excluded.source_file,
                source_sheet = excluded.source_sheet,
                source_line = excluded.source_line,
                import_id = excluded.import_id,
                updated_at = now()
            """
        with self._connect() as conn:
            for start in range(0, kept.height, STAGE_SLICE_ROWS):
                with conn.table("kept_slice", kept.slice(start, STAGE_SLICE_ROWS)):
                    conn.execute(upsert, [account, source_file, import_id])
            with (
                conn.table("ref_frame", refs),
                conn.table("kept_frame", kept.select(SHEET, LINE, KEY)),
                conn.table("dup_frame", duplicates),
                conn.table("invalid_frame", invalid_rows),
                conn.transaction(),
            ):
                conn.hold(f"record_refs/{account}/{entity.value}")
                conn.execute(
                    f"""
                    DELETE FROM record_refs WHERE account = ? AND entity = ?
                      AND key IN (SELECT k.{KEY} FROM kept_frame k)
                    """,
                    [account, entity.value],
                )
                conn.execute(
                    """
                    INSERT INTO record_refs (account, entity, ref, key)
                    SELECT DISTINCT CAST(? AS VARCHAR), CAST(? AS VARCHAR), ref, key
                    FROM ref_frame
                    """,
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
                    SELECT ?, k.{SHEET}, ?, k.{LINE}, k.{KEY}, coalesce(o.outcome, 'pending'),
                           NULL, o.crm_id
                    FROM kept_frame k
                    LEFT JOIN kept_outcomes o ON o.sheet = k.{SHEET} AND o.line = k.{LINE}
                    UNION ALL
                    SELECT ?, sheet, ?, line, key, 'duplicate', reason, NULL FROM dup_frame
                    UNION ALL
                    SELECT ?, {SHEET}, ?, {LINE}, NULL, 'invalid', reason, NULL
                    FROM invalid_frame
                    """,
                    [import_id, entity.value] * 3,
                )
                conn.execute("DROP TABLE kept_outcomes")
        return StageResult(staged=kept.height, duplicates=duplicates.height)

    def resolve(
        self, entity: Entity, refs: Sequence[str], *, account: str, import_id: str
    ) -> dict[str, list[ReferenceMatch]]:
        if not refs:
            return {}
        table = records_table(entity)
        with (
            self._connect() as conn,
            conn.table("wanted", _frame({"ref": list(dict.fromkeys(refs))})),
        ):
            rows = conn.rows(
                f"""
                SELECT w.ref, r.key, coalesce(i.crm_id, t.crm_id), i.outcome, i.reason,
                       i.sheet, i.line, t.import_id
                FROM wanted w
                JOIN record_refs r ON r.account = ? AND r.entity = ? AND r.ref = w.ref
                JOIN {table} t ON t.account = r.account AND t.key = r.key
                LEFT JOIN import_rows i
                  ON i.import_id = ? AND i.entity = ? AND i.key = r.key
                 AND i.outcome NOT IN ('duplicate', 'invalid')
                ORDER BY w.ref, r.key
                """,
                [account, entity.value, import_id, entity.value],
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
        crm_id VARCHAR,
        PRIMARY KEY (import_id, sheet, entity, line)
    )
    """


def ensure_schema(conn: SqlConnection) -> None:
    """Create the tables, in types both databases know, and bring older stores' up to date."""
    for entity in Entity:
        conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {records_table(entity)} (
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
                source_sheet VARCHAR,
                PRIMARY KEY (account, key)
            )
            """
        )
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
    _migrate_import_rows(conn)
    conn.execute(IMPORT_ROWS_TABLE.format(name="IF NOT EXISTS import_rows"))
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


def _migrate_import_rows(conn: SqlConnection) -> None:
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
        conn.execute(IMPORT_ROWS_TABLE.format(name="import_rows_sheeted"))
        conn.execute(
            """
            INSERT INTO import_rows_sheeted
            SELECT import_id, '', entity, line, key, outcome, reason, crm_id FROM import_rows
            """
        )
        conn.execute("DROP TABLE import_rows")
        conn.execute("ALTER TABLE import_rows_sheeted RENAME TO import_rows")
