"""The staging store in one DuckDB file (the embedded default).

Tables: one per entity keyed by (account, key) with each record's staged values and the CRM id it
was last written to; ``import_rows``, one outcome per (import, entity, line); ``import_changes``,
the change log (before and after values, per run); ``imports``, each import's state.

Connections are short-lived: DuckDB allows one read-write process per file, so every access
opens, works and closes, waiting while another process holds the lock. Work is set-based SQL over
Arrow frames; no statement runs per record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
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
from bulk_pipeline.staging import VanishedKey

LOCK_WAIT_SECONDS = 120.0
STAGE_SLICE_ROWS = 500_000
"""Records upserted per statement: DuckDB's memory for an upsert grows with its size, and
re-staging is idempotent, so slices need not share one transaction."""
KEY = "_key"
LINE = "_line"
SHEET = "_sheet"
"""The sheet (or JSON key) a row comes from; empty for a file with one table."""
_schema_ready: set[tuple[Path, int]] = set()
"""Files whose tables this process already created: a push opens the file once per chunk."""


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


def reference_value(field_name: str, key: str) -> str:
    """How ``record_refs`` holds a value a record can be named by: ``domain:acme.com``."""
    return f"{field_name}:{key}"


def _reference_rows(entity: Entity, kept: pl.DataFrame) -> pl.DataFrame:
    """``ref, key`` for every value other records may name a staged record by."""
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


def _frame(rows: dict[str, list[object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(rows, pl.String))


class DuckDBStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"DuckDBStore({str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short read-write connection, waiting while another process holds the file's lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
                _ensure_schema(conn)
                _schema_ready.add(file_id)
            yield conn
        finally:
            conn.close()

    # import state --------------------------------------------------------------------------

    def begin_run(self, import_id: str) -> int:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT state, run FROM imports WHERE import_id = ?", [import_id]
            ).fetchone()
            if row is None:
                run = 1
            else:
                state, previous = ImportState(row[0]), int(row[1])
                run = previous if state.resumable else previous + 1
            conn.execute("BEGIN TRANSACTION")
            if row is not None and run != int(row[1]):
                conn.execute("DELETE FROM import_rows WHERE import_id = ?", [import_id])
            _set_state(conn, import_id, ImportState.RUNNING, run=run)
            conn.execute("COMMIT")
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
            query += " WHERE import_id IN (SELECT unnest(?))"
            params = [list(import_ids)]
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
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
        ``begin_run``).
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
        record_sql = "to_json(struct_pack(" + ", ".join(f'"{f}" := "{f}"' for f in present) + "))"
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
            SELECT ?, {KEY}, {record_sql}, {_content_hash_sql([*spec.fields, *custom])}, ?,
                   {SHEET}, {LINE}, ?
            FROM kept_slice
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
                conn.register("kept_slice", kept.slice(start, STAGE_SLICE_ROWS).to_arrow())
                conn.execute(upsert, [account, source_file, import_id])
                conn.unregister("kept_slice")
            conn.register("ref_frame", refs.to_arrow())
            conn.register("kept_frame", kept.select(SHEET, LINE, KEY).to_arrow())
            conn.register("dup_frame", duplicates.to_arrow())
            conn.register("invalid_frame", invalid_rows.to_arrow())
            conn.execute("BEGIN TRANSACTION")
            conn.execute(
                f"""
                DELETE FROM record_refs WHERE account = ? AND entity = ?
                  AND key IN (SELECT k.{KEY} FROM kept_frame k)
                """,
                [account, entity.value],
            )
            conn.execute(
                "INSERT INTO record_refs SELECT DISTINCT ?, ?, ref, key FROM ref_frame",
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
                SELECT ?, k.{SHEET}, ?, k.{LINE}, k.{KEY}, coalesce(o.outcome, 'pending'), NULL,
                       o.crm_id
                FROM kept_frame k
                LEFT JOIN kept_outcomes o ON o.sheet = k.{SHEET} AND o.line = k.{LINE}
                UNION ALL
                SELECT ?, sheet, ?, line, key, 'duplicate', reason, NULL FROM dup_frame
                UNION ALL
                SELECT ?, {SHEET}, ?, {LINE}, NULL, 'invalid', reason, NULL FROM invalid_frame
                """,
                [import_id, entity.value] * 3,
            )
            conn.execute("DROP TABLE kept_outcomes")
            conn.execute("COMMIT")
        return StageResult(staged=kept.height, duplicates=duplicates.height)

    def resolve(
        self, entity: Entity, refs: Sequence[str], *, account: str, import_id: str
    ) -> dict[str, list[ReferenceMatch]]:
        if not refs:
            return {}
        table = records_table(entity)
        with self._connect() as conn:
            conn.register("wanted", _frame({"ref": list(dict.fromkeys(refs))}).to_arrow())
            rows = conn.execute(
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
            ).fetchall()
            conn.unregister("wanted")
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

    def _records(
        self, import_id: str, entity: Entity, account: str, outcomes: Sequence[str]
    ) -> list[PendingRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                f"""
                SELECT r.key, i.line, r.record, r.crm_id, i.sheet
                FROM import_rows i JOIN {records_table(entity)} r
                  ON r.account = ? AND r.key = i.key
                WHERE i.import_id = ? AND i.entity = ? AND i.outcome IN (SELECT unnest(?))
                ORDER BY i.sheet, i.line
                """,
                [account, import_id, entity.value, list(outcomes)],
            ).fetchall()
        return [
            PendingRecord(
                key=key,
                line=int(line),
                fields={k: v for k, v in json.loads(record).items() if v is not None},
                crm_id=crm_id,
                sheet=sheet,
            )
            for key, line, record, crm_id, sheet in rows
        ]

    def pending(self, import_id: str, entity: Entity, *, account: str) -> list[PendingRecord]:
        return self._records(import_id, entity, account, ("pending", "failed"))

    def staged(self, import_id: str, entity: Entity, *, account: str) -> list[PendingRecord]:
        return self._records(
            import_id,
            entity,
            account,
            [o.value for o in LineOutcome if o.value not in ("duplicate", "invalid")],
        )

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
        with self._connect() as conn:
            conn.register("outcome_frame", frame.to_arrow())
            conn.execute("BEGIN TRANSACTION")
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
            conn.execute("COMMIT")

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
        with self._connect() as conn:
            conn.register("change_frame", frame.to_arrow())
            conn.execute(
                f"""
                INSERT INTO import_changes (import_id, run, account, entity, key, action, crm_id,
                                            before, after, state, sent_at, proof)
                SELECT ?, ?, ?, ?, c.key, c.action, c.crm_id, c.before,
                       coalesce(c.after, r.record), 'intended', ?, ?
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
            conn.unregister("change_frame")

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
                  AND state = 'intended' AND key IN (SELECT unnest(?))
                """,
                [import_id, run, account, entity.value, list(keys)],
            )

    def changes(self, import_id: str, *, account: str) -> list[Change]:
        with self._connect() as conn:
            rows = conn.execute(
                """
                SELECT entity, key, action, crm_id, before, after, state, run, sent_at, proof
                FROM import_changes WHERE import_id = ? AND account = ?
                ORDER BY run DESC, entity, key
                """,
                [import_id, account],
            ).fetchall()
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
        with self._connect() as conn:
            conn.execute(
                f"""
                UPDATE {records_table(entity)} SET pushed_hash = NULL, crm_id = NULL
                WHERE account = ? AND key IN (SELECT unnest(?))
                """,
                [account, list(keys)],
            )

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
        with self._connect() as conn:
            conn.register("link_frame", frame.to_arrow())
            conn.execute(
                """
                INSERT INTO import_links (import_id, run, account, entity, key, reference,
                                          to_entity, from_id, to_id, state, with_create)
                SELECT DISTINCT ON (entity, key, reference, to_id)
                       ?, ?, ?, entity, key, reference, to_entity, from_id, to_id, state,
                       with_create
                FROM link_frame
                ON CONFLICT (import_id, run, account, entity, key, reference, to_id)
                DO UPDATE SET from_id = excluded.from_id, state = excluded.state,
                    with_create = excluded.with_create, recorded_at = now()
                """,
                [import_id, run, account],
            )
            conn.unregister("link_frame")

    def links(self, import_id: str, *, account: str | None = None) -> list[LinkChange]:
        with self._connect() as conn:
            rows = conn.execute(
                """
                SELECT entity, key, reference, to_entity, from_id, to_id, state, run, with_create
                FROM import_links WHERE import_id = ? AND (account = ? OR ? IS NULL)
                ORDER BY run DESC, entity, key, reference
                """,
                [import_id, account, account],
            ).fetchall()
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

    def known_links(
        self, entity: Entity, reference: str, from_ids: Sequence[str], *, account: str
    ) -> set[tuple[str, str]]:
        if not from_ids:
            return set()
        with self._connect() as conn:
            rows = conn.execute(
                """
                SELECT DISTINCT from_id, to_id FROM import_links
                WHERE account = ? AND entity = ? AND reference = ?
                  AND state IN ('done', 'found') AND from_id IN (SELECT unnest(?))
                """,
                [account, entity.value, reference, list(from_ids)],
            ).fetchall()
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
        with self._connect() as conn:
            conn.register("link_frame", frame.to_arrow())
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
            conn.unregister("link_frame")

    # outcomes ------------------------------------------------------------------------------

    def outcome_counts(self, import_id: str) -> OutcomeCounts:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT outcome, count(*) FROM import_rows WHERE import_id = ? GROUP BY outcome",
                [import_id],
            ).fetchall()
        return OutcomeCounts({LineOutcome(outcome): int(n) for outcome, n in rows})

    def line_outcomes(self, import_id: str) -> pl.DataFrame:
        with self._connect() as conn:
            return conn.sql(
                """
                SELECT sheet, line, entity, key, outcome, reason, crm_id FROM import_rows
                WHERE import_id = $import_id ORDER BY sheet, line, entity
                """,
                params={"import_id": import_id},
            ).pl()

    # recurring syncs -----------------------------------------------------------------------

    def last_completed(self, prefix: str, *, before: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                """
                SELECT max(import_id) FROM imports
                WHERE state = 'completed' AND starts_with(import_id, ?) AND import_id < ?
                """,
                [prefix, before],
            ).fetchone()
        return row[0] if row else None

    def vanished(
        self, previous: str, current: str, entity: Entity, *, account: str
    ) -> tuple[list[VanishedKey], int]:
        table = records_table(entity)
        with self._connect() as conn:
            count = conn.execute(
                """
                SELECT count(DISTINCT key) FROM import_rows
                WHERE import_id = ? AND entity = ? AND key IS NOT NULL
                """,
                [previous, entity.value],
            ).fetchone()
            rows = conn.execute(
                f"""
                WITH gone AS (
                    SELECT key FROM import_rows
                    WHERE import_id = ? AND entity = ? AND key IS NOT NULL
                    EXCEPT
                    SELECT key FROM import_rows
                    WHERE import_id = ? AND entity = ? AND key IS NOT NULL
                )
                SELECT g.key, r.crm_id, min(c.import_id), arg_min(c.run, c.import_id)
                FROM gone g
                LEFT JOIN {table} r ON r.account = ? AND r.key = g.key
                LEFT JOIN import_changes c
                    ON c.account = ? AND c.entity = ? AND c.key = g.key AND c.action = 'create'
                   AND c.state = 'done' AND c.crm_id = r.crm_id
                GROUP BY g.key, r.crm_id
                ORDER BY g.key
                """,
                [previous, entity.value, current, entity.value, account, account, entity.value],
            ).fetchall()
        return (
            [
                VanishedKey(key, crm_id, creator, int(run) if run is not None else 1)
                for key, crm_id, creator, run in rows
            ],
            int(count[0]) if count else 0,
        )


