"""Recurring sources, declared in ``<data home>/sources.yaml``, and their daily snapshots.

A source names an entity, a target, a duplicate strategy and where its rows come from: a path or
glob (the newest matching file wins), a SQL query (DuckDB, SQLite or Postgres), or an HTTP(S)
URL of a CSV export. Each sync day reads a source once into a snapshot file,
``<data home>/sources/<name>/<date>.<ext>``; a re-run of that day reuses the snapshot, so a
backfill sees the rows the day saw and never today's.

Secrets stay out of the file: ``${VAR}`` in a DSN, a URL or a header is read from the
environment when the source is read, and masked in every message.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import httpx
import polars as pl
import yaml

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import UserInputError
from bulk_pipeline.imports import DEFAULT_MAX_INVALID_RATIO
from bulk_pipeline.outcomes import OnDuplicate
from bulk_pipeline.redaction import redact, register_secret
from bulk_pipeline.targets.http.drivers import is_loopback
from bulk_pipeline.targets.registry import DEFAULT_TARGET, TARGET_NAMES

SOURCES_FILE = "sources.yaml"
SNAPSHOTS_DIR = "sources"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SQL_ENGINES = ("duckdb", "sqlite", "postgres")
HTTP_TIMEOUT_SECONDS = 120.0
DEFAULT_MIRROR_MAX_SHARE = 0.5
ORIGIN_KEYS = ("path", "sql", "url")
KNOWN_KEYS = {
    "name",
    "entity",
    "target",
    "on_duplicate",
    "mapping",
    "mirror",
    "mirror_max_share",
    "max_invalid_ratio",
    "headers",
    "list",
    "create_list",
    *ORIGIN_KEYS,
}


class SourceError(UserInputError, ValueError):
    """sources.yaml is wrong, or a source cannot be read; the message names the source."""


def expand_env(text: str, where: str) -> str:
    """``text`` with each ``${VAR}`` replaced by the variable's value, remembered as a secret."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise SourceError(f"{where}: the environment variable {name} is not set")
        register_secret(found)
        return found

    return ENV_REFERENCE.sub(value, text)


class Origin(ABC):
    """Where a source's rows come from; ``fetch`` writes them to one file."""

    @abstractmethod
    def fetch(self, destination: Path, where: str) -> Path:
        """Write the rows to ``destination`` plus the right extension; return that path."""

    @abstractmethod
    def describe(self) -> str:
        """For people: what is read (secrets are never expanded here)."""


