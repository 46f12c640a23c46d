"""Our own match index of one entity's Pipedrive items, by id and by the values they are found
by (``fields.keys_of``: ``email:ada@acme.com``, ``name:acme``).

Pipedrive accepts any number of persons with one email, so nothing on its side stops a second
create: the target must know what the account holds before it creates. It keeps what it has
read of the account here, and answers lookups (by key) and reads (by id) from it.

How it is filled is the dialect's business (``dialect.py``): a listing of the whole account (10
tokens per 500 items), exact searches (20 tokens per key, with a lag behind new records), reads
by id, and refreshes of what changed since. The index keeps the state those choices depend on:
how far the listing got, what it cost against what the other routes would have, which keys a
create left unclear, and when it was last brought up to date. Items are kept as Pipedrive
answered them, so an update can merge with the values it does not change.

Thread-safe; the lock is never held across a request. One listing or refresh at a time
(``Gate``): the others wait for it and then read its result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

Item = Mapping[str, Any]


class Gate:
    """One holder at a time, without blocking a thread: an operation that cannot enter pauses
    and asks again (the lock is never held across a request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False

    def try_begin(self) -> bool:
        with self._lock:
            if self._busy:
                return False
            self._busy = True
            return True

    def end(self) -> None:
        with self._lock:
            self._busy = False


def _order(item_id: str) -> tuple[int, str]:
    """Pipedrive's ids grow with time: the smaller id is the older item."""
    return (len(item_id), item_id)


class MatchIndex(Gate):
    def __init__(
        self,
        keys_of: Callable[[Item], list[str]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._keys_of = keys_of
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next use lists the account from the start."""
        with self._lock:
            self._items: dict[str, Item] = {}
            self._ids_by_key: dict[str, set[str]] = {}
            self._gone: set[str] = set()
            self._searched: set[str] = set()
            self._suspects: dict[str, float] = {}
            self.cursor: str | None = None
            self.started = False
            self.complete = False
            self.listing_spent = 0
            """Tokens the listing of the whole account has cost so far."""
            self.asked_for = 0
            """Tokens that searching and reading by id everything asked of the index (and not
            known when asked) would have cost: the listing goes on while it costs less."""
            self.synced_at: datetime | None = None
            """The CRM's time from which a refresh must list what changed."""
            self.built_at = 0.0
            self.refreshed_at = 0.0
            self.lag_covered = False
            """Whether items changed within the search index's lag have been listed."""

    # contents --------------------------------------------------------------------------------

    def put(self, items: Iterable[Item]) -> None:
        """Add or replace items as Pipedrive answered them."""
        with self._lock:
            for item in items:
                item_id = str(item["id"])
                self._unkey(item_id)
                if item.get("is_deleted") or item.get("active_flag") is False:
                    self._gone.add(item_id)
                    continue
                self._items[item_id] = item
                self._gone.discard(item_id)
                for key in self._keys_of(item):
                    self._ids_by_key.setdefault(key, set()).add(item_id)

    def drop(self, item_id: str) -> None:
        """The item is gone (deleted, or Pipedrive answered 404 for it)."""
        with self._lock:
            self._unkey(item_id)
            self._items.pop(item_id, None)
            self._gone.add(item_id)

    def _unkey(self, item_id: str) -> None:
        previous = self._items.get(item_id)
        if previous is None:
            return
        for key in self._keys_of(previous):
            holders = self._ids_by_key.get(key)
            if holders is not None:
                holders.discard(item_id)
                if not holders:
                    del self._ids_by_key[key]

    def item(self, item_id: str) -> Item | None:
        with self._lock:
            return self._items.get(item_id)

    def holders(self, key: str) -> list[Item]:
        """Every item the index knows under ``key``, oldest first."""
        with self._lock:
            ids = sorted(self._ids_by_key.get(key, ()), key=_order)
            return [self._items[i] for i in ids]

    def size(self) -> int:
        with self._lock:
            return len(self._items)

    # what is known ---------------------------------------------------------------------------

    def knows_key(self, key: str) -> bool:
        """Whether the index can say if the account holds ``key``: listed whole, found, or
        searched. (A partial listing goes by id, oldest first: a key found there is held, and
        its oldest holder is among the items listed.)"""
        with self._lock:
            return self.complete or key in self._ids_by_key or key in self._searched

    def knows_every(self, key: str) -> bool:
        """Whether the index holds every item under ``key`` (a partial listing may have missed
        newer ones): listed whole, or searched."""
        with self._lock:
            return self.complete or key in self._searched

    def knows_id(self, item_id: str) -> bool:
        with self._lock:
            return self.complete or item_id in self._items or item_id in self._gone

    def searched(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._searched.update(keys)

    def read_by_id(self, found: Iterable[Item], asked: Iterable[str]) -> None:
        """Items read by id; the ids asked for and not answered are gone."""
        found = list(found)
        self.put(found)
        answered = {str(item["id"]) for item in found}
        with self._lock:
            self._gone.update(i for i in asked if i not in answered)

    # staleness -------------------------------------------------------------------------------

    def suspect(self, key: str) -> None:
        """A create of ``key`` may or may not have happened: only a listing that starts after
        now may answer for it."""
        with self._lock:
            self._suspects[key] = self._clock()

    def has_suspects(self, keys: Iterable[str]) -> bool:
        with self._lock:
            return any(key in self._suspects for key in keys)

    def age(self) -> float:
        """Seconds since the index was last brought up to date."""
        with self._lock:
            return self._clock() - max(self.built_at, self.refreshed_at)

    def built_for(self) -> float:
        with self._lock:
            return self._clock() - self.built_at

    def began_listing(self, synced_at: datetime | None) -> None:
        with self._lock:
            if not self.started:
                self.started = True
                self.built_at = self._clock()
                self.synced_at = synced_at

    def listed(self, items: Iterable[Item], cursor: str | None, cost: int) -> None:
        """One page of the listing of the whole account; its last page settles the keys
        suspected before the listing began."""
        self.put(items)
        with self._lock:
            self.cursor = cursor
            self.complete = cursor is None
            self.listing_spent += cost
            if self.complete:
                began = self.built_at
                self._suspects = {k: t for k, t in self._suspects.items() if t >= began}

    def refreshed(self, started: float, synced_at: datetime | None) -> None:
        """A refresh that began at monotonic ``started`` listed what changed since: keys
        suspected before it began are settled."""
        with self._lock:
            self.refreshed_at = started
            if synced_at is not None:
                self.synced_at = synced_at
            self._suspects = {k: t for k, t in self._suspects.items() if t >= started}

    def asked(self, cost: int) -> None:
        with self._lock:
            self.asked_for += cost
