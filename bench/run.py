"""Every benchmark in one run, side by side: print the figures and rewrite BENCHMARKS.md.

    python -m bench.run            # make bench: memory and time at 100k, 1M and 10M rows
    python -m bench.run --full     # make bench-full: also 30M rows, a >= 2 minute throttled push

Each measurement runs in its own process (``bench/measure.py``, ``floor.py``, ``peers.py``, the
``bulk-pipeline`` command), so its peak RSS is its own. Pushes go to a sandbox CRM in another
process, emptied before each run; request counts are the sandbox's own. Input files are made
once by the seeded generator into ``bench/out/`` (git-ignored), with every run's raw results.
The machine is shared: figures move by some percent from run to run, more while tests run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench import report
from bench.bench_push import TOKEN, SandboxProcess
from bench.worker import parse
from bulk_pipeline.imports import file_digest, import_id_for

OUT = Path(__file__).resolve().parent / "out"
SEED = 7
RATE_LIMIT = {"max": 100, "interval_ms": 10_000}
"""HubSpot Free/Starter: 100 requests per rolling 10 s."""
SEARCH_RATE_LIMIT = {"max": 4, "interval_ms": 1_000}
"""HubSpot's search limit (the sandbox's default), which the per-row peer meets."""
RESYNC_CHANGED_SHARE = 0.01
ATTIO_LIMITS = {"read_limit": "100/1000", "write_limit": "25/1000"}
"""Attio's documented limits: 100 reads and 25 writes per second."""
ATTIO_WRITES_PER_S = 25
PIPEDRIVE = "sandbox-pipedrive"
PIPEDRIVE_UNLIMITED = {
    "daily_budget": None,
    "burst_limit": None,
    "search_limit": None,
    "block_after": None,
    "search_lag_s": 0,
}
PIPEDRIVE_GROWTH = {
    **PIPEDRIVE_UNLIMITED,
    "burst_limit": {"max": 40, "interval_ms": 2_000},
    "search_limit": {"max": 10, "interval_ms": 2_000},
}
"""Pipedrive's Growth plan for an api_token: 40 requests per 2 s; search 10 per 2 s."""
PIPEDRIVE_SEARCH_LAG_S = 2.0
"""How far the sandbox's search index trails new persons in the per-row peer's run (Pipedrive
does not say how far its own does)."""
WORKER_TIMEOUT_S = 3_600.0
LINK_COMPANIES = 100
"""Companies the contacts of the links benchmark work at."""


@dataclass(frozen=True)
class Profile:
    name: str
    command: str
    local_rows: tuple[int, ...]
    """Local stages, each beside the two floors: time per row and memory as input grows."""
    big_rows: tuple[int, ...]
    """Local stages only (no floor: the polars floor holds the whole file in memory)."""
    cli_rows: tuple[int, ...]
    """The whole ``bulk-pipeline import --dry-run``, its peak RSS as input grows."""
    import_rows: int
    """Pipeline import with no rate limit, then its re-sync."""
    upsert_records: int
    """Raw ``upsert_many`` with no rate limit."""
    throttled_seconds: int
    """Raw ``upsert_many`` under the limit lasts at least this long."""
    peers_rows: int
    """The pipeline under the limit and the peers on one file; about 8,400 records per 10k
    rows at 100 records per request make the pipeline's push last about 8 s per 10k rows, so
    200k rows give the >= 2 minute push of the full profile."""
    per_row_budget_s: float
    attio_rows: int
    """An import into the sandbox's Attio at its documented limits, then its re-sync: about
    40 s per 1,000 rows at 25 writes a second."""
    pipedrive_rows: int
    """Into the sandbox's Pipedrive dialect with no limits: a first import, then re-syncs."""
    pipedrive_burst_rows: int
    """Into Pipedrive's Growth burst limit (40 requests / 2 s), and the per-row peer's file."""
    pipedrive_per_row_s: float
    e2e_rows: int = 10_000
    link_rows: int = 10_000


