"""Imports into Pipedrive (the sandbox's Pipedrive dialect over loopback), through the CLI and
Dagster: a messy file lands as one person per email, a re-import writes nothing, a spent token
budget stops the push and a re-run (or the resume sensor's relaunch) finishes it, kill -9 never
doubles a person although Pipedrive would take one, and rollback empties what the import made.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.defs.sensors import budget_resume_sensor
from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import register_import
from bulk_pipeline.outcomes import ImportState
from bulk_pipeline.resume import paused_dir
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.staging import open_store
from bulk_pipeline.targets import open_target
from bulk_pipeline.targets.http import limits
from bulk_pipeline.targets.pipedrive.fields import from_item
from bulk_pipeline_tests.cli_processes import cli_process, kill_mid_push
from bulk_pipeline_tests.recurring import contacts_csv, run_import_partition

TARGET = "sandbox-pipedrive"


def persons(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    return sandbox.admin.records("persons", "pipedrive")


def emails_held(sandbox: RunningSandbox) -> Counter[str]:
    return Counter(e["value"].lower() for p in persons(sandbox) for e in p.get("emails") or ())


def ours(sandbox: RunningSandbox) -> dict[str, dict[str, str]]:
    """Each person's non-blank fields in our names, by email."""
    held = (from_item(Entity.CONTACTS, p, None) for p in persons(sandbox))
    return {f["email"] or "": {k: v for k, v in f.items() if v} for f in held}


def writes(sandbox: RunningSandbox) -> int:
    return int(sandbox.admin.requests("pipedrive")["writes"])


def report(import_id: str, name: str) -> dict[str, Any]:
    path = config.data_home() / "reports" / import_id / name
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def imported(path: Path, *args: str) -> dict[str, Any]:
    assert cli.main(["import", str(path), "--target", TARGET, "--no-progress", *args]) == 0
    return report(register_import(path, target=TARGET).import_id, "summary.json")


def pipedrive_cli(path: Path, sandbox: RunningSandbox) -> subprocess.Popen[str]:
    return cli_process(sandbox, "import", str(path), "--target", TARGET, "--no-progress")


def the_day_turns(sandbox: RunningSandbox) -> None:
    """The company's budget is whole again, and what this machine remembered has passed."""
    sandbox.admin.configure(pipedrive={"daily_budget": None})
    for remembered in (config.data_home() / "budgets").glob("*.json"):
        remembered.write_text(
            json.dumps({"exhausted_until": datetime.now(UTC).isoformat()}), encoding="utf-8"
        )


MESSY = [
    {"E-mail": " Ada.Lovelace@Example.com ", "First Name": "Ada", "Last Name": "Lovelace",
     "Phone": "+44 20 7946 0018", "Company": "Analytical Engines", "Favourite Colour": "Blue"},
    {"E-mail": "ada.lovelace@example.com", "First Name": "Ada", "Last Name": "Lovelace",
     "Phone": "", "Company": "", "Favourite Colour": ""},
    {"E-mail": "zoe.martin@example.fr", "First Name": "Zoë", "Last Name": "Martin",
     "Phone": "+33 1 42 68 53 00", "Company": "Café Lumière", "Favourite Colour": "Red"},
    {"E-mail": "lukasz.nowak@example.pl", "First Name": "Łukasz", "Last Name": "Nowak",
     "Phone": "+48 22 123 45 67", "Company": "", "Favourite Colour": ""},
    {"E-mail": "not-an-email", "First Name": "Bad", "Last Name": "Row",
     "Phone": "", "Company": "", "Favourite Colour": ""},
    {"E-mail": "JOHN.SMITH@EXAMPLE.COM", "First Name": "John", "Last Name": "O'Brien-Smith",
     "Phone": "(415) 555-2671", "Company": "", "Favourite Colour": "Green"},
]  # fmt: skip


