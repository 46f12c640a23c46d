"""Undo an import: remove the links it made, the records it created, restore the fields it
updated.

Works from the change log, where the push wrote down every change before sending it, with the
CRM's previous values and the values it sent, and every link it made apart from a create. Runs
are undone newest first; within a run, links first, then records in reverse dependency order
(notes and tasks before the deals, contacts and companies they refer to). Before undoing, the
CRM's current values are compared with what the import wrote: a field someone changed since is
left alone and reported as a conflict, and a created record someone changed is not removed,
unless the rollback is forced. Each change is marked rolled back once the CRM confirms it, so a
rollback that could not finish (CRM down, budget spent) is simply run again; a second complete
run does nothing more and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bulk_pipeline.entities import (
    DEPENDENCY_ORDER,
    ENTITY_SPECS,
    Entity,
    normalize_key,
)
from bulk_pipeline.errors import BudgetExhausted, TransientError
from bulk_pipeline.outcomes import Change, ChangeAction, ChangeState, LinkChange, LinkState
from bulk_pipeline.push.plan import created_by, holds
from bulk_pipeline.staging import StagingStore
from bulk_pipeline.targets.base import CrmRecord, DeleteKind, Link, Target

CHUNK_SIZE = 500
"""Changes undone between two marks in the change log."""


@dataclass
class RollbackReport:
    removed: int = 0
    restored: int = 0
    unlinked: int = 0
    """Links removed (CRMs that link by association; elsewhere links are restored fields)."""
    already_rolled_back: int = 0
    not_found: int = 0
    """Records the CRM no longer holds (or creates that never reached it): nothing to undo."""
    conflicts: list[str] = field(default_factory=list)
    """``entity key: what changed`` for each record or field left alone."""
    failed: list[str] = field(default_factory=list)
    """``entity key: reason`` for each change the CRM refused to undo."""
    stopped: str | None = None
    """Why the rollback stopped before the end (CRM down, budget spent); run it again."""
    dry_run: bool = False
    delete: DeleteKind = DeleteKind.ARCHIVE
    restorable_days: int | None = None
    """How long removed records can be restored in the CRM, where it says."""

    @property
    def complete(self) -> bool:
        return not self.failed and self.stopped is None


@dataclass(frozen=True)
class Undo:
    """What undoing one change does."""

    change: Change
    record: CrmRecord | None
    """What the CRM holds now (None: nothing)."""
    restore: dict[str, str | None]
    """Fields to set back (updates)."""
    conflicts: list[str]
    """Fields (or the record) someone changed since the import: left alone."""
    remove: bool = False


def decide(change: Change, record: CrmRecord | None, *, force: bool) -> Undo:
    """Compare what the CRM holds with what the change wrote, and decide what to undo."""
    if record is None:
        return Undo(change, None, {}, [])
    now = record.fields
    """Fields the CRM reads back: fields kept only in staging (an id from the source system, a
    reference by value) are not compared."""
    written = {n: v for n, v in change.after.items() if v is not None and n in now}
    if change.action is ChangeAction.CREATE:
        changed = [n for n, v in written.items() if not holds(record, n, v, current_only=True)]
        if changed and not force:
            return Undo(change, record, {}, changed)
        return Undo(change, record, {}, [], remove=True)
    restored = {n for n, v in change.before.items() if holds(record, n, v, current_only=True)}
    """Fields that hold their value from before already (an earlier, partial rollback)."""
    changed = [
        n
        for n, v in change.after.items()
        if n in now and n not in restored and not holds(record, n, v, current_only=True)
    ]
    keep = set() if force else set(changed)
    restore = {n: v for n, v in change.before.items() if n not in keep and n not in restored}
    return Undo(change, record, restore, sorted(keep))


def _describe(change: Change, fields: Sequence[str]) -> str:
    what = "the record was changed since" if change.action is ChangeAction.CREATE else "changed"
    return f"{change.entity.value} {change.key}: {what} ({', '.join(fields)})"


class Rollback:
    def __init__(
        self, store: StagingStore, target: Target, import_id: str, *, force: bool, dry_run: bool
    ) -> None:
        self.store = store
        self.target = target
        self.import_id = import_id
        self.force = force
        self.dry_run = dry_run
        self.report = RollbackReport(
            dry_run=dry_run,
            delete=target.capabilities.delete,
            restorable_days=target.capabilities.restorable_days,
        )

    def run(self) -> RollbackReport:
        changes = self.store.changes(self.import_id, account=self.target.account)
        self.report.already_rolled_back = sum(c.state is ChangeState.ROLLED_BACK for c in changes)
        todo = [c for c in changes if c.state is not ChangeState.ROLLED_BACK]
        links = [
            link
            for link in self.store.links(self.import_id, account=self.target.account)
            if link.state in (LinkState.DONE, LinkState.INTENDED) and not link.with_create
        ]
        try:
            for run in sorted({c.run for c in todo} | {link.run for link in links}, reverse=True):
                self._unlink(run, [link for link in links if link.run == run])
                for entity in reversed(DEPENDENCY_ORDER):
                    group = [c for c in todo if c.run == run and c.entity is entity]
                    for start in range(0, len(group), CHUNK_SIZE):
                        self._undo(entity, run, group[start : start + CHUNK_SIZE])
        except (BudgetExhausted, TransientError) as stop:
            self.report.stopped = str(stop)
        return self.report

    def _unlink(self, run: int, links: Sequence[LinkChange]) -> None:
        """Remove the links the run made to records that existed before it."""
        pairs = sorted({(link.entity, link.to_entity) for link in links})
        for entity, to in pairs:
            group = [link for link in links if link.entity is entity and link.to_entity is to]
            if self.dry_run:
                self.report.unlinked += len(group)
                continue
            result = self.target.remove_links(
                entity, to, [Link(link.from_id, link.to_id) for link in group]
            )
            self.store.record_links(
                self.import_id,
                [replace(group[w.index], state=LinkState.ROLLED_BACK) for w in result.successful],
                account=self.target.account,
                run=run,
            )
            self.report.unlinked += len(result.successful)
            self.report.failed += [
                f"link {entity.value} {group[f.index].key} -> {to.value} "
                f"{group[f.index].to_id}: {f.message}"
                for f in result.failed
            ]
            if result.exhausted is not None:
                raise result.exhausted

    def _current(self, entity: Entity, changes: Sequence[Change]) -> dict[str, CrmRecord]:
        """The CRM's record for each change, by key: by id where known; a create whose answer
        was lost is found by its key and claimed only by what the import knew when sending."""
        by_id = self.target.read(entity, [c.crm_id for c in changes if c.crm_id])
        current = {c.key: by_id[c.crm_id] for c in changes if c.crm_id and c.crm_id in by_id}
        unconfirmed = [c for c in changes if not c.crm_id and c.action is ChangeAction.CREATE]
        by_lookup: dict[str, list[Change]] = {}
        by_search: list[Change] = []
        for c in unconfirmed:
            field_name = _unique_field(entity, c)
            if field_name is None:
                by_search.append(c)
            else:
                by_lookup.setdefault(field_name, []).append(c)
        for field_name, group in by_lookup.items():
            found = self.target.lookup(
                entity, [c.after.get(field_name) or "" for c in group], by=field_name
            )
            for c in group:
                record = found.get(normalize_key(c.after.get(field_name) or ""))
                if record is not None and created_by(c, record):
                    current[c.key] = record
        if by_search:
            current |= self._search_created(entity, by_search)
        return current

    def _search_created(self, entity: Entity, changes: Sequence[Change]) -> dict[str, CrmRecord]:
        """Creates of records without a unique value whose answers were lost: a record with
        their values that the CRM created after they were sent, each claimed once."""
        by = ENTITY_SPECS[entity].search_field
        wanted = [c for c in changes if c.after.get(by)]
        candidates = self.target.search(entity, [c.after[by] or "" for c in wanted], by)
        claimed: dict[str, CrmRecord] = {}
        for c in wanted:
            match = next(
                (
                    r
                    for r in sorted(candidates, key=lambda r: (len(r.id), r.id))
                    if r.id not in {m.id for m in claimed.values()}
                    and created_by(c, r)
                    and not decide(c, r, force=False).conflicts
                ),
                None,
            )
            if match is not None:
                claimed[c.key] = match
        return claimed

    def _undo(self, entity: Entity, run: int, changes: Sequence[Change]) -> None:
        current = self._current(entity, changes)
        undos = [decide(c, current.get(c.key), force=self.force) for c in changes]
        report = self.report
        nothing = [u for u in undos if u.record is None]
        report.not_found += len(nothing)
        done: dict[str, str] = {u.change.key: u.change.crm_id or "" for u in nothing}
        for u in undos:
            if u.conflicts:
                report.conflicts.append(_describe(u.change, u.conflicts))
        removals = [u for u in undos if u.remove and u.record is not None]
        restores = [u for u in undos if u.restore and u.record is not None]
        untouched = [u for u in undos if u.record is not None and not u.remove and not u.restore]
        if self.dry_run:
            report.removed += len(removals)
            report.restored += len(restores)
            return
        done |= {u.change.key: u.record.id for u in untouched if u.record and not u.conflicts}
        if restores:
            result = self.target.update(
                entity,
                [u.record.id for u in restores if u.record],
                [u.restore for u in restores],
                clear_blanks=True,
            )
            for written in result.successful:
                undo = restores[written.index]
                if not undo.conflicts:
                    done[undo.change.key] = written.id
            report.restored += len(result.successful)
            report.failed += [
                f"{entity.value} {restores[f.index].change.key}: {f.message}" for f in result.failed
            ]
            if result.exhausted is not None:
                raise result.exhausted
        if removals:
            result = self.target.remove(entity, [u.record.id for u in removals if u.record])
            for written in result.successful:
                undo = removals[written.index]
                done[undo.change.key] = undo.record.id if undo.record else ""
            report.removed += len(result.successful)
            report.failed += [
                f"{entity.value} {removals[f.index].change.key}: {f.message}" for f in result.failed
            ]
            self.store.forget_pushes(
                entity,
                [removals[w.index].change.key for w in result.successful],
                account=self.target.account,
            )
            if result.exhausted is not None:
                raise result.exhausted
        self.store.mark_changes(
            self.import_id,
            entity,
            done,
            account=self.target.account,
            run=run,
            state=ChangeState.ROLLED_BACK,
        )


def _unique_field(entity: Entity, change: Change) -> str | None:
    """The field whose one value finds the change's record (an email), if it has one."""
    spec = ENTITY_SPECS[entity]
    identified = spec.identify({k: v for k, v in change.after.items() if v is not None})
    if identified is None or not spec.finds_by_lookup(identified[0]):
        return None
    return identified[0].field


def rollback_import(
    store: StagingStore,
    target: Target,
    *,
    import_id: str,
    force: bool = False,
    dry_run: bool = False,
) -> RollbackReport:
    """Undo every run of an import in its CRM (see the module's docstring); ``dry_run`` reads
    only and reports what it would do."""
    return Rollback(store, target, import_id, force=force, dry_run=dry_run).run()
