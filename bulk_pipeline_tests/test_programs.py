"""Tests that need a Debian program skip without it, fail without it under CI, and make setup says
which ones will be skipped (programs.py)."""

from __future__ import annotations

import pytest

from bulk_pipeline_tests import programs
from bulk_pipeline_tests.programs import Program, skip_or_fail_without

ABSENT = Program("needs_nothing", "no-such-program-for-bulk-pipeline", "no-such-package", "tests")


def test_a_missing_program_skips_its_tests_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y no-such-package"):
        skip_or_fail_without(ABSENT)


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_under_ci_a_missing_program_fails_its_tests(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*apt-get install -y no-such-package"):
        skip_or_fail_without(ABSENT)


def test_a_present_program_lets_its_tests_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    skip_or_fail_without(Program("needs_sh", "sh", "dash", "tests"))


def test_programs_are_found_in_their_folders_off_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert Program("needs_sh", "sh", "dash", "tests", ("/usr/bin", "/bin")).find() is not None
    assert Program("needs_sh", "sh", "dash", "tests").find() is None


def test_every_marker_is_registered(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert {program.marker for program in programs.PROGRAMS} <= registered


def test_setup_says_in_one_line_what_will_be_skipped_when_it_cannot_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    present = Program("needs_sh", "sh", "dash", "tests")
    monkeypatch.setattr(programs, "PROGRAMS", (ABSENT, present))
    monkeypatch.setattr(programs.os, "geteuid", lambda: 1000)

    assert programs.main() == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "not root" in lines[0]
    assert "skip tests (marker needs_nothing)" in lines[0]
    assert lines[0].endswith("sudo apt-get install -y no-such-package")
