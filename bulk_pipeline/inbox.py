"""The inbox: a file dropped into ``<data home>/inbox/`` becomes an import, unattended.

A sensor calls :func:`tick` every half minute. A file is picked up once it is complete: names
that writers use while a file is still being written (``.part``, ``.tmp``, dot-files...) are
left alone until renamed, and any other file must be unchanged for a settle period. Each new
file is registered as an import (its id, the partition key, is the sanitized name plus a content
hash, so odd names become valid keys) and its run requested, at most so many per tick. A file
whose content was imported before is not imported again.

The cursor remembers the files whose runs were requested and not yet finished; it is pruned as
they finish, so it stays as small as the inbox. Nothing depends on modification times being
distinct: files are told apart by name, and a file is requested again only if it changed. When a
file's run has finished, the file moves to ``inbox/processed/`` or ``inbox/failed/`` (with the
error in ``<name>.error.txt`` beside it).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bulk_pipeline import config
from bulk_pipeline.imports import (
    HASH_CHARS,
    ORIGIN_INBOX,
    file_digest,
    import_id_for,
    register_import,
)
from bulk_pipeline.redaction import redact
from bulk_pipeline.runs import FinishedRun
from bulk_pipeline.targets.registry import DEFAULT_TARGET, TARGET_NAMES

INBOX_DIR = "inbox"
PROCESSED_DIR = "processed"
FAILED_DIR = "failed"
SETTLE_SECONDS_ENV = "BULK_PIPELINE_INBOX_SETTLE_SECONDS"
MAX_RUNS_PER_TICK_ENV = "BULK_PIPELINE_INBOX_MAX_RUNS_PER_TICK"
TARGET_ENV = "BULK_PIPELINE_INBOX_TARGET"
DEFAULT_SETTLE_SECONDS = 30.0
DEFAULT_MAX_RUNS_PER_TICK = 10
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", "~")
"""Suffixes of files still being written; write to such a name, then rename, to skip the wait."""
CURSOR_VERSION = 1


@dataclass(frozen=True)
class InboxSettings:
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    """A file must be unchanged this long before it is read."""
    max_runs_per_tick: int = DEFAULT_MAX_RUNS_PER_TICK
    target: str = DEFAULT_TARGET

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> InboxSettings:
        settle = float(environ.get(SETTLE_SECONDS_ENV) or DEFAULT_SETTLE_SECONDS)
        cap = int(environ.get(MAX_RUNS_PER_TICK_ENV) or DEFAULT_MAX_RUNS_PER_TICK)
        target = environ.get(TARGET_ENV) or DEFAULT_TARGET
        if settle < 0 or cap < 1:
            raise ValueError(
                f"{SETTLE_SECONDS_ENV} must be at least 0 and {MAX_RUNS_PER_TICK_ENV} at least 1"
            )
        if target not in TARGET_NAMES:
            raise ValueError(f"{TARGET_ENV}={target!r}: choose one of {', '.join(TARGET_NAMES)}")
        return cls(settle_seconds=settle, max_runs_per_tick=cap, target=target)


@dataclass(frozen=True)
class Requested:
    """A file whose import run was requested and has not finished yet."""

    import_id: str
    signature: str
    """Size and modification time when requested: a file that changes since is a new file."""
    digest: str
    requested_at: float


@dataclass
class InboxCursor:
    requested: dict[str, Requested] = field(default_factory=dict)
    """By file name."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "requested": {name: asdict(r) for name, r in sorted(self.requested.items())},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> InboxCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls({name: Requested(**r) for name, r in data.get("requested", {}).items()})

    def requested_times(self) -> dict[str, float]:
        """When each requested partition was asked for, by import id (what ``finished_runs``
        needs)."""
        return {r.import_id: r.requested_at for r in self.requested.values()}


@dataclass(frozen=True)
class ImportToRun:
    file_name: str
    import_id: str
    run_key: str


@dataclass
class InboxTick:
    runs: list[ImportToRun] = field(default_factory=list)
    cursor: InboxCursor = field(default_factory=InboxCursor)
    processed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    already_imported: list[str] = field(default_factory=list)
    waiting: int = 0
    """Files left for a later tick: settling, or over the per-tick cap."""
    partial: list[str] = field(default_factory=list)
    """Hidden files and files named as still being written: read once renamed."""

    def describe(self) -> str:
        text = (
            f"{len(self.runs)} imports requested, {len(self.processed)} files processed, "
            f"{len(self.failed)} failed, {len(self.already_imported)} already imported, "
            f"{self.waiting} waiting"
        )
        if self.partial:
            text += f"; not read until renamed: {', '.join(self.partial)}"
        return text


