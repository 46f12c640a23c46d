"""The staging store's contract for linked imports, over DuckDB and PostgreSQL: rows of several
sheets, the values records are named by (``resolve``), the links an import makes, and stores
kept before imports had sheets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.outcomes import (
    ChangeAction,
    Intent,
    LineOutcome,
    LinkChange,
    LinkState,
    OnDuplicate,
    Proof,
    PushOutcome,
)
from bulk_pipeline.staging import StagingStore, open_store
from bulk_pipeline.staging.postgres_store import SCHEMA
from bulk_pipeline_tests.postgres import PostgresServer
from bulk_pipeline_tests.staging_rows import staging_rows

ACCOUNT = "sandbox"
NO_INVALID = pl.DataFrame(schema={"_line": pl.Int64, "reason": pl.String, "_sheet": pl.String})


@pytest.fixture
def store(new_store: Callable[[str], StagingStore]) -> StagingStore:
    return new_store("staging")


def _frame(columns: dict[str, list[object]]) -> pl.DataFrame:
    return pl.DataFrame(
        columns, schema={n: pl.Int64 if n == "_line" else pl.String for n in columns}
    )


def _stage(
    store: StagingStore,
    entity: Entity,
    valid: pl.DataFrame,
    invalid: pl.DataFrame = NO_INVALID,
    import_id: str = "imp-1",
    account: str = ACCOUNT,
) -> None:
    store.stage(
        import_id,
        entity,
        staging_rows(entity, valid, invalid),
        account=account,
        source_file="migration.xlsx",
        on_duplicate=OnDuplicate.SKIP,
    )


def _write(store: StagingStore, entity: Entity, ids: dict[str, str], import_id: str = "imp-1"):
    """Record the creates and their answers, as the push does."""
    store.record_intents(
        import_id,
        entity,
        [Intent(key, ChangeAction.CREATE) for key in ids],
        account=ACCOUNT,
        run=1,
        sent_at=None,
        proof=Proof.OPTIMISTIC,
    )
    store.checkpoint(
        import_id,
        entity,
        [PushOutcome(key, LineOutcome.CREATED, crm_id=crm_id) for key, crm_id in ids.items()],
        account=ACCOUNT,
        run=1,
        done=ids,
    )


# --- sheets -------------------------------------------------------------------------------------


def test_rows_of_several_sheets_are_one_entity_with_each_line_kept_by_its_sheet(
    store: StagingStore,
) -> None:
    store.begin_run("imp-1")
    contacts = _frame(
        {
            "_sheet": ["Contacts", "Contacts", "Team", "Team"],
            "_line": [2, 3, 2, 3],
            "email": ["ada@acme.com", "bob@globex.io", "ADA@acme.com ", "cy@initech.com"],
            "first_name": ["Ada", "Bob", "Ada L.", "Cy"],
        }
    )
    invalid = _frame({"_sheet": ["Team"], "_line": [4], "reason": ["email 'x' is not valid"]})
    _stage(store, Entity.CONTACTS, contacts, invalid)

    pending = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)
    assert [(p.sheet, p.line, p.key, p.where) for p in pending] == [
        ("Contacts", 2, "ada@acme.com", "Contacts line 2"),
        ("Contacts", 3, "bob@globex.io", "Contacts line 3"),
        ("Team", 3, "cy@initech.com", "Team line 3"),
    ]
    lines = store.line_outcomes("imp-1")
    assert lines.select("sheet", "line", "outcome").rows() == [
        ("Contacts", 2, "pending"),
        ("Contacts", 3, "pending"),
        ("Team", 2, "duplicate"),
        ("Team", 3, "pending"),
        ("Team", 4, "invalid"),
    ]
    assert lines.filter(pl.col("sheet") == "Team")["reason"].to_list() == [
        "duplicate of Contacts line 2 (ada@acme.com)",
        None,
        "email 'x' is not valid",
    ]


def test_a_resumed_run_keeps_the_outcomes_of_lines_written_per_sheet(store: StagingStore) -> None:
    store.begin_run("imp-1")
    companies = _frame(
        {
            "_sheet": ["Companies", "Accounts"],
            "_line": [2, 2],
            "name": ["Acme", "Globex"],
            "domain": ["acme.com", "globex.io"],
        }
    )
    _stage(store, Entity.COMPANIES, companies)
    _write(store, Entity.COMPANIES, {"acme.com": "c-1"})

    store.begin_run("imp-1")
    _stage(store, Entity.COMPANIES, companies)

    lines = store.line_outcomes("imp-1").select("sheet", "line", "outcome", "crm_id").rows()
    assert lines == [("Accounts", 2, "pending", None), ("Companies", 2, "created", "c-1")]


# --- references ---------------------------------------------------------------------------------


COMPANIES = _frame(
    {
        "_sheet": ["Companies", "Companies", "Companies", "Companies"],
        "_line": [2, 3, 4, 5],
        "name": ["Acme", "Globex", "Twin", "Twin"],
        "domain": ["acme.com", "GLOBEX.io", "twin-a.com", "twin-b.com"],
    }
)


def test_records_are_found_by_the_values_others_name_them_by_with_their_state_here(
    store: StagingStore,
) -> None:
    store.begin_run("imp-1")
    _stage(store, Entity.COMPANIES, COMPANIES)
    _write(store, Entity.COMPANIES, {"acme.com": "c-1"})

    found = store.resolve(
        Entity.COMPANIES,
        ["domain:acme.com", "domain:globex.io", "name:twin", "domain:nowhere.org", "name:acme"],
        account=ACCOUNT,
        import_id="imp-1",
    )

    assert set(found) == {"domain:acme.com", "domain:globex.io", "name:twin", "name:acme"}
    (acme,) = found["domain:acme.com"]
    assert (acme.key, acme.crm_id, acme.outcome, acme.where) == (
        "acme.com",
        "c-1",
        LineOutcome.CREATED,
        "Companies line 2",
    )
    assert found["name:acme"] == found["domain:acme.com"]
    (globex,) = found["domain:globex.io"]
    assert (globex.key, globex.crm_id, globex.outcome) == ("globex.io", None, LineOutcome.PENDING)
    assert [(m.key, m.where) for m in found["name:twin"]] == [
        ("twin-a.com", "Companies line 4"),
        ("twin-b.com", "Companies line 5"),
    ]
    assert store.resolve(Entity.COMPANIES, [], account=ACCOUNT, import_id="imp-1") == {}


def test_records_another_import_staged_are_found_with_their_crm_id_and_that_import(
    store: StagingStore,
) -> None:
    store.begin_run("imp-1")
    _stage(store, Entity.COMPANIES, COMPANIES)
    _write(store, Entity.COMPANIES, {"acme.com": "c-1"})

    found = store.resolve(Entity.COMPANIES, ["domain:acme.com"], account=ACCOUNT, import_id="imp-2")
    (acme,) = found["domain:acme.com"]
    assert (acme.crm_id, acme.outcome, acme.reason, acme.where) == (
        "c-1",
        None,
        None,
        "import imp-1",
    )
    assert (
        store.resolve(Entity.COMPANIES, ["domain:acme.com"], account="another", import_id="imp-2")
        == {}
    )


def test_a_restaged_record_is_named_only_by_its_new_values(store: StagingStore) -> None:
    store.begin_run("imp-1")
    _stage(store, Entity.COMPANIES, COMPANIES)
    renamed = _frame({"_line": [2], "name": ["Acme Corp"], "domain": ["acme.com"]})
    store.begin_run("imp-2")
    _stage(store, Entity.COMPANIES, renamed, import_id="imp-2")

    found = store.resolve(
        Entity.COMPANIES,
        ["name:acme", "name:acme corp", "domain:acme.com"],
        account=ACCOUNT,
        import_id="imp-2",
    )
    assert set(found) == {"name:acme corp", "domain:acme.com"}
    assert found["name:acme corp"][0].where == "line 2"


def test_deals_are_named_by_their_id_or_by_a_name_several_may_share(store: StagingStore) -> None:
    store.begin_run("imp-1")
    deals = _frame(
        {
            "_sheet": ["Deals", "Deals"],
            "_line": [2, 3],
            "external_id": ["D-1", None],
            "name": ["Renewal", "Renewal"],
            "company_domain": ["acme.com", "globex.io"],
        }
    )
    _stage(store, Entity.DEALS, deals)

    pending = store.pending("imp-1", Entity.DEALS, account=ACCOUNT)
    assert [(p.key, p.fields.get("company_domain")) for p in pending] == [
        ("d-1", "acme.com"),
        ("name:renewal\x1fglobex.io", "globex.io"),
    ]
    found = store.resolve(
        Entity.DEALS, ["external_id:d-1", "name:renewal"], account=ACCOUNT, import_id="imp-1"
    )
    assert [m.key for m in found["external_id:d-1"]] == ["d-1"]
    assert sorted(m.key for m in found["name:renewal"]) == ["d-1", "name:renewal\x1fglobex.io"]


def test_imports_staging_and_checkpointing_shared_records_at_once_keep_each_reference_once(
    store: StagingStore,
) -> None:
    """Two imports of the same companies, in opposite orders, stage and checkpoint side by side
    (PostgreSQL runs them at once): no deadlock, and every value names its record once."""
    names = [f"firm{i:03d}" for i in range(300)]
    store.begin_run("imp-0")
    _stage(store, Entity.COMPANIES, _companies(names), import_id="imp-0")
    failures: list[BaseException] = []

    def both(step: Callable[[str, list[str]], object], round_: int) -> None:
        def guarded(import_id: str, order: list[str]) -> None:
            try:
                step(import_id, order)
            except BaseException as exc:  # handed to the test's thread
                failures.append(exc)

        threads = [
            threading.Thread(target=guarded, args=(f"imp-{side}{round_}", order))
            for side, order in (("a", names), ("b", names[::-1]))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    def stage(import_id: str, order: list[str]) -> None:
        _stage(store, Entity.COMPANIES, _companies(order), import_id=import_id)

    def checkpoint(import_id: str, order: list[str]) -> None:
        store.checkpoint(
            import_id,
            Entity.COMPANIES,
            [PushOutcome(f"{n}.com", LineOutcome.UPDATED, crm_id=f"c-{n}") for n in order],
            account=ACCOUNT,
            run=1,
            done={},
        )

    for round_ in range(8):
        both(stage, round_)
        both(checkpoint, round_)

    assert failures == []
    refs = [f"domain:{n}.com" for n in names] + [f"name:{n}" for n in names]
    found = store.resolve(Entity.COMPANIES, refs, account=ACCOUNT, import_id="imp-a7")
    assert sorted(len(found[ref]) for ref in refs) == [1] * len(refs)
    assert found["name:firm007"][0].crm_id == "c-firm007"


def _companies(names: list[str]) -> pl.DataFrame:
    return _frame(
        {
            "_line": list(range(2, len(names) + 2)),
            "name": [n.title() for n in names],
            "domain": [f"{n}.com" for n in names],
        }
    )


# --- links --------------------------------------------------------------------------------------


def _link(
    key: str,
    to_id: str,
    state: LinkState = LinkState.INTENDED,
    *,
    run: int = 1,
    with_create: bool = False,
) -> LinkChange:
    return LinkChange(
        entity=Entity.CONTACTS,
        key=key,
        reference="company",
        to_entity=Entity.COMPANIES,
        from_id=f"p-{key}",
        to_id=to_id,
        state=state,
        run=run,
        with_create=with_create,
    )


def test_links_are_written_down_before_and_after_the_call_and_read_back(
    store: StagingStore,
) -> None:
    intended = [_link("ada", "c-1"), _link("bob", "c-2"), _link("bob", "c-2")]
    store.record_links("imp-1", intended, account=ACCOUNT, run=1)
    assert [
        (link.key, link.to_id, link.state) for link in store.links("imp-1", account=ACCOUNT)
    ] == [
        ("ada", "c-1", LinkState.INTENDED),
        ("bob", "c-2", LinkState.INTENDED),
    ]
    assert store.known_links(Entity.CONTACTS, "company", ["p-ada"], account=ACCOUNT) == set()

    store.record_links(
        "imp-1",
        [_link("ada", "c-1", LinkState.DONE, with_create=True)],
        account=ACCOUNT,
        run=1,
    )
    store.record_links("imp-1", [_link("cy", "c-3", LinkState.FOUND)], account=ACCOUNT, run=2)

    links = store.links("imp-1", account=ACCOUNT)
    assert [(link.key, link.state, link.run, link.with_create) for link in links] == [
        ("cy", LinkState.FOUND, 2, False),
        ("ada", LinkState.DONE, 1, True),
        ("bob", LinkState.INTENDED, 1, False),
    ]
    assert links[1] == _link("ada", "c-1", LinkState.DONE, run=1, with_create=True)
    assert store.known_links(
        Entity.CONTACTS, "company", ["p-ada", "p-bob", "p-cy"], account=ACCOUNT
    ) == {("p-ada", "c-1"), ("p-cy", "c-3")}
    assert store.known_links(Entity.CONTACTS, "company", [], account=ACCOUNT) == set()
    assert store.known_links(Entity.CONTACTS, "deal", ["p-ada"], account=ACCOUNT) == set()
    assert store.known_links(Entity.CONTACTS, "company", ["p-ada"], account="another") == set()


def test_links_are_kept_per_account_and_read_for_any(store: StagingStore) -> None:
    store.record_links("imp-1", [_link("ada", "c-1")], account=ACCOUNT, run=1)
    store.record_links("imp-1", [_link("ada", "c-9")], account="another", run=1)
    store.record_links("imp-2", [_link("bob", "c-2")], account=ACCOUNT, run=1)

    assert [link.to_id for link in store.links("imp-1", account=ACCOUNT)] == ["c-1"]
    assert sorted(link.to_id for link in store.links("imp-1")) == ["c-1", "c-9"]
    assert store.links("imp-3") == []


def test_refused_link_intents_are_forgotten_and_made_links_are_not(store: StagingStore) -> None:
    store.record_links(
        "imp-1",
        [_link("ada", "c-1"), _link("bob", "c-2", LinkState.DONE), _link("cy", "c-3")],
        account=ACCOUNT,
        run=1,
    )
    store.discard_links("imp-1", [_link("ada", "c-1"), _link("bob", "c-2")], account=ACCOUNT, run=1)
    store.discard_links("imp-1", [_link("cy", "c-3")], account=ACCOUNT, run=2)
    store.discard_links("imp-1", [], account=ACCOUNT, run=1)

    assert [(link.key, link.state) for link in store.links("imp-1")] == [
        ("bob", LinkState.DONE),
        ("cy", LinkState.INTENDED),
    ]


# --- stores kept before imports had sheets ------------------------------------------------------

OLDER_LAYOUT = (
    """
    CREATE TABLE import_rows (
        import_id VARCHAR NOT NULL, entity VARCHAR NOT NULL, line BIGINT NOT NULL,
        key VARCHAR, outcome VARCHAR NOT NULL, reason VARCHAR, crm_id VARCHAR,
        PRIMARY KEY (import_id, entity, line)
    )
    """,
    """
    CREATE TABLE records_contacts (
        account VARCHAR NOT NULL, key VARCHAR NOT NULL, record JSON NOT NULL,
        content_hash VARCHAR NOT NULL, source_file VARCHAR, source_line BIGINT,
        import_id VARCHAR, crm_id VARCHAR, pushed_hash VARCHAR, last_error VARCHAR,
        updated_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (account, key)
    )
    """,
    """
    CREATE TABLE imports (
        import_id VARCHAR PRIMARY KEY, state VARCHAR NOT NULL, run BIGINT NOT NULL DEFAULT 1,
        reason VARCHAR, resume_at TIMESTAMPTZ, updated_at TIMESTAMPTZ DEFAULT current_timestamp
    )
    """,
    "INSERT INTO imports (import_id, state, run) VALUES ('imp-0', 'completed', 1)",
    """
    INSERT INTO import_rows VALUES
        ('imp-0', 'contacts', 2, 'ada@acme.com', 'created', NULL, 'p-1'),
        ('imp-0', 'contacts', 3, NULL, 'invalid', 'email ''x'' is not valid', NULL)
    """,
    """
    INSERT INTO records_contacts (account, key, record, content_hash, source_line, import_id,
                                  crm_id)
    VALUES ('sandbox', 'ada@acme.com', '{"email": "ada@acme.com"}', 'h', 2, 'imp-0', 'p-1')
    """,
)


def _older_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StagingStore:
    if kind == "duckdb":
        path = tmp_path / "older.duckdb"
        with duckdb.connect(str(path)) as conn:
            for statement in OLDER_LAYOUT:
                conn.execute(statement)
        return open_store(path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"SET search_path = {SCHEMA}")
        for statement in OLDER_LAYOUT:
            conn.execute(statement)
    return open_store(database_url=url)


def test_a_store_kept_before_imports_had_sheets_is_read_and_written_on(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = _older_store(store_kind, tmp_path, request)

    lines = store.line_outcomes("imp-0")
    assert lines.select("sheet", "line", "outcome", "crm_id").rows() == [
        ("", 2, "created", "p-1"),
        ("", 3, "invalid", None),
    ]
    store.begin_run("imp-1")
    contacts = _frame(
        {"_sheet": ["Contacts", ""], "_line": [2, 2], "email": ["ada@acme.com", "bob@globex.io"]}
    )
    _stage(store, Entity.CONTACTS, contacts)
    pending = store.pending("imp-1", Entity.CONTACTS, account=ACCOUNT)
    assert [(p.where, p.key, p.crm_id) for p in pending] == [
        ("line 2", "bob@globex.io", None),
        ("Contacts line 2", "ada@acme.com", "p-1"),
    ]
    assert store.line_outcomes("imp-0").height == 2
