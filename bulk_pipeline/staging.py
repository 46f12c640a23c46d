"""DuckDB staging: one table per entity keyed by the dedupe key, with sync state per CRM target.

The staging file is the pipeline's memory. It knows, for every record, what was last pushed to
each target (``pushed_hash``), so a re-run sends only what changed and a crash never causes a
second create. ``import_rows`` holds exactly one outcome per input line of every import, which is
what the summary counts.

Connections are short-lived: DuckDB allows one read-write process per file, so every access opens,
works and closes, retrying while another process holds the lock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import duckdb
import polars as pl

from bulk_pipeline.entities import ENTITY_SPECS, Entity

LOCK_WAIT_SECONDS = 120.0
STAGE_SLICE_ROWS = 500_000
"""Records upserted per statement: DuckDB's memory for an upsert grows with its size, and
re-staging is idempotent, so slices need not share one transaction."""
_schema_ready: set[tuple[Path, int]] = set()
"""Files whose tables this process already created: a push opens the file once per chunk."""


class OnDuplicate(StrEnum):
    """What to do with several rows of one file that share a dedupe key."""

    SKIP = "skip"
    """Keep the first row."""
    UPDATE = "update"
    """Keep the last row."""
    MERGE = "merge"
    """Keep the first row, with its blanks filled from later rows."""


class Outcome(StrEnum):
    PENDING = "pending"
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    FAILED = "failed"


SUMMARY_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.CREATED,
    Outcome.UPDATED,
    Outcome.UNCHANGED,
    Outcome.DUPLICATE,
    Outcome.INVALID,
    Outcome.FAILED,
)


@dataclass(frozen=True)
class StageResult:
    staged: int
    """Distinct records of this import (one per dedupe key)."""
    duplicates: int
    """Rows dropped or merged because an earlier/later row had the same key."""


@dataclass(frozen=True)
class PendingRecord:
    key: str
    line: int
    fields: dict[str, str]
    content_hash: str
    crm_id: str | None


@dataclass(frozen=True)
class PushOutcome:
    key: str
    outcome: Outcome
    """CREATED, UPDATED or FAILED."""
    crm_id: str | None = None
    content_hash: str | None = None
    reason: str | None = None


def records_table(entity: Entity) -> str:
    return f"records_{entity.value}"


@contextmanager
def connect(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short read-write connection, waiting while another process holds the file's lock."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.05
    while True:
        try:
            conn = duckdb.connect(str(db_path))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        file_id = (db_path, db_path.stat().st_ino)
        if file_id not in _schema_ready:
            _ensure_schema(conn)
            _schema_ready.add(file_id)
        yield conn
    finally:
        conn.close()


def _ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    for entity in Entity:
        conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {records_table(entity)} (
                target VARCHAR NOT NULL,
                key VARCHAR NOT NULL,
                record JSON NOT NULL,
                content_hash VARCHAR NOT NULL,
                source_file VARCHAR,
                source_line BIGINT,
                import_id VARCHAR,
                crm_id VARCHAR,
                pushed_hash VARCHAR,
                status VARCHAR NOT NULL DEFAULT 'pending',
                last_error VARCHAR,
                updated_at TIMESTAMP DEFAULT current_timestamp,
                PRIMARY KEY (target, key)
            )
            """
        )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS import_rows (
            import_id VARCHAR NOT NULL,
            line BIGINT NOT NULL,
            key VARCHAR,
            outcome VARCHAR NOT NULL,
            reason VARCHAR,
            crm_id VARCHAR,
            PRIMARY KEY (import_id, line)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS import_changes (
            import_id VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            crm_id VARCHAR,
            before JSON,
            state VARCHAR NOT NULL DEFAULT 'intended',
            recorded_at TIMESTAMPTZ DEFAULT current_timestamp,
            PRIMARY KEY (import_id, target, key)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS imports (
            import_id VARCHAR PRIMARY KEY,
            status VARCHAR NOT NULL,
            updated_at TIMESTAMP DEFAULT current_timestamp
        )
        """
    )


def _dedupe(valid: pl.DataFrame, key_field: str, on_duplicate: OnDuplicate) -> pl.DataFrame:
    """One row per key with ``_kept_line`` (the line whose record survives) and ``_lines``."""
    fields = [c for c in valid.columns if c != "_line"]
    ordered = valid.sort("_line")
    grouped = ordered.group_by(key_field, maintain_order=True)
    if on_duplicate is OnDuplicate.SKIP:
        agg = [pl.col(f).first() for f in fields if f != key_field]
        kept = pl.col("_line").first()
    elif on_duplicate is OnDuplicate.UPDATE:
        agg = [pl.col(f).last() for f in fields if f != key_field]
        kept = pl.col("_line").last()
    else:
        agg = [pl.col(f).drop_nulls().first() for f in fields if f != key_field]
        kept = pl.col("_line").first()
    return grouped.agg([*agg, kept.alias("_kept_line"), pl.col("_line").alias("_lines")])


def _content_hash_sql(fields: Sequence[str]) -> str:
    """A canonical hash over every field of the entity, so a missing column equals a blank."""
    parts = ", ".join(f"'{f}=' || coalesce(CAST(\"{f}\" AS VARCHAR), '')" for f in fields)
    return f"md5(concat_ws(chr(31), {parts}))"


def stage_import(
    db_path: Path,
    entity: Entity,
    valid: pl.DataFrame,
    invalid: pl.DataFrame,
    *,
    import_id: str,
    target: str,
    source_file: str,
    on_duplicate: OnDuplicate,
) -> StageResult:
    """Stage an import's valid rows and record one outcome per input line.

    ``valid`` holds our fields plus ``_line``; ``invalid`` holds ``_line`` and ``reason`` for
    every line that will not be written. Lines already written by an unfinished earlier attempt
    of the same import keep their outcome, so a resumed import reports what it really did; once
    an import has completed, running it again starts its outcomes afresh.
    """
    spec = ENTITY_SPECS[entity]
    deduped = _dedupe(valid, spec.key_field, on_duplicate)
    present = [f for f in spec.fields if f in deduped.columns]
    table = records_table(entity)
    record_sql = "to_json(struct_pack(" + ", ".join(f'"{f}" := "{f}"' for f in present) + "))"
    duplicates = deduped.select(
        pl.col(spec.key_field).alias("key"),
        pl.col("_kept_line").alias("kept_line"),
        pl.col("_lines").alias("line"),
    ).explode("line")
    duplicates = duplicates.filter(pl.col("line") != pl.col("kept_line"))
    kept = deduped.drop("_lines").rename({"_kept_line": "_line"})
    for f in spec.fields:
        if f not in kept.columns:
            kept = kept.with_columns(pl.lit(None, dtype=pl.String).alias(f))
    invalid_rows = invalid.select(pl.col("_line").cast(pl.Int64), pl.col("reason"))
    upsert = f"""
        INSERT INTO {table} (target, key, record, content_hash, source_file, source_line,
                             import_id, status)
        SELECT ?, "{spec.key_field}", {record_sql}, {_content_hash_sql(spec.fields)},
               ?, _line, ?, 'pending'
        FROM kept_slice
        ON CONFLICT (target, key) DO UPDATE SET
            record = excluded.record,
            content_hash = excluded.content_hash,
            source_file = excluded.source_file,
            source_line = excluded.source_line,
            import_id = excluded.import_id,
            updated_at = now()
        """
    with connect(db_path) as conn:
        for start in range(0, kept.height, STAGE_SLICE_ROWS):
            conn.register("kept_slice", kept.slice(start, STAGE_SLICE_ROWS).to_arrow())
            conn.execute(upsert, [target, source_file, import_id])
            conn.unregister("kept_slice")
        conn.register("kept_frame", kept.select("_line", spec.key_field).to_arrow())
        conn.register("dup_frame", duplicates.to_arrow())
        conn.register("invalid_frame", invalid_rows.to_arrow())
        conn.execute("BEGIN TRANSACTION")
        conn.execute(
            """
            CREATE TEMP TABLE kept_outcomes AS
            SELECT line, outcome, crm_id FROM import_rows
            WHERE import_id = ? AND outcome IN ('created', 'updated')
              AND EXISTS (SELECT 1 FROM imports WHERE import_id = ? AND status = 'running')
            """,
            [import_id, import_id],
        )
        conn.execute("DELETE FROM import_rows WHERE import_id = ?", [import_id])
        conn.execute(
            f"""
            INSERT INTO import_rows (import_id, line, key, outcome, reason, crm_id)
            SELECT ?, k._line, k."{spec.key_field}", coalesce(o.outcome, 'pending'), NULL,
                   o.crm_id
            FROM kept_frame k LEFT JOIN kept_outcomes o ON o.line = k._line
            UNION ALL
            SELECT ?, line, key, 'duplicate',
                   'duplicate of line ' || kept_line || ' ({spec.key_field} ' || key || ')', NULL
            FROM dup_frame
            UNION ALL
            SELECT ?, _line, NULL, 'invalid', reason, NULL FROM invalid_frame
            """,
            [import_id, import_id, import_id],
        )
        conn.execute("DROP TABLE kept_outcomes")
        _set_import_status(conn, import_id, "running")
        conn.execute("COMMIT")
    return StageResult(staged=kept.height, duplicates=duplicates.height)


def plan_push(db_path: Path, entity: Entity, *, import_id: str, target: str) -> list[PendingRecord]:
    """The records of this import that the target does not hold yet in their staged form.

    Lines whose record is already in the CRM with the same content become ``unchanged`` now,
    unless this import itself wrote them in an earlier attempt.
    """
    table = records_table(entity)
    with connect(db_path) as conn:
        conn.execute("BEGIN TRANSACTION")
        conn.execute(
            f"""
            UPDATE import_rows SET outcome = 'unchanged', crm_id = r.crm_id
            FROM {table} r
            WHERE import_rows.import_id = ? AND import_rows.outcome = 'pending'
              AND r.target = ? AND r.key = import_rows.key
              AND r.pushed_hash IS NOT DISTINCT FROM r.content_hash
            """,
            [import_id, target],
        )
        rows = conn.execute(
            f"""
            SELECT r.key, i.line, r.record, r.content_hash, r.crm_id
            FROM import_rows i JOIN {table} r ON r.target = ? AND r.key = i.key
            WHERE i.import_id = ? AND i.outcome IN ('pending', 'failed')
            ORDER BY i.line
            """,
            [target, import_id],
        ).fetchall()
        conn.execute("COMMIT")
    return [_pending(*row) for row in rows]


def _pending(
    key: str, line: int, record: str, content_hash: str, crm_id: str | None
) -> PendingRecord:
    return PendingRecord(
        key=key,
        line=line,
        fields={k: v for k, v in json.loads(record).items() if v is not None},
        content_hash=content_hash,
        crm_id=crm_id,
    )


def record_push_outcomes(
    db_path: Path,
    entity: Entity,
    outcomes: Sequence[PushOutcome],
    *,
    import_id: str,
    target: str,
    done_changes: dict[str, str] | None = None,
) -> None:
    """Checkpoint one batch: what the CRM acknowledged is never sent again.

    ``done_changes`` (CRM id by key) marks the batch's recorded changes as done in the same
    transaction, so outcomes and the rollback log never disagree.
    """
    if not outcomes:
        return
    frame = pl.DataFrame(
        {
            "key": [o.key for o in outcomes],
            "outcome": [o.outcome.value for o in outcomes],
            "crm_id": [o.crm_id for o in outcomes],
            "content_hash": [o.content_hash for o in outcomes],
            "reason": [o.reason for o in outcomes],
        },
        schema={
            "key": pl.String,
            "outcome": pl.String,
            "crm_id": pl.String,
            "content_hash": pl.String,
            "reason": pl.String,
        },
    )
    table = records_table(entity)
    with connect(db_path) as conn:
        conn.register("outcome_frame", frame.to_arrow())
        conn.execute("BEGIN TRANSACTION")
        conn.execute(
            f"""
            UPDATE {table} SET
                crm_id = coalesce(o.crm_id, {table}.crm_id),
                pushed_hash = CASE WHEN o.outcome = 'failed' THEN {table}.pushed_hash
                                   ELSE o.content_hash END,
                status = CASE WHEN o.outcome = 'failed' THEN 'failed' ELSE 'pushed' END,
                last_error = o.reason,
                updated_at = now()
            FROM outcome_frame o
            WHERE {table}.target = ? AND {table}.key = o.key
            """,
            [target],
        )
        conn.execute(
            """
            UPDATE import_rows SET outcome = o.outcome, reason = o.reason,
                crm_id = coalesce(o.crm_id, import_rows.crm_id)
            FROM outcome_frame o
            WHERE import_rows.import_id = ? AND import_rows.key = o.key
              AND import_rows.outcome IN ('pending', 'failed')
            """,
            [import_id],
        )
        if done_changes:
            _mark_changes(conn, done_changes, import_id=import_id, target=target, state="done")
        conn.execute("COMMIT")


@dataclass(frozen=True)
class Change:
    """A write an import made (or was about to make) to one CRM record, for rollback."""

    key: str
    action: str
    """``create`` or ``update``."""
    crm_id: str | None
    before: dict[str, str | None]
    state: str
    """``intended`` (recorded before sending), ``done`` or ``rolled_back``."""
    recorded_at: datetime | None = None


def record_intended_changes(
    db_path: Path,
    entity: Entity,
    changes: Sequence[Change],
    *,
    import_id: str,
    target: str,
) -> None:
    """Write down what is about to change before sending it.

    The first capture of a key wins: when a crashed attempt is resumed, the CRM already holds
    our values, and only the first capture knows what was there before the import. A capture
    that was rolled back is replaced, since the import then starts from the CRM's state again.
    """
    if not changes:
        return
    frame = pl.DataFrame(
        {
            "key": [c.key for c in changes],
            "action": [c.action for c in changes],
            "crm_id": [c.crm_id for c in changes],
            "before": [json.dumps(c.before) for c in changes],
        },
        schema={"key": pl.String, "action": pl.String, "crm_id": pl.String, "before": pl.String},
    )
    with connect(db_path) as conn:
        conn.register("change_frame", frame.to_arrow())
        conn.execute(
            """
            INSERT INTO import_changes (import_id, target, entity, key, action, crm_id, before)
            SELECT ?, ?, ?, key, action, crm_id, before FROM change_frame
            ON CONFLICT (import_id, target, key) DO UPDATE SET
                action = excluded.action, crm_id = excluded.crm_id, before = excluded.before,
                state = 'intended', recorded_at = now()
            WHERE import_changes.state = 'rolled_back'
            """,
            [import_id, target, entity.value],
        )


def mark_changes(
    db_path: Path,
    ids_by_key: dict[str, str],
    *,
    import_id: str,
    target: str,
    state: str,
) -> None:
    """Set the state (and the CRM id, learnt when a create succeeds) of recorded changes."""
    if not ids_by_key:
        return
    with connect(db_path) as conn:
        _mark_changes(conn, ids_by_key, import_id=import_id, target=target, state=state)


def _mark_changes(
    conn: duckdb.DuckDBPyConnection,
    ids_by_key: dict[str, str],
    *,
    import_id: str,
    target: str,
    state: str,
) -> None:
    frame = pl.DataFrame(
        {"key": list(ids_by_key), "crm_id": [v or None for v in ids_by_key.values()]},
        schema={"key": pl.String, "crm_id": pl.String},
    )
    conn.register("id_frame", frame.to_arrow())
    conn.execute(
        """
        UPDATE import_changes SET state = ?, crm_id = coalesce(f.crm_id, import_changes.crm_id)
        FROM id_frame f
        WHERE import_changes.import_id = ? AND import_changes.target = ?
          AND import_changes.key = f.key
        """,
        [state, import_id, target],
    )
    conn.unregister("id_frame")


def _register_keys(conn: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> None:
    """Expose ``keys`` to the connection's SQL as the one-column table ``key_frame``."""
    frame = pl.DataFrame({"key": list(keys)}, schema={"key": pl.String})
    conn.register("key_frame", frame.to_arrow())


def discard_intended_changes(
    db_path: Path, keys: Sequence[str], *, import_id: str, target: str
) -> None:
    """Forget intents whose write the CRM refused as a whole (nothing was written)."""
    if not keys:
        return
    with connect(db_path) as conn:
        _register_keys(conn, keys)
        conn.execute(
            """
            DELETE FROM import_changes
            WHERE import_id = ? AND target = ? AND state = 'intended'
              AND key IN (SELECT key FROM key_frame)
            """,
            [import_id, target],
        )


def import_changes(db_path: Path, *, import_id: str, target: str) -> list[Change]:
    with connect(db_path) as conn:
        rows = conn.execute(
            """
            SELECT key, action, crm_id, before, state, recorded_at FROM import_changes
            WHERE import_id = ? AND target = ? ORDER BY key
            """,
            [import_id, target],
        ).fetchall()
    return [
        Change(
            key=key,
            action=action,
            crm_id=crm_id,
            before=json.loads(before or "{}"),
            state=state,
            recorded_at=recorded_at,
        )
        for key, action, crm_id, before, state, recorded_at in rows
    ]


def forget_pushes(db_path: Path, entity: Entity, keys: Sequence[str], *, target: str) -> None:
    """After a rollback the CRM no longer holds what we pushed: the next import sends it again."""
    if not keys:
        return
    with connect(db_path) as conn:
        _register_keys(conn, keys)
        conn.execute(
            f"""
            UPDATE {records_table(entity)} SET pushed_hash = NULL, status = 'rolled_back'
            WHERE target = ? AND key IN (SELECT key FROM key_frame)
            """,
            [target],
        )


def staged_records(
    db_path: Path, entity: Entity, *, import_id: str, target: str
) -> list[PendingRecord]:
    """Every record this import staged, pushed or not (for a dry run against the CRM)."""
    with connect(db_path) as conn:
        rows = conn.execute(
            f"""
            SELECT r.key, i.line, r.record, r.content_hash, r.crm_id
            FROM import_rows i JOIN {records_table(entity)} r ON r.target = ? AND r.key = i.key
            WHERE i.import_id = ? AND i.outcome NOT IN ('duplicate', 'invalid')
            ORDER BY i.line
            """,
            [target, import_id],
        ).fetchall()
    return [_pending(*row) for row in rows]


def _set_import_status(conn: duckdb.DuckDBPyConnection, import_id: str, status: str) -> None:
    conn.execute(
        """
        INSERT INTO imports (import_id, status) VALUES (?, ?)
        ON CONFLICT (import_id) DO UPDATE SET status = excluded.status,
            updated_at = now()
        """,
        [import_id, status],
    )


def mark_import(db_path: Path, import_id: str, status: str) -> None:
    """``completed`` or ``rolled_back``: running the import again then reports afresh."""
    with connect(db_path) as conn:
        _set_import_status(conn, import_id, status)


def outcome_counts(db_path: Path, import_id: str) -> dict[str, int]:
    """Lines per outcome for one import; every outcome present, zero when none."""
    with connect(db_path) as conn:
        rows = conn.execute(
            "SELECT outcome, count(*) FROM import_rows WHERE import_id = ? GROUP BY outcome",
            [import_id],
        ).fetchall()
    counts = {o.value: 0 for o in Outcome}
    counts.update({outcome: int(n) for outcome, n in rows})
    return counts


def import_rows(db_path: Path, import_id: str) -> pl.DataFrame:
    """Every line of one import with its outcome, reason and CRM id, by line."""
    with connect(db_path) as conn:
        return conn.sql(
            """
            SELECT line, key, outcome, reason, crm_id FROM import_rows
            WHERE import_id = $import_id ORDER BY line
            """,
            params={"import_id": import_id},
        ).pl()