def test_a_messy_file_lands_as_one_person_per_email_and_a_reimport_writes_nothing(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    crm.admin.post(
        "/pipedrive/fields/persons", {"field_name": "Favourite Colour", "field_type": "varchar"}
    )
    path = tmp_path / "contacts.csv"
    pl.DataFrame(MESSY).write_csv(path)

    assert cli.main(["import", str(path), "--target", TARGET, "--dry-run", "--no-progress"]) == 0
    plan = " ".join(capsys.readouterr().out.split())
    assert "The push would cost about" in plan and "tokens" in plan
    assert "fits what the CRM's budget has left today" in plan, plan
    assert writes(crm) == 0

    summary = imported(path)

    contacts = summary["entities"]["contacts"]
    assert (contacts["created"], contacts["duplicates"], contacts["invalid"]) == (4, 1, 1)
    assert summary["entities"]["companies"]["created"] == 2
    organizations = {o["id"]: o["name"] for o in crm.admin.records("organizations", "pipedrive")}
    assert sorted(organizations.values()) == ["Analytical Engines", "Café Lumière"]
    held = {p["emails"][0]["value"]: p for p in persons(crm)}
    assert {e: organizations.get(p.get("org_id")) for e, p in held.items()} == {
        "ada.lovelace@example.com": "Analytical Engines",
        "john.smith@example.com": None,
        "lukasz.nowak@example.pl": None,
        "zoe.martin@example.fr": "Café Lumière",
    }
    assert sorted(held) == [
        "ada.lovelace@example.com",
        "john.smith@example.com",
        "lukasz.nowak@example.pl",
        "zoe.martin@example.fr",
    ]
    assert {e: (p["first_name"], p["last_name"]) for e, p in held.items()} == {
        "ada.lovelace@example.com": ("Ada", "Lovelace"),
        "john.smith@example.com": ("John", "O'Brien-Smith"),
        "lukasz.nowak@example.pl": ("Łukasz", "Nowak"),
        "zoe.martin@example.fr": ("Zoë", "Martin"),
    }
    ada = held["ada.lovelace@example.com"]
    assert ada["emails"] == [
        {"value": "ada.lovelace@example.com", "primary": True, "label": "work"}
    ]
    assert ada["phones"] == [{"value": "+442079460018", "primary": True, "label": "work"}]
    assert held["zoe.martin@example.fr"]["phones"][0]["value"] == "+33142685300"
    assert sorted(c for p in held.values() for c in p["custom_fields"].values() if c) == [
        "Blue",
        "Green",
        "Red",
    ]

    writes_before = writes(crm)
    again = imported(path)

    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)
    assert writes(crm) == writes_before, "a re-import makes no write call"