def inbox_dir() -> Path:
    path = config.data_home() / INBOX_DIR
    for folder in (path, path / PROCESSED_DIR, path / FAILED_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    return path


def is_partial(name: str) -> bool:
    """A name that says the file is still being written (or a hidden file)."""
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def _signature(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``stem-2.ext``... when a file of that name is already there."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


def _move(
    path: Path, folder: Path, note: str | None = None, note_suffix: str = ".error.txt"
) -> Path:
    destination = _free_name(folder, path.name)
    shutil.move(str(path), destination)
    if note is not None:
        destination.with_name(destination.name + note_suffix).write_text(
            note + "\n", encoding="utf-8"
        )
    return destination


def _completed_import(digest: str) -> str | None:
    """The id of a finished (and not rolled back) import of this exact content, if any."""
    reports = config.data_home() / "reports"
    for folder in sorted(reports.glob(f"*-{digest[:HASH_CHARS]}")):
        if (folder / "summary.json").is_file() and not (folder / "rollback.json").exists():
            return folder.name
    return None


def _settle(cursor: InboxCursor, finished: Mapping[str, FinishedRun], tick: InboxTick) -> None:
    """Move the files whose runs finished; forget files that changed or went away."""
    inbox = inbox_dir()
    for name, requested in list(cursor.requested.items()):
        path = inbox / name
        try:
            unchanged = _signature(path.stat()) == requested.signature
        except FileNotFoundError:
            unchanged = False
        if not unchanged:
            del cursor.requested[name]
            continue
        run = finished.get(requested.import_id)
        if run is None:
            continue
        del cursor.requested[name]
        if run.succeeded:
            _move(path, inbox / PROCESSED_DIR)
            tick.processed.append(name)
        else:
            note = (
                f"import {requested.import_id} failed (Dagster run {run.run_id}):\n"
                f"{redact(run.message)}"
            )
            _move(path, inbox / FAILED_DIR, note)
            tick.failed.append(name)


def tick(
    cursor: InboxCursor,
    finished: Mapping[str, FinishedRun],
    *,
    now: float,
    settings: InboxSettings,
) -> InboxTick:
    """One sensor tick: settle finished files, then register and request new complete ones.

    ``finished`` holds the finished runs of the cursor's requested partitions, by import id
    (see ``runs.finished_runs``). Returns the runs to request and the new cursor.
    """
    result = InboxTick(cursor=InboxCursor(dict(cursor.requested)))
    _settle(result.cursor, finished, result)
    inbox = inbox_dir()
    files = []
    for path in inbox.iterdir():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file():
            files.append((stat.st_mtime_ns, path.name, path, stat))
    in_flight = {r.digest for r in result.cursor.requested.values()}
    for _mtime, name, path, stat in sorted(files):
        if name in result.cursor.requested:
            continue
        if is_partial(name):
            result.partial.append(name)
            continue
        if now - stat.st_mtime < settings.settle_seconds:
            result.waiting += 1
            continue
        if len(result.runs) >= settings.max_runs_per_tick:
            result.waiting += 1
            continue
        try:
            digest = file_digest(path)
        except OSError as exc:
            _move(path, inbox / FAILED_DIR, f"could not be read: {exc}")
            result.failed.append(name)
            continue
        earlier = _completed_import(digest)
        if earlier is not None:
            _move(
                path,
                inbox / PROCESSED_DIR,
                f"not imported again: the same content was imported as {earlier} "
                f"(bulk-pipeline report {earlier})",
                note_suffix=".skipped.txt",
            )
            result.already_imported.append(name)
            continue
        if digest in in_flight:
            result.waiting += 1
            continue
        import_id = import_id_for(name, digest)
        try:
            register_import(path, target=settings.target, import_id=import_id, origin=ORIGIN_INBOX)
        except (OSError, ValueError) as exc:
            _move(path, inbox / FAILED_DIR, f"could not be registered: {exc}")
            result.failed.append(name)
            continue
        result.cursor.requested[name] = Requested(
            import_id=import_id, signature=_signature(stat), digest=digest, requested_at=now
        )
        in_flight.add(digest)
        result.runs.append(
            ImportToRun(file_name=name, import_id=import_id, run_key=f"inbox:{import_id}:{now:.0f}")
        )
    return result
