"""Our activities as Attio tasks (``/v2/tasks``), linked to the records they are about.

A task is plaintext content (at most 2000 characters), a deadline, whether it is done, the
records it is linked to and its assignees. Our subject is the content's first line, and a body
follows it after a blank line; the due date is the deadline (midnight UTC); the contact,
company and deal are linked records. Type and priority have no place in a task.

Attio's ``PATCH`` changes the deadline, completion and linked records, never the content: a
changed subject or body fails its record, naming why. The linked records a ``PATCH`` gives
replace the task's, so the task is read first and ours are added in front of the others (a
link someone else made is kept); a rollback takes the one the import added out again.

Tasks cannot be queried by their content: they are found again (after a create whose answer
was lost) by listing them, page after page.
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

CONTENT_LIMIT = 2000
PAGE = 500
LINKS: dict[str, Entity] = {
    reference.link_field: reference.entity
    for reference in ENTITY_SPECS[Entity.ACTIVITIES].references
}
"""Link field -> the entity of the records it links a task to."""
FIELDS = frozenset({"subject", "body", "due_date", "done", *LINKS})
"""Our activity fields a task has a place for."""
TEXT_FIELDS = ("subject", "body")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2})T00:00:00(?:\.0+)?(?:Z|\+00:00)$")
_TRUE = frozenset({"true", "yes", "y", "1"})


class TaskProblem(ValueError):
    """A value of ours a task cannot take; the message names the field."""


def content_of(record: Record) -> str:
    """The task's text: the subject, then the body after a blank line."""
    subject = (record.get("subject") or "").strip()
    body = (record.get("body") or "").strip()
    content = f"{subject}\n\n{body}" if body else subject
    if len(content) > CONTENT_LIMIT:
        raise TaskProblem(
            f"subject, body: {len(content)} characters; Attio's tasks hold at most "
            f"{CONTENT_LIMIT}. Shorten the body"
        )
    return content


def deadline_of(text: str | None) -> str | None:
    """A due date as Attio's deadline: the date at midnight UTC; a timestamp as given."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    return f"{text}T00:00:00Z" if _DATE.match(text) else text


def _completed(text: str | None) -> bool:
    return (text or "").strip().casefold() in _TRUE


def _link(entity: Entity, record_id: str) -> dict[str, str]:
    return {"target_object": OBJECTS[entity], "target_record_id": record_id}


def create_body(record: Record) -> dict[str, Any]:
    """A new task: every property the spec requires (nobody assigned)."""
    return {
        "data": {
            "content": content_of(record),
            "format": "plaintext",
            "deadline_at": deadline_of(record.get("due_date")),
            "is_completed": _completed(record.get("done")),
            "linked_records": [
                _link(entity, str(record[name]).strip())
                for name, entity in LINKS.items()
                if (record.get(name) or "").strip()
            ],
            "assignees": [],
        }
    }


Linked = tuple[Entity | None, str, str]
"""A record a task is linked to: our entity of its object (None: an object of no entity of
ours), the object as Attio answered it (its id), the record's id."""


def linked_records(data: Mapping[str, Any], entities: Mapping[str, Entity]) -> list[Linked]:
    """The records a task is linked to, in Attio's order."""
    return [
        (
            entities.get(str(link["target_object_id"])),
            str(link["target_object_id"]),
            str(link["target_record_id"]),
        )
        for link in data.get("linked_records") or []
    ]


def linked_after_update(
    current: Sequence[Linked], record: Record, *, rollback: bool
) -> list[dict[str, str]]:
    """The linked records a ``PATCH`` sends (it replaces the task's): ours in front of the
    links to records of their object, every other link kept; in a rollback, the link the import
    put in front taken out, and the one that was in front before put back."""
    links = [(entity, record_id) for entity, _, record_id in current]
    objects = [target if entity is None else OBJECTS[entity] for entity, target, _ in current]
    for name, entity in LINKS.items():
        if name not in record:
            continue
        wanted = (record.get(name) or "").strip()
        if rollback:
            first = next((i for i, link in enumerate(links) if link[0] is entity), None)
            if first is not None:
                del links[first], objects[first]
        if wanted and (entity, wanted) not in links:
            at = next((i for i, link in enumerate(links) if link[0] is entity), len(links))
            links.insert(at, (entity, wanted))
            objects.insert(at, OBJECTS[entity])
    return [
        {"target_object": target, "target_record_id": record_id}
        for target, (_, record_id) in zip(objects, links, strict=True)
    ]


