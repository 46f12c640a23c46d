"""The progress a person sees while an import runs: live on a terminal, plain lines on a pipe.

The real command runs in its own process (in a pseudo-terminal, or with its output on pipes)
against a sandbox over loopback, with a little latency so the push lasts some seconds.
"""

from __future__ import annotations

import io
import re
import time
from itertools import pairwise
from pathlib import Path

from bulk_pipeline.progress import Phase, report_phase
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline.terminal import POLL_SECONDS, ProgressDisplay
from bulk_pipeline_tests.cli_process import cli_env, run_in_terminal, run_on_pipes
from bulk_pipeline_tests.recurring import contacts_csv

RECORDS = 20_000
EMAILS = [f"person{i}@example.com" for i in range(RECORDS)]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PLAIN_LINE = re.compile(r"\[(\d+):(\d\d):(\d\d)\] (\w+)(.*)")


def test_on_a_terminal_the_push_counter_advances_while_it_runs(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    crm.admin.configure(latency_ms=20)
    path = contacts_csv(tmp_path / "contacts.csv", EMAILS)

    drawn, code = run_in_terminal(["import", str(path)], cli_env(crm))

    assert code == 0, drawn
    text = ANSI.sub("", drawn)
    shown = [
        int(match.group(1).replace(",", ""))
        for match in re.finditer(rf"pushing[^\d\r\n]*([\d,]+)/{RECORDS:,}", text)
    ]
    advances = sum(later > earlier for earlier, later in pairwise(shown))
    assert advances >= 5, f"the counter moved {advances} times: {shown}"
    assert shown[-1] == RECORDS
    assert "records/s" in text
    assert re.search(r"ETA \d+:\d\d:\d\d", text)
    assert "Traceback" not in text


def test_on_a_pipe_progress_is_a_plain_line_at_most_every_five_seconds(
    tmp_path: Path, crm: RunningSandbox
) -> None:
    crm.admin.configure(latency_ms=40)
    path = contacts_csv(tmp_path / "contacts.csv", EMAILS)

    done = run_on_pipes(["import", str(path)], cli_env(crm))

    assert done.returncode == 0, done.stderr
    matches = [PLAIN_LINE.fullmatch(line) for line in done.stderr.splitlines()]
    lines = [match for match in matches if match is not None]
    assert len(lines) >= 2, done.stderr
    elapsed = [int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) for m in lines]
    assert all(later - earlier >= 4 for earlier, later in pairwise(elapsed)), "5 s apart, rounded"
    pushing = [m.group(0) for m in lines if m.group(4) == "pushing"]
    assert pushing, done.stderr
    assert all(
        re.fullmatch(
            rf"\[[\d:]+\] pushing, [\d,]+ of {RECORDS:,} records \(\d+%\), [\d,]+ records/s"
            r"(, ETA \d+:\d\d:\d\d)?",
            line,
        )
        for line in pushing
    ), pushing
    assert "\x1b" not in done.stderr
    assert "━" not in done.stderr


def test_every_phase_is_shown_with_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    report_phase(path, Phase.VALIDATING, total=12_000)
    plain, live = io.StringIO(), io.StringIO()

    with ProgressDisplay(path, plain, live=False), ProgressDisplay(path, live, live=True):
        time.sleep(4 * POLL_SECONDS)
        report_phase(path, Phase.STAGING, processed=12_000, total=12_000, elapsed_seconds=2)
        time.sleep(4 * POLL_SECONDS)

    assert plain.getvalue().splitlines() == ["[0:00:00] validating, 0 of 12,000 records (0%)"]
    drawn = ANSI.sub("", live.getvalue())
    assert "validating" in drawn
    assert re.search(r"staging .*12,000/12,000 6,000 records/s", drawn)