@dataclass(frozen=True)
class FileOrigin(Origin):
    """A path or glob; the newest matching file (by modification time, then name) wins.

    Relative patterns are relative to the data home. ``exports/contacts-*.csv`` picks the most
    recent export a tool dropped there.
    """

    pattern: str

    def newest(self, where: str) -> Path:
        pattern = os.path.expanduser(self.pattern)
        if not os.path.isabs(pattern):
            pattern = str(config.data_home() / pattern)
        matches = [Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]
        if not matches:
            raise SourceError(f"{where}: no file matches {self.pattern}")
        return max(matches, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def fetch(self, destination: Path, where: str) -> Path:
        chosen = self.newest(where)
        path = destination.with_suffix(chosen.suffix.lower() or ".csv")
        _write_atomically(path, lambda partial: shutil.copyfile(chosen, partial))
        return path

    def describe(self) -> str:
        return self.pattern


@dataclass(frozen=True)
class SqlOrigin(Origin):
    """A query against a DuckDB or SQLite file (opened read-only) or a Postgres database.

    The result is kept as Parquet, typed; ingest renders it as text like any Parquet file.
    """

    engine: str
    query: str
    database: str | None = None
    """DuckDB or SQLite file; relative to the data home."""
    dsn: str | None = None
    """Postgres connection string, e.g. ``${WAREHOUSE_DSN}``."""

    def _database(self) -> str:
        path = Path(os.path.expanduser(self.database or ""))
        return str(path if path.is_absolute() else config.data_home() / path)

    def _read(self, where: str) -> pl.DataFrame:
        if self.engine == "duckdb":
            with duckdb.connect(self._database(), read_only=True) as conn:
                return conn.sql(self.query).pl()
        if self.engine == "sqlite":
            uri = Path(self._database()).resolve().as_uri() + "?mode=ro"
            with sqlite3.connect(uri, uri=True) as conn:
                return pl.read_database(self.query, conn, infer_schema_length=None)
        import psycopg

        with psycopg.connect(expand_env(self.dsn or "", where)) as conn:
            return pl.read_database(self.query, conn, infer_schema_length=None)

    def fetch(self, destination: Path, where: str) -> Path:
        try:
            frame = self._read(where)
        except SourceError:
            raise
        except Exception as exc:  # each driver raises its own types; the message says enough
            raise SourceError(
                f"{where}: the {self.engine} query failed: {redact(str(exc)).strip()}"
            ) from exc
        path = destination.with_suffix(".parquet")
        _write_atomically(path, frame.write_parquet)
        return path

    def describe(self) -> str:
        return f"{self.engine} query"


@dataclass(frozen=True)
class UrlOrigin(Origin):
    """An HTTP(S) URL answering with a CSV export; ``headers`` may carry ``${TOKEN}``."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)

    def fetch(self, destination: Path, where: str) -> Path:
        url = expand_env(self.url, where)
        headers = {k: expand_env(v, where) for k, v in self.headers.items()}
        path = destination.with_suffix(".csv")

        def download(partial: Path) -> None:
            with (
                httpx.Client(
                    timeout=HTTP_TIMEOUT_SECONDS,
                    follow_redirects=True,
                    trust_env=not is_loopback(url),
                ) as client,
                client.stream("GET", url, headers=headers) as answer,
            ):
                if answer.status_code != 200:
                    raise SourceError(
                        f"{where}: {redact(self.url)} answered HTTP {answer.status_code}"
                    )
                with partial.open("wb") as handle:
                    for block in answer.iter_bytes():
                        handle.write(block)

        try:
            _write_atomically(path, download)
        except httpx.HTTPError as exc:
            raise SourceError(
                f"{where}: could not download {redact(self.url)}: {redact(str(exc))}"
            ) from exc
        return path

    def describe(self) -> str:
        return self.url


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a partial file and rename, so a crash never leaves half a snapshot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class Source:
    name: str
    entity: Entity
    target: str
    on_duplicate: OnDuplicate
    origin: Origin
    mapping: Path | None = None
    mirror: bool = False
    """Archive in the CRM the records that vanished from the source (only those we created)."""
    mirror_max_share: float = DEFAULT_MIRROR_MAX_SHARE
    """Archive nothing when more than this share of the last sync's records vanished at once:
    an empty or truncated export must not wipe the CRM."""
    max_invalid_ratio: float = DEFAULT_MAX_INVALID_RATIO
    list_name: str | None = None
    """Add every record of each sync to this list of the CRM (once each)."""
    create_list: bool = False

    def snapshot_dir(self) -> Path:
        return config.data_home() / SNAPSHOTS_DIR / self.name

    def snapshot(self, day: date, *, fresh: bool = False) -> Path:
        """The day's snapshot, read from the origin the first time and reused after; ``fresh``
        reads the origin again and replaces it (a day synced again on purpose)."""
        existing = sorted(
            p
            for p in self.snapshot_dir().glob(f"{day.isoformat()}.*")
            if not p.name.endswith(".partial")
        )
        if existing and not fresh:
            return existing[0]
        fetched = self.origin.fetch(self.snapshot_dir() / day.isoformat(), f"source {self.name}")
        for old in existing:
            if old != fetched:
                old.unlink()
        return fetched


def sources_path() -> Path:
    return config.data_home() / SOURCES_FILE


def _choice(value: Any, choices: tuple[str, ...], where: str, key: str) -> str:
    if value not in choices:
        raise SourceError(f"{where}: {key} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _share(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise SourceError(f"{where}: {key} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _origin(spec: dict[str, Any], where: str) -> Origin:
    given = [key for key in ORIGIN_KEYS if key in spec]
    if len(given) != 1:
        raise SourceError(f"{where}: give exactly one of path, sql or url")
    if "path" in spec:
        return FileOrigin(str(spec["path"]))
    if "url" in spec:
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict):
            raise SourceError(f"{where}: headers must be a mapping")
        url = str(spec["url"])
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"{where}: url must start with http:// or https://")
        return UrlOrigin(url, {str(k): str(v) for k, v in headers.items()})
    sql = spec["sql"]
    if not isinstance(sql, dict) or not sql.get("query"):
        raise SourceError(f"{where}: sql needs engine and query (and database or dsn)")
    engine = _choice(sql.get("engine"), SQL_ENGINES, where, "sql.engine")
    if engine == "postgres" and not sql.get("dsn"):
        raise SourceError(f"{where}: a postgres query needs dsn, e.g. dsn: ${{WAREHOUSE_DSN}}")
    if engine != "postgres" and not sql.get("database"):
        raise SourceError(f"{where}: a {engine} query needs database (the file to open)")
    return SqlOrigin(
        engine=engine,
        query=str(sql["query"]),
        database=str(sql["database"]) if sql.get("database") else None,
        dsn=str(sql["dsn"]) if sql.get("dsn") else None,
    )


def parse_source(spec: Any, position: int) -> Source:
    if not isinstance(spec, dict):
        raise SourceError(f"{SOURCES_FILE}: entry {position} is not a mapping")
    name = spec.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SourceError(
            f"{SOURCES_FILE}: entry {position} needs a name of lower-case letters, digits, _ and "
            f"- (at most 48), got {name!r}"
        )
    where = f"{SOURCES_FILE}: source {name}"
    unknown = sorted(set(spec) - KNOWN_KEYS)
    if unknown:
        raise SourceError(f"{where}: unknown keys {', '.join(unknown)}")
    entity = _choice(spec.get("entity"), tuple(e.value for e in Entity), where, "entity")
    mapping = spec.get("mapping")
    mapping_path = None
    if mapping:
        mapping_path = Path(os.path.expanduser(str(mapping)))
        if not mapping_path.is_absolute():
            mapping_path = config.data_home() / mapping_path
    mirror = spec.get("mirror", False)
    if not isinstance(mirror, bool):
        raise SourceError(f"{where}: mirror must be true or false")
    list_name = spec.get("list")
    if list_name is not None and (not isinstance(list_name, str) or not list_name.strip()):
        raise SourceError(f"{where}: list must be the name of a list in the CRM")
    create_list = spec.get("create_list", False)
    if not isinstance(create_list, bool) or (create_list and list_name is None):
        raise SourceError(f"{where}: create_list must be true or false, and needs list")
    return Source(
        name=name,
        entity=Entity(entity),
        target=_choice(spec.get("target", DEFAULT_TARGET), TARGET_NAMES, where, "target"),
        on_duplicate=OnDuplicate(
            _choice(
                spec.get("on_duplicate", OnDuplicate.SKIP.value),
                tuple(o.value for o in OnDuplicate),
                where,
                "on_duplicate",
            )
        ),
        origin=_origin(spec, where),
        mapping=mapping_path,
        mirror=mirror,
        mirror_max_share=_share(
            spec.get("mirror_max_share", DEFAULT_MIRROR_MAX_SHARE), where, "mirror_max_share"
        ),
        max_invalid_ratio=_share(
            spec.get("max_invalid_ratio", DEFAULT_MAX_INVALID_RATIO), where, "max_invalid_ratio"
        ),
        list_name=list_name.strip() if list_name else None,
        create_list=create_list,
    )


def load_sources(path: Path | None = None) -> list[Source]:
    """The declared sources; none when the file does not exist."""
    path = path or sources_path()
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML: {exc}") from exc
    entries = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SourceError(f"{path}: expected a top-level `sources:` list")
    sources = [parse_source(spec, position) for position, spec in enumerate(entries, start=1)]
    names = [s.name for s in sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourceError(f"{path}: source names must be unique; repeated: {', '.join(repeated)}")
    return sources
