"""HubSpot's records in the sandbox's SQLite file: one table of every object type.

A partial unique index on ``(type, key)`` over active records is the last line of defence behind
the unique-key checks, which run inside the store's write transaction.

Both indexes are partial (active records only) and neither leads with ``archived``: with an
index on ``(type, archived, ...)`` SQLite's planner preferred it to the key index for
``key IN (...)`` lookups and scanned every record of the type, so upserts slowed as data grew.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bulk_pipeline.sandbox.store import StoreConnection
from bulk_pipeline.sandbox.store import marks as _marks

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    key TEXT,
    properties TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS records_active_key
    ON records (type, key) WHERE key IS NOT NULL AND archived = 0;
CREATE INDEX IF NOT EXISTS records_active_by_type ON records (type, id) WHERE archived = 0;
"""
_COLUMNS = "id, properties, created_at, updated_at"
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as read, or as written (then ``properties`` holds what the write set)."""

    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Filter:
    """One search condition; ``values`` is empty for HAS_PROPERTY / NOT_HAS_PROPERTY."""

    property: str
    operator: str
    values: tuple[str, ...]


class KeyConflict(Exception):
    """A write would give two active records of one type the same unique key."""

    def __init__(self, key: str, existing_id: str) -> None:
        super().__init__(f"{key} already belongs to record {existing_id}")
        self.key = key
        self.existing_id = existing_id


class HubSpotRecords:
    """HubSpot's queries on one store connection."""

    def __init__(self, conn: StoreConnection) -> None:
        self._conn = conn
        self._db = conn.db

    # Reads ------------------------------------------------------------------------------------

    def by_ids(self, type_: str, ids: Sequence[int]) -> dict[str, StoredRecord]:
        if not ids:
            return {}
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE type = ? AND archived = 0 "
            f"AND id IN ({_marks(ids)})",
            (type_, *ids),
        )
        return {record.id: record for record in map(_record, rows)}

    def by_keys(self, type_: str, keys: Sequence[str]) -> dict[str, StoredRecord]:
        """Active records by lower-cased unique key."""
        if not keys:
            return {}
        rows = self._db.execute(
            f"SELECT key, {_COLUMNS} FROM records WHERE type = ? AND archived = 0 "
            f"AND key IN ({_marks(keys)})",
            (type_, *keys),
        )
        return {row[0]: _record(row[1:]) for row in rows}

    def search(
        self,
        type_: str,
        key_property: str | None,
        filter_groups: Sequence[Sequence[Filter]],
        *,
        after: int,
        limit: int,
    ) -> tuple[list[StoredRecord], int, bool]:
        """One page of matching records in id order, the total matching, and whether more follow.

        Groups are OR-ed, filters inside a group AND-ed, as in HubSpot's search.
        """
        where, params = _where(key_property, filter_groups)
        base = f"FROM records WHERE type = ? AND archived = 0 AND ({where})"
        total = self._db.execute(f"SELECT COUNT(*) {base}", (type_, *params)).fetchone()[0]
        rows = self._db.execute(
            f"SELECT {_COLUMNS} {base} AND id > ? ORDER BY id LIMIT ?",
            (type_, *params, after, limit + 1),
        ).fetchall()
        return [_record(row) for row in rows[:limit]], total, len(rows) > limit

    def all_active(self, type_: str) -> list[StoredRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE type = ? AND archived = 0 ORDER BY id", (type_,)
        )
        return [_record(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT type, COUNT(*) FROM records WHERE archived = 0 GROUP BY type"
        )
        return dict(rows.fetchall())

    # Writes -----------------------------------------------------------------------------------

    def create(
        self,
        type_: str,
        key_property: str | None,
        records: Sequence[dict[str, str]],
        now: str,
        *,
        then: Callable[[sqlite3.Connection, list[StoredRecord]], None] | None = None,
    ) -> list[StoredRecord]:
        """Insert new records; raises ``KeyConflict`` naming the first key already taken.

        ``then`` runs in the same transaction with the new records (to associate them): what it
        raises undoes the creation, so a create is refused whole.
        """
        keys = [_key(props, key_property) for props in records]
        with self._conn.write() as db:
            taken = _active_by_key(db, type_, [key for key in keys if key is not None])
            for key in keys:
                if key in taken:
                    raise KeyConflict(key, str(taken[key][0]))
            created = _insert(db, type_, list(zip(keys, records, strict=True)), now)
            if then is not None:
                then(db, created)
            return created

    def upsert(
        self,
        type_: str,
        key_property: str,
        items: Sequence[tuple[str, dict[str, str | None]]],
        now: str,
    ) -> list[tuple[StoredRecord, bool]]:
        """Create or update by unique key (keys distinct, lower-cased); ``True`` marks a creation.

        Each patch carries its key's value already, so no record changes key here.
        """
        with self._conn.write() as db:
            existing = _active_by_key(db, type_, [key for key, _ in items])
            fresh = [
                (key, {name: value for name, value in patch.items() if value is not None})
                for key, patch in items
                if key not in existing
            ]
            created = iter(_insert(db, type_, fresh, now))
            _patch(db, [(existing[key][0], patch) for key, patch in items if key in existing], now)
            results: list[tuple[StoredRecord, bool]] = []
            for key, patch in items:
                if key in existing:
                    record_id, created_at = existing[key]
                    results.append((_written(record_id, patch, created_at, now), False))
                else:
                    results.append((next(created), True))
            return results

    def update(
        self,
        type_: str,
        key_property: str | None,
        items: Sequence[tuple[int, dict[str, str | None]]],
        now: str,
    ) -> dict[str, StoredRecord]:
        """Apply patches to the active records among the ids (distinct); returns those, by id.

        Raises ``KeyConflict`` when a patch would move a unique key onto another record.
        """
        with self._conn.write() as db:
            created = dict(
                db.execute(
                    f"SELECT id, created_at FROM records WHERE type = ? AND archived = 0 "
                    f"AND id IN ({_marks(items)})",
                    (type_, *(record_id for record_id, _ in items)),
                ).fetchall()
            )
            changes = [(record_id, patch) for record_id, patch in items if record_id in created]
            _patch(db, changes, now)
            if key_property is not None:
                _rekey(db, type_, key_property, changes)
            return {
                str(record_id): _written(record_id, patch, created[record_id], now)
                for record_id, patch in changes
            }

    def archive(self, type_: str, ids: Sequence[int], now: str) -> int:
        """Archive active records; returns how many there were."""
        if not ids:
            return 0
        with self._conn.write() as db:
            cursor = db.execute(
                f"UPDATE records SET archived = 1, updated_at = ? WHERE type = ? AND archived = 0 "
                f"AND id IN ({_marks(ids)})",
                (now, type_, *ids),
            )
            return cursor.rowcount

    def reset(self) -> None:
        with self._conn.write() as db:
            db.execute("DELETE FROM records")


def _active_by_key(
    db: sqlite3.Connection, type_: str, keys: Sequence[str]
) -> dict[str, tuple[int, str]]:
    """``key -> (id, created_at)`` of the active records holding any of the keys."""
    if not keys:
        return {}
    rows = db.execute(
        f"SELECT key, id, created_at FROM records WHERE type = ? AND archived = 0 "
        f"AND key IN ({_marks(keys)})",
        (type_, *keys),
    )
    return {key: (record_id, created_at) for key, record_id, created_at in rows}


def _insert(
    db: sqlite3.Connection,
    type_: str,
    items: Sequence[tuple[str | None, dict[str, str]]],
    now: str,
) -> list[StoredRecord]:
    """Insert with ids allocated here, which is safe because the write lock is held."""
    if not items:
        return []
    first = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM records").fetchone()[0]
    records = [_written(first + offset, props, now, now) for offset, (_, props) in enumerate(items)]
    db.executemany(
        "INSERT INTO records (id, type, key, properties, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (int(record.id), type_, key, json.dumps(record.properties), now, now)
            for (key, _), record in zip(items, records, strict=True)
        ],
    )
    return records


