"""The HTML report opened from disk in headless Chromium: counts and both charts render.

Needs Debian's ``chromium`` package (marker ``needs_chromium``): without it the tests are skipped
with how to install it, except under ``CI=true``, where they fail, so a CI image that lost the
browser cannot pass silently.
"""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bulk_pipeline.reports import charts
from bulk_pipeline.reports.render import write_reports
from bulk_pipeline_tests.programs import CHROMIUM
from bulk_pipeline_tests.reports.sample_import import COUNTS, ROWS, write_sample_import

pytestmark = pytest.mark.needs_chromium

BROWSER_SECONDS = 120
WINDOW = (1280, 2400)
COLOR_TOLERANCE = 12


class _Dom(HTMLParser):
    """Which elements sit inside each ``<svg id=...>``, and the text of ``id="count-*"`` cells."""

    def __init__(self) -> None:
        super().__init__()
        self.svg_children: dict[str, list[str]] = {}
        self.counts: dict[str, str] = {}
        self.tags: list[str] = []
        self._svg: str | None = None
        self._count: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "svg" and found.get("id"):
            self._svg = str(found["id"])
            self.svg_children[self._svg] = []
        elif self._svg is not None:
            self.svg_children[self._svg].append(tag)
        if (found.get("id") or "").startswith("count-"):
            self._count = str(found["id"]).removeprefix("count-")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None

    def handle_data(self, data: str) -> None:
        if self._count is not None:
            self.counts[self._count] = data
            self._count = None


def _run_chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM.path(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_SECONDS, check=False
    )
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr}"
    return result


def _pixels_near(image: Image.Image, hex_color: str) -> int:
    """How many pixels are within ``COLOR_TOLERANCE`` of the color on every channel."""
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int(np.all(np.abs(pixels - target) <= COLOR_TOLERANCE, axis=-1).sum())


@pytest.fixture
def report(tmp_path: Path) -> Path:
    html_path, _ = write_reports(write_sample_import(tmp_path / "home"))
    return html_path


def test_counts_and_both_charts_are_in_the_rendered_dom(report: Path, tmp_path: Path) -> None:
    result = _run_chromium(tmp_path / "profile-dom", "--dump-dom", report.as_uri())

    dom = _Dom()
    dom.feed(result.stdout)
    assert dom.counts == {
        **{name: f"{count:,}" for name, count in COUNTS.items()},
        "rows": f"{ROWS:,}",
    }
    for chart_id in (charts.OUTCOME_CHART_ID, charts.THROUGHPUT_CHART_ID):
        children = dom.svg_children.get(chart_id)
        assert children, f"no <svg id={chart_id}> in the rendered page"
        assert "path" in children
        assert "text" in children
    assert "script" not in dom.tags, "a rejected row's <script> must stay text"
    assert re.search(r"1,291 records in 3 batches", result.stdout)


def test_both_charts_are_painted(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _run_chromium(
        tmp_path / "profile-shot",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        report.as_uri(),
    )

    with Image.open(shot) as image:
        image.load()
    assert _pixels_near(image, charts.OUTCOME_COLORS["created"]) > 2000, "no 'created' bar"
    assert _pixels_near(image, charts.LINE_COLOR) > 100, "no throughput line"
