"""The report's charts, drawn with matplotlib and returned as SVG text.

Figures are built from ``matplotlib.figure.Figure`` on an Agg canvas, never through ``pyplot``:
pyplot keeps every figure in a global registry until it is closed, which leaks memory in a
long-running Dagster process and is not safe across threads. Settings that only apply at save
time (fonts as text, a fixed id salt) are scoped with ``rc_context``.

SVG text stays ``<text>`` (``svg.fonttype: none``), so the counts on the chart are real text that
a browser renders with its own fonts, a screen reader can read, and a test can find.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.typing import RcKeyType

OUTCOMES = ("created", "updated", "unchanged", "duplicates", "invalid", "failed")
"""Every row ends in exactly one of these; together they add up to the file's rows."""
OUTCOME_COLORS = {
    "created": "#2e7d32",
    "updated": "#1565c0",
    "unchanged": "#90a4ae",
    "duplicates": "#f9a825",
    "invalid": "#e65100",
    "failed": "#c62828",
}
LINE_COLOR = "#00838f"
TEXT_COLOR = "#263238"
MAX_MARKED_POINTS = 60
"""Above this many batches, dots on every point would blur into the line."""

OUTCOME_CHART_ID = "outcome-chart"
THROUGHPUT_CHART_ID = "throughput-chart"

_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "text.color": TEXT_COLOR,
    "axes.labelcolor": TEXT_COLOR,
    "xtick.color": TEXT_COLOR,
    "ytick.color": TEXT_COLOR,
}


def outcome_chart_svg(counts: Mapping[str, int]) -> str:
    """A horizontal bar per outcome with its count, as an inline-able ``<svg>`` element."""
    label = "Outcomes: " + ", ".join(f"{counts[name]} {name}" for name in OUTCOMES)
    with rc_context({**_STYLE, "svg.hashsalt": OUTCOME_CHART_ID}):
        return _svg(_outcome_figure(counts), OUTCOME_CHART_ID, label)


@dataclass(frozen=True)
class Throughput:
    records: int
    batches: int
    overall: float
    """Records per second over the whole push (total records / total batch seconds)."""
    slowest: float
    fastest: float


def throughput_stats(batches: pl.DataFrame) -> Throughput:
    """The push's totals from push_batches.csv rows; there must be at least one."""
    if batches.is_empty():
        raise ValueError("no pushed batches to summarize")
    records = int(batches["records"].sum())
    seconds = float(batches["seconds"].sum())
    rates = batches["records_per_second"].cast(pl.Float64).to_numpy()
    return Throughput(
        records=records,
        batches=batches.height,
        overall=records / seconds if seconds > 0 else 0.0,
        slowest=float(rates.min()),
        fastest=float(rates.max()),
    )


def throughput_chart_svg(batches: pl.DataFrame) -> str:
    """Records per second for each pushed batch, with the overall rate as a dashed line.

    ``batches`` has the columns of push_batches.csv (``batch``, ``records``, ``seconds``,
    ``records_per_second``) and at least one row; an import that pushed nothing has no chart.
    """
    stats = throughput_stats(batches)
    label = (
        f"Throughput over {stats.batches} batches: {stats.overall:,.0f} records per second "
        f"overall, {stats.slowest:,.0f} to {stats.fastest:,.0f} per batch"
    )
    with rc_context({**_STYLE, "svg.hashsalt": THROUGHPUT_CHART_ID}):
        figure = Figure(figsize=(7.5, 3.2), layout="constrained")
        axes = figure.add_subplot()
        marker = "o" if batches.height <= MAX_MARKED_POINTS else None
        axes.plot(
            batches["batch"].to_numpy(),
            batches["records_per_second"].to_numpy(),
            color=LINE_COLOR,
            marker=marker,
            markersize=4,
            linewidth=1.8,
            label="per batch",
        )
        axes.axhline(
            stats.overall,
            color=TEXT_COLOR,
            linestyle="--",
            linewidth=1,
            label=f"overall {stats.overall:,.0f}",
        )
        axes.set_xlabel("batch")
        axes.set_ylabel("records / s")
        axes.set_ylim(bottom=0)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(f"{stats.records:,} records in {stats.batches:,} batches", loc="left")
        axes.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=2, frameon=False)
        _tidy(axes, "y")
        return _svg(figure, THROUGHPUT_CHART_ID, label)


def _outcome_figure(counts: Mapping[str, int]) -> Figure:
    values = [int(counts[name]) for name in OUTCOMES]
    figure = Figure(figsize=(7.5, 2.9), layout="constrained")
    axes = figure.add_subplot()
    positions = range(len(OUTCOMES))
    bars = axes.barh(
        positions, values, color=[OUTCOME_COLORS[name] for name in OUTCOMES], height=0.7
    )
    axes.bar_label(bars, labels=[f"{value:,}" for value in values], padding=4)
    axes.set_yticks(positions, labels=list(OUTCOMES))
    axes.invert_yaxis()
    axes.set_xlim(0, max(max(values), 1) * 1.15)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(f"{sum(values):,} rows", loc="left")
    _tidy(axes, "x")
    return figure


def _tidy(axes: Axes, grid: Literal["x", "y"]) -> None:
    """Drop the top and right frame lines and add a faint grid; nothing else competes with data."""
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis=grid, color="#eceff1")
    axes.set_axisbelow(True)


def _svg(figure: Figure, chart_id: str, label: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog) carrying an id, role and label."""
    FigureCanvasAgg(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    start = text.index("<svg")
    attributes = f'<svg id="{chart_id}" role="img" aria-label="{html.escape(label)}" '
    return attributes + text[start + len("<svg ") :]
