"""HubSpot's associations in the sandbox's SQLite file: one row per record, direction and type.

Each association is kept in both directions (A to B with its type, B to A with the inverse), so
that a read from either side is one indexed lookup. The rows of an archived record stay, as
HubSpot keeps an archived record's associations for its restore; reads join on active records
and leave them out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bulk_pipeline.sandbox.hubspot.associations import (
    TYPES,
    AssociationType,
    holder_side,
    unlabeled,
)
from bulk_pipeline.sandbox.hubspot.objects import ObjectType
from bulk_pipeline.sandbox.store import StoreConnection
from bulk_pipeline.sandbox.store import marks as _marks

SCHEMA = """
CREATE TABLE IF NOT EXISTS associations (
    from_id INTEGER NOT NULL,
    to_type TEXT NOT NULL,
    to_id INTEGER NOT NULL,
    type_id INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_type, to_id, type_id)
) WITHOUT ROWID;
"""

Associated = tuple[int, list[AssociationType]]
"""A record associated with the one read, and the types of the association, in id order."""


@dataclass(frozen=True)
class Link:
    """One association to make: the record ids as the client gave them, and the type."""

    from_id: str
    to_id: str
    kind: AssociationType


class UnknownRecords(Exception):
    """Links name ids that are not active records of the object type their association needs."""

    def __init__(self, missing: list[tuple[ObjectType, str]]) -> None:
        super().__init__(", ".join(f"{obj.name} {value}" for obj, value in missing))
        self.missing = missing


def link(db: sqlite3.Connection, links: Sequence[Link]) -> None:
    """Write links inside the caller's write transaction, after checking that every id names an
    active record of the right type; raises ``UnknownRecords`` (and writes nothing) if not."""
    missing = _missing(db, links)
    if missing:
        raise UnknownRecords(missing)
    for item in links:
        _write(db, int(item.from_id), int(item.to_id), item.kind)


class HubSpotAssociations:
    """HubSpot's association queries on one store connection."""

    def __init__(self, conn: StoreConnection) -> None:
        self._conn = conn
        self._db = conn.db

    # Reads ------------------------------------------------------------------------------------

    def page(
        self, from_id: int, to_obj: ObjectType, *, after: int, limit: int
    ) -> tuple[list[Associated], bool]:
        """Up to ``limit`` active records of a type associated with one record, after the record
        id ``after``, and whether more follow."""
        rows = self._db.execute(
            "SELECT a.to_id, a.type_id FROM associations AS a "
            "WHERE a.from_id = ? AND a.to_type = ? AND a.to_id IN ("
            "  SELECT DISTINCT b.to_id FROM associations AS b "
            "  JOIN records AS r ON r.id = b.to_id AND r.archived = 0 "
            "  WHERE b.from_id = ? AND b.to_type = ? AND b.to_id > ? ORDER BY b.to_id LIMIT ?"
            ") ORDER BY a.to_id, a.type_id",
            (from_id, to_obj.name, from_id, to_obj.name, after, limit + 1),
        ).fetchall()
        grouped = _grouped(rows)
        return grouped[:limit], len(grouped) > limit

    def of_records(
        self, from_ids: Sequence[int], to_obj: ObjectType
    ) -> dict[int, list[Associated]]:
        """Every active record of a type associated with each of some records."""
        if not from_ids:
            return {}
        rows = self._db.execute(
            "SELECT a.from_id, a.to_id, a.type_id FROM associations AS a "
            "JOIN records AS r ON r.id = a.to_id AND r.archived = 0 "
            f"WHERE a.to_type = ? AND a.from_id IN ({_marks(from_ids)}) "
            "ORDER BY a.from_id, a.to_id, a.type_id",
            (to_obj.name, *from_ids),
        ).fetchall()
        by_record: dict[int, list[tuple[int, int]]] = {}
        for from_id, to_id, type_id in rows:
            by_record.setdefault(from_id, []).append((to_id, type_id))
        return {from_id: _grouped(pairs) for from_id, pairs in by_record.items()}

    # Writes -----------------------------------------------------------------------------------

    def create(self, links: Sequence[Link]) -> None:
        """Make links between existing records; raises ``UnknownRecords`` (nothing written)."""
        with self._conn.write() as db:
            link(db, links)

    def remove_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Remove every association between each pair of records, in both directions."""
        with self._conn.write() as db:
            for first, second in pairs:
                _unlink(db, first, second)

    def remove_types(self, links: Iterable[tuple[int, int, AssociationType]]) -> None:
        """Remove associations of given types; removing the unlabeled type removes them all."""
        with self._conn.write() as db:
            for from_id, to_id, kind in links:
                if kind.label is None:
                    _unlink(db, from_id, to_id)
                else:
                    _delete_row(db, from_id, to_id, kind)

    def reset(self) -> None:
        with self._conn.write() as db:
            db.execute("DELETE FROM associations")


def _missing(db: sqlite3.Connection, links: Sequence[Link]) -> list[tuple[ObjectType, str]]:
    """The (object type, id) pairs the links need that are no active record of that type."""
    wanted = [
        (obj, value)
        for item in links
        for obj, value in ((item.kind.from_obj, item.from_id), (item.kind.to_obj, item.to_id))
    ]
    ids = sorted({int(value) for _, value in wanted if value.isdigit()})
    types = (
        dict(
            db.execute(
                f"SELECT id, type FROM records WHERE archived = 0 AND id IN ({_marks(ids)})", ids
            ).fetchall()
        )
        if ids
        else {}
    )
    missing: list[tuple[ObjectType, str]] = []
    for obj, value in wanted:
        found = types.get(int(value)) if value.isdigit() else None
        if found != obj.name and (obj, value) not in missing:
            missing.append((obj, value))
    return missing


def _write(db: sqlite3.Connection, from_id: int, to_id: int, kind: AssociationType) -> None:
    """One association in both directions, with the unlabeled type a labelled one implies; an
    exclusive (primary) type moves from the record's previous partner to the new one."""
    if holder_side(kind) is not kind:
        from_id, to_id, kind = to_id, from_id, TYPES[kind.inverse]
    for each in dict.fromkeys((kind, unlabeled(kind))):
        if each.exclusive:
            _release(db, from_id, to_id, each)
        db.execute(
            "INSERT OR IGNORE INTO associations (from_id, to_type, to_id, type_id) "
            "VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
            (
                from_id,
                each.to_obj.name,
                to_id,
                each.id,
                to_id,
                each.from_obj.name,
                from_id,
                each.inverse,
            ),
        )


