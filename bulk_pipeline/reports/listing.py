"""What ``bulk-pipeline status`` and ``bulk-pipeline report`` print.

The state of each import comes from ``import_state`` (its runs, then its files); the counts from
its summary.json, written last and only when every row has an outcome. Neither reads the
staging database, so both answer while an import is running.
"""

from __future__ import annotations

import json
import re
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from bulk_pipeline import config
from bulk_pipeline.import_state import ROLLBACK_FILE, ImportState, State, import_states
from bulk_pipeline.imports import UnknownImportError
from bulk_pipeline.instance import open_instance
from bulk_pipeline.progress import read_progress
from bulk_pipeline.reports.charts import OUTCOMES
from bulk_pipeline.reports.crm_duplicates import CRM_DUPLICATES_FILE
from bulk_pipeline.reports.note import read_note
from bulk_pipeline.reports.render import (
    HTML_FILE,
    REJECTED_FILE,
    SUMMARY_FILE,
    facts,
    write_reports,
)

IMPORT_ID_PATTERN = re.compile(r"[a-z0-9_-]+")
"""What ``imports.import_id_for`` produces; anything else is not an id (and not a path)."""
COUNT_COLUMNS = ("rows", *OUTCOMES)
WIDTH = 100
"""Every line fits a terminal this wide; longer names are cut."""
MAX_ID_CHARS = 34


def recent_imports(
    limit: int = 20, instance: dg.DagsterInstance | None = None
) -> list[dict[str, Any]]:
    """Registered and reported imports, newest first (by the time of their state, else by
    registration), with their true state.

    Each row has ``import_id``, ``file`` (the file name), ``entity`` (None until known),
    ``target``, ``state`` (an ``import_state.State``), ``when`` (a datetime or None),
    ``reason`` (why it failed or stopped), ``progress`` (where a running import is),
    ``rollback`` (what a rollback did, or None), ``unreadable`` (a summary that cannot be read)
    and the counts ``rows``, ``created`` ... ``failed`` (None without a summary).
    """
    home = config.data_home()
    ids = {path.stem for path in (home / "imports").glob("*.json")}
    ids |= {path.parent.name for path in (home / "reports").glob(f"*/{SUMMARY_FILE}")}
    if instance is None:
        with open_instance() as opened:
            states = import_states(opened, sorted(ids))
    else:
        states = import_states(instance, sorted(ids))
    rows = [_row(home, import_id, states[import_id]) for import_id in ids]
    rows.sort(key=lambda row: row["_sort"], reverse=True)
    return [{k: v for k, v in row.items() if k != "_sort"} for row in rows[:limit]]


