"""Status reads the staging store's typed states where the store takes readers while others write
(PostgreSQL), for imports that ran without runs of their own (a nightly sync's sources)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline.import_state import State, import_states
from bulk_pipeline.outcomes import ImportState
from bulk_pipeline.staging import open_store


@pytest.mark.needs_postgres
def test_imports_without_runs_are_told_by_a_postgres_store(postgres_url: str) -> None:
    store = open_store(database_url=postgres_url)
    resume_at = datetime(2026, 12, 1, tzinfo=UTC)
    store.set_state("sync-crm-2026-05-01", ImportState.COMPLETED)
    store.set_state(
        "sync-crm-2026-05-02", ImportState.STOPPED, reason="daily limit", resume_at=resume_at
    )
    ids = ["sync-crm-2026-05-01", "sync-crm-2026-05-02", "sync-crm-2026-05-03"]

    with dg.DagsterInstance.ephemeral() as instance:
        states = import_states(instance, ids, store)

    assert [(s.state, s.reason) for s in states.values()] == [
        (State.COMPLETED, ""),
        (State.STOPPED, "daily limit"),
        (State.NOT_RUN, ""),
    ]
    assert states["sync-crm-2026-05-01"].when is not None


def test_a_duckdb_store_is_not_read_while_imports_may_hold_it(tmp_path: Path) -> None:
    store = open_store(tmp_path / "staging.duckdb")
    store.set_state("sync-crm-2026-05-01", ImportState.COMPLETED)

    with dg.DagsterInstance.ephemeral() as instance:
        states = import_states(instance, ["sync-crm-2026-05-01"], store)

    assert states["sync-crm-2026-05-01"].state is State.NOT_RUN
