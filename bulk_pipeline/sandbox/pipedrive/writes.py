"""What a write does to a Pipedrive item besides storing the fields given: links checked, custom
field values merged, defaults for a new item, and the fields Pipedrive derives kept in step
(names, stages and pipelines, status times, participants, order numbers, a note's parent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox.pipedrive import account, fields
from bulk_pipeline.sandbox.pipedrive.entities import (
    ACTIVITY,
    DEAL,
    NOTE,
    ORGANIZATION,
    PERSON,
    PIPELINE,
    STAGE,
    Entity,
)
from bulk_pipeline.sandbox.pipedrive.errors import bad_request
from bulk_pipeline.sandbox.pipedrive.store import Item, PipedriveStore

DEFAULT_VISIBLE_TO = 3
NOTE_PARENTS = ("deal_id", "person_id", "org_id")
UNMODELLED_NOTE_PARENTS = ("lead_id", "project_id", "task_id")


@dataclass
class Write:
    """One write being prepared: the item's data as it will be, as it was, and what was asked."""

    store: PipedriveStore
    data: dict[str, Any]
    before: dict[str, Any]
    changes: dict[str, Any]
    now: str


def prepare(
    store: PipedriveStore, entity: Entity, item: Item | None, changes: dict[str, Any], now: str
) -> dict[str, Any]:
    """The item's data after a write of ``changes`` (checked by ``entities.clean``); raises
    Pipedrive's 400 when a link names nothing or the result breaks the entity's rules."""
    data = dict(item.data) if item is not None else {}
    custom = changes.pop("custom_fields", None)
    if custom is not None:
        for link, linked_id in fields.check_values(custom, store.fields(entity.name)):
            check_link(store, f"custom_fields ({link})", link, linked_id)
        merged = {**(data.get("custom_fields") or {}), **custom}
        data["custom_fields"] = {code: v for code, v in merged.items() if v is not None}
    for name, value in changes.items():
        target = entity.field(name)
        if value is not None and target is not None and target.link is not None:
            check_link(store, name, target.link, value)
    before = dict(data)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    write = Write(store, data, before, changes, now)
    if item is None:
        _defaults(entity, write)
    derive = _DERIVE.get(entity.name)
    if derive is not None:
        derive(write)
    return data


def check_link(store: PipedriveStore, name: str, link: str, value: Any) -> None:
    if link == "user":
        exists = value in account.USER_IDS
    elif link == "activity_type":
        exists = value in account.ACTIVITY_TYPES
    else:
        exists = store.get(link, value) is not None
    if not exists:
        raise bad_request(f"Validation failed: {name}: {link.replace('_', ' ')} {value} not found")


def _defaults(entity: Entity, write: Write) -> None:
    data = write.data
    if entity in (PERSON, ORGANIZATION, DEAL, ACTIVITY):
        data.setdefault("owner_id", account.TOKEN_OWNER)
    if entity in (PERSON, ORGANIZATION, DEAL):
        data.setdefault("visible_to", DEFAULT_VISIBLE_TO)
    if entity is DEAL:
        data.setdefault("status", "open")
        data.setdefault("currency", account.DEFAULT_CURRENCY)
        data.setdefault("value", 0)
        data.setdefault("is_archived", False)
        data["origin"] = "API"
    elif entity is ACTIVITY:
        data.setdefault("type", "task")
        data.setdefault("subject", str(data["type"]).capitalize())
        data.setdefault("done", False)
        data["creator_user_id"] = account.TOKEN_OWNER
    elif entity is PIPELINE:
        data.setdefault("is_deal_probability_enabled", False)
        data["order_nr"] = _next_order(write.store.all_active("pipeline"))
    elif entity is STAGE:
        data.setdefault("deal_probability", 100)
        data.setdefault("is_deal_rot_enabled", False)
        data.setdefault("days_to_rotten", None)
        data["order_nr"] = _next_stage_order(write.store, data["pipeline_id"])
    elif entity is NOTE:
        data.setdefault("user_id", account.TOKEN_OWNER)


def _next_order(items: list[Item]) -> int:
    """New pipelines and stages go to the end."""
    return 1 + max((item.data.get("order_nr", 0) for item in items), default=0)


def _next_stage_order(store: PipedriveStore, pipeline_id: int) -> int:
    stages = [s for s in store.all_active("stage") if s.data.get("pipeline_id") == pipeline_id]
    return _next_order(stages)


def _person(write: Write) -> None:
    """``name`` and ``first_name``/``last_name`` follow each other: a new name splits at its
    first space; first and last names alone make the name. A person needs a name."""
    data, changes = write.data, write.changes
    if "name" in changes and data.get("name"):
        first, _, last = str(data["name"]).strip().partition(" ")
        if "first_name" not in changes:
            data["first_name"] = first
        if "last_name" not in changes:
            data["last_name"] = last.strip()
    elif "first_name" in changes or "last_name" in changes:
        joined = " ".join(part for part in (data.get("first_name"), data.get("last_name")) if part)
        if joined:
            data["name"] = joined
    for part in ("first_name", "last_name"):
        if data.get(part) == "":
            data.pop(part)
    if not data.get("name"):
        raise bad_request("Validation failed: name: is required")


