"""What a push would do, record by record, given what the CRM holds now.

Comparing each staged record with the CRM's current values is what lets the pipeline send only
changed fields, skip records the CRM already holds, capture the values it is about to overwrite
(for rollback), and show a dry-run plan before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bulk_pipeline.outcomes import Change, Proof
from bulk_pipeline.targets.base import CrmRecord, Estimate
from bulk_pipeline.targets.http.clock import CREATED_MARGIN


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    REJECT = "reject"
    """A reference of the record names nothing (or several records): not sent."""


@dataclass(frozen=True)
class PlannedRecord:
    key: str
    line: int
    action: Action
    fields: dict[str, str]
    """What to send: every field for a create, only the changed fields for an update."""
    crm_id: str | None = None
    before: dict[str, str | None] = field(default_factory=dict)
    """The CRM's values of the fields an update changes, as they were before it."""
    reason: str | None = None
    sheet: str = ""
    new_links: tuple[str, ...] = ()
    """References to link by separate calls (CRMs that link by association), for a dry run."""


def holds(record: CrmRecord, name: str, value: str | None, *, current_only: bool = False) -> bool:
    """Whether the CRM record holds ``value`` in field ``name`` (``CrmRecord.holds``)."""
    return record.holds(name, value, current_only=current_only)


def changed_fields(ours: Mapping[str, str], existing: CrmRecord) -> dict[str, str]:
    """Fields whose value the CRM does not hold; a blank of ours never counts (it would clear
    the CRM)."""
    return {
        name: value
        for name, value in ours.items()
        if value not in (None, "") and not holds(existing, name, value)
    }


def plan_record(
    key: str,
    line: int,
    fields: Mapping[str, str],
    existing: CrmRecord | None,
    *,
    known_crm_id: str | None = None,
) -> PlannedRecord:
    """Decide one record: create it, update only what differs, or leave it alone.

    ``known_crm_id`` is the id this pipeline wrote the key to before; a CRM record under the key
    with another id means someone merged or recreated it, which a person should look at.
    """
    if existing is None:
        return PlannedRecord(key, line, Action.CREATE, dict(fields))
    if known_crm_id is not None and existing.id != known_crm_id:
        return PlannedRecord(
            key,
            line,
            Action.CONFLICT,
            {},
            crm_id=existing.id,
            reason=(
                f"the CRM holds {key} as record {existing.id}, but this pipeline wrote it to "
                f"record {known_crm_id}; it was merged or recreated in the CRM"
            ),
        )
    diff = changed_fields(fields, existing)
    if not diff:
        return PlannedRecord(key, line, Action.UNCHANGED, {}, crm_id=existing.id)
    before = {name: existing.fields.get(name) for name in diff}
    return PlannedRecord(key, line, Action.UPDATE, diff, crm_id=existing.id, before=before)


@dataclass
class PlanSummary:
    """How many records a push would create, update, leave alone or refuse, and its cost."""

    creates: int = 0
    updates: int = 0
    unchanged: int = 0
    conflicts: int = 0
    rejected: int = 0
    links: int = 0
    """Links to make by separate calls (links that ride on creates are not counted)."""
    changed_field_counts: dict[str, int] = field(default_factory=dict)
    """For updates: how many records would change each field."""

    @classmethod
    def of(cls, records: Sequence[PlannedRecord]) -> PlanSummary:
        summary = cls()
        summary.add(records)
        return summary

    def add(self, records: Sequence[PlannedRecord]) -> None:
        """Count more planned records (a plan is made a chunk at a time)."""
        for record in records:
            self.links += len(record.new_links)
            if record.action is Action.CREATE:
                self.creates += 1
            elif record.action is Action.UPDATE:
                self.updates += 1
                for name in record.fields:
                    self.changed_field_counts[name] = self.changed_field_counts.get(name, 0) + 1
            elif record.action is Action.UNCHANGED:
                self.unchanged += 1
            elif record.action is Action.REJECT:
                self.rejected += 1
            else:
                self.conflicts += 1

    estimate: Estimate | None = None
    """What the push would cost in the CRM's budget unit."""
    entities: dict[str, PlanSummary] = field(default_factory=dict)
    """The same split per entity, for imports of several."""

    def as_json(self) -> dict[str, int]:
        return {
            "creates": self.creates,
            "updates": self.updates,
            "unchanged": self.unchanged,
            "conflicts": self.conflicts,
            "rejected": self.rejected,
            "links": self.links,
        }

    @property
    def total(self) -> int:
        return self.creates + self.updates + self.unchanged + self.conflicts + self.rejected

    @property
    def create_share(self) -> float:
        return self.creates / self.total if self.total else 0.0


def created_by(change: Change, record: CrmRecord) -> bool:
    """Whether a record found under the key of an unconfirmed create is the one it created.

    A key looked up and absent just before the create: the record is ours. A create sent
    without a lookup: ours only if the CRM created the record after the create was sent, both
    times on the CRM's own clock (its ``Date`` headers), so local clock skew cannot mislead.
    """
    if change.proof is Proof.LOOKED_UP:
        return True
    if change.sent_at is None or record.created_at is None:
        return False
    return record.created_at >= change.sent_at - CREATED_MARGIN
