"""Imports paused by a spent CRM budget, and which of them may run again now.

The Dagster layer writes a marker per paused import (:func:`mark_paused`); the resume sensor
asks :func:`due` which markers have passed their reset time and launches those imports again.
A marker is removed when it is handed out, so each pause is resumed once; a run that meets the
budget spent again writes a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bulk_pipeline import config
from bulk_pipeline.errors import BudgetExhausted

RESUME_AT = "resume_at"


def paused_dir() -> Path:
    """One JSON file per paused import (the sensor reads files, never the staging database,
    which allows one process at a time)."""
    path = config.data_home() / "paused"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mark_paused(import_id: str, exhausted: BudgetExhausted) -> None:
    marker = paused_dir() / f"{import_id}.json"
    marker.write_text(
        json.dumps(
            {
                "import_id": import_id,
                "budget": exhausted.budget,
                RESUME_AT: exhausted.resume_at.isoformat(),
                "paused_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        ),
        encoding="utf-8",
    )


@dataclass(frozen=True)
class Paused:
    import_id: str
    budget: str
    resume_at: str


def due(now: float) -> list[Paused]:
    """Paused imports whose budget has reset by ``now`` (epoch seconds); their markers go."""
    ready: list[Paused] = []
    moment = datetime.fromtimestamp(now, UTC)
    for marker in sorted(paused_dir().glob("*.json")):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            resume_at = datetime.fromisoformat(data[RESUME_AT])
        except (OSError, ValueError, KeyError, TypeError):
            marker.unlink(missing_ok=True)
            continue
        if resume_at <= moment:
            ready.append(Paused(str(data["import_id"]), str(data.get("budget")), data[RESUME_AT]))
            marker.unlink(missing_ok=True)
    return ready
