"""The staging store's contract, over every implementation: DuckDB and PostgreSQL.

Each protocol method is exercised here on both stores, so a change to the protocol or to the
shared SQL that breaks one database fails here. The Postgres store runs on the session's
throwaway server (``needs_postgres``), one fresh database per test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bulk_pipeline.entities import Entity
from bulk_pipeline.outcomes import (
    ChangeAction,
    ChangeState,
    ImportState,
    Intent,
    LineOutcome,
    LinkChange,
    LinkState,
    OnDuplicate,
    Proof,
    PushOutcome,
)
from bulk_pipeline.staging import StagingStore, VanishedKey, line_pages, sql_store
from bulk_pipeline_tests.staging_rows import staging_rows

NO_INVALID = pl.DataFrame(schema={"_line": pl.Int64, "reason": pl.String})
ACCOUNT = "sandbox"


@pytest.fixture
def store(new_store: Callable[[str], StagingStore]) -> StagingStore:
    return new_store("staging")


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
    store: StagingStore,
    frame: pl.DataFrame,
    strategy: OnDuplicate = OnDuplicate.SKIP,
    import_id: str = "imp-1",
    entity: Entity = Entity.CONTACTS,
    invalid: pl.DataFrame = NO_INVALID,
) -> int:
    run = store.begin_run(import_id)
    store.stage(
        import_id,
        entity,
        staging_rows(entity, frame, invalid),
        account=ACCOUNT,
        source_file="contacts.csv",
        on_duplicate=strategy,
    )
    return run


def _staged_fields(store: StagingStore, key: str) -> dict[str, str]:
    pending = {p.key: p for p in store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)}
    return pending[key].fields


def _create_all(store: StagingStore, import_id: str = "imp-1", run: int = 1) -> dict[str, str]:
    """Push every pending record as created, the way the push does: intents, then checkpoint."""
    pending = store.pending(import_id, Entity.CONTACTS, account=ACCOUNT)
    ids = {p.key: f"id-{p.key}" for p in pending}
    store.record_intents(
        import_id,
        Entity.CONTACTS,
        [Intent(p.key, ChangeAction.CREATE) for p in pending],
        account=ACCOUNT,
        run=run,
        sent_at=None,
        proof=Proof.OPTIMISTIC,
    )
    store.checkpoint(
        import_id,
        Entity.CONTACTS,
        [PushOutcome(k, LineOutcome.CREATED, crm_id=v) for k, v in ids.items()],
        account=ACCOUNT,
        run=run,
        done=ids,
    )
    return ids


# --- staging ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "expected", "kept_line"),
    [
        (OnDuplicate.SKIP, {"email": "a@x.com", "first_name": "Ann"}, 2),
        (OnDuplicate.UPDATE, {"email": "a@x.com", "first_name": "Anna"}, 5),
        (OnDuplicate.MERGE, {"email": "a@x.com", "first_name": "Ann", "phone": "+222"}, 2),
    ],
)
def test_duplicates_follow_the_strategy_and_are_each_counted(
    store: StagingStore, strategy: OnDuplicate, expected: dict[str, str], kept_line: int
) -> None:
    result = store.stage(
        "imp-1",
        Entity.CONTACTS,
        staging_rows(Entity.CONTACTS, DUPLICATED, NO_INVALID),
        account=ACCOUNT,
        source_file="contacts.csv",
        on_duplicate=strategy,
    )

    assert (result.staged, result.duplicates) == (2, 2)
    assert _staged_fields(store, "a@x.com") == expected
    lines = store.line_outcomes("imp-1")
    duplicates = lines.filter(pl.col("outcome") == "duplicate")
    assert sorted(duplicates["line"].to_list()) == sorted({2, 4, 5} - {kept_line})
    assert all(f"line {kept_line}" in reason for reason in duplicates["reason"].to_list())
    assert lines.height == DUPLICATED.height


def test_keys_that_differ_only_in_case_spacing_or_folding_are_one_record(
    store: StagingStore,
) -> None:
    companies = pl.DataFrame(
        {"_line": [2, 3, 4, 5], "name": ["Straße Pilot", "STRASSE  pilot", "ΣΊΣΥΦΟΣ", "σίσυφος"]},
        schema={"_line": pl.Int64, "name": pl.String},
    )
    _stage(store, companies, entity=Entity.COMPANIES)

    pending = store.pending("imp-1", Entity.COMPANIES, account=ACCOUNT)
    assert [(p.key, p.fields["name"]) for p in pending] == [
        ("name:strasse pilot", "Straße Pilot"),
        ("name:σίσυφοσ", "ΣΊΣΥΦΟΣ"),
    ]
    assert store.outcome_counts("imp-1")[LineOutcome.DUPLICATE] == 2


def test_invalid_lines_are_recorded_with_their_reason(store: StagingStore) -> None:
    invalid = pl.DataFrame({"_line": [9], "reason": ["email 'x' is not a valid email address"]})
    _stage(store, DUPLICATED, invalid=invalid)

    counts = store.outcome_counts("imp-1")
    assert (counts[LineOutcome.INVALID], counts[LineOutcome.PENDING]) == (1, 2)
    assert counts[LineOutcome.DUPLICATE] == 2
    line = store.line_outcomes("imp-1").filter(pl.col("line") == 9).to_dicts()
    assert line == [
        {
            "sheet": "",
            "line": 9,
            "entity": "contacts",
            "key": None,
            "outcome": "invalid",
            "reason": "email 'x' is not a valid email address",
            "crm_id": None,
        }
    ]


def test_staging_in_slices_gives_the_same_records(
    new_store: Callable[[str], StagingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = new_store("whole")
    sliced = new_store("sliced")
    _stage(whole, DUPLICATED, OnDuplicate.MERGE)
    monkeypatch.setattr(sql_store, "STAGE_SLICE_ROWS", 1)
    _stage(sliced, DUPLICATED, OnDuplicate.MERGE)

    def records(store: StagingStore) -> list[tuple[str, dict[str, str]]]:
        pending = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)
        return sorted((p.key, p.fields) for p in pending)

    assert records(sliced) == records(whole)
    assert len(records(sliced)) == 2
    assert sliced.outcome_counts("imp-1") == whole.outcome_counts("imp-1")


def test_staged_and_pending_are_per_account_and_pending_drops_written_lines(
    store: StagingStore,
) -> None:
    _stage(store, DUPLICATED)
    first = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)[0]
    store.checkpoint(
        "imp-1",
        Entity.CONTACTS,
        [PushOutcome(first.key, LineOutcome.CREATED, crm_id="7")],
        account=ACCOUNT,
        run=1,
        done={},
    )

    assert [p.key for p in store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)] == ["b@x.com"]
    staged = store.staged("imp-1", Entity.CONTACTS, account=ACCOUNT)
    assert [(p.key, p.line, p.crm_id) for p in staged] == [
        ("a@x.com", 2, "7"),
        ("b@x.com", 3, None),
    ]
    assert store.staged("imp-1", Entity.CONTACTS, account="hubspot:x") == []


def test_a_failed_record_stays_pending_with_its_reason(store: StagingStore) -> None:
    _stage(store, DUPLICATED)
    store.checkpoint(
        "imp-1",
        Entity.CONTACTS,
        [
            PushOutcome("a@x.com", LineOutcome.FAILED, reason="refused: bad phone"),
            PushOutcome("b@x.com", LineOutcome.UPDATED, crm_id="9"),
        ],
        account=ACCOUNT,
        run=1,
        done={},
    )

    assert [p.key for p in store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)] == ["a@x.com"]
    lines = {r["line"]: r for r in store.line_outcomes("imp-1").to_dicts()}
    assert (lines[2]["outcome"], lines[2]["reason"]) == ("failed", "refused: bad phone")
    assert (lines[3]["outcome"], lines[3]["crm_id"]) == ("updated", "9")


def test_line_outcomes_are_typed_and_in_line_order_even_when_empty(store: StagingStore) -> None:
    empty = store.line_outcomes("nothing")
    _stage(store, DUPLICATED)
    lines = store.line_outcomes("imp-1")

    expected = {
        "sheet": pl.String,
        "line": pl.Int64,
        "entity": pl.String,
        "key": pl.String,
        "outcome": pl.String,
        "reason": pl.String,
        "crm_id": pl.String,
    }
    assert dict(empty.schema) == expected
    assert empty.height == 0
    assert dict(lines.schema) == expected
    assert lines["line"].to_list() == [2, 3, 4, 5]


# --- import state and runs ----------------------------------------------------------------------


def test_a_completed_import_run_again_starts_a_new_run_that_reads_back_what_it_wrote(
    store: StagingStore,
) -> None:
    assert _stage(store, DUPLICATED) == 1
    _create_all(store)
    store.set_state("imp-1", ImportState.COMPLETED)

    assert store.begin_run("imp-1") == 2
    _stage(store, DUPLICATED)
    again = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)
    assert {p.key: p.crm_id for p in again} == {"a@x.com": "id-a@x.com", "b@x.com": "id-b@x.com"}
    assert store.outcome_counts("imp-1")[LineOutcome.CREATED] == 0
    assert store.pending("imp-1", Entity.CONTACTS, account="hubspot:x") == []


def test_an_unfinished_import_keeps_what_it_already_wrote(store: StagingStore) -> None:
    _stage(store, DUPLICATED)
    first = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)[0]
    store.checkpoint(
        "imp-1",
        Entity.CONTACTS,
        [PushOutcome(first.key, LineOutcome.CREATED, crm_id="7")],
        account=ACCOUNT,
        run=1,
        done={},
    )
    store.set_state("imp-1", ImportState.FAILED, reason="the CRM went away")

    assert store.begin_run("imp-1") == 1
    _stage(store, DUPLICATED)
    remaining = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)

    assert [p.key for p in remaining] == ["b@x.com"]
    assert store.outcome_counts("imp-1")[LineOutcome.CREATED] == 1


def test_states_keep_their_reason_resume_time_and_run(store: StagingStore) -> None:
    resume_at = datetime(2026, 12, 1, tzinfo=UTC)
    assert store.status("imp-1") is None
    store.begin_run("imp-1")
    store.set_state("imp-1", ImportState.STOPPED, reason="daily limit spent", resume_at=resume_at)
    store.set_state("imp-2", ImportState.COMPLETED)

    stopped = store.status("imp-1")
    assert stopped is not None
    assert (stopped.state, stopped.run, stopped.reason) == (
        ImportState.STOPPED,
        1,
        "daily limit spent",
    )
    assert stopped.resume_at is not None and stopped.resume_at == resume_at
    assert stopped.updated_at is not None
    assert {i: s.state for i, s in store.statuses().items()} == {
        "imp-1": ImportState.STOPPED,
        "imp-2": ImportState.COMPLETED,
    }
    assert store.begin_run("imp-1") == 1
    status = store.status("imp-1")
    assert status is not None and (status.state, status.reason) == (ImportState.RUNNING, None)


# --- the change log -----------------------------------------------------------------------------


def test_intents_are_written_before_sending_and_marked_done_with_the_crm_id(
    store: StagingStore,
) -> None:
    _stage(store, DUPLICATED)
    sent_at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    store.record_intents(
        "imp-1",
        Entity.CONTACTS,
        [
            Intent("a@x.com", ChangeAction.CREATE),
            Intent(
                "b@x.com",
                ChangeAction.UPDATE,
                crm_id="9",
                before={"first_name": "Robert"},
                after={"first_name": "Bob"},
            ),
        ],
        account=ACCOUNT,
        run=1,
        sent_at=sent_at,
        proof=Proof.LOOKED_UP,
    )
    store.record_intents(
        "imp-1",
        Entity.CONTACTS,
        [Intent("a@x.com", ChangeAction.UPDATE, crm_id="other")],
        account=ACCOUNT,
        run=1,
        sent_at=None,
        proof=Proof.OPTIMISTIC,
    )
    intended = {c.key: c for c in store.changes("imp-1", account=ACCOUNT)}

    created = intended["a@x.com"]
    assert (created.action, created.crm_id, created.state) == (
        ChangeAction.CREATE,
        None,
        ChangeState.INTENDED,
    )
    assert created.after == {"email": "a@x.com", "first_name": "Ann", "phone": None}
    assert (created.sent_at, created.proof) == (sent_at, Proof.LOOKED_UP)
    updated = intended["b@x.com"]
    assert (updated.before, updated.after) == ({"first_name": "Robert"}, {"first_name": "Bob"})

    store.checkpoint(
        "imp-1",
        Entity.CONTACTS,
        [PushOutcome("a@x.com", LineOutcome.CREATED, crm_id="5")],
        account=ACCOUNT,
        run=1,
        done={"a@x.com": "5"},
    )
    store.mark_changes(
        "imp-1",
        Entity.CONTACTS,
        {"b@x.com": "9"},
        account=ACCOUNT,
        run=1,
        state=ChangeState.ROLLED_BACK,
    )
    after = {c.key: (c.state, c.crm_id) for c in store.changes("imp-1", account=ACCOUNT)}
    assert after == {
        "a@x.com": (ChangeState.DONE, "5"),
        "b@x.com": (ChangeState.ROLLED_BACK, "9"),
    }
    assert store.changes("imp-1", account="hubspot:x") == []


def test_refused_intents_are_discarded_and_rolled_back_ones_can_be_intended_again(
    store: StagingStore,
) -> None:
    _stage(store, DUPLICATED)
    ids = _create_all(store)
    store.mark_changes(
        "imp-1", Entity.CONTACTS, ids, account=ACCOUNT, run=1, state=ChangeState.ROLLED_BACK
    )
    store.record_intents(
        "imp-1",
        Entity.CONTACTS,
        [Intent("a@x.com", ChangeAction.CREATE), Intent("b@x.com", ChangeAction.CREATE)],
        account=ACCOUNT,
        run=1,
        sent_at=None,
        proof=Proof.OPTIMISTIC,
    )
    store.discard_intents("imp-1", Entity.CONTACTS, ["b@x.com"], account=ACCOUNT, run=1)

    changes = {c.key: c for c in store.changes("imp-1", account=ACCOUNT)}
    assert list(changes) == ["a@x.com"]
    assert (changes["a@x.com"].state, changes["a@x.com"].proof) == (
        ChangeState.INTENDED,
        Proof.OPTIMISTIC,
    )


def test_changes_come_newest_run_first(store: StagingStore) -> None:
    _stage(store, DUPLICATED)
    _create_all(store, run=1)
    store.set_state("imp-1", ImportState.COMPLETED)
    assert _stage(store, DUPLICATED) == 2
    store.record_intents(
        "imp-1",
        Entity.CONTACTS,
        [Intent("a@x.com", ChangeAction.UPDATE, crm_id="id-a@x.com", after={"phone": "+1"})],
        account=ACCOUNT,
        run=2,
        sent_at=None,
        proof=Proof.LOOKED_UP,
    )

    assert [(c.run, c.key) for c in store.changes("imp-1", account=ACCOUNT)] == [
        (2, "a@x.com"),
        (1, "a@x.com"),
        (1, "b@x.com"),
    ]


def test_forgotten_pushes_are_written_again_by_the_next_import(store: StagingStore) -> None:
    _stage(store, DUPLICATED)
    _create_all(store)
    store.set_state("imp-1", ImportState.COMPLETED)

    store.forget_pushes(Entity.CONTACTS, ["a@x.com"], account=ACCOUNT)

    _stage(store, DUPLICATED, import_id="imp-2")
    pending = store.pending("imp-2", Entity.CONTACTS, account=ACCOUNT)
    assert {p.key: p.crm_id for p in pending} == {"a@x.com": None, "b@x.com": "id-b@x.com"}


def test_the_crm_ids_keys_were_written_to_are_read_by_any_import(store: StagingStore) -> None:
    _stage(store, DUPLICATED)
    _create_all(store)

    ids = store.crm_ids(Entity.CONTACTS, ["a@x.com", "b@x.com", "new@x.com"], account=ACCOUNT)
    assert ids == {"a@x.com": "id-a@x.com", "b@x.com": "id-b@x.com"}
    assert store.crm_ids(Entity.CONTACTS, ["a@x.com"], account="another") == {}
    assert store.crm_ids(Entity.COMPANIES, ["a@x.com"], account=ACCOUNT) == {}
    assert store.crm_ids(Entity.CONTACTS, [], account=ACCOUNT) == {}
    store.forget_pushes(Entity.CONTACTS, ["a@x.com"], account=ACCOUNT)
    assert store.crm_ids(Entity.CONTACTS, ["a@x.com"], account=ACCOUNT) == {}


# --- recurring syncs ----------------------------------------------------------------------------


def test_the_previous_completed_sync_is_found_by_prefix_and_order(store: StagingStore) -> None:
    for import_id, state in (
        ("sync-crm-2026-05-01", ImportState.COMPLETED),
        ("sync-crm-2026-05-02", ImportState.COMPLETED),
        ("sync-crm-2026-05-03", ImportState.FAILED),
        ("sync-other-2026-05-03", ImportState.COMPLETED),
    ):
        store.set_state(import_id, state)

    assert store.last_completed("sync-crm-", before="sync-crm-2026-05-04") == "sync-crm-2026-05-02"
    assert store.last_completed("sync-crm-", before="sync-crm-2026-05-02") == "sync-crm-2026-05-01"
    assert store.last_completed("sync-crm-", before="sync-crm-2026-05-01") is None


def test_keys_gone_since_the_previous_sync_name_who_created_them(store: StagingStore) -> None:
    _stage(store, DUPLICATED, import_id="day-1")
    _create_all(store, import_id="day-1")
    store.set_state("day-1", ImportState.COMPLETED)
    _stage(
        store,
        _contacts([(2, "b@x.com", "Bob", None), (3, "c@x.com", "Cy", None)]),
        import_id="day-2",
    )

    gone, previous_count = store.vanished("day-1", "day-2", Entity.CONTACTS, account=ACCOUNT)

    assert previous_count == 2
    assert gone == [VanishedKey("a@x.com", "id-a@x.com", "day-1", 1)]


# --- concurrency --------------------------------------------------------------------------------


def test_a_second_holder_of_an_imports_lock_waits_and_other_imports_do_not(
    store: StagingStore,
) -> None:
    holding = threading.Event()
    release = threading.Event()
    got_it: list[float] = []

    def first() -> None:
        with store.import_lock("imp-1"):
            holding.set()
            release.wait(10)

    def second() -> None:
        with store.import_lock("imp-1"):
            got_it.append(time.monotonic())

    holder = threading.Thread(target=first)
    holder.start()
    assert holding.wait(10)
    waiter = threading.Thread(target=second)
    waiter.start()
    with store.import_lock("imp-2"):
        _stage(store, DUPLICATED, import_id="imp-2")
    time.sleep(0.3)
    assert got_it == []
    released_at = time.monotonic()
    release.set()
    waiter.join(10)
    holder.join(10)

    assert len(got_it) == 1 and got_it[0] >= released_at
    assert store.outcome_counts("imp-2")[LineOutcome.PENDING] == 2


def test_a_second_writer_of_an_accounts_entity_waits_and_other_entities_and_accounts_do_not(
    store: StagingStore,
) -> None:
    holding = threading.Event()
    release = threading.Event()
    got_it: list[float] = []

    def first() -> None:
        with store.write_lock(ACCOUNT, Entity.COMPANIES):
            holding.set()
            release.wait(10)

    def second() -> None:
        with store.write_lock(ACCOUNT, Entity.COMPANIES):
            got_it.append(time.monotonic())

    holder = threading.Thread(target=first)
    holder.start()
    assert holding.wait(10)
    waiter = threading.Thread(target=second)
    waiter.start()
    with (
        store.write_lock(ACCOUNT, Entity.DEALS),
        store.write_lock("hubspot:https://api.hubapi.com#0a1b2c", Entity.COMPANIES),
    ):
        time.sleep(0.3)
    assert got_it == []
    released_at = time.monotonic()
    release.set()
    waiter.join(10)
    holder.join(10)

    assert len(got_it) == 1 and got_it[0] >= released_at


def test_resume_times_in_the_future_survive_a_round_trip(store: StagingStore) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    store.set_state("imp-1", ImportState.STOPPED, reason="spent", resume_at=later)

    status = store.statuses(["imp-1", "unknown"])
    assert list(status) == ["imp-1"]
    assert status["imp-1"].resume_at == later


def test_values_with_tabs_line_breaks_backslashes_and_quotes_round_trip(
    store: StagingStore,
) -> None:
    awkward = [
        "tab\there",
        "two\nlines\r\nand a return",
        "back\\slash \\N and \\t",
        "\\N",
        "\"quoted\", 'single'; =1+1",
        "Zoë Ünal 東京",
        "",
    ]
    frame = pl.DataFrame(
        {
            "_line": list(range(2, 2 + len(awkward))),
            "email": [f"odd{i}@x.com" for i in range(len(awkward))],
            "first_name": awkward,
        },
        schema={"_line": pl.Int64, "email": pl.String, "first_name": pl.String},
    )
    _stage(store, frame)

    pending = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)
    assert [p.fields.get("first_name") for p in pending] == awkward


# --- reading a large import a page at a time ----------------------------------------------------


def _many(count: int) -> pl.DataFrame:
    """Contacts on lines 2 to count + 1, every fifth repeating the email two lines before."""
    emails = [f"p{line - 2 if line % 5 == 0 else line}@x.com" for line in range(2, count + 2)]
    return pl.DataFrame(
        {"_line": list(range(2, count + 2)), "email": emails, "first_name": ["Ann"] * count},
        schema_overrides={"_line": pl.Int64},
    )


def test_line_outcomes_come_a_page_at_a_time_in_order_and_by_outcome(store: StagingStore) -> None:
    invalid = pl.DataFrame({"_line": [60, 1], "reason": ["bad", "worse"]})
    _stage(store, _many(57), invalid=invalid)
    whole = store.line_outcomes("imp-1")

    pages = list(line_pages(store, "imp-1", 10))
    duplicates = list(line_pages(store, "imp-1", 4, outcomes=[LineOutcome.DUPLICATE]))

    assert [page.height for page in pages] == [10, 10, 10, 10, 10, 9]
    assert_frame_equal(pl.concat(pages), whole)
    assert pl.concat(duplicates)["line"].to_list() == [
        line for line in range(2, 59) if line % 5 == 0
    ]
    assert whole["line"].to_list() == sorted(whole["line"].to_list())
    counts = store.outcome_counts("imp-1", entity=Entity.CONTACTS)
    assert (counts[LineOutcome.PENDING], counts[LineOutcome.INVALID]) == (46, 2)
    assert store.outcome_counts("imp-1", entity=Entity.COMPANIES).accounted == 0


@pytest.mark.parametrize("staged", [False, True])
def test_records_come_a_page_at_a_time_in_line_order_as_pending_and_staged_list_them(
    store: StagingStore, staged: bool
) -> None:
    _stage(store, _many(57))
    read = store.staged if staged else store.pending
    whole = read("imp-1", Entity.CONTACTS, account=ACCOUNT)

    pages = list(
        store.record_pages("imp-1", Entity.CONTACTS, account=ACCOUNT, rows=20, staged=staged)
    )

    assert [len(page) for page in pages] == [20, 20, 6]
    assert [r for page in pages for r in page] == whole
    assert [r.line for r in whole] == sorted(r.line for r in whole)


def test_changes_and_links_are_read_for_one_run_entity_and_set_of_keys(
    store: StagingStore,
) -> None:
    run = _stage(store, DUPLICATED)
    ids = _create_all(store, run=run)
    store.record_links(
        "imp-1",
        [
            LinkChange(
                Entity.CONTACTS,
                key,
                "company",
                Entity.COMPANIES,
                crm_id,
                "c-1",
                LinkState.DONE,
                run,
            )
            for key, crm_id in ids.items()
        ],
        account=ACCOUNT,
        run=run,
    )

    one = store.changes("imp-1", account=ACCOUNT, run=run, entity=Entity.CONTACTS, keys=["b@x.com"])
    other_run = store.changes("imp-1", account=ACCOUNT, run=run + 1)
    links = store.links("imp-1", account=ACCOUNT, run=run, keys=["a@x.com"])

    assert [c.key for c in one] == ["b@x.com"]
    assert other_run == []
    assert [(link.key, link.to_id) for link in links] == [("a@x.com", "c-1")]
    assert store.link_counts("imp-1") == {LinkState.DONE: 2}


def test_a_run_that_recorded_changes_or_links_is_told_from_a_fresh_one(store: StagingStore) -> None:
    run = _stage(store, DUPLICATED)
    fresh = store.recorded_in_run("imp-1", account=ACCOUNT, run=run)
    _create_all(store, run=run)

    assert not fresh
    assert store.recorded_in_run("imp-1", account=ACCOUNT, run=run)
    assert not store.recorded_in_run("imp-1", account=ACCOUNT, run=run + 1)
    assert not store.recorded_in_run("imp-1", account="other", run=run)
