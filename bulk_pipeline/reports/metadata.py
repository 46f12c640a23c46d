"""What a person reading the results materialization in the Dagster UI sees."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from bulk_pipeline.reports.charts import outcome_chart_png

COUNT_KEYS = ("rows", "created", "updated", "unchanged", "duplicates", "invalid", "failed")
SAMPLE_REJECTS = 10
PLAN_KEYS = ("creates", "updates", "unchanged", "conflicts")


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"**{summary['file']}** -> {summary['target']} ({summary['entity']})",
        "",
        "| outcome | rows |",
        "|---|---:|",
        *(f"| {key} | {summary[key]} |" for key in COUNT_KEYS),
    ]
    if summary["unmapped_columns"]:
        lines += ["", "Columns not sent (no CRM field): " + ", ".join(summary["unmapped_columns"])]
    return "\n".join(lines)


def sample_rejects_markdown(rejected_csv: Path, limit: int = SAMPLE_REJECTS) -> str:
    if not rejected_csv.exists():
        return "none"
    sample = pl.read_csv(rejected_csv, infer_schema=False, n_rows=limit)
    if sample.is_empty():
        return "none"
    rows = [f"| {row['line']} | {row['reason']} |" for row in sample.iter_rows(named=True)]
    return "\n".join(["| line | reason |", "|---:|---|", *rows])


def results_metadata(summary: dict[str, Any], html_report: Path) -> dict[str, Any]:
    rejected_csv = Path(summary["rejected_csv"])
    chart = base64.b64encode(outcome_chart_png(summary)).decode("ascii")
    return {
        **{key: dg.MetadataValue.int(int(summary[key])) for key in COUNT_KEYS},
        "summary": dg.MetadataValue.md(summary_markdown(summary)),
        "outcome_chart": dg.MetadataValue.md(f"![outcomes](data:image/png;base64,{chart})"),
        "report": dg.MetadataValue.path(str(html_report)),
        "sample_rejects": dg.MetadataValue.md(sample_rejects_markdown(rejected_csv)),
        "report_folder": dg.MetadataValue.path(str(rejected_csv.parent)),
        "unmapped_columns": ", ".join(summary["unmapped_columns"]) or "none",
    }


def plan_metadata(plan: dict[str, Any]) -> dict[str, Any]:
    """A dry run's plan as a person reads it in the UI."""
    fields = plan["changed_fields"]
    lines = [
        f"**Dry run** of {plan['file']} -> {plan['target']}: nothing was written.",
        "",
        "| would | records |",
        "|---|---:|",
        *(f"| {key} | {plan[key]} |" for key in ("creates", "updates", "unchanged", "conflicts")),
    ]
    if fields:
        lines += ["", "Fields updates would change: "]
        lines += [f"- {name}: {count} records" for name, count in sorted(fields.items())]
    return {
        **{key: dg.MetadataValue.int(int(plan[key])) for key in PLAN_KEYS},
        "plan": dg.MetadataValue.md("\n".join(lines)),
        "plan_csv": dg.MetadataValue.path(plan["plan_csv"]),
    }
