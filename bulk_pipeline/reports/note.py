"""note.json: the summary note an import wrote to its CRM (``--note``), and where it is.

Written once per finished import run, so a re-run of the results step writes no second note;
read by the command line and ``report`` to say where the note went (CRMs whose notes need a
parent record get it on the first record the import wrote).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

NOTE_FILE = "note.json"


@dataclass(frozen=True)
class WrittenNote:
    id: str
    finished_at: str
    """The finish of the import run it sums up."""
    entity: str | None = None
    record: str | None = None
    """The record it is attached to, where the CRM's notes need one."""

    def describe(self) -> str:
        where = "" if self.record is None else f", attached to {self.entity} record {self.record}"
        return f"The summary is note {self.id} in the CRM{where}."

    def save(self, folder: Path) -> None:
        attached = None if self.record is None else {"entity": self.entity, "id": self.record}
        (folder / NOTE_FILE).write_text(
            json.dumps(
                {"note_id": self.id, "finished_at": self.finished_at, "attached_to": attached}
            ),
            encoding="utf-8",
        )


def read_note(folder: Path, finished_at: str | None) -> WrittenNote | None:
    """The note written for the run that finished at ``finished_at``, if any."""
    try:
        noted = json.loads((folder / NOTE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if noted.get("finished_at") != finished_at:
        return None
    attached = noted.get("attached_to") or {}
    return WrittenNote(
        str(noted["note_id"]),
        str(noted["finished_at"]),
        attached.get("entity"),
        None if attached.get("id") is None else str(attached["id"]),
    )
