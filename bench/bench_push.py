"""How fast the HubSpot target pushes, against the sandbox CRM in its own process.

1. Unthrottled: ``upsert_many`` of N contacts with every limit off, sync and async (the client and
   the sandbox are the bottleneck).
2. Throttled: the sandbox at HubSpot's Free/Starter limit (100 requests per 10 s, so at most
   100 x 100 / 10 s = 1,000 records/s), a push of at least the given duration; reports the share
   of the ceiling reached, 429 answers and failed records.

    python bench/bench_push.py            # 100,000 unthrottled; >= 2 minutes throttled
    python bench/bench_push.py --quick    # 20,000 unthrottled; >= 30 s throttled
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bulk_pipeline.config import SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.entities import Entity
from bulk_pipeline.sandbox.admin import SandboxAdmin
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.base import BatchResult
from bulk_pipeline.targets.hubspot.dialect import hubspot_budget

TOKEN = "bench-sandbox-token"
CEILING_MAX, CEILING_INTERVAL_MS = 100, 10_000
RECORDS_PER_REQUEST = 100
START_TIMEOUT_S = 30.0

Records = list[dict[str, str | None]]


@dataclass(frozen=True)
class Run:
    label: str
    records: int
    seconds: float
    successful: int
    failed: int
    requests: int
    rate_limited: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


def contacts(n: int, prefix: str) -> Records:
    stages = ("lead", "subscriber", "customer")
    return [
        {
            "email": f"{prefix}{i}@bench.example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i % 997}",
            "company": f"Company {i % 211}",
            "phone": f"+1 555 {i % 10_000:04d}",
            "city": "Springfield",
            "lifecycle_stage": stages[i % 3],
        }
        for i in range(n)
    ]


class SandboxProcess:
    """``python -m bulk_pipeline.sandbox`` on a free loopback port with a throwaway database."""

    def __init__(self, workdir: Path) -> None:
        env = {
            **os.environ,
            "BULK_PIPELINE_HOME": str(workdir / "home"),
            "BULK_PIPELINE_SANDBOX_TOKEN": TOKEN,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulk_pipeline.sandbox",
                "--port",
                "0",
                "--db",
                str(workdir / "crm.sqlite3"),
                "--rate-limit",
                "0",
            ],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.url = self._wait_for_url()
        self.admin = SandboxAdmin(self.url)

    def _wait_for_url(self) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError(f"sandbox exited with {self.process.wait()}")
            if "listening on " in line:
                return line.split("listening on ", 1)[1].split(";", 1)[0].strip()
        raise RuntimeError("sandbox did not start in time")

    def stop(self) -> None:
        self.admin.close()
        self.process.terminate()
        self.process.wait(timeout=10)


def measure(
    label: str, sandbox: SandboxProcess, records: Records, push: Callable[[Records], BatchResult]
) -> Run:
    n = len(records)
    started = time.monotonic()
    result = push(records)
    seconds = time.monotonic() - started
    requests = sandbox.admin.stats()["requests"]
    count = sandbox.admin.counts().get("contacts", 0)
    if count != n:
        print(f"  warning: {label}: sandbox holds {count} contacts, expected {n}", file=sys.stderr)
    return Run(
        label,
        n,
        seconds,
        len(result.successful),
        len(result.failed),
        requests["total"],
        requests["rate_limited"],
    )


def sandbox_settings(url: str) -> dict[str, str]:
    return {SANDBOX_URL_ENV: url, SANDBOX_TOKEN_ENV: TOKEN}


def push_sync(url: str, records: Records) -> BatchResult:
    """The sandbox target with a budget of its own (nothing learnt by an earlier run)."""
    target = open_target("sandbox", sandbox_settings(url), budget=hubspot_budget())
    try:
        return target.upsert(Entity.CONTACTS, records)
    finally:
        target.close()


def push_async(url: str, records: Records, concurrency: int) -> BatchResult:
    async def run() -> BatchResult:
        target = open_async_target(
            "sandbox", sandbox_settings(url), concurrency=concurrency, budget=hubspot_budget()
        )
        try:
            return await target.upsert(Entity.CONTACTS, records)
        finally:
            await target.aclose()

    return asyncio.run(run())


def print_table(unthrottled: list[Run], throttled: Run) -> None:
    header = f"{'run':<34}{'records':>9}{'seconds':>9}{'records/s':>11}{'requests':>10}"
    header += f"{'429 share':>11}{'failed':>8}"
    print()
    print(header)
    print("-" * len(header))
    for run in [*unthrottled, throttled]:
        share = run.rate_limited / run.requests if run.requests else 0.0
        print(
            f"{run.label:<34}{run.records:>9,}{run.seconds:>9.1f}{run.per_second:>11,.0f}"
            f"{run.requests:>10,}{share:>10.2%}{run.failed:>8,}"
        )
    ceiling = CEILING_MAX * RECORDS_PER_REQUEST / (CEILING_INTERVAL_MS / 1000)
    requests_needed = throttled.records / RECORDS_PER_REQUEST
    fastest = (requests_needed - CEILING_MAX) * CEILING_INTERVAL_MS / 1000 / CEILING_MAX
    print()
    print(
        f"throttled: {throttled.per_second:,.0f} records/s achieved of a {ceiling:,.0f} records/s "
        f"ceiling ({throttled.per_second / ceiling:.1%}; the first window's burst of "
        f"{CEILING_MAX} requests is included)"
    )
    print(
        f"throttled: {throttled.seconds:.1f} s for a push the limit allows in {fastest:.1f} s at "
        f"best ({fastest / throttled.seconds:.1%} of the possible pace)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20k unthrottled, >= 30 s throttled")
    parser.add_argument("--concurrency", type=int, default=4, help="async batches in flight")
    args = parser.parse_args(argv)
    unthrottled_n = 20_000 if args.quick else 100_000
    throttled_seconds = 30 if args.quick else 120
    ceiling = CEILING_MAX * RECORDS_PER_REQUEST * 1000 // CEILING_INTERVAL_MS
    throttled_n = (throttled_seconds + CEILING_INTERVAL_MS // 1000) * ceiling

    with tempfile.TemporaryDirectory(prefix="bench_push_") as tmp:
        sandbox = SandboxProcess(Path(tmp))
        try:
            print(f"sandbox at {sandbox.url}")
            unthrottled: list[Run] = []
            for label, push in (
                ("unthrottled, sync", lambda rs: push_sync(sandbox.url, rs)),
                (
                    f"unthrottled, async x{args.concurrency}",
                    lambda rs: push_async(sandbox.url, rs, args.concurrency),
                ),
            ):
                sandbox.admin.reset()
                print(f"{label}: upserting {unthrottled_n:,} contacts...")
                unthrottled.append(measure(label, sandbox, contacts(unthrottled_n, "u"), push))

            sandbox.admin.reset()
            sandbox.admin.configure(
                rate_limit={"max": CEILING_MAX, "interval_ms": CEILING_INTERVAL_MS}
            )
            label = f"100 req/10 s, async x{args.concurrency}"
            print(f"{label}: upserting {throttled_n:,} contacts (>= {throttled_seconds} s)...")
            throttled = measure(
                label,
                sandbox,
                contacts(throttled_n, "t"),
                lambda rs: push_async(sandbox.url, rs, args.concurrency),
            )
        finally:
            sandbox.stop()
    print_table(unthrottled, throttled)


if __name__ == "__main__":
    main()
