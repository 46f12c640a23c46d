"""The promises every target keeps, through the real push, rollback and staging store.

Each test runs over every harness (``harnesses.py``): several capability combinations of the
in-memory target, HubSpot against a spec-checked fake transport, and HubSpot against the sandbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from bulk_pipeline.entities import Entity, normalize_key
from bulk_pipeline.outcomes import ChangeAction, ImportState, LineOutcome, OnDuplicate
from bulk_pipeline.push import push_import, rollback_import
from bulk_pipeline.staging.duckdb_store import DuckDBStore
from bulk_pipeline_tests.contract.harnesses import HARNESSES, Harness, open_harness
from bulk_pipeline_tests.staging_rows import staging_rows

NO_INVALID = pl.DataFrame(schema={"_line": pl.Int64, "reason": pl.String})


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with open_harness(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "staging.duckdb")


def contacts(count: int, **changes: str) -> pl.DataFrame:
    rows = [
        {
            "_line": i + 2,
            "email": f"person{i}@example.com",
            "first_name": changes.get(f"first_name_{i}", f"First{i}"),
            "city": "Lyon",
        }
        for i in range(count)
    ]
    return pl.DataFrame(rows, schema_overrides={"_line": pl.Int64})


def run_import(
    store: DuckDBStore,
    harness: Harness,
    frame: pl.DataFrame,
    entity: Entity = Entity.CONTACTS,
    import_id: str = "imp",
) -> dict[LineOutcome, int]:
    """Stage and push one import run to completion; the lines per outcome."""
    store.begin_run(import_id)
    store.stage(
        import_id,
        entity,
        staging_rows(entity, frame, NO_INVALID),
        account=harness.target.account,
        source_file="file.csv",
        on_duplicate=OnDuplicate.SKIP,
    )
    run = store.begin_run(import_id)
    push_import(store, harness.target, [entity], import_id=import_id, run=run, chunk_size=40)
    store.set_state(import_id, ImportState.COMPLETED)
    counts = store.outcome_counts(import_id)
    return {o: counts[o] for o in LineOutcome if counts[o]}


def keys_held(harness: Harness, entity: Entity, key_field: str) -> Counter[str]:
    return Counter(
        normalize_key(fields[key_field])
        for fields in harness.records(entity).values()
        if key_field in fields
    )


def test_a_first_push_creates_each_record_once(harness: Harness, store: DuckDBStore) -> None:
    outcomes = run_import(store, harness, contacts(90))

    assert outcomes == {LineOutcome.CREATED: 90}
    held = keys_held(harness, Entity.CONTACTS, "email")
    assert len(held) == 90
    assert set(held.values()) == {1}


def test_a_re_push_writes_nothing(harness: Harness, store: DuckDBStore) -> None:
    run_import(store, harness, contacts(50))
    writes = harness.writes()

    assert run_import(store, harness, contacts(50)) == {LineOutcome.UNCHANGED: 50}
    assert harness.writes() == writes


def test_a_changed_field_updates_only_that_field(harness: Harness, store: DuckDBStore) -> None:
    run_import(store, harness, contacts(20))
    before = harness.records(Entity.CONTACTS)

    outcomes = run_import(store, harness, contacts(20, first_name_7="Changed"))

    assert outcomes == {LineOutcome.UPDATED: 1, LineOutcome.UNCHANGED: 19}
    after = harness.records(Entity.CONTACTS)
    changed = {i for i in after if after[i] != before[i]}
    assert len(changed) == 1
    (record_id,) = changed
    assert after[record_id] == {**before[record_id], "first_name": "Changed"}
    updates = [c for c in store.changes("imp", account=harness.target.account) if c.run == 2]
    assert [(c.action, c.after, c.before) for c in updates] == [
        (ChangeAction.UPDATE, {"first_name": "Changed"}, {"first_name": "First7"})
    ]


def test_a_lost_answer_never_duplicates(harness: Harness, store: DuckDBStore) -> None:
    harness.lose_create_answers()

    outcomes = run_import(store, harness, contacts(120))

    assert outcomes == {LineOutcome.CREATED: 120}
    held = keys_held(harness, Entity.CONTACTS, "email")
    assert len(held) == 120
    assert set(held.values()) == {1}


def test_a_rollback_restores_the_crm(harness: Harness, store: DuckDBStore) -> None:
    seed = contacts(10).with_columns(
        pl.lit("Before").alias("first_name"), pl.lit(None).alias("city")
    )
    run_import(store, harness, seed, import_id="seed")
    before = harness.records(Entity.CONTACTS)

    outcomes = run_import(store, harness, contacts(25))
    assert outcomes == {LineOutcome.UPDATED: 10, LineOutcome.CREATED: 15}

    report = rollback_import(store, harness.target, import_id="imp")

    assert report.complete
    assert (report.removed, report.restored, report.conflicts) == (15, 10, [])
    assert harness.records(Entity.CONTACTS) == before


@pytest.mark.parametrize("names", [("Straße Pilot", "ΣΊΣΥΦΟΣ", "İstanbul Expansion")])
def test_keys_with_folding_cases_round_trip(
    harness: Harness, store: DuckDBStore, names: tuple[str, ...]
) -> None:
    deals = pl.DataFrame(
        {"_line": [2, 3, 4], "name": list(names), "amount": ["100", "200", "300"]},
        schema_overrides={"_line": pl.Int64},
    )
    assert run_import(store, harness, deals, Entity.DEALS) == {LineOutcome.CREATED: 3}
    writes = harness.writes()

    assert run_import(store, harness, deals, Entity.DEALS) == {LineOutcome.UNCHANGED: 3}
    assert harness.writes() == writes
    found = harness.target.lookup(Entity.DEALS, list(names), by="name")
    assert set(found) == {normalize_key(name) for name in names}
    held = keys_held(harness, Entity.DEALS, "name")
    assert held == Counter({normalize_key(name): 1 for name in names})
