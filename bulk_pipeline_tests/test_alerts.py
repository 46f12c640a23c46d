"""Failure alerts: a failing run posts exactly one short message to a local webhook receiver.

The sensor is ticked the way the daemon ticks it (its cursor carried from tick to tick), after a
real import fails through the command line on the persistent instance.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest

from bulk_pipeline import alerts, cli, config
from bulk_pipeline.definitions import defs
from bulk_pipeline.defs.sensors import alert_on_run_failure
from bulk_pipeline.instance import open_instance
from bulk_pipeline.sandbox.server import RunningSandbox


class _Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).posts.append(json.loads(self.rfile.read(length)))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    """A Slack-like incoming webhook on 127.0.0.1; the secret part of its path is its token."""
    _Receiver.posts = []
    _Receiver.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret-hook-token"
    finally:
        server.shutdown()
        server.server_close()


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return alert_on_run_failure.evaluate_tick(context).cursor


def test_a_failing_import_posts_exactly_one_alert(
    tmp_path: Path,
    sandbox: RunningSandbox,
    webhook: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(config.SANDBOX_URL_ENV, sandbox.url)
    monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, sandbox.token)
    monkeypatch.setenv(alerts.WEBHOOK_ENV, webhook)
    monkeypatch.delenv(alerts.WEBSERVER_URL_ENV, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    ok = tmp_path / "fine.csv"
    ok.write_text("Email\nfine@example.com\n", encoding="utf-8")
    broken = tmp_path / "people.csv"
    broken.write_text("First Name,Last Name\nAda,Lovelace\n", encoding="utf-8")
    with open_instance() as instance:
        cursor = _tick(instance, None)

        assert cli.main(["import", str(ok), "--no-progress"]) == 0
        assert cli.main(["import", str(broken), "--entity", "contacts", "--no-progress"]) == 1
        cursor = _tick(instance, cursor)
        cursor = _tick(instance, cursor)
        _tick(instance, cursor)

        (failed_run,) = instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])
        )
    assert len(_Receiver.posts) == 1
    text = _Receiver.posts[0]["text"]
    assert text.startswith("bulk_pipeline: import people-")
    assert "(people.csv) failed" in text
    assert "email" in text
    assert f"http://127.0.0.1:3000/runs/{failed_run.run_id}" in text
    assert "secret-hook-token" not in text


def test_without_a_webhook_nothing_is_posted(webhook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    run = dg.DagsterRun(job_name="import_job", run_id="0" * 36, tags={"dagster/partition": "x"})
    with open_instance() as instance:
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_FAILURE.value, job_name="import_job"
            ),
        ).for_run_failure()

        assert isinstance(alert_on_run_failure(context), dg.SkipReason)
    assert _Receiver.posts == []


def test_the_message_names_a_sync_day_and_uses_the_configured_ui_address() -> None:
    failed = alerts.FailedRun(
        run_id="abcdef12-0000-0000-0000-000000000000",
        job_name="sync_job",
        kind="sync",
        partition_key="2026-05-02",
        error="nightly sync of 2026-05-02: source crm failed: " + "x" * 2000,
    )

    message = alerts.alert_message(failed, {alerts.WEBSERVER_URL_ENV: "https://dagster.example/"})

    text = message["text"]
    assert text.startswith("bulk_pipeline: nightly sync of 2026-05-02 failed\n")
    assert "source crm failed" in text
    assert "https://dagster.example/runs/abcdef12-0000-0000-0000-000000000000" in text
    assert len(text) < 900


def test_a_refused_alert_says_so_without_the_webhook_address(webhook: str) -> None:
    _Receiver.status = 404
    alerts.webhook_url({alerts.WEBHOOK_ENV: webhook})

    with pytest.raises(alerts.AlertDeliveryError) as raised:
        alerts.post_alert(webhook, {"text": "hello"})

    assert "HTTP 404" in str(raised.value)
    assert "secret-hook-token" not in str(raised.value)
