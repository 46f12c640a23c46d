"""What the Dagster UI shows of an import's results: counts and outcome bars in place, and a
report link that opens, served over loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import httpx
import pytest

from bulk_pipeline.reports.metadata import INLINE_MARKDOWN_CHARS, results_metadata
from bulk_pipeline.reports.render import write_reports
from bulk_pipeline.reports.server import REPORTS_URL_ENV, report_url, serve_reports_in_thread
from bulk_pipeline_tests.reports.sample_import import COUNTS, write_sample_import

IMPORT_ID = "contacts_march-0123456789"


def test_counts_and_outcome_bars_show_without_expanding(data_home: Path) -> None:
    folder = write_sample_import(data_home, IMPORT_ID)
    summary = json.loads((folder / "summary.json").read_text("utf-8"))
    summary["unmapped_columns"] = [f"Extra column number {i}" for i in range(200)]

    metadata = results_metadata(summary, folder / "report.html")

    for name, count in COUNTS.items():
        assert metadata[name] == dg.MetadataValue.int(count)
    markdown = metadata["summary"].value
    assert len(markdown) < INLINE_MARKDOWN_CHARS, "the UI shows shorter markdown in place"
    assert "| created | 1,234 | 95% | `███████████████████` |" in markdown
    assert "| failed | 1 | 0% | `█` |" in markdown, "a non-zero outcome always shows a bar"
    assert "![" not in markdown, "no image that would push it over the limit"


def test_the_report_link_opens_the_report_on_the_report_server(
    data_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_sample_import(data_home, IMPORT_ID)
    html, _ = write_reports(folder)
    server = serve_reports_in_thread(0)
    try:
        monkeypatch.setenv(REPORTS_URL_ENV, server.url)
        summary = json.loads((folder / "summary.json").read_text("utf-8"))

        link = results_metadata(summary, html)["report"]

        assert link == dg.MetadataValue.url(report_url(IMPORT_ID))
        answer = httpx.get(link.value, trust_env=False)
        assert answer.status_code == 200
        assert answer.text == html.read_text("utf-8")
        outside = httpx.get(f"{server.url}/../staging.duckdb", trust_env=False)
        assert outside.status_code == 404
    finally:
        server.stop()
