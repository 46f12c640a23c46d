"""The inbox sensor: files dropped into <data home>/inbox/ become imports, each exactly once.

Through Dagster's sensor, on the persistent instance, against a real sandbox over loopback and a
real DuckDB file; the tick logic alone is tested on many files without running imports.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import dagster as dg
import pytest

from bulk_pipeline import cli, config, inbox
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.sensors import inbox_sensor
from bulk_pipeline.imports import load_import
from bulk_pipeline.runs import LAUNCHED_BY_TAG, FinishedRun
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.recurring import age, contacts_csv, drop, run_import_partition

PARTITIONS = imports_partitions.name or "imports"


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    result = inbox_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    return result


def test_three_dropped_files_one_invalid_are_imported_once_then_filed(
    crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    box = inbox.inbox_dir()
    age(contacts_csv(box / "january.csv", ["ann@example.com", "bob@example.com"]), 60)
    age(contacts_csv(box / "February leads, final...csv", ["cy@example.com"]), 60)
    drop(box / "notes.csv", "Name,Remark\nAda,no email column here\n", seconds_ago=60)

    first = _tick(instance, None)

    assert len(first.run_requests) == 3
    keys = [request.partition_key for request in first.run_requests]
    assert len(set(keys)) == 3
    assert all(key and re.fullmatch(r"[a-z0-9_-]+", key) for key in keys)
    assert [r.partition_keys for r in first.dynamic_partitions_requests] == [keys]
    assert all(r.tags[LAUNCHED_BY_TAG] == "inbox" for r in first.run_requests)
    instance.add_dynamic_partitions(PARTITIONS, [k for k in keys if k])

    second = _tick(instance, first.cursor)

    assert second.run_requests == []
    assert second.dynamic_partitions_requests == []

    outcomes = {
        request.partition_key: run_import_partition(
            instance, request.partition_key or "", request.tags
        ).success
        for request in first.run_requests
    }
    assert sorted(outcomes.values()) == [False, True, True]

    third = _tick(instance, second.cursor)

    assert third.run_requests == []
    assert sorted(p.name for p in (box / "processed").iterdir()) == [
        "February leads, final...csv",
        "january.csv",
    ]
    assert sorted(p.name for p in (box / "failed").iterdir()) == [
        "notes.csv",
        "notes.csv.error.txt",
    ]
    error = (box / "failed" / "notes.csv.error.txt").read_text(encoding="utf-8")
    assert "notes.csv" in error
    assert "cannot tell which entity" in error
    assert "A dropped file is recognised by its sheet names or columns" in error, (
        "advice for a dropped file"
    )
    assert f"bulk-pipeline import '{box / 'failed' / 'notes.csv'}' --entity contacts" in error
    assert "--mapping" not in error
    assert [p.name for p in box.iterdir() if p.is_file()] == []
    assert json.loads(third.cursor or "{}")["requested"] == {}
    emails = sorted(r["properties"]["email"] for r in crm.admin.records("contacts"))
    assert emails == ["ann@example.com", "bob@example.com", "cy@example.com"]


def test_a_file_whose_content_was_imported_is_not_imported_again(
    tmp_path: Path, crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    original = contacts_csv(tmp_path / "people.csv", ["dee@example.com"])
    assert cli.main(["import", str(original), "--no-progress"]) == 0
    writes = crm.admin.stats()["requests"]["writes"]
    box = inbox.inbox_dir()
    drop(box / "people copy.csv", original.read_bytes(), seconds_ago=60)

    result = _tick(instance, None)

    assert result.run_requests == []
    assert sorted(p.name for p in (box / "processed").iterdir()) == [
        "people copy.csv",
        "people copy.csv.skipped.txt",
    ]
    note = (box / "processed" / "people copy.csv.skipped.txt").read_text(encoding="utf-8")
    assert "people-" in note
    assert crm.admin.stats()["requests"]["writes"] == writes


def _settings(**overrides: float | int) -> inbox.InboxSettings:
    return inbox.InboxSettings(**{"settle_seconds": 30.0, "max_runs_per_tick": 10, **overrides})  # type: ignore[arg-type]


def test_many_files_with_the_same_mtime_are_requested_once_each_a_few_per_tick() -> None:
    box = inbox.inbox_dir()
    names = [f"batch {n:02d}.csv" for n in range(25)]
    tied = time.time() - 120
    for name in names:
        drop(box / name, f"Email\nperson{name[6:8]}@example.com\n", seconds_ago=120)
        os.utime(box / name, (tied, tied))
    mtimes = {(box / name).stat().st_mtime_ns for name in names}
    assert len(mtimes) == 1

    cursor = inbox.InboxCursor()
    per_tick = []
    requested: list[str] = []
    for _ in range(4):
        result = inbox.tick(cursor, {}, now=time.time(), settings=_settings(max_runs_per_tick=10))
        per_tick.append(len(result.runs))
        requested += [run.file_name for run in result.runs]
        cursor = inbox.InboxCursor.from_json(result.cursor.to_json())

    assert per_tick == [10, 10, 5, 0]
    assert sorted(requested) == names
    assert len({run.import_id for run in cursor.requested.values()}) == 25


def test_files_still_being_written_wait_for_the_settle_period() -> None:
    box = inbox.inbox_dir()
    (box / "fresh.csv").write_text("Email\nnew@example.com\n", encoding="utf-8")
    drop(box / "upload.csv.part", "Email\nhalf@exa", seconds_ago=600)

    waiting = inbox.tick(inbox.InboxCursor(), {}, now=time.time(), settings=_settings())

    assert waiting.runs == []
    assert waiting.waiting == 1
    assert waiting.partial == ["upload.csv.part"]
    assert "upload.csv.part" in waiting.describe()
    age(box / "fresh.csv", 31)

    settled = inbox.tick(waiting.cursor, {}, now=time.time(), settings=_settings())

    assert [run.file_name for run in settled.runs] == ["fresh.csv"]


def test_odd_names_become_valid_partition_keys_and_a_changed_file_is_requested_again() -> None:
    box = inbox.inbox_dir()
    names = ["Q3, leads [final]...csv", "données clients.csv", "report...v2.csv", "a|b.csv"]
    for number, name in enumerate(names):
        drop(box / name, f"Email\nodd{number}@example.com\n", seconds_ago=60)

    first = inbox.tick(inbox.InboxCursor(), {}, now=time.time(), settings=_settings())

    keys = {run.file_name: run.import_id for run in first.runs}
    assert sorted(keys) == sorted(names)
    for key in keys.values():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", key)
        assert "..." not in key and "," not in key
    assert keys["Q3, leads [final]...csv"].startswith("q3_leads_final-")

    drop(box / "a|b.csv", "Email\nchanged@example.com\n", seconds_ago=45)
    finished = {keys["report...v2.csv"]: FinishedRun("run-1", succeeded=True, message="")}

    second = inbox.tick(first.cursor, finished, now=time.time(), settings=_settings())

    assert [run.file_name for run in second.runs] == ["a|b.csv"]
    assert second.runs[0].import_id != keys["a|b.csv"]
    assert second.processed == ["report...v2.csv"]


def _under(folder: Path) -> str:
    """Every readable byte of every regular file under ``folder``, as text."""
    return "".join(
        path.read_bytes().decode("utf-8", "replace")
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    )


def test_links_pipes_and_folders_are_moved_aside_unopened(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:SECRET-FIRST-LINE:0:0\n", encoding="utf-8")
    outside_csv = contacts_csv(tmp_path / "outside" / "leads.csv", ["out@example.com"])
    box = inbox.inbox_dir()
    (box / "passwd.csv").symlink_to(secret)
    (box / "leads.csv").symlink_to(outside_csv)
    (box / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    os.mkfifo(box / "pipe.csv")
    (box / "folder.csv").mkdir()
    drop(box / "real.csv", "Email\nreal@example.com\n", seconds_ago=60)
    for name in ("passwd.csv", "leads.csv", "dangling.csv"):
        os.utime(box / name, (time.time() - 60, time.time() - 60), follow_symlinks=False)

    result = inbox.tick(inbox.InboxCursor(), {}, now=time.time(), settings=_settings())

    assert [run.file_name for run in result.runs] == ["real.csv"]
    assert sorted(result.failed) == [
        "dangling.csv",
        "folder.csv",
        "leads.csv",
        "passwd.csv",
        "pipe.csv",
    ]
    failed = box / "failed"
    for name, kind in [
        ("passwd.csv", "a symbolic link"),
        ("leads.csv", "a symbolic link"),
        ("dangling.csv", "a symbolic link"),
        ("pipe.csv", "a named pipe"),
        ("folder.csv", "a folder"),
    ]:
        note = (failed / f"{name}.error.txt").read_text(encoding="utf-8")
        assert note.startswith(f"{name} is {kind}; only regular files")
    assert (failed / "passwd.csv").is_symlink()
    assert (failed / "pipe.csv").is_fifo()
    assert (failed / "folder.csv").is_dir()
    home = config.data_home()
    assert "SECRET-FIRST-LINE" not in _under(home)
    assert "out@example.com" not in _under(home)
    assert sorted(p.name for p in (home / "files").iterdir()) == [result.runs[0].import_id]


def test_a_file_swapped_for_a_link_after_listing_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("Email\nsecret@example.com\n", encoding="utf-8")
    listed = drop(inbox.inbox_dir() / "swap.csv", "Email\nok@example.com\n", seconds_ago=60)
    info = listed.stat()
    listed.unlink()
    listed.symlink_to(secret)

    with pytest.raises(OSError):
        inbox._snapshot(listed, info)

    assert "secret@example.com" not in _under(config.data_home() / "work")


def test_long_names_get_notes_that_fit_and_one_failure_never_blocks_the_others() -> None:
    box = inbox.inbox_dir()
    long_names = ["é" * 120 + "-a.csv", "é" * 120 + "-b.csv", "x" * 251 + ".csv"]
    assert all(len(name.encode()) >= 246 for name in long_names)
    for number, name in enumerate(long_names):
        drop(box / name, f"Email\nlong{number}@example.com\n", seconds_ago=60)
    drop(box / "short.csv", "Email\nshort@example.com\n", seconds_ago=60)
    (box / ("l" * 251 + ".csv")).symlink_to(box / "short.csv")

    first = inbox.tick(inbox.InboxCursor(), {}, now=time.time(), settings=_settings())

    assert sorted(run.file_name for run in first.runs) == sorted([*long_names, "short.csv"])
    assert first.failed == ["l" * 251 + ".csv"]
    ids = {run.file_name: run.import_id for run in first.runs}
    finished = {
        ids[name]: FinishedRun(f"run-{n}", succeeded=name == "short.csv", message="no email")
        for n, name in enumerate(ids)
    }
    drop(box / "failed" / long_names[2], "taken already", seconds_ago=0)

    second = inbox.tick(first.cursor, finished, now=time.time(), settings=_settings())

    assert second.errors == []
    assert second.processed == ["short.csv"]
    assert sorted(second.failed) == sorted(long_names)
    assert json.loads(second.cursor.to_json())["requested"] == {}
    notes = [p for p in (box / "failed").iterdir() if p.name.endswith(".error.txt")]
    assert len(notes) == 4
    assert all(len(p.name.encode()) <= 255 for p in (box / "failed").iterdir())
    texts = [note.read_text(encoding="utf-8") for note in notes]
    for name in long_names:
        assert sum(text.startswith(f"{name}: import ") for text in texts) == 1
    assert [p.name for p in box.iterdir() if not p.is_dir()] == []


def test_names_with_dots_newlines_and_leading_dashes_import_and_are_filed(
    crm: RunningSandbox, instance: dg.DagsterInstance
) -> None:
    box = inbox.inbox_dir()
    names = ["-rf.csv", "--help.csv", "a..b.csv", "new\nline.csv", "q" * 246 + ".csv"]
    for number, name in enumerate(names):
        contacts_csv(box / name, [f"odd{number}@example.com"])
        age(box / name, 60)

    first = _tick(instance, None)

    keys = [request.partition_key or "" for request in first.run_requests]
    assert len(set(keys)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9_-]*", key) for key in keys)
    instance.add_dynamic_partitions(PARTITIONS, keys)
    for request in first.run_requests:
        assert run_import_partition(instance, request.partition_key or "", request.tags).success

    second = _tick(instance, first.cursor)

    assert second.run_requests == []
    assert sorted(p.name for p in (box / "processed").iterdir()) == sorted(names)
    emails = sorted(r["properties"]["email"] for r in crm.admin.records("contacts"))
    assert emails == [f"odd{number}@example.com" for number in range(len(names))]
    described = inbox.InboxTick(partial=[".new\nname.csv"]).describe()
    assert "\n" not in described
    assert ".new\\nname.csv" in described


def test_inbox_imports_add_their_records_to_the_list_the_settings_name() -> None:
    settings = inbox.InboxSettings.from_env(
        {inbox.TARGET_ENV: "sandbox-attio", inbox.LIST_ENV: " Event signups "}
    )
    assert (settings.target, settings.list_name) == ("sandbox-attio", "Event signups")
    assert inbox.InboxSettings.from_env({}).list_name is None
    box = inbox.inbox_dir()
    drop(box / "signups.csv", "Email\nada@example.com\n", seconds_ago=120)

    result = inbox.tick(inbox.InboxCursor(), {}, now=time.time(), settings=settings)

    (run,) = result.runs
    request = load_import(run.import_id)
    assert (request.target, request.list_name) == ("sandbox-attio", "Event signups")