def test_a_spent_token_budget_stops_the_push_and_a_rerun_after_the_reset_finishes_it(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    emails = [f"person{i}@example.com" for i in range(240)]
    path = contacts_csv(tmp_path / "contacts.csv", emails)
    crm.admin.configure(pipedrive={"daily_budget": 700})

    stopped = pipedrive_cli(path, crm)
    _, err = stopped.communicate(timeout=300)

    assert stopped.returncode == 75, err  # EX_TEMPFAIL: try again after the reset
    assert "daily token budget is spent until" in err
    midnight = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert f"{midnight}T00:00:00Z" in err
    assert crm.admin.requests("pipedrive")["rate_limited"] == 0, "stopped before a 429"
    written = len(persons(crm))
    assert 0 < written < len(emails)
    import_id = register_import(path, target=TARGET).import_id
    status = open_store(config.staging_db_path()).status(import_id)
    assert status is not None and status.state is ImportState.STOPPED

    the_day_turns(crm)
    resumed = pipedrive_cli(path, crm)
    _, err = resumed.communicate(timeout=300)

    assert resumed.returncode == 0, err
    held = emails_held(crm)
    assert len(held) == len(emails) and set(held.values()) == {1}
    assert report(import_id, "summary.json")["created"] == len(emails)


def test_dagster_launches_an_import_stopped_by_the_budget_again_after_the_reset(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emails = [f"member{i}@example.com" for i in range(120)]
    path = contacts_csv(tmp_path / "members.csv", emails)
    crm.admin.configure(pipedrive={"daily_budget": 400})

    assert cli.main(["import", str(path), "--target", TARGET, "--no-progress"]) == 75
    import_id = register_import(path, target=TARGET).import_id
    (marker,) = paused_dir().glob("*.json")
    assert json.loads(marker.read_text(encoding="utf-8"))["budget"] == "daily token budget"
    assert not budget_resume_sensor(dg.build_sensor_context(instance=instance)).run_requests
    written = len(persons(crm))
    assert 0 < written < len(emails)

    the_day_turns(crm)
    paused = json.loads(marker.read_text(encoding="utf-8"))
    paused["resume_at"] = datetime.now(UTC).isoformat()
    marker.write_text(json.dumps(paused), encoding="utf-8")
    monkeypatch.setattr(limits, "_budgets", {}, raising=True)
    """A launched run starts in a process of its own: nothing in memory from the stopped one."""

    result = budget_resume_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert request.partition_key == import_id
    run = run_import_partition(instance, import_id, dict(request.tags))

    assert run.success
    held = emails_held(crm)
    assert len(held) == len(emails) and set(held.values()) == {1}
    assert report(import_id, "summary.json")["created"] == len(emails)


def test_kill_9_during_a_push_then_a_rerun_leaves_no_duplicate_person(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    records = 2_500
    crm.admin.configure(latency_ms=25)
    path = contacts_csv(tmp_path / "contacts.csv", [f"p{i}@example.com" for i in range(records)])
    import_id = register_import(path, target=TARGET).import_id
    moments = random.Random(20261130)

    kills = kill_mid_push(
        lambda: pipedrive_cli(path, crm), import_id, kills=5, moments=moments, within=(0.2, 2.0)
    )
    assert kills == 5, "the push finished before five kills; raise the sandbox latency"
    assert 0 < len(persons(crm)) < records

    crm.admin.configure(latency_ms=0)
    final = pipedrive_cli(path, crm)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err

    held = emails_held(crm)
    assert len(held) == records
    assert set(held.values()) == {1}, "no person twice, although Pipedrive would take one"
    summary = report(import_id, "summary.json")
    assert (summary["created"], summary["rows"]) == (records, records)


def test_rollback_deletes_what_the_import_made_restores_the_rest_and_says_where(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = open_target(TARGET)
    try:
        seeded.create(
            Entity.CONTACTS,
            [
                {"email": "kept0@example.com", "first_name": "Before"},
                {"email": "kept1@example.com", "first_name": "Before", "city": "Lyon"},
            ],
        )
    finally:
        seeded.close()
    before = ours(crm)
    path = contacts_csv(
        tmp_path / "contacts.csv", ["kept0@example.com", "kept1@example.com", "new@example.com"]
    )

    summary = imported(path, "--note")

    assert (summary["created"], summary["updated"]) == (1, 2)
    out = " ".join(capsys.readouterr().out.split())
    (note,) = crm.admin.records("notes", "pipedrive")
    parent = next(p for p in persons(crm) if p["id"] == note["person_id"])
    assert f"attached to contacts record {parent['id']}" in out
    assert "1 created, 2 updated" in note["content"]

    edited = open_target(TARGET)
    try:
        kept1 = edited.lookup(Entity.CONTACTS, ["kept1@example.com"])["kept1@example.com"]
        assert edited.update(Entity.CONTACTS, [kept1.id], [{"first_name": "Edited"}]).successful
    finally:
        edited.close()

    import_id = register_import(path, target=TARGET).import_id
    assert cli.main(["rollback", import_id]) == 0

    out = " ".join(capsys.readouterr().out.split())
    assert "moved to the CRM's trash, where they can be restored for 30 days" in out
    assert "changed in the CRM since the import" in out
    after = ours(crm)
    assert set(after) == set(before), "the person the import created is in the trash"
    assert after["kept0@example.com"] == before["kept0@example.com"]
    assert after["kept1@example.com"] == {**before["kept1@example.com"], "first_name": "Edited"}


def test_duplicates_the_crm_already_held_are_reported_and_the_oldest_is_used(
    tmp_path: Path, crm: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    seeding = open_target(TARGET)
    try:
        older = seeding.create(Entity.CONTACTS, [{"email": "twice@example.com"}])
        newer = seeding.create(Entity.CONTACTS, [{"email": "Twice@Example.com"}])
    finally:
        seeding.close()
    path = contacts_csv(tmp_path / "contacts.csv", ["twice@example.com", "once@example.com"])

    summary = imported(path)

    assert (summary["created"], summary["updated"]) == (1, 1)
    assert summary["crm_duplicates"] == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "1 keys are held by more than one record in the CRM" in out
    import_id = register_import(path, target=TARGET).import_id
    listed = pl.read_csv(
        config.data_home() / "reports" / import_id / "crm_duplicates.csv", infer_schema=False
    )
    assert listed.to_dicts() == [
        {
            "entity": "contacts",
            "key": "twice@example.com",
            "used_id": older.successful[0].id,
            "also_ids": newer.successful[0].id,
        }
    ]
    assert emails_held(crm) == Counter({"twice@example.com": 2, "once@example.com": 1})
    updated = next(p for p in persons(crm) if str(p["id"]) == older.successful[0].id)
    assert updated["first_name"] == "Twice"
