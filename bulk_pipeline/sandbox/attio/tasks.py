"""Attio's tasks (``/v2/tasks``) in the sandbox, as the spec shows them: plaintext content (at
most 2000 characters), a deadline, whether they are done, the records they are linked to and
the workspace members assigned.

A create gives every property (the spec requires them all). ``PATCH`` changes only the deadline,
completion, linked records and assignees (the spec's "at present, only ..."; the content of a
task cannot change), each replaced by the list given. Linked records are named by object (slug
or id) and record id, or by a unique value of the record (``{"target_object": "people",
"email_addresses": [...]}``); a task answers them with the object's id. Listed oldest first
(or newest first), filtered by a linked record, completion or assignee. Deleted for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bulk_pipeline.sandbox.attio.errors import bad_request, not_found
from bulk_pipeline.sandbox.attio.store import AttioStore
from bulk_pipeline.sandbox.attio.values import WRITER
from bulk_pipeline.sandbox.attio.workspace import MEMBERS, WORKSPACE_ID, StandardObject
from bulk_pipeline.sandbox.dialect import Answer

CONTENT_LIMIT = 2000
REQUIRED = ("content", "format", "deadline_at", "is_completed", "linked_records", "assignees")
UPDATABLE = frozenset({"deadline_at", "is_completed", "linked_records", "assignees"})
DEFAULT_LIMIT = 500

ObjectOf = Callable[[str], StandardObject]
"""The object a slug or id names (``not_found`` when none)."""
Resolver = Callable[[str, Mapping[str, Any]], str | None]
"""The record a reference names (object slug or id, the reference), if any."""


def _deadline(raw: Any) -> str | None:
    """``null``, or an ISO 8601 timestamp in Attio's form (UTC, nanoseconds)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise bad_request("validation_type", f"deadline_at must be a timestamp, got {raw!r}")
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            "validation_type", f'deadline_at "{raw}" is not an ISO 8601 timestamp'
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def _assignee(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise bad_request("validation_type", f"an assignee is an object, got {raw!r}")
    if "workspace_member_email_address" in raw:
        email = str(raw["workspace_member_email_address"]).strip().lower()
        member = next((m for m in MEMBERS if m.email == email), None)
        what = f'email "{email}"'
    elif raw.get("referenced_actor_type") == "workspace-member":
        member = next((m for m in MEMBERS if m.id == raw.get("referenced_actor_id")), None)
        what = f'ID "{raw.get("referenced_actor_id")}"'
    else:
        raise bad_request("validation_type", "only workspace members can be assigned")
    if member is None:
        raise bad_request("value_not_found", f"Cannot find workspace member with {what}.")
    return {"referenced_actor_type": "workspace-member", "referenced_actor_id": member.id}


class Tasks:
    """The task operations on one store connection."""

    def __init__(
        self, store: AttioStore, now: Callable[[], str], object_of: ObjectOf, resolve: Resolver
    ) -> None:
        self.store = store
        self.now = now
        self.object_of = object_of
        self.resolve = resolve

    def _linked(self, raw: Any) -> list[dict[str, str]]:
        if not isinstance(raw, list):
            raise bad_request("validation_type", "linked_records must be a list")
        linked: list[dict[str, str]] = []
        for reference in raw:
            if not isinstance(reference, Mapping) or "target_object" not in reference:
                raise bad_request("validation_type", "each linked record names its target_object")
            standard = self.object_of(str(reference["target_object"]))
            record_id = self.resolve(standard.slug, reference)
            if record_id is None:
                shown = reference.get("target_record_id") or dict(reference)
                raise not_found(f"Cannot find a {standard.slug} record matching {shown}.")
            link = {"target_object_id": standard.id, "target_record_id": record_id}
            if link not in linked:
                linked.append(link)
        return linked

    def _apply(self, task: dict[str, Any], data: Mapping[str, Any]) -> None:
        if "deadline_at" in data:
            task["deadline_at"] = _deadline(data["deadline_at"])
        if "is_completed" in data:
            if not isinstance(data["is_completed"], bool):
                raise bad_request("validation_type", "is_completed must be true or false")
            task["is_completed"] = data["is_completed"]
        if "linked_records" in data:
            task["linked_records"] = self._linked(data["linked_records"])
        if "assignees" in data:
            if not isinstance(data["assignees"], list):
                raise bad_request("validation_type", "assignees must be a list")
            task["assignees"] = [_assignee(a) for a in data["assignees"]]

    def create(self, data: Mapping[str, Any]) -> Answer:
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise bad_request("validation_type", f"Missing {', '.join(missing)}.")
        if data["format"] != "plaintext":
            raise bad_request("validation_type", "format must be plaintext")
        content = data["content"]
        if not isinstance(content, str) or len(content) > CONTENT_LIMIT:
            raise bad_request(
                "validation_type", f"content must be text of at most {CONTENT_LIMIT} characters"
            )
        task: dict[str, Any] = {
            "id": {"workspace_id": WORKSPACE_ID, "task_id": str(uuid.uuid4())},
            "content_plaintext": content,
            "created_by_actor": WRITER,
        }
        with self.store.conn.write():
            self._apply(task, data)
            task["created_at"] = self.now()
            self.store.insert_task(task)
        return 200, {"data": task}

    def _of(self, task_id: str) -> dict[str, Any]:
        task = self.store.task(task_id)
        if task is None:
            raise not_found(f'Task with ID "{task_id}" not found.')
        return task

    def get(self, task_id: str) -> Answer:
        return 200, {"data": self._of(task_id)}

    def patch(self, task_id: str, data: Mapping[str, Any]) -> Answer:
        others = sorted(set(data) - UPDATABLE)
        if others:
            raise bad_request(
                "validation_type",
                f"{', '.join(others)} cannot be updated; only {', '.join(sorted(UPDATABLE))} can",
            )
        with self.store.conn.write():
            task = self._of(task_id)
            self._apply(task, data)
            self.store.replace_task(task)
        return 200, {"data": task}

    def delete(self, task_id: str) -> Answer:
        with self.store.conn.write():
            if not self.store.delete_task(task_id):
                raise not_found(f'Task with ID "{task_id}" not found.')
        return 200, {}

    def list(
        self,
        *,
        linked_object: str | None,
        linked_record_id: str | None,
        is_completed: str | None,
        assignee: str | None,
        sort: str | None,
        offset: int,
        limit: int | None,
    ) -> Answer:
        if sort not in (None, "created_at:asc", "created_at:desc"):
            raise bad_request("validation_type", "sort is created_at:asc or created_at:desc")
        object_id = None if linked_object is None else self.object_of(linked_object).id
        found = []
        for task in self.store.tasks():
            links = task["linked_records"]
            if object_id is not None and all(
                link["target_object_id"] != object_id for link in links
            ):
                continue
            if linked_record_id is not None and all(
                link["target_record_id"] != linked_record_id for link in links
            ):
                continue
            if is_completed is not None and task["is_completed"] != (is_completed == "true"):
                continue
            if assignee is not None and not _assigned(task, assignee):
                continue
            found.append(task)
        if sort == "created_at:desc":
            found.reverse()
        return 200, {"data": found[offset : offset + (limit or DEFAULT_LIMIT)]}


def _assigned(task: Mapping[str, Any], assignee: str) -> bool:
    """Whether the task is assigned to the member (by id or email); ``null``: to nobody."""
    if assignee == "null":
        return not task["assignees"]
    wanted = {m.id for m in MEMBERS if assignee in (m.id, m.email)}
    return any(a["referenced_actor_id"] in wanted for a in task["assignees"])
