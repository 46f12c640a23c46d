"""The import registry: one import per distinct file, known by a partition-safe import id.

The id is the sanitized file name plus a short hash of the content, so the same file dropped
twice is the same import (and the same Dagster partition), and any name becomes a valid key.
The file is copied under the data home so an import can be re-run after the original moved.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import UserInputError
from bulk_pipeline.outcomes import OnDuplicate
from bulk_pipeline.targets.registry import DEFAULT_TARGET, entry

HASH_CHARS = 10
MAX_STEM_CHARS = 48
IMPORT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
DEFAULT_MAX_INVALID_RATIO = 0.2
ORIGIN_COMMAND = "command"
ORIGIN_INBOX = "inbox"
ORIGIN_SYNC = "sync"


@dataclass(frozen=True)
class ImportRequest:
    import_id: str
    source_path: str
    """Where the file was when it was registered (for people)."""
    stored_path: str
    """The copy the pipeline reads."""
    entity: Entity | None
    target: str
    on_duplicate: OnDuplicate
    mapping_path: str | None
    max_invalid_ratio: float = DEFAULT_MAX_INVALID_RATIO
    """Above this share of invalid rows the push is blocked (a check), so a wrong file or a
    wrong mapping cannot flood the CRM with half-empty records."""
    max_create_share: float | None = None
    """When set, the push is blocked if more than this share of records would be new."""
    note: bool = False
    """Write the summary to the CRM as a note when the import finishes."""
    given_path: str | None = None
    """The path as the person typed it, so messages name the file the way they know it."""
    sheet: str | None = None
    """The workbook sheet to read, when the person chose one (``--sheet``)."""
    origin: str = ORIGIN_COMMAND
    """Who registered the import (``command``, ``inbox`` or ``sync``): what a person can do
    about a problem differs (a dropped file has no command line to add an option to)."""
    list_name: str | None = None
    """Add every record the import wrote or found to this list of the CRM, once."""
    create_list: bool = False
    """Create the list when the CRM has none of that name (else that is an error)."""

    @property
    def file_name(self) -> str:
        return Path(self.source_path).name

    @property
    def source(self) -> str:
        """The file as messages name it: the path as typed, else where it was registered."""
        return self.given_path or self.source_path


class UnknownImportError(UserInputError, LookupError):
    pass


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_id_for(name: str, digest: str) -> str:
    """``<sanitized stem>-<hash>``: lower-case letters, digits, ``_`` and ``-`` only."""
    stem = Path(name).stem.lower()
    stem = re.sub(r"[^a-z0-9]+", "_", stem).strip("_")[:MAX_STEM_CHARS] or "file"
    return f"{stem}-{digest[:HASH_CHARS]}"


def _manifest_path(import_id: str) -> Path:
    return config.data_home() / "imports" / f"{import_id}.json"


def register_import(
    path: Path,
    *,
    entity: Entity | None = None,
    target: str = DEFAULT_TARGET,
    on_duplicate: OnDuplicate = OnDuplicate.SKIP,
    mapping_path: Path | None = None,
    max_invalid_ratio: float = DEFAULT_MAX_INVALID_RATIO,
    max_create_share: float | None = None,
    note: bool = False,
    list_name: str | None = None,
    create_list: bool = False,
    import_id: str | None = None,
    sheet: str | None = None,
    origin: str = ORIGIN_COMMAND,
    copied_from: Path | None = None,
) -> ImportRequest:
    """Copy the file under the data home and record how to import it.

    ``import_id`` replaces the content-derived id where the caller names its imports itself (a
    nightly sync's snapshot is ``sync-<source>-<date>`` whatever its content). A chosen ``sheet``
    is part of the derived id: two sheets of one workbook are two imports. ``copied_from`` is
    where the file came from when ``path`` is already the stored copy (the inbox copies a file
    without following links before registering it).
    """
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    entry(target)
    for name, ratio in (
        ("max_invalid_ratio", max_invalid_ratio),
        ("max_create_share", max_create_share),
    ):
        if ratio is not None and not 0 <= ratio <= 1:
            raise UserInputError(f"{name} must be between 0 and 1, got {ratio}")
    if mapping_path is not None and not mapping_path.is_file():
        raise UserInputError(f"{mapping_path}: mapping file not found")
    named_by_caller = import_id is not None
    list_name = (list_name or "").strip() or None
    if create_list and list_name is None:
        raise UserInputError("creating a list needs its name (--list NAME)")
    if import_id is None:
        name = f"{path.stem}_{sheet}{path.suffix}" if sheet else path.name
        import_id = import_id_for(name, file_digest(path))
    elif not IMPORT_ID_PATTERN.fullmatch(import_id):
        raise UserInputError(
            f"{import_id!r} is not a valid import id: use lower-case letters, digits, _ and -"
        )
    stored = config.data_home() / "files" / import_id / path.name
    if stored != path and (named_by_caller or not stored.exists()):
        # A content-derived id always names the same content; a caller's id may be given a new
        # version of its file (a sync day read again).
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, stored)
    request = ImportRequest(
        import_id=import_id,
        source_path=str(copied_from if copied_from is not None else path.resolve()),
        stored_path=str(stored),
        entity=entity,
        target=target,
        on_duplicate=on_duplicate,
        mapping_path=str(mapping_path.resolve()) if mapping_path else None,
        max_invalid_ratio=max_invalid_ratio,
        max_create_share=max_create_share,
        note=note,
        given_path=str(copied_from if copied_from is not None else path),
        sheet=sheet,
        origin=origin,
        list_name=list_name,
        create_list=create_list,
    )
    manifest = _manifest_path(import_id)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(asdict(request), indent=2), encoding="utf-8")
    return request


def load_import(import_id: str) -> ImportRequest:
    manifest = _manifest_path(import_id)
    if not manifest.is_file():
        raise UnknownImportError(
            f"import {import_id!r} is not registered in {manifest.parent}; "
            "add files with `bulk-pipeline import PATH` or the inbox"
        )
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return ImportRequest(
        import_id=data["import_id"],
        source_path=data["source_path"],
        stored_path=data["stored_path"],
        entity=Entity(data["entity"]) if data.get("entity") else None,
        target=data["target"],
        on_duplicate=OnDuplicate(data["on_duplicate"]),
        mapping_path=data.get("mapping_path"),
        max_invalid_ratio=float(data.get("max_invalid_ratio", DEFAULT_MAX_INVALID_RATIO)),
        max_create_share=data.get("max_create_share"),
        note=bool(data.get("note", False)),
        given_path=data.get("given_path"),
        sheet=data.get("sheet"),
        origin=data.get("origin", ORIGIN_COMMAND),
        list_name=data.get("list_name"),
        create_list=bool(data.get("create_list", False)),
    )