SIZES = (100_000, 1_000_000, 10_000_000)
"""The sizes memory growth and time per row are compared over."""
QUICK = Profile(
    name="quick",
    command="make bench",
    local_rows=SIZES,
    big_rows=(),
    cli_rows=SIZES,
    import_rows=100_000,
    upsert_records=100_000,
    throttled_seconds=30,
    peers_rows=40_000,
    per_row_budget_s=45.0,
    attio_rows=1_000,
    pipedrive_rows=5_000,
    pipedrive_burst_rows=1_000,
    pipedrive_per_row_s=30.0,
)
FULL = Profile(
    name="full",
    command="make bench-full",
    local_rows=SIZES,
    big_rows=(30_000_000,),
    cli_rows=SIZES,
    import_rows=100_000,
    upsert_records=100_000,
    throttled_seconds=120,
    peers_rows=200_000,
    per_row_budget_s=120.0,
    attio_rows=5_000,
    pipedrive_rows=20_000,
    pipedrive_burst_rows=2_000,
    pipedrive_per_row_s=60.0,
)


class BenchError(RuntimeError):
    """A measurement failed; the run goes on and the report shows the error in its place."""


def size_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    return f"{rows // 1_000}k" if rows % 1_000 == 0 else str(rows)


def input_file(rows: int) -> Path:
    """The seeded generator's file of this size, made on first use."""
    path = OUT / f"contacts_{size_label(rows)}.csv"
    if not path.exists():
        print(f"generating {path.name}...", flush=True)
        generator = Path(__file__).resolve().parent / "generate.py"
        command = [sys.executable, str(generator), str(rows), str(path), "--seed", str(SEED)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return path


def links_file(rows: int, companies: int) -> Path:
    """Contacts with the Company and Company Website of one of ``companies`` companies each."""
    path = OUT / f"linked_{size_label(rows)}_{companies}.csv"
    if not path.exists():
        index = pl.int_range(rows)
        pl.select(
            pl.format("person{}@example.com", index).alias("Email"),
            pl.format("First{}", index).alias("First Name"),
            pl.format("Company {}", index % companies).alias("Company"),
            pl.format("https://company{}.example.com", index % companies).alias("Company Website"),
        ).write_csv(path)
    return path


def changed_copy(
    path: Path, share: float, column: str = "Company", value: str = "Changed Company Ltd"
) -> tuple[Path, int]:
    """The same file with ``share`` of its rows given another value in ``column``; and how
    many rows."""
    frame = pl.read_csv(path, infer_schema=False)
    picked = np.random.default_rng(SEED).choice(frame.height, int(frame.height * share), False)
    changed = frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_in(pl.Series(picked).implode()))
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )
    suffix = "changed" if column == "Company" else f"changed_{column.lower().replace(' ', '_')}"
    out = path.with_name(f"{path.stem}_{suffix}.csv")
    changed.write_csv(out)
    return out, len(picked)


