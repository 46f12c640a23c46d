"""report.html and report.md: counts, charts, reasons and samples, with user text kept inert."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import polars as pl
import pytest
from matplotlib._pylab_helpers import Gcf

from bulk_pipeline.reports import charts
from bulk_pipeline.reports.rejected import write_rejected_csv
from bulk_pipeline.reports.render import (
    NOTHING_PUSHED,
    SAMPLE_ROWS,
    read_report_data,
    reason_kind,
    top_reasons,
    write_reports,
)
from bulk_pipeline_tests.reports.sample_import import (
    COUNTS,
    HOSTILE_FILE,
    HOSTILE_NAME,
    ROWS,
    rejected_rows,
    write_sample_import,
)


class _Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _count_cell(page: str, name: str) -> str:
    match = re.search(rf'id="count-{name}">([^<]*)<', page)
    assert match, f"no count cell for {name}"
    return match.group(1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_sample_import(tmp_path / "home")


def test_html_shows_facts_counts_both_charts_and_links(folder: Path) -> None:
    html_path, md_path = write_reports(folder)

    assert (html_path, md_path) == (folder / "report.html", folder / "report.md")
    page = html_path.read_text("utf-8")
    for name, count in COUNTS.items():
        assert _count_cell(page, name) == f"{count:,}"
    assert _count_cell(page, "rows") == f"{ROWS:,}"
    svgs = {attrs.get("id"): attrs for tag, attrs in _tags(page) if tag == "svg"}
    assert set(svgs) == {charts.OUTCOME_CHART_ID, charts.THROUGHPUT_CHART_ID}
    assert "1234 created" in str(svgs[charts.OUTCOME_CHART_ID]["aria-label"])
    links = {attrs["href"] for tag, attrs in _tags(page) if tag == "a"}
    assert links == {"summary.json", "rejected.csv", "duplicates.csv"}
    for text in (
        "contacts_march-0123456789",
        "2025-03-04 10:13:00 UTC",
        "2025-03-04 10:15:30 UTC",
        "2 min 30 s",
        "1,297 of 1,305 rows are in sandbox",
        "8 were not sent: 3 duplicates, 4 invalid, 1 failed",
        "1,291 records in 3 batches, 734 records/s overall",
    ):
        assert text in page


def test_user_text_cannot_become_markup(folder: Path) -> None:
    html_path, md_path = write_reports(folder)
    page = html_path.read_text("utf-8")

    tags = {tag for tag, _ in _tags(page)}
    assert not tags & {"script", "img", "b", "i"}
    assert HOSTILE_NAME not in page
    assert html.escape(HOSTILE_NAME) in page
    assert "contacts &lt;img src=x onerror=alert(1)&gt; march.csv" in page
    assert "default-src 'none'" in page
    markdown = md_path.read_text("utf-8")
    assert "<script" not in markdown
    assert "<img" not in markdown
    assert "&lt;script&gt;" in markdown
    assert HOSTILE_FILE not in markdown


def test_markdown_tables_keep_their_shape(folder: Path) -> None:
    _, md_path = write_reports(folder)
    markdown = md_path.read_text("utf-8")

    sample = markdown.split("## Sample of rejected rows")[1].split("##")[0]
    table = [line for line in sample.splitlines() if line.startswith("|")]
    assert len(table) == 2 + rejected_rows().height
    assert {len(re.findall(r"(?<!\\)\|", line)) for line in table} == {5}
    assert "Eve<br>Newline" in sample
    assert "| created | 1,234 |" in markdown
    assert "[rejected.csv](rejected.csv)" in markdown


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("email 'x@' is not a valid email address", "email '…' is not a valid email address"),
        ("name 'O'Brien' is too long", "name '…' is too long"),
        ("email is missing", "email is missing"),
        (
            "email 'a; b' is not valid; phone '1' is bad",
            "email '…' is not valid; phone '…' is bad",
        ),
        ('RATE_LIMIT: "too many requests" (429)', "RATE_LIMIT: '…' (429)"),
        ("website 'x.'", "website '…'"),
    ],
)
def test_reason_kind_strips_quoted_values(reason: str, kind: str) -> None:
    frame = pl.DataFrame({"reason": [reason]})
    assert frame.select(reason_kind(pl.col("reason"))).item() == kind


def test_top_reasons_count_each_problem_of_a_line(folder: Path) -> None:
    reasons = top_reasons(folder / "rejected.csv")

    assert reasons.rows() == [
        ("email '…' is not a valid email address", 3),
        ("VALIDATION_ERROR: property '…' rejected by the CRM", 1),
        ("name '…' is too long", 1),
        ("phone '…' is not a valid phone number", 1),
    ]
    assert top_reasons(folder / "rejected.csv", limit=1).height == 1


def test_sample_is_capped_and_long_cells_are_cut(tmp_path: Path) -> None:
    folder = write_sample_import(tmp_path / "home")
    many = pl.DataFrame(
        {
            "E-mail": ["z" * 500] * 30,
            "_line": list(range(2, 32)),
            "reason": ["email 'z' is not a valid email address"] * 30,
        }
    )
    write_rejected_csv(folder / "rejected.csv", many)

    data = read_report_data(folder)
    page = write_reports(folder)[0].read_text("utf-8")

    assert data.sample.height == SAMPLE_ROWS
    assert data.sample.columns == ["line", "reason", "E-mail"]
    assert "z" * 99 + "…" in page
    assert "z" * 100 not in page
    assert ("email '…' is not a valid email address", 30) in data.reasons.rows()


def test_no_rejects_and_nothing_pushed_are_said_not_failed(tmp_path: Path) -> None:
    counts = dict.fromkeys(COUNTS, 0) | {"unchanged": 10}
    folder = write_sample_import(tmp_path / "home", batches=[], counts=counts)
    write_rejected_csv(folder / "rejected.csv", rejected_rows().head(0))

    page = write_reports(folder)[0].read_text("utf-8")

    svg_ids = {attrs.get("id") for tag, attrs in _tags(page) if tag == "svg"}
    assert svg_ids == {charts.OUTCOME_CHART_ID}
    assert NOTHING_PUSHED in page
    assert "No rows were rejected." in page
    assert 'id="sample"' not in page
    assert "every row made it" in page


def test_missing_batches_file_means_nothing_pushed(folder: Path) -> None:
    (folder / "push_batches.csv").unlink()
    (folder / "duplicates.csv").unlink()

    html_path, md_path = write_reports(folder)

    assert NOTHING_PUSHED in html_path.read_text("utf-8")
    assert NOTHING_PUSHED in md_path.read_text("utf-8")
    assert "duplicates.csv" not in html_path.read_text("utf-8")


def test_start_falls_back_to_the_first_stage(folder: Path) -> None:
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text("utf-8"))
    del summary["started_at"]
    summary_path.write_text(json.dumps(summary), "utf-8")

    page = write_reports(folder)[0].read_text("utf-8")

    assert "2025-03-04 10:13:00 UTC" in page
    assert "2 min 30 s" in page


def test_no_summary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has not finished"):
        write_reports(tmp_path)


def test_charts_leave_no_pyplot_figures_or_settings_behind() -> None:
    before = dict(matplotlib.rcParams)
    batches = pl.DataFrame(
        {
            "batch": [1, 2],
            "records": [10, 10],
            "seconds": [1.0, 2.0],
            "records_per_second": [10.0, 5.0],
        }
    )

    first = charts.outcome_chart_svg(COUNTS)
    line = charts.throughput_chart_svg(batches)

    assert Gcf.get_num_fig_managers() == 0
    assert dict(matplotlib.rcParams) == before
    assert first == charts.outcome_chart_svg(COUNTS), "the same counts give the same SVG"
    assert first.startswith('<svg id="outcome-chart" role="img"')
    assert line.startswith('<svg id="throughput-chart" role="img"')
    assert ">1,234</text>" in first, "counts stay text the browser renders"
    with pytest.raises(ValueError, match="no pushed batches"):
        charts.throughput_chart_svg(batches.head(0))
