"""The public Python API: batch calls in the shape CRM SDK users know, on any bulk_pipeline target.

Records use our field names (see ``entities.py``); any number of records per call (batches are
made for you); every input ends in ``result.successful`` or ``result.failed``::

    from bulk_pipeline import api

    result = api.upsert_many("contacts", [{"email": "ada@example.com", "first_name": "Ada"}])
    for failed in result.failed:
        print(failed.index, failed.kind, failed.message)

``target`` is a registered target name (``"sandbox"``...: opened for the call and
closed after) or a target you opened yourself (left open). The ``async_*`` twins send batches
concurrently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.base import (
    BatchResult,
    CrmRecord,
    Failed,
    FailureKind,
    Record,
    Target,
)
from bulk_pipeline.targets.registry import DEFAULT_ASYNC_CONCURRENCY
from bulk_pipeline.targets.runner import AsyncTarget

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
    "person": Entity.CONTACTS,
    "people": Entity.CONTACTS,
    "persons": Entity.CONTACTS,
    "organization": Entity.COMPANIES,
    "organizations": Entity.COMPANIES,
    "0-1": Entity.CONTACTS,
    "0-2": Entity.COMPANIES,
    "0-3": Entity.DEALS,
}


def entity_for(object_type: str) -> Entity:
    """Our entity for an object type as CRMs name it: ``contacts``, ``company``, ``0-3``..."""
    entity = _OBJECT_TYPES.get(object_type.strip().lower())
    if entity is None:
        raise ValueError(
            f"unknown object type {object_type!r}; use one of: "
            + ", ".join(e.value for e in Entity)
        )
    return entity


@contextmanager
def _sync_target(target: str | Target) -> Iterator[Target]:
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
    target: str | AsyncTarget, max_concurrent: int
) -> AsyncIterator[AsyncTarget]:
    if not isinstance(target, str):
        yield target
        return
    opened = open_async_target(target, concurrency=max_concurrent)
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


def _by_key(entity: Entity, id_property: str | None) -> bool:
    if id_property is None:
        return False
    if id_property != ENTITY_SPECS[entity].key_field:
        raise ValueError(
            f"{id_property!r} is not the unique key of {entity.value}; read by id or by "
            f"{ENTITY_SPECS[entity].key_field!r}"
        )
    return True


def _key(entity: Entity, record: Mapping[str, str | None]) -> str | None:
    spec = ENTITY_SPECS[entity]
    return spec.key_of(record.get(spec.key_field))


def _key_values(entity: Entity, records: Sequence[Mapping[str, str | None]]) -> list[str]:
    key_field = ENTITY_SPECS[entity].key_field
    return [record.get(key_field) or "" for record in records]


def _create_absent(
    entity: Entity,
    records: Sequence[Mapping[str, str | None]],
    found: dict[str, CrmRecord],
    create: Callable[[Entity, Sequence[Record]], BatchResult],
) -> BatchResult:
    """Create the records whose key the CRM does not hold; the others are conflicts."""
    absent = [i for i, record in enumerate(records) if _key(entity, record) not in found]
    created = create(entity, [records[i] for i in absent])
    result = BatchResult(
        successful=[replace(w, index=absent[w.index]) for w in created.successful],
        failed=[replace(f, index=absent[f.index]) for f in created.failed],
        exhausted=created.exhausted,
    )
    key_field = ENTITY_SPECS[entity].key_field
    for index, record in enumerate(records):
        existing = found.get(_key(entity, record) or "")
        if existing is not None:
            result.failed.append(
                Failed(
                    index,
                    FailureKind.CONFLICT,
                    f"a {entity.value} record with {key_field} {record.get(key_field)} already "
                    f"exists (id {existing.id})",
                    existing=existing,
                )
            )
    return result.sort()


def upsert_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | Target = "sandbox",
) -> BatchResult:
    """Create or update by the unique key (contacts: email, companies: domain, deals: name)."""
    with _sync_target(target) as crm:
        return crm.upsert(entity_for(object_type), records)


def create_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | Target = "sandbox",
) -> BatchResult:
    """Create records; one whose key exists already fails with CONFLICT and carries the
    existing record (looked up first where the CRM itself would accept a second one)."""
    entity = entity_for(object_type)
    with _sync_target(target) as crm:
        if entity in crm.capabilities.refuses_duplicate_keys:
            return crm.create(entity, records)
        found = crm.lookup(entity, _key_values(entity, records))
        return _create_absent(entity, records, found, crm.create)


def update_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    ids: Sequence[str] | None = None,
    target: str | Target = "sandbox",
) -> BatchResult:
    """Update by CRM id: ``ids[i]`` for ``records[i]``, or each record's ``id`` field."""
    entity = entity_for(object_type)
    record_ids, fields = _split_ids(records, ids)
    with _sync_target(target) as crm:
        return crm.update(entity, record_ids, fields)