def _deal(write: Write) -> None:
    """Stage and pipeline agree: a stage names its pipeline, and a deal put in another pipeline
    without a stage (or created without either) starts at that pipeline's first stage. Status
    changes stamp the won, lost and close times; only lost deals keep a lost reason."""
    data, before, changes = write.data, write.before, write.changes
    pipeline_given = changes.get("pipeline_id") is not None
    if changes.get("stage_id") is not None:
        stage = write.store.get("stage", data["stage_id"])
        assert stage is not None, "checked as a link"
        if pipeline_given and stage.data["pipeline_id"] != data["pipeline_id"]:
            raise bad_request(
                f"Validation failed: stage_id: stage {stage.id} is not in pipeline "
                f"{data['pipeline_id']}"
            )
        data["pipeline_id"] = stage.data["pipeline_id"]
    elif "stage_id" not in data or (
        pipeline_given and data["pipeline_id"] != before.get("pipeline_id")
    ):
        data["stage_id"], data["pipeline_id"] = _first_stage(write.store, data.get("pipeline_id"))
    if before.get("stage_id") is not None and before["stage_id"] != data["stage_id"]:
        data["stage_change_time"] = write.now
    status = data.get("status")
    if "status" in changes and status != before.get("status"):
        for stamp in ("won_time", "lost_time", "close_time"):
            data.pop(stamp, None)
        if status in ("won", "lost"):
            data[f"{status}_time"] = write.now
            data["close_time"] = write.now
        if status != "lost" and "lost_reason" not in changes:
            data.pop("lost_reason", None)
    if data.get("lost_reason") and status != "lost":
        raise bad_request("Validation failed: lost_reason: can only be set if the deal is lost")


def _first_stage(store: PipedriveStore, pipeline_id: int | None) -> tuple[int, int]:
    """``(stage id, pipeline id)`` of a pipeline's first stage; without a pipeline, of the first
    pipeline's."""
    if pipeline_id is None:
        pipelines = store.all_active("pipeline")
        if not pipelines:
            raise bad_request("Validation failed: pipeline_id: the account has no pipelines")
        pipeline_id = min(pipelines, key=lambda p: (p.data.get("order_nr", 0), p.id)).id
    stages = [s for s in store.all_active("stage") if s.data.get("pipeline_id") == pipeline_id]
    if not stages:
        raise bad_request(f"Validation failed: stage_id: pipeline {pipeline_id} has no stages")
    first = min(stages, key=lambda s: (s.data.get("order_nr", 0), s.id))
    return first.id, pipeline_id


def _activity(write: Write) -> None:
    """``person_id`` and the primary participant agree; marking done stamps the time."""
    data, changes = write.data, write.changes
    if "participants" in changes and "person_id" not in changes:
        primary = [p["person_id"] for p in data.get("participants") or () if p["primary"]]
        if primary:
            data["person_id"] = primary[0]
    elif "person_id" in changes and data.get("person_id") is not None:
        others = [p for p in data.get("participants") or () if p["person_id"] != data["person_id"]]
        data["participants"] = [
            {"person_id": data["person_id"], "primary": True},
            *({**p, "primary": False} for p in others),
        ]
    for participant in data.get("participants") or ():
        check_link(write.store, "participants", "person", participant["person_id"])
    if data.get("done") and not write.before.get("done"):
        data["marked_as_done_time"] = write.now
    elif not data.get("done"):
        data.pop("marked_as_done_time", None)


def _note(write: Write) -> None:
    """A note belongs to a deal, person or organization (Pipedrive also allows leads, projects
    and tasks, which the sandbox does not model)."""
    data = write.data
    unmodelled = [name for name in UNMODELLED_NOTE_PARENTS if write.changes.get(name) is not None]
    if unmodelled:
        raise bad_request(
            f"Validation failed: {unmodelled[0]}: the sandbox models notes on deals, persons "
            "and organizations only"
        )
    if not any(data.get(parent) is not None for parent in NOTE_PARENTS):
        raise bad_request(
            "Validation failed: a note needs one of deal_id, person_id, org_id, lead_id, "
            "project_id or task_id"
        )
    if not str(data.get("content") or "").strip():
        raise bad_request("Validation failed: content: is required")


def _stage(write: Write) -> None:
    """A stage moved to another pipeline goes to its end."""
    data = write.data
    moved = write.before and write.before.get("pipeline_id") != data["pipeline_id"]
    if "pipeline_id" in write.changes and moved:
        data["order_nr"] = _next_stage_order(write.store, data["pipeline_id"])


_DERIVE: dict[str, Callable[[Write], None]] = {
    "person": _person,
    "deal": _deal,
    "activity": _activity,
    "note": _note,
    "stage": _stage,
}
