"""The Attio target end to end: through Dagster and the CLI, against the sandbox's Attio dialect
over loopback and a real DuckDB file."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.config import SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.defs.assets import import_assets
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.resources import default_resources
from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import file_digest, import_id_for, register_import
from bulk_pipeline.sandbox.attio.workspace import MEMBERS, TOKEN_OWNER
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.targets import open_target
from bulk_pipeline.targets.attio import attio_budget
from bulk_pipeline.targets.http import RetryPolicy
from bulk_pipeline_tests.test_import_end_to_end import LENIENT, VALID_EMAILS, write_messy_csv

ATTIO = ["--target", "sandbox-attio", "--no-progress"]
MEMBER_IDS = {m.id: m.email for m in MEMBERS}


class Terminal(io.StringIO):
    """What a person types at a terminal."""

    def isatty(self) -> bool:
        return True


def import_id_of(path: Path) -> str:
    """The import id of a file (registering it again would change its target)."""
    return import_id_for(path.name, file_digest(path))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def summary(import_id: str, name: str = "summary.json") -> dict[str, Any]:
    return dict(json.loads((config.reports_dir(import_id) / name).read_text(encoding="utf-8")))


def records(crm: RunningSandbox, object_slug: str) -> list[dict[str, Any]]:
    return crm.admin.records(object_slug, dialect="attio")


def first(record: dict[str, Any], slug: str) -> dict[str, Any]:
    values = record["values"][slug]
    return dict(values[0]) if values else {}


def writes(crm: RunningSandbox) -> int:
    return int(crm.admin.requests("attio")["writes"])


def by_email(crm: RunningSandbox) -> dict[str, dict[str, Any]]:
    return {first(r, "email_addresses")["email_address"]: r for r in records(crm, "people")}


def test_a_messy_contacts_file_makes_one_person_per_valid_email_and_a_reimport_writes_nothing(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = write_messy_csv(tmp_path / "messy contacts.csv")
    request = register_import(path, target="sandbox-attio", max_invalid_ratio=0.5)
    instance.add_dynamic_partitions(imports_partitions.name or "imports", [request.import_id])

    result = dg.materialize(
        import_assets,
        partition_key=request.import_id,
        instance=instance,
        resources=default_resources(),
    )

    assert result.success
    people = by_email(crm)
    assert sorted(people) == sorted(VALID_EMAILS)
    emails = Counter(
        v["email_address"] for r in records(crm, "people") for v in r["values"]["email_addresses"]
    )
    assert set(emails.values()) == {1}
    names = {email: first(r, "name") for email, r in people.items()}
    assert (names["zoe@example.org"]["first_name"], names["zoe@example.org"]["last_name"]) == (
        "Zoë",
        "Saldaña",
    )
    assert names["zoe@example.org"]["full_name"] == "Zoë Saldaña"
    assert names["yamada@example.jp"]["full_name"] == "太郎 山田"
    assert first(people["ada@example.com"], "phone_numbers")["phone_number"] == "+442079460018"
    assert first(people["ada@example.com"], "phone_numbers")["country_code"] == "GB"
    done = summary(request.import_id)
    assert (done["created"], done["duplicates"], done["invalid"], done["failed"]) == (5, 1, 3, 0)
    assert {"Favourite Colour", "Notes"} <= set(done["unmapped_columns"])
    before = writes(crm)

    assert cli.main(["import", str(path), *ATTIO, *LENIENT]) == 0

    again = summary(request.import_id)
    assert (again["unchanged"], again["created"], again["updated"]) == (5, 0, 0)
    assert writes(crm) == before, "a re-import makes no write call"


def test_companies_one_per_domain_and_deals_with_their_stage_and_owner(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    companies = write_csv(
        tmp_path / "companies.csv",
        ["Company Name", "Website"],
        [
            ["Acme", "https://www.acme.example/about"],
            ["ACME Inc", "acme.example"],
            ["Globex", "http://GLOBEX.example"],
            ["Initech", "initech.example/contact?x=1"],
            ["Umbrella", "www.umbrella.example"],
        ],
    )
    assert cli.main(["import", str(companies), "--entity", "companies", *ATTIO]) == 0
    domains = Counter(
        v["domain"] for r in records(crm, "companies") for v in r["values"]["domains"]
    )
    assert domains == Counter(
        {"acme.example": 1, "globex.example": 1, "initech.example": 1, "umbrella.example": 1}
    )

    deals = write_csv(
        tmp_path / "deals.csv",
        ["Deal Name", "Amount", "Stage", "Deal Owner"],
        [
            ["Acme renewal", "1,200.50", "in progress", "Sam.Seller@example.com"],
            ["Globex pilot", "$3,000", "Won 🎉", "robin.rep@example.com"],
            ["Initech expansion", "500", "lost", ""],
            ["Umbrella deal", "100", "Negotiation", "sam.seller@example.com"],
            ["Straße Pilot", "50", "Lead", "alex.owner@example.com"],
        ],
    )
    assert cli.main(["import", str(deals), *ATTIO, *LENIENT]) == 0

    held = {first(r, "name")["value"]: r for r in records(crm, "deals")}
    assert sorted(held) == ["Acme renewal", "Globex pilot", "Initech expansion", "Straße Pilot"]
    stages = {name: first(r, "stage")["status"]["title"] for name, r in held.items()}
    owners = {
        name: MEMBER_IDS[first(r, "owner")["referenced_actor_id"]] for name, r in held.items()
    }
    assert stages == {
        "Acme renewal": "In Progress",
        "Globex pilot": "Won 🎉",
        "Initech expansion": "Lost",
        "Straße Pilot": "Lead",
    }
    assert owners == {
        "Acme renewal": "sam.seller@example.com",
        "Globex pilot": "robin.rep@example.com",
        "Initech expansion": TOKEN_OWNER.email,
        "Straße Pilot": "alex.owner@example.com",
    }
    assert first(held["Acme renewal"], "value")["currency_value"] == 1200.5
    import_id = import_id_of(deals)
    rejected = (config.reports_dir(import_id) / "rejected.csv").read_text(encoding="utf-8")
    assert "stage: 'Negotiation' is not one of" in rejected and "Won 🎉" in rejected
    before = writes(crm)

    assert cli.main(["import", str(deals), *ATTIO, *LENIENT]) == 0

    assert len(records(crm, "deals")) == 4, "no duplicate on re-import"
    assert writes(crm) == before
    assert summary(import_id)["unchanged"] == 4


def test_a_list_holds_each_imported_record_once_however_often_the_import_runs(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance, capsys: Any
) -> None:
    path = write_messy_csv(tmp_path / "contacts.csv")
    listed = ["--list", "Q3 leads", *LENIENT]

    assert cli.main(["import", str(path), *ATTIO, *listed, "--create-list"]) == 0
    assert "List Q3 leads: 5 records added, 0 were in it already" in capsys.readouterr().out
    before = writes(crm)
    assert cli.main(["import", str(path), *ATTIO, *listed]) == 0
    assert "List Q3 leads: 0 records added, 5 were in it already" in capsys.readouterr().out

    entries = records(crm, "entries")
    assert sorted(Counter(e["parent_record_id"] for e in entries).values()) == [1] * 5
    assert {e["parent_record_id"] for e in entries} == {
        r["id"]["record_id"] for r in records(crm, "people")
    }
    assert writes(crm) == before
    import_id = import_id_of(path)
    assert summary(import_id)["list"] == {
        "name": "Q3 leads",
        "added": 0,
        "already": 5,
        "failed": [],
    }


def test_a_missing_list_stops_the_import_before_writing_and_a_crm_without_lists_refuses_it(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance, capsys: Any
) -> None:
    path = write_messy_csv(tmp_path / "contacts.csv")

    assert cli.main(["import", str(path), *ATTIO, "--list", "Nope", *LENIENT]) == 1
    assert "Attio has no list named 'Nope'" in " ".join(capsys.readouterr().err.split())
    assert records(crm, "people") == []

    assert cli.main(["import", str(path), "--no-progress", "--list", "Nope", *LENIENT]) == 2
    assert "has no lists" in capsys.readouterr().err


def test_a_rollback_deletes_for_good_only_when_confirmed(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    existing = open_target("sandbox-attio")
    try:
        existing.create(Entity.CONTACTS, [{"email": "ada@example.com", "first_name": "Augusta"}])
    finally:
        existing.close()
    path = write_messy_csv(tmp_path / "contacts.csv")
    assert cli.main(["import", str(path), *ATTIO, *LENIENT]) == 0
    import_id = import_id_of(path)
    assert first(by_email(crm)["ada@example.com"], "name")["first_name"] == "Ada"
    capsys.readouterr()

    assert cli.main(["rollback", import_id, "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "4 records would be removed (deleted for good)" in out
    assert "cannot be restored after the rollback" in out and "--yes" in out
    plan = summary(import_id, "rollback_plan.json")
    assert (plan["delete"], plan["removed"], plan["restored"]) == ("permanent", 4, 1)

    assert cli.main(["rollback", import_id]) == 1, "not confirmed: nothing deleted"
    assert len(records(crm, "people")) == 5
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert cli.main(["rollback", import_id]) == 1
    assert "Delete the records this import created?" in capsys.readouterr().err
    assert len(records(crm, "people")) == 5
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))

    assert cli.main(["rollback", import_id]) == 0

    people = by_email(crm)
    assert sorted(people) == ["ada@example.com"]
    assert first(people["ada@example.com"], "name")["first_name"] == "Augusta", "restored"


def test_the_summary_note_is_attached_to_a_record_of_the_import(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = write_messy_csv(tmp_path / "contacts.csv")

    assert cli.main(["import", str(path), *ATTIO, "--note", *LENIENT]) == 0

    (note,) = crm.admin.records("notes", dialect="attio")
    assert note["parent_record_id"] in {r["id"]["record_id"] for r in records(crm, "people")}
    assert "5 created" in note["content_plaintext"]


@pytest.mark.timeout(600)
def test_600_rows_with_writes_limited_to_5_a_second_fail_none_and_meet_few_429s(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    crm.admin.configure(attio={"write_limit": "5/1000", "read_limit": "100/1000"})
    path = write_csv(
        tmp_path / "people.csv",
        ["Email", "First Name"],
        [[f"person{i}@example.com", f"Person{i}"] for i in range(600)],
    )

    assert cli.main(["import", str(path), *ATTIO]) == 0

    done = summary(import_id_of(path))
    assert (done["created"], done["failed"]) == (600, 0)
    asked = crm.admin.requests("attio")
    assert asked["rate_limited"] <= 0.02 * asked["total"], asked


@pytest.mark.parametrize("offset", [-600.0, 600.0])
def test_creates_whose_answers_were_lost_are_claimed_on_the_crms_own_clock(
    sandbox: RunningSandbox, offset: float
) -> None:
    """The sandbox's clock 10 minutes behind or ahead of ours: records made by creates whose
    answers were lost are still ours (Attio's created_at against its own Date), none twice."""
    sandbox.admin.configure(clock_offset_s=offset)
    target = open_target(
        "sandbox-attio",
        {SANDBOX_URL_ENV: sandbox.url, SANDBOX_TOKEN_ENV: sandbox.token},
        retry=RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05),
        budget=attio_budget(),
    )
    try:
        target.check()
        sandbox.admin.configure(drop_rate=0.3, seed=5)
        result = target.create(Entity.CONTACTS, [{"email": f"p{i}@example.com"} for i in range(30)])
    finally:
        target.close()

    assert (len(result.successful), result.failed) == (30, [])
    assert all(w.created for w in result.successful)
    assert sandbox.admin.requests("attio")["dropped"] > 0
    emails = Counter(
        first(r, "email_addresses")["email_address"] for r in records(sandbox, "people")
    )
    assert len(emails) == 30 and set(emails.values()) == {1}
    created = datetime.fromisoformat(records(sandbox, "people")[0]["created_at"][:19] + "+00:00")
    assert abs((created - datetime.now(UTC)).total_seconds() - offset) < 120, "on its clock"