def _set_state(
    conn: duckdb.DuckDBPyConnection,
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
        VALUES (?, ?, coalesce(?, 1), ?, ?)
        ON CONFLICT (import_id) DO UPDATE SET
            state = excluded.state,
            run = coalesce(?, imports.run),
            reason = excluded.reason,
            resume_at = excluded.resume_at,
            updated_at = now()
        """,
        [import_id, state.value, run, reason, resume_at, run],
    )


def _mark(
    conn: duckdb.DuckDBPyConnection,
    import_id: str,
    entity: Entity,
    ids_by_key: Mapping[str, str],
    account: str,
    run: int,
    state: ChangeState,
) -> None:
    frame = _frame({"key": list(ids_by_key), "crm_id": [v or None for v in ids_by_key.values()]})
    conn.register("id_frame", frame.to_arrow())
    conn.execute(
        """
        UPDATE import_changes SET state = ?, crm_id = coalesce(f.crm_id, import_changes.crm_id)
        FROM id_frame f
        WHERE import_changes.import_id = ? AND import_changes.run = ?
          AND import_changes.account = ? AND import_changes.entity = ?
          AND import_changes.key = f.key
        """,
        [state.value, import_id, run, account, entity.value],
    )
    conn.unregister("id_frame")


def _ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
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
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS import_rows (
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
    )
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


def _migrate_import_rows(conn: duckdb.DuckDBPyConnection) -> None:
    """Outcomes kept before imports had several sheets get the sheet '' in their key (DuckDB
    cannot change a primary key in place, so the table is copied)."""
    columns = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'import_rows'"
        ).fetchall()
    }
    if not columns or "sheet" in columns:
        return
    conn.execute("BEGIN TRANSACTION")
    conn.execute("ALTER TABLE import_rows RENAME TO import_rows_unsheeted")
    conn.execute(
        """
        CREATE TABLE import_rows (
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
    )
    conn.execute(
        """
        INSERT INTO import_rows
        SELECT import_id, '', entity, line, key, outcome, reason, crm_id
        FROM import_rows_unsheeted
        """
    )
    conn.execute("DROP TABLE import_rows_unsheeted")
    conn.execute("COMMIT")
