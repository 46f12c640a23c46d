"""Pipedrive's records in the sandbox's SQLite file: one table of items, one of custom fields.

Ids count up per entity and are never reused, deleted items stay in the table (Pipedrive's trash)
with their deletion time. Search reads a snapshot of each item kept beside it: ``indexed`` is what
search sees, ``pending`` what it will see from ``pending_at`` on, which models the lag of
Pipedrive's search index (lists and reads by id use ``data`` and see every write at once).

Writes happen inside the caller's ``StoreConnection.write()`` transaction, so that a read, the
checks on it and the write are one atomic step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox.store import StoreConnection, marks

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipedrive_items (
    entity TEXT NOT NULL,
    id INTEGER NOT NULL,
    data TEXT NOT NULL,
    add_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    deleted_at REAL,
    indexed TEXT,
    pending TEXT,
    pending_at REAL,
    PRIMARY KEY (entity, id)
);
CREATE INDEX IF NOT EXISTS pipedrive_items_active
    ON pipedrive_items (entity, id) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS pipedrive_fields (
    entity TEXT NOT NULL,
    field_code TEXT NOT NULL,
    position INTEGER NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (entity, field_code)
);
"""
_COLUMNS = "id, data, add_time, update_time, deleted_at"


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    data: dict[str, Any]
    add_time: str
    update_time: str
    deleted_at: float | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """A list's order: an SQL expression over the row and its direction (ties go by id)."""

    column: str
    descending: bool = False

    def sql(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        if self.column == "id":
            return f"id {direction}"
        return f"{self.column} {direction}, id {direction}"


SearchDoc = dict[str, Any]
"""``{"terms": {field: [lower-cased values]}, "item": <search result item>}``."""


class PipedriveStore:
    """Pipedrive's queries on one store connection."""

    def __init__(self, conn: StoreConnection) -> None:
        self.conn = conn
        self._db = conn.db

    # Reads ------------------------------------------------------------------------------------

    def get(self, entity: str, item_id: int) -> Item | None:
        """The active item with this id, or ``None`` (deleted items are in the trash)."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM pipedrive_items "
            "WHERE entity = ? AND id = ? AND deleted_at IS NULL",
            (entity, item_id),
        ).fetchone()
        return None if row is None else _item(row)

    def get_many(self, entity: str, ids: Sequence[int]) -> dict[int, Item]:
        if not ids:
            return {}
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM pipedrive_items WHERE entity = ? AND deleted_at IS NULL "
            f"AND id IN ({marks(ids)})",
            (entity, *ids),
        )
        return {item.id: item for item in map(_item, rows)}

    def page(
        self,
        entity: str,
        conditions: Sequence[tuple[str, Sequence[object]]],
        order: Order,
        after: tuple[Any, int] | None,
        limit: int,
        *,
        deleted_since: float | None = None,
    ) -> list[Item]:
        """Up to ``limit`` items matching every condition, after a cursor, in order.

        Active items only, unless ``deleted_since`` adds the trash since that time.
        """
        where = ["entity = ?"]
        params: list[object] = [entity]
        if deleted_since is None:
            where.append("deleted_at IS NULL")
        else:
            where.append("(deleted_at IS NULL OR deleted_at >= ?)")
            params.append(deleted_since)
        for sql, values in conditions:
            where.append(sql)
            params.extend(values)
        if after is not None:
            value, last_id = after
            comparison = "<" if order.descending else ">"
            if order.column == "id":
                where.append(f"id {comparison} ?")
                params.append(last_id)
            else:
                where.append(
                    f"({order.column} {comparison} ? OR ({order.column} = ? AND id {comparison} ?))"
                )
                params.extend((value, value, last_id))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM pipedrive_items WHERE {' AND '.join(where)} "
            f"ORDER BY {order.sql()} LIMIT ?",
            (*params, limit),
        )
        return [_item(row) for row in rows]

    def order_value(self, entity: str, item_id: int, order: Order) -> Any:
        """The value of the order's expression for one item (the cursor's sort key)."""
        if order.column == "id":
            return item_id
        row = self._db.execute(
            f"SELECT {order.column} FROM pipedrive_items WHERE entity = ? AND id = ?",
            (entity, item_id),
        ).fetchone()
        return None if row is None else row[0]

    def search_candidates(
        self, entity: str, needle: str, now: float
    ) -> list[tuple[int, SearchDoc]]:
        """Active items whose search snapshot visible at ``now`` contains ``needle`` (a term as
        it appears inside a JSON string) somewhere; the caller matches precisely."""
        rows = self._db.execute(
            "SELECT id, doc FROM (SELECT id, CASE WHEN pending_at IS NOT NULL AND pending_at <= ? "
            "THEN pending ELSE indexed END AS doc FROM pipedrive_items "
            "WHERE entity = ? AND deleted_at IS NULL) "
            "WHERE doc IS NOT NULL AND instr(doc, ?) > 0 ORDER BY id",
            (now, entity, needle),
        )
        return [(row[0], json.loads(row[1])) for row in rows]

    def all_active(self, entity: str) -> list[Item]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM pipedrive_items WHERE entity = ? AND deleted_at IS NULL "
            "ORDER BY id",
            (entity,),
        )
        return [_item(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT entity, COUNT(*) FROM pipedrive_items WHERE deleted_at IS NULL GROUP BY entity"
        )
        return dict(rows.fetchall())

    def fields(self, entity: str) -> list[dict[str, Any]]:
        """The custom fields of an entity, in the order they were added."""
        rows = self._db.execute(
            "SELECT definition FROM pipedrive_fields WHERE entity = ? ORDER BY position",
            (entity,),
        )
        return [json.loads(row[0]) for row in rows]

    # Writes (inside the caller's write transaction) -------------------------------------------

    def next_id(self, entity: str) -> int:
        """The id the next item of the entity gets (inside the write transaction that adds it)."""
        row = self._db.execute(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM pipedrive_items WHERE entity = ?", (entity,)
        ).fetchone()
        return int(row[0])

    def insert(
        self,
        entity: str,
        item_id: int,
        data: dict[str, Any],
        now: str,
        doc: SearchDoc | None,
        *,
        wall: float,
        lag_s: float,
        add_time: str | None = None,
    ) -> Item:
        """A new item; search sees it ``lag_s`` seconds after wall-clock time ``wall``."""
        text = _json(doc)
        lagging = doc is not None and lag_s > 0
        self._db.execute(
            "INSERT INTO pipedrive_items (entity, id, data, add_time, update_time, indexed, "
            "pending, pending_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entity,
                item_id,
                json.dumps(data, ensure_ascii=False),
                add_time or now,
                now,
                None if lagging else text,
                text if lagging else None,
                wall + lag_s if lagging else None,
            ),
        )
        return Item(item_id, data, add_time or now, now)

    def replace(
        self,
        entity: str,
        item: Item,
        data: dict[str, Any],
        now: str,
        doc: SearchDoc | None,
        *,
        wall: float,
        lag_s: float,
    ) -> Item:
        """Store an item's new data; search sees the change ``lag_s`` seconds after ``wall``
        (until then, the snapshot it saw before)."""
        text = _json(doc)
        data_text = json.dumps(data, ensure_ascii=False)
        if doc is not None and lag_s > 0:
            self._db.execute(
                "UPDATE pipedrive_items SET data = ?, update_time = ?, "
                "indexed = CASE WHEN pending_at IS NOT NULL AND pending_at <= ? THEN pending "
                "ELSE indexed END, pending = ?, pending_at = ? WHERE entity = ? AND id = ?",
                (data_text, now, wall, text, wall + lag_s, entity, item.id),
            )
        else:
            self._db.execute(
                "UPDATE pipedrive_items SET data = ?, update_time = ?, indexed = ?, "
                "pending = NULL, pending_at = NULL WHERE entity = ? AND id = ?",
                (data_text, now, text, entity, item.id),
            )
        return Item(item.id, data, item.add_time, now)

    def delete(self, entity: str, item_id: int, now: str, wall: float) -> bool:
        """Move an active item to the trash; ``False`` if there was none."""
        cursor = self._db.execute(
            "UPDATE pipedrive_items SET deleted_at = ?, update_time = ? "
            "WHERE entity = ? AND id = ? AND deleted_at IS NULL",
            (wall, now, entity, item_id),
        )
        return cursor.rowcount > 0

    def add_field(self, entity: str, definition: dict[str, Any]) -> None:
        position = self._db.execute(
            "SELECT COALESCE(MAX(position), 0) + 1 FROM pipedrive_fields WHERE entity = ?",
            (entity,),
        ).fetchone()[0]
        self._db.execute(
            "INSERT INTO pipedrive_fields (entity, field_code, position, definition) "
            "VALUES (?, ?, ?, ?)",
            (entity, definition["field_code"], position, json.dumps(definition)),
        )

    def has_items(self, entity: str) -> bool:
        """Whether any item of the entity was ever created, deleted ones included."""
        row = self._db.execute(
            "SELECT 1 FROM pipedrive_items WHERE entity = ? LIMIT 1", (entity,)
        ).fetchone()
        return row is not None

    def clear(self) -> None:
        self._db.execute("DELETE FROM pipedrive_items")
        self._db.execute("DELETE FROM pipedrive_fields")


def _item(row: Sequence[Any]) -> Item:
    item_id, data, add_time, update_time, deleted_at = row
    return Item(int(item_id), json.loads(data), str(add_time), str(update_time), deleted_at)


def _json(doc: SearchDoc | None) -> str | None:
    return None if doc is None else json.dumps(doc, ensure_ascii=False)
