"""The import pipeline end to end: through Dagster and through the CLI, against a real sandbox
server over loopback and a real DuckDB file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.defs.assets import import_assets
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.resources import default_resources
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.targets.hubspot import HUBSPOT

HEADER = ["E-mail", "First Name", "Last Name", "Phone", "Favourite Colour", "Notes"]
ROWS = [
    ["ada@example.com", "Ada", "Lovelace", "+44 20 7946 0018", "blue", ""],
    ["  ADA@Example.com ", "Ada", "", "", "green", "duplicate in case and spaces"],
    ["zoe@example.org", "Zoë", "Saldaña", "", "red", '=HYPERLINK("http://evil")'],
    ["not-an-email", "Bad", "Row", "", "", "+1 formula-like"],
    ["yamada@example.jp", "太郎", "山田", "", "", "line one\nline two"],
    ["olga@example.ru", "Ольга", "Иванова", "", "", "@mention"],
    ["", "No", "Email", "", "", ""],
    ["bob@@example.com", "Bob", "Broken", "", "", "-5"],
    ["lukasz@example.pl", "Łukasz", "Żółć", "", "", ""],
]
VALID_EMAILS = {
    "ada@example.com",
    "zoe@example.org",
    "yamada@example.jp",
    "olga@example.ru",
    "lukasz@example.pl",
}
INVALID_LINES = {5, 9, 10}  # header is line 1; the quoted newline on line 6 pushes later rows by 1
LENIENT = ["--max-invalid-ratio", "0.5"]
"""A third of this small file is invalid: above the default threshold that blocks a push."""


def write_messy_csv(path: Path) -> Path:
    """UTF-8 with BOM, `;` delimiter, quoted newline, non-Latin names, formula-like cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(ROWS)
    path.write_text("\ufeff" + buffer.getvalue(), encoding="utf-8")
    return path


def _summary(import_id: str) -> dict[str, object]:
    path = config.data_home() / "reports" / import_id / "summary.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _assert_messy_import_landed(sandbox: RunningSandbox, import_id: str) -> None:
    records = sandbox.admin.records("contacts")
    emails = [r["properties"]["email"] for r in records]
    assert sorted(emails) == sorted(VALID_EMAILS)
    names = {r["properties"]["email"]: r["properties"].get("firstname") for r in records}
    assert names["zoe@example.org"] == "Zoë"
    assert names["yamada@example.jp"] == "太郎"
    assert names["olga@example.ru"] == "Ольга"
    assert names["lukasz@example.pl"] == "Łukasz"
    assert all("favourite" not in key for r in records for key in r["properties"])

    summary = _summary(import_id)
    assert summary["rows"] == len(ROWS)
    outcome_keys = ("created", "updated", "unchanged", "duplicates", "invalid", "failed")
    assert sum(int(summary[k]) for k in outcome_keys) == summary["rows"]  # type: ignore[call-overload]
    assert summary["created"] == len(VALID_EMAILS)
    assert summary["duplicates"] == 1
    assert summary["invalid"] == len(INVALID_LINES)
    assert "Favourite Colour" in summary["unmapped_columns"]  # type: ignore[operator]

    rejected_path = config.data_home() / "reports" / import_id / "rejected.csv"
    with rejected_path.open(encoding="utf-8") as handle:
        rejected = list(csv.DictReader(handle))
    assert {int(row["line"]) for row in rejected} == INVALID_LINES
    assert all(row["reason"] for row in rejected)
    notes = {row["Notes"] for row in rejected}
    assert "'+1 formula-like" in notes
    assert "'-5" in notes


