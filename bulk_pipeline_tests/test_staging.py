from pathlib import Path

import polars as pl
import pytest

from bulk_pipeline import staging
from bulk_pipeline.entities import Entity
from bulk_pipeline.staging import (
    OnDuplicate,
    Outcome,
    PushOutcome,
    import_rows,
    mark_import,
    outcome_counts,
    plan_push,
    record_push_outcomes,
    stage_import,
)

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


def _stage(db: Path, frame: pl.DataFrame, strategy: OnDuplicate, import_id: str = "imp-1") -> None:
    stage_import(
        db,
        Entity.CONTACTS,
        frame,
        NO_INVALID,
        import_id=import_id,
        target="sandbox",
        source_file="contacts.csv",
        on_duplicate=strategy,
    )


def _staged_fields(db: Path, key: str) -> dict[str, str]:
    pending = {
        p.key: p for p in plan_push(db, Entity.CONTACTS, import_id="imp-1", target="sandbox")
    }
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
    db = tmp_path / "staging.duckdb"
    _stage(db, DUPLICATED, strategy)

    assert _staged_fields(db, "a@x.com") == expected
    lines = import_rows(db, "imp-1")
    duplicates = lines.filter(pl.col("outcome") == "duplicate")
    assert sorted(duplicates["line"].to_list()) == sorted({2, 4, 5} - {kept_line})
    assert all(f"line {kept_line}" in reason for reason in duplicates["reason"].to_list())
    assert lines.height == DUPLICATED.height


def test_pushed_records_are_unchanged_on_the_next_run_and_changes_are_pending(
    tmp_path: Path,
) -> None:
    db = tmp_path / "staging.duckdb"
    _stage(db, DUPLICATED, OnDuplicate.SKIP)
    pending = plan_push(db, Entity.CONTACTS, import_id="imp-1", target="sandbox")
    record_push_outcomes(
        db,
        Entity.CONTACTS,
        [
            PushOutcome(p.key, Outcome.CREATED, crm_id=str(i), content_hash=p.content_hash)
            for i, p in enumerate(pending)
        ],
        import_id="imp-1",
        target="sandbox",
    )
    mark_import(db, "imp-1", "completed")

    _stage(db, DUPLICATED, OnDuplicate.SKIP)
    assert plan_push(db, Entity.CONTACTS, import_id="imp-1", target="sandbox") == []
    assert outcome_counts(db, "imp-1")["unchanged"] == 2

    changed = DUPLICATED.with_columns(
        pl.when(pl.col("email") == "b@x.com")
        .then(pl.lit("Bobby"))
        .otherwise(pl.col("first_name"))
        .alias("first_name")
    )
    _stage(db, changed, OnDuplicate.SKIP, import_id="imp-2")
    again = plan_push(db, Entity.CONTACTS, import_id="imp-2", target="sandbox")
    assert [p.key for p in again] == ["b@x.com"]
    assert again[0].crm_id is not None
    other_target = plan_push(db, Entity.CONTACTS, import_id="imp-2", target="hubspot:x")
    assert other_target == []


def test_an_unfinished_import_keeps_what_it_already_wrote(tmp_path: Path) -> None:
    db = tmp_path / "staging.duckdb"
    _stage(db, DUPLICATED, OnDuplicate.SKIP)
    first = plan_push(db, Entity.CONTACTS, import_id="imp-1", target="sandbox")[0]
    record_push_outcomes(
        db,
        Entity.CONTACTS,
        [PushOutcome(first.key, Outcome.CREATED, crm_id="7", content_hash=first.content_hash)],
        import_id="imp-1",
        target="sandbox",
    )

    _stage(db, DUPLICATED, OnDuplicate.SKIP)
    remaining = plan_push(db, Entity.CONTACTS, import_id="imp-1", target="sandbox")

    assert [p.key for p in remaining] == ["b@x.com"]
    assert outcome_counts(db, "imp-1")["created"] == 1


def test_invalid_lines_are_recorded_with_their_reason(tmp_path: Path) -> None:
    db = tmp_path / "staging.duckdb"
    invalid = pl.DataFrame({"_line": [9], "reason": ["email 'x' is not a valid email address"]})
    stage_import(
        db,
        Entity.CONTACTS,
        DUPLICATED,
        invalid,
        import_id="imp-1",
        target="sandbox",
        source_file="contacts.csv",
        on_duplicate=OnDuplicate.SKIP,
    )
    counts = outcome_counts(db, "imp-1")
    assert counts["invalid"] == 1
    assert counts["pending"] == 2
    assert counts["duplicate"] == 2


def test_staging_in_slices_gives_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, sliced = tmp_path / "whole.duckdb", tmp_path / "sliced.duckdb"
    _stage(whole, DUPLICATED, OnDuplicate.MERGE)
    monkeypatch.setattr(staging, "STAGE_SLICE_ROWS", 1)
    _stage(sliced, DUPLICATED, OnDuplicate.MERGE)

    def records(db: Path) -> list[tuple[str, dict[str, str]]]:
        pending = plan_push(db, Entity.CONTACTS, import_id="imp-1", target="sandbox")
        return sorted((p.key, p.fields) for p in pending)

    assert records(sliced) == records(whole)
    assert len(records(sliced)) == 2
    assert outcome_counts(sliced, "imp-1") == outcome_counts(whole, "imp-1")
