"""Debian programs that some tests drive: headless Chromium renders the HTML report, and
PostgreSQL (``initdb``, ``pg_ctl``) runs a throwaway server for the Postgres sync source.

A test that needs one carries its marker (``needs_chromium``, ``needs_postgres``). When the
program is missing, conftest skips the test with how to install it, except under ``CI=true``,
where the test fails: CI must always run them. ``make setup`` runs this module
(``python -m bulk_pipeline_tests.programs``), which installs what is missing with apt-get when it
runs as root, and otherwise says in one line which tests will be skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Program:
    marker: str
    command: str
    package: str
    """The Debian package that provides ``command``."""
    used_by: str
    folders: tuple[str, ...] = ()
    """Globs of folders to look in after ``PATH``; Debian keeps PostgreSQL's tools off it."""

    def find(self, command: str | None = None) -> str | None:
        """Where ``command`` (default: the program's own; or a sibling tool such as ``pg_ctl``)
        is installed, or ``None``."""
        name = command or self.command
        found = shutil.which(name)
        if found is not None:
            return found
        candidates = (sorted(glob.glob(os.path.join(folder, name))) for folder in self.folders)
        return next((c[0] for c in candidates if c and os.access(c[0], os.X_OK)), None)

    def path(self, command: str | None = None) -> str:
        found = self.find(command)
        if found is None:
            raise LookupError(self.missing())
        return found

    def missing(self) -> str:
        return (
            f"{self.command} not found ({self.used_by} need it): "
            f"install Debian's {self.package}: apt-get install -y {self.package}"
        )


CHROMIUM = Program(
    "needs_chromium", "chromium", "chromium", "the HTML report browser tests", ("/usr/bin",)
)
POSTGRES = Program(
    "needs_postgres",
    "initdb",
    "postgresql",
    "the PostgreSQL sync tests",
    ("/usr/lib/postgresql/*/bin",),
)
PROGRAMS = (CHROMIUM, POSTGRES)


def ci() -> bool:
    """CI sets ``CI=true``; there a missing program fails its tests instead of skipping them."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def skip_or_fail_without(program: Program) -> None:
    """For a test that needs ``program``: skip it when missing, or fail it when ``CI=true``."""
    if program.find() is not None:
        return
    if ci():
        pytest.fail(f"CI=true, so this test must run, but {program.missing()}")
    pytest.skip(program.missing())


def _apt_get_install(packages: list[str]) -> str | None:
    """Install quietly; the last line apt-get wrote on error, or ``None`` on success."""
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *packages],
    ):
        done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return None


def main() -> int:
    """Install missing programs when possible; otherwise one line on what will be skipped."""
    missing = [program for program in PROGRAMS if program.find() is None]
    if not missing:
        return 0
    packages = [program.package for program in missing]
    error = "not root" if os.geteuid() != 0 else None
    if error is None and shutil.which("apt-get") is None:
        error = "no apt-get"
    if error is None:
        print(f"Installing {', '.join(packages)} with apt-get (used by some tests)...")
        error = _apt_get_install(packages)
        missing = [program for program in missing if program.find() is None]
        error = error or "apt-get ran, but they are still not found"
    if missing:
        tests = "; ".join(f"{p.used_by} (marker {p.marker})" for p in missing)
        print(
            f"{', '.join(p.package for p in missing)} not installed ({error}): "
            f"make test will skip {tests}; to run them: "
            f"sudo apt-get install -y {' '.join(p.package for p in missing)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
