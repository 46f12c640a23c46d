"""The one narrow interface every CRM target offers, its capabilities as data, and its results.

A CRM is supported by a *dialect* (``targets/<crm>/``): how its requests and answers look, how our
fields map to its properties, what its budget is. The generic runner (``runner.py``) turns any
dialect into a :class:`Target` (and an async one), so batching, concurrency and the handling of
unclear creates are written once. The push core talks only to :class:`Target` and reads
:class:`Capabilities` to pick its write strategy; it never branches on a CRM's name.

Records are plain mappings of *our* field names (``entities.py``) to strings. Lookups answer in
the caller's keys: ``entities.normalize_key`` of the key field's value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bulk_pipeline.entities import ENTITY_SPECS, Entity, same_value
from bulk_pipeline.errors import BudgetExhausted
from bulk_pipeline.targets.http.exchange import Operation
from bulk_pipeline.targets.http.limits import LimitState

Record = Mapping[str, str | None]


class DeleteKind(StrEnum):
    """What removing a record does in the CRM (rollback says so before it deletes)."""

    ARCHIVE = "archive"
    """Soft: the record can be restored from the CRM's archive."""
    TRASH = "trash"
    """Soft for a while: restorable from the trash for some days."""
    PERMANENT = "permanent"
    """Hard: gone for good; rollback asks for confirmation first."""


class LinkStyle(StrEnum):
    """How the CRM links records of different entities."""

    ASSOCIATION = "association"
    """Separate association calls, or associations sent with a create."""
    FOREIGN_KEY = "foreign_key"
    """A field of the record holds the other's id."""
    REFERENCE = "reference"
    """A record-reference attribute value."""


@dataclass(frozen=True)
class Capabilities:
    """What a CRM can do, as data the push core reads to choose how to write."""

    entities: frozenset[Entity]
    batch_size: int
    """Records per write call (1 for CRMs without batch writes)."""
    lookup_batch_size: int
    """Keys or ids per lookup/read call."""
    concurrency: int
    """Calls a push keeps in flight: 1 where batches already carry the load."""
    refuses_duplicate_keys: frozenset[Entity]
    """Entities whose key the CRM itself refuses twice: a create may go without a lookup first,
    since a record that exists makes the create fail instead of doubling it."""
    native_upsert: frozenset[Entity]
    """Entities the CRM can create-or-update by key in one call."""
    delete: DeleteKind
    links: LinkStyle
    note_needs_parent: bool
    """Notes must be attached to a record."""
    lists: bool = False
    """Records can be added to named lists of the CRM (``add_to_list``)."""
    links_on_create: bool = True
    """ASSOCIATION style: a create carries its record's links (no separate link calls for new
    records). FOREIGN_KEY and REFERENCE links are fields, always written with the record."""
    restorable_days: int | None = None
    """How long a removed record can be restored from the CRM's trash, where it says."""
    one_link: Mapping[Entity, tuple[str, ...]] = field(default_factory=dict)
    """Entities whose records the CRM links to one record only (a note with one parent), with
    their references by name in order of preference: such a record is linked by the first
    reference it gives; its others are still checked (one that names nothing rejects the line)
    but not written."""


