"""Where bulk_pipeline keeps its files and which environment variables it reads.

Everything the pipeline writes lives under the data home so that one folder can be backed up,
git-ignored or wiped as a unit.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOME_ENV = "BULK_PIPELINE_HOME"
SANDBOX_TOKEN_ENV = "BULK_PIPELINE_SANDBOX_TOKEN"
SANDBOX_URL_ENV = "BULK_PIPELINE_SANDBOX_URL"
HUBSPOT_TOKEN_ENV = "HUBSPOT_ACCESS_TOKEN"
HUBSPOT_BASE_URL_ENV = "HUBSPOT_BASE_URL"

DEFAULT_HOME = "data"
DEFAULT_SANDBOX_TOKEN = "sandbox-local-token"
HUBSPOT_DEFAULT_BASE_URL = "https://api.hubapi.com"

DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
DEFAULT_MAX_ROWS = 10_000_000


def data_home() -> Path:
    """The data home, created on first use."""
    home = Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def sandbox_token() -> str:
    return os.environ.get(SANDBOX_TOKEN_ENV) or DEFAULT_SANDBOX_TOKEN


def staging_db_path() -> Path:
    return data_home() / "staging.duckdb"


def sandbox_db_path() -> Path:
    return data_home() / "sandbox" / "crm.sqlite3"


def reports_dir(import_id: str) -> Path:
    path = data_home() / "reports" / import_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def work_dir(import_id: str) -> Path:
    """Intermediate files of one import (frames between stages, progress)."""
    path = data_home() / "work" / import_id
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
