"""Helpers shared by the tests of the unattended features (inbox, sync, retries, alerts, pools):
files to import, and running what a sensor or schedule asked for on the persistent instance."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import polars as pl

from bulk_pipeline.defs.assets import import_assets
from bulk_pipeline.defs.resources import default_resources

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def contacts_csv(path: Path, emails: Iterable[str], *, city: str = "Paris") -> Path:
    """A small contacts export: email, first name, city."""
    emails = list(emails)
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "Email": emails,
            "First Name": [e.split("@")[0].title() for e in emails],
            "City": [city] * len(emails),
        }
    ).write_csv(path)
    return path


def age(path: Path, seconds: float) -> Path:
    """Pretend the file was last written ``seconds`` ago (settle periods are about mtimes)."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def drop(path: Path, content: str | bytes, *, seconds_ago: float) -> Path:
    """A file written ``seconds_ago``, as a person or a tool would drop it into a folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return age(path, seconds_ago)


def run_import_partition(
    instance: dg.DagsterInstance, partition_key: str, tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    """Execute a requested import run the way the daemon would, in this process."""
    return dg.materialize(
        import_assets,
        partition_key=partition_key,
        instance=instance,
        resources=default_resources(),
        tags=tags or {},
        raise_on_error=False,
        run_config=QUIET,
    )
