"""crm_duplicates.csv: keys the CRM holds more than once, and which record the import used.

Some CRMs accept two records with one key (two persons with one email). The import never adds
such a pair, but it may find one the CRM already had; it then uses the record the target names
(the oldest) and lists the others here, so a person can merge them. Rows are appended per
checkpointed chunk, so they survive a crash; the report keeps one row per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from bulk_pipeline.csv_export import append_rows, write_frame, write_rows

CRM_DUPLICATES_FILE = "crm_duplicates.csv"
CRM_DUPLICATES_COLUMNS = ("entity", "key", "used_id", "also_ids")


def append_crm_duplicates(
    path: Path | None, entity: str, found: Sequence[tuple[str, str, Sequence[str]]]
) -> None:
    """Add ``(key, id used, other ids)`` rows for one chunk."""
    if path is None or not found:
        return
    if not path.exists():
        write_rows(path, CRM_DUPLICATES_COLUMNS, [])
    append_rows(path, [[entity, key, used, " ".join(others)] for key, used, others in found])


def write_crm_duplicates_report(source: Path, target: Path) -> int:
    """The report's copy, one row per key (the last seen); how many keys. Nothing is written
    when the import met no such key."""
    target.unlink(missing_ok=True)
    if not source.exists():
        return 0
    rows = (
        pl.read_csv(source, infer_schema=False)
        .unique(subset=["entity", "key"], keep="last", maintain_order=True)
        .sort("entity", "key")
    )
    return write_frame(target, rows)