def _row(home: Path, import_id: str, state: ImportState) -> dict[str, Any]:
    manifest_path = home / "imports" / f"{import_id}.json"
    manifest = _read_json(manifest_path) or {}
    summary_path = home / "reports" / import_id / SUMMARY_FILE
    summary = _read_json(summary_path)
    ingest = _read_json(home / "work" / import_id / "ingest.json") or {}
    source = (summary or {}).get("file") or manifest.get("source_path") or "?"
    counts: dict[str, int | None] = dict.fromkeys(COUNT_COLUMNS)
    if summary is not None:
        with suppress(KeyError, TypeError, ValueError):
            counts = {key: int(summary[key]) for key in COUNT_COLUMNS}
    if state.when is not None:
        latest = state.when.timestamp()
    elif summary_path.is_file() or manifest_path.is_file():
        latest = (summary_path if summary_path.is_file() else manifest_path).stat().st_mtime
    else:
        latest = 0.0
    return {
        "import_id": import_id,
        "file": Path(str(source)).name,
        "entity": (summary or {}).get("entity") or ingest.get("entity") or manifest.get("entity"),
        "target": (summary or {}).get("target") or manifest.get("target") or "?",
        "state": state.state,
        "when": state.when,
        "reason": state.reason,
        "progress": _progress(home, import_id) if state.state is State.RUNNING else "",
        "rollback": _read_json(home / "reports" / import_id / ROLLBACK_FILE),
        "unreadable": summary_path.is_file() and summary is None,
        **counts,
        "_sort": latest,
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _progress(home: Path, import_id: str) -> str:
    snapshot = read_progress(home / "work" / import_id / "progress.json")
    if snapshot is None:
        return ""
    if snapshot.total is None:
        return snapshot.phase
    return f"{snapshot.phase}: {snapshot.processed:,} of {snapshot.total:,} records"


def format_status(rows: list[dict[str, Any]]) -> str:
    """Two lines per import, each at most ``WIDTH`` wide: what it is and its state, then its
    counts, or why it failed or stopped, or where it is."""
    if not rows:
        return "No imports yet. Add one with `bulk-pipeline import PATH`."
    id_width = min(max(len(row["import_id"]) for row in rows), MAX_ID_CHARS)
    state_width = max(len(state.value) for state in State)

    def first(import_id: str, state: str, when: str, what: str) -> str:
        return _fit(f"{import_id:<{id_width}}  {state:<{state_width}}  {when:<16}  {what}".rstrip())

    lines = [first("IMPORT", "STATE", "WHEN (UTC)", "FILE -> TARGET (ENTITY)")]
    for row in rows:
        what = f"{row['file']} -> {row['target']}" + (
            f" ({row['entity']})" if row["entity"] else ""
        )
        lines.append(
            first(
                _printable(row["import_id"], id_width),
                row["state"].value,
                _short_time(row["when"]),
                _printable(what),
            )
        )
        detail = _detail(row)
        if detail:
            lines.append(_fit("    " + _printable(detail)))
    return "\n".join(lines)


def _detail(row: dict[str, Any]) -> str:
    state = row["state"]
    if state in (State.FAILED, State.STOPPED):
        return (row["reason"].splitlines() or [""])[0]
    if state is State.RUNNING:
        return row["progress"]
    if row["unreadable"]:
        return f"its {SUMMARY_FILE} cannot be read"
    counts = "" if row["rows"] is None else _counts_text(row)
    if state is State.ROLLED_BACK and row["rollback"]:
        undone = (
            f"{int(row['rollback'].get('removed', 0)):,} removed, "
            f"{int(row['rollback'].get('restored', 0)):,} restored"
        )
        return f"{undone}; the import had {counts}" if counts else undone
    return counts


def _counts_text(row: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{row[key]:,} {key}" for key in OUTCOMES)
    return f"{row['rows']:,} rows: {outcomes}"


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def _printable(value: object, limit: int | None = None) -> str:
    """Control characters (a file name may hold terminal escape codes) shown as ``?``."""
    text = "".join(char if char.isprintable() else "?" for char in str(value))
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def _short_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M}"


def format_report(import_id: str, instance: dg.DagsterInstance | None = None) -> str:
    """One import's state (and why, when it failed or stopped), its summary and the path of its
    report.html, for the terminal.

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
    if not summary_path.is_file() and not (home / "imports" / f"{import_id}.json").is_file():
        raise UnknownImportError(_unknown(import_id))
    if instance is None:
        with open_instance() as opened:
            state = import_states(opened, [import_id])[import_id]
    else:
        state = import_states(instance, [import_id])[import_id]
    lines = _state_lines(home, state)
    if not summary_path.is_file():
        lines += [
            "",
            f"Import {import_id} has not completed: there is no summary yet. Run the same "
            "`bulk-pipeline import` command again (it resumes), or see its runs in the Dagster UI.",
        ]
        return "\n".join(lines)
    html_path = folder / HTML_FILE
    if not html_path.is_file() or html_path.stat().st_mtime < summary_path.stat().st_mtime:
        html_path, _ = write_reports(folder)
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if state.state in (State.FAILED, State.STOPPED, State.RUNNING, State.QUEUED):
        lines.append(
            f"{'':<14}The counts below are those of its last completed run, finished "
            f"{_short_time(_finished(summary))} UTC."
        )
    width = max(len(name) for name in COUNT_COLUMNS)
    lines += [f"{label + ':':<14}{_printable(value)}" for label, value in facts(summary)]
    entities: dict[str, dict[str, Any]] = summary.get("entities") or {}
    if len(entities) > 1:
        names = list(entities)
        lines += ["", f"  {'':<{width}}" + "".join(f"  {name:>11}" for name in names)]
        lines += [
            f"  {name:<{width}}" + "".join(f"  {int(entities[e][name]):>11,}" for e in names)
            for name in COUNT_COLUMNS
        ]
        links = summary.get("links") or {}
        lines.append(
            f"  links made: {int(links.get('made', 0)):,}, already in the CRM: "
            f"{int(links.get('found', 0)):,}"
        )
    else:
        lines += [
            "",
            *(f"  {name:<{width}}  {int(summary[name]):>10,}" for name in COUNT_COLUMNS),
        ]
    lines += ["", *(_printable(note) for note in summary_notes(summary))]
    if (folder / REJECTED_FILE).is_file():
        lines.append(f"Rejected rows: {folder / REJECTED_FILE}")
    lines.append(f"Report:        {html_path}")
    return "\n".join(lines)


def _state_lines(home: Path, state: ImportState) -> list[str]:
    when = f" since {_short_time(state.when)} UTC" if state.when else ""
    if state.state is State.RUNNING:
        progress = _progress(home, state.import_id)
        lines = [f"{'State:':<14}running{when}" + (f" ({progress})" if progress else "")]
    else:
        lines = [f"{'State:':<14}{state.state.value}{when}"]
    for line in state.reason.splitlines():
        lines.append(f"{'':<14}{_printable(line)}")
    rollback = _read_json(home / "reports" / state.import_id / ROLLBACK_FILE)
    if state.state is State.ROLLED_BACK and rollback:
        lines.append(
            f"{'Rolled back:':<14}{int(rollback.get('removed', 0)):,} records removed, "
            f"{int(rollback.get('restored', 0)):,} restored to their previous values"
        )
    if state.run_id is not None:
        logs = sorted((home / "logs").glob(f"{state.import_id}.{state.run_id[:8]}.log"))
        run = f"{'Run:':<14}{state.run_id}" + (f" (log: {logs[0]})" if logs else "")
        lines.append(run)
    return lines


def _finished(summary: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(summary["finished_at"]))
    except (KeyError, ValueError):
        return None


def summary_notes(summary: dict[str, Any]) -> list[str]:
    """What a person must know beyond the counts: columns not sent, the sheet read and the
    sheets not read, the list the records were added to, warnings, keys the CRM holds twice,
    where the summary note went."""
    notes: list[str] = []
    if summary.get("unmapped_columns"):
        notes.append("Columns not sent (no CRM field): " + ", ".join(summary["unmapped_columns"]))
    parts = summary.get("parts") or (
        [{"sheet": summary["sheet"], "entity": summary["entity"], "derived": False}]
        if summary.get("sheet")
        else []
    )
    for part in parts:
        where = f"sheet '{part['sheet']}'" if part["sheet"] else "the file"
        if part["derived"]:
            notes.append(
                f"The companies named in the company columns of {where} were found or created "
                "and linked to their contacts."
            )
        elif part["sheet"]:
            notes.append(f"Sheet '{part['sheet']}' was imported as {part['entity']}.")
    for skipped in summary.get("skipped_sheets", []):
        notes.append(
            f"Sheet '{skipped['sheet']}' was not imported: {skipped['reason']}. "
            f"To import it: {skipped['to_import']}"
        )
    listed = summary.get("list")
    if listed:
        notes.append(
            f"List {listed['name']}: {listed['added']} records added, {listed['already']} were "
            "in it already"
        )
    notes += [f"warning: {warning}" for warning in summary.get("warnings", [])]
    folder = Path(summary.get("rejected_csv") or "").parent
    if summary.get("crm_duplicates"):
        notes.append(
            f"{summary['crm_duplicates']:,} keys are held by more than one record in the CRM; "
            f"the import used the oldest of each. Which ids: {folder / CRM_DUPLICATES_FILE}"
        )
    note = read_note(folder, summary.get("finished_at"))
    if note is not None:
        notes.append(note.describe())
    return notes


def _unknown(import_id: str) -> str:
    return (
        f"no import {import_id!r} under {config.data_home()}; "
        "`bulk-pipeline status` lists the known imports"
    )
