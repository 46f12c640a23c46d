"""The session-wide guard that keeps tests inside the repository (see repository_guard.py)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from bulk_pipeline_tests.repository_guard import (
    REPOSITORY,
    OutsideRepositoryError,
    RepositoryGuard,
    installed,
)

SIBLING = REPOSITORY.parent / "a-sibling-checkout-that-need-not-exist"


@pytest.fixture
def guard() -> RepositoryGuard:
    active = installed()
    if active is None:
        pytest.skip(f"the guard is off: {REPOSITORY} sits at the top of the filesystem")
    return active


@pytest.mark.usefixtures("guard")
def test_a_test_cannot_read_the_vendor_specs_beside_the_repository() -> None:
    with pytest.raises(OutsideRepositoryError, match="outside the repository"):
        (REPOSITORY.parent / "shared" / "specs" / "README.md").read_text()


@pytest.mark.usefixtures("guard")
def test_relative_low_level_and_writing_opens_beside_it_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPOSITORY)
    with pytest.raises(OutsideRepositoryError):
        open("../shared/specs/hubspot/contacts.json")  # noqa: SIM115
    with pytest.raises(OutsideRepositoryError):
        os.open(SIBLING / "data.csv", os.O_RDONLY)
    with pytest.raises(OutsideRepositoryError):
        (SIBLING / "out.txt").write_text("never written")


@pytest.mark.usefixtures("guard")
def test_the_repository_and_temporary_folders_stay_open(tmp_path: Path) -> None:
    assert 'name = "bulk_pipeline"' in (REPOSITORY / "pyproject.toml").read_text()
    (tmp_path / "scratch.txt").write_text("fine")
    assert (tmp_path / "scratch.txt").read_text() == "fine"


def test_the_rule_on_a_made_up_layout() -> None:
    rule = RepositoryGuard(
        repository="/src/bulk_pipeline/",
        parent="/src/",
        exempt=("/src/bulk_pipeline/", "/src/python3.11/"),
    )
    assert rule.refuses("/src/shared/specs/README.md")
    assert rule.refuses("/src/bulk_pipeline-old/pyproject.toml")
    assert rule.refuses("/src/notes.txt")
    assert not rule.refuses("/src/bulk_pipeline/bulk_pipeline_tests/specs/attio/api-00.json")
    assert not rule.refuses("/src/python3.11/lib/os.py")
    assert not rule.refuses("/src/.cache/matplotlib/fontlist.json")
    assert not rule.refuses("/tmp/pytest-of-root/x.txt")
    assert not rule.refuses("/usr/lib/python3.11/os.py")


def test_the_python_installation_and_temporary_folder_inside_the_parent_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setattr(sys, "base_prefix", str(home / "python3.11"))
    monkeypatch.setattr(tempfile, "tempdir", str(home / "tmp"))

    guard = RepositoryGuard.around(home / "bulk_pipeline")

    assert guard.parent == f"{home}/"
    assert not guard.refuses(str(home / "bulk_pipeline" / "README.md"))
    assert not guard.refuses(str(home / "python3.11" / "lib" / "python3.11" / "os.py"))
    assert not guard.refuses(str(home / "tmp" / "pytest-of-me" / "x.txt"))
    assert guard.refuses(str(home / "shared" / "specs" / "README.md"))


def test_a_clone_in_the_temporary_folder_leaves_its_temporary_files_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    guard = RepositoryGuard.around(tmp_path / "bulk_pipeline")

    assert not guard.refuses(str(tmp_path / "pytest-of-me" / "pytest-3" / "x.txt"))
    assert not guard.refuses(str(tmp_path / "tmpab12cd" / "staging.duckdb"))
    assert guard.refuses(str(tmp_path / "shared" / "specs" / "README.md"))
    assert guard.refuses(str(tmp_path / "bulk_pipeline-old" / "pyproject.toml"))
