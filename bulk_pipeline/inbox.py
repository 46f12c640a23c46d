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

Only regular files are taken, and never through a link: an entry is examined without following
it, anything else (a symbolic link, a folder, a pipe, a device) is moved to ``failed/`` with a
note and never opened, and a file is copied into the data home from a descriptor opened with
``O_NOFOLLOW``, so swapping it for a link after the check reads nothing. Each entry is handled on
its own: one that cannot be moved or noted is reported and never stops the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bulk_pipeline import config
from bulk_pipeline.errors import UserInputError
from bulk_pipeline.imports import (
    HASH_CHARS,
    ORIGIN_INBOX,
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
LIST_ENV = "BULK_PIPELINE_INBOX_LIST"
"""A list of the target CRM every inbox import adds its records to (where the CRM has lists)."""
DEFAULT_SETTLE_SECONDS = 30.0
DEFAULT_MAX_RUNS_PER_TICK = 10
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", "~")
"""Suffixes of files still being written; write to such a name, then rename, to skip the wait."""
CURSOR_VERSION = 1
NAME_MAX_BYTES = 255
"""What most file systems allow for one file name, in bytes."""
NOTE_HASH_CHARS = 8
COPY_BLOCK_BYTES = 1 << 20
ENTRY_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


@dataclass(frozen=True)
class InboxSettings:
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    """A file must be unchanged this long before it is read."""
    max_runs_per_tick: int = DEFAULT_MAX_RUNS_PER_TICK
    target: str = DEFAULT_TARGET
    list_name: str | None = None

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
        list_name = (environ.get(LIST_ENV) or "").strip() or None
        return cls(settle_seconds=settle, max_runs_per_tick=cap, target=target, list_name=list_name)


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
    errors: list[str] = field(default_factory=list)
    """Entries that could not even be moved aside, with why; retried on the next tick."""

    def describe(self) -> str:
        text = (
            f"{len(self.runs)} imports requested, {len(self.processed)} files processed, "
            f"{len(self.failed)} failed, {len(self.already_imported)} already imported, "
            f"{self.waiting} waiting"
        )
        if self.partial:
            text += f"; not read until renamed: {', '.join(map(printable, self.partial))}"
        if self.errors:
            text += f"; could not be handled: {'; '.join(self.errors)}"
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


def printable(name: str) -> str:
    """A file name fit for one log line or note: control characters (a newline in a name)
    written as escapes."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in name
    )


def fitting_name(name: str, suffix: str = "") -> str:
    """``name + suffix``, or, when that is longer than a file name may be, ``name`` cut short
    with a hash of it in place of the rest, so that different long names stay different."""
    whole = name + suffix
    if len(whole.encode("utf-8", "surrogateescape")) <= NAME_MAX_BYTES:
        return whole
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:NOTE_HASH_CHARS]
    tail = f"~{digest}{suffix}"
    room = NAME_MAX_BYTES - len(tail.encode("utf-8", "surrogateescape"))
    head = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return head + tail


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``stem-2.ext``... when that name is taken (by anything, a dangling
    link included); always a name the file system accepts."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while os.path.lexists(candidate):
        candidate = folder / fitting_name(stem, f"-{number}{suffix}")
        number += 1
    return candidate


def _entry_kind(mode: int) -> str | None:
    """What a directory entry is when it is not a regular file ("a symbolic link"...)."""
    for test, kind in ENTRY_KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


class NotARegularFile(OSError):
    """The entry turned out not to be a regular file when opened (it was swapped)."""


def _snapshot(path: Path, expected: os.stat_result) -> tuple[Path, str]:
    """Copy the file under the data home from a descriptor opened without following links,
    hashing it on the way; return the copy and the content's SHA-256.

    Raises:
        NotARegularFile: what was opened is not the regular file that was listed.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as source:
        opened = os.fstat(source.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            expected.st_dev,
            expected.st_ino,
        ):
            raise NotARegularFile(f"{printable(path.name)} changed into something else")
        incoming = config.data_home() / "work" / "inbox"
        incoming.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=incoming, delete=False) as copy:
            for block in iter(lambda: source.read(COPY_BLOCK_BYTES), b""):
                digest.update(block)
                copy.write(block)
    return Path(copy.name), digest.hexdigest()


def _stored(snapshot: Path, name: str, import_id: str) -> Path:
    """Where ``register_import`` keeps the file: the snapshot is moved there."""
    stored = config.data_home() / "files" / import_id / name
    stored.parent.mkdir(parents=True, exist_ok=True)
    if stored.exists():
        snapshot.unlink()
    else:
        os.replace(snapshot, stored)
    return stored


def _completed_import(digest: str) -> str | None:
    """The id of a finished (and not rolled back) import of this exact content, if any."""
    reports = config.data_home() / "reports"
    for folder in sorted(reports.glob(f"*-{digest[:HASH_CHARS]}")):
        if (folder / "summary.json").is_file() and not (folder / "rollback.json").exists():
            return folder.name
    return None


