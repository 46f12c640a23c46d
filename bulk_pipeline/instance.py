"""The persistent Dagster instance shared by the UI and the CLI, under the data home."""

from __future__ import annotations

import os
from pathlib import Path

from bulk_pipeline import config

DAGSTER_YAML = """\
# Written by bulk_pipeline on first use; edit freely, it is not overwritten.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    granularity: op
"""


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at ``<data home>/dagster`` (unless set) and give it a dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.data_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
