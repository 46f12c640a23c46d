"""Plan before you push, undo after: dry runs, blocking checks, rollback, stop and resume.

Everything runs against the sandbox CRM over loopback and a real DuckDB file; the kill and
interrupt tests drive the real CLI in a separate process.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import register_import
from bulk_pipeline.outcomes import ChangeAction, Intent, Proof
from bulk_pipeline.push.execute import checkpoint_records
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.staging import open_store
from bulk_pipeline.targets import open_target
from bulk_pipeline_tests.cli_processes import cli_process, kill_mid_push, wait_for_push

SYSTEM_PROPERTIES = {"hs_object_id", "createdate", "lastmodifieddate"}


def contacts_csv(path: Path, count: int, *, start: int = 0, invalid: int = 0) -> Path:
    rows = [
        {"Email": f"person{i}@example.com", "First Name": f"First{i}", "Last Name": f"Last{i}"}
        for i in range(start, start + count)
    ]
    rows += [
        {"Email": f"broken{i}@@example", "First Name": "Broken", "Last Name": "Row"}
        for i in range(invalid)
    ]
    pl.DataFrame(rows).write_csv(path)
    return path


def seed(sandbox: RunningSandbox, records: list[dict[str, str]]) -> None:
    """Records that exist before the import (the ``crm`` fixture points "sandbox" at it)."""
    target = open_target("sandbox")
    try:
        result = target.create(Entity.CONTACTS, records)
    finally:
        target.close()
    assert not result.failed


def crm_state(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    """Active contacts by id, with their user-visible properties (blank = absent)."""
    return {
        record["id"]: {
            name: value
            for name, value in record["properties"].items()
            if name not in SYSTEM_PROPERTIES and value not in (None, "")
        }
        for record in sandbox.admin.records("contacts")
    }


def by_email(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {props["email"]: props for props in state.values()}


def report(import_id: str, name: str) -> dict[str, Any]:
    path = config.data_home() / "reports" / import_id / name
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def writes(sandbox: RunningSandbox) -> int:
    return int(sandbox.admin.stats()["requests"]["writes"])


def test_dry_run_reports_the_exact_split_and_writes_nothing(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", 20)
    same = [
        {"email": f"person{i}@example.com", "first_name": f"First{i}", "last_name": f"Last{i}"}
        for i in range(5)
    ]
    changed = [
        {"email": f"person{i}@example.com", "first_name": "Old", "last_name": f"Last{i}"}
        for i in range(5, 10)
    ]
    seed(crm, same + changed)
    before = writes(crm)

    assert cli.main(["import", str(path), "--dry-run", "--no-progress"]) == 0

    plan = report(register_import(path).import_id, "plan.json")
    assert (plan["creates"], plan["updates"], plan["unchanged"]) == (10, 5, 5)
    assert plan["changed_fields"] == {"first_name": 5}
    assert writes(crm) == before
    assert len(crm_state(crm)) == 10
    rows = pl.read_csv(plan["plan_csv"])
    assert (
        rows.filter(pl.col("action") == "update")["changed_fields"].to_list() == ["first_name"] * 5
    )


def test_too_many_invalid_rows_block_the_push_and_leave_the_crm_untouched(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", 7, invalid=3)

    assert cli.main(["import", str(path), "--no-progress"]) == 1

    err = capsys.readouterr().err
    assert "invalid_ratio_within_threshold" in err
    assert "30%" in err
    assert writes(crm) == 0
    assert crm_state(crm) == {}
    rejected = pl.read_csv(
        config.data_home() / "reports" / register_import(path).import_id / "rejected.csv"
    )
    assert rejected.height == 3


def test_a_create_share_threshold_blocks_an_import_of_mostly_new_records(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", 10)
    seed(crm, [{"email": "person0@example.com"}])

    assert cli.main(["import", str(path), "--max-create-share", "0.5", "--no-progress"]) == 1

    assert "create_share_within_threshold" in capsys.readouterr().err
    assert len(crm_state(crm)) == 1


def test_rollback_returns_the_crm_to_its_state_before_the_import(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(
        crm,
        [
            {"email": "person0@example.com", "first_name": "Ada", "phone": "+15550100"},
            {"email": "person1@example.com", "last_name": "Kept"},
            {"email": "bystander@example.com", "first_name": "Untouched"},
        ],
    )
    before = crm_state(crm)
    path = contacts_csv(tmp_path / "contacts.csv", 6)
    assert cli.main(["import", str(path), "--no-progress"]) == 0
    import_id = register_import(path).import_id
    summary = report(import_id, "summary.json")
    assert (summary["created"], summary["updated"]) == (4, 2)
    assert crm_state(crm) != before

    assert cli.main(["rollback", import_id]) == 0
    assert crm_state(crm) == before
    done = report(import_id, "rollback.json")
    assert (done["removed"], done["restored"]) == (4, 2)

    writes_after_rollback = writes(crm)
    assert cli.main(["rollback", import_id]) == 0
    assert "6 already rolled back" in capsys.readouterr().out
    assert writes(crm) == writes_after_rollback
    assert crm_state(crm) == before

    assert cli.main(["import", str(path), "--no-progress"]) == 0
    assert report(import_id, "summary.json")["created"] == 4


def test_note_writes_the_summary_to_the_crm(tmp_path: Path, crm: RunningSandbox) -> None:
    path = contacts_csv(tmp_path / "contacts.csv", 3)

    assert cli.main(["import", str(path), "--note", "--no-progress"]) == 0

    notes = crm.admin.records("notes")
    assert len(notes) == 1
    body = notes[0]["properties"]["hs_note_body"]
    assert "3 created" in body
    assert register_import(path).import_id in body


def _cli_process(path: Path, sandbox: RunningSandbox) -> subprocess.Popen[str]:
    return cli_process(sandbox, "import", str(path), "--no-progress")


def test_kill_9_at_random_moments_then_rerun_ends_with_each_record_exactly_once(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    records = 20_000
    crm.admin.configure(latency_ms=15)
    path = contacts_csv(tmp_path / "contacts.csv", records)
    import_id = register_import(path).import_id
    moments = random.Random(20261127)

    kills = kill_mid_push(
        lambda: _cli_process(path, crm), import_id, kills=5, moments=moments, within=(0.0, 2.5)
    )
    assert kills == 5, "the push finished before five kills; raise the sandbox latency"

    crm.admin.configure(latency_ms=0)
    final = _cli_process(path, crm)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err

    emails = [r["properties"]["email"] for r in crm.admin.records("contacts")]
    assert len(emails) == records
    assert len(set(emails)) == records
    summary = report(import_id, "summary.json")
    assert summary["created"] == records
    assert summary["rows"] == records


def test_an_interrupt_stops_between_batches_and_the_next_run_resumes(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    target = open_target("sandbox")
    chunk = checkpoint_records(target.capabilities)
    target.close()
    records = 3 * chunk
    crm.admin.configure(latency_ms=20)
    path = contacts_csv(tmp_path / "contacts.csv", records)
    import_id = register_import(path).import_id
    process = _cli_process(path, crm)
    wait_for_push(import_id, process, timeout=60)
    time.sleep(0.5)

    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)

    assert process.returncode == 130
    assert "stopped on request after batch" in err
    assert "Traceback" not in err
    progress = json.loads(
        (config.data_home() / "work" / import_id / "progress.json").read_text(encoding="utf-8")
    )
    stored = len(crm.admin.records("contacts"))
    assert stored == progress["created"]
    assert 0 < stored < records
    assert stored % chunk == 0, "a stop lands between checkpointed chunks"

    crm.admin.configure(latency_ms=0)
    assert cli.main(["import", str(path), "--no-progress"]) == 0
    assert len(crm.admin.records("contacts")) == records
    assert report(import_id, "summary.json")["created"] == records


def test_a_create_intent_left_by_a_crash_never_claims_a_record_that_was_there_before(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    """A crash between a refused create and forgetting its intent must not make a resumed
    import count the existing record as created, nor let a rollback archive it."""
    seed(crm, [{"email": "person0@example.com", "first_name": "Before"}])
    before = crm_state(crm)
    path = contacts_csv(tmp_path / "contacts.csv", 2)
    import_id = register_import(path).import_id
    time.sleep(2.5)
    open_store(config.staging_db_path()).record_intents(
        import_id,
        Entity.CONTACTS,
        [Intent("person0@example.com", ChangeAction.CREATE)],
        account="sandbox",
        run=1,
        sent_at=datetime.now(UTC),
        proof=Proof.OPTIMISTIC,
    )

    assert cli.main(["import", str(path), "--no-progress"]) == 0

    summary = report(import_id, "summary.json")
    assert (summary["created"], summary["updated"]) == (1, 1)
    assert cli.main(["rollback", import_id]) == 0
    assert crm_state(crm) == before


def test_rollback_leaves_later_edits_alone_reports_them_and_force_undoes_them(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(
        crm,
        [
            {"email": "person0@example.com", "first_name": "Ada", "phone": "+15550100"},
            {"email": "person1@example.com", "last_name": "Kept"},
        ],
    )
    before = crm_state(crm)
    path = contacts_csv(tmp_path / "contacts.csv", 4)
    assert cli.main(["import", str(path), "--no-progress"]) == 0
    import_id = register_import(path).import_id
    assert (
        report(import_id, "summary.json")["created"],
        report(import_id, "summary.json")["updated"],
    ) == (2, 2)

    people = open_target("sandbox")
    try:
        found = people.lookup(Entity.CONTACTS, ["person0@example.com", "person2@example.com"])
        edited = people.update(
            Entity.CONTACTS,
            [found["person0@example.com"].id, found["person2@example.com"].id],
            [{"last_name": "Married"}, {"first_name": "Edited"}],
        )
        assert len(edited.successful) == 2
    finally:
        people.close()
    writes_before_dry_run = writes(crm)

    assert cli.main(["rollback", import_id, "--dry-run"]) == 0
    plan = report(import_id, "rollback_plan.json")
    assert (plan["removed"], plan["restored"], len(plan["conflicts"])) == (1, 2, 2)
    assert writes(crm) == writes_before_dry_run

    capsys.readouterr()
    assert cli.main(["rollback", import_id]) == 0
    assert "2 left in place because they changed in the CRM" in capsys.readouterr().out
    done = report(import_id, "rollback.json")
    assert sorted(done["conflicts"]) == [
        "contacts person0@example.com: changed (last_name)",
        "contacts person2@example.com: the record was changed since (first_name)",
    ]
    state = by_email(crm_state(crm))
    assert sorted(state) == ["person0@example.com", "person1@example.com", "person2@example.com"]
    assert state["person0@example.com"]["firstname"] == "Ada"
    assert state["person0@example.com"]["lastname"] == "Married"
    assert state["person2@example.com"]["firstname"] == "Edited"
    assert state["person1@example.com"] == by_email(before)["person1@example.com"]

    assert cli.main(["rollback", import_id, "--force"]) == 0
    assert crm_state(crm) == before


@pytest.mark.parametrize("offset_s", [-600.0, 600.0])
def test_kill_resume_and_rollback_leave_the_crm_as_before_whatever_its_clock(
    tmp_path: Path, crm: RunningSandbox, offset_s: float
) -> None:
    """The CRM's clock 10 minutes behind, then ahead, of ours: a push killed twice and resumed
    still knows which records it created, so the rollback removes exactly those."""
    crm.admin.configure(clock_offset_s=offset_s)
    seed(
        crm,
        [{"email": f"person{i}@example.com", "first_name": "Before"} for i in range(0, 3000, 7)]
        + [{"email": "bystander@example.com", "first_name": "Untouched"}],
    )
    before = crm_state(crm)
    records = 3_000
    path = contacts_csv(tmp_path / "contacts.csv", records)
    import_id = register_import(path).import_id
    crm.admin.configure(latency_ms=15)
    moments = random.Random(int(offset_s))
    for _ in range(2):
        (config.data_home() / "work" / import_id / "progress.json").unlink(missing_ok=True)
        process = _cli_process(path, crm)
        wait_for_push(import_id, process, timeout=60)
        time.sleep(moments.uniform(0.2, 1.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
    crm.admin.configure(latency_ms=0)

    final = _cli_process(path, crm)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    summary = report(import_id, "summary.json")
    existing = len(range(0, 3000, 7))
    assert (summary["created"], summary["updated"]) == (records - existing, existing)
    assert len(crm_state(crm)) == records + 1

    assert cli.main(["rollback", import_id]) == 0
    assert crm_state(crm) == before


def test_a_rollback_stopped_by_a_spent_budget_finishes_when_run_again(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    seed(crm, [{"email": "bystander@example.com", "first_name": "Untouched"}])
    before = crm_state(crm)
    path = contacts_csv(tmp_path / "contacts.csv", 1_500)
    assert cli.main(["import", str(path), "--no-progress"]) == 0
    import_id = register_import(path).import_id
    used = crm.admin.stats()["requests"]["total"]
    crm.admin.configure(daily_limit=used + 6)

    status, err = _cli_rollback(import_id, crm)
    assert status == 1
    assert "daily request limit is spent until" in err
    left = len(crm_state(crm))
    assert 1 < left < 1_501, "the rollback stopped partway"

    crm.admin.configure(daily_limit=None)
    for remembered in (config.data_home() / "budgets").glob("*.json"):
        remembered.unlink()
    status, err = _cli_rollback(import_id, crm)
    assert status == 0, err
    assert crm_state(crm) == before


def _cli_rollback(import_id: str, sandbox: RunningSandbox) -> tuple[int, str]:
    """In a process of its own, as a person runs it again later (budgets are per process): its
    exit status and what it wrote to stderr."""
    process = cli_process(sandbox, "rollback", import_id)
    _, err = process.communicate(timeout=300)
    return process.returncode, err
