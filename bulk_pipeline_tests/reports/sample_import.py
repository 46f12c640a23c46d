"""A finished import's report folder, written the way the pipeline writes it, for report tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import polars as pl

from bulk_pipeline.reports.rejected import write_rejected_csv

HOSTILE_NAME = "<script>alert('name')</script>"
HOSTILE_FILE = "contacts <img src=x onerror=alert(1)> march.csv"
COUNTS = {
    "created": 1234,
    "updated": 56,
    "unchanged": 7,
    "duplicates": 3,
    "invalid": 4,
    "failed": 1,
}
ROWS = sum(COUNTS.values())


def rejected_rows() -> pl.DataFrame:
    """Four invalid lines and one failed one, with markup, quotes and a formula in the cells."""
    return pl.DataFrame(
        {
            "E-mail": ["x@", "y", "bob@example.com", "=1+1", "ann@example.com"],
            "Full Name": [HOSTILE_NAME, "O'Brien", "Bob | Pipe", "Eve\nNewline", "Ann"],
            "_line": [2, 5, 9, 12, 40],
            "reason": [
                "email 'x@' is not a valid email address",
                "email 'y' is not a valid email address; phone '12' is not a valid phone number",
                "name 'Bob | Pipe' is too long",
                "email '=1+1' is not a valid email address",
                "VALIDATION_ERROR: property 'email' rejected by the CRM",
            ],
        },
        schema_overrides={"_line": pl.Int64},
    )


def write_sample_import(
    home: Path,
    import_id: str = "contacts_march-0123456789",
    *,
    finished_at: str = "2025-03-04T10:15:30+00:00",
    batches: list[tuple[int, float]] | None = None,
    counts: dict[str, int] | None = None,
) -> Path:
    """Write summary.json, rejected.csv, duplicates.csv and push_batches.csv; return the folder.

    ``batches`` is (records, seconds) per pushed chunk; an empty list writes a header-only
    push_batches.csv, as a push that had nothing to send does.
    """
    counts = counts or COUNTS
    folder = home / "reports" / import_id
    folder.mkdir(parents=True, exist_ok=True)
    write_rejected_csv(folder / "rejected.csv", rejected_rows())
    (folder / "duplicates.csv").write_text("line,key,reason\n7,bob@example.com,dup\n", "utf-8")
    chunks = [(1000, 1.25), (290, 0.5), (1, 0.01)] if batches is None else batches
    with (folder / "push_batches.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["batch", "records", "seconds", "records_per_second", "finished_at"])
        for number, (records, seconds) in enumerate(chunks, start=1):
            writer.writerow([number, records, seconds, round(records / seconds, 1), finished_at])
    summary: dict[str, Any] = {
        "import_id": import_id,
        "file": f"/uploads/{HOSTILE_FILE}",
        "entity": "contacts",
        "target": "sandbox",
        "on_duplicate": "skip",
        "rows": sum(counts.values()),
        **counts,
        "unmapped_columns": ["Favourite <i>colour</i>"],
        "column_map": {"email": "E-mail", "name": "Full Name"},
        "timings": {
            "ingest": {"finished_at": "2025-03-04T10:13:02+00:00", "seconds": 2.0},
            "validate": {"finished_at": "2025-03-04T10:13:05+00:00", "seconds": 3.0},
            "stage": {"finished_at": "2025-03-04T10:13:10+00:00", "seconds": 5.0},
            "push": {"finished_at": "2025-03-04T10:15:29+00:00", "seconds": 139.0},
        },
        "started_at": "2025-03-04T10:13:00+00:00",
        "finished_at": finished_at,
        "rejected_csv": str(folder / "rejected.csv"),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return folder


def write_manifest(home: Path, import_id: str, source: str = "/uploads/later.csv") -> Path:
    """Register an import the way ``imports.register_import`` records it."""
    manifest = home / "imports" / f"{import_id}.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "import_id": import_id,
        "source_path": source,
        "stored_path": str(home / "files" / import_id / Path(source).name),
        "entity": None,
        "target": "sandbox",
        "on_duplicate": "skip",
        "mapping_path": None,
    }
    manifest.write_text(json.dumps(data), encoding="utf-8")
    return manifest
