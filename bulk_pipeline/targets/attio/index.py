"""A match index of deals by name: Attio's deals have no unique attribute to find them by.

Built by listing every deal (reads are plentiful: 100 a second against 25 writes), answered in
our keys (``normalize_key`` of the name, the first-created deal where several share it), and
kept current with this target's own confirmed writes. It is listed again when older than
``MAX_AGE`` seconds, and at once after a write whose outcome is unknown (a create whose answer
was lost may have made a deal the index does not know).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

from bulk_pipeline.entities import normalize_key
from bulk_pipeline.targets.base import CrmRecord

MAX_AGE = 60.0


class NameIndex:
    """Deals by id as last listed, plus what this target wrote since; thread-safe."""

    def __init__(self, key_field: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._key_field = key_field
        self._clock = clock
        self._lock = threading.Lock()
        self._listed: dict[str, CrmRecord] | None = None
        self._listed_at = 0.0
        self._written: dict[str, tuple[float, CrmRecord | None]] = {}
        """Record id -> (when, the record as written, or None when deleted)."""
        self.listing = False
        """A listing is under way (others wait for it rather than list too)."""

    def fresh(self) -> bool:
        with self._lock:
            return self._listed is not None and self._clock() - self._listed_at < MAX_AGE

    def start_listing(self) -> float | None:
        """The time a listing starts at, or None when another one is under way."""
        with self._lock:
            if self.listing:
                return None
            self.listing = True
            return self._clock()

    def listed(self, records: Mapping[str, CrmRecord] | None, started: float) -> None:
        """A listing begun at ``started`` ended (``None``: it failed)."""
        with self._lock:
            self.listing = False
            if records is None:
                return
            self._listed = dict(records)
            self._listed_at = started
            self._written = {i: w for i, w in self._written.items() if w[0] >= started}

    def wrote(self, record_id: str, record: CrmRecord | None) -> None:
        with self._lock:
            self._written[record_id] = (self._clock(), record)

    def invalidate(self) -> None:
        with self._lock:
            self._listed = None

    def records(self) -> list[CrmRecord]:
        """Every deal as last listed, with this target's writes since."""
        with self._lock:
            merged = dict(self._listed or {})
            for record_id, (_, record) in self._written.items():
                if record is None:
                    merged.pop(record_id, None)
                else:
                    merged[record_id] = record
        return list(merged.values())

    def named(self, keys: set[str]) -> list[CrmRecord]:
        """Every deal whose name is one of ``keys`` (normalized)."""
        return [
            record
            for record in self.records()
            if normalize_key(record.fields.get(self._key_field) or "") in keys
        ]

    def by_key(self) -> dict[str, CrmRecord]:
        return first_created(self.records(), self._key_field)


def first_created(records: Iterable[CrmRecord], key_field: str) -> dict[str, CrmRecord]:
    """The first-created record of each value of ``key_field``, keyed by ``normalize_key``."""
    found: dict[str, CrmRecord] = {}
    for record in records:
        value = record.fields.get(key_field)
        if not value or not value.strip():
            continue
        key = normalize_key(value)
        previous = found.get(key)
        if previous is None or _earlier(record, previous):
            found[key] = record
    return found


def _earlier(a: CrmRecord, b: CrmRecord) -> bool:
    if a.created_at is not None and b.created_at is not None and a.created_at != b.created_at:
        return a.created_at < b.created_at
    return a.id < b.id