@dataclass(frozen=True)
class CrmRecord:
    """A record as the CRM holds it, in our field names."""

    id: str
    fields: dict[str, str | None]
    created_at: datetime | None = None
    """The CRM's own time of creation (its clock, not ours)."""
    also: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Further values of fields the CRM holds several of (``fields`` has the most recent): a
    value of ours that is one of them is held already."""
    case_blind: frozenset[str] = frozenset()
    """Fields whose values the CRM matches regardless of case (select options, statuses, user
    emails): a value of ours differing only in case is held already."""

    def holds(self, name: str, value: str | None, *, current_only: bool = False) -> bool:
        """Whether the record holds ``value`` in field ``name``: as its value, as one of the
        further values of a field the CRM holds several of (unless ``current_only``: whether
        it is still the most recent), or differing in case only where the CRM ignores case."""
        held = [self.fields.get(name)]
        if not current_only:
            held += self.also.get(name, ())
        folded = name in self.case_blind
        mine = (value or "").strip().casefold()
        return any(
            same_value(value, theirs) or (folded and mine == (theirs or "").strip().casefold())
            for theirs in held
        )

    duplicates: tuple[str, ...] = ()
    """Other records the CRM holds under the same key (where it allows that); this one is the
    record the target answers with, by its stated rule."""


class FailureKind(StrEnum):
    INVALID = "invalid"
    """The CRM refused the values (or we have no field for them); fix the data."""
    CONFLICT = "conflict"
    """A record with this key exists already (``Failed.existing`` when it was read)."""
    NOT_FOUND = "not_found"
    """The id names no record (deleted or merged)."""
    NOT_SENT = "not_sent"
    """Refused together with another input of its batch, or not sent because the budget ran
    out: nothing was written, and sending it again is safe."""
    TRANSIENT = "transient"
    """The CRM kept failing for the whole retry window; a later run may succeed."""


@dataclass(frozen=True)
class Written:
    """An input the CRM accepted."""

    index: int
    """Position of the input in the list passed to the call."""
    id: str
    created: bool
    """True when the CRM created a new record, False when it updated an existing one."""


@dataclass(frozen=True)
class Failed:
    """An input the CRM did not take, and why."""

    index: int
    kind: FailureKind
    message: str
    existing: CrmRecord | None = None
    """For CONFLICT: the record the CRM holds under the key, when it was read."""

    @property
    def retryable(self) -> bool:
        return self.kind in (FailureKind.NOT_SENT, FailureKind.TRANSIENT)


@dataclass
class BatchResult:
    successful: list[Written] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    exhausted: BudgetExhausted | None = None
    """Set when the account's budget ran out during the call: the inputs it did not reach are
    failed as NOT_SENT, and the caller should stop until the budget resets."""

    def extend(self, other: BatchResult) -> None:
        self.successful.extend(other.successful)
        self.failed.extend(other.failed)
        self.exhausted = self.exhausted or other.exhausted

    def sort(self) -> BatchResult:
        self.successful.sort(key=lambda w: w.index)
        self.failed.sort(key=lambda f: f.index)
        return self


@dataclass(frozen=True)
class Item:
    """One input on its way to the CRM."""

    index: int
    record: Record
    """Our fields (blank values are never sent unless clearing)."""
    key: str | None = None
    """The normalized dedupe key (``entities.normalize_key``)."""
    id: str | None = None
    """The CRM id, for updates and removals."""


@dataclass(frozen=True)
class Link:
    """A link between two CRM records, from a record of one entity to one of another."""

    from_id: str
    to_id: str


@dataclass(frozen=True)
class LinkItem:
    """One link on its way to the CRM; ``index`` is its position in the caller's list."""

    index: int
    link: Link


@dataclass(frozen=True)
class NoteParent:
    """The record a note is attached to."""

    entity: Entity
    id: str


@dataclass(frozen=True)
class CrmList:
    """A named list of records in the CRM."""

    id: str
    name: str


@dataclass
class ListResult:
    """What adding records to a list did."""

    name: str
    added: int = 0
    already: int = 0
    """Records the list held before (never added twice)."""
    failed: list[Failed] = field(default_factory=list)
    """Indexes are positions in the ids given."""
    exhausted: BudgetExhausted | None = None


@dataclass(frozen=True)
class Estimate:
    """What some work would cost in the CRM's budget unit."""

    requests: int
    units: int
    unit: str
    """``requests`` or ``tokens``."""


@dataclass(frozen=True)
class Work:
    """How much a push would do, for ``estimate``."""

    lookups: int = 0
    reads: int = 0
    creates: int = 0
    updates: int = 0
    links: int = 0
    """Links made by separate calls (ASSOCIATION style, records that existed)."""


