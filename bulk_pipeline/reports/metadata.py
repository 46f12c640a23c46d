"""What a person reading the results materialization in the Dagster UI sees.

The UI shows a markdown value in place only when it is shorter than 1,000 characters (longer
ones hide behind "Show Markdown"), so the summary, with its outcome bars drawn in text, is kept
under that; the HTML report is a link to the report server (``reports/server.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from bulk_pipeline.reports.charts import OUTCOMES
from bulk_pipeline.reports.server import report_url

COUNT_KEYS = ("rows", *OUTCOMES)
SAMPLE_REJECTS = 5
MAX_REASON_CHARS = 80
INLINE_MARKDOWN_CHARS = 1_000
"""The UI shows shorter markdown values in place."""
BAR_CHARS = 20
MAX_COLUMNS_CHARS = 200
PLAN_KEYS = ("creates", "updates", "unchanged", "conflicts")


def outcome_bars(summary: dict[str, Any]) -> list[str]:
    """One markdown table row per outcome: count, share of the outcomes (a line has one per
    entity it carries), and a bar of blocks."""
    rows = max(sum(int(summary[key]) for key in OUTCOMES), 1)
    lines = ["| outcome | rows | share | |", "|---|---:|---:|---|"]
    for key in OUTCOMES:
        count = int(summary[key])
        blocks = round(BAR_CHARS * count / rows) or (1 if count else 0)
        bar = f"`{'█' * blocks}`" if blocks else ""
        lines.append(f"| {key} | {count:,} | {count / rows:.0%} | {bar} |")
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    """The file, the CRM and the outcome bars, short enough to show without expanding."""
    lines = [
        f"**{Path(str(summary['file'])).name}** -> {summary['target']} ({summary['entity']}): "
        f"{int(summary['rows']):,} rows",
        "",
        *outcome_bars(summary),
        *entity_table(summary),
    ]
    if summary["unmapped_columns"]:
        columns = ", ".join(summary["unmapped_columns"])
        if len(columns) > MAX_COLUMNS_CHARS:
            columns = columns[: MAX_COLUMNS_CHARS - 1] + "…"
        lines += ["", f"Columns not sent (no CRM field): {columns}"]
    return "\n".join(lines)[:INLINE_MARKDOWN_CHARS]


def entity_table(summary: dict[str, Any]) -> list[str]:
    """For imports of several entities: the outcomes per entity, and the links made."""
    entities: dict[str, dict[str, Any]] = summary.get("entities") or {}
    if len(entities) < 2:
        return []
    lines = [
        "",
        "| entity | rows | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    for entity, counts in entities.items():
        cells = " | ".join(f"{int(counts[key]):,}" for key in OUTCOMES)
        lines.append(f"| {entity} | {int(counts['rows']):,} | {cells} |")
    links = summary.get("links") or {}
    if links.get("made") or links.get("found"):
        lines += ["", f"Links: {links['made']:,} made, {links['found']:,} already there."]
    return lines


def sample_rejects_markdown(rejected_csv: Path, limit: int = SAMPLE_REJECTS) -> str:
    if not rejected_csv.exists():
        return "none"
    sample = pl.read_csv(rejected_csv, infer_schema=False, n_rows=limit)
    if sample.is_empty():
        return "none"
    where = [name for name in ("sheet", "entity") if name in sample.columns]
    rows = [
        "| "
        + " | ".join([*(str(row[name]) for name in where), str(row["line"])])
        + f" | {_cut(str(row['reason']))} |"
        for row in sample.iter_rows(named=True)
    ]
    header = "| " + " | ".join([*where, "line", "reason"]) + " |"
    rule = "|" + "---|" * len(where) + "---:|---|"
    return "\n".join([header, rule, *rows])


def _cut(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def results_metadata(summary: dict[str, Any], html_report: Path) -> dict[str, Any]:
    rejected_csv = Path(summary["rejected_csv"])
    links = summary.get("links") or {}
    return {
        **{key: dg.MetadataValue.int(int(summary[key])) for key in COUNT_KEYS},
        "links_made": dg.MetadataValue.int(int(links.get("made", 0))),
        **{
            f"{entity}_{key}": dg.MetadataValue.int(int(counts[key]))
            for entity, counts in (summary.get("entities") or {}).items()
            for key in COUNT_KEYS
        },
        "summary": dg.MetadataValue.md(summary_markdown(summary)),
        "report": dg.MetadataValue.url(report_url(str(summary["import_id"]))),
        "report_file": dg.MetadataValue.path(str(html_report)),
        "sample_rejects": dg.MetadataValue.md(sample_rejects_markdown(rejected_csv)),
        "report_folder": dg.MetadataValue.path(str(rejected_csv.parent)),
        "unmapped_columns": ", ".join(summary["unmapped_columns"]) or "none",
        "skipped_sheets": ", ".join(s["sheet"] for s in summary.get("skipped_sheets", []))
        or "none",
        "warnings": "; ".join(summary.get("warnings", [])) or "none",
    }


def plan_metadata(plan: dict[str, Any]) -> dict[str, Any]:
    """A dry run's plan as a person reads it in the UI."""
    fields = plan["changed_fields"]
    entities: dict[str, dict[str, int]] = plan.get("entities") or {}
    names = list(entities) if len(entities) > 1 else ["records"]
    counts = entities if len(entities) > 1 else {"records": plan}
    lines = [
        f"**Dry run** of {plan['file']} -> {plan['target']}: nothing was written.",
        "",
        "| would | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(
            f"| {key} | " + " | ".join(str(counts[n].get(key, 0)) for n in names) + " |"
            for key in ("creates", "updates", "unchanged", "conflicts", "rejected", "links")
        ),
    ]
    if fields:
        lines += ["", "Fields updates would change: "]
        lines += [f"- {name}: {count} records" for name, count in sorted(fields.items())]
    return {
        **{key: dg.MetadataValue.int(int(plan[key])) for key in PLAN_KEYS},
        "plan": dg.MetadataValue.md("\n".join(lines)),
        "plan_csv": dg.MetadataValue.path(plan["plan_csv"]),
    }
