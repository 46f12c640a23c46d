"""A file several times larger than a deliberately tiny memory setting goes through the local
steps (read, map, normalize, validate, stage) with the same outcome for every line, the same
records and the same rejected rows as when it is read in one chunk with memory to spare.

The tiny setting is a chunk of 2,000 rows and DuckDB held to 32 MB with one thread (about the
least its out-of-core grouping and join need): the CSV is about 80 MB, and what staging works
on (every valid row with its key, fields and references, uncompressed) is several times that
limit, so DuckDB can only finish by spilling to its temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from bulk_pipeline import config, import_steps
from bulk_pipeline.config import CHUNK_ROWS_ENV, HOME_ENV, STAGING_MEMORY_ENV
from bulk_pipeline.imports import register_import
from bulk_pipeline.outcomes import LineOutcome
from bulk_pipeline.staging import open_store
from bulk_pipeline.staging.duckdb_store import DuckDBStore

ROWS = 120_000
TINY_CHUNK_ROWS = 2_000
TINY_MEMORY = "32MB"
ROOMY_CHUNK_ROWS = 10_000_000
ROOMY_MEMORY = "4GB"
LONG_STREET = "a street whose name goes on and on, " * 18
"""About a kilobyte per row, so that the file outweighs the memory limit several times over
without a row count that would make the test slow."""
RAGGED = b"odd@example.com,Odd,One,Row Co,1 Lane,Clerk,an extra field,and another\n"


def half(first: int, rows: int) -> pl.DataFrame:
    """Contacts ``first`` to ``first + rows - 1``: repeats of earlier emails in another case
    and with spaces (some many chunks back), broken and blank emails, companies named again
    and again, and long addresses, some of them quoted over two lines."""
    i = pl.int_range(first, first + rows, dtype=pl.Int64, eager=True)
    return pl.DataFrame(
        {
            "E-mail": pl.select(
                pl.when(i % 10 == 3)
                .then(pl.format("  USER{}@EXAMPLE.COM ", i // 7))
                .when(i % 40 == 1)
                .then(pl.format("user{}@@example.com", i))
                .when(i % 97 == 5)
                .then(pl.lit(""))
                .otherwise(pl.format("user{}@example.com", i))
            ).to_series(),
            "First Name": pl.select(pl.format("First{}", i % 1_000)).to_series(),
            "Last Name": pl.select(pl.format("Last{}", i % 333)).to_series(),
            "Company": pl.select(pl.format("Company {}", i % 50)).to_series(),
            "Address": pl.select(
                pl.when(i % 1_000 == 0)
                .then(pl.format("{} Long Road\nBuilding {}", i, i % 9))
                .otherwise(pl.format("{} Long Road, {}", i, pl.lit(LONG_STREET)))
            ).to_series(),
            "Job Title": pl.select(pl.format("Title number {}", i % 77)).to_series(),
        }
    )


def big_file(path: Path) -> Path:
    """About 70 MB of contacts, with rows that cannot be read and blank lines between."""
    with path.open("wb") as handle:
        half(0, ROWS // 2).write_csv(handle)
        handle.write(RAGGED + b"\n\n" + RAGGED)
        half(ROWS // 2, ROWS // 2).write_csv(handle, include_header=False)
    return path


@dataclass
class Staged:
    lines: pl.DataFrame
    records: dict[str, list[tuple[str, str, int, list[tuple[str, str]]]]]
    rejected: str
    rows: int
    row_groups: int
    store: DuckDBStore


def stage_file(
    path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int, memory: str
) -> Staged:
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.setenv(CHUNK_ROWS_ENV, str(chunk_rows))
    monkeypatch.setenv(STAGING_MEMORY_ENV, memory)
    request = register_import(path)
    import_steps.ingest(request)
    import_steps.validate(request)
    store = open_store(config.staging_db_path())
    assert isinstance(store, DuckDBStore)
    import_steps.stage(request, store, "sandbox")
    # Read back with room to spare: what is compared is what staging wrote.
    reader = DuckDBStore(config.staging_db_path(), memory_limit=ROOMY_MEMORY)
    rejected = import_steps.write_validation_rejects(request).read_text(encoding="utf-8-sig")
    parts = import_steps.import_parts(request.import_id)
    records = {
        entity.value: sorted(
            (p.key, p.sheet, p.line, sorted(p.fields.items()))
            for page in reader.record_pages(
                request.import_id, entity, account="sandbox", rows=chunk_rows, staged=True
            )
            for p in page
        )
        for entity in import_steps.import_entities(request.import_id)
    }
    mapped = parts[0].path(request.import_id, "mapped.parquet")
    return Staged(
        lines=reader.line_outcomes(request.import_id),
        records=records,
        rejected=rejected,
        rows=sum(p.rows for p in parts),
        row_groups=pq.ParquetFile(mapped).metadata.num_row_groups,
        store=store,
    )


def test_a_file_larger_than_a_tiny_memory_setting_stages_as_with_memory_to_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = big_file(tmp_path / "contacts.csv")
    tiny = stage_file(path, tmp_path / "tiny", monkeypatch, TINY_CHUNK_ROWS, TINY_MEMORY)
    roomy = stage_file(path, tmp_path / "roomy", monkeypatch, ROOMY_CHUNK_ROWS, ROOMY_MEMORY)

    assert path.stat().st_size > 2 * 32 * 1024**2
    assert tiny.store.settings["memory_limit"] == TINY_MEMORY
    assert tiny.store.settings["threads"] == 1
    assert tiny.row_groups >= ROWS // TINY_CHUNK_ROWS // 2
    assert roomy.row_groups == 1

    assert_frame_equal(tiny.lines, roomy.lines)
    assert tiny.records == roomy.records
    assert tiny.rejected == roomy.rejected
    assert tiny.lines.height == tiny.rows == roomy.rows == 2 * ROWS + 2

    outcomes = tiny.lines.group_by("entity", "outcome").len()
    counted = {(e, o): n for e, o, n in outcomes.iter_rows()}
    assert counted[("contacts", LineOutcome.INVALID.value)] > ROWS // 40
    assert counted[("contacts", LineOutcome.DUPLICATE.value)] > ROWS // 20
    assert counted[("companies", LineOutcome.PENDING.value)] == 50
    addresses = [dict(fields).get("address", "") for *_, fields in tiny.records["contacts"]]
    assert sum("Long Road\nBuilding" in address for address in addresses) >= ROWS // 1_000 - 20
    assert tiny.rejected.count("row has 8 fields, the header has 6") == 2
