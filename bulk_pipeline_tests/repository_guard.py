"""Tests read and write nothing beside the repository: a fresh clone has nothing there.

An audit hook (PEP 578) sees every ``open``, ``io.open_code`` and ``os.open`` in the test process
and refuses a path in the repository's parent folder that is not inside the repository, such as
``../shared/specs`` or a sibling checkout. Everywhere else stays open: temporary folders, the
virtualenv, ``/usr``. So do the Python installation and hidden folders (``~/.cache``,
``~/.pyenv``) when the parent folder happens to be a home directory. Subprocesses are separate
interpreters and are not watched.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]


TEMPORARY_PREFIXES = ("pytest-of-", "tmp")
"""What pytest and ``tempfile`` name their folders in the temporary folder: open when the
repository was cloned into the temporary folder itself (``/tmp/bulk_pipeline``)."""


class OutsideRepositoryError(RuntimeError):
    """Not an ``OSError``, so code that treats a failed open as "file absent" cannot hide it."""


@dataclass(frozen=True)
class RepositoryGuard:
    """Folders end in a separator, so ``/src/bulk_pipeline`` does not contain
    ``/src/bulk_pipeline-old``."""

    repository: str
    parent: str
    exempt: tuple[str, ...]
    """Folders inside ``parent`` that stay open: the repository and the Python installation."""

    @classmethod
    def around(cls, repository: Path) -> RepositoryGuard:
        parent = _folder(repository.parent)
        environment = (
            repository,
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            sys.base_exec_prefix,
            tempfile.gettempdir(),
        )
        exempt = {_folder(Path(p)) for p in environment} - {parent}
        if parent == _folder(Path(tempfile.gettempdir())):
            exempt |= {parent + prefix for prefix in TEMPORARY_PREFIXES}
        return cls(
            _folder(repository), parent, tuple(sorted(p for p in exempt if p.startswith(parent)))
        )

    def refuses(self, path: str) -> bool:
        """Whether the absolute, normalized ``path`` lies beside the repository."""
        if not path.startswith(self.parent) or path.startswith(self.exempt):
            return False
        return not path[len(self.parent) :].startswith(".")

    def audit(self, event: str, arguments: tuple[Any, ...]) -> None:
        """The hook itself: it sees every audit event, so all but ``open`` leave at once."""
        if event != "open" or isinstance(arguments[0], int):
            return
        path = os.path.abspath(os.fsdecode(arguments[0]))
        if self.refuses(path):
            raise OutsideRepositoryError(
                f"{path} is outside the repository {self.repository}: tests must not use files "
                "beside it (a fresh clone has none). Commit a fixture, e.g. under "
                "bulk_pipeline_tests/specs (see its README.md), or use tmp_path."
            )


def _folder(path: Path) -> str:
    return os.path.join(os.path.abspath(path), "")


_installed: list[RepositoryGuard] = []


def install() -> None:
    """Watch every open in this process from now on (an audit hook cannot be removed).

    Not for a repository at the top of the filesystem (``/app`` in a container): its siblings
    are the system's own folders, which tests may read."""
    if _installed or REPOSITORY.parent == REPOSITORY.parent.parent:
        return
    guard = RepositoryGuard.around(REPOSITORY)
    sys.addaudithook(guard.audit)
    _installed.append(guard)


def installed() -> RepositoryGuard | None:
    return _installed[0] if _installed else None
