"""The scale story in numbers: pushes at once into many CRM accounts, one PostgreSQL deployment.

    python -m bench.scale          # make bench-scale: a few minutes; needs Debian's postgresql

The push is bound by each CRM account's rate limit, so a deployment's throughput grows with the
number of accounts it writes to, until the machine runs out. Measured here, on a throwaway
PostgreSQL server (staging, the Dagster instance and the shared windows) and sandbox CRMs in
their own processes, one per account, each limited to ``LIMIT`` (HubSpot Free/Starter's average
of 10 requests per second, in a 1 s window so that no start-of-window burst flatters a short
run):

1. Accounts: K = 1, 2, 4 ``bulk-pipeline import`` processes at once, one per account.
2. One account: 4 imports at once into a single account, which must share its limit.
3. The daemon: 8 files in the inbox when it starts; its queued run coordinator launches them as
   runs (8 at once); from the daemon's start to the last run's end. Runs, partitions and
   records per day are this burst's rate extrapolated to 24 hours, on this machine.

Every figure is this machine's (2 shared cores): the sandboxes, the imports, PostgreSQL and the
daemon all compete for them. Results go to the console and to BENCHMARKS.md's scale section.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from bench import report
from bench.bench_push import TOKEN, SandboxProcess
from bulk_pipeline import config, inbox
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline_tests.postgres import PostgresServer

CHECKOUT = Path(__file__).resolve().parents[1]
BENCHMARKS = CHECKOUT / "BENCHMARKS.md"
LIMIT = RateLimit(max_requests=10, interval_ms=1_000)
CEILING_PER_ACCOUNT = 10 * 100
"""Records per second one account allows: 10 requests of 100 records each."""
CONTACTS_PER_IMPORT = 10_000
ACCOUNTS = (1, 2, 4)
SHARED_IMPORTS = 4
DAEMON_IMPORTS = 8
DAEMON_CONTACTS = 5_000
TIMEOUT_S = 900
START, END = "<!-- bench:scale:start -->", "<!-- bench:scale:end -->"


def contacts_file(path: Path, prefix: str, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "Email": [f"{prefix}-{i:06d}@scale.example.com" for i in range(rows)],
            "First Name": [f"First{i}" for i in range(rows)],
            "Company": [f"Company {i % 211}" for i in range(rows)],
        }
    ).write_csv(path)
    return path


def _push_window(home: Path) -> tuple[float, float]:
    """The earliest push start and the latest push end of the imports under ``home``."""
    starts, ends = [], []
    for summary in (home / "reports").glob("*/summary.json"):
        push = json.loads(summary.read_text(encoding="utf-8"))["timings"]["push"]
        starts.append(datetime.fromisoformat(push["started_at"]).timestamp())
        ends.append(datetime.fromisoformat(push["finished_at"]).timestamp())
    return min(starts), max(ends)


def _limited_sandbox(workdir: Path) -> SandboxProcess:
    sandbox = SandboxProcess(workdir)
    sandbox.admin.configure(rate_limit=LIMIT, search_rate_limit=None, daily_limit=None)
    return sandbox


def parallel_imports(
    server: PostgresServer, workdir: Path, accounts: int, imports: int
) -> dict[str, Any]:
    """``imports`` import processes at once, spread over ``accounts`` sandbox accounts."""
    database = server.new_database()
    home = workdir / "home"
    sandboxes = [_limited_sandbox(workdir / f"crm{a}") for a in range(accounts)]
    try:
        processes = []
        started = time.monotonic()
        for n in range(imports):
            sandbox = sandboxes[n % accounts]
            path = contacts_file(
                workdir / f"in/import{n}.csv", f"k{accounts}-{n}", CONTACTS_PER_IMPORT
            )
            env = {
                **os.environ,
                config.HOME_ENV: str(home),
                config.DATABASE_URL_ENV: database,
                config.SANDBOX_URL_ENV: sandbox.url,
                config.SANDBOX_TOKEN_ENV: TOKEN,
            }
            env.pop("DAGSTER_HOME", None)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bulk_pipeline.cli",
                        "import",
                        str(path),
                        "--no-progress",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        errors = [p.communicate(timeout=TIMEOUT_S)[1] for p in processes]
        wall = time.monotonic() - started
        failed = [
            e.strip().splitlines()[-1:]
            for p, e in zip(processes, errors, strict=True)
            if p.returncode
        ]
        stats = [s.admin.stats()["requests"] for s in sandboxes]
        written = sum(s.admin.counts()["contacts"] for s in sandboxes)
    finally:
        for sandbox in sandboxes:
            sandbox.stop()
    first, last = _push_window(home)
    requests = sum(s["total"] for s in stats)
    return {
        "accounts": accounts,
        "imports": imports,
        "records": written,
        "expected": imports * CONTACTS_PER_IMPORT,
        "failed_processes": failed,
        "wall_s": wall,
        "push_s": last - first,
        "requests": requests,
        "rate_limited": sum(s["rate_limited"] for s in stats),
    }


def daemon_burst(server: PostgresServer, workdir: Path) -> dict[str, Any]:
    """Files waiting in the inbox when the daemon starts; from its start (its own start-up
    included) to the last run's end."""
    database = server.new_database()
    home = workdir / "home"
    sandbox = SandboxProcess(workdir / "crm")
    env = {
        **os.environ,
        config.HOME_ENV: str(home),
        config.DATABASE_URL_ENV: database,
        config.SANDBOX_URL_ENV: sandbox.url,
        config.SANDBOX_TOKEN_ENV: TOKEN,
        inbox.SETTLE_SECONDS_ENV: "0",
        "DAGSTER_HOME": str(home / "dagster"),
    }
    prepare = "from bulk_pipeline.instance import open_instance; open_instance().dispose()"
    subprocess.run([sys.executable, "-c", prepare], env=env, check=True)
    for n in range(DAEMON_IMPORTS):
        contacts_file(home / inbox.INBOX_DIR / f"burst{n}.csv", f"burst{n}", DAEMON_CONTACTS)
    log = (workdir / "daemon.log").open("w")
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"],
        cwd=CHECKOUT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        statuses = _wait_for_runs(env, DAEMON_IMPORTS, daemon)
        wall = time.monotonic() - started
        written = sandbox.admin.counts()["contacts"]
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)
        log.close()
        sandbox.stop()
    return {
        "imports": DAEMON_IMPORTS,
        "records": written,
        "expected": DAEMON_IMPORTS * DAEMON_CONTACTS,
        "statuses": statuses,
        "wall_s": wall,
    }