def _file_away(
    result: InboxTick,
    path: Path,
    folder: Path,
    note: str | None = None,
    note_suffix: str = ".error.txt",
) -> bool:
    """Move the entry itself into ``folder`` (a link stays a link: nothing is followed or
    copied) and write the note beside it, under a name cut short if need be. False, with the
    reason in ``result.errors``, when the entry could not be moved."""
    try:
        destination = _free_name(folder, path.name)
        os.rename(path, destination)
    except OSError as exc:
        result.errors.append(
            f"{printable(path.name)} could not be moved to {folder.name}/: {exc.strerror or exc}"
        )
        return False
    if note is not None:
        try:
            note_path = folder / fitting_name(destination.name, note_suffix)
            note_path.write_text(note + "\n", encoding="utf-8")
        except OSError as exc:
            result.errors.append(
                f"the note for {printable(destination.name)} could not be written: "
                f"{exc.strerror or exc}"
            )
    return True


def _fail(result: InboxTick, path: Path, note: str) -> None:
    """Move the entry to ``failed/`` with the note and count it as failed."""
    if _file_away(result, path, path.parent / FAILED_DIR, note):
        result.failed.append(path.name)


def _settle(cursor: InboxCursor, finished: Mapping[str, FinishedRun], tick: InboxTick) -> None:
    """Move the files whose runs finished; forget files that changed or went away. A file that
    cannot be moved stays in the cursor, to be moved on a later tick."""
    inbox = inbox_dir()
    for name, requested in list(cursor.requested.items()):
        path = inbox / name
        try:
            unchanged = _signature(path.lstat()) == requested.signature
        except OSError:
            unchanged = False
        if not unchanged:
            del cursor.requested[name]
            continue
        run = finished.get(requested.import_id)
        if run is None:
            continue
        if run.succeeded:
            moved = _file_away(tick, path, inbox / PROCESSED_DIR)
            outcome = tick.processed
        else:
            note = (
                f"{printable(name)}: import {requested.import_id} failed (Dagster run "
                f"{run.run_id}):\n{redact(run.message)}"
            )
            moved = _file_away(tick, path, inbox / FAILED_DIR, note)
            outcome = tick.failed
        if moved:
            del cursor.requested[name]
            outcome.append(name)


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
    entries = []
    with os.scandir(inbox) as listing:
        for entry in listing:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            own_folder = entry.name in (PROCESSED_DIR, FAILED_DIR) and stat.S_ISDIR(info.st_mode)
            if not own_folder:
                entries.append((info.st_mtime_ns, entry.name, info))
    in_flight = {r.digest for r in result.cursor.requested.values()}
    for _mtime, name, info in sorted(entries):
        if name in result.cursor.requested:
            continue
        if is_partial(name):
            result.partial.append(name)
            continue
        try:
            _take(result, inbox / name, info, now=now, settings=settings, in_flight=in_flight)
        except Exception as exc:  # one entry must never stop the tick from handling the others
            note = f"{printable(name)} could not be taken: {printable(str(exc))}"
            _fail(result, inbox / name, note)
    return result


def _take(
    result: InboxTick,
    path: Path,
    info: os.stat_result,
    *,
    now: float,
    settings: InboxSettings,
    in_flight: set[str],
) -> None:
    """Decide about one inbox entry: move it aside, leave it for later, or register it."""
    name = path.name
    kind = _entry_kind(info.st_mode)
    if kind is not None:
        note = (
            f"{printable(name)} is {kind}; only regular files put in the inbox are imported, "
            "and this was not opened. Put the file itself in the inbox."
        )
        _fail(result, path, note)
        return
    if now - info.st_mtime < settings.settle_seconds:
        result.waiting += 1
        return
    if len(result.runs) >= settings.max_runs_per_tick:
        result.waiting += 1
        return
    try:
        snapshot, digest = _snapshot(path, info)
    except OSError as exc:
        note = f"{printable(name)} could not be read: {exc.strerror or exc}"
        _fail(result, path, note)
        return
    try:
        _register(
            result, path, snapshot, digest, info, now=now, settings=settings, in_flight=in_flight
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            snapshot.unlink()


def _register(
    result: InboxTick,
    path: Path,
    snapshot: Path,
    digest: str,
    info: os.stat_result,
    *,
    now: float,
    settings: InboxSettings,
    in_flight: set[str],
) -> None:
    name = path.name
    inbox = path.parent
    earlier = _completed_import(digest)
    if earlier is not None:
        note = (
            f"{printable(name)}: not imported again: the same content was imported as "
            f"{earlier} (bulk-pipeline report {earlier})"
        )
        if _file_away(result, path, inbox / PROCESSED_DIR, note, note_suffix=".skipped.txt"):
            result.already_imported.append(name)
        return
    if digest in in_flight:
        result.waiting += 1
        return
    import_id = import_id_for(name, digest)
    try:
        stored = _stored(snapshot, name, import_id)
        register_import(
            stored,
            target=settings.target,
            list_name=settings.list_name,
            import_id=import_id,
            origin=ORIGIN_INBOX,
            copied_from=path,
        )
    except (OSError, ValueError, UserInputError) as exc:
        note = f"{printable(name)} could not be registered: {printable(str(exc))}"
        _fail(result, path, note)
        return
    result.cursor.requested[name] = Requested(
        import_id=import_id, signature=_signature(info), digest=digest, requested_at=now
    )
    in_flight.add(digest)
    result.runs.append(
        ImportToRun(file_name=name, import_id=import_id, run_key=f"inbox:{import_id}:{now:.0f}")
    )