class Dialect(ABC):
    """One CRM's requests and answers, as operations (see ``http/exchange.py``).

    Each write method gets at most ``capabilities.batch_size`` items and each read at most
    ``capabilities.lookup_batch_size`` values; the runner does the batching, the concurrency, and
    the settling of creates whose outcome was unclear (it reads them back by key and resends only
    what is absent). A create whose answer was lost is listed in ``CreateResult.unconfirmed``, a
    batch refused for keys that exist in ``CreateResult.conflicted``; the runner settles both.
    """

    capabilities: Capabilities

    @abstractmethod
    def unmapped(self, entity: Entity, record: Record) -> list[str]:
        """Our fields of ``record`` the CRM has no field for (never sent)."""

    @abstractmethod
    def check(self) -> Operation[None]:
        """One cheap call that proves the token is accepted and the CRM answers."""

    @abstractmethod
    def lookup(
        self, entity: Entity, values: Sequence[str], by: str
    ) -> Operation[dict[str, CrmRecord]]:
        """Records whose field ``by`` (one of ours: ``email``, ``domain``, ``name``...) equals one
        of ``values``, keyed by ``normalize_key`` of the CRM's value. Where the CRM holds several,
        the one created first."""

    def search(self, entity: Entity, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        """Every record whose field ``by`` equals one of ``values`` (all of them, where the CRM
        holds several): how the creates of records without a unique key (tasks, notes, deals)
        whose answers were lost are found again."""
        raise TypeError(f"this CRM cannot search {entity} by {by}")

    def read_links(
        self, entity: Entity, ids: Sequence[str], to: Entity
    ) -> Operation[dict[str, set[str]]]:
        """ASSOCIATION style: the ids of the ``to`` records each record is linked to."""
        raise TypeError("this CRM links records through their fields")

    def add_links(
        self, entity: Entity, to: Entity, links: Sequence[LinkItem]
    ) -> Operation[BatchResult]:
        """ASSOCIATION style: link records (a link that exists already is left as it is)."""
        raise TypeError("this CRM links records through their fields")

    def remove_links(
        self, entity: Entity, to: Entity, links: Sequence[LinkItem]
    ) -> Operation[BatchResult]:
        """ASSOCIATION style: unlink records (rollback of links an import made)."""
        raise TypeError("this CRM links records through their fields")

    @abstractmethod
    def read(self, entity: Entity, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        """Records by CRM id (absent ids: deleted, archived or never there), keyed by id."""

    @abstractmethod
    def create(self, entity: Entity, items: Sequence[Item]) -> Operation[CreateResult]:
        """Create records; an input whose key exists fails with CONFLICT where the CRM
        refuses duplicates. Never resends a create whose outcome is unclear."""

    @abstractmethod
    def update(
        self, entity: Entity, items: Sequence[Item], *, clear_blanks: bool
    ) -> Operation[BatchResult]:
        """Update by id; blank values are left out unless ``clear_blanks`` (rollback)."""

    def upsert(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Create or update by key in one call (only for ``capabilities.native_upsert``)."""
        raise TypeError(f"this CRM has no native upsert for {entity}")

    def fields(self, entity: Entity) -> Operation[frozenset[str]]:
        """Our fields of ``entity`` the CRM has a place for (columns feeding the others are
        reported as not sent), link fields included where it links records, and the names of
        the CRM's own custom fields a column named like one may feed; a CRM whose places depend
        on the account may ask it."""
        yield from ()
        spec = ENTITY_SPECS[entity]
        ours = (*spec.fields, *spec.link_fields)
        missing = set(self.unmapped(entity, dict.fromkeys(ours, "")))
        return frozenset(name for name in ours if name not in missing)

    def find_list(self, name: str, entity: Entity, *, create: bool) -> Operation[CrmList]:
        """The list called ``name`` (created when absent and ``create``) that holds records of
        ``entity`` (only for ``capabilities.lists``); ``UserInputError`` when there is none."""
        raise TypeError("this CRM has no lists")

    def list_members(self, crm_list: CrmList, entity: Entity) -> Operation[frozenset[str]]:
        """CRM ids of the records the list holds."""
        raise TypeError("this CRM has no lists")

    def add_to_list(
        self, crm_list: CrmList, entity: Entity, items: Sequence[Item]
    ) -> Operation[BatchResult]:
        """Add the records (``Item.id``) to the list; safe to repeat: a record is never in it
        twice."""
        raise TypeError("this CRM has no lists")

    @abstractmethod
    def remove(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Delete (or archive) by id, as ``capabilities.delete`` says."""

    @abstractmethod
    def add_note(self, body: str, parent: NoteParent | None) -> Operation[str]:
        """Write a note (attached to ``parent`` where given); its id."""

    @abstractmethod
    def estimate(self, entity: Entity, work: Work) -> Estimate:
        """What ``work`` on ``entity`` would cost."""


@dataclass
class CreateResult(BatchResult):
    unconfirmed: list[Item] = field(default_factory=list)
    """Creates whose answer was lost: they may or may not exist now."""
    conflicted: list[Item] = field(default_factory=list)
    """A batch refused as a whole because some of its keys exist (which ones, the CRM did not
    say): nothing of it was written."""


class Target(ABC):
    """A CRM that bulk_pipeline can write to; every method batches its inputs itself.

    Per-record failures are returned, never raised. Whole-call problems raise the kinds of
    ``errors.py``: ``TargetConfigError`` (token refused), ``TransientError`` (the CRM failed for
    the whole retry window), ``BudgetExhausted`` (from reads; writes report it in the result).
    """

    name: str
    """The registry name it was opened by (``sandbox``...)."""
    account: str
    """Which CRM account it writes to, without secrets: sync state and budgets are kept per
    account."""
    capabilities: Capabilities

    @abstractmethod
    def check(self) -> None:
        """Preflight: the credentials are accepted and the CRM answers (one cheap call)."""

    @abstractmethod
    def lookup(
        self, entity: Entity, values: Sequence[str], by: str | None = None
    ) -> dict[str, CrmRecord]:
        """Existing records by the value of field ``by`` (default: the key field), keyed by
        ``normalize_key`` of the value (the caller's keys)."""

    @abstractmethod
    def search(self, entity: Entity, values: Sequence[str], by: str) -> list[CrmRecord]:
        """Every record whose field ``by`` equals one of ``values`` (several per value where the
        CRM holds several)."""

    @abstractmethod
    def read(self, entity: Entity, ids: Sequence[str]) -> dict[str, CrmRecord]:
        """Existing records by CRM id; ids the CRM no longer holds are absent."""

    @abstractmethod
    def create(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        """Create records; never creates one twice, even when an answer is lost."""

    @abstractmethod
    def update(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        """Update ``ids[i]`` with ``records[i]``; blanks are not sent unless ``clear_blanks``."""

    @abstractmethod
    def upsert(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        """Create or update by key; natively where the CRM can, else lookup then write."""

    @abstractmethod
    def remove(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        """Delete or archive by id (see ``capabilities.delete``)."""

    @abstractmethod
    def fields(self, entity: Entity) -> frozenset[str]:
        """Our fields of ``entity`` the CRM has a place for, and its custom fields' names."""

    @abstractmethod
    def find_list(self, name: str, entity: Entity, *, create: bool = False) -> CrmList:
        """The named list for records of ``entity`` (see ``capabilities.lists``)."""

    @abstractmethod
    def add_to_list(
        self, name: str, entity: Entity, ids: Sequence[str], *, create: bool = False
    ) -> ListResult:
        """Add records to a named list, each once however often this is called."""

    @abstractmethod
    def read_links(self, entity: Entity, ids: Sequence[str], to: Entity) -> dict[str, set[str]]:
        """ASSOCIATION style: ids of the ``to`` records each of ``ids`` is linked to."""

    @abstractmethod
    def add_links(self, entity: Entity, to: Entity, links: Sequence[Link]) -> BatchResult:
        """ASSOCIATION style: link records; per-link results by position."""

    @abstractmethod
    def remove_links(self, entity: Entity, to: Entity, links: Sequence[Link]) -> BatchResult:
        """ASSOCIATION style: unlink records; per-link results by position."""

    @abstractmethod
    def add_note(self, body: str, parent: NoteParent | None = None) -> str: ...

    @abstractmethod
    def estimate(self, entity: Entity, work: Work) -> Estimate: ...

    @abstractmethod
    def budget(self) -> list[LimitState]:
        """What the account's budget has left."""

    @abstractmethod
    def crm_now(self) -> datetime | None:
        """The CRM's own current time, from its last answer (None before any)."""

    def close(self) -> None:  # noqa: B027 - optional hook; targets without resources need nothing
        """Release connections."""