def _wait_for_runs(env: dict[str, str], count: int, daemon: subprocess.Popen[bytes]) -> list[str]:
    probe = (
        "import json, dagster as dg\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    print(json.dumps([r.status.value for r in instance.get_runs()]))\n"
    )
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError("the daemon exited")
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        statuses: list[str] = json.loads(done.stdout)
        if len(statuses) == count and all(
            s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses
        ):
            return statuses
        time.sleep(2)
    raise RuntimeError("the runs did not finish in time")


def tables(results: dict[str, Any]) -> list[report.Table]:
    accounts = report.Table(
        "Push throughput by number of CRM accounts (one import per account, all at once)",
        [
            "accounts",
            "imports",
            "records",
            "push s",
            "records/s",
            "x one account",
            "vs ceiling",
            "429",
            "wall s",
        ],
    )
    base = None
    for run in results["accounts"]:
        rate = run["records"] / run["push_s"] if run["push_s"] else 0.0
        base = base or rate
        accounts.rows.append(
            [
                str(run["accounts"]),
                str(run["imports"]),
                f"{run['records']:,} of {run['expected']:,}",
                report._s(run["push_s"]),
                report._n(rate),
                f"{rate / base:.2f}" if base else "-",
                f"{rate / (CEILING_PER_ACCOUNT * run['accounts']):.2f}",
                f"{run['rate_limited']} of {run['requests']}",
                report._s(run["wall_s"]),
            ]
        )
    shared = results["one_account"]
    rate = shared["records"] / shared["push_s"] if shared["push_s"] else 0.0
    accounts.rows.append(
        [
            "1 (shared)",
            str(shared["imports"]),
            f"{shared['records']:,} of {shared['expected']:,}",
            report._s(shared["push_s"]),
            report._n(rate),
            f"{rate / base:.2f}" if base else "-",
            f"{rate / CEILING_PER_ACCOUNT:.2f}",
            f"{shared['rate_limited']} of {shared['requests']}",
            report._s(shared["wall_s"]),
        ]
    )
    accounts.notes = [
        f"Each account is a sandbox CRM in its own process limited to {LIMIT.max_requests} "
        f"requests per {LIMIT.interval_ms / 1000:g} s, HubSpot Free/Starter's average rate; "
        f"the ceiling is {CEILING_PER_ACCOUNT:,} records/s per account (100 records per "
        "request). Each import is a `bulk-pipeline import` process of "
        f"{CONTACTS_PER_IMPORT:,} new contacts; staging, the Dagster instance and the shared "
        "windows are in one PostgreSQL server. 'push s' runs from the first push's start to the "
        "last push's end (summary.json, whole seconds); 'wall s' from launching the processes "
        "to their exit. The last row runs 4 imports into one account: they share its limit."
    ]
    burst = results["daemon"]
    per_day = 86_400 / burst["wall_s"] if burst["wall_s"] else 0.0
    daemon = report.Table(
        "One deployment's capacity: a burst of inbox imports run by the daemon",
        [
            "imports",
            "records",
            "runs ok",
            "daemon start to last run's end s",
            "runs/day",
            "records/day",
        ],
        [
            [
                str(burst["imports"]),
                f"{burst['records']:,} of {burst['expected']:,}",
                f"{burst['statuses'].count('SUCCESS')} of {len(burst['statuses'])}",
                report._s(burst["wall_s"]),
                report._n(burst["imports"] * per_day),
                report._n(burst["records"] * per_day),
            ]
        ],
        [
            f"{DAEMON_IMPORTS} files of {DAEMON_CONTACTS:,} contacts in the inbox when the "
            "daemon starts (its start-up counted); its inbox sensor registers them (one "
            "dynamic partition each), its queued run coordinator launches 8 runs at once, each "
            "run a process with a process per step (Dagster's default executor), into one "
            "sandbox account without a rate limit. Per day: this burst's rate extrapolated to "
            "24 hours on this 2-core machine, where Dagster's per-run processes, not the CRM, "
            "set the pace; on a cluster each run is a pod and each account's limit is the bound "
            "(table above)."
        ],
    )
    return [accounts, daemon]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["load_before"])
    after = ", ".join(f"{x:.2f}" for x in m["load_after"])
    lines = [
        "## Scale: many accounts at once (`make bench-scale`)",
        "",
        f"- command: `make bench-scale` (`python -m bench.scale`), "
        f"{results['seconds'] / 60:.1f} minutes",
        f"- date: {m['date']}",
        f"- machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}",
        f"- load average (1, 5, 15 min): {load} before, {after} after",
    ]
    for table in tables(results):
        lines += ["", f"### {table.title}", ""]
        lines.append("| " + " | ".join(table.headers) + " |")
        lines.append("|" + "---|" * len(table.headers))
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        lines += ["", *table.notes]
    return "\n".join(lines)


