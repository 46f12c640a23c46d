"""report.html and report.md: what a person reads after an import, built from the report folder.

Everything shown comes from the files the import already wrote (summary.json, rejected.csv,
push_batches.csv), so a report can be rebuilt at any time without the staging database.

The HTML page is self-contained: CSS and the SVG charts are inline, and a Content-Security-Policy
forbids scripts and network loads, so it opens from disk anywhere. Every string that came from
the user's file (its name, column names, cell values, reasons) is escaped: rejected rows are
precisely the rows nobody has vetted, and one may well hold ``<script>``.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bulk_pipeline.reports.charts import (
    OUTCOME_COLORS,
    OUTCOMES,
    outcome_chart_svg,
    throughput_chart_svg,
    throughput_stats,
)

SUMMARY_FILE = "summary.json"
REJECTED_FILE = "rejected.csv"
DUPLICATES_FILE = "duplicates.csv"
BATCHES_FILE = "push_batches.csv"
HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"

TOP_REASONS = 10
SAMPLE_ROWS = 20
MAX_CELL_CHARS = 100
"""Longer cells are cut in the sample; rejected.csv has them in full."""
REASON_SEPARATOR = "; "
"""How validation joins several reasons for one line."""
QUOTED_VALUE = r"""('.*?'|".*?")(\s|;|,|\.|$)"""
"""A quoted value ends at a quote followed by a space, punctuation or the end, so a value with
an apostrophe inside (``'O'Brien'``) is still stripped as one."""
STAGES = ("ingest", "validate", "stage", "push")

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #263238; background: #fafafa; margin: 0; }
main { max-width: 64rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #cfd8dc; }
.headline { font-size: 1.05rem; margin: 0 0 1rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: #546e7a; } dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #cfd8dc; padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
th { background: #eceff1; } td.num, th.num { text-align: right;
  font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; }
.counts-and-chart { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
figure { margin: 0; flex: 1 1 28rem; }
svg { max-width: 100%; height: auto; }
.scroll { overflow-x: auto; max-width: 100%; }
.sample td { white-space: pre-wrap; max-width: 22rem; }
.note { color: #546e7a; }
.swatch { display: inline-block; width: .7rem; height: .7rem; margin-right: .35rem;
  border-radius: 2px; }
"""


@dataclass(frozen=True)
class ReportData:
    """What both reports show, read once from the report folder."""

    summary: dict[str, Any]
    batches: pl.DataFrame
    reasons: pl.DataFrame
    """``kind`` and ``count``, most frequent first, at most ``TOP_REASONS`` rows."""
    sample: pl.DataFrame
    """Up to ``SAMPLE_ROWS`` rejected rows, ``line`` and ``reason`` first, all as text."""
    rejected_exists: bool
    duplicates_exists: bool


def write_reports(folder: Path) -> tuple[Path, Path]:
    """Write report.html and report.md into an import's report folder; return their paths."""
    data = read_report_data(folder)
    html_path = _write_atomically(folder / HTML_FILE, render_html(data))
    markdown_path = _write_atomically(folder / MARKDOWN_FILE, render_markdown(data))
    return html_path, markdown_path


def read_report_data(folder: Path) -> ReportData:
    summary_path = folder / SUMMARY_FILE
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{summary_path}: no summary; the import has not finished, so there is nothing "
            "to report yet"
        )
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    rejected = folder / REJECTED_FILE
    return ReportData(
        summary=summary,
        batches=read_batches(folder / BATCHES_FILE),
        reasons=top_reasons(rejected) if rejected.is_file() else _no_reasons(),
        sample=rejected_sample(rejected) if rejected.is_file() else pl.DataFrame(),
        rejected_exists=rejected.is_file(),
        duplicates_exists=(folder / DUPLICATES_FILE).is_file(),
    )


def read_batches(path: Path) -> pl.DataFrame:
    """push_batches.csv, or an empty frame of the same shape when nothing was pushed."""
    schema = {
        "batch": pl.Int64,
        "records": pl.Int64,
        "seconds": pl.Float64,
        "records_per_second": pl.Float64,
        "finished_at": pl.String,
    }
    if not path.is_file() or path.stat().st_size == 0:
        return pl.DataFrame(schema=schema)
    return pl.read_csv(path, schema_overrides=schema).select(list(schema)).sort("batch")


def reason_kind(reason: pl.Expr) -> pl.Expr:
    """The reason with its quoted values replaced by ``'…'``, so equal problems group together."""
    return reason.str.replace_all(QUOTED_VALUE, "'…'${2}")


def top_reasons(rejected_csv: Path, limit: int = TOP_REASONS) -> pl.DataFrame:
    """The most frequent kinds of reason; a line with several problems counts under each. The
    file is read a batch at a time (polars' streaming engine): it has a row per rejected line,
    millions in a large import, and only the kinds are kept."""
    return (
        pl.scan_csv(rejected_csv, infer_schema=False)
        .select(reason_kind(pl.col("reason").fill_null("")).str.split(REASON_SEPARATOR))
        .explode("reason")
        .filter(pl.col("reason") != "")
        .group_by(pl.col("reason").alias("kind"))
        .agg(pl.len().alias("count"))
        .sort(["count", "kind"], descending=[True, False])
        .head(limit)
        .collect(engine="streaming")
    )


def rejected_sample(rejected_csv: Path, limit: int = SAMPLE_ROWS) -> pl.DataFrame:
    sample = pl.read_csv(rejected_csv, infer_schema=False, n_rows=limit)
    first = [name for name in ("line", "reason") if name in sample.columns]
    return sample.select(*first, pl.exclude(first))


def _no_reasons() -> pl.DataFrame:
    return pl.DataFrame(schema={"kind": pl.String, "count": pl.UInt32})


def _write_atomically(path: Path, text: str) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def started_at(summary: dict[str, Any]) -> datetime | None:
    """``started_at``, or else the start of the earliest stage from its end and duration."""
    if summary.get("started_at"):
        return datetime.fromisoformat(summary["started_at"])
    starts = [
        datetime.fromisoformat(t["finished_at"]) - timedelta(seconds=float(t["seconds"]))
        for t in summary.get("timings", {}).values()
        if t.get("finished_at")
    ]
    return min(starts, default=None)


def format_time(value: datetime | str | None) -> str:
    if value is None:
        return "unknown"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = moment.strftime("%Z") or ""
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}".strip()


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {rest} s" if hours else f"{minutes} min {rest} s"


def duration_seconds(summary: dict[str, Any]) -> float | None:
    start = started_at(summary)
    if start is None or not summary.get("finished_at"):
        return None
    return (datetime.fromisoformat(summary["finished_at"]) - start).total_seconds()


def facts(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The header lines both reports (and the CLI) show, as (label, value) pairs."""
    return [
        ("File", str(summary["file"])),
        ("Import id", str(summary["import_id"])),
        ("Entity", str(summary["entity"])),
        ("Target", str(summary["target"])),
        ("On duplicate", str(summary.get("on_duplicate", ""))),
        ("Started", format_time(started_at(summary))),
        ("Finished", format_time(summary.get("finished_at"))),
        ("Duration", format_duration(duration_seconds(summary))),
    ]


def headline(summary: dict[str, Any]) -> str:
    """One sentence: how many rows the CRM now holds and how many it did not get, and why.

    For imports of several entities the counts are outcomes (a line carries one per entity)."""
    landed = sum(int(summary[name]) for name in ("created", "updated", "unchanged"))
    not_sent = {name: int(summary[name]) for name in ("duplicates", "invalid", "failed")}
    multiple = len(summary.get("entities") or {}) > 1
    total = sum(int(summary[name]) for name in OUTCOMES) if multiple else int(summary["rows"])
    unit = "records of the file's rows" if multiple else "rows"
    sentence = (
        f"{landed:,} of {total:,} {unit} are in {summary['target']} "
        f"({int(summary['created']):,} created, {int(summary['updated']):,} updated, "
        f"{int(summary['unchanged']):,} unchanged)"
    )
    if not any(not_sent.values()):
        return sentence + "; every row made it."
    reasons = ", ".join(f"{count:,} {name}" for name, count in not_sent.items() if count)
    return f"{sentence}; {sum(not_sent.values()):,} were not sent: {reasons}."


def _stage_seconds(summary: dict[str, Any]) -> str:
    timings = summary.get("timings", {})
    parts = [f"{stage} {timings[stage]['seconds']:.1f} s" for stage in STAGES if stage in timings]
    return ", ".join(parts) or "not recorded"


def _throughput_text(batches: pl.DataFrame) -> str:
    stats = throughput_stats(batches)
    return (
        f"{stats.records:,} records in {stats.batches:,} batches, {stats.overall:,.0f} "
        f"records/s overall (per batch: {stats.slowest:,.0f} to {stats.fastest:,.0f})."
    )


NOTHING_PUSHED = "Nothing was pushed to the CRM in this import (no new or changed records)."


def _cut(value: str | None) -> str:
    if value is None:
        return ""
    return value if len(value) <= MAX_CELL_CHARS else value[: MAX_CELL_CHARS - 1] + "…"


# HTML


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(data: ReportData) -> str:
    summary = data.summary
    name = Path(str(summary["file"])).name
    body = [
        f"<h1>Import report: {_e(name)}</h1>",
        f'<p class="headline" id="headline">{_e(headline(summary))}</p>',
        _html_facts(summary),
        _html_outcomes(summary),
        _html_throughput(data.batches),
        _html_reasons(data),
        _html_sample(data),
        _html_columns(summary),
        _html_files(data),
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Import report: {_e(name)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            "<main>",
            *body,
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _html_facts(summary: dict[str, Any]) -> str:
    rows = [f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in facts(summary)]
    rows.append(f"<dt>Stages</dt><dd>{_e(_stage_seconds(summary))}</dd>")
    return '<dl id="facts">' + "".join(rows) + "</dl>"


def _html_outcomes(summary: dict[str, Any]) -> str:
    rows = [
        f'<tr><td><span class="swatch" style="background:{OUTCOME_COLORS[name]}"></span>'
        f'{name}</td><td class="num" id="count-{name}">{int(summary[name]):,}</td></tr>'
        for name in OUTCOMES
    ]
    rows.append(
        f'<tr class="total"><td>rows in file</td>'
        f'<td class="num" id="count-rows">{int(summary["rows"]):,}</td></tr>'
    )
    table = (
        '<table class="counts"><thead><tr><th>outcome</th><th class="num">rows</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    chart = outcome_chart_svg({name: int(summary[name]) for name in OUTCOMES})
    return (
        '<section id="outcomes"><h2>Outcomes</h2><div class="counts-and-chart">'
        f"{table}<figure>{chart}</figure></div>{_html_entities(summary)}</section>"
    )


def _html_entities(summary: dict[str, Any]) -> str:
    """For imports of several entities: outcomes per entity, and the links made."""
    entities: dict[str, dict[str, Any]] = summary.get("entities") or {}
    if len(entities) < 2:
        return ""
    head = "".join(f'<th class="num">{_e(name)}</th>' for name in ("rows", *OUTCOMES))
    body = "".join(
        f'<tr id="entity-{_e(entity)}"><td>{_e(entity)}</td>'
        + "".join(f'<td class="num">{int(counts[name]):,}</td>' for name in ("rows", *OUTCOMES))
        + "</tr>"
        for entity, counts in entities.items()
    )
    links = summary.get("links") or {}
    note = (
        f'<p class="note" id="links">Links: {int(links.get("made", 0)):,} made, '
        f"{int(links.get('found', 0)):,} already in the CRM.</p>"
    )
    return (
        f'<table class="counts" id="entities"><thead><tr><th>entity</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{note}"
    )


def _html_throughput(batches: pl.DataFrame) -> str:
    if batches.is_empty():
        content = f'<p class="note" id="throughput-none">{_e(NOTHING_PUSHED)}</p>'
    else:
        chart = throughput_chart_svg(batches)
        content = f"<figure>{chart}</figure><p>{_e(_throughput_text(batches))}</p>"
    return f'<section id="throughput"><h2>Throughput of the push</h2>{content}</section>'


def _html_reasons(data: ReportData) -> str:
    if data.reasons.is_empty():
        content = '<p class="note">No rows were rejected.</p>'
    else:
        rows = "".join(
            f'<tr><td>{_e(kind)}</td><td class="num">{count:,}</td></tr>'
            for kind, count in data.reasons.iter_rows()
        )
        content = (
            '<table><thead><tr><th>reason (quoted values left out)</th><th class="num">rows</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<section id="reasons"><h2>Top rejection reasons</h2>{content}</section>'


def _html_sample(data: ReportData) -> str:
    if data.sample.is_empty():
        return ""
    rejected = int(data.summary["invalid"]) + int(data.summary["failed"])
    head = "".join(f"<th>{_e(column)}</th>" for column in data.sample.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(_cut(value))}</td>" for value in row) + "</tr>"
        for row in data.sample.iter_rows()
    )
    return (
        '<section id="sample"><h2>Sample of rejected rows</h2>'
        f'<p class="note">The first {data.sample.height} of {rejected:,} rejected rows; all of '
        f'them, in full, are in <a href="{REJECTED_FILE}">{REJECTED_FILE}</a>.</p>'
        f'<div class="scroll"><table class="sample"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _html_columns(summary: dict[str, Any]) -> str:
    column_map: dict[str, str] = summary.get("column_map", {})
    unmapped: list[str] = summary.get("unmapped_columns", [])
    rows = "".join(
        f"<tr><td>{_e(column)}</td><td>{_e(field)}</td></tr>"
        for field, column in column_map.items()
    )
    parts = ['<section id="columns"><h2>Columns</h2>']
    if rows:
        parts.append(
            "<table><thead><tr><th>column in the file</th><th>CRM field</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    if unmapped:
        names = ", ".join(_e(name) for name in unmapped)
        parts.append(f"<p>Not sent (no CRM field): {names}</p>")
    parts.append("</section>")
    return "".join(parts)


def _html_files(data: ReportData) -> str:
    links = [(SUMMARY_FILE, "the counts and settings, for programs")]
    if data.rejected_exists:
        links.append((REJECTED_FILE, "rejected rows in your columns, with line and reason"))
    if data.duplicates_exists:
        links.append((DUPLICATES_FILE, "rows skipped as duplicates of an earlier row"))
    items = "".join(f'<li><a href="{name}">{name}</a>: {_e(what)}</li>' for name, what in links)
    return f'<section id="files"><h2>Files</h2><ul>{items}</ul></section>'


# Markdown


def _md(value: object) -> str:
    """A table cell or inline text: HTML escaped (renderers pass raw HTML), pipes and newlines
    neutralized so the table keeps its shape, and markdown emphasis/link characters inert."""
    text = html.escape(str(value), quote=False).replace("\r\n", "\n")
    for char in "\\`*_[]|#":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", "<br>")


def render_markdown(data: ReportData) -> str:
    summary = data.summary
    lines = [f"# Import report: {_md(Path(str(summary['file'])).name)}", ""]
    lines += [_md(headline(summary)), ""]
    lines += [f"- **{label}:** {_md(value)}" for label, value in facts(summary)]
    lines += [f"- **Stages:** {_md(_stage_seconds(summary))}", ""]
    lines += ["## Outcomes", "", "| outcome | rows |", "|---|---:|"]
    lines += [f"| {name} | {int(summary[name]):,} |" for name in OUTCOMES]
    lines += [f"| **rows in file** | **{int(summary['rows']):,}** |", ""]
    entities: dict[str, dict[str, Any]] = summary.get("entities") or {}
    if len(entities) > 1:
        lines += ["| entity | rows | " + " | ".join(OUTCOMES) + " |"]
        lines += ["|---|" + "---:|" * (len(OUTCOMES) + 1)]
        lines += [
            f"| {_md(entity)} | "
            + " | ".join(f"{int(counts[name]):,}" for name in ("rows", *OUTCOMES))
            + " |"
            for entity, counts in entities.items()
        ]
        links = summary.get("links") or {}
        lines += [
            "",
            f"Links: {int(links.get('made', 0)):,} made, {int(links.get('found', 0)):,} "
            "already in the CRM.",
            "",
        ]
    lines += ["## Throughput of the push", ""]
    lines += [NOTHING_PUSHED if data.batches.is_empty() else _throughput_text(data.batches), ""]
    lines += ["## Top rejection reasons", ""]
    if data.reasons.is_empty():
        lines += ["No rows were rejected.", ""]
    else:
        lines += ["| reason (quoted values left out) | rows |", "|---|---:|"]
        lines += [f"| {_md(kind)} | {count:,} |" for kind, count in data.reasons.iter_rows()]
        lines.append("")
    if not data.sample.is_empty():
        rejected = int(summary["invalid"]) + int(summary["failed"])
        lines += [
            "## Sample of rejected rows",
            "",
            f"The first {data.sample.height} of {rejected:,} rejected rows; all of them are in "
            f"[{REJECTED_FILE}]({REJECTED_FILE}).",
            "",
            "| " + " | ".join(_md(column) for column in data.sample.columns) + " |",
            "|" + "---|" * data.sample.width,
        ]
        lines += [
            "| " + " | ".join(_md(_cut(value)) for value in row) + " |"
            for row in data.sample.iter_rows()
        ]
        lines.append("")
    if summary.get("unmapped_columns"):
        names = ", ".join(_md(name) for name in summary["unmapped_columns"])
        lines += ["## Columns", "", f"Not sent (no CRM field): {names}", ""]
    lines += ["## Files", "", f"- [{SUMMARY_FILE}]({SUMMARY_FILE})"]
    if data.rejected_exists:
        lines.append(f"- [{REJECTED_FILE}]({REJECTED_FILE})")
    if data.duplicates_exists:
        lines.append(f"- [{DUPLICATES_FILE}]({DUPLICATES_FILE})")
    return "\n".join(lines) + "\n"
