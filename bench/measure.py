"""One measurement per process, so that the peak RSS it reports is its own.

The harness (``python -m bench.run``) starts each of these in a fresh interpreter and reads the
JSON object it prints (``bench.worker``):

    python -m bench.measure stages FILE --home DIR                  # time and RSS per stage
    python -m bench.measure import FILE --home DIR --url URL [--target sandbox-attio]
                                                                    # stages, then push_import
    python -m bench.measure upsert N --url URL [--concurrency C]    # raw upsert_many

The floor (``bench/floor.py``) and the peers (``bench/peers.py``) are separate modules, so that
they do not carry this module's imports in their memory.

Local stages are the import's own steps without Dagster, on a file registered under a fresh data
home: ``import_steps.ingest`` (read, map, normalize, into the import's work folder),
``validate`` and ``stage`` (into the data home's staging store), each handing the next its
files as the assets do.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import polars as pl

from bench.bench_push import TOKEN, contacts, push_async, push_sync
from bench.worker import emit, reset_peak, status_mib
from bulk_pipeline import config, import_steps
from bulk_pipeline.config import HOME_ENV, SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import BudgetExhausted, TransientError
from bulk_pipeline.imports import ImportRequest, register_import
from bulk_pipeline.ingest import DEFAULT_LIMITS, Limits
from bulk_pipeline.outcomes import ImportState, LineOutcome
from bulk_pipeline.push import push_import
from bulk_pipeline.staging import open_store
from bulk_pipeline.targets import open_target

TARGET_ID = "sandbox"

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
    home: Path,
    *,
    target: str = TARGET_ID,
    account: str = TARGET_ID,
    accepted: Callable[[Entity], frozenset[str]] | None = None,
) -> tuple[ImportRequest, dict[str, Any]]:
    """Register the file under ``home`` (the data home) and run the import's local steps on it,
    as an import does: ingest (read, map, normalize), validate, stage; the figures of each.

    With ``accepted``, the fields the target has no place for are dropped after normalizing
    (and companies are derived from a contact's company columns only where the target links
    contacts to companies), as the import does. Files over the default limits are read with
    limits raised to fit them: the bench measures sizes an operator would raise them for.
    """
    os.environ[HOME_ENV] = str(home)
    request = register_import(path, target=target)
    limits = Limits(
        max_bytes=max(DEFAULT_LIMITS.max_bytes, path.stat().st_size),
        max_rows=max(DEFAULT_LIMITS.max_rows, _lines(path)),
    )
    stages = Stages()
    read = stages.run("ingest", import_steps.ingest, request, accepted, limits=limits)
    validated = stages.run("validate", import_steps.validate, request)
    store = open_store(config.staging_db_path())
    staged = stages.run("stage", import_steps.stage, request, store, account)
    counts = store.outcome_counts(request.import_id)
    return request, {
        "rows": read.rows,
        "outcomes_to_come": validated.rows,
        "valid": validated.valid,
        "invalid": validated.invalid,
        "staged": staged.staged,
        "duplicates": staged.duplicates,
        "outcomes": {outcome.value: counts[outcome] for outcome in LineOutcome},
        **stages.figures(),
    }


def _lines(path: Path) -> int:
    """An upper bound of the file's rows (its newlines), read in blocks."""
    count = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            count += block.count(b"\n")
    return count


def measure_stages(path: Path, home: Path) -> dict[str, Any]:
    _, figures = local_stages(path, home)
    return figures


def measure_import(path: Path, home: Path, url: str, target_name: str) -> dict[str, Any]:
    """Stage the file into ``home``'s staging file (kept between runs, so a second file is a
    re-sync), then push it with the pipeline's own push to the sandbox's dialect of the target
    (``sandbox``, ``sandbox-attio``)."""
    target = open_target(target_name, {SANDBOX_URL_ENV: url, SANDBOX_TOKEN_ENV: TOKEN})
    request, figures = local_stages(
        path, home, target=target_name, account=target.account, accepted=target.fields
    )
    import_id = request.import_id
    store = open_store(config.staging_db_path())
    error = None
    started = time.perf_counter()
    try:
        run = store.begin_run(import_id)
        entities = import_steps.supported_entities(request, target)
        push_import(store, target, entities, import_id=import_id, run=run)
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
