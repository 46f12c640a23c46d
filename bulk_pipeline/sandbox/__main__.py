"""``python -m bulk_pipeline.sandbox``: run the sandbox CRM in the foreground."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bulk_pipeline.sandbox.config import RATE_LIMIT_ENV, SandboxConfig
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bulk_pipeline.sandbox",
        description="A local CRM that speaks HubSpot's CRM v3 objects API.",
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
    return config.changed(
        {
            "error_rate": args.error_rate,
            "drop_rate": args.drop_rate,
            "latency_ms": args.latency_ms,
            "seed": args.seed,
        }
    )


if __name__ == "__main__":
    main()
