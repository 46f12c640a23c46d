"""The states and outcomes an import moves through, as types shared by every module.

An import has one state (:class:`ImportState`), kept by the staging store; each input line ends
in one :class:`LineOutcome` per entity it carries; each write the push makes to a CRM record is a
:class:`Change` in the change log, recorded before it is sent, so a crash, a budget pause or a
rollback knows exactly what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bulk_pipeline.entities import Entity


class ImportState(StrEnum):
    RUNNING = "running"
    """Staged, and being (or about to be) pushed; a re-run resumes it."""
    STOPPED = "stopped"
    """Stopped on request or because the CRM's budget ran out; a re-run resumes it."""
    FAILED = "failed"
    """The last run failed (the reason is kept); a re-run resumes it."""
    COMPLETED = "completed"
    """Every line has its outcome and the summary is written."""
    ROLLED_BACK = "rolled_back"
    """Its changes were undone in the CRM."""

    @property
    def resumable(self) -> bool:
        """A run of an import in this state continues the last run instead of starting anew."""
        return self in (ImportState.RUNNING, ImportState.STOPPED, ImportState.FAILED)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class LineOutcome(StrEnum):
    PENDING = "pending"
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    FAILED = "failed"


SUMMARY_OUTCOMES: tuple[LineOutcome, ...] = (
    LineOutcome.CREATED,
    LineOutcome.UPDATED,
    LineOutcome.UNCHANGED,
    LineOutcome.DUPLICATE,
    LineOutcome.INVALID,
    LineOutcome.FAILED,
)
"""Every line ends in exactly one of these (per entity it carries)."""


class OnDuplicate(StrEnum):
    """What to do with several rows of one file that share a dedupe key."""

    SKIP = "skip"
    """Keep the first row."""
    UPDATE = "update"
    """Keep the last row."""
    MERGE = "merge"
    """Keep the first row, with its blanks filled from later rows."""


class ChangeAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"


class ChangeState(StrEnum):
    INTENDED = "intended"
    """Recorded before sending; the answer has not been checkpointed yet."""
    DONE = "done"
    """The CRM acknowledged it."""
    ROLLED_BACK = "rolled_back"


class Proof(StrEnum):
    """Why a create was sent: what the import knew of the CRM at that moment."""

    LOOKED_UP = "looked_up"
    """The key was looked up and absent just before: a record found under it later is ours."""
    OPTIMISTIC = "optimistic"
    """Sent without a lookup (the CRM refuses duplicate keys): a record found later is ours only
    if the CRM created it after the create was sent, by the CRM's own clock."""


@dataclass(frozen=True)
class Change:
    """A write an import made (or was about to make) to one CRM record."""

    entity: Entity
    key: str
    action: ChangeAction
    crm_id: str | None
    before: dict[str, str | None]
    """The CRM's values of the fields written, as they were before (updates)."""
    after: dict[str, str | None]
    """The values the import wrote (None: a field it left blank): rollback undoes a field only
    while the CRM still holds them, so later edits made by people are never overwritten."""
    state: ChangeState = ChangeState.INTENDED
    run: int = 1
    sent_at: datetime | None = None
    """The CRM's clock when the write was about to be sent (None: no answer seen yet)."""
    proof: Proof = Proof.LOOKED_UP


@dataclass(frozen=True)
class Intent:
    """A change about to be sent, as the push writes it down (see :class:`Change`)."""

    key: str
    action: ChangeAction
    crm_id: str | None = None
    before: dict[str, str | None] = field(default_factory=dict)
    after: dict[str, str] | None = None
    """The values to be written; None for a create of the record as staged (the store copies
    the staged values, which is what the create sends)."""


@dataclass(frozen=True)
class StageResult:
    staged: int
    """Distinct records of this import (one per dedupe key)."""
    duplicates: int
    """Rows dropped or merged because an earlier/later row had the same key."""