def test_materialize_a_messy_file_through_dagster(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    request = register_import(
        write_messy_csv(tmp_path / "messy contacts.csv"), max_invalid_ratio=0.5
    )
    instance.add_dynamic_partitions(imports_partitions.name or "imports", [request.import_id])

    result = dg.materialize(
        import_assets,
        partition_key=request.import_id,
        instance=instance,
        resources=default_resources(),
    )

    assert result.success
    _assert_messy_import_landed(crm, request.import_id)
    results_event = result.asset_materializations_for_node("import_results")[0]
    assert results_event.metadata["created"].value == len(VALID_EMAILS)
    assert "| invalid | 3 |" in str(results_event.metadata["summary"].value)


def test_cli_import_twice_second_run_is_unchanged_without_writes(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = write_messy_csv(tmp_path / "contacts.csv")
    assert cli.main(["import", str(path), "--no-progress", *LENIENT]) == 0
    import_id = register_import(path).import_id
    _assert_messy_import_landed(crm, import_id)
    writes_after_first = crm.admin.stats()["requests"]["writes"]

    assert cli.main(["import", str(path), "--no-progress", *LENIENT]) == 0

    summary = _summary(import_id)
    assert summary["unchanged"] == len(VALID_EMAILS)
    assert summary["created"] == 0
    assert crm.admin.stats()["requests"]["writes"] == writes_after_first
    runs = instance.get_runs()
    assert len(runs) == 2
    assert all(run.tags.get("dagster/partition") == import_id for run in runs)


def test_hubspot_target_against_a_hubspot_compatible_server_gives_the_same_result(
    tmp_path: Path,
    sandbox: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(HUBSPOT.base_url_env, sandbox.url)
    monkeypatch.setenv(HUBSPOT.token_env, sandbox.token)
    path = write_messy_csv(tmp_path / "contacts.csv")

    assert cli.main(["import", str(path), "--target", "hubspot", "--no-progress", *LENIENT]) == 0

    _assert_messy_import_landed(sandbox, register_import(path, target="hubspot").import_id)


def test_a_file_without_an_email_column_fails_naming_the_file(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("First Name,Last Name\nAda,Lovelace\n", encoding="utf-8")

    assert cli.main(["import", str(path), "--entity", "contacts", "--no-progress"]) == 1

    err = capsys.readouterr().err
    assert "people.csv" in err
    assert "email" in err
    assert crm.admin.stats()["requests"]["writes"] == 0


def test_a_wrong_token_fails_the_import_without_showing_the_token(
    tmp_path: Path,
    sandbox: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "pat-na1-this-is-not-the-right-token"
    monkeypatch.setenv(HUBSPOT.base_url_env, sandbox.url)
    monkeypatch.setenv(HUBSPOT.token_env, secret)
    path = write_messy_csv(tmp_path / "contacts.csv")

    assert cli.main(["import", str(path), "--target", "hubspot", "--no-progress", *LENIENT]) == 2

    captured = capsys.readouterr()
    assert "HTTP 401" in captured.err, "the preflight names the refused token before any work"
    assert secret not in captured.err + captured.out
    assert sandbox.admin.counts().get("contacts", 0) == 0


def test_a_corrected_rejected_csv_imports_as_it_is_and_creates_exactly_those_records(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "Email,First Name,Phone\n"
        "ok@example.com,Ok,\n"
        "grace@@example.com,Grace,+1 212 555 0100\n"
        "linus.example.com,Linus,\n"
        "ada@example.com,Ada,\n",
        encoding="utf-8",
    )
    assert cli.main(["import", str(path), "--no-progress", *LENIENT]) == 0
    rejected_path = (
        config.data_home() / "reports" / register_import(path).import_id / "rejected.csv"
    )
    rejected = rejected_path.read_text(encoding="utf-8-sig")
    assert "'+1 212 555 0100" in rejected

    fixed = tmp_path / "rejected-fixed.csv"
    fixed.write_text(
        rejected.replace("grace@@example.com", "grace@example.com").replace(
            "linus.example.com", "linus@example.com"
        ),
        encoding="utf-8",
    )
    before = {r["properties"]["email"] for r in crm.admin.records("contacts")}

    assert cli.main(["import", str(fixed), "--no-progress"]) == 0

    records = {r["properties"]["email"]: r for r in crm.admin.records("contacts")}
    assert set(records) - before == {"grace@example.com", "linus@example.com"}
    assert records["grace@example.com"]["properties"]["phone"] == "+12125550100"
    summary = _summary(register_import(fixed).import_id)
    assert (summary["rows"], summary["created"], summary["invalid"]) == (2, 2, 0)
    assert summary["unmapped_columns"] == []


def test_report_and_status_commands_show_an_import(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_messy_csv(tmp_path / "contacts.csv")
    assert cli.main(["import", str(path), "--no-progress", *LENIENT]) == 0
    import_id = register_import(path).import_id
    capsys.readouterr()

    assert cli.main(["report", import_id]) == 0
    shown = capsys.readouterr().out
    assert "report.html" in shown
    assert str(len(VALID_EMAILS)) in shown

    assert cli.main(["status"]) == 0
    assert import_id in capsys.readouterr().out
    assert cli.main(["report", "no-such-import-0123456789"]) == 1
