"""The public Python API: batch calls in the shape CRM SDK users know, on any bulk_pipeline target.

Records use our field names (see ``entities.py``); any number of records per call (batches of 100
are made for you); every input ends in ``result.successful`` or ``result.failed``::

    from bulk_pipeline import api

    result = api.upsert_many("contacts", [{"email": "ada@example.com", "first_name": "Ada"}])
    for failed in result.failed:
        print(failed.index, failed.category, failed.message)

``target`` is a target name (``"sandbox"``, ``"hubspot"``: opened for the call and closed after) or
a target you opened yourself (left open). The ``async_*`` twins send batches concurrently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager

from bulk_pipeline.entities import Entity
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.base import AsyncCrmTarget, BatchResult, CrmTarget, ReadResult, Record
from bulk_pipeline.targets.hubspot import DEFAULT_MAX_CONCURRENT

__all__ = [
    "archive_many",
    "async_archive_many",
    "async_create_many",
    "async_get_many",
    "async_update_many",
    "async_upsert_many",
    "create_many",
    "get_many",
    "update_many",
    "upsert_many",
]

_OBJECT_TYPES: dict[str, Entity] = {
    **{entity.value: entity for entity in Entity},
    "contact": Entity.CONTACTS,
    "company": Entity.COMPANIES,
    "deal": Entity.DEALS,
    "0-1": Entity.CONTACTS,
    "0-2": Entity.COMPANIES,
    "0-3": Entity.DEALS,
}


def entity_for(object_type: str) -> Entity:
    """Our entity for a HubSpot-style object type: ``contacts``, ``company``, ``0-3``..."""
    entity = _OBJECT_TYPES.get(object_type.strip().lower())
    if entity is None:
        raise ValueError(
            f"unknown object type {object_type!r}; use one of: "
            + ", ".join(e.value for e in Entity)
        )
    return entity


@contextmanager
def _sync_target(target: str | CrmTarget) -> Iterator[CrmTarget]:
    if not isinstance(target, str):
        yield target
        return
    opened = open_target(target)
    try:
        yield opened
    finally:
        opened.close()


@asynccontextmanager
async def _async_target(
    target: str | AsyncCrmTarget, max_concurrent: int
) -> AsyncIterator[AsyncCrmTarget]:
    if not isinstance(target, str):
        yield target
        return
    opened = open_async_target(target, max_concurrent=max_concurrent)
    try:
        yield opened
    finally:
        await opened.aclose()


def _split_ids(
    records: Sequence[Mapping[str, str | None]], ids: Sequence[str] | None
) -> tuple[list[str], list[Record]]:
    """Ids from ``ids`` or from each record's ``id`` field (which is then not a property)."""
    if ids is not None:
        if len(ids) != len(records):
            raise ValueError(f"got {len(ids)} ids for {len(records)} records")
        return list(ids), list(records)
    return (
        [record.get("id") or "" for record in records],
        [{k: v for k, v in record.items() if k != "id"} for record in records],
    )


def _with_original_inputs(
    result: BatchResult, records: Sequence[Mapping[str, str | None]]
) -> BatchResult:
    result.successful = [dataclasses.replace(w, input=records[w.index]) for w in result.successful]
    result.failed = [dataclasses.replace(f, input=records[f.index]) for f in result.failed]
    return result


def upsert_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | CrmTarget = "sandbox",
) -> BatchResult:
    """Create or update by the unique key (contacts: email, companies: domain, deals: name)."""
    with _sync_target(target) as crm:
        return crm.upsert_many(entity_for(object_type), records)


def create_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | CrmTarget = "sandbox",
) -> BatchResult:
    """Create records; one whose key exists already fails with CONFLICT and its existing ID."""
    with _sync_target(target) as crm:
        return crm.create_many(entity_for(object_type), records)


def update_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    ids: Sequence[str] | None = None,
    target: str | CrmTarget = "sandbox",
) -> BatchResult:
    """Update by CRM id: ``ids[i]`` for ``records[i]``, or each record's ``id`` field."""
    entity = entity_for(object_type)
    record_ids, fields = _split_ids(records, ids)
    with _sync_target(target) as crm:
        return _with_original_inputs(crm.update_many(entity, record_ids, fields), records)


def archive_many(
    object_type: str, ids: Sequence[str], *, target: str | CrmTarget = "sandbox"
) -> BatchResult:
    """Archive (soft-delete) by CRM id."""
    with _sync_target(target) as crm:
        return crm.archive_many(entity_for(object_type), ids)


def get_many(
    object_type: str,
    ids: Sequence[str],
    *,
    id_property: str | None = None,
    target: str | CrmTarget = "sandbox",
) -> ReadResult:
    """Read by CRM id, or by the unique key when ``id_property`` names it (e.g. ``"email"``)."""
    with _sync_target(target) as crm:
        return crm.get_many(entity_for(object_type), ids, id_field=id_property)


async def async_upsert_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | AsyncCrmTarget = "sandbox",
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> BatchResult:
    """:func:`upsert_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    async with _async_target(target, max_concurrent) as crm:
        return await crm.upsert_many(entity_for(object_type), records)


async def async_create_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | AsyncCrmTarget = "sandbox",
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> BatchResult:
    """:func:`create_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    async with _async_target(target, max_concurrent) as crm:
        return await crm.create_many(entity_for(object_type), records)


async def async_update_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    ids: Sequence[str] | None = None,
    target: str | AsyncCrmTarget = "sandbox",
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> BatchResult:
    """:func:`update_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    entity = entity_for(object_type)
    record_ids, fields = _split_ids(records, ids)
    async with _async_target(target, max_concurrent) as crm:
        return _with_original_inputs(await crm.update_many(entity, record_ids, fields), records)


async def async_archive_many(
    object_type: str,
    ids: Sequence[str],
    *,
    target: str | AsyncCrmTarget = "sandbox",
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> BatchResult:
    """:func:`archive_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    async with _async_target(target, max_concurrent) as crm:
        return await crm.archive_many(entity_for(object_type), ids)


async def async_get_many(
    object_type: str,
    ids: Sequence[str],
    *,
    id_property: str | None = None,
    target: str | AsyncCrmTarget = "sandbox",
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> ReadResult:
    """:func:`get_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    async with _async_target(target, max_concurrent) as crm:
        return await crm.get_many(entity_for(object_type), ids, id_field=id_property)