@dataclass(frozen=True)
class PendingRecord:
    """A staged record of this import, as the push sees it."""

    key: str
    line: int
    fields: dict[str, str]
    crm_id: str | None
    """The id this pipeline last wrote the key to in this account, if any."""
    sheet: str = ""
    """The sheet (or JSON key) of ``line``; empty for a file with one table."""

    @property
    def where(self) -> str:
        """Where the record comes from, as a person finds it: ``Contacts line 7``."""
        return f"{self.sheet} line {self.line}" if self.sheet else f"line {self.line}"


class LinkState(StrEnum):
    INTENDED = "intended"
    """About to be sent (an association call): rollback removes it if it was made."""
    DONE = "done"
    """Made by this import: rollback removes it (unless its record is removed anyway)."""
    FOUND = "found"
    """The CRM held it already: never written, never removed."""
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class LinkChange:
    """A link between two CRM records that an import made, or found made (ASSOCIATION style:
    CRMs that link through fields keep links in the change log, as values)."""

    entity: Entity
    key: str
    """The dedupe key of the record linked from."""
    reference: str
    """The reference's name (``company``)."""
    to_entity: Entity
    from_id: str
    to_id: str
    state: LinkState = LinkState.INTENDED
    run: int = 1
    with_create: bool = False
    """Made by the create of its record: removing the record removes it."""


@dataclass(frozen=True)
class ReferenceMatch:
    """A staged record a reference value names."""

    key: str
    crm_id: str | None
    outcome: LineOutcome | None
    """Its outcome in the import asking (None: another import staged it)."""
    reason: str | None
    where: str
    """Its sheet and line in the import asking, or the import that staged it."""


@dataclass(frozen=True)
class PushOutcome:
    key: str
    outcome: LineOutcome
    """CREATED, UPDATED, UNCHANGED or FAILED."""
    crm_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ImportStatus:
    import_id: str
    state: ImportState
    run: int
    reason: str | None = None
    """Why it failed or stopped."""
    resume_at: datetime | None = None
    """When a budget pause ends."""
    updated_at: datetime | None = None


@dataclass
class OutcomeCounts:
    """Lines per outcome of one import (every outcome present, zero when none)."""

    counts: dict[LineOutcome, int] = field(default_factory=dict)

    def __getitem__(self, outcome: LineOutcome) -> int:
        return self.counts.get(outcome, 0)

    @property
    def accounted(self) -> int:
        return sum(self[o] for o in SUMMARY_OUTCOMES)


SUMMARY_KEYS: dict[LineOutcome, str] = {
    LineOutcome.CREATED: "created",
    LineOutcome.UPDATED: "updated",
    LineOutcome.UNCHANGED: "unchanged",
    LineOutcome.DUPLICATE: "duplicates",
    LineOutcome.INVALID: "invalid",
    LineOutcome.FAILED: "failed",
}


@dataclass
class ImportSummary:
    """What an import did, line by line summed up; written as summary.json."""

    import_id: str
    file: str
    entity: str
    target: str
    on_duplicate: str
    rows: int
    created: int
    updated: int
    unchanged: int
    duplicates: int
    invalid: int
    failed: int
    unmapped_columns: list[str]
    column_map: dict[str, str]
    timings: dict[str, Any]
    started_at: str | None
    finished_at: str
    rejected_csv: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Further facts written beside the counts (sheets skipped, ...)."""

    def as_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _SUMMARY_FIELDS}
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportSummary:
        known = {name: data[name] for name in _SUMMARY_FIELDS if name in data}
        extra = {name: value for name, value in data.items() if name not in _SUMMARY_FIELDS}
        return cls(**known, extra=extra)

    def count(self, outcome: LineOutcome) -> int:
        return int(getattr(self, SUMMARY_KEYS[outcome]))


_SUMMARY_FIELDS = (
    "import_id",
    "file",
    "entity",
    "target",
    "on_duplicate",
    "rows",
    "created",
    "updated",
    "unchanged",
    "duplicates",
    "invalid",
    "failed",
    "unmapped_columns",
    "column_map",
    "timings",
    "started_at",
    "finished_at",
    "rejected_csv",
)
