"""The ``bulk-pipeline`` command: the code location's own jobs, recorded in the same instance.

What a person sees is kept short and true: one progress display for every phase, the summary,
and on failure a few lines naming the file as they typed it, what to do, and where the full log
is. Dagster's records go to that log file (``--verbose`` prints them as well).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bulk_pipeline import config
from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import BulkPipelineError, UserInputError
from bulk_pipeline.imports import (
    DEFAULT_MAX_INVALID_RATIO,
    ImportRequest,
    UnknownImportError,
    load_import,
    register_import,
)
from bulk_pipeline.instance import ensure_dagster_home, open_instance
from bulk_pipeline.outcomes import OnDuplicate
from bulk_pipeline.redaction import redact
from bulk_pipeline.targets.base import DeleteKind
from bulk_pipeline.targets.registry import DEFAULT_TARGET, TARGET_NAMES, entry, open_target

if TYPE_CHECKING:
    from bulk_pipeline.command_runs import CommandRun

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells report for a command stopped with Ctrl-C."""
EXIT_BUDGET_SPENT = 75
"""EX_TEMPFAIL: stopped until the CRM's budget resets; running again then resumes."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulk-pipeline",
        description="Bulk-load spreadsheets and exports into CRMs, every row accounted for.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    imp = commands.add_parser("import", help="import one file into a CRM")
    imp.add_argument("path", type=Path)
    imp.add_argument("--entity", choices=[e.value for e in Entity])
    imp.add_argument("--sheet", help="the workbook sheet to import (default: picked by its name)")
    imp.add_argument("--target", choices=TARGET_NAMES, default=DEFAULT_TARGET)
    imp.add_argument(
        "--on-duplicate", choices=[o.value for o in OnDuplicate], default=OnDuplicate.SKIP.value
    )
    imp.add_argument("--mapping", type=Path, help="YAML file mapping your columns to our fields")
    imp.add_argument("--no-progress", action="store_true", help="show no progress while working")
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
    imp.add_argument(
        "--list",
        metavar="NAME",
        dest="list_name",
        help="add every imported record to this list of the CRM (once, however often you run it)",
    )
    imp.add_argument(
        "--create-list", action="store_true", help="create the --list when the CRM has none"
    )
    _verbose(imp)

    rollback = commands.add_parser("rollback", help="undo an import in its CRM")
    rollback.add_argument("import_id")
    rollback.add_argument(
        "--dry-run", action="store_true", help="show what the rollback would do; change nothing"
    )
    rollback.add_argument(
        "--force",
        action="store_true",
        help="also undo fields and records that changed in the CRM since the import",
    )
    rollback.add_argument(
        "--yes",
        action="store_true",
        help="confirm deleting records for good, where the CRM has no archive or trash",
    )
    _verbose(rollback)

    sandbox = commands.add_parser(
        "sandbox", help="serve the embedded sandbox CRM (`sandbox stop` stops a running one)"
    )
    sandbox.add_argument("action", nargs="?", choices=["serve", "stop"], default="serve")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--host", default="127.0.0.1")

    report = commands.add_parser("report", help="an import's state, summary and HTML report")
    report.add_argument("import_id")

    status = commands.add_parser("status", help="recent imports: their state and outcome counts")
    status.add_argument("--limit", type=int, default=20)

    sync = commands.add_parser("sync", help="sync every source of sources.yaml for one day")
    sync.add_argument(
        "--date", type=date.fromisoformat, help="the day to sync (default: today, YYYY-MM-DD)"
    )
    sync.add_argument(
        "--again",
        action="store_true",
        help="read and sync again the sources that already finished the day",
    )
    _verbose(sync)

    retry = commands.add_parser(
        "retry-failed", help="re-run the import partitions and sync days whose last run failed"
    )
    retry.add_argument("--dry-run", action="store_true", help="list them; run nothing")

    dev = commands.add_parser("dev", help="the Dagster UI on the persistent instance")
    dev.add_argument("--port", type=int, default=3000)
    return parser


def _verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="also print Dagster's log records as they happen"
    )


def _say(text: str) -> None:
    """A line for the person, on stdout (results) ..."""
    print(text, flush=True)


def _tell(text: str) -> None:
    """... or on stderr (what is going on, what went wrong)."""
    print(text, file=sys.stderr, flush=True)


def _data_home_line() -> str:
    return f"data home: {config.data_home()} ({config.data_home_origin()})"


def run_import(args: argparse.Namespace) -> int:
    from bulk_pipeline import command_runs
    from bulk_pipeline.import_steps import progress_path

    ensure_dagster_home()
    try:
        with _announcing_background_sandbox(args.target):
            preflight(args.target, list_name=args.list_name)
        request = register_import(
            args.path,
            entity=Entity(args.entity) if args.entity else None,
            target=args.target,
            on_duplicate=OnDuplicate(args.on_duplicate),
            mapping_path=args.mapping,
            max_invalid_ratio=args.max_invalid_ratio,
            max_create_share=args.max_create_share,
            note=args.note,
            list_name=args.list_name,
            create_list=args.create_list,
            sheet=args.sheet,
        )
    except BulkPipelineError as exc:
        _tell(f"error: {redact(str(exc))}")
        return EXIT_USAGE
    _add_partition(request.import_id)
    _tell(f"importing {args.path} as {request.import_id} into {request.target}")
    _tell(_data_home_line())
    progress_file = progress_path(request.import_id)
    progress_file.unlink(missing_ok=True)
    with _announcing_background_sandbox(request.target):
        run = _run_with_progress(
            progress_file,
            show=not args.no_progress,
            verbose=args.verbose,
            job_name="import_job",
            partition_key=request.import_id,
            tags=command_runs.import_tags(request),
            run_config={"ops": {"crm_push": {"config": {"dry_run": args.dry_run}}}},
        )
    if not run.success:
        return _report_failure(f"import of {args.path}", run)
    folder = config.reports_dir(request.import_id)
    if args.dry_run:
        _print_plan(json.loads((folder / "plan.json").read_text(encoding="utf-8")))
        return 0
    _print_summary(request, json.loads((folder / "summary.json").read_text(encoding="utf-8")))
    return 0


def preflight(target: str, *, list_name: str | None = None) -> None:
    """The target's credentials are present and accepted and the CRM answers (one cheap
    call), and it can do what the options ask (lists), before any file is read."""
    opened = open_target(target)
    try:
        opened.check()
        if list_name and not opened.capabilities.lists:
            raise UserInputError(
                f"the {target} target has no lists to add records to; import without --list"
            )
    finally:
        opened.close()


def _add_partition(import_id: str) -> None:
    from bulk_pipeline.defs.partitions import imports_partitions

    with open_instance() as instance:
        name = imports_partitions.name or "imports"
        if not instance.has_dynamic_partition(name, import_id):
            instance.add_dynamic_partitions(name, [import_id])


def _run_with_progress(
    progress_file: Path | None, *, show: bool, verbose: bool, **job: Any
) -> CommandRun:
    """Run a job, showing its progress on the terminal (live) or as plain lines."""
    from bulk_pipeline import command_runs
    from bulk_pipeline.terminal import ProgressDisplay, terminal_stream

    with ExitStack() as stack:
        if show and progress_file is not None:
            stream = stack.enter_context(terminal_stream())
            live = stream.isatty() and not verbose
            stack.enter_context(ProgressDisplay(progress_file, stream, live=live))
        return command_runs.run_job(verbose=verbose, **job)


def _report_failure(what: str, run: CommandRun) -> int:
    from bulk_pipeline.terminal import error_block, stopped_block

    if run.stopped:
        _tell(stopped_block(what, run.error, run_id=run.run_id, step=run.failed_step))
        return EXIT_BUDGET_SPENT if run.resume_at is not None else EXIT_INTERRUPTED
    _tell(
        error_block(what, run.error, run_id=run.run_id, log_path=run.log_path, step=run.failed_step)
    )
    return EXIT_FAILED


@contextmanager
def _announcing_background_sandbox(target: str) -> Iterator[None]:
    """Say so when the command leaves a sandbox CRM running in the background."""
    if not entry(target).sandbox or os.environ.get(config.SANDBOX_URL_ENV):
        yield
        return
    from bulk_pipeline.sandbox.launcher import LOG_FILE, running_server, sandbox_dir

    before = running_server()
    try:
        yield
    finally:
        server = running_server()
        if server is not None and (before is None or server.pid != before.pid):
            _tell(
                f"A sandbox CRM now runs in the background on {server.url} (process "
                f"{server.pid}, log {sandbox_dir() / LOG_FILE}); later imports reuse it. "
                "Stop it with: bulk-pipeline sandbox stop"
            )


def _print_summary(request: ImportRequest, summary: dict[str, Any]) -> None:
    out = Console()
    out.print(
        f"{summary['import_id']}: {request.source} -> {summary['target']} ({summary['entity']})",
        markup=False,
        highlight=False,
    )
    entities: dict[str, dict[str, Any]] = summary.get("entities") or {}
    table = Table()
    table.add_column("outcome")
    if len(entities) > 1:
        for entity in entities:
            table.add_column(entity, justify="right")
        for key in ("created", "updated", "unchanged", "duplicates", "invalid", "failed", "rows"):
            table.add_row(key, *(f"{counts[key]:,}" for counts in entities.values()))
    else:
        table.add_column("rows", justify="right")
        for key in ("created", "updated", "unchanged", "duplicates", "invalid", "failed", "rows"):
            table.add_row(key, f"{summary[key]:,}")
    out.print(table)
    links = summary.get("links") or {}
    if links.get("made") or links.get("found"):
        _say(
            f"Links: {links['made']:,} made, {links['found']:,} already in the CRM "
            "(left as they were)."
        )
    from bulk_pipeline.reports.listing import summary_notes

    for line in summary_notes(summary):
        _say(line)
    folder = Path(summary["rejected_csv"]).parent
    _say(f"Report: {folder / 'report.html'}")


def _print_plan(plan: dict[str, Any]) -> None:
    out = Console()
    out.print(
        f"dry run of {plan['import_id']} -> {plan['target']}: nothing was written",
        markup=False,
        highlight=False,
    )
    entities: dict[str, dict[str, int]] = plan.get("entities") or {}
    table = Table()
    table.add_column("would")
    if len(entities) > 1:
        for entity in entities:
            table.add_column(entity, justify="right")
        for key in ("creates", "updates", "unchanged", "conflicts", "rejected", "links"):
            table.add_row(key, *(f"{counts[key]:,}" for counts in entities.values()))
        out.print(table)
        _say(f"Not sent: {plan['duplicates']:,} duplicate and {plan['invalid']:,} invalid lines.")
    else:
        table.add_column("records", justify="right")
        for key in ("creates", "updates", "unchanged", "conflicts", "duplicates", "invalid"):
            table.add_row(key, f"{plan[key]:,}")
        for key in ("rejected", "links"):
            if plan.get(key):
                table.add_row(key, f"{plan[key]:,}")
        out.print(table)
    for name, count in sorted(plan["changed_fields"].items()):
        _say(f"  updates would change {name} on {count} records")
    cost = plan.get("cost")
    if cost:
        fits = {True: "fits", False: "does NOT fit", None: "cannot be checked against"}[
            plan.get("fits_budget")
        ]
        _say(
            f"The push would cost about {cost['units']:,} {cost['unit']} ({cost['requests']:,} "
            f"calls); that {fits} what the CRM's budget has left today."
        )
    for line in plan.get("budget") or []:
        _say(f"  {line}")
    _say(f"Plan, record by record: {plan['plan_csv']}")


def run_rollback(args: argparse.Namespace) -> int:
    """Undo an import. Where the CRM deletes for good, a rollback on a terminal shows its dry run
    and asks before deleting; scripts confirm with ``--yes`` (without it, nothing is deleted)."""
    ensure_dagster_home()
    try:
        request = load_import(args.import_id)
        permanent = not (args.yes or args.dry_run) and _deletes_for_good(request.target)
    except BulkPipelineError as exc:
        _tell(f"error: {redact(str(exc))}")
        return EXIT_USAGE
    confirmed = args.yes
    if permanent and sys.stdin.isatty():
        if _rollback(args, request, dry_run=True, confirmed=False, asking=True) != 0:
            return EXIT_FAILED
        if not _confirm(
            f"{request.target} deletes records for good. Delete the records this import "
            "created? [y/N]"
        ):
            _tell("nothing was changed")
            return EXIT_FAILED
        confirmed = True
    return _rollback(args, request, dry_run=args.dry_run, confirmed=confirmed)


def _confirm(question: str) -> bool:
    """Ask the person at the terminal; only a typed yes counts."""
    print(question, end=" ", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _deletes_for_good(target: str) -> bool:
    opened = open_target(target)
    try:
        return opened.capabilities.delete is DeleteKind.PERMANENT
    finally:
        opened.close()


def _rollback(
    args: argparse.Namespace,
    request: ImportRequest,
    *,
    dry_run: bool,
    confirmed: bool,
    asking: bool = False,
) -> int:
    from bulk_pipeline import command_runs

    run = command_runs.run_job(
        "rollback_job",
        partition_key=args.import_id,
        tags=command_runs.import_tags(request),
        verbose=args.verbose,
        run_config={
            "ops": {
                "rollback_import": {
                    "config": {
                        "force": args.force,
                        "dry_run": dry_run,
                        "confirm_permanent_delete": confirmed,
                    }
                }
            }
        },
    )
    _print_rollback(args.import_id, dry_run=dry_run, asking=asking)
    if not run.success:
        return _report_failure(f"rollback of {args.import_id}", run)
    return 0


def _print_rollback(import_id: str, *, dry_run: bool, asking: bool = False) -> None:
    from bulk_pipeline.import_steps import ROLLBACK_FILE, ROLLBACK_PLAN_FILE

    path = config.reports_dir(import_id) / (ROLLBACK_PLAN_FILE if dry_run else ROLLBACK_FILE)
    if not path.exists():
        return
    done = json.loads(path.read_text(encoding="utf-8"))
    would = "would be " if dry_run else ""
    _say(
        f"{'dry run of the ' if dry_run else ''}rollback of {import_id}: "
        f"{done['removed']} records {would}removed "
        f"({_removal(done['delete'], done.get('restorable_days'))}), "
        f"{done['restored']} {would}restored to previous values, "
        + (f"{done['unlinked']} links {would}removed, " if done.get("unlinked") else "")
        + f"{done['already_rolled_back']} already rolled back before"
        + (f", {len(done['failed'])} failed" if done["failed"] else "")
        + ("; nothing was changed" if dry_run else "")
    )
    if dry_run and done["delete"] == "permanent" and done["removed"] and not asking:
        _say(
            f"This CRM deletes records for good: the {done['removed']} records cannot be "
            f"restored after the rollback. Confirm with `bulk-pipeline rollback {import_id} "
            "--yes`."
        )
    conflicts = done["conflicts"]
    if conflicts:
        _say(
            f"{len(conflicts)} left in place because they changed in the CRM since the import "
            "(rerun with --force to undo them anyway):"
        )
        for line in conflicts[:20]:
            _say(f"  {line}")
        if len(conflicts) > 20:
            _say(f"  ... and {len(conflicts) - 20} more")


def _removal(kind: str, days: int | None) -> str:
    """What removing means in the CRM, for people."""
    if kind == "trash":
        return "moved to the CRM's trash" + (
            f", where they can be restored for {days} days" if days else ""
        )
    if kind == "archive":
        return "archived in the CRM, where they can be restored"
    return "deleted for good"


def run_sandbox(args: argparse.Namespace) -> int:
    from bulk_pipeline.sandbox.launcher import SandboxStopError, stop_server

    if args.action == "stop":
        try:
            stopped = stop_server()
        except SandboxStopError as exc:
            _tell(f"error: {exc}")
            return EXIT_FAILED
        if stopped is None:
            _say(f"no sandbox CRM is running for {config.data_home()}")
        else:
            _say(f"stopped the sandbox CRM on {stopped.url} (process {stopped.pid})")
        return 0
    from bulk_pipeline.sandbox.server import serve

    serve(args.port, args.host)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from bulk_pipeline.reports.listing import format_report
    from bulk_pipeline.runs import recover_dead_runs

    with open_instance() as instance:
        recover_dead_runs(instance)
        try:
            text = format_report(args.import_id, instance)
        except UnknownImportError as exc:
            _tell(f"error: {exc}")
            return EXIT_FAILED
    _say(text)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from bulk_pipeline.reports.listing import format_status, recent_imports
    from bulk_pipeline.runs import recover_dead_runs

    _say(_data_home_line())
    with open_instance() as instance:
        recover_dead_runs(instance)
        _say(format_status(recent_imports(args.limit, instance)))
    return 0


def run_sync(args: argparse.Namespace) -> int:
    """One day of the nightly sync, in this process, recorded like a scheduled run."""
    from bulk_pipeline.defs.sync_assets import schedule_settings
    from bulk_pipeline.sources import SourceError, load_sources, sources_path
    from bulk_pipeline.sync import sync_import_id

    ensure_dagster_home()
    try:
        sources = load_sources()
    except SourceError as exc:
        _tell(f"error: {exc}")
        return EXIT_USAGE
    if not sources:
        _tell(f"no sources in {sources_path()}; see data/sources.example.yaml")
        return EXIT_USAGE
    day = args.date or schedule_settings.day_of(datetime.now(UTC))
    if day < schedule_settings.start:
        _tell(f"error: syncs start on {schedule_settings.start}")
        return EXIT_USAGE
    reports = config.data_home() / "reports"
    done_before = {
        s.name
        for s in sources
        if not args.again and (reports / sync_import_id(s.name, day) / "summary.json").is_file()
    }
    run = _run_with_progress(
        None,
        show=False,
        verbose=args.verbose,
        job_name="sync_job",
        partition_key=day.isoformat(),
        run_config={"ops": {"nightly_sync": {"config": {"again": args.again}}}},
    )
    _print_sync(day, [s.name for s in sources], done_before)
    if not run.success:
        return _report_failure(f"sync of {day}", run)
    return 0


def _print_sync(day: date, names: list[str], done_before: set[str]) -> None:
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
    if done_before:
        which = "every source" if set(names) == done_before else ", ".join(sorted(done_before))
        _say(
            f"{day} was already synced for {which}: nothing was read or sent this time, the "
            f"counts are those of the earlier sync. To read and sync it again: "
            f"bulk-pipeline sync --date {day} --again"
        )
    _say(f"Reports: {config.data_home() / 'reports'}/{sync_import_id('<source>', day)}/")


def run_retry_failed(args: argparse.Namespace) -> int:
    """Re-run the failed import partitions and sync days; what was written is not sent again."""
    from bulk_pipeline.backfill import failed_partitions, retry_partition
    from bulk_pipeline.runs import recover_dead_runs

    instance = open_instance()
    recover_dead_runs(instance)
    failed = failed_partitions(instance)
    if not failed:
        _say("nothing to retry: no import or sync day has a failed last run")
        return 0
    for item in failed:
        _say(f"{item.kind} {item.partition_key}: run {item.run_id} failed: {item.error}")
    if args.dry_run:
        return 0
    succeeded = 0
    for item in failed:
        retried = retry_partition(item)
        if retried.succeeded:
            succeeded += 1
            _say(f"{item.kind} {item.partition_key}: done (run {retried.run_id})")
        else:
            _tell(
                f"{item.kind} {item.partition_key} failed again: {retried.error} "
                f"(run {retried.run_id}; log: {retried.log_path})"
            )
    _say(f"{succeeded} of {len(failed)} re-runs succeeded")
    return 0 if succeeded == len(failed) else EXIT_FAILED


def run_dev(args: argparse.Namespace) -> int:
    """The Dagster UI and daemon, and the report server that the UI's report links open."""
    from bulk_pipeline.reports.server import serve_reports_in_thread

    home = ensure_dagster_home()
    open_instance().dispose()
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    command = [sys.executable, "-m", "dagster", "dev", "-p", str(args.port)]
    if workspace.exists():
        command += ["-w", str(workspace)]
    else:
        command += ["-m", "bulk_pipeline.definitions"]
    reports = serve_reports_in_thread(args.port + 1)
    _tell(_data_home_line())
    _tell(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={home})")
    _tell(f"Import reports on {reports.url}/")
    ui = subprocess.Popen(command, env={**os.environ, **reports.environment()})
    try:
        while True:
            try:
                return ui.wait()
            except KeyboardInterrupt:
                continue  # dagster dev got the same Ctrl-C and stops its own processes; wait
    finally:
        reports.stop()


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
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        _tell("stopped (Ctrl-C); running the same command again goes on from where it stopped")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
