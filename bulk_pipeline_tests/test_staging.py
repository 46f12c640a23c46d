from pathlib import Path

import polars as pl
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.outcomes import ImportState, LineOutcome, OnDuplicate, PushOutcome
from bulk_pipeline.staging import duckdb_store
from bulk_pipeline.staging.duckdb_store import DuckDBStore

NO_INVALID = pl.DataFrame(schema={"_line": pl.Int64, "reason": pl.String})


def _contacts(rows: list[tuple[int, str, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_line": [r[0] for r in rows],
            "email": [r[1] for r in rows],
            "first_name": [r[2] for r in rows],
            "phone": [r[3] for r in rows],
        },
        schema={"_line": pl.Int64, "email": pl.String, "first_name": pl.String, "phone": pl.String},
    )


DUPLICATED = _contacts(
    [
        (2, "a@x.com", "Ann", None),
        (3, "b@x.com", "Bob", "+111"),
        (4, "a@x.com", None, "+222"),
        (5, "a@x.com", "Anna", None),
    ]
)


def _stage(
    store: DuckDBStore,
    frame: pl.DataFrame,
    strategy: OnDuplicate,
    import_id: str = "imp-1",
    entity: Entity = Entity.CONTACTS,
) -> None:
    store.begin_run(import_id)
    store.stage(
        import_id,
        entity,
        frame,
        NO_INVALID,
        account="sandbox",
        source_file="contacts.csv",
        on_duplicate=strategy,
    )


def _staged_fields(store: DuckDBStore, key: str) -> dict[str, str]:
    pending = {p.key: p for p in store.pending("imp-1", Entity.CONTACTS, account="sandbox")}
    return pending[key].fields


@pytest.mark.parametrize(
    ("strategy", "expected", "kept_line"),
    [
        (OnDuplicate.SKIP, {"email": "a@x.com", "first_name": "Ann"}, 2),
        (OnDuplicate.UPDATE, {"email": "a@x.com", "first_name": "Anna"}, 5),
        (OnDuplicate.MERGE, {"email": "a@x.com", "first_name": "Ann", "phone": "+222"}, 2),
    ],
)
def test_duplicates_follow_the_strategy_and_are_each_counted(
    tmp_path: Path, strategy: OnDuplicate, expected: dict[str, str], kept_line: int
) -> None:
    store = DuckDBStore(tmp_path / "staging.duckdb")
    _stage(store, DUPLICATED, strategy)

    assert _staged_fields(store, "a@x.com") == expected
    lines = store.line_outcomes("imp-1")
    duplicates = lines.filter(pl.col("outcome") == "duplicate")
    assert sorted(duplicates["line"].to_list()) == sorted({2, 4, 5} - {kept_line})
    assert all(f"line {kept_line}" in reason for reason in duplicates["reason"].to_list())
    assert lines.height == DUPLICATED.height


def test_keys_that_differ_only_in_case_spacing_or_folding_are_one_record(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "staging.duckdb")
    companies = pl.DataFrame(
        {"_line": [2, 3, 4, 5], "name": ["Straße Pilot", "STRASSE  pilot", "ΣΊΣΥΦΟΣ", "σίσυφος"]},
        schema={"_line": pl.Int64, "name": pl.String},
    )
    _stage(store, companies, OnDuplicate.SKIP, entity=Entity.COMPANIES)

    pending = store.pending("imp-1", Entity.COMPANIES, account="sandbox")
    assert [(p.key, p.fields["name"]) for p in pending] == [
        ("name:strasse pilot", "Straße Pilot"),
        ("name:σίσυφοσ", "ΣΊΣΥΦΟΣ"),
    ]
    assert store.outcome_counts("imp-1")[LineOutcome.DUPLICATE] == 2


def test_a_completed_import_run_again_starts_a_new_run_that_reads_back_what_it_wrote(
    tmp_path: Path,
) -> None:
    store = DuckDBStore(tmp_path / "staging.duckdb")
    _stage(store, DUPLICATED, OnDuplicate.SKIP)
    pending = store.pending("imp-1", Entity.CONTACTS, account="sandbox")
    store.checkpoint(
        "imp-1",
        Entity.CONTACTS,
        [PushOutcome(p.key, LineOutcome.CREATED, crm_id=str(i)) for i, p in enumerate(pending)],
        account="sandbox",
        run=1,
        done={},
    )
    store.set_state("imp-1", ImportState.COMPLETED)

    assert store.begin_run("imp-1") == 2
    _stage(store, DUPLICATED, OnDuplicate.SKIP)
    again = store.pending("imp-1", Entity.CONTACTS, account="sandbox")
    assert {p.key: p.crm_id for p in again} == {"a@x.com": "0", "b@x.com": "1"}
    assert store.outcome_counts("imp-1")[LineOutcome.CREATED] == 0
    other_account = store.pending("imp-1", Entity.CONTACTS, account="hubspot:x")
    assert other_account == []


def test_an_unfinished_import_keeps_what_it_already_wrote(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "staging.duckdb")
    _stage(store, DUPLICATED, OnDuplicate.SKIP)
    first = store.pending("imp-1", Entity.CONTACTS, account="sandbox")[0]
    store.checkpoint(
        "imp-1",
        Entity.CONTACTS,
        [PushOutcome(first.key, LineOutcome.CREATED, crm_id="7")],
        account="sandbox",
        run=1,
        done={},
    )
    store.set_state("imp-1", ImportState.FAILED, reason="the CRM went away")

    assert store.begin_run("imp-1") == 1
    _stage(store, DUPLICATED, OnDuplicate.SKIP)
    remaining = store.pending("imp-1", Entity.CONTACTS, account="sandbox")

    assert [p.key for p in remaining] == ["b@x.com"]
    assert store.outcome_counts("imp-1")[LineOutcome.CREATED] == 1


def test_invalid_lines_are_recorded_with_their_reason(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "staging.duckdb")
    invalid = pl.DataFrame({"_line": [9], "reason": ["email 'x' is not a valid email address"]})
    store.begin_run("imp-1")
    store.stage(
        "imp-1",
        Entity.CONTACTS,
        DUPLICATED,
        invalid,
        account="sandbox",
        source_file="contacts.csv",
        on_duplicate=OnDuplicate.SKIP,
    )
    counts = store.outcome_counts("imp-1")
    assert counts[LineOutcome.INVALID] == 1
    assert counts[LineOutcome.PENDING] == 2
    assert counts[LineOutcome.DUPLICATE] == 2


def test_staging_in_slices_gives_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = DuckDBStore(tmp_path / "whole.duckdb")
    sliced = DuckDBStore(tmp_path / "sliced.duckdb")
    _stage(whole, DUPLICATED, OnDuplicate.MERGE)
    monkeypatch.setattr(duckdb_store, "STAGE_SLICE_ROWS", 1)
    _stage(sliced, DUPLICATED, OnDuplicate.MERGE)

    def records(store: DuckDBStore) -> list[tuple[str, dict[str, str]]]:
        pending = store.pending("imp-1", Entity.CONTACTS, account="sandbox")
        return sorted((p.key, p.fields) for p in pending)

    assert records(sliced) == records(whole)
    assert len(records(sliced)) == 2
    assert sliced.outcome_counts("imp-1") == whole.outcome_counts("imp-1")