def _patch(
    db: sqlite3.Connection, changes: Sequence[tuple[int, dict[str, str | None]]], now: str
) -> None:
    """Merge patches into the stored properties; a ``None`` value removes the property."""
    db.executemany(
        "UPDATE records SET properties = json_patch(properties, ?), updated_at = ? WHERE id = ?",
        [
            (json.dumps({**patch, "lastmodifieddate": now}), now, record_id)
            for record_id, patch in changes
        ],
    )


def _rekey(
    db: sqlite3.Connection,
    type_: str,
    key_property: str,
    changes: Sequence[tuple[int, dict[str, str | None]]],
) -> None:
    """Keep the key column in step with patched key properties, refusing duplicates."""
    rekeyed = [
        (_key(patch, key_property), record_id)
        for record_id, patch in changes
        if key_property in patch
    ]
    try:
        db.executemany("UPDATE records SET key = ? WHERE id = ?", rekeyed)
    except sqlite3.IntegrityError:
        for key, record_id in rekeyed:
            owner = db.execute(
                "SELECT id FROM records WHERE type = ? AND key = ? AND archived = 0 AND id != ?",
                (type_, key, record_id),
            ).fetchone()
            if owner is not None:
                raise KeyConflict(str(key), str(owner[0])) from None
        raise


