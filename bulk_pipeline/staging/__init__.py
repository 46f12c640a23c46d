"""Staging: the pipeline's memory, behind one protocol.

The store is the one owner of an import's state, of the sync state per CRM account (which record
each key was last written to), of the outcome of every input line, and of the change log the push
writes before each change and rollback undoes. No SQL lives outside its implementations, which
share their statements (``sql_store.py``): ``duckdb_store.py``, the embedded default (one file
under the data home, one writer process at a time), and ``postgres_store.py``, chosen by
``BULK_PIPELINE_DATABASE_URL`` (many runs at once, on many machines).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.outcomes import (
    Change,
    ChangeState,
    ImportState,
    ImportStatus,
    Intent,
    LineOutcome,
    LinkChange,
    LinkState,
    OnDuplicate,
    OutcomeCounts,
    PendingRecord,
    Proof,
    PushOutcome,
    ReferenceMatch,
    StageResult,
)


@dataclass(frozen=True)
class StagingRows:
    """One sheet's rows of an entity, as Parquet files the store reads a chunk at a time (or
    has its database read)."""

    sheet: str
    """The sheet's (or JSON key's) name; empty for a file with one table."""
    valid: Path
    """Valid rows as ``keys.keyed`` makes them: position, key, fields, reference values."""
    invalid: Path
    """``_line`` and ``reason`` of every line that will not be written."""


LinePosition = tuple[str, int, str]
"""Where a line's outcome is in the order of ``line_outcomes``: sheet, line, entity."""


@dataclass(frozen=True)
class VanishedKey:
    """A key a previous sync had and the current one does not."""

    key: str
    crm_id: str | None
    created_by: str | None
    """The import that created its CRM record, when this pipeline did."""
    created_run: int = 1
    """The run of ``created_by`` that created it."""


