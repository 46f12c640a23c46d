"""Undo an import: archive the records it created, restore the fields it updated.

Works from ``import_changes``, where the push wrote down every change before sending it, with
the CRM's previous values. Each change is marked rolled back once the CRM confirms it, so running
a rollback again does nothing more and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bulk_pipeline.entities import Entity
from bulk_pipeline.staging import Change, forget_pushes, import_changes, mark_changes
from bulk_pipeline.targets.base import CrmTarget

ROLLED_BACK = "rolled_back"


@dataclass
class RollbackReport:
    archived: int = 0
    restored: int = 0
    already_rolled_back: int = 0
    not_found: int = 0
    """Creates recorded as intended that never reached the CRM (the import crashed first)."""
    failed: list[str] = field(default_factory=list)
    """``key: reason`` for each change the CRM refused to undo."""

    @property
    def complete(self) -> bool:
        return not self.failed


def _created_ids(target: CrmTarget, entity: Entity, creates: list[Change]) -> dict[str, str]:
    """CRM ids of created records; a create whose answer was lost is found by its key."""
    ids = {c.key: c.crm_id for c in creates if c.crm_id}
    unknown = [c.key for c in creates if not c.crm_id]
    if unknown:
        found = target.find_by_keys(entity, unknown).found
        ids |= {key: found[key.casefold()].id for key in unknown if key.casefold() in found}
    return ids


def rollback_import(
    db_path: Path, target: CrmTarget, entity: Entity, *, import_id: str, target_id: str
) -> RollbackReport:
    changes = import_changes(db_path, import_id=import_id, target=target_id)
    report = RollbackReport(already_rolled_back=sum(c.state == ROLLED_BACK for c in changes))
    pending = [c for c in changes if c.state != ROLLED_BACK]
    creates = [c for c in pending if c.action == "create"]
    updates = [c for c in pending if c.action == "update" and c.crm_id]
    undone: dict[str, str] = {}

    created_ids = _created_ids(target, entity, creates)
    missing = {c.key: "" for c in creates if c.key not in created_ids}
    report.not_found = len(missing)
    undone |= missing
    keys = list(created_ids)
    archived = target.archive_many(entity, [created_ids[k] for k in keys])
    for written in archived.successful:
        undone[keys[written.index]] = created_ids[keys[written.index]]
    report.archived = len(archived.successful)
    report.failed += [f"{keys[f.index]}: {f.message}" for f in archived.failed]

    restored = target.update_many(
        entity,
        [c.crm_id or "" for c in updates],
        [c.before for c in updates],
        clear_blanks=True,
    )
    for written in restored.successful:
        undone[updates[written.index].key] = written.id
    report.restored = len(restored.successful)
    report.failed += [f"{updates[f.index].key}: {f.message}" for f in restored.failed]

    mark_changes(db_path, undone, import_id=import_id, target=target_id, state=ROLLED_BACK)
    forget_pushes(db_path, entity, list(undone), target=target_id)
    return report
