"""Where bulk_pipeline keeps its files and which environment variables it reads.

Everything the pipeline writes lives under the data home so that one folder can be backed up,
git-ignored or wiped as a unit. The data home never depends on the current directory: a command
run from another folder must see the same imports, not silently start an empty home there.
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
CRM_RETRY_SECONDS_ENV = "BULK_PIPELINE_CRM_RETRY_SECONDS"
"""How long a CRM that stopped answering is given to come back before a push stops."""
DATABASE_URL_ENV = "BULK_PIPELINE_DATABASE_URL"
"""``postgresql://...``: staging, the Dagster instance and shared budgets in PostgreSQL."""
CHUNK_ROWS_ENV = "BULK_PIPELINE_CHUNK_ROWS"
"""Rows each step holds at a time (reading, mapping, normalizing, validating, reports)."""
STAGING_MEMORY_ENV = "BULK_PIPELINE_STAGING_MEMORY"
"""DuckDB's memory limit while staging (e.g. ``256MB``); beyond it DuckDB spills to disk."""

CHECKOUT_HOME = "data"
"""The data home of a source checkout, beside the package (git-ignored)."""
USER_HOME_NAME = "bulk_pipeline"
"""The data home's folder name under the per-user data directory of an installed package."""
DEFAULT_SANDBOX_TOKEN = "sandbox-local-token"

DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
DEFAULT_MAX_ROWS = 10_000_000
DEFAULT_MAX_COLUMNS = 50_000
"""Spreadsheets stop at 16,384; wide files cost per column in every reader."""
DEFAULT_MAX_CELLS = 50_000_000
"""A million rows of 50 columns; calamine holds 32 bytes per cell of a sheet's range."""
DEFAULT_MAX_UNPACKED_BYTES = 4 * 1024**3
DEFAULT_MAX_COMPRESSION_RATIO = 100
"""Spreadsheet parts compress 3 to 15-fold; Apache POI refuses beyond 100-fold too."""
DEFAULT_MAX_TEXT_BYTES = 2 * 1024**3
DEFAULT_MAX_WORKBOOK_PARTS = 10_000
DEFAULT_CHUNK_ROWS = 50_000
"""About 4 MB of a typical contacts file: large enough that per-chunk costs stay small, small
enough that a chunk and its copies through normalization stay under 100 MB."""
DEFAULT_STAGING_MEMORY = "128MB"
"""With Python, Dagster and the libraries (about 400 MB), a whole import stays near 600 MB."""


def data_home() -> Path:
    """The data home, created on first use; see ``default_data_home`` when the variable is unset."""
    configured = os.environ.get(HOME_ENV)
    home = Path(configured).expanduser().resolve() if configured else default_data_home()
    home.mkdir(parents=True, exist_ok=True)
    return home


def data_home_origin() -> str:
    """Why the data home is where it is, for the lines that print it."""
    if os.environ.get(HOME_ENV):
        return f"from ${HOME_ENV}"
    if checkout_root() is not None:
        return "the source checkout's data folder"
    return "the per-user data folder"


def default_data_home() -> Path:
    """``data/`` of the source checkout the package runs from, else the per-user data folder
    (``$XDG_DATA_HOME/bulk_pipeline``, by default ``~/.local/share/bulk_pipeline``)."""
    root = checkout_root()
    return root / CHECKOUT_HOME if root is not None else user_data_home()


def user_data_home() -> Path:
    user_data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(user_data).expanduser().resolve() / USER_HOME_NAME


def checkout_root() -> Path | None:
    """The source checkout holding this package (an editable install), or None when installed."""
    root = Path(__file__).resolve().parents[1]
    try:
        project = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if 'name = "bulk_pipeline"' in project else None


def chunk_rows() -> int:
    """Rows per chunk (``$BULK_PIPELINE_CHUNK_ROWS``, by default 50,000)."""
    configured = os.environ.get(CHUNK_ROWS_ENV, "").strip()
    if not configured:
        return DEFAULT_CHUNK_ROWS
    try:
        rows = int(configured.replace("_", ""))
    except ValueError:
        rows = 0
    if rows < 1:
        raise ValueError(f"${CHUNK_ROWS_ENV} must be a whole number of rows, got {configured!r}")
    return rows


def staging_memory() -> str:
    """DuckDB's memory limit while staging (``$BULK_PIPELINE_STAGING_MEMORY``, by default
    128MB)."""
    return os.environ.get(STAGING_MEMORY_ENV, "").strip() or DEFAULT_STAGING_MEMORY


def spill_dir() -> Path:
    """Where DuckDB writes what does not fit its memory limit, under the data home."""
    path = data_home() / "tmp" / "duckdb"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sandbox_token() -> str:
    return os.environ.get(SANDBOX_TOKEN_ENV) or DEFAULT_SANDBOX_TOKEN


def database_url() -> str | None:
    """The PostgreSQL database shared by every process of a deployment, when one is set."""
    return os.environ.get(DATABASE_URL_ENV, "").strip() or None


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