def _release(db: sqlite3.Connection, holder: int, keep: int, kind: AssociationType) -> None:
    """Drop the holder's other associations of an exclusive type (they stay unlabeled)."""
    others = db.execute(
        "SELECT to_id FROM associations WHERE from_id = ? AND to_type = ? AND type_id = ? "
        "AND to_id != ?",
        (holder, kind.to_obj.name, kind.id, keep),
    ).fetchall()
    for (other,) in others:
        _delete_row(db, holder, other, kind)


def _delete_row(db: sqlite3.Connection, from_id: int, to_id: int, kind: AssociationType) -> None:
    db.execute(
        "DELETE FROM associations WHERE (from_id = ? AND to_type = ? AND to_id = ? AND "
        "type_id = ?) OR (from_id = ? AND to_type = ? AND to_id = ? AND type_id = ?)",
        (
            from_id,
            kind.to_obj.name,
            to_id,
            kind.id,
            to_id,
            kind.from_obj.name,
            from_id,
            kind.inverse,
        ),
    )


def _unlink(db: sqlite3.Connection, first: int, second: int) -> None:
    db.execute(
        "DELETE FROM associations WHERE (from_id = ? AND to_id = ?) OR (from_id = ? AND to_id = ?)",
        (first, second, second, first),
    )


def _grouped(rows: Iterable[tuple[int, int]]) -> list[Associated]:
    """``(to_id, type_id)`` rows in to_id order, gathered per associated record."""
    grouped: dict[int, list[AssociationType]] = {}
    for to_id, type_id in rows:
        grouped.setdefault(to_id, []).append(TYPES[type_id])
    return list(grouped.items())
