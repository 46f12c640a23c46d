"""Turn one benchmark run's raw results into tables: on the console and in BENCHMARKS.md.

Figures are derived here, once, and rendered twice (aligned text, Markdown). BENCHMARKS.md keeps
one generated block per profile between markers; a run rewrites its own block and leaves the
other profile's block and the hand-written text around them as they are.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

CEILING_RECORDS_PER_S = 1_000.0
"""100 requests x 100 records per request / 10 s."""
LIMIT_REQUESTS_PER_S = 10.0
LIMIT_BURST = 100
TARGETS = {
    "memory_growth_mib": 100.0,
    "cli_peak_mib": 600.0,
    "duckdb_floor_ratio": 1.5,
    "time_per_row_growth": 1.2,
    "push_records_per_s": 5_000.0,
    "limit_efficiency": 0.95,
    "limit_429_share": 0.01,
    "resync_calls_per_row": 0.02,
    "e2e_seconds": 15.0,
    "calls_per_link": 0.011,
    "attio_write_share": 0.9,
    "pipedrive_tokens_per_create": 6.0,
    "pipedrive_tokens_per_unchanged_row": 0.05,
    "pipedrive_burst_efficiency": 0.9,
}
PIPEDRIVE_BURST = 40
PIPEDRIVE_BURST_SECONDS = 2.0
"""The Growth plan's api_token burst limit the bench sets: 40 requests per rolling 2 s."""
STAGE_NAMES = ("ingest", "validate", "stage")
"""The import's local steps: read, map and normalize; validate; stage."""
GROWTH_FROM, GROWTH_TO = 100_000, 10_000_000
FLOOR_ROWS = 1_000_000
SKELETON = """# Benchmarks

How fast and how lean bulk_pipeline is, against two floors (a bare polars `read_csv` + `unique`,
and a durable DuckDB load of the same file) and against what people use instead. `make bench`
(quick) and `make bench-full` (every size) run `bench/run.py`, print these tables and rewrite
their own section below; the text outside the generated sections is kept. Figures, not tests:
the machine is shared, so expect a few percent of noise between runs, more while other test
suites run.

<!-- bench:full:start -->
_Not run yet: `make bench-full`._
<!-- bench:full:end -->

<!-- bench:quick:start -->
_Not run yet: `make bench`._
<!-- bench:quick:end -->
"""


# --- the machine ---------------------------------------------------------------------------------