def _key(props: dict[str, str] | dict[str, str | None], key_property: str | None) -> str | None:
    value = props.get(key_property) if key_property else None
    return value.lower() if value else None


def _record(row: Sequence[object]) -> StoredRecord:
    record_id, properties, created_at, updated_at = row
    return StoredRecord(
        str(record_id), json.loads(str(properties)), str(created_at), str(updated_at)
    )


def _written(
    record_id: int | str, props: dict[str, str] | dict[str, str | None], created_at: str, now: str
) -> StoredRecord:
    """What a write answers: the values it set (cleared ones as "") plus the CRM's own."""
    properties = {name: value or "" for name, value in props.items()}
    properties.update(createdate=created_at, hs_object_id=str(record_id), lastmodifieddate=now)
    return StoredRecord(str(record_id), properties, created_at, now)


def _where(
    key_property: str | None, filter_groups: Sequence[Sequence[Filter]]
) -> tuple[str, list[object]]:
    if not filter_groups:
        return "1", []
    params: list[object] = []
    groups = []
    for group in filter_groups:
        terms = []
        for condition in group:
            column, values = _column(condition, key_property)
            params.extend(values)
            terms.append(_condition(column, condition.operator, values))
        groups.append(" AND ".join(terms) or "1")
    return " OR ".join(f"({group})" for group in groups), params


def _column(condition: Filter, key_property: str | None) -> tuple[str, list[object]]:
    """The SQL expression for the filtered property and the parameters to compare it with.

    Matching is case-insensitive, like HubSpot's search on text properties.
    """
    values = [value.lower() for value in condition.values]
    if condition.property == "hs_object_id":
        return "id", [int(value) if value.isdigit() else -1 for value in values]
    if condition.property == key_property:
        return "key", list(values)
    if not _PROPERTY_NAME.match(condition.property):
        raise ValueError(f"not a property name: {condition.property!r}")
    return f"unicode_lower(json_extract(properties, '$.{condition.property}'))", list(values)


def _condition(column: str, operator: str, values: Sequence[object]) -> str:
    marks = _marks(values)
    return {
        "EQ": f"{column} = ?",
        "NEQ": f"({column} IS NULL OR {column} != ?)",
        "IN": f"{column} IN ({marks})",
        "NOT_IN": f"({column} IS NULL OR {column} NOT IN ({marks}))",
        "HAS_PROPERTY": f"{column} IS NOT NULL",
        "NOT_HAS_PROPERTY": f"{column} IS NULL",
    }[operator]