def rewrite(results: dict[str, Any]) -> None:
    text = BENCHMARKS.read_text(encoding="utf-8")
    block = f"{START}\n{markdown(results)}\n{END}"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    BENCHMARKS.write_text(text, encoding="utf-8")


def main() -> None:
    started = time.monotonic()
    results: dict[str, Any] = {"machine": report.machine()}
    server = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bulk_pipeline_scale_") as scratch:
            work = Path(scratch)
            results["accounts"] = []
            for accounts in ACCOUNTS:
                print(f"- {accounts} account(s), one import each...", flush=True)
                run = parallel_imports(server, work / f"k{accounts}", accounts, accounts)
                results["accounts"].append(run)
            print(f"- {SHARED_IMPORTS} imports into one account...", flush=True)
            results["one_account"] = parallel_imports(server, work / "shared", 1, SHARED_IMPORTS)
            print(f"- the daemon: {DAEMON_IMPORTS} inbox imports at once...", flush=True)
            results["daemon"] = daemon_burst(server, work / "daemon")
    finally:
        server.stop()
    results["machine"]["load_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - started
    out = CHECKOUT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "scale.json", results)
    for table in tables(results):
        print(table.title, *report._aligned(table), sep="\n")
    rewrite(results)


if __name__ == "__main__":
    main()
