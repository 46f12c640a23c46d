"""What ``bulk-pipeline status`` and ``bulk-pipeline report`` print.

Both read only the data home's files (summary.json per finished import, the import registry's
manifests), not the Dagster instance, so they answer instantly and work while a run is going.
An import shows as "completed" once its summary exists: the summary is written last, and only
when every row has an outcome.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bulk_pipeline import config
from bulk_pipeline.imports import UnknownImportError
from bulk_pipeline.reports.charts import OUTCOMES
from bulk_pipeline.reports.render import (
    HTML_FILE,
    REJECTED_FILE,
    SUMMARY_FILE,
    facts,
    write_reports,
)

COMPLETED = "completed"
NOT_FINISHED = "not finished"
UNREADABLE = "unreadable summary"
IMPORT_ID_PATTERN = re.compile(r"[a-z0-9_-]+")
"""What ``imports.import_id_for`` produces; anything else is not an id (and not a path)."""
COUNT_COLUMNS = ("rows", *OUTCOMES)
MAX_FILE_CHARS = 40
"""Longer file names are cut in the status table so a row fits a terminal."""


def recent_imports(limit: int = 20) -> list[dict[str, Any]]:
    """Finished and registered imports, newest first (by finish, else by registration).

    Each row has ``import_id``, ``file`` (the file name), ``entity``, ``target``, ``state``,
    ``finished_at`` (ISO text or None) and the counts ``rows``, ``created`` ... ``failed``
    (None until the import has finished).
    """
    home = config.data_home()
    rows: dict[str, dict[str, Any]] = {}
    for manifest in sorted((home / "imports").glob("*.json")):
        rows[manifest.stem] = _registered_row(manifest)
    for summary_path in sorted((home / "reports").glob(f"*/{SUMMARY_FILE}")):
        import_id = summary_path.parent.name
        rows[import_id] = _summary_row(import_id, summary_path, rows.get(import_id))
    ordered = sorted(rows.values(), key=lambda row: row["_sort"], reverse=True)
    return [{k: v for k, v in row.items() if k != "_sort"} for row in ordered[:limit]]


def _registered_row(manifest: Path) -> dict[str, Any]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    return {
        "import_id": manifest.stem,
        "file": Path(str(data.get("source_path", "?"))).name,
        "entity": data.get("entity") or "auto",
        "target": data.get("target", "?"),
        "state": NOT_FINISHED,
        "finished_at": None,
        **dict.fromkeys(COUNT_COLUMNS),
        "_sort": manifest.stat().st_mtime,
    }


def _summary_row(
    import_id: str, summary_path: Path, registered: dict[str, Any] | None
) -> dict[str, Any]:
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        finished_at = summary.get("finished_at")
        sort_key = (
            datetime.fromisoformat(finished_at).timestamp()
            if finished_at
            else summary_path.stat().st_mtime
        )
        return {
            "import_id": import_id,
            "file": Path(str(summary["file"])).name,
            "entity": summary["entity"],
            "target": summary["target"],
            "state": COMPLETED,
            "finished_at": finished_at,
            **{key: int(summary[key]) for key in COUNT_COLUMNS},
            "_sort": sort_key,
        }
    except (OSError, ValueError, KeyError, TypeError):
        unknown = {"file": "?", "entity": "?", "target": "?", **dict.fromkeys(COUNT_COLUMNS)}
        return {
            **(registered or unknown),
            "import_id": import_id,
            "state": UNREADABLE,
            "finished_at": None,
            "_sort": summary_path.stat().st_mtime,
        }


def format_status(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``recent_imports`` rows, for a terminal or a log."""
    if not rows:
        return "No imports yet. Add one with `bulk-pipeline import PATH`."
    headers = [
        "IMPORT",
        "FILE",
        "ENTITY",
        "TARGET",
        "STATE",
        "FINISHED",
        *map(str.upper, COUNT_COLUMNS),
    ]
    table = [
        [
            _printable(row["import_id"]),
            _printable(row["file"], MAX_FILE_CHARS),
            _printable(row["entity"]),
            _printable(row["target"]),
            _printable(row["state"]),
            _short_time(row["finished_at"]),
            *("-" if row[key] is None else f"{row[key]:,}" for key in COUNT_COLUMNS),
        ]
        for row in rows
    ]
    numeric = range(6, len(headers))
    widths = [max(len(line[i]) for line in [headers, *table]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(cells) for cells in table)])


def _printable(value: object, limit: int | None = None) -> str:
    """Control characters (a file name may hold terminal escape codes) shown as ``?``."""
    text = "".join(char if char.isprintable() else "?" for char in str(value))
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def _short_time(value: str | None) -> str:
    if not value:
        return "-"
    return f"{datetime.fromisoformat(value).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def format_report(import_id: str) -> str:
    """The summary of one import and the path of its report.html, for the terminal.

    Writes the HTML and markdown reports first when they are missing or older than the summary
    (an import finished before reports existed, or a summary rewritten by a re-run), so the
    printed path always opens the current report.

    Raises:
        UnknownImportError: no import with this id is registered or reported.
    """
    home = config.data_home()
    if not IMPORT_ID_PATTERN.fullmatch(import_id):
        raise UnknownImportError(_unknown(import_id))
    folder = home / "reports" / import_id
    summary_path = folder / SUMMARY_FILE
    if not summary_path.is_file():
        if (home / "imports" / f"{import_id}.json").is_file():
            return (
                f"Import {import_id} has not finished: there is no summary yet.\n"
                "Run it again with `bulk-pipeline import PATH`, or see its run in the Dagster UI."
            )
        raise UnknownImportError(_unknown(import_id))
    html_path = folder / HTML_FILE
    if not html_path.is_file() or html_path.stat().st_mtime < summary_path.stat().st_mtime:
        html_path, _ = write_reports(folder)
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    width = max(len(name) for name in COUNT_COLUMNS)
    lines = [f"{label + ':':<14}{_printable(value)}" for label, value in facts(summary)]
    lines += ["", *(f"  {name:<{width}}  {int(summary[name]):>10,}" for name in COUNT_COLUMNS)]
    lines.append("")
    if (folder / REJECTED_FILE).is_file():
        lines.append(f"Rejected rows: {folder / REJECTED_FILE}")
    lines.append(f"Report:        {html_path}")
    return "\n".join(lines)


def _unknown(import_id: str) -> str:
    return (
        f"no import {import_id!r} under {config.data_home()}; "
        "`bulk-pipeline status` lists the known imports"
    )
