"""Attio's workspace in the sandbox's SQLite file: attributes and their choices, records (values
by attribute id, as JSON), the index of unique values, lists, list entries, notes and tasks.

Records are deleted for good, as in Attio. Writes happen inside the caller's
``StoreConnection.write()`` transaction, so that a read, the checks on it and the write are one
atomic step (two clients asserting the same email make one person).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox.store import StoreConnection, marks

SCHEMA = """
CREATE TABLE IF NOT EXISTS attio_attributes (
    attribute_id TEXT PRIMARY KEY,
    parent_id TEXT NOT NULL,
    api_slug TEXT NOT NULL,
    position INTEGER NOT NULL,
    definition TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attio_attributes_parent ON attio_attributes (parent_id, position);
CREATE TABLE IF NOT EXISTS attio_choices (
    attribute_id TEXT NOT NULL,
    choice_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (attribute_id, choice_id)
);
CREATE TABLE IF NOT EXISTS attio_records (
    record_id TEXT PRIMARY KEY,
    object TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    vals TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attio_records_object ON attio_records (object, seq);
CREATE TABLE IF NOT EXISTS attio_unique (
    attribute_id TEXT NOT NULL,
    value_key TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (attribute_id, value_key)
);
CREATE INDEX IF NOT EXISTS attio_unique_record ON attio_unique (record_id);
CREATE TABLE IF NOT EXISTS attio_lists (
    list_id TEXT PRIMARY KEY,
    api_slug TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attio_entries (
    entry_id TEXT PRIMARY KEY,
    list_id TEXT NOT NULL,
    parent_record_id TEXT NOT NULL,
    parent_object TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    vals TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attio_entries_list ON attio_entries (list_id, seq);
CREATE INDEX IF NOT EXISTS attio_entries_parent ON attio_entries (parent_record_id);
CREATE TABLE IF NOT EXISTS attio_notes (
    note_id TEXT PRIMARY KEY,
    parent_record_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attio_notes_parent ON attio_notes (parent_record_id, seq);
CREATE TABLE IF NOT EXISTS attio_tasks (
    task_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL
)
"""

Values = dict[str, list[dict[str, Any]]]
"""Stored values by attribute id, each list in the order the API shows it."""


@dataclass(frozen=True, slots=True)
class Row:
    """A record or a list entry: its id, its parent (object slug or list id), when it was
    created, and its values."""

    id: str
    parent: str
    created_at: str
    values: Values
    parent_record_id: str = ""
    parent_object: str = ""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class AttioStore:
    """Attio's queries on one store connection."""

    def __init__(self, conn: StoreConnection) -> None:
        self.conn = conn
        self._db = conn.db

    # Attributes and their choices -------------------------------------------------------------

    def attributes(self, parent_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT definition FROM attio_attributes WHERE parent_id = ? ORDER BY position",
            (parent_id,),
        )
        return [json.loads(row[0]) for row in rows]

    def add_attribute(self, definition: dict[str, Any]) -> None:
        parent_id = definition["id"]["object_id"]
        position = self._next("attio_attributes", "position", "parent_id = ?", (parent_id,))
        self._db.execute(
            "INSERT INTO attio_attributes "
            "(attribute_id, parent_id, api_slug, position, definition) VALUES (?, ?, ?, ?, ?)",
            (
                definition["id"]["attribute_id"],
                parent_id,
                definition["api_slug"],
                position,
                _dumps(definition),
            ),
        )

    def replace_attribute(self, definition: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE attio_attributes SET api_slug = ?, definition = ? WHERE attribute_id = ?",
            (definition["api_slug"], _dumps(definition), definition["id"]["attribute_id"]),
        )

    def choices(self, attribute_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT data FROM attio_choices WHERE attribute_id = ? ORDER BY position",
            (attribute_id,),
        )
        return [json.loads(row[0]) for row in rows]

    def add_choice(self, attribute_id: str, choice_id: str, data: dict[str, Any]) -> None:
        position = self._next("attio_choices", "position", "attribute_id = ?", (attribute_id,))
        self._db.execute(
            "INSERT INTO attio_choices (attribute_id, choice_id, position, data) "
            "VALUES (?, ?, ?, ?)",
            (attribute_id, choice_id, position, _dumps(data)),
        )

    # Records ----------------------------------------------------------------------------------

    def record(self, object_slug: str, record_id: str) -> Row | None:
        row = self._db.execute(
            "SELECT record_id, object, created_at, vals FROM attio_records "
            "WHERE record_id = ? AND object = ?",
            (record_id, object_slug),
        ).fetchone()
        return None if row is None else Row(row[0], row[1], row[2], json.loads(row[3]))

    def records(self, object_slug: str, ids: Sequence[str] | None = None) -> Iterator[Row]:
        """Records of an object in the order they were created (only ``ids`` when given)."""
        where, params = "object = ?", [object_slug]
        if ids is not None:
            where += f" AND record_id IN ({marks(ids)})"
            params.extend(ids)
        rows = self._db.execute(
            f"SELECT record_id, object, created_at, vals FROM attio_records WHERE {where} "
            "ORDER BY seq",
            params,
        )
        for row in rows:
            yield Row(row[0], row[1], row[2], json.loads(row[3]))

    def insert_record(
        self, object_slug: str, record_id: str, created_at: str, values: Values
    ) -> None:
        seq = self._next("attio_records", "seq")
        self._db.execute(
            "INSERT INTO attio_records (record_id, object, seq, created_at, vals) "
            "VALUES (?, ?, ?, ?, ?)",
            (record_id, object_slug, seq, created_at, _dumps(values)),
        )

    def replace_record(self, record_id: str, values: Values) -> None:
        self._db.execute(
            "UPDATE attio_records SET vals = ? WHERE record_id = ?", (_dumps(values), record_id)
        )

    def delete_record(self, object_slug: str, record_id: str) -> bool:
        """Delete a record for good, with its unique values, list entries and notes."""
        cursor = self._db.execute(
            "DELETE FROM attio_records WHERE record_id = ? AND object = ?", (record_id, object_slug)
        )
        if cursor.rowcount == 0:
            return False
        for table in ("attio_unique", "attio_entries", "attio_notes"):
            column = "record_id" if table == "attio_unique" else "parent_record_id"
            self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (record_id,))
        return True

    def holders(self, attribute_id: str, keys: Iterable[str]) -> dict[str, str]:
        """Which record holds each of these unique values (value key -> record id)."""
        wanted = list(keys)
        if not wanted:
            return {}
        rows = self._db.execute(
            f"SELECT value_key, record_id FROM attio_unique WHERE attribute_id = ? "
            f"AND value_key IN ({marks(wanted)})",
            (attribute_id, *wanted),
        )
        return dict(rows.fetchall())

    def set_unique(self, attribute_id: str, record_id: str, keys: Iterable[str]) -> None:
        self._db.execute(
            "DELETE FROM attio_unique WHERE attribute_id = ? AND record_id = ?",
            (attribute_id, record_id),
        )
        self._db.executemany(
            "INSERT INTO attio_unique (attribute_id, value_key, record_id) VALUES (?, ?, ?)",
            [(attribute_id, key, record_id) for key in dict.fromkeys(keys)],
        )

    def counts(self) -> dict[str, int]:
        counts = dict(
            self._db.execute("SELECT object, COUNT(*) FROM attio_records GROUP BY object")
        )
        for table, name in (
            ("attio_lists", "lists"),
            ("attio_entries", "entries"),
            ("attio_notes", "notes"),
            ("attio_tasks", "tasks"),
        ):
            count = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            if count:
                counts[name] = count
        return counts

    # Lists and entries ------------------------------------------------------------------------

    def lists(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT data FROM attio_lists ORDER BY seq")
        return [json.loads(row[0]) for row in rows]

    def add_list(self, data: dict[str, Any]) -> None:
        seq = self._next("attio_lists", "seq")
        self._db.execute(
            "INSERT INTO attio_lists (list_id, api_slug, seq, data) VALUES (?, ?, ?, ?)",
            (data["id"]["list_id"], data["api_slug"], seq, _dumps(data)),
        )

    def entries(self, list_id: str, parent_record_id: str | None = None) -> Iterator[Row]:
        where, params = "list_id = ?", [list_id]
        if parent_record_id is not None:
            where += " AND parent_record_id = ?"
            params.append(parent_record_id)
        rows = self._db.execute(
            "SELECT entry_id, list_id, created_at, vals, parent_record_id, parent_object "
            f"FROM attio_entries WHERE {where} ORDER BY seq",
            params,
        )
        for row in rows:
            yield Row(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def entry(self, list_id: str, entry_id: str) -> Row | None:
        return next(
            (row for row in self.entries(list_id) if row.id == entry_id),
            None,
        )

    def entries_of(self, record_id: str) -> list[tuple[str, str, str]]:
        """``(list id, entry id, created at)`` of every entry whose parent is the record."""
        rows = self._db.execute(
            "SELECT list_id, entry_id, created_at FROM attio_entries WHERE parent_record_id = ? "
            "ORDER BY seq",
            (record_id,),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def insert_entry(self, row: Row) -> None:
        seq = self._next("attio_entries", "seq")
        self._db.execute(
            "INSERT INTO attio_entries (entry_id, list_id, parent_record_id, parent_object, seq, "
            "created_at, vals) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.parent,
                row.parent_record_id,
                row.parent_object,
                seq,
                row.created_at,
                _dumps(row.values),
            ),
        )

    def replace_entry(self, entry_id: str, values: Values) -> None:
        self._db.execute(
            "UPDATE attio_entries SET vals = ? WHERE entry_id = ?", (_dumps(values), entry_id)
        )

    def delete_entry(self, list_id: str, entry_id: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM attio_entries WHERE list_id = ? AND entry_id = ?", (list_id, entry_id)
        )
        return cursor.rowcount > 0

    # Notes ------------------------------------------------------------------------------------

    def notes(self, parent_record_id: str | None = None) -> list[dict[str, Any]]:
        where, params = (
            ("parent_record_id = ?", [parent_record_id]) if parent_record_id else ("1", [])
        )
        rows = self._db.execute(f"SELECT data FROM attio_notes WHERE {where} ORDER BY seq", params)
        return [json.loads(row[0]) for row in rows]

    def note(self, note_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT data FROM attio_notes WHERE note_id = ?", (note_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def insert_note(self, data: dict[str, Any]) -> None:
        seq = self._next("attio_notes", "seq")
        self._db.execute(
            "INSERT INTO attio_notes (note_id, parent_record_id, seq, data) VALUES (?, ?, ?, ?)",
            (data["id"]["note_id"], data["parent_record_id"], seq, _dumps(data)),
        )

    def delete_note(self, note_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM attio_notes WHERE note_id = ?", (note_id,))
        return cursor.rowcount > 0

    # Tasks ------------------------------------------------------------------------------------

    def tasks(self) -> list[dict[str, Any]]:
        """Every task, oldest first."""
        rows = self._db.execute("SELECT data FROM attio_tasks ORDER BY seq")
        return [json.loads(row[0]) for row in rows]

    def task(self, task_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT data FROM attio_tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def insert_task(self, data: dict[str, Any]) -> None:
        seq = self._next("attio_tasks", "seq")
        self._db.execute(
            "INSERT INTO attio_tasks (task_id, seq, data) VALUES (?, ?, ?)",
            (data["id"]["task_id"], seq, _dumps(data)),
        )

    def replace_task(self, data: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE attio_tasks SET data = ? WHERE task_id = ?",
            (_dumps(data), data["id"]["task_id"]),
        )

    def delete_task(self, task_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM attio_tasks WHERE task_id = ?", (task_id,))
        return cursor.rowcount > 0

    # Housekeeping -----------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM attio_attributes LIMIT 1").fetchone() is None

    def clear(self) -> None:
        for table in (
            "attio_attributes",
            "attio_choices",
            "attio_records",
            "attio_unique",
            "attio_lists",
            "attio_entries",
            "attio_notes",
            "attio_tasks",
        ):
            self._db.execute(f"DELETE FROM {table}")

    def _next(
        self, table: str, column: str, where: str = "1", params: Sequence[object] = ()
    ) -> int:
        row = self._db.execute(
            f"SELECT COALESCE(MAX({column}), 0) + 1 FROM {table} WHERE {where}", params
        ).fetchone()
        return int(row[0])
