"""`bulk-pipeline status` and `report` text: recent imports, their state, and one summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bulk_pipeline.config import HOME_ENV
from bulk_pipeline.import_state import State
from bulk_pipeline.imports import UnknownImportError
from bulk_pipeline.reports.listing import WIDTH, format_report, format_status, recent_imports
from bulk_pipeline_tests.reports.sample_import import (
    COUNTS,
    HOSTILE_FILE,
    write_manifest,
    write_sample_import,
)

OLD_ID = "old-aaaaaaaaaa"
NEW_ID = "new-bbbbbbbbbb"
PENDING_ID = "later-cccccccccc"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return home


@pytest.fixture
def three_imports(home: Path) -> Path:
    """Two finished imports (one also registered) and one registered that has not run."""
    write_sample_import(home, OLD_ID, finished_at="2025-03-01T09:00:00+00:00")
    write_sample_import(home, NEW_ID, finished_at="2025-03-05T09:00:00+00:00")
    write_manifest(home, OLD_ID, source=f"/uploads/{HOSTILE_FILE}")
    pending = write_manifest(home, PENDING_ID)
    registered_at = 1741000000  # 2025-03-03, between the two finished imports
    os.utime(pending, (registered_at, registered_at))
    return home


def test_recent_imports_newest_first_with_state_and_counts(three_imports: Path) -> None:
    rows = recent_imports()

    assert [row["import_id"] for row in rows] == [NEW_ID, PENDING_ID, OLD_ID]
    assert [row["state"] for row in rows] == [State.COMPLETED, State.NOT_RUN, State.COMPLETED]
    new, pending, old = rows
    assert {key: new[key] for key in COUNTS} == COUNTS
    assert new["rows"] == sum(COUNTS.values())
    assert new["file"] == HOSTILE_FILE
    assert new["when"].isoformat() == "2025-03-05T09:00:00+00:00"
    assert pending["file"] == "later.csv"
    assert pending["entity"] is None, "not 'auto': the entity is not known before reading"
    assert pending["rows"] is None
    assert pending["when"] is None
    assert old["entity"] == "contacts"


def test_recent_imports_limit(three_imports: Path) -> None:
    assert [row["import_id"] for row in recent_imports(limit=1)] == [NEW_ID]


def test_an_unreadable_summary_is_listed_not_skipped(home: Path) -> None:
    folder = write_sample_import(home, NEW_ID)
    (folder / "summary.json").write_text("{not json", "utf-8")

    [row] = recent_imports()

    assert row["import_id"] == NEW_ID
    assert row["unreadable"]
    assert row["rows"] is None
    assert "summary.json cannot be read" in format_status([row])


def test_a_rolled_back_import_says_so_with_what_was_undone(three_imports: Path) -> None:
    (three_imports / "reports" / NEW_ID / "rollback.json").write_text(
        json.dumps(
            {
                "import_id": NEW_ID,
                "removed": 1234,
                "restored": 56,
                "already_rolled_back": 0,
                "not_found": 0,
                "failed": [],
                "rolled_back_at": "2025-03-06T10:00:00+00:00",
            }
        ),
        "utf-8",
    )

    rows = recent_imports()

    assert rows[0]["import_id"] == NEW_ID
    assert rows[0]["state"] is State.ROLLED_BACK
    text = format_status(rows)
    assert "rolled back" in text
    assert "1,234 removed, 56 restored; the import had 1,305 rows" in text
    report = format_report(NEW_ID)
    assert report.startswith("State:        rolled back since 2025-03-06 10:00 UTC")
    assert "Rolled back:  1,234 records removed, 56 restored" in report


def test_format_status_fits_a_100_column_terminal(three_imports: Path) -> None:
    lines = format_status(recent_imports()).splitlines()

    assert lines[0].split() == [
        "IMPORT",
        "STATE",
        "WHEN",
        "(UTC)",
        "FILE",
        "->",
        "TARGET",
        "(ENTITY)",
    ]
    assert max(len(line) for line in lines) <= WIDTH
    assert lines[1].startswith(NEW_ID)
    assert "completed" in lines[1]
    assert "2025-03-05 09:00" in lines[1]
    assert lines[2].strip() == (
        "1,305 rows: 1,234 created, 56 updated, 7 unchanged, 3 duplicates, 4 invalid, 1 failed"
    )
    pending = lines[3]
    assert pending.startswith(PENDING_ID)
    assert "not run" in pending
    assert pending.endswith("later.csv -> sandbox")
    assert pending.index("not run") == lines[0].index("STATE")


def test_format_status_defuses_terminal_escapes_and_cuts_long_names(home: Path) -> None:
    write_manifest(home, PENDING_ID, source="/uploads/\x1b[31mred\x1b[0m" + "x" * 120 + ".csv")

    [line] = format_status(recent_imports()).splitlines()[1:]

    assert "\x1b" not in line
    assert "?[31mred?[0mxxx" in line
    assert len(line) == WIDTH
    assert line.endswith("…")


def test_format_status_without_imports(home: Path) -> None:
    assert "No imports yet" in format_status(recent_imports())


def test_format_report_prints_the_state_the_summary_and_writes_the_html(
    three_imports: Path,
) -> None:
    text = format_report(NEW_ID)

    report = three_imports / "reports" / NEW_ID / "report.html"
    assert report.is_file()
    assert text.startswith("State:        completed since 2025-03-05 09:00 UTC")
    assert text.endswith(f"Report:        {report}")
    assert f"Import id:    {NEW_ID}" in text
    assert "Duration:     22 h 47 min 0 s" in text
    for name, count in COUNTS.items():
        assert f"  {name:<10}  {count:>10,}" in text
    assert str(three_imports / "reports" / NEW_ID / "rejected.csv") in text


def test_format_report_rewrites_a_stale_report(three_imports: Path) -> None:
    format_report(NEW_ID)
    report = three_imports / "reports" / NEW_ID / "report.html"
    report.write_text("stale", "utf-8")
    os.utime(report, (0, 0))

    format_report(NEW_ID)

    assert "Import report" in report.read_text("utf-8")


def test_format_report_of_an_import_that_never_ran(three_imports: Path) -> None:
    text = format_report(PENDING_ID)

    assert text.startswith("State:        not run")
    assert "has not completed" in text
    assert not (three_imports / "reports" / PENDING_ID).exists()


@pytest.mark.parametrize("import_id", ["nope-0000000000", "../reports", "", "A/B"])
def test_format_report_of_an_unknown_id(three_imports: Path, import_id: str) -> None:
    with pytest.raises(UnknownImportError, match="bulk-pipeline status"):
        format_report(import_id)
    assert sorted(path.name for path in (three_imports / "reports").iterdir()) == [NEW_ID, OLD_ID]