def worker(module: str, *args: object, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh process and return the result it printed."""
    command = [sys.executable, "-m", module, *map(str, args)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    result = parse(done.stdout)
    if done.returncode != 0 or result is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise BenchError(f"{' '.join(command[2:4])} exited {done.returncode}: {tail}")
    if "error" in result:
        raise BenchError(str(result["error"]))
    return result


def attempt(label: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; a failure is reported in its place instead of ending the run."""
    print(f"- {label}...", flush=True)
    try:
        return measure()
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        print(f"  failed: {exc}", file=sys.stderr, flush=True)
        return {"error": str(exc)}


@dataclass(frozen=True)
class Requests:
    """What the sandbox was asked, from its admin stats."""

    total: int
    reads: int
    writes: int
    rate_limited: int

    @classmethod
    def of(cls, sandbox: SandboxProcess) -> Requests:
        stats = sandbox.admin.stats()["requests"]
        return cls(stats["total"], stats["reads"], stats["writes"], stats["rate_limited"])

    def __sub__(self, other: Requests) -> Requests:
        return Requests(
            self.total - other.total,
            self.reads - other.reads,
            self.writes - other.writes,
            self.rate_limited - other.rate_limited,
        )


class Bench:
    """One run of a profile: its files, its sandbox, its results."""

    def __init__(self, profile: Profile, workdir: Path) -> None:
        self.profile = profile
        self.workdir = workdir
        self.results: dict[str, Any] = {"profile": profile.name, "command": profile.command}

    def home(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # 1, 2: local stages, the floor, memory as input grows

    def measure(
        self, label: str, module: str, *args: object, sandbox: SandboxProcess | None = None
    ) -> dict[str, Any]:
        """One worker run; with a sandbox, also the requests it cost and what the CRM holds."""

        def run() -> dict[str, Any]:
            if sandbox is None:
                return worker(module, *args)
            return self.counted(sandbox, lambda: worker(module, *args))

        return attempt(label, run)

    def local(self) -> None:
        runs: list[dict[str, Any]] = []
        for rows in (*self.profile.local_rows, *self.profile.big_rows):
            path, label = input_file(rows), size_label(rows)
            home = self.home(f"local-{label}")
            run: dict[str, Any] = {"rows": rows}
            run["stages"] = self.measure(
                f"local stages, {label} rows", "bench.measure", "stages", path, "--home", home
            )
            shutil.rmtree(home, ignore_errors=True)
            if rows in self.profile.local_rows:
                run["floor"] = self.measure(
                    f"polars floor, {label} rows", "bench.floor", "polars", path
                )
                run["duckdb_floor"] = self.measure(
                    f"durable DuckDB floor, {label} rows",
                    "bench.floor",
                    "duckdb",
                    path,
                    "--db",
                    self.workdir / "floor.duckdb",
                )
            runs.append(run)
        self.results["local"] = runs

    def cli(self, sandbox: SandboxProcess) -> None:
        """``bulk-pipeline import --dry-run`` of each size into an empty sandbox without a
        rate limit: the whole command's peak RSS (interpreter, Dagster, every step, the
        lookups of every record and the plan), as input grows."""
        runs: list[dict[str, Any]] = []
        for rows in self.profile.cli_rows:
            self.fresh(sandbox, limited=False)
            label = size_label(rows)
            home = self.home(f"cli-{label}")
            result = attempt(
                f"bulk-pipeline import --dry-run, {label} rows",
                partial(self.command, sandbox, home, input_file(rows), "--dry-run"),
            )
            runs.append({"rows": rows, **result})
            shutil.rmtree(home, ignore_errors=True)
        self.results["cli"] = runs

    # 3, 4, 5, 6: pushes into the sandbox

    def fresh(self, sandbox: SandboxProcess, *, limited: bool) -> None:
        """Empty the CRM and zero its counters; limits on or off, their windows empty."""
        sandbox.admin.reset()
        sandbox.admin.configure(
            rate_limit=RATE_LIMIT if limited else None,
            search_rate_limit=SEARCH_RATE_LIMIT if limited else None,
        )

    def counted(
        self,
        sandbox: SandboxProcess,
        measure: Callable[[], dict[str, Any]],
        dialect: str = "hubspot",
    ) -> dict[str, Any]:
        """A measurement with the requests it cost and the records the CRM holds after it."""
        before = Requests.of(sandbox)
        result = measure()
        result["requests"] = asdict(Requests.of(sandbox) - before)
        kind = "contacts" if dialect == "hubspot" else "people"
        result["crm_records"] = sandbox.admin.counts(dialect).get(kind, 0)
        return result

    def pushes(self, sandbox: SandboxProcess) -> None:
        url, profile = sandbox.url, self.profile
        import_file = input_file(profile.import_rows)
        import_home = self.home("import")
        size = size_label(profile.import_rows)

        self.fresh(sandbox, limited=False)
        self.results["import"] = self.measure(
            f"pipeline import, {size} rows, no rate limit",
            "bench.measure",
            "import",
            import_file,
            "--home",
            import_home,
            "--url",
            url,
            sandbox=sandbox,
        )
        changed, changed_rows = changed_copy(import_file, RESYNC_CHANGED_SHARE)
        resync = self.measure(
            f"re-sync, {size} rows of which {changed_rows:,} changed",
            "bench.measure",
            "import",
            changed,
            "--home",
            import_home,
            "--url",
            url,
            sandbox=sandbox,
        )
        self.results["resync"] = {**resync, "changed_rows": changed_rows}

        upserts = {}
        for label, concurrency in (("sync", 1), ("async x4", 4)):
            self.fresh(sandbox, limited=False)
            upserts[label] = self.measure(
                f"upsert_many {label}, {size_label(profile.upsert_records)} records",
                "bench.measure",
                "upsert",
                profile.upsert_records,
                "--url",
                url,
                "--concurrency",
                concurrency,
                sandbox=sandbox,
            )
        self.results["upsert"] = upserts

        peers_file = input_file(profile.peers_rows)
        peers_size = size_label(profile.peers_rows)
        self.fresh(sandbox, limited=True)
        self.results["throttled_import"] = self.measure(
            f"pipeline import, {peers_size} rows, 100 requests/10 s",
            "bench.measure",
            "import",
            peers_file,
            "--home",
            self.home("throttled"),
            "--url",
            url,
            sandbox=sandbox,
        )
        ceiling = RATE_LIMIT["max"] * 100 * 1000 // RATE_LIMIT["interval_ms"]
        records = (profile.throttled_seconds + RATE_LIMIT["interval_ms"] // 1000) * ceiling
        self.fresh(sandbox, limited=True)
        self.results["throttled_upsert"] = self.measure(
            f"upsert_many async x4, {records:,} records, 100 requests/10 s",
            "bench.measure",
            "upsert",
            records,
            "--url",
            url,
            "--concurrency",
            4,
            "--prefix",
            "t",
            sandbox=sandbox,
        )

        self.fresh(sandbox, limited=True)
        per_row = self.measure(
            f"peer (a): per-row script, {peers_size} rows, {profile.per_row_budget_s:.0f} s cap",
            "bench.peers",
            "per-row",
            peers_file,
            "--url",
            url,
            "--budget",
            profile.per_row_budget_s,
            sandbox=sandbox,
        )
        self.fresh(sandbox, limited=True)
        dlt = self.measure(
            f"peer (b): dlt, {peers_size} rows",
            "bench.peers",
            "dlt",
            peers_file,
            "--url",
            url,
            "--workdir",
            self.home("dlt"),
            sandbox=sandbox,
        )
        self.results["peers"] = {"rows": profile.peers_rows, "per_row": per_row, "dlt": dlt}

    # Attio: writes against its write limit, calls per row

    def attio(self, sandbox: SandboxProcess) -> None:
        """An import into the sandbox's Attio at Attio's documented limits, then a re-sync."""
        sandbox.admin.reset()
        sandbox.admin.configure(attio=ATTIO_LIMITS)
        rows = self.profile.attio_rows
        path, label = input_file(rows), size_label(rows)
        home = self.home("attio")

        def imported(file: Path) -> dict[str, Any]:
            args = ("import", file, "--home", home, "--url", sandbox.url, "--target")
            return self.counted(
                sandbox, lambda: worker("bench.measure", *args, "sandbox-attio"), dialect="attio"
            )

        first = attempt(f"Attio import, {label} rows, 25 writes/s", lambda: imported(path))
        changed, changed_rows = changed_copy(path, RESYNC_CHANGED_SHARE, "Last Name", "Changed")
        resync = attempt(
            f"Attio re-sync, {label} rows of which {changed_rows:,} changed (last name)",
            lambda: imported(changed),
        )
        sandbox.admin.configure(attio={"read_limit": None, "write_limit": None})
        self.results["attio"] = {
            "write_limit": ATTIO_WRITES_PER_S,
            "first": first,
            "resync": {**resync, "changed_rows": changed_rows},
        }

    # Pipedrive: tokens per created person and per unchanged row, the burst limit, a peer

    def pipedrive_counted(
        self, sandbox: SandboxProcess, measure: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """A measurement with the tokens and requests the sandbox's Pipedrive dialect charged,
        and the persons it holds after (and how many share an email with another)."""
        tokens = sandbox.admin.limits("pipedrive")["tokens_used"]
        requests = sandbox.admin.requests("pipedrive")
        result = measure()
        after = sandbox.admin.requests("pipedrive")
        result["tokens"] = sandbox.admin.limits("pipedrive")["tokens_used"] - tokens
        result["requests"] = {
            name: after[name] - requests[name]
            for name in ("total", "reads", "writes", "rate_limited")
        }
        persons = sandbox.admin.records("persons", "pipedrive")
        emails = [e["value"].lower() for p in persons for e in p.get("emails") or ()]
        result["crm_records"] = len(persons)
        result["crm_duplicates"] = len(emails) - len(set(emails))
        return result

    def pipedrive_import(
        self, sandbox: SandboxProcess, label: str, path: Path, home: str
    ) -> dict[str, Any]:
        return attempt(
            label,
            lambda: self.pipedrive_counted(
                sandbox,
                lambda: worker(
                    "bench.measure",
                    "import",
                    path,
                    "--home",
                    self.home(home),
                    "--url",
                    sandbox.url,
                    "--target",
                    PIPEDRIVE,
                ),
            ),
        )

    def pipedrive(self, sandbox: SandboxProcess) -> None:
        profile = self.profile
        path = input_file(profile.pipedrive_rows)
        size = size_label(profile.pipedrive_rows)
        sandbox.admin.reset()
        sandbox.admin.configure(pipedrive=PIPEDRIVE_UNLIMITED)
        results: dict[str, Any] = {"rows": profile.pipedrive_rows}
        results["first"] = self.pipedrive_import(
            sandbox, f"Pipedrive: first import, {size} rows, no limits", path, "pd-import"
        )
        results["resync"] = self.pipedrive_import(
            sandbox, f"Pipedrive: re-sync of the same {size} rows", path, "pd-import"
        )
        results["resync_cold"] = self.pipedrive_import(
            sandbox,
            f"Pipedrive: re-sync of the same {size} rows, no staging state (all looked up)",
            path,
            "pd-cold",
        )
        burst_path = input_file(profile.pipedrive_burst_rows)
        burst_size = size_label(profile.pipedrive_burst_rows)
        sandbox.admin.reset()
        sandbox.admin.configure(pipedrive=PIPEDRIVE_GROWTH)
        results["burst"] = self.pipedrive_import(
            sandbox,
            f"Pipedrive: first import, {burst_size} rows, 40 requests / 2 s",
            burst_path,
            "pd-burst",
        )
        results["burst_rows"] = profile.pipedrive_burst_rows
        sandbox.admin.reset()
        sandbox.admin.configure(
            pipedrive={**PIPEDRIVE_GROWTH, "search_lag_s": PIPEDRIVE_SEARCH_LAG_S}
        )
        results["per_row"] = attempt(
            f"Pipedrive peer: per-row search-then-write script, {burst_size} rows, "
            f"{profile.pipedrive_per_row_s:.0f} s cap",
            lambda: self.pipedrive_counted(
                sandbox,
                lambda: worker(
                    "bench.peers",
                    "pipedrive-per-row",
                    burst_path,
                    "--url",
                    sandbox.url,
                    "--budget",
                    profile.pipedrive_per_row_s,
                ),
            ),
        )
        results["search_lag_s"] = PIPEDRIVE_SEARCH_LAG_S
        self.results["pipedrive"] = results

    # 7: end to end

    # 8: links (HubSpot associations)

    def links(self, sandbox: SandboxProcess) -> None:
        """HubSpot API calls per link: contacts linked to the companies their Company columns
        name, (a) all new (links ride on creates), (b) contacts and companies that exist without
        their links (links made apart: read, then create), (c) the same file again."""
        rows, companies = self.profile.link_rows, LINK_COMPANIES
        linked = links_file(rows, companies)
        unlinked = linked.with_name(f"{linked.stem}_unlinked.csv")
        pl.read_csv(linked).drop("Company", "Company Website").write_csv(unlinked)
        firms = linked.with_name(f"{linked.stem}_companies.csv")
        pl.read_csv(linked).select(
            pl.col("Company").alias("Name"), pl.col("Company Website").alias("Website")
        ).unique(maintain_order=True).write_csv(firms)
        self.fresh(sandbox, limited=False)
        runs: dict[str, Any] = {"rows": rows, "companies": companies}
        home = self.home("links-new")
        runs["new"] = attempt(
            f"links on creates, {size_label(rows)} contacts",
            lambda: self.association_calls(sandbox, home, linked),
        )
        runs["again"] = attempt(
            "links, the same file again",
            lambda: self.association_calls(sandbox, home, linked),
        )
        self.fresh(sandbox, limited=False)
        home = self.home("links-existing")
        for path in (firms, unlinked):
            attempt(f"seed {path.name}", partial(self.association_calls, sandbox, home, path))
        runs["existing"] = attempt(
            f"links to existing records, {size_label(rows)} contacts",
            lambda: self.association_calls(sandbox, home, linked),
        )
        self.results["links"] = runs

    def association_calls(self, sandbox: SandboxProcess, home: Path, path: Path) -> dict[str, Any]:
        """``bulk-pipeline import`` of one file: the calls it cost, by route, and its links."""
        before = sandbox.admin.requests("hubspot")["by_route"]
        summary: dict[str, Any] = self.command(sandbox, home, path)["summary"]
        after = sandbox.admin.requests("hubspot")["by_route"]
        calls = {route: after[route] - before.get(route, 0) for route in after}
        return {
            "calls": {route: n for route, n in calls.items() if n},
            "links": summary.get("links", {}),
            "entities": summary.get("entities", {}),
        }

    def command(
        self, sandbox: SandboxProcess, home: Path, path: Path, *options: str
    ) -> dict[str, Any]:
        """``bulk-pipeline import PATH [options]`` into the sandbox, its data home ``home``:
        wall time, its own peak RSS (``wait4``), its step timings, and its summary or plan."""
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        env |= {
            "BULK_PIPELINE_HOME": str(home),
            "BULK_PIPELINE_SANDBOX_URL": sandbox.url,
            "BULK_PIPELINE_SANDBOX_TOKEN": TOKEN,
        }
        command = [str(Path(sys.executable).parent / "bulk-pipeline"), "import", str(path)]
        command += [*options, "--no-progress"]
        log = home / "cli.log"
        with log.open("wb") as output:
            started = time.perf_counter()
            process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
            _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
            seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"bulk-pipeline import exited {process.returncode}: {tail}")
        import_id = import_id_for(path.name, file_digest(path))
        reports = home / "reports" / import_id
        timings = home / "work" / import_id / "timings.json"
        outcome = "plan.json" if "--dry-run" in options else "summary.json"
        return {
            "seconds": seconds,
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "timings": report.read_json(timings) if timings.exists() else {},
            outcome.removesuffix(".json"): report.read_json(reports / outcome),
        }

    def end_to_end(self, sandbox: SandboxProcess) -> None:
        self.fresh(sandbox, limited=False)
        rows = self.profile.e2e_rows
        home = self.home("e2e")

        def run() -> dict[str, Any]:
            return {"rows": rows, **self.command(sandbox, home, input_file(rows))}

        self.results["e2e"] = attempt(
            f"end to end: bulk-pipeline import, {size_label(rows)} rows",
            lambda: self.counted(sandbox, run),
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="all sizes (make bench-full)")
    args = parser.parse_args(argv)
    profile = FULL if args.full else QUICK
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    machine = report.machine()
    print(f"bulk_pipeline benchmarks, {profile.name} profile ({profile.command})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bulk_pipeline_bench_") as tmp:
        bench = Bench(profile, Path(tmp))
        bench.local()
        sandbox = SandboxProcess(bench.home("sandbox"))
        try:
            bench.cli(sandbox)
            bench.pushes(sandbox)
            bench.attio(sandbox)
            bench.pipedrive(sandbox)
            bench.end_to_end(sandbox)
            bench.links(sandbox)
        finally:
            sandbox.stop()
    results = bench.results
    results["machine"] = {**machine, "load_after": os.getloadavg()}
    results["seconds"] = time.monotonic() - started
    report.save_json(OUT / f"results-{profile.name}.json", results)
    print()
    print(report.console(results))
    target = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
    report.rewrite_markdown(target, results)
    print(f"\n{target.name} rewritten ({profile.name} section); raw results in {OUT}")


if __name__ == "__main__":
    main()
