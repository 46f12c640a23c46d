"""No silent partial reads: every sheet of a workbook is imported or listed with why and how to
import it, a file with only a header says so, and a mapping file's section names the entity.

Through the command, against a sandbox over loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bulk_pipeline import cli, config
from bulk_pipeline.imports import file_digest, import_id_for
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.ingest.test_excel import COMPANIES, PEOPLE, workbook


def _summary(path: Path, sheet: str | None = None) -> dict[str, Any]:
    name = f"{path.stem}_{sheet}{path.suffix}" if sheet else path.name
    folder = config.data_home() / "reports" / import_id_for(name, file_digest(path))
    loaded: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return loaded


def test_every_sheet_is_imported_or_listed_with_the_command_that_imports_it(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = workbook(
        tmp_path / "book.xlsx",
        {
            "Contacts": PEOPLE,
            "Organizations": COMPANIES,
            "Remarks": [["remark"], ["hello"]],
            "Notes": [["Figures from the 2024 trade fair"], ["Revenue is estimated"]],
        },
    )

    assert cli.main(["import", str(book), "--no-progress"]) == 0

    shown = capsys.readouterr().out
    assert "Sheet 'Contacts' was imported as contacts." in shown
    assert "Sheet 'Organizations' was imported as companies." in shown
    assert (
        "Sheet 'Remarks' was not imported: its name names no entity. To import it: "
        f"bulk-pipeline import '{book}' --sheet 'Remarks'"
    ) in shown
    assert (
        "Sheet 'Notes' was not imported: none of its columns names a field of notes. "
        f"To import it: bulk-pipeline import '{book}' --sheet 'Notes'"
    ) in shown
    summary = _summary(book)
    assert summary["entities"]["companies"]["created"] == 1
    assert summary["entities"]["contacts"]["created"] == 2
    assert "notes" not in summary["entities"]
    assert [s["sheet"] for s in summary["skipped_sheets"]] == ["Remarks", "Notes"]
    assert [r["properties"]["name"] for r in crm.admin.records("companies")] == ["Acme"]

    assert cli.main(["import", str(book), "--sheet", "Organizations", "--no-progress"]) == 0

    companies = _summary(book, "Organizations")
    assert (companies["entity"], companies["unchanged"]) == ("companies", 1)
    assert [s["sheet"] for s in companies["skipped_sheets"]] == ["Contacts", "Remarks", "Notes"]
    assert len(crm.admin.records("companies")) == 1
    assert len(crm.admin.records("contacts")) == 2


def test_a_file_with_only_a_header_says_it_has_no_data_rows(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "empty export.csv"
    path.write_text("Email,First Name\n", encoding="utf-8")

    assert cli.main(["import", str(path), "--no-progress"]) == 0

    assert f"warning: {path}: 0 data rows (only a header); nothing to import" in (
        capsys.readouterr().out
    )
    assert _summary(path)["warnings"] == [f"{path}: 0 data rows (only a header); nothing to import"]


def test_a_mapping_file_section_decides_the_entity(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Courriel Pro,Prénom Usuel\nada@example.com,Ada\n", encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        'contacts:\n  "Courriel Pro": email\n  "Prénom Usuel": first_name\n', encoding="utf-8"
    )

    assert cli.main(["import", str(path), "--mapping", str(mapping), "--no-progress"]) == 0

    [record] = crm.admin.records("contacts")
    assert record["properties"]["email"] == "ada@example.com"
    assert record["properties"]["firstname"] == "Ada"


def test_without_entity_or_mapping_the_error_says_both_ways_out(
    tmp_path: Path,
    crm: RunningSandbox,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Courriel Pro,Prénom Usuel\nada@example.com,Ada\n", encoding="utf-8")

    assert cli.main(["import", str(path), "--no-progress"]) == 1

    err = capsys.readouterr().err
    assert "cannot tell which entity" in err
    assert "pass --entity contacts (or another entity), or --mapping" in err