class StagingStore(Protocol):
    """What the pipeline keeps between steps, runs and crashes."""

    concurrent_readers: bool
    """Whether other processes may read the store while a run writes it (status may then
    read import states from it)."""

    def import_lock(self, import_id: str) -> AbstractContextManager[None]:
        """Held while a run stages, pushes or rolls back the import: a second run of the same
        import waits until the first lets go, so two runs never push it at once. A run that
        dies lets go."""

    def write_lock(self, account: str, entity: Entity) -> AbstractContextManager[None]:
        """Held while a push finds, writes and checkpoints a chunk of records the CRM would
        take twice (it refuses no duplicate of their key): two imports sharing a record (a
        company both name) never both find it absent and create it. A run that dies lets go."""

    # import state --------------------------------------------------------------------------

    def begin_run(self, import_id: str) -> int:
        """Mark the import running; the run number continues an unfinished run, else the next
        one, whose lines start without outcomes (outcomes and resume state belong to a run;
        rollback undoes every run)."""

    def set_state(
        self,
        import_id: str,
        state: ImportState,
        *,
        reason: str | None = None,
        resume_at: datetime | None = None,
    ) -> None: ...

    def status(self, import_id: str) -> ImportStatus | None: ...

    def statuses(self, import_ids: Sequence[str] | None = None) -> dict[str, ImportStatus]:
        """States of the given imports (default: all) that the store knows."""

    # staging and the push ------------------------------------------------------------------

    def stage(
        self,
        import_id: str,
        entity: Entity,
        rows: Sequence[StagingRows],
        *,
        account: str,
        source_file: str,
        on_duplicate: OnDuplicate,
    ) -> StageResult:
        """Stage valid rows of one entity (one record per dedupe key, rows of every sheet that
        holds the entity together) and record one outcome per input line (sheet, entity,
        line). The rows are read a chunk at a time; the store holds what does not fit its
        memory on disk."""

    def resolve(
        self, entity: Entity, refs: Sequence[str], *, account: str, import_id: str
    ) -> dict[str, list[ReferenceMatch]]:
        """Staged records of ``entity`` that reference values (``domain:acme.com``) name, with
        their CRM ids and, when ``import_id`` staged them, their outcome there."""

    def pending(self, import_id: str, entity: Entity, *, account: str) -> list[PendingRecord]:
        """This import's records that have no final outcome yet, in line order."""

    def staged(self, import_id: str, entity: Entity, *, account: str) -> list[PendingRecord]:
        """Every record this import staged (for a dry run)."""

    def record_pages(
        self, import_id: str, entity: Entity, *, account: str, rows: int, staged: bool = False
    ) -> Iterator[list[PendingRecord]]:
        """``pending`` (or with ``staged``, ``staged``) a page of ``rows`` at a time, in line
        order, as the records are when the first page is read: a push holds a page, never
        every record of a large import, and its checkpoints do not move the pages."""

    def checkpoint(
        self,
        import_id: str,
        entity: Entity,
        outcomes: Sequence[PushOutcome],
        *,
        account: str,
        run: int,
        done: Mapping[str, str],
    ) -> None:
        """Save what the CRM answered for one chunk, and mark its changes done (CRM id by key),
        in one transaction: what was acknowledged is never sent again."""

    def record_intents(
        self,
        import_id: str,
        entity: Entity,
        intents: Sequence[Intent],
        *,
        account: str,
        run: int,
        sent_at: datetime | None,
        proof: Proof,
    ) -> None:
        """Write changes down before sending them, with the CRM's time and what the push knew
        (``proof``); within a run the first capture of a key wins."""

    def discard_intents(
        self, import_id: str, entity: Entity, keys: Sequence[str], *, account: str, run: int
    ) -> None:
        """Forget intents whose write the CRM refused as a whole (nothing was written)."""

    def recorded_in_run(self, import_id: str, *, account: str, run: int) -> bool:
        """Whether the run of the import recorded any change or link yet (an earlier attempt
        of it was interrupted)."""

    def changes(
        self,
        import_id: str,
        *,
        account: str,
        run: int | None = None,
        entity: Entity | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[Change]:
        """Every change of every run of the import, newest run first (of one run, entity or
        set of keys, when given)."""

    def mark_changes(
        self,
        import_id: str,
        entity: Entity,
        ids_by_key: Mapping[str, str],
        *,
        account: str,
        run: int,
        state: ChangeState,
    ) -> None: ...

    def forget_pushes(self, entity: Entity, keys: Sequence[str], *, account: str) -> None:
        """The CRM no longer holds these records (rolled back): the next import writes them."""

    def crm_ids(self, entity: Entity, keys: Sequence[str], *, account: str) -> dict[str, str]:
        """The CRM id each key was last written to in the account, by any import (keys never
        written are left out): what a push that read its records earlier may have missed."""

    # links (CRMs that link records by separate calls) ---------------------------------------

    def record_links(
        self, import_id: str, links: Sequence[LinkChange], *, account: str, run: int
    ) -> None:
        """Write links down: before an association call (intended), after it (done), or as
        found in the CRM."""

    def links(
        self,
        import_id: str,
        *,
        account: str | None = None,
        run: int | None = None,
        entity: Entity | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[LinkChange]:
        """Every link of every run of the import (in ``account``, or any), newest run first
        (of one run, entity or set of keys, when given)."""

    def link_counts(self, import_id: str) -> dict[LinkState, int]:
        """Links of every run of the import, per state."""

    def known_links(
        self, entity: Entity, reference: str, from_ids: Sequence[str], *, account: str
    ) -> set[tuple[str, str]]:
        """(from id, to id) of links any import made or found, not rolled back."""

    def discard_links(
        self, import_id: str, links: Sequence[LinkChange], *, account: str, run: int
    ) -> None:
        """Forget link intents the CRM refused."""

    # outcomes ------------------------------------------------------------------------------

    def outcome_counts(self, import_id: str, *, entity: Entity | None = None) -> OutcomeCounts:
        """Lines per outcome (of one entity's, when given)."""

    def line_outcomes(
        self,
        import_id: str,
        *,
        outcomes: Sequence[LineOutcome] | None = None,
        entity: Entity | None = None,
        after: LinePosition | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """Lines with their outcome, ``sheet, line, entity, key, outcome, reason, crm_id``, in
        the order of sheet, line and entity: those with one of ``outcomes`` (of ``entity``),
        after the position ``after`` (a page's last line), at most ``limit`` of them."""

    # recurring syncs -----------------------------------------------------------------------

    def last_completed(self, prefix: str, *, before: str) -> str | None:
        """The newest completed import whose id starts with ``prefix`` and sorts before
        ``before`` (a source's previous day)."""

    def vanished(
        self, previous: str, current: str, entity: Entity, *, account: str
    ) -> tuple[list[VanishedKey], int]:
        """Keys of ``previous`` that ``current`` no longer has; and how many ``previous`` had."""


def open_store(location: Path | None = None, *, database_url: str | None = None) -> StagingStore:
    """The DuckDB file at ``location`` when given; else the Postgres database at
    ``database_url`` or ``$BULK_PIPELINE_DATABASE_URL``; else the DuckDB file under the data
    home, within the configured memory limit (``config.staging_memory``), spilling under the
    data home (``config.spill_dir``)."""
    url = database_url or config.database_url()
    if location is None and url:
        from bulk_pipeline.staging.postgres_store import PostgresStore

        return PostgresStore(url)
    from bulk_pipeline.staging.duckdb_store import DuckDBStore

    return DuckDBStore(
        location or config.staging_db_path(),
        memory_limit=config.staging_memory(),
        temp_directory=config.spill_dir(),
    )


def line_pages(
    store: StagingStore,
    import_id: str,
    rows: int,
    *,
    outcomes: Sequence[LineOutcome] | None = None,
    entity: Entity | None = None,
) -> Iterator[pl.DataFrame]:
    """``line_outcomes`` a page of ``rows`` at a time, in their order (a report holds a page,
    never every line of a large import)."""
    after: LinePosition | None = None
    while True:
        page = store.line_outcomes(
            import_id, outcomes=outcomes, entity=entity, after=after, limit=rows
        )
        if page.height:
            yield page
        if page.height < rows:
            return
        sheet, line, of = page.row(-1)[:3]
        after = (str(sheet), int(line), str(of))


__all__ = [
    "LinePosition",
    "StagingRows",
    "StagingStore",
    "VanishedKey",
    "line_pages",
    "open_store",
]