def read_task(data: Mapping[str, Any], entities: Mapping[str, Entity]) -> CrmRecord:
    """A task in our field names; a link field holds the first record of its object, the
    others are in ``also``."""
    content = str(data.get("content_plaintext") or "")
    subject, _, body = content.partition("\n")
    deadline = data.get("deadline_at")
    midnight = _MIDNIGHT.match(deadline) if isinstance(deadline, str) else None
    fields: dict[str, str | None] = {
        "subject": subject.strip() or None,
        "body": body.strip() or None,
        "due_date": midnight[1] if midnight else deadline,
        "done": "true" if data.get("is_completed") else "false",
    }
    also: dict[str, tuple[str, ...]] = {}
    linked = linked_records(data, entities)
    for name, entity in LINKS.items():
        ids = [record_id for of, _, record_id in linked if of is entity]
        fields[name] = ids[0] if ids else None
        if len(ids) > 1:
            also[name] = tuple(ids[1:])
    return CrmRecord(
        id=str(data["id"]["task_id"]),
        fields=fields,
        created_at=created_at(data.get("created_at")),
        also=also,
    )


class TaskCalls:
    """Tasks as our activities: reads, creates, updates and deletes, one task per call."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def _path(self, task_id: str = "") -> str:
        return f"/v2/tasks/{task_id}" if task_id else "/v2/tasks"

    def read(self, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        """Each task by id (Attio has no query of tasks by id); those gone are absent."""
        entities = yield from self.calls.entities()
        found: dict[str, CrmRecord] = {}
        for task_id in ids:
            outcome = yield from self.calls.send(ApiRequest("GET", self._path(task_id)))
            if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
                continue
            record = read_task(self.calls.body(outcome)["data"], entities)
            found[record.id] = record
        return found

    def search(self, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        """Every task whose field ``by`` (its subject) is one of ``values``, from a listing of
        every task, page after page until one comes back empty (whatever page size the server
        allows)."""
        entities = yield from self.calls.entities()
        wanted = {normalize_key(v) for v in values if v.strip()}
        found: list[CrmRecord] = []
        offset = 0
        while True:
            params = {"limit": str(PAGE), "offset": str(offset), "sort": "created_at:asc"}
            page = yield from self.calls.get(self._path(), params)
            if not page:
                return found
            offset += len(page)
            for data in page:
                record = read_task(data, entities)
                if normalize_key(record.fields.get(by) or "") in wanted:
                    found.append(record)

    def create(self, items: Sequence[Item]) -> Operation[CreateResult]:
        """POST each task; a lost answer is ``unconfirmed`` (the runner finds it by its
        subject), never resent blindly."""
        entities = yield from self.calls.entities()
        result = CreateResult()
        for item in items:
            try:
                body = create_body(item.record)
            except TaskProblem as problem:
                result.failed.append(Failed(item.index, FailureKind.INVALID, str(problem)))
                continue
            request = ApiRequest("POST", self._path(), json=body, kind=WRITE, idempotent=False)
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.AMBIGUOUS:
                result.unconfirmed.append(item)
            elif outcome.verdict is Verdict.OK:
                record = read_task(self.calls.body(outcome)["data"], entities)
                result.successful.append(Written(item.index, record.id, created=True))
            else:
                result.failed.append(self.calls.failed(item.index, outcome))
        return result

    def update(self, items: Sequence[Item], *, clear_blanks: bool) -> Operation[BatchResult]:
        """PATCH the deadline, completion and links; links are merged with the task's own
        (read first). A changed text fails: Attio cannot change it."""
        entities = yield from self.calls.entities()
        result = BatchResult()
        for item in items:
            text = [name for name in TEXT_FIELDS if name in item.record]
            if text:
                result.failed.append(
                    Failed(
                        item.index,
                        FailureKind.INVALID,
                        f"{', '.join(text)}: Attio cannot change the text of a task once it is "
                        "written; change it in Attio, or delete the task there and import again",
                    )
                )
                continue
            data: dict[str, Any] = {}
            if "due_date" in item.record:
                data["deadline_at"] = deadline_of(item.record["due_date"])
            if "done" in item.record:
                data["is_completed"] = _completed(item.record["done"])
            path = self._path(item.id or "")
            if any(name in item.record for name in LINKS):
                outcome = yield from self.calls.send(ApiRequest("GET", path))
                if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
                    result.failed.append(self.calls.failed(item.index, outcome))
                    continue
                current = linked_records(self.calls.body(outcome)["data"], entities)
                data["linked_records"] = linked_after_update(
                    current, item.record, rollback=clear_blanks
                )
            request = ApiRequest("PATCH", path, json={"data": data}, kind=WRITE)
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.OK:
                result.successful.append(Written(item.index, item.id or "", created=False))
            else:
                result.failed.append(self.calls.failed(item.index, outcome))
        return result

    def remove(self, items: Sequence[Item]) -> Operation[BatchResult]:
        """Delete for good; a task already gone counts as removed."""
        result = BatchResult()
        for item in items:
            request = ApiRequest("DELETE", self._path(item.id or ""), kind=WRITE)
            outcome = yield from self.calls.send(request)
            if outcome.verdict is Verdict.OK or outcome.status == 404:
                result.successful.append(Written(item.index, item.id or "", created=False))
            else:
                result.failed.append(self.calls.failed(item.index, outcome))
        return result