def meminfo_mib(name: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{name} not in /proc/meminfo")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What a reader needs to compare figures: cores, memory, CPU, versions, date, load."""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(meminfo_mib("MemTotal") / 1024, 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "polars": _version("polars"),
        "duckdb": _version("duckdb"),
        "dlt": _version("dlt"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": os.getloadavg(),
    }


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def save_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


# --- tables ---------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _s(seconds: float) -> str:
    return f"{seconds:,.2f}" if seconds < 10 else f"{seconds:,.1f}"


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1_000}k"


def _ok(result: dict[str, Any] | None) -> bool:
    """A measurement that ran and succeeded (not an error, not left out)."""
    return bool(result) and not {"error", "not_run"} & set(result or {})


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _error(result: dict[str, Any] | None) -> str:
    if not result:
        return "not measured"
    return str(result.get("error") or result.get("not_run") or "not measured")


def _requests(result: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = result["requests"]
    return counts


def _limited_figures(result: dict[str, Any], seconds: float, written: int) -> dict[str, float]:
    """Records/s against the ceiling, admitted requests/s against the limit, 429 share, and the
    pace against the best the rolling window allows.

    At best, each window of 10 s takes a burst of 100 requests at its start, so N requests need
    at least 10 s x (ceil(N / 100) - 1): a run of a few windows looks better than the ceiling
    by records/s alone, and the pace tells how close it came to what was possible.
    """
    counts = _requests(result)
    admitted = counts["total"] - counts["rate_limited"]
    windows = -(-admitted // LIMIT_BURST) - 1
    fastest = windows * LIMIT_BURST / LIMIT_REQUESTS_PER_S
    return {
        "records_per_s": written / seconds,
        "efficiency": written / seconds / CEILING_RECORDS_PER_S,
        "requests_per_s": admitted / seconds,
        "request_efficiency": admitted / seconds / LIMIT_REQUESTS_PER_S,
        "share_429": counts["rate_limited"] / counts["total"] if counts["total"] else 0.0,
        "pace": fastest / seconds if fastest else 1.0,
    }


def _stage(stages: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in stages["stages"] if s["name"] == name)
    return found


def _local(results: dict[str, Any]) -> Table:
    table = Table(
        "Local stages (ingest: read, map, normalize; validate; stage into DuckDB; no push)",
        [
            "rows",
            *[f"{name} s" for name in STAGE_NAMES],
            "total s",
            "rows/s",
            "peak RSS MiB",
            "peak in",
            "DuckDB floor s",
            "x DuckDB floor",
            "polars floor s",
            "x polars floor",
        ],
    )
    for run in results.get("local", []):
        stages = run.get("stages")
        if not _ok(stages):
            table.rows.append([_label(run["rows"]), _error(stages)])
            continue
        assert stages is not None
        peak = max(stages["stages"], key=lambda stage: stage["peak_rss_mib"])
        row = [
            _label(run["rows"]),
            *[_s(_stage(stages, name)["seconds"]) for name in STAGE_NAMES],
            _s(stages["seconds"]),
            _n(run["rows"] / stages["seconds"]),
            _n(stages["peak_rss_mib"]),
            peak["name"],
        ]
        for key in ("duckdb_floor", "floor"):
            floor = run.get(key)
            if key not in run:
                row += ["", ""]
            elif _ok(floor):
                assert floor is not None
                row += [_s(floor["seconds"]), f"{stages['seconds'] / floor['seconds']:.2f}"]
            else:
                row += [_error(floor), ""]
        table.rows.append(row)
    table.notes.append(
        "Wall time of the import's local steps in a fresh process (`import_steps.ingest`, "
        "`validate`, `stage` on a file registered under an empty data home; interpreter start, "
        "imports and the copy of the file not counted), each step writing the files the next "
        "one reads, as the import's assets do. The contacts' Company column also yields one "
        "companies part on the same lines, staged as well. Peak RSS is the whole process's; "
        "'peak in' names the step where it peaked. The floors run in their own process on the "
        "same file: DuckDB's durable load (`read_csv`, `lower(trim(email))`, `DISTINCT ON` the "
        "email, `md5` of each row, `CREATE TABLE` in a DuckDB file, closed) and polars' "
        "`read_csv(file, infer_schema=False).unique(subset=['E-mail'])` in memory."
    )
    return table


def _per_row(results: dict[str, Any]) -> Table | None:
    runs = [r for r in results.get("local", []) if _ok(r.get("stages"))]
    if len(runs) < 2:
        return None
    first = runs[0]
    table = Table(
        "Time per row by step (µs per row of the file)",
        [
            "rows",
            *STAGE_NAMES,
            "total",
            *[f"{name} ÷ {_label(first['rows'])}" for name in STAGE_NAMES],
        ],
    )
    for run in runs:
        stages = run["stages"]
        per_row = {
            name: _stage(stages, name)["seconds"] / run["rows"] * 1e6 for name in STAGE_NAMES
        }
        base = {
            name: _stage(first["stages"], name)["seconds"] / first["rows"] * 1e6
            for name in STAGE_NAMES
        }
        table.rows.append(
            [
                _label(run["rows"]),
                *[f"{per_row[name]:.2f}" for name in STAGE_NAMES],
                f"{stages['seconds'] / run['rows'] * 1e6:.2f}",
                *[f"{per_row[name] / base[name]:.2f}" for name in STAGE_NAMES],
            ]
        )
    table.notes.append(
        "A step whose time per row grows with the file holds something that grows with it; "
        "the smallest file carries each step's fixed costs (opening the staging file, "
        "building the validation model) over the fewest rows."
    )
    return table


def _memory(results: dict[str, Any]) -> Table | None:
    local = {r["rows"]: r for r in results.get("local", []) if _ok(r.get("stages"))}
    cli = {r["rows"]: r for r in results.get("cli", []) if _ok(r)}
    sizes = sorted(set(local) | set(cli))
    if not sizes:
        return None
    table = Table(
        "Memory as input grows",
        [
            "rows",
            "local stages peak RSS MiB",
            *[f"{name} MiB" for name in STAGE_NAMES],
            "CLI dry run peak RSS MiB",
            "CLI dry run s",
            "CLI in steps s",
        ],
    )
    for rows in sizes:
        row = [_label(rows)]
        if rows in local:
            stages = local[rows]["stages"]
            row += [_n(stages["peak_rss_mib"])]
            row += [_n(_stage(stages, name)["peak_rss_mib"]) for name in STAGE_NAMES]
        else:
            row += [""] * (1 + len(STAGE_NAMES))
        if rows in cli:
            run = cli[rows]
            steps = sum(step.get("seconds", 0.0) for step in run.get("timings", {}).values())
            row += [_n(run["peak_rss_mib"]), _s(run["seconds"]), _s(steps)]
        else:
            failed = next((r for r in results.get("cli", []) if r["rows"] == rows), None)
            row += [_error(failed) if failed else "", "", ""]
        table.rows.append(row)
    for name, by_rows in (("local stages", local), ("CLI dry run", cli)):
        growth = _growth(by_rows, lambda run, name=name: _peak(run, name))
        if growth is not None:
            table.notes.append(
                f"{name}: {_label(GROWTH_FROM)} -> {_label(GROWTH_TO)} rows adds "
                f"{_n(growth)} MiB of peak RSS."
            )
    table.notes.append(
        "Per-step columns: the local stages process's peak RSS while that step ran. The CLI "
        "dry run is the whole `bulk-pipeline import FILE --dry-run` into an empty sandbox "
        "with no rate limit (interpreter, Dagster, every step, the lookup of every record, "
        "plan.csv), its peak RSS from `wait4`; 'in steps' adds its steps' own timings."
    )
    return table


def _peak(run: dict[str, Any], name: str) -> float:
    peak = run["stages"]["peak_rss_mib"] if name == "local stages" else run["peak_rss_mib"]
    return float(peak)


def _growth(by_rows: dict[int, dict[str, Any]], peak: Any) -> float | None:
    if GROWTH_FROM in by_rows and GROWTH_TO in by_rows:
        return float(peak(by_rows[GROWTH_TO]) - peak(by_rows[GROWTH_FROM]))
    return None


def _push(results: dict[str, Any]) -> Table:
    table = Table(
        "Push into the sandbox, no rate limit",
        ["run", "records", "seconds", "records/s", "requests", "reads", "writes", "failed"],
    )
    imported = results.get("import")
    if _ok(imported):
        assert imported is not None
        counts = _requests(imported)
        table.rows.append(
            [
                f"pipeline push_import ({_label(imported['rows'])}-row file)",
                _n(imported["written"]),
                _s(imported["push_seconds"]),
                _n(imported["written"] / imported["push_seconds"]),
                _n(counts["total"]),
                _n(counts["reads"]),
                _n(counts["writes"]),
                _n(imported["outcomes"]["failed"]),
            ]
        )
    else:
        table.rows.append(["pipeline push_import", _error(imported)])
    for label, run in results.get("upsert", {}).items():
        if not _ok(run):
            table.rows.append([f"raw upsert_many, {label}", _error(run)])
            continue
        counts = _requests(run)
        table.rows.append(
            [
                f"raw upsert_many, {label}",
                _n(run["written"]),
                _s(run["seconds"]),
                _n(run["written"] / run["seconds"]),
                _n(counts["total"]),
                _n(counts["reads"]),
                _n(counts["writes"]),
                _n(run["failed"]),
            ]
        )
    table.notes.append(
        "The pipeline's push (`push_import`) sends only new and changed records, by batches of "
        "100, and checkpoints each chunk in DuckDB; 'reads' are its lookups by email. As the "
        "import does, it first writes the six companies the file's Company column names and "
        "links each contact to its company (the association rides on the create; each chunk "
        "also records its links in staging). Raw `upsert_many` is the target's batch upsert "
        "alone (1 call per 100 records)."
    )
    return table


def _rate_limit(results: dict[str, Any]) -> Table:
    table = Table(
        "Rate-limit efficiency at 100 requests / 10 s (ceiling 1,000 records/s)",
        [
            "run",
            "records written",
            "seconds",
            "records/s",
            "÷ ceiling",
            "requests",
            "requests/s",
            "÷ limit",
            "pace vs best",
            "429 share",
            "failed",
        ],
    )
    pipeline = results.get("throttled_import")
    if _ok(pipeline):
        assert pipeline is not None
        figures = _limited_figures(pipeline, pipeline["push_seconds"], pipeline["written"])
        table.rows.append(
            _limited_row(
                f"pipeline push_import ({_label(pipeline['rows'])}-row file)",
                pipeline,
                pipeline["push_seconds"],
                pipeline["written"],
                pipeline["outcomes"]["failed"],
                figures,
            )
        )
    else:
        table.rows.append(["pipeline push_import", _error(pipeline)])
    raw = results.get("throttled_upsert")
    if _ok(raw):
        assert raw is not None
        figures = _limited_figures(raw, raw["seconds"], raw["written"])
        table.rows.append(
            _limited_row(
                "raw upsert_many, async x4",
                raw,
                raw["seconds"],
                raw["written"],
                raw["failed"],
                figures,
            )
        )
    else:
        table.rows.append(["raw upsert_many, async x4", _error(raw)])
    table.notes.append(
        "'÷ ceiling' is records written per second over 1,000; '÷ limit' is requests the sandbox "
        "admitted per second over 10, so it shows where the budget went (reads are lookups, "
        "which write nothing). A rolling window admits a burst of "
        "100 at the start of each 10 s, so over a run of a few windows both ratios can exceed 1; "
        "'pace vs best' is the least time the window allows for those requests over the time "
        "taken."
    )
    return table


def _limited_row(
    label: str,
    result: dict[str, Any],
    seconds: float,
    written: int,
    failed: int,
    figures: dict[str, float],
) -> list[str]:
    counts = _requests(result)
    return [
        label,
        _n(written),
        _s(seconds),
        _n(figures["records_per_s"]),
        f"{figures['efficiency']:.2f}",
        f"{_n(counts['total'])} ({_n(counts['reads'])} reads)",
        f"{figures['requests_per_s']:.2f}",
        f"{figures['request_efficiency']:.2f}",
        f"{figures['pace']:.2f}",
        _pct(figures["share_429"]),
        _n(failed),
    ]


def _resync(results: dict[str, Any]) -> Table:
    table = Table(
        "Re-sync: the same file with 1% of rows changed",
        ["run", "rows", "records written", "API calls", "calls/row", "wall s", "vs first"],
    )
    first, again = results.get("import"), results.get("resync")
    if not (_ok(first) and _ok(again)):
        table.rows.append(["re-sync", _error(again if _ok(first) else first)])
        return table
    assert first is not None and again is not None
    first_wall = first["seconds"] + first["push_seconds"]
    for label, run in (
        ("first import", first),
        (f"re-sync ({again['changed_rows']:,} rows changed)", again),
    ):
        counts = _requests(run)
        wall = run["seconds"] + run["push_seconds"]
        table.rows.append(
            [
                label,
                _n(run["rows"]),
                _n(run["written"]),
                f"{_n(counts['total'])} ({_n(counts['reads'])} reads)",
                f"{counts['total'] / run['rows']:.4f}",
                _s(wall),
                f"{wall / first_wall:.2f}",
            ]
        )
    table.notes.append(
        "Wall time = local stages + push, no rate limit. Unchanged records cost no call: staging "
        "skips a record whose content hash equals the one last pushed."
    )
    return table


def _peers(results: dict[str, Any]) -> Table:
    peers = results.get("peers", {})
    rows_in_file = peers.get("rows", 0)
    table = Table(
        f"Peers on the same {_label(rows_in_file) if rows_in_file else ''} file, sandbox and "
        "limits (100 requests / 10 s; search 4 / s)",
        [
            "tool",
            "rows handled",
            "seconds",
            "rows/s",
            "whole file s",
            "written",
            "failed",
            "skipped",
            "requests",
            "429 share",
            "peak RSS MiB",
            "CRM holds",
            "pipeline ÷ tool, rows/s",
        ],
    )
    pipeline = results.get("throttled_import")
    base = None
    if _ok(pipeline):
        assert pipeline is not None
        seconds = pipeline["seconds"] + pipeline["push_seconds"]
        base = pipeline["rows"] / seconds
        counts = _requests(pipeline)
        outcomes = pipeline["outcomes"]
        table.rows.append(
            [
                "bulk_pipeline (stages + push)",
                _n(pipeline["rows"]),
                _s(seconds),
                _n(base, 1),
                _s(seconds),
                _n(pipeline["written"]),
                _n(outcomes["failed"]),
                f"{_n(outcomes['invalid'])} invalid, {_n(outcomes['duplicate'])} duplicate",
                _n(counts["total"]),
                _pct(counts["rate_limited"] / counts["total"] if counts["total"] else 0.0),
                _n(pipeline["peak_rss_mib"]),
                _n(pipeline["crm_records"]),
                "1.0",
            ]
        )
    for label, key in (("(a) per-row guide script", "per_row"), ("(b) dlt, batch_size=100", "dlt")):
        run = peers.get(key)
        if not _ok(run):
            table.rows.append([label, _error(run)])
            continue
        assert run is not None
        counts = _requests(run)
        rate = run["rows"] / run["seconds"]
        table.rows.append(
            [
                label,
                _n(run["rows"]),
                _s(run["seconds"]),
                _n(rate, 1),
                _s(rows_in_file / rate),
                _n(run.get("written", 0)),
                _n(run.get("failed", 0)),
                _n(run.get("skipped", 0)),
                _n(counts["total"]),
                _pct(counts["rate_limited"] / counts["total"] if counts["total"] else 0.0),
                _n(run["peak_rss_mib"]),
                _n(run["crm_records"]),
                f"{base / rate:.1f}" if base else "",
            ]
        )
    table.notes.append(
        "'rows/s' counts rows of the file handled per second (read, and written, skipped or "
        "failed); the per-row script stops at its time budget and 'whole file s' extrapolates "
        "it. 'CRM holds' is the contacts in the sandbox afterwards: the pipeline's figure is the "
        "file's distinct valid emails. dlt's 'failed' are whole batches the CRM refused (a "
        "batch holding the same email twice), which it does not retry record by record."
    )
    return table


def _e2e(results: dict[str, Any]) -> Table:
    table = Table(
        "End to end: `bulk-pipeline import` into a fresh sandbox, no rate limit",
        ["rows", "wall s", "rows/s", "in steps s", "start + Dagster s", "peak RSS MiB", "outcomes"],
    )
    run = results.get("e2e")
    if not _ok(run):
        table.rows.append(["", _error(run)])
        return table
    assert run is not None
    summary = run.get("summary", {})
    steps = sum(step.get("seconds", 0.0) for step in summary.get("timings", {}).values())
    outcomes = ", ".join(
        f"{summary.get(key, 0):,} {key}"
        for key in ("created", "updated", "unchanged", "duplicates", "invalid", "failed")
    )
    table.rows.append(
        [
            _n(run["rows"]),
            _s(run["seconds"]),
            _n(run["rows"] / run["seconds"]),
            _s(steps),
            _s(run["seconds"] - steps),
            _n(run["peak_rss_mib"]),
            outcomes,
        ]
    )
    table.notes.append(
        "Wall time of the whole command, process start included (the sandbox was already "
        "running). 'in steps' adds the ingest, validate, stage and push timings of summary.json; "
        "the rest is interpreter start, imports and Dagster's run machinery."
    )
    return table


def _attio_figures(run: dict[str, Any], write_limit: int) -> dict[str, float]:
    counts = _requests(run)
    rows = max(int(run["rows"]), 1)
    seconds = float(run["push_seconds"])
    return {
        "writes_per_s": counts["writes"] / seconds if seconds else 0.0,
        "write_share": counts["writes"] / seconds / write_limit if seconds else 0.0,
        "calls_per_row": counts["total"] / rows,
        "writes_per_row": counts["writes"] / rows,
    }


def _attio(results: dict[str, Any]) -> Table:
    attio = results.get("attio") or {}
    limit = int(attio.get("write_limit", 25))
    table = Table(
        f"Attio: the sandbox's Attio at its documented limits ({limit} writes/s, 100 reads/s)",
        [
            "run",
            "push s",
            "writes",
            "writes/s",
            "of the write limit",
            "reads",
            "calls/row",
            "429",
            "outcomes",
        ],
    )
    for label, key in (("first import", "first"), ("re-sync, 1% changed", "resync")):
        run = attio.get(key)
        if not _ok(run):
            table.rows.append([label, _error(run)])
            continue
        assert run is not None
        counts = _requests(run)
        figures = _attio_figures(run, limit)
        outcomes = ", ".join(
            f"{run['outcomes'].get(name, 0):,} {name}"
            for name in ("created", "updated", "unchanged", "failed")
        )
        table.rows.append(
            [
                f"{label} ({_label(run['rows'])} rows)",
                _s(run["push_seconds"]),
                _n(counts["writes"]),
                f"{figures['writes_per_s']:.1f}" if key == "first" else "",
                f"{figures['write_share']:.2f}" if key == "first" else "",
                _n(counts["reads"]),
                f"{figures['calls_per_row']:.3f}",
                _n(counts["rate_limited"]),
                outcomes,
            ]
        )
        reasons = run.get("failure_reasons") or []
        if reasons and key == "first":
            shown = "; ".join(f"{count} x {reason}" for reason, count in reasons)
            table.notes.append(f"Failed rows of the first import: {shown}.")
    table.notes.append(
        "One record per write (Attio has no batch writes), eight in flight, paced by the "
        "target's write window; a first import looks nothing up (Attio refuses an email that "
        "exists), a re-sync reads the records it wrote by id, 50 per query, and patches the "
        "last names that changed. Calls per row count reads and writes over the file's rows "
        "(duplicates and invalid rows included). The "
        "machine is shared with other work: figures move from run to run."
    )
    return table


def _link_calls(run: dict[str, Any]) -> tuple[int, int, int]:
    """Association calls (reads, writes) and every call of one import of the links bench."""
    calls: dict[str, int] = run.get("calls", {})
    reads = sum(n for r, n in calls.items() if r == "associations/batch/read")
    writes = sum(
        n
        for r, n in calls.items()
        if r.startswith("associations/") and n and r != "associations/batch/read"
    )
    return reads, writes, sum(calls.values())


def _links(results: dict[str, Any]) -> Table | None:
    runs = results.get("links")
    if runs is None:
        return None
    table = Table(
        f"Links: {_n(runs['rows'])} contacts linked to {runs['companies']} companies (HubSpot "
        "associations, sandbox, no rate limit)",
        ["case", "links", "association reads", "association writes", "calls per link", "all calls"],
    )
    cases = (
        ("new", "all records new: links ride on creates"),
        ("existing", "records exist, links do not: made apart"),
        ("again", "the same file again"),
    )
    for key, label in cases:
        run = runs.get(key)
        if not _ok(run):
            table.rows.append([label, _error(run)])
            continue
        assert run is not None
        reads, writes, total = _link_calls(run)
        links = run.get("links", {})
        wanted = int(links.get("made", 0)) + int(links.get("found", 0)) or runs["rows"]
        table.rows.append(
            [label, _n(wanted), _n(reads), _n(writes), _n((reads + writes) / wanted, 4), _n(total)]
        )
    table.notes.append(
        "Calls per link counts the association calls of the import over the links it made or "
        "found. Links to records that exist are read first (v4 batch/read, 100 records a call) so "
        "that a link already there is neither written again nor removed by a rollback, then the "
        "missing ones are written (v4 batch/create, 100 a call). The same file again reads "
        "nothing: links this pipeline made or found are known."
    )
    return table


def _pipedrive_figures(results: dict[str, Any]) -> dict[str, float]:
    """The three Pipedrive targets' figures, from runs that succeeded."""
    pipedrive = results.get("pipedrive", {})
    figures: dict[str, float] = {}
    first = pipedrive.get("first")
    if _ok(first) and first["outcomes"]["created"]:
        figures["tokens_per_create"] = first["tokens"] / first["outcomes"]["created"]
    cold = pipedrive.get("resync_cold")
    if _ok(cold) and cold["outcomes"]["unchanged"]:
        figures["tokens_per_unchanged_row"] = cold["tokens"] / cold["outcomes"]["unchanged"]
    burst = pipedrive.get("burst")
    if _ok(burst):
        counts = _requests(burst)
        admitted = counts["total"] - counts["rate_limited"]
        fastest = (-(-admitted // PIPEDRIVE_BURST) - 1) * PIPEDRIVE_BURST_SECONDS
        figures["burst_pace"] = fastest / burst["push_seconds"] if fastest else 1.0
        figures["writes_per_s"] = counts["writes"] / burst["push_seconds"]
        figures["burst_429_share"] = counts["rate_limited"] / counts["total"]
    return figures


def _pipedrive(results: dict[str, Any]) -> Table:
    pipedrive = results.get("pipedrive", {})
    table = Table(
        "Pipedrive: tokens and the burst limit (the sandbox's Pipedrive dialect)",
        [
            "run",
            "rows",
            "created",
            "updated",
            "unchanged",
            "requests",
            "tokens",
            "tokens/created",
            "tokens/unchanged row",
            "push s",
            "writes/s",
            "429",
            "persons held",
            "duplicate persons",
        ],
    )
    runs = (
        ("first import, no limits", "first"),
        ("re-sync, same staging file (read by CRM id)", "resync"),
        ("re-sync, fresh staging file (every row looked up by email)", "resync_cold"),
        ("first import, 40 requests / 2 s", "burst"),
    )
    for label, key in runs:
        run = pipedrive.get(key)
        if not _ok(run):
            table.rows.append([label, _error(run)])
            continue
        assert run is not None
        outcomes, counts = run["outcomes"], _requests(run)
        created, unchanged = outcomes["created"], outcomes["unchanged"]
        table.rows.append(
            [
                label,
                _n(run["rows"]),
                _n(created),
                _n(outcomes["updated"]),
                _n(unchanged),
                _n(counts["total"]),
                _n(run["tokens"]),
                f"{run['tokens'] / created:.2f}" if created else "",
                f"{run['tokens'] / unchanged:.4f}" if unchanged and not created else "",
                _s(run["push_seconds"]),
                _n(counts["writes"] / run["push_seconds"], 1),
                _n(counts["rate_limited"]),
                _n(run["crm_records"]),
                _n(run["crm_duplicates"]),
            ]
        )
    peer = pipedrive.get("per_row")
    label = "per-row guide script (search, then create or update)"
    if _ok(peer):
        assert peer is not None
        counts = _requests(peer)
        written = peer.get("written", 0)
        table.rows.append(
            [
                f"{label}, {_s(peer['seconds'])} s cap",
                _n(peer["rows"]),
                f"{_n(written)} written",
                "",
                "",
                _n(counts["total"]),
                _n(peer["tokens"]),
                f"{peer['tokens'] / written:.2f} per row written" if written else "",
                "",
                _s(peer["seconds"]),
                _n(counts["writes"] / peer["seconds"], 1),
                _n(counts["rate_limited"]),
                _n(peer["crm_records"]),
                _n(peer["crm_duplicates"]),
            ]
        )
    else:
        table.rows.append([label, _error(peer)])
    figures = _pipedrive_figures(results)
    if "burst_pace" in figures:
        table.notes.append(
            f"Under the burst limit the push ran at {figures['burst_pace']:.2f} of the fastest "
            "pace the rolling window allows (a burst of 40 at the start, then 40 per 2 s: "
            "N requests need at least 2 s x (ceil(N / 40) - 1)); writes/s can exceed 20 on a "
            "short run because of that first burst."
        )
    table.notes.append(
        "Tokens are what the sandbox charged, each call at its x-token-cost (create 5, list 10 "
        "per 500, search 20, fields 10). The pipeline builds its match index by listing the "
        "account and never searches here; the per-row script searches every row (20 tokens, 10 "
        "searches per 2 s) and, with the sandbox's search index "
        f"{pipedrive.get('search_lag_s', 0):g} s behind new persons, creates a second person "
        "when an email comes again soon after: Pipedrive accepts duplicates."
    )
    return table


# --- targets -------------------------------------------------------------------------------------


def _local_run(results: dict[str, Any], rows: int) -> dict[str, Any] | None:
    for run in results.get("local", []):
        if run["rows"] == rows and _ok(run.get("stages")):
            found: dict[str, Any] = run
            return found
    return None


def _targets(results: dict[str, Any]) -> Table:
    table = Table("Targets", ["measure", "figure", "target", "verdict"])
    rows = table.rows
    local = {r["rows"]: r for r in results.get("local", []) if _ok(r.get("stages"))}
    cli = {r["rows"]: r for r in results.get("cli", []) if _ok(r)}
    span = f"{_label(GROWTH_FROM)} -> {_label(GROWTH_TO)}"
    limit = TARGETS["memory_growth_mib"]
    for name, by_rows in (("local stages", local), ("CLI dry run", cli)):
        growth = _growth(by_rows, lambda run, name=name: _peak(run, name))
        rows.append(
            [
                f"peak RSS growth, {name}, {span} rows",
                "not measured" if growth is None else f"{_n(growth)} MiB",
                f"≤ {_n(limit)} MiB",
                "" if growth is None else _verdict(growth <= limit),
            ]
        )
    biggest = cli.get(GROWTH_TO)
    rows.append(
        [
            f"peak RSS, CLI dry run of {_label(GROWTH_TO)} rows",
            f"{_n(biggest['peak_rss_mib'])} MiB" if biggest else "not measured",
            f"≤ {_n(TARGETS['cli_peak_mib'])} MiB",
            _verdict(biggest["peak_rss_mib"] <= TARGETS["cli_peak_mib"]) if biggest else "",
        ]
    )
    floored = local.get(FLOOR_ROWS)
    if floored is not None and _ok(floored.get("duckdb_floor")):
        ratio = floored["stages"]["seconds"] / floored["duckdb_floor"]["seconds"]
        rows.append(
            [
                f"local stages ÷ durable DuckDB floor, {_label(FLOOR_ROWS)} rows",
                f"{ratio:.2f}x ({_s(floored['stages']['seconds'])} s ÷ "
                f"{_s(floored['duckdb_floor']['seconds'])} s)",
                f"≤ {TARGETS['duckdb_floor_ratio']}x",
                _verdict(ratio <= TARGETS["duckdb_floor_ratio"]),
            ]
        )
    else:
        rows.append(
            [f"local stages ÷ durable DuckDB floor, {_label(FLOOR_ROWS)} rows", "not measured"]
        )
    if GROWTH_FROM in local and GROWTH_TO in local:
        ratios = {
            name: (_stage(local[GROWTH_TO]["stages"], name)["seconds"] / GROWTH_TO)
            / (_stage(local[GROWTH_FROM]["stages"], name)["seconds"] / GROWTH_FROM)
            for name in STAGE_NAMES
        }
        worst = max(ratios, key=lambda name: ratios[name])
        rows.append(
            [
                f"time per row, {span} rows, worst step",
                f"{ratios[worst]:.2f}x ({worst}; "
                + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
                + ")",
                f"≤ {TARGETS['time_per_row_growth']}x",
                _verdict(ratios[worst] <= TARGETS["time_per_row_growth"]),
            ]
        )
    else:
        rows.append([f"time per row, {span} rows", "not measured"])
    imported = results.get("import")
    if _ok(imported):
        assert imported is not None
        rate = imported["written"] / imported["push_seconds"]
        rows.append(
            [
                "pipeline push, no rate limit",
                f"{_n(rate)} records/s",
                "≥ 5,000/s",
                _verdict(rate >= TARGETS["push_records_per_s"]),
            ]
        )
    sync = results.get("upsert", {}).get("sync")
    if _ok(sync):
        assert sync is not None
        rate = sync["written"] / sync["seconds"]
        rows.append(
            [
                "raw upsert_many (sync), no rate limit",
                f"{_n(rate)} records/s",
                "≥ 5,000/s",
                _verdict(rate >= TARGETS["push_records_per_s"]),
            ]
        )
    for label, key, seconds_key, failed_key in (
        ("rate limit, raw upsert_many", "throttled_upsert", "seconds", "failed"),
        ("rate limit, pipeline push", "throttled_import", "push_seconds", None),
    ):
        run = results.get(key)
        if not _ok(run):
            continue
        assert run is not None
        failed = run[failed_key] if failed_key else run["outcomes"]["failed"]
        figures = _limited_figures(run, run[seconds_key], run["written"])
        met = (
            figures["efficiency"] >= TARGETS["limit_efficiency"]
            and failed == 0
            and figures["share_429"] <= TARGETS["limit_429_share"]
        )
        rows.append(
            [
                f"{label} ({_s(run[seconds_key])} s)",
                f"{figures['efficiency']:.2f} of ceiling ({figures['request_efficiency']:.2f} of "
                f"the request limit), {_pct(figures['share_429'])} 429, {failed} failed",
                "≥ 0.95, 0 failed, ≤ 1% 429",
                _verdict(met),
            ]
        )
    again = results.get("resync")
    if _ok(again):
        assert again is not None
        per_row = _requests(again)["total"] / again["rows"]
        rows.append(
            [
                "re-sync, 1% changed",
                f"{per_row:.4f} calls/row",
                "≤ 0.02",
                _verdict(per_row <= TARGETS["resync_calls_per_row"]),
            ]
        )
    attio = results.get("attio") or {}
    first = attio.get("first")
    if _ok(first):
        assert first is not None
        figures = _attio_figures(first, int(attio["write_limit"]))
        rows.append(
            [
                "Attio, first import: writes per second",
                f"{figures['writes_per_s']:.1f}/s, {figures['write_share']:.2f} of the write limit",
                "≥ 0.9 of it",
                _verdict(figures["write_share"] >= TARGETS["attio_write_share"]),
            ]
        )
    pipedrive = _pipedrive_figures(results)
    for measure, key, shown, target, met in (
        (
            "Pipedrive, tokens per created person (first import)",
            "tokens_per_create",
            "{:.2f} tokens",
            "≤ 6 (a create costs 5)",
            lambda v: v <= TARGETS["pipedrive_tokens_per_create"],
        ),
        (
            "Pipedrive, tokens per unchanged row (re-sync, every row looked up by email)",
            "tokens_per_unchanged_row",
            "{:.4f} tokens",
            "≤ 0.05",
            lambda v: v <= TARGETS["pipedrive_tokens_per_unchanged_row"],
        ),
        (
            "Pipedrive, pace under the burst limit (40 / 2 s)",
            "burst_pace",
            "{:.2f} of the limit",
            "≥ 0.9",
            lambda v: v >= TARGETS["pipedrive_burst_efficiency"],
        ),
    ):
        if key in pipedrive:
            rows.append(
                [measure, shown.format(pipedrive[key]), target, _verdict(met(pipedrive[key]))]
            )
    e2e = results.get("e2e")
    if _ok(e2e):
        assert e2e is not None
        rows.append(
            [
                f"end to end, {_label(e2e['rows'])} rows",
                f"{_s(e2e['seconds'])} s",
                "≤ 15 s",
                _verdict(e2e["seconds"] <= TARGETS["e2e_seconds"]),
            ]
        )
    links = results.get("links") or {}
    for key, label in (("new", "links on creates"), ("existing", "links to existing records")):
        run = links.get(key)
        if _ok(run):
            assert run is not None
            reads, writes, _ = _link_calls(run)
            made = run.get("links", {})
            wanted = int(made.get("made", 0)) + int(made.get("found", 0)) or links["rows"]
            per_link = (reads + writes) / wanted
            rows.append(
                [
                    f"HubSpot calls per link, {label}",
                    f"{per_link:.4f} ({writes / wanted:.4f} writing)",
                    "≤ 0.011",
                    _verdict(per_link <= TARGETS["calls_per_link"]),
                ]
            )
    return table


def tables(results: dict[str, Any]) -> list[Table]:
    optional = [_per_row(results), _memory(results)]
    return [
        _targets(results),
        _local(results),
        *[table for table in optional if table is not None],
        _push(results),
        _rate_limit(results),
        _resync(results),
        _peers(results),
        _attio(results),
        _pipedrive(results),
        _e2e(results),
        *([links] if (links := _links(results)) else []),
    ]


# --- rendering ------------------------------------------------------------------------------------


def _machine_lines(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    load_before = ", ".join(f"{x:.2f}" for x in m["load_before"])
    load_after = ", ".join(f"{x:.2f}" for x in m["load_after"])
    return [
        f"command: `{results['command']}` (`python -m bench.run"
        f"{' --full' if results['profile'] == 'full' else ''}`), "
        f"{results['seconds'] / 60:.1f} minutes",
        f"date: {m['date']}",
        f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}",
        f"versions: Python {m['python']}, polars {m['polars']}, duckdb {m['duckdb']}, "
        f"dlt {m['dlt']}",
        f"load average (1, 5, 15 min): {load_before} before, {load_after} after",
    ]


def console(results: dict[str, Any]) -> str:
    lines = [*_machine_lines(results), ""]
    for table in tables(results):
        lines += [table.title, *_aligned(table), ""]
    return "\n".join(lines).replace("**", "")


def _aligned(table: Table) -> list[str]:
    width = len(table.headers)
    rows = [table.headers, *[row + [""] * (width - len(row)) for row in table.rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(width)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return ["  " + line.rstrip() for line in lines]


def markdown(results: dict[str, Any]) -> str:
    title = "Full profile" if results["profile"] == "full" else "Quick profile"
    lines = [f"## {title} (`{results['command']}`)", ""]
    lines += [f"- {line}" for line in _machine_lines(results)]
    for table in tables(results):
        lines += ["", f"### {table.title}", ""]
        width = len(table.headers)
        lines.append("| " + " | ".join(table.headers) + " |")
        lines.append("|" + "---|" * width)
        for row in table.rows:
            cells = [cell.replace("|", "\\|") for cell in row + [""] * (width - len(row))]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *table.notes] if table.notes else []
    return "\n".join(lines)


def rewrite_markdown(path: Path, results: dict[str, Any]) -> None:
    """Replace this profile's generated block; keep everything else in the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else SKELETON
    profile = results["profile"]
    start, end = f"<!-- bench:{profile}:start -->", f"<!-- bench:{profile}:end -->"
    block = f"{start}\n{markdown(results)}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _match: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    path.write_text(text, encoding="utf-8")
