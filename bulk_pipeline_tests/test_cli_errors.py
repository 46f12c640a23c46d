"""What a person sees when an import fails: a few lines naming their file as they typed it, what
to do, and where the full log is, never a wall of log records or a stack trace.

The real command runs in its own process against a sandbox over loopback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bulk_pipeline import config
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.cli_process import cli_env, run_on_pipes

MAX_ERROR_LINES = 15
UNREADABLE = {
    "export.csv": b"\x00\x01\x02binary\x00data\xff\xfe" * 200,
    "contacts.xlsx": b"PK\x03\x04" + b"\x00 not really a zip archive " * 40,
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_file_fails_in_a_few_lines_naming_the_path_as_typed(
    tmp_path: Path, crm: RunningSandbox, name: str
) -> None:
    folder = tmp_path / "my exports"
    folder.mkdir()
    (folder / name).write_bytes(UNREADABLE[name])
    typed = f"my exports/{name}"

    done = run_on_pipes(["import", typed], cli_env(crm), cwd=tmp_path)

    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) <= MAX_ERROR_LINES, done.stderr
    assert f"error: import of {typed} failed while reading the file" in done.stderr
    assert f"  {typed}: " in done.stderr
    assert str(config.data_home() / "files") not in done.stderr, "not the internal copy"
    assert "Traceback" not in done.stderr
    assert "Stack Trace" not in done.stderr
    log = re.search(r"full log: (\S+\.log)", done.stderr)
    assert log is not None, done.stderr
    records = Path(log.group(1)).read_text(encoding="utf-8")
    assert Path(log.group(1)).parent == config.data_home() / "logs"
    assert "STEP_FAILURE" in records or 'Execution of step "source_rows" failed' in records
    assert "Stack Trace:" in records
    assert crm.admin.stats()["requests"]["writes"] == 0


def test_verbose_prints_the_log_records_as_well(tmp_path: Path, crm: RunningSandbox) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(UNREADABLE["export.csv"])

    done = run_on_pipes(["import", str(path), "--verbose"], cli_env(crm))

    assert done.returncode == 1
    assert 'Execution of step "source_rows" failed' in done.stderr
    assert f"error: import of {path} failed while reading the file" in done.stderr


def test_a_missing_column_names_the_file_and_what_to_do(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    (tmp_path / "people.csv").write_text("First Name,Last Name\nAda,Lovelace\n", "utf-8")

    done = run_on_pipes(
        ["import", "people.csv", "--entity", "contacts", "--no-progress"],
        cli_env(crm),
        cwd=tmp_path,
    )

    assert done.returncode == 1
    assert len(done.stderr.splitlines()) <= MAX_ERROR_LINES, done.stderr
    assert "people.csv" in done.stderr
    assert "'email'" in done.stderr
    assert "Traceback" not in done.stderr
