"""Serve the report folders over loopback HTTP, so the UI's report links open in a browser.

A browser does not follow a ``file://`` link from a page served over HTTP, so a path in the
Dagster UI is something to copy, not to click. ``bulk-pipeline dev`` serves
``<data home>/reports/`` next to the UI (by default on the UI's port + 1), read-only and on
127.0.0.1 only, and the results metadata links each import's ``report.html`` there.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bulk_pipeline import config

REPORTS_URL_ENV = "BULK_PIPELINE_REPORTS_URL"
DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"
"""Where ``make dev`` (UI on port 3000) serves the reports."""


def report_url(import_id: str) -> str:
    """The address of an import's HTML report on the report server."""
    base = (os.environ.get(REPORTS_URL_ENV) or DEFAULT_REPORTS_URL).rstrip("/")
    return f"{base}/{import_id}/report.html"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not news; the UI's terminal stays readable."""


@dataclass
class ReportServer:
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """For the processes started beside it (the UI's runs), so their links point here."""
        return {REPORTS_URL_ENV: self.url}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_reports_in_thread(port: int) -> ReportServer:
    """Serve ``<data home>/reports`` on 127.0.0.1:``port`` (any free port if that one is taken)."""
    folder = config.data_home() / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    handler = partial(_QuietHandler, directory=str(folder))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="reports")
    thread.start()
    return ReportServer(server, thread)
