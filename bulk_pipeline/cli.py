"""The ``bulk-pipeline`` command: the same asset graph as the UI, recorded in the same instance."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from dagster import AssetCheckEvaluation
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import (
    DEFAULT_MAX_INVALID_RATIO,
    TARGETS,
    UnknownImportError,
    load_import,
    register_import,
)
from bulk_pipeline.instance import ensure_dagster_home, open_instance
from bulk_pipeline.progress import read_progress
from bulk_pipeline.reports.listing import format_report, format_status, recent_imports
from bulk_pipeline.staging import OnDuplicate

PROGRESS_POLL_SECONDS = 0.25
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

console = Console(stderr=True)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulk-pipeline",
        description="Bulk-load spreadsheets and exports into CRMs, every row accounted for.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    imp = commands.add_parser("import", help="import one file into a CRM")
    imp.add_argument("path", type=Path)
    imp.add_argument("--entity", choices=[e.value for e in Entity])
    imp.add_argument("--target", choices=TARGETS, default="sandbox")
    imp.add_argument(
        "--on-duplicate", choices=[o.value for o in OnDuplicate], default=OnDuplicate.SKIP.value
    )
    imp.add_argument("--mapping", type=Path, help="YAML file mapping your columns to our fields")
    imp.add_argument("--no-progress", action="store_true", help="no live progress bar")
    imp.add_argument(
        "--dry-run",
        action="store_true",
        help="look every record up in the CRM and report the plan; write nothing",
    )
    imp.add_argument(
        "--max-invalid-ratio",
        type=float,
        default=DEFAULT_MAX_INVALID_RATIO,
        help="block the push when more than this share of rows is invalid (default 0.2)",
    )
    imp.add_argument(
        "--max-create-share",
        type=float,
        help="block the push when more than this share of records would be new",
    )
    imp.add_argument(
        "--note", action="store_true", help="write the summary to the CRM as a note when done"
    )

    rollback = commands.add_parser("rollback", help="undo an import in its CRM")
    rollback.add_argument("import_id")

    sandbox = commands.add_parser("sandbox", help="serve the embedded sandbox CRM")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--host", default="127.0.0.1")

    report = commands.add_parser("report", help="an import's summary and HTML report")
    report.add_argument("import_id")

    status = commands.add_parser("status", help="recent imports and their outcome counts")
    status.add_argument("--limit", type=int, default=20)

    sync = commands.add_parser("sync", help="sync every source of sources.yaml for one day")
    sync.add_argument(
        "--date", type=date.fromisoformat, help="the day to sync (default: today, YYYY-MM-DD)"
    )

    retry = commands.add_parser(
        "retry-failed", help="re-run the import partitions and sync days whose last run failed"
    )
    retry.add_argument("--dry-run", action="store_true", help="list them; run nothing")

    dev = commands.add_parser("dev", help="the Dagster UI on the persistent instance")
    dev.add_argument("--port", type=int, default=3000)
    return parser


def _failure_message(result: Any) -> str:
    for event in result.all_events:
        data = event.event_specific_data
        if isinstance(data, AssetCheckEvaluation) and not data.passed:
            return f"stopped by the check {data.check_name}: {data.description}"
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return str(data.user_failure_data.description)
            if data.error is not None:
                return str(data.error.message).strip()
    return "the import run failed; see the run in the Dagster UI"


def _watch_progress(path: Path, stop: threading.Event) -> None:
    with Progress(
        TextColumn("[bold]pushing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} records/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("push", total=None, rate=0.0)
        while not stop.wait(PROGRESS_POLL_SECONDS):
            snapshot = read_progress(path)
            if snapshot is not None:
                bar.update(
                    task,
                    total=snapshot.total,
                    completed=snapshot.processed,
                    rate=snapshot.records_per_second,
                )


def _print_summary(summary: dict[str, Any]) -> None:
    out = Console()
    out.print(f"{summary['import_id']} -> {summary['target']} ({summary['entity']})")
    table = Table()
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for key in ("created", "updated", "unchanged", "duplicates", "invalid", "failed", "rows"):
        table.add_row(key, str(summary[key]))
    out.print(table)
    if summary["unmapped_columns"]:
        out.print("Columns not sent (no CRM field): " + ", ".join(summary["unmapped_columns"]))
    folder = Path(summary["rejected_csv"]).parent
    out.print(f"Report folder: {folder} (open {folder / 'report.html'} in a browser)")


def run_import(args: argparse.Namespace) -> int:
    import dagster as dg

    from bulk_pipeline.defs.assets import import_assets
    from bulk_pipeline.defs.partitions import imports_partitions
    from bulk_pipeline.defs.resources import default_resources
    from bulk_pipeline.runs import process_tags, recover_dead_runs

    ensure_dagster_home()
    try:
        request = register_import(
            args.path,
            entity=Entity(args.entity) if args.entity else None,
            target=args.target,
            on_duplicate=OnDuplicate(args.on_duplicate),
            mapping_path=args.mapping,
            max_invalid_ratio=args.max_invalid_ratio,
            max_create_share=args.max_create_share,
            note=args.note,
        )
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    instance = open_instance()
    recover_dead_runs(instance)
    partitions_name = imports_partitions.name or "imports"
    if not instance.has_dynamic_partition(partitions_name, request.import_id):
        instance.add_dynamic_partitions(partitions_name, [request.import_id])
    console.print(f"importing {args.path} as [bold]{request.import_id}[/bold]")

    from bulk_pipeline.import_steps import progress_path

    progress_file = progress_path(request.import_id)
    progress_file.unlink(missing_ok=True)
    stop = threading.Event()
    watcher = None
    if not args.no_progress:
        watcher = threading.Thread(target=_watch_progress, args=(progress_file, stop), daemon=True)
        watcher.start()
    try:
        result = dg.materialize(
            import_assets,
            partition_key=request.import_id,
            instance=instance,
            resources=default_resources(),
            raise_on_error=False,
            run_config=_run_config(dry_run=args.dry_run),
            tags=process_tags(),
        )
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    if not result.success:
        console.print(f"[red]import failed:[/red] {_failure_message(result)}")
        console.print(f"run id: {result.run_id} (see it with `make dev`)")
        return 1
    folder = config.reports_dir(request.import_id)
    if args.dry_run:
        _print_plan(json.loads((folder / "plan.json").read_text(encoding="utf-8")))
        return 0
    _print_summary(json.loads((folder / "summary.json").read_text(encoding="utf-8")))
    return 0


def _run_config(*, dry_run: bool) -> dict[str, Any]:
    return {**QUIET_RUN_CONFIG, "ops": {"crm_push": {"config": {"dry_run": dry_run}}}}


def _print_plan(plan: dict[str, Any]) -> None:
    out = Console()
    out.print(f"dry run of {plan['import_id']} -> {plan['target']}: nothing was written")
    table = Table()
    table.add_column("would")
    table.add_column("records", justify="right")
    for key in ("creates", "updates", "unchanged", "conflicts", "duplicates", "invalid"):
        table.add_row(key, str(plan[key]))
    out.print(table)
    for name, count in sorted(plan["changed_fields"].items()):
        out.print(f"  updates would change {name} on {count} records")
    out.print(f"Plan, record by record: {plan['plan_csv']}")


def run_rollback(args: argparse.Namespace) -> int:
    from bulk_pipeline.defs.assets import rollback_job
    from bulk_pipeline.defs.resources import default_resources
    from bulk_pipeline.runs import process_tags, recover_dead_runs

    ensure_dagster_home()
    try:
        load_import(args.import_id)
    except UnknownImportError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    with open_instance() as instance:
        recover_dead_runs(instance)
        result = rollback_job.execute_in_process(
            instance=instance,
            partition_key=args.import_id,
            resources=default_resources(),
            raise_on_error=False,
            run_config=QUIET_RUN_CONFIG,
            tags=process_tags(),
        )
    path = config.reports_dir(args.import_id) / "rollback.json"
    if path.exists():
        done = json.loads(path.read_text(encoding="utf-8"))
        Console().print(
            f"rollback of {args.import_id}: {done['archived']} records archived, "
            f"{done['restored']} restored to their previous values, "
            f"{done['already_rolled_back']} already rolled back before"
            + (f", {len(done['failed'])} failed" if done["failed"] else "")
        )
    if not result.success:
        console.print(f"[red]rollback failed:[/red] {_failure_message(result)}")
        return 1
    return 0


def run_sandbox(args: argparse.Namespace) -> int:
    from bulk_pipeline.sandbox.server import serve

    serve(args.port, args.host)
    return 0


def run_report(args: argparse.Namespace) -> int:
    try:
        print(format_report(args.import_id))
    except UnknownImportError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    print(format_status(recent_imports(limit=args.limit)))
    return 0


def run_sync(args: argparse.Namespace) -> int:
    """One day of the nightly sync, in this process, recorded like a scheduled run."""
    import dagster as dg

    from bulk_pipeline.defs.resources import default_resources
    from bulk_pipeline.defs.sync_assets import schedule_settings, sync_assets
    from bulk_pipeline.runs import process_tags, recover_dead_runs
    from bulk_pipeline.sources import SourceError, load_sources, sources_path

    try:
        sources = load_sources()
    except SourceError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if not sources:
        console.print(f"no sources in {sources_path()}; see data/sources.example.yaml")
        return 2
    day = args.date or schedule_settings.day_of(datetime.now(UTC))
    if day < schedule_settings.start:
        console.print(f"[red]error:[/red] syncs start on {schedule_settings.start}")
        return 2
    instance = open_instance()
    recover_dead_runs(instance)
    result = dg.materialize(
        sync_assets,
        partition_key=day.isoformat(),
        instance=instance,
        resources=default_resources(),
        raise_on_error=False,
        run_config=QUIET_RUN_CONFIG,
        tags=process_tags(),
    )
    _print_sync(day, [s.name for s in sources])
    if not result.success:
        console.print(f"[red]sync failed:[/red] {_failure_message(result)}")
        console.print(f"run id: {result.run_id} (see it with `make dev`)")
        return 1
    return 0


def _print_sync(day: date, names: list[str]) -> None:
    from bulk_pipeline.sync import SYNC_FILE, sync_import_id

    table = Table(title=f"nightly sync of {day}")
    columns = ("created", "updated", "unchanged", "invalid", "failed", "vanished", "archived")
    table.add_column("source")
    for column in columns:
        table.add_column(column, justify="right")
    for name in names:
        folder = config.data_home() / "reports" / sync_import_id(name, day)
        values: dict[str, Any] = {}
        for part in ("summary.json", SYNC_FILE):
            if (folder / part).is_file():
                values |= json.loads((folder / part).read_text(encoding="utf-8"))
        table.add_row(name, *(str(values.get(c, "-")) for c in columns))
    Console().print(table)
    print(f"Reports: {config.data_home() / 'reports'}/{sync_import_id('<source>', day)}/")


def run_retry_failed(args: argparse.Namespace) -> int:
    """Re-run the failed import partitions and sync days; what was written is not sent again."""
    from bulk_pipeline.backfill import failed_partitions, retry_partition
    from bulk_pipeline.runs import recover_dead_runs

    instance = open_instance()
    recover_dead_runs(instance)
    failed = failed_partitions(instance)
    if not failed:
        Console().print("nothing to retry: no import or sync day has a failed last run")
        return 0
    for item in failed:
        Console().print(f"{item.kind} {item.partition_key}: run {item.run_id} failed: {item.error}")
    if args.dry_run:
        return 0
    succeeded = 0
    for item in failed:
        retried = retry_partition(instance, item, run_config=QUIET_RUN_CONFIG)
        if retried.succeeded:
            succeeded += 1
            Console().print(f"{item.kind} {item.partition_key}: done (run {retried.run_id})")
        else:
            console.print(
                f"[red]{item.kind} {item.partition_key} failed again:[/red] {retried.error} "
                f"(run {retried.run_id})"
            )
    Console().print(f"{succeeded} of {len(failed)} re-runs succeeded")
    return 0 if succeeded == len(failed) else 1


def run_dev(args: argparse.Namespace) -> int:
    home = ensure_dagster_home()
    open_instance().dispose()
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    command = [sys.executable, "-m", "dagster", "dev", "-p", str(args.port)]
    if workspace.exists():
        command += ["-w", str(workspace)]
    else:
        command += ["-m", "bulk_pipeline.definitions"]
    console.print(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={home})")
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handlers = {
        "import": run_import,
        "rollback": run_rollback,
        "sandbox": run_sandbox,
        "report": run_report,
        "status": run_status,
        "sync": run_sync,
        "retry-failed": run_retry_failed,
        "dev": run_dev,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
