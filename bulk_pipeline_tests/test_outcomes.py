"""Each line's outcome is what the CRM did with it in this import, on every path: a first import,
a re-import after another file changed the record, a record deleted in the CRM meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.targets import open_target


def contacts(path: Path, rows: list[tuple[str, str]]) -> Path:
    pl.DataFrame({"Email": [r[0] for r in rows], "First Name": [r[1] for r in rows]}).write_csv(
        path
    )
    return path


def imported(path: Path, *args: str) -> dict[str, Any]:
    assert cli.main(["import", str(path), "--no-progress", *args]) == 0
    folder = config.data_home() / "reports" / register_import(path).import_id
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return summary


def counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    return summary["created"], summary["updated"], summary["unchanged"]


def first_names(sandbox: RunningSandbox) -> dict[str, str]:
    return {
        r["properties"]["email"]: r["properties"].get("firstname", "")
        for r in sandbox.admin.records("contacts")
    }


A = [("ada@example.com", "Ada"), ("bob@example.com", "Bob"), ("cy@example.com", "Cy")]
B = [("bob@example.com", "Robert"), ("dee@example.com", "Dee")]


def test_importing_a_then_b_then_a_again_counts_what_the_crm_did(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file_a = contacts(tmp_path / "a.csv", A)
    file_b = contacts(tmp_path / "b.csv", B)

    assert counts(imported(file_a)) == (3, 0, 0)
    assert counts(imported(file_b)) == (1, 1, 0)
    again = imported(file_a, "--note")

    assert counts(again) == (0, 1, 2)
    assert len(crm.admin.records("contacts")) == 4
    assert first_names(crm)["bob@example.com"] == "Bob"
    (note,) = [n["properties"]["hs_note_body"] for n in crm.admin.records("notes")]
    assert "0 created, 1 updated, 2 unchanged" in note
    capsys.readouterr()
    assert cli.main(["report", again["import_id"]]) == 0
    report = capsys.readouterr().out
    assert "updated" in report


def test_a_record_deleted_in_the_crm_since_is_created_again(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    file_a = contacts(tmp_path / "a.csv", A)
    assert counts(imported(file_a)) == (3, 0, 0)
    target = open_target("sandbox")
    try:
        ada = target.lookup(Entity.CONTACTS, ["ada@example.com"])["ada@example.com"]
        assert len(target.remove(Entity.CONTACTS, [ada.id]).successful) == 1
    finally:
        target.close()

    again = imported(file_a)

    assert counts(again) == (1, 0, 2)
    assert sorted(first_names(crm)) == sorted(email for email, _ in A)


def test_a_deal_named_strasse_pilot_is_found_again_however_it_is_written(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def deals(name: str, rows: list[tuple[str, str]]) -> Path:
        path = tmp_path / name
        pl.DataFrame({"Deal Name": [r[0] for r in rows], "Amount": [r[1] for r in rows]}).write_csv(
            path
        )
        return path

    first = deals("q1.csv", [("Straße Pilot", "1000"), ("Other", "5")])
    again = deals("q2.csv", [("Straße Pilot", "2500"), ("Other", "5")])
    assert counts(imported(first, "--entity", "deals")) == (2, 0, 0)
    assert counts(imported(again, "--entity", "deals")) == (0, 1, 1)

    # Without the staging state (a new data home), the deal is found by its name in the CRM.
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "a-new-data-home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert counts(imported(first, "--entity", "deals")) == (0, 1, 1)

    held = {
        r["properties"]["dealname"]: r["properties"]["amount"] for r in crm.admin.records("deals")
    }
    assert held == {"Straße Pilot": "1000", "Other": "5"}