def archive_many(
    object_type: str, ids: Sequence[str], *, target: str | Target = "sandbox"
) -> BatchResult:
    """Remove by CRM id (archived, trashed or deleted, as the CRM does)."""
    with _sync_target(target) as crm:
        return crm.remove(entity_for(object_type), ids)


def get_many(
    object_type: str,
    ids: Sequence[str],
    *,
    id_property: str | None = None,
    target: str | Target = "sandbox",
) -> dict[str, CrmRecord]:
    """Read by CRM id, or by the unique key when ``id_property`` names it (e.g. ``"email"``;
    then keyed by the normalized key). Absent ones are missing from the answer."""
    entity = entity_for(object_type)
    by_key = _by_key(entity, id_property)
    with _sync_target(target) as crm:
        return crm.lookup(entity, ids) if by_key else crm.read(entity, ids)


async def async_upsert_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | AsyncTarget = "sandbox",
    max_concurrent: int = DEFAULT_ASYNC_CONCURRENCY,
) -> BatchResult:
    """:func:`upsert_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    async with _async_target(target, max_concurrent) as crm:
        return await crm.upsert(entity_for(object_type), records)


async def async_create_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    target: str | AsyncTarget = "sandbox",
    max_concurrent: int = DEFAULT_ASYNC_CONCURRENCY,
) -> BatchResult:
    """:func:`create_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    entity = entity_for(object_type)
    async with _async_target(target, max_concurrent) as crm:
        if entity in crm.capabilities.refuses_duplicate_keys:
            return await crm.create(entity, records)
        found = await crm.lookup(entity, _key_values(entity, records))
        absent = [r for r in records if _key(entity, r) not in found]
        created = await crm.create(entity, absent)
        return _create_absent(entity, records, found, lambda _e, _r: created)


async def async_update_many(
    object_type: str,
    records: Sequence[Mapping[str, str | None]],
    *,
    ids: Sequence[str] | None = None,
    target: str | AsyncTarget = "sandbox",
    max_concurrent: int = DEFAULT_ASYNC_CONCURRENCY,
) -> BatchResult:
    """:func:`update_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    entity = entity_for(object_type)
    record_ids, fields = _split_ids(records, ids)
    async with _async_target(target, max_concurrent) as crm:
        return await crm.update(entity, record_ids, fields)


async def async_archive_many(
    object_type: str,
    ids: Sequence[str],
    *,
    target: str | AsyncTarget = "sandbox",
    max_concurrent: int = DEFAULT_ASYNC_CONCURRENCY,
) -> BatchResult:
    """:func:`archive_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    async with _async_target(target, max_concurrent) as crm:
        return await crm.remove(entity_for(object_type), ids)


async def async_get_many(
    object_type: str,
    ids: Sequence[str],
    *,
    id_property: str | None = None,
    target: str | AsyncTarget = "sandbox",
    max_concurrent: int = DEFAULT_ASYNC_CONCURRENCY,
) -> dict[str, CrmRecord]:
    """:func:`get_many` with up to ``max_concurrent`` batches in flight (named targets)."""
    entity = entity_for(object_type)
    by_key = _by_key(entity, id_property)
    async with _async_target(target, max_concurrent) as crm:
        return await (crm.lookup(entity, ids) if by_key else crm.read(entity, ids))
