"""Every CSV file bulk_pipeline writes neutralizes formula cells.

Two checks: no code in the package writes CSV except ``csv_export`` (so a new report cannot
bypass it), and an import, a dry run and a nightly sync fed with hostile keys produce every
report file, none of which holds a cell a spreadsheet would evaluate. A corrected rejected.csv
still imports with the original values.
"""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

import dagster as dg
import yaml

from bulk_pipeline import cli, config
from bulk_pipeline.csv_export import FORMULA_PATTERN
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.sources import sources_path
from bulk_pipeline_tests.recurring import age, contacts_csv
from bulk_pipeline_tests.test_sync import sync_day

PACKAGE = Path(__file__).resolve().parents[1] / "bulk_pipeline"
WRITER_MODULE = PACKAGE / "csv_export.py"
CSV_WRITING_CALLS = {"write_csv", "sink_csv", "to_csv", "writer", "DictWriter"}
HOSTILE_KEY = "=cmd|'/ccalc'!a0@example.com"
DASH_KEY = "-2@example.com"
REPORT_FILES = {"rejected.csv", "plan.csv", "duplicates.csv", "push_batches.csv", "vanished.csv"}


def _csv_writing_calls(path: Path) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            function = node.func
            name = (
                function.attr
                if isinstance(function, ast.Attribute)
                else function.id
                if isinstance(function, ast.Name)
                else ""
            )
            if name in CSV_WRITING_CALLS:
                calls.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}")
    return calls


def test_only_the_csv_export_module_writes_csv() -> None:
    elsewhere = [
        call
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != WRITER_MODULE
        for call in _csv_writing_calls(path)
    ]
    assert elsewhere == []
    assert _csv_writing_calls(WRITER_MODULE)


def _cells(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_every_report_csv_neutralizes_formula_cells(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    upload = tmp_path / "hostile.csv"
    with upload.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "First Name", "Last Name", '=HYPERLINK("http://x","y")'])
        writer.writerow([HOSTILE_KEY, "Ada", "Lovelace", "+1 formula"])
        writer.writerow([DASH_KEY, "Bob", "Dash", "@mention"])
        writer.writerow([HOSTILE_KEY, "Ada", "Again", "-5"])
        writer.writerow(["grace@@example.com", " =1+1", "\t@SUM(1)", "\r=2"])
        writer.writerow(["ok@example.com", "Ok", "Fine", ""])
    assert cli.main(["import", str(upload), "--dry-run", "--no-progress"]) == 0
    assert cli.main(["import", str(upload), "--no-progress", "--max-invalid-ratio", "0.5"]) == 0

    exports = config.data_home() / "exports"
    sources_path().write_text(
        yaml.safe_dump({"sources": [{"name": "crm", "entity": "contacts", "path": "exports/*"}]}),
        encoding="utf-8",
    )
    age(contacts_csv(exports / "day-1.csv", [HOSTILE_KEY, "stay@example.com"]), 50)
    assert sync_day(instance, "2026-05-01").success
    age(contacts_csv(exports / "day-2.csv", ["stay@example.com"]), 20)
    assert sync_day(instance, "2026-05-02").success

    written = [
        path
        for folder in ("reports", "work")
        for path in (config.data_home() / folder).rglob("*.csv")
    ]
    assert {path.name for path in written} >= REPORT_FILES
    formula = re.compile(FORMULA_PATTERN)
    for path in written:
        assert [cell for cell in _cells(path) if formula.match(cell)] == [], path
    report = config.data_home() / "reports" / register_import(upload).import_id
    assert f"'{HOSTILE_KEY}" in _cells(report / "plan.csv")
    assert f"'{DASH_KEY}" in _cells(report / "plan.csv")
    assert f"'{HOSTILE_KEY}" in _cells(report / "duplicates.csv")
    vanished = config.data_home() / "reports" / "sync-crm-2026-05-02" / "vanished.csv"
    assert f"'{HOSTILE_KEY}" in _cells(vanished)
    rejected = _cells(report / "rejected.csv")
    assert {'\'=HYPERLINK("http://x","y")', "' =1+1", "'\t@SUM(1)", "'\r=2"} <= set(rejected)


def test_a_corrected_rejected_csv_brings_the_original_values_back(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    upload = tmp_path / "people.csv"
    upload.write_text(
        'Email,First Name,Last Name\ngrace@@example.com," =1+1","\t@SUM(1)"\n', encoding="utf-8"
    )
    assert cli.main(["import", str(upload), "--no-progress", "--max-invalid-ratio", "1"]) == 0
    report = config.data_home() / "reports" / register_import(upload).import_id / "rejected.csv"
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(
        report.read_text(encoding="utf-8-sig").replace("grace@@", "grace@"), encoding="utf-8"
    )

    assert cli.main(["import", str(fixed), "--no-progress"]) == 0

    [record] = crm.admin.records("contacts")
    assert record["properties"]["email"] == "grace@example.com"
    assert record["properties"]["firstname"] == "=1+1"
    assert record["properties"]["lastname"] == "@SUM(1)"
