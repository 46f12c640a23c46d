"""The one small interface every CRM target implements, and the per-record result types.

Records are plain mappings of *our* field names (see ``entities.py``) to string values. A target
maps them to its CRM's property names, sends them in batches, and answers with one outcome per
input, in the shape CRM SDK users know: ``result.successful`` and ``result.failed``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bulk_pipeline.entities import Entity

Record = Mapping[str, str | None]


@dataclass(frozen=True)
class CrmRecord:
    """A record as the CRM holds it, in our field names."""

    id: str
    fields: dict[str, str | None]
    created_at: datetime | None = None
    """When the CRM created it: tells a record this pipeline created from one it found."""


@dataclass(frozen=True)
class WrittenRecord:
    """An input the CRM accepted."""

    index: int
    """Position of the input in the list passed to the call."""
    input: Record
    id: str
    created: bool
    """True when the CRM created a new record, False when it updated an existing one."""


@dataclass(frozen=True)
class FailedRecord:
    """An input the CRM rejected, or that could not be written after all retries."""

    index: int
    input: Record
    category: str
    """HubSpot-style category: VALIDATION_ERROR, CONFLICT, OBJECT_NOT_FOUND, TRANSPORT_ERROR..."""
    message: str
    retryable: bool = False
    """True when the failure is transient (5xx, timeouts) and a later run may succeed."""


@dataclass
class BatchResult:
    successful: list[WrittenRecord] = field(default_factory=list)
    failed: list[FailedRecord] = field(default_factory=list)

    def extend(self, other: BatchResult) -> None:
        self.successful.extend(other.successful)
        self.failed.extend(other.failed)


@dataclass
class ReadResult:
    found: dict[str, CrmRecord] = field(default_factory=dict)
    """Keyed by the id or unique-key value that was asked for (unique keys lower-cased)."""
    missing: list[str] = field(default_factory=list)


class CrmTarget(ABC):
    """A CRM that bulk_pipeline can write to.

    Every method takes any number of inputs and batches them itself; per-record failures are
    returned, never raised. Only a failure that makes the whole call meaningless (bad token,
    unreachable CRM after all retries) raises ``CrmError``.
    """

    name: str

    @abstractmethod
    def key_field(self, entity: Entity) -> str:
        """Our field name of the CRM's unique key for ``entity`` (e.g. ``email``)."""

    @abstractmethod
    def find_by_keys(self, entity: Entity, keys: Sequence[str]) -> ReadResult:
        """Look up existing records by unique-key value, in batches."""

    @abstractmethod
    def get_many(
        self, entity: Entity, ids: Sequence[str], *, id_field: str | None = None
    ) -> ReadResult:
        """Read records by CRM id, or by a unique field when ``id_field`` is given."""

    @abstractmethod
    def create_many(
        self,
        entity: Entity,
        records: Sequence[Record],
        *,
        known_absent: bool = False,
        isolate_conflicts: bool = True,
    ) -> BatchResult:
        """Create records; an input whose key already exists fails with category CONFLICT.

        ``known_absent``: the caller has just looked the keys up, so the target need not.
        ``isolate_conflicts=False``: a batch refused for an existing key fails whole (nothing
        written) instead of being split to write the rest, for callers that fall back to a lookup.
        """

    def enforces_unique_keys(self, entity: Entity) -> bool:
        """True when the CRM itself refuses a second record with the same key (so an optimistic
        create is safe); False means duplicates are only prevented by looking up first."""
        return False

    @abstractmethod
    def update_many(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        """Update the records with the given CRM ids (``ids[i]`` goes with ``records[i]``).

        Blank values are not sent unless ``clear_blanks``, which empties those fields (rollback).
        """

    @abstractmethod
    def upsert_many(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        """Create or update by unique key; never creates a second record for a key."""

    @abstractmethod
    def archive_many(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        """Archive (soft-delete) records by CRM id."""

    @abstractmethod
    def add_note(self, body: str) -> str:
        """Write a free-standing note (an import's summary, as CRM admins expect); its id."""

    def close(self) -> None:  # noqa: B027 - optional hook; targets without resources need nothing
        """Release connections."""


class AsyncCrmTarget(ABC):
    """The async twin of :class:`CrmTarget`: same calls and results, batches sent concurrently."""

    name: str

    @abstractmethod
    def key_field(self, entity: Entity) -> str:
        """Our field name of the CRM's unique key for ``entity``."""

    @abstractmethod
    async def find_by_keys(self, entity: Entity, keys: Sequence[str]) -> ReadResult:
        """See :meth:`CrmTarget.find_by_keys`."""

    @abstractmethod
    async def get_many(
        self, entity: Entity, ids: Sequence[str], *, id_field: str | None = None
    ) -> ReadResult:
        """See :meth:`CrmTarget.get_many`."""

    @abstractmethod
    async def create_many(
        self,
        entity: Entity,
        records: Sequence[Record],
        *,
        known_absent: bool = False,
        isolate_conflicts: bool = True,
    ) -> BatchResult:
        """See :meth:`CrmTarget.create_many`."""

    @abstractmethod
    async def update_many(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        """See :meth:`CrmTarget.update_many`."""

    @abstractmethod
    async def upsert_many(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        """See :meth:`CrmTarget.upsert_many`."""

    @abstractmethod
    async def archive_many(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        """See :meth:`CrmTarget.archive_many`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, like CrmTarget.close
        """Release connections."""


class CrmError(Exception):
    """The CRM call as a whole failed (auth, unreachable after retries). Never carries a token."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
