"""Our notes as Attio notes (``/v2/notes``): each attached to one record, its parent.

A note's parent is its deal, else its contact, else its company (``Capabilities.one_link``: the
push gives the dialect the one link the note keeps). Our body is the note's plaintext content;
its title is the body's first line, after the note's date when it has one (``2025-01-10: Met
at the fair``), which is how the date is kept: a backdated ``created_at`` would make a note
whose create answer was lost look older than the create, and be created again.

Attio's notes have no update: a note cannot change its parent or its text once written. A
changed note fails its record, naming why. Notes cannot be queried by content: they are found
again (after a create whose answer was lost) by listing them, page after page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bulk_pipeline.entities import ENTITY_SPECS, Entity, normalize_key
from bulk_pipeline.targets.attio.attributes import OBJECTS
from bulk_pipeline.targets.attio.calls import WRITE, Calls
from bulk_pipeline.targets.attio.values import created_at
from bulk_pipeline.targets.base import (
    BatchResult,
    CreateResult,
    CrmRecord,
    Failed,
    FailureKind,
    Item,
    Record,
    Written,
)
from bulk_pipeline.targets.http.exchange import ApiRequest, Operation, Verdict

PAGE = 50
"""Attio's most notes per listing page."""
TITLE_LENGTH = 80
PARENTS: tuple[str, ...] = ("deal", "contact", "company")
"""The references a note is attached by, in order of preference: the most particular first."""
LINKS: dict[str, Entity] = {
    reference.link_field: reference.entity for reference in ENTITY_SPECS[Entity.NOTES].references
}
FIELDS = frozenset({"body", "date", *LINKS})
"""Our note fields an Attio note has a place for."""
_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2}): ")


def title_of(record: Record) -> str:
    """The note's title: its date (when given) and the first line of its body, cut short."""
    first = (record.get("body") or "").strip().split("\n", 1)[0].strip()
    if len(first) > TITLE_LENGTH:
        first = first[: TITLE_LENGTH - 1].rstrip() + "…"
    date = (record.get("date") or "").strip()
    return f"{date}: {first}" if date else first


def parent_of(record: Record) -> tuple[Entity, str] | None:
    """The record a note is attached to: its first link by preference."""
    by_name = {
        reference.name: reference.link_field for reference in ENTITY_SPECS[Entity.NOTES].references
    }
    for name in PARENTS:
        value = (record.get(by_name[name]) or "").strip()
        if value:
            return LINKS[by_name[name]], value
    return None


def read_note(data: Mapping[str, Any], entities: Mapping[str, Entity]) -> CrmRecord:
    """A note in our field names: the parent's link field holds the parent, the others none."""
    parent = entities.get(str(data.get("parent_object")))
    dated = _DATED.match(str(data.get("title") or ""))
    fields: dict[str, str | None] = {
        "body": str(data.get("content_plaintext") or "").strip() or None,
        "date": dated[1] if dated else None,
    }
    for name, entity in LINKS.items():
        fields[name] = str(data["parent_record_id"]) if entity is parent else None
    return CrmRecord(
        id=str(data["id"]["note_id"]), fields=fields, created_at=created_at(data.get("created_at"))
    )


class NoteCalls:
    """Notes as our notes: reads, creates and deletes, one note per call."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def read(self, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        """Each note by id; those gone are absent."""
        entities = yield from self.calls.entities()
        found: dict[str, CrmRecord] = {}
        for note_id in ids:
            outcome = yield from self.calls.send(ApiRequest("GET", f"/v2/notes/{note_id}"))
            if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
                continue
            record = read_note(self.calls.body(outcome)["data"], entities)
            found[record.id] = record
        return found

    def search(self, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        """Every note whose field ``by`` (its body) is one of ``values``, from a listing of every
        note, page after page until one comes back empty."""
        entities = yield from self.calls.entities()
        wanted = {normalize_key(v) for v in values if v.strip()}
        found: list[CrmRecord] = []
        offset = 0
        while True:
            params = {"limit": str(PAGE), "offset": str(offset)}
            page = yield from self.calls.get("/v2/notes", params)
            if not page:
                return found
            offset += len(page)
            for data in page:
                record = read_note(data, entities)
                if normalize_key(record.fields.get(by) or "") in wanted:
                    found.append(record)

    def create(self, items: Sequence[Item]) -> Operation[CreateResult]:
        """POST each note on its parent; a lost answer is ``unconfirmed`` (the runner finds it
        by its body), never resent blindly."""
        entities = yield from self.calls.entities()
        result = CreateResult()
        for item in items:
            parent = parent_of(item.record)
            if parent is None:
                result.failed.append(
                    Failed(
                        item.index,
                        FailureKind.INVALID,
                        "Attio attaches every note to a record: give the note's contact, company "
                        "or deal",
                    )
                )
                continue
            body = {
                "data": {
                    "parent_object": OBJECTS[parent[0]],
                    "parent_record_id": parent[1],
                    "title": title_of(item.record),
                    "format": "plaintext",
                    "content": (item.record.get("body") or "").strip(),
                }
            }
            request = ApiRequest("POST", "/v2/notes", json=body, kind=WRITE, idempotent=False)
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.AMBIGUOUS:
                result.unconfirmed.append(item)
            elif outcome.verdict is Verdict.OK:
                record = read_note(self.calls.body(outcome)["data"], entities)
                result.successful.append(Written(item.index, record.id, created=True))
            else:
                result.failed.append(self.calls.failed(item.index, outcome))
        return result

    def update(self, items: Sequence[Item], *, clear_blanks: bool) -> Operation[BatchResult]:
        """Attio has no update of notes: each fails, naming what would have changed."""
        yield from ()
        return BatchResult(
            failed=[
                Failed(
                    item.index,
                    FailureKind.INVALID,
                    f"{', '.join(item.record)}: Attio cannot change a note once it is written "
                    "(its text and parent stay); delete the note in Attio and import again",
                )
                for item in items
            ]
        )

    def remove(self, items: Sequence[Item]) -> Operation[BatchResult]:
        """Delete for good; a note already gone counts as removed."""
        result = BatchResult()
        for item in items:
            request = ApiRequest("DELETE", f"/v2/notes/{item.id}", kind=WRITE)
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.OK or outcome.status == 404:
                result.successful.append(Written(item.index, item.id or "", created=False))
            else:
                result.failed.append(self.calls.failed(item.index, outcome))
        return result
