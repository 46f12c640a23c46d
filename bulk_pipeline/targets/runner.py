"""Any dialect as a :class:`~bulk_pipeline.targets.base.Target`, sync or async: written once.

What every CRM needs around its own requests lives here, as operations both drivers can run:

- inputs are checked before anything is sent (fields the CRM has no place for, missing or
  repeated keys) and split into the dialect's batch sizes;
- a create whose answer was lost is read back by key; only what is absent is sent again, and a
  record found that the CRM created before our create was sent (by the CRM's own clock) is
  reported as a conflict, not claimed;
- upsert is native where the CRM has it, else lookup then update or create;
- when the account's budget runs out mid-call, what was written is returned, the rest is marked
  NOT_SENT, and ``BatchResult.exhausted`` tells the caller to stop.

:class:`SyncTarget` runs batches one at a time, or ``capabilities.concurrency`` at a time on
threads sharing one ``httpx.Client``; :class:`AsyncTarget` runs them on one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

from bulk_pipeline.entities import ENTITY_SPECS, Entity, describe_key, normalize_key
from bulk_pipeline.errors import BudgetExhausted, UserInputError
from bulk_pipeline.targets.base import (
    BatchResult,
    Capabilities,
    CrmList,
    CrmRecord,
    Dialect,
    Estimate,
    Failed,
    FailureKind,
    Item,
    Link,
    LinkItem,
    ListResult,
    NoteParent,
    Record,
    Target,
    Work,
    Written,
)
from bulk_pipeline.targets.http.clock import CREATED_MARGIN
from bulk_pipeline.targets.http.drivers import AsyncDriver, SyncDriver
from bulk_pipeline.targets.http.exchange import Exchange, Operation, Pause
from bulk_pipeline.targets.http.limits import LimitState

T = TypeVar("T")
R = TypeVar("R")

CREATE_ROUNDS = 5
"""How often creates whose answers were lost are read back and the absent ones resent."""


def _is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Batches of at most ``size`` (``itertools.batched`` needs Python 3.12)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class Operations:
    """The generic operations around a dialect, shared by the sync and async targets."""

    def __init__(self, dialect: Dialect, exchange: Exchange) -> None:
        self.dialect = dialect
        self.exchange = exchange

    @property
    def capabilities(self) -> Capabilities:
        return self.dialect.capabilities

    # inputs ---------------------------------------------------------------------------------

    def prepare(
        self,
        entity: Entity,
        records: Sequence[Record],
        *,
        ids: Sequence[str] | None = None,
        need_key: bool,
    ) -> tuple[list[Item], list[Failed]]:
        """Items to send, and the inputs refused before sending (with the reason). Inputs
        repeating a unique value (an email) would be one CRM record and are refused; those told
        apart by what they link to (tasks with one subject, deals with one name) may repeat."""
        spec = ENTITY_SPECS[entity]
        items: list[Item] = []
        refused: list[Failed] = []
        first_seen: dict[str, int] = {}
        for index, record in enumerate(records):
            unmapped = self.dialect.unmapped(entity, record)
            if unmapped:
                names = ", ".join(repr(name) for name in unmapped)
                refused.append(
                    Failed(
                        index,
                        FailureKind.INVALID,
                        f"the CRM has no {entity.value} field for {names}; nothing was sent",
                    )
                )
                continue
            identified = spec.identify(record)
            key = identified[1] if identified is not None else None
            record_id = None
            if ids is not None:
                record_id = (ids[index] or "").strip()
                if not record_id:
                    refused.append(Failed(index, FailureKind.INVALID, "no CRM id given"))
                    continue
            elif need_key:
                if key is None:
                    named = " or ".join(i.field for i in spec.identities)
                    refused.append(
                        Failed(
                            index,
                            FailureKind.INVALID,
                            f"{named} is empty; it identifies {entity.value}",
                        )
                    )
                    continue
                if (
                    key in first_seen
                    and identified is not None
                    and spec.finds_by_lookup(identified[0])
                ):
                    refused.append(
                        Failed(
                            index,
                            FailureKind.INVALID,
                            f"{describe_key(key)} repeats input {first_seen[key]}; "
                            "deduplicate before pushing",
                        )
                    )
                    continue
                first_seen[key] = index
            items.append(Item(index, record, key, record_id))
        return items, refused

    def write_batches(self, items: Sequence[Item]) -> list[list[Item]]:
        return list(_chunks(items, self.capabilities.batch_size))

    def link_batches(self, links: Sequence[Link]) -> list[list[LinkItem]]:
        items = [LinkItem(index, link) for index, link in enumerate(links)]
        return list(_chunks(items, self.capabilities.batch_size))

    def key_batches(self, values: Sequence[str]) -> list[list[str]]:
        """Distinct non-blank values, in lookup-sized batches."""
        distinct = list(dict.fromkeys(v.strip() for v in values if not _is_blank(v)))
        return list(_chunks(distinct, self.capabilities.lookup_batch_size))

    # operations -----------------------------------------------------------------------------

    def create(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Create, never twice. Inputs the CRM did not settle are found again, once per round:
        a create whose answer was lost is ours if found (unless the CRM created that record
        before we sent, by its own clock), and resent only if absent; a batch refused for
        existing keys is split into those conflicts and the rest, which is resent."""
        result = BatchResult()
        pending = list(items)
        for round_number in range(1, CREATE_ROUNDS + 1):
            sent_at = self.exchange.clock.now()
            created = yield from self.dialect.create(entity, pending)
            result.extend(created)
            unsettled = [*created.unconfirmed, *created.conflicted]
            if not unsettled:
                return result
            if created.unconfirmed:
                yield Pause(self.exchange.policy.backoff(round_number, self.exchange.rng))
            lost = {it.index for it in created.unconfirmed}
            by_key = [it for it in unsettled if self._unique(entity, it)]
            by_search = [it for it in unsettled if not self._unique(entity, it)]
            pending = yield from self._settle_by_key(entity, by_key, lost, sent_at, result)
            pending += yield from self._settle_by_search(entity, by_search, sent_at, result)
            if not pending:
                return result
        result.failed.extend(
            Failed(
                it.index,
                FailureKind.TRANSIENT,
                f"not created after {CREATE_ROUNDS} attempts whose answers were lost or refused "
                "(checked: it does not exist in the CRM)",
            )
            for it in pending
        )
        return result

    @staticmethod
    def _unique(entity: Entity, item: Item) -> bool:
        spec = ENTITY_SPECS[entity]
        identified = spec.identify(item.record)
        return identified is not None and spec.finds_by_lookup(identified[0])

    def _settle_by_key(
        self,
        entity: Entity,
        unsettled: Sequence[Item],
        lost: set[int],
        sent_at: datetime | None,
        result: BatchResult,
    ) -> Operation[list[Item]]:
        """Inputs identified by one unique value (an email): the record under the value is
        ours if our create was lost and the CRM made it after we sent; else a conflict."""
        if not unsettled:
            return []
        spec = ENTITY_SPECS[entity]
        by = spec.identify(unsettled[0].record)[0].field  # type: ignore[index]
        values = [str(it.record.get(by) or "") for it in unsettled]
        found = yield from self.dialect.lookup(entity, values, by)
        pending = []
        for it, value in zip(unsettled, values, strict=True):
            record = found.get(normalize_key(value))
            if record is None:
                pending.append(it)
            elif it.index not in lost or _existed_before(record, sent_at):
                result.failed.append(
                    Failed(
                        it.index,
                        FailureKind.CONFLICT,
                        f"a {entity.value} record with {by} {value} already exists "
                        f"(id {record.id})",
                        existing=record,
                    )
                )
            else:
                result.successful.append(Written(it.index, record.id, created=True))
        return pending

    def _settle_by_search(
        self,
        entity: Entity,
        unsettled: Sequence[Item],
        sent_at: datetime | None,
        result: BatchResult,
    ) -> Operation[list[Item]]:
        """Inputs whose value is not unique (a task's subject): every record with the value
        that the CRM made after we sent and that holds the values we sent is one of ours, each
        claimed once; records alike in every value are alike to whoever reads them."""
        if not unsettled:
            return []
        by = ENTITY_SPECS[entity].search_field
        found = yield from self.dialect.search(
            entity, [str(it.record.get(by) or "") for it in unsettled], by
        )
        claimed = {written.id for written in result.successful}
        candidates = sorted(
            (r for r in found if r.id not in claimed and not _existed_before(r, sent_at)),
            key=lambda r: (len(r.id), r.id),
        )
        pending = []
        for it in unsettled:
            match = next((r for r in candidates if _holds(r, it.record)), None)
            if match is None:
                pending.append(it)
                continue
            candidates.remove(match)
            result.successful.append(Written(it.index, match.id, created=True))
        return pending

    def upsert(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Natively where the CRM can; else each record looked up by the value it is
        identified by (records the CRM cannot be asked for are created), then updated or
        created."""
        if entity in self.capabilities.native_upsert:
            return (yield from self.dialect.upsert(entity, items))
        spec = ENTITY_SPECS[entity]
        by_field: dict[str, list[Item]] = {}
        for it in items:
            identified = spec.identify(it.record)
            if identified is not None and identified[0].matches_crm:
                by_field.setdefault(identified[0].field, []).append(it)
        existing: dict[int, str] = {}
        for field_name, group in by_field.items():
            values = [str(it.record.get(field_name) or "") for it in group]
            found = yield from self.dialect.lookup(entity, values, field_name)
            for it, value in zip(group, values, strict=True):
                record = found.get(normalize_key(value))
                if record is not None:
                    existing[it.index] = record.id
        updates = [
            Item(it.index, it.record, it.key, existing[it.index])
            for it in items
            if it.index in existing
        ]
        creates = [it for it in items if it.index not in existing]
        result = BatchResult()
        if updates:
            result.extend((yield from self.dialect.update(entity, updates, clear_blanks=False)))
        if creates:
            result.extend((yield from self.create(entity, creates)))
        return result


def _holds(record: CrmRecord, sent: Record) -> bool:
    """The CRM record holds every value we sent that it reads back."""
    return all(
        record.holds(name, value)
        for name, value in sent.items()
        if name in record.fields and not _is_blank(value)
    )


def _existed_before(record: CrmRecord, sent_at: datetime | None) -> bool:
    """Created (by the CRM's clock) clearly before our create was sent: not ours."""
    if sent_at is None or record.created_at is None:
        return False
    return record.created_at < sent_at - CREATED_MARGIN


def _not_sent(batch: Sequence[Item | LinkItem], exhausted: BudgetExhausted) -> BatchResult:
    return BatchResult(
        failed=[Failed(it.index, FailureKind.NOT_SENT, str(exhausted)) for it in batch],
        exhausted=exhausted,
    )


def _merge_writes(refused: list[Failed], parts: Sequence[BatchResult]) -> BatchResult:
    merged = BatchResult(failed=list(refused))
    for part in parts:
        merged.extend(part)
    return merged.sort()


def _rekey(values: Sequence[str], found: dict[str, CrmRecord]) -> dict[str, CrmRecord]:
    """The dialect's answer, in the caller's keys (every caller normalizes the same way)."""
    wanted = {normalize_key(v) for v in values if not _is_blank(v)}
    return {key: record for key, record in found.items() if key in wanted}


class _TargetBase:
    """What the sync and async targets share: naming, preparation, estimates, the budget."""

    def __init__(
        self, *, name: str, account: str, dialect: Dialect, exchange: Exchange, concurrency: int
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.account = account
        self.dialect = dialect
        self.capabilities = dialect.capabilities
        self.ops = Operations(dialect, exchange)
        self.exchange = exchange
        self.concurrency = concurrency

    def estimate(self, entity: Entity, work: Work) -> Estimate:
        return self.dialect.estimate(entity, work)

    def budget(self) -> list[LimitState]:
        return self.exchange.budget.state()

    def crm_now(self) -> datetime | None:
        return self.exchange.clock.now()

    def _write_plan(
        self,
        entity: Entity,
        records: Sequence[Record],
        *,
        ids: Sequence[str] | None,
        need_key: bool,
        make: Callable[[list[Item]], Operation[BatchResult]],
    ) -> tuple[list[Failed], list[list[Item]], list[Operation[BatchResult]]]:
        if ids is not None and len(ids) != len(records):
            raise ValueError(f"got {len(ids)} ids for {len(records)} records")
        items, refused = self.ops.prepare(entity, records, ids=ids, need_key=need_key)
        batches = self.ops.write_batches(items)
        return refused, batches, [make(batch) for batch in batches]

    def _lists(self) -> None:
        if not self.capabilities.lists:
            raise UserInputError(
                f"the {self.name} target has no lists to add records to; drop the list option"
            )

    def _list_plan(
        self, crm_list: CrmList, entity: Entity, ids: Sequence[str], members: frozenset[str]
    ) -> tuple[ListResult, list[list[Item]], list[Operation[BatchResult]]]:
        """The records the list lacks (each once), in write batches."""
        seen: set[str] = set()
        missing: list[Item] = []
        already = 0
        for index, record_id in enumerate(ids):
            if not record_id or record_id in seen:
                continue
            seen.add(record_id)
            if record_id in members:
                already += 1
            else:
                missing.append(Item(index, {}, id=record_id))
        batches = self.ops.write_batches(missing)
        operations = [self.dialect.add_to_list(crm_list, entity, batch) for batch in batches]
        return ListResult(crm_list.name, already=already), batches, operations

    @staticmethod
    def _list_result(result: ListResult, written: BatchResult) -> ListResult:
        result.added = len(written.successful)
        result.failed = written.failed
        result.exhausted = written.exhausted
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, account={self.account!r})"


class SyncTarget(_TargetBase, Target):
    """A dialect over one pooled ``httpx.Client``; thread-safe."""

    def __init__(
        self,
        *,
        name: str,
        account: str,
        dialect: Dialect,
        exchange: Exchange,
        driver: SyncDriver,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(
            name=name,
            account=account,
            dialect=dialect,
            exchange=exchange,
            concurrency=concurrency or dialect.capabilities.concurrency,
        )
        self._driver = driver

    def _run_all(self, operations: Sequence[Operation[R]]) -> list[R | BaseException]:
        """Run operations (``concurrency`` at a time); each one's result or exception."""

        def run(operation: Operation[R]) -> R | BaseException:
            try:
                return self._driver.run(operation)
            except Exception as exc:
                return exc

        if self.concurrency == 1 or len(operations) <= 1:
            results: list[R | BaseException] = []
            for operation in operations:
                outcome = run(operation)
                results.append(outcome)
                if isinstance(outcome, BudgetExhausted):
                    results += [outcome] * (len(operations) - len(results))
                    break
            return results
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(operations))) as pool:
            return list(pool.map(run, operations))

    def _writes(
        self,
        refused: list[Failed],
        batches: Sequence[Sequence[Item | LinkItem]],
        operations: list[Operation[BatchResult]],
    ) -> BatchResult:
        parts: list[BatchResult] = []
        for batch, outcome in zip(batches, self._run_all(operations), strict=True):
            if isinstance(outcome, BudgetExhausted):
                parts.append(_not_sent(batch, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                parts.append(outcome)
        return _merge_writes(refused, parts)

    def _reads(self, operations: list[Operation[dict[str, CrmRecord]]]) -> dict[str, CrmRecord]:
        found: dict[str, CrmRecord] = {}
        for outcome in self._run_all(operations):
            if isinstance(outcome, BaseException):
                raise outcome
            found.update(outcome)
        return found

    def check(self) -> None:
        self._driver.run(self.dialect.check())

    def lookup(
        self, entity: Entity, values: Sequence[str], by: str | None = None
    ) -> dict[str, CrmRecord]:
        field_name = by or ENTITY_SPECS[entity].key_field
        batches = self.ops.key_batches(values)
        found = self._reads([self.dialect.lookup(entity, batch, field_name) for batch in batches])
        return _rekey(values, found)

    def search(self, entity: Entity, values: Sequence[str], by: str) -> list[CrmRecord]:
        found: dict[str, CrmRecord] = {}
        batches = self.ops.key_batches(values)
        for outcome in self._run_all([self.dialect.search(entity, b, by) for b in batches]):
            if isinstance(outcome, BaseException):
                raise outcome
            found.update((record.id, record) for record in outcome)
        return list(found.values())

    def read_links(self, entity: Entity, ids: Sequence[str], to: Entity) -> dict[str, set[str]]:
        linked: dict[str, set[str]] = {}
        batches = self.ops.key_batches(ids)
        for outcome in self._run_all([self.dialect.read_links(entity, b, to) for b in batches]):
            if isinstance(outcome, BaseException):
                raise outcome
            linked.update(outcome)
        return linked

    def add_links(self, entity: Entity, to: Entity, links: Sequence[Link]) -> BatchResult:
        batches = self.ops.link_batches(links)
        return self._writes(
            [], batches, [self.dialect.add_links(entity, to, batch) for batch in batches]
        )

    def remove_links(self, entity: Entity, to: Entity, links: Sequence[Link]) -> BatchResult:
        batches = self.ops.link_batches(links)
        return self._writes(
            [], batches, [self.dialect.remove_links(entity, to, batch) for batch in batches]
        )

    def read(self, entity: Entity, ids: Sequence[str]) -> dict[str, CrmRecord]:
        return self._reads(
            [self.dialect.read(entity, batch) for batch in self.ops.key_batches(ids)]
        )

    def create(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        return self._writes(
            *self._write_plan(
                entity,
                records,
                ids=None,
                need_key=True,
                make=lambda batch: self.ops.create(entity, batch),
            )
        )

    def update(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        return self._writes(
            *self._write_plan(
                entity,
                records,
                ids=ids,
                need_key=False,
                make=lambda batch: self.dialect.update(entity, batch, clear_blanks=clear_blanks),
            )
        )

    def upsert(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        return self._writes(
            *self._write_plan(
                entity,
                records,
                ids=None,
                need_key=True,
                make=lambda batch: self.ops.upsert(entity, batch),
            )
        )

    def remove(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        return self._writes(
            *self._write_plan(
                entity,
                [{} for _ in ids],
                ids=ids,
                need_key=False,
                make=lambda batch: self.dialect.remove(entity, batch),
            )
        )

    def add_note(self, body: str, parent: NoteParent | None = None) -> str:
        return self._driver.run(self.dialect.add_note(body, parent))

    def fields(self, entity: Entity) -> frozenset[str]:
        return self._driver.run(self.dialect.fields(entity))

    def find_list(self, name: str, entity: Entity, *, create: bool = False) -> CrmList:
        self._lists()
        return self._driver.run(self.dialect.find_list(name, entity, create=create))

    def add_to_list(
        self, name: str, entity: Entity, ids: Sequence[str], *, create: bool = False
    ) -> ListResult:
        crm_list = self.find_list(name, entity, create=create)
        members = self._driver.run(self.dialect.list_members(crm_list, entity))
        result, batches, operations = self._list_plan(crm_list, entity, ids, members)
        return self._list_result(result, self._writes([], batches, operations))

    def close(self) -> None:
        self._driver.close()


class AsyncTarget(_TargetBase):
    """A dialect over one pooled ``httpx.AsyncClient``; ``concurrency`` batches in flight.

    The same calls as :class:`SyncTarget`, awaited. It shares its account's budget with every
    other target of the account in the process, so concurrency raises throughput up to the
    limit and no further.
    """

    def __init__(
        self,
        *,
        name: str,
        account: str,
        dialect: Dialect,
        exchange: Exchange,
        driver: AsyncDriver,
        concurrency: int,
    ) -> None:
        super().__init__(
            name=name, account=account, dialect=dialect, exchange=exchange, concurrency=concurrency
        )
        self._driver = driver

    async def _run_all(self, operations: Sequence[Operation[R]]) -> list[R | BaseException]:
        results: dict[int, R | BaseException] = {}
        queue = iter(enumerate(operations))

        async def worker() -> None:
            for position, operation in queue:
                try:
                    results[position] = await self._driver.run(operation)
                except Exception as exc:
                    results[position] = exc

        workers = [
            asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(operations)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return [results[position] for position in range(len(operations))]

    async def _writes(
        self,
        refused: list[Failed],
        batches: Sequence[Sequence[Item | LinkItem]],
        operations: list[Operation[BatchResult]],
    ) -> BatchResult:
        parts: list[BatchResult] = []
        for batch, outcome in zip(batches, await self._run_all(operations), strict=True):
            if isinstance(outcome, BudgetExhausted):
                parts.append(_not_sent(batch, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                parts.append(outcome)
        return _merge_writes(refused, parts)

    async def _reads(
        self, operations: list[Operation[dict[str, CrmRecord]]]
    ) -> dict[str, CrmRecord]:
        found: dict[str, CrmRecord] = {}
        for outcome in await self._run_all(operations):
            if isinstance(outcome, BaseException):
                raise outcome
            found.update(outcome)
        return found

    async def check(self) -> None:
        await self._driver.run(self.dialect.check())

    async def lookup(
        self, entity: Entity, values: Sequence[str], by: str | None = None
    ) -> dict[str, CrmRecord]:
        field_name = by or ENTITY_SPECS[entity].key_field
        batches = self.ops.key_batches(values)
        found = await self._reads(
            [self.dialect.lookup(entity, batch, field_name) for batch in batches]
        )
        return _rekey(values, found)

    async def read(self, entity: Entity, ids: Sequence[str]) -> dict[str, CrmRecord]:
        return await self._reads(
            [self.dialect.read(entity, batch) for batch in self.ops.key_batches(ids)]
        )

    async def create(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        return await self._writes(
            *self._write_plan(
                entity,
                records,
                ids=None,
                need_key=True,
                make=lambda batch: self.ops.create(entity, batch),
            )
        )

    async def update(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        return await self._writes(
            *self._write_plan(
                entity,
                records,
                ids=ids,
                need_key=False,
                make=lambda batch: self.dialect.update(entity, batch, clear_blanks=clear_blanks),
            )
        )

    async def upsert(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        return await self._writes(
            *self._write_plan(
                entity,
                records,
                ids=None,
                need_key=True,
                make=lambda batch: self.ops.upsert(entity, batch),
            )
        )

    async def remove(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        return await self._writes(
            *self._write_plan(
                entity,
                [{} for _ in ids],
                ids=ids,
                need_key=False,
                make=lambda batch: self.dialect.remove(entity, batch),
            )
        )

    async def add_note(self, body: str, parent: NoteParent | None = None) -> str:
        return await self._driver.run(self.dialect.add_note(body, parent))

    async def fields(self, entity: Entity) -> frozenset[str]:
        return await self._driver.run(self.dialect.fields(entity))

    async def find_list(self, name: str, entity: Entity, *, create: bool = False) -> CrmList:
        self._lists()
        return await self._driver.run(self.dialect.find_list(name, entity, create=create))

    async def add_to_list(
        self, name: str, entity: Entity, ids: Sequence[str], *, create: bool = False
    ) -> ListResult:
        crm_list = await self.find_list(name, entity, create=create)
        members = await self._driver.run(self.dialect.list_members(crm_list, entity))
        result, batches, operations = self._list_plan(crm_list, entity, ids, members)
        return self._list_result(result, await self._writes([], batches, operations))

    async def aclose(self) -> None:
        await self._driver.aclose()
