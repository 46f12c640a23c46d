"""One measurement per process, so that the peak RSS it reports is its own.

The harness (``python -m bench.run``) starts each of these in a fresh interpreter and reads the
JSON object it prints (``bench.worker``):

    python -m bench.measure stages FILE --home DIR                  # time and RSS per stage
    python -m bench.measure import FILE --home DIR --url URL [--target sandbox-attio]
                                                                    # stages, then push_import
    python -m bench.measure upsert N --url URL [--concurrency C]    # raw upsert_many

The floor (``bench/floor.py``) and the peers (``bench/peers.py``) are separate modules, so that
they do not carry this module's imports in their memory.

Local stages are the calls ``import_steps`` makes, without Dagster and without its intermediate
parquet files: ``read_file`` -> ``map_columns`` -> ``normalize`` -> ``validate_rows`` ->
``stage_import`` into a fresh DuckDB file. Each stage drops the previous stage's frames once it
has its own, as the import steps do between assets.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import polars as pl

from bench.bench_push import TOKEN, contacts, push_async, push_sync
from bench.worker import emit, reset_peak, status_mib
from bulk_pipeline.config import SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.errors import BudgetExhausted, TransientError
from bulk_pipeline.imports import file_digest, import_id_for
from bulk_pipeline.ingest import read_file
from bulk_pipeline.mapping import infer_entity, keep_fields, map_columns
from bulk_pipeline.normalize import normalize
from bulk_pipeline.outcomes import ImportState, LineOutcome, OnDuplicate
from bulk_pipeline.push import push_import
from bulk_pipeline.staging import open_store
from bulk_pipeline.targets import open_target
from bulk_pipeline.validate import validate_rows

TARGET_ID = "sandbox"
STAGING_FILE = "staging.duckdb"

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss_mib: float
    """Highest RSS of the whole process while this stage ran."""


@dataclass
class Stages:
    """Times each stage and takes its own peak RSS, so the report can say which stage peaks."""

    done: list[Stage] = field(default_factory=list)
    per_stage_peaks: bool = field(default_factory=reset_peak)
    """False where the kernel cannot reset the peak: each figure is then the peak so far."""

    def run(self, name: str, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self.per_stage_peaks:
            reset_peak()
        started = time.perf_counter()
        result = work(*args, **kwargs)
        self.done.append(Stage(name, time.perf_counter() - started, status_mib("VmHWM")))
        return result

    def figures(self) -> dict[str, Any]:
        return {
            "stages": [asdict(stage) for stage in self.done],
            "seconds": sum(stage.seconds for stage in self.done),
            "peak_rss_mib": max(stage.peak_rss_mib for stage in self.done),
            "per_stage_peaks": self.per_stage_peaks,
        }


def local_stages(
    path: Path,
    db_path: Path,
    import_id: str,
    *,
    account: str = TARGET_ID,
    accepted: Callable[[Entity], frozenset[str]] | None = None,
    references: bool = True,
) -> tuple[Entity, dict[str, Any]]:
    """Read, map, normalize, validate and stage one file; the figures of each stage. Without
    ``references``, the columns naming other records (a contact's Company) are dropped: a push
    of one entity alone, whose links ``bench.run``'s links section measures. With
    ``accepted``, the fields the target has no place for are dropped after normalizing, as the
    import does."""
    stages = Stages()
    raw = stages.run("read", read_file, path)
    rows = raw.frame.height + len(raw.rejected)
    unreadable = pl.DataFrame(
        {"_line": [i.line for i in raw.rejected], "reason": [i.reason for i in raw.rejected]},
        schema={"_line": pl.Int64, "reason": pl.String},
    )
    entity = infer_entity(raw.frame.columns, raw.entity_hint)
    if entity is None:
        raise SystemExit(f"{path}: cannot tell the entity from its columns")
    held = accepted(entity) if accepted is not None else None
    mapped = stages.run("map", map_columns, raw, entity, None, custom=held or ())
    del raw
    normalized = stages.run("normalize", normalize, mapped.frame, entity)
    if held is not None:
        mapped = replace(mapped, frame=normalized)
        columns = [c for c in mapped.frame.columns if c != "_line"]
        normalized = keep_fields(mapped, entity, held, columns).frame
    del mapped
    if not references:
        naming = {ours for ref in ENTITY_SPECS[entity].references for ours, _ in ref.by}
        normalized = normalized.drop(naming & set(normalized.columns))
    checked = stages.run("validate", validate_rows, normalized, entity, source=str(path))
    del normalized
    invalid = pl.concat([checked.rejected.select("_line", "reason"), unreadable])
    store = open_store(db_path)
    store.begin_run(import_id)
    staged = stages.run(
        "stage",
        store.stage,
        import_id,
        entity,
        checked.valid,
        invalid,
        account=account,
        source_file=str(path),
        on_duplicate=OnDuplicate.SKIP,
    )
    return entity, {
        "rows": rows,
        "valid": checked.valid.height,
        "invalid": invalid.height,
        "staged": staged.staged,
        "duplicates": staged.duplicates,
        **stages.figures(),
    }


def measure_stages(path: Path, home: Path) -> dict[str, Any]:
    _, figures = local_stages(path, home / STAGING_FILE, f"bench-{path.stem}")
    return figures


def measure_import(path: Path, home: Path, url: str, target_name: str) -> dict[str, Any]:
    """Stage the file into ``home``'s staging file (kept between runs, so a second file is a
    re-sync), then push it with the pipeline's own push to the sandbox's dialect of the target
    (``sandbox``, ``sandbox-attio``)."""
    db_path = home / STAGING_FILE
    import_id = import_id_for(path.name, file_digest(path))
    target = open_target(target_name, {SANDBOX_URL_ENV: url, SANDBOX_TOKEN_ENV: TOKEN})
    entity, figures = local_stages(
        path,
        db_path,
        import_id,
        account=target.account,
        accepted=target.fields,
        references=False,
    )
    store = open_store(db_path)
    error = None
    started = time.perf_counter()
    try:
        run = store.begin_run(import_id)
        push_import(store, target, [entity], import_id=import_id, run=run)
    except (TransientError, BudgetExhausted) as exc:
        error = str(exc)
    finally:
        push_seconds = time.perf_counter() - started
        target.close()
    counts = store.outcome_counts(import_id)
    store.set_state(import_id, ImportState.COMPLETED)
    reasons = store.line_outcomes(import_id).filter(pl.col("outcome") == LineOutcome.FAILED.value)
    return {
        **figures,
        "import_id": import_id,
        "push_seconds": push_seconds,
        "written": counts[LineOutcome.CREATED] + counts[LineOutcome.UPDATED],
        "outcomes": {outcome.value: counts[outcome] for outcome in LineOutcome},
        "push_error": error,
        "failure_reasons": reasons["reason"].value_counts(sort=True).head(3).rows(),
        "peak_rss_mib": max(figures["peak_rss_mib"], status_mib("VmHWM")),
    }


def measure_upsert(records: int, url: str, concurrency: int, prefix: str) -> dict[str, Any]:
    """``upsert_many`` of synthetic contacts: the write path alone, no file and no staging."""
    batch = contacts(records, prefix)
    started = time.perf_counter()
    result = push_sync(url, batch) if concurrency == 1 else push_async(url, batch, concurrency)
    return {
        "records": records,
        "seconds": time.perf_counter() - started,
        "written": len(result.successful),
        "failed": len(result.failed),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    kinds = parser.add_subparsers(dest="kind", required=True)
    stages = kinds.add_parser("stages")
    stages.add_argument("file", type=Path)
    stages.add_argument("--home", type=Path, required=True)
    imported = kinds.add_parser("import")
    imported.add_argument("file", type=Path)
    imported.add_argument("--home", type=Path, required=True)
    imported.add_argument("--url", required=True)
    imported.add_argument("--target", default=TARGET_ID, help="a sandbox target of the registry")
    upsert = kinds.add_parser("upsert")
    upsert.add_argument("records", type=int)
    upsert.add_argument("--url", required=True)
    upsert.add_argument("--concurrency", type=int, default=1)
    upsert.add_argument("--prefix", default="u")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.kind == "stages":
        emit(measure_stages(args.file, args.home))
    elif args.kind == "import":
        emit(measure_import(args.file, args.home, args.url, args.target))
    else:
        emit(measure_upsert(args.records, args.url, args.concurrency, args.prefix))


if __name__ == "__main__":
    main()
