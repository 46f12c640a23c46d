"""``python -m bulk_pipeline.sandbox``: run the sandbox CRM in the foreground."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from bulk_pipeline.sandbox.config import RATE_LIMIT_ENV, SandboxConfig
from bulk_pipeline.sandbox.pipedrive.settings import DEFAULT_PLAN, DEFAULT_SEATS, PLANS
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bulk_pipeline.sandbox",
        description="A local CRM that speaks HubSpot's CRM v3/v4, Pipedrive's API v2/v1 and "
        "Attio's REST API v2.",
    )
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", type=Path, help="SQLite file (default: under the data home)")
    parser.add_argument(
        "--rate-limit",
        metavar="MAX/INTERVAL_MS",
        help=f"e.g. 100/10000 (HubSpot's default); 0 turns every limit off. Env: {RATE_LIMIT_ENV}",
    )
    parser.add_argument("--search-rate-limit", metavar="MAX/INTERVAL_MS", help="default 4/1000")
    parser.add_argument("--daily-limit", type=int, help="requests per UTC day; 0 for none")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 5xx")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction done, then cut")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added per call")
    parser.add_argument("--seed", type=int, help="seed of the fault-injection RNG")
    hubspot = parser.add_argument_group("HubSpot dialect")
    hubspot.add_argument(
        "--hubspot-pipelines",
        type=Path,
        metavar="FILE",
        help='JSON list of extra deal pipelines: [{"id", "label", "stages": [{"id", "label", '
        '"probability", "closed"}]}]',
    )
    pipedrive = parser.add_argument_group("Pipedrive dialect")
    pipedrive.add_argument(
        "--pipedrive-plan",
        choices=tuple(PLANS),
        help=f"budget and burst limits of a plan (default {DEFAULT_PLAN})",
    )
    pipedrive.add_argument(
        "--pipedrive-seats", type=int, help=f"seats the budget counts (default {DEFAULT_SEATS})"
    )
    pipedrive.add_argument(
        "--pipedrive-daily-budget", type=int, help="tokens per UTC day; 0 for no budget"
    )
    pipedrive.add_argument(
        "--pipedrive-search-lag", type=float, metavar="SECONDS", help="search index lag"
    )
    attio = parser.add_argument_group("Attio dialect")
    attio.add_argument(
        "--attio-read-limit", metavar="MAX/INTERVAL_MS", help="default 100/1000; 0 for none"
    )
    attio.add_argument(
        "--attio-write-limit", metavar="MAX/INTERVAL_MS", help="default 25/1000; 0 for none"
    )
    args = parser.parse_args(argv)

    try:
        config = _config(args)
    except ValueError as problem:
        parser.error(str(problem))
    serve(args.port, args.host, db_path=args.db, config=config)


def _config(args: argparse.Namespace) -> SandboxConfig:
    """The environment's configuration, changed by the flags given."""
    config = SandboxConfig.from_env()
    if args.rate_limit is not None:
        config = config.with_rate_limit(args.rate_limit)
    if args.search_rate_limit is not None:
        config = replace(config, search_rate_limit=RateLimit.parse(args.search_rate_limit))
    if args.daily_limit is not None:
        config = replace(config, daily_limit=args.daily_limit or None)
    if args.hubspot_pipelines is not None:
        config = config.changed({"deal_pipelines": _json_file(args.hubspot_pipelines)})
    pipedrive: dict[str, object] = {}
    if args.pipedrive_plan is not None or args.pipedrive_seats is not None:
        pipedrive["plan"] = args.pipedrive_plan or DEFAULT_PLAN
        pipedrive["seats"] = args.pipedrive_seats or DEFAULT_SEATS
    if args.pipedrive_daily_budget is not None:
        pipedrive["daily_budget"] = args.pipedrive_daily_budget
    if args.pipedrive_search_lag is not None:
        pipedrive["search_lag_s"] = args.pipedrive_search_lag
    attio: dict[str, object] = {}
    if args.attio_read_limit is not None:
        attio["read_limit"] = args.attio_read_limit
    if args.attio_write_limit is not None:
        attio["write_limit"] = args.attio_write_limit
    return config.changed(
        {
            "error_rate": args.error_rate,
            "drop_rate": args.drop_rate,
            "latency_ms": args.latency_ms,
            "seed": args.seed,
            "pipedrive": pipedrive,
            "attio": attio,
        }
    )


def _json_file(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as problem:
        raise ValueError(f"cannot read {path}: {problem}") from None


if __name__ == "__main__":
    main()
