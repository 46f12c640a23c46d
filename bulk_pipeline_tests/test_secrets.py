"""No token shows in a repr, a log record, a Dagster event, a metadata value or a file.

Real imports run through Dagster with canary tokens: one against the sandbox over loopback, and
one per CRM (HubSpot, Attio) against a hostile server that echoes the Authorization header back
in its error message. Then
every place a token could leak to is searched for the canaries.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest

from bulk_pipeline import config, runs
from bulk_pipeline.defs.assets import import_assets
from bulk_pipeline.defs.partitions import imports_partitions
from bulk_pipeline.defs.resources import CrmResource, default_resources
from bulk_pipeline.imports import register_import
from bulk_pipeline.sandbox.server import SandboxConfig, start_in_thread
from bulk_pipeline.targets.attio import ATTIO
from bulk_pipeline.targets.hubspot import HUBSPOT
from bulk_pipeline_tests.recurring import QUIET, contacts_csv

SANDBOX_CANARY = f"canary-sandbox-{secrets.token_hex(8)}"
HUBSPOT_CANARY = f"canary-hubspot-{secrets.token_hex(8)}"
ATTIO_CANARY = f"canary-attio-{secrets.token_hex(8)}"
CANARIES = (SANDBOX_CANARY, HUBSPOT_CANARY, ATTIO_CANARY)


class _EchoingServer(BaseHTTPRequestHandler):
    """Answers every request with a 400 that quotes the request's Authorization header."""

    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        authorization = self.headers.get("Authorization", "")
        type(self).seen.append(authorization)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps(
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": f"Invalid request from client with header {authorization}",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def hostile_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _leaks(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]


def _materialize(
    instance: dg.DagsterInstance, partition_key: str, resources: dict[str, object]
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        import_assets,
        partition_key=partition_key,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET,
    )


def test_tokens_never_leave_the_environment(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    hostile_server: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = start_in_thread(
        db_path=tmp_path / "crm.sqlite3", token=SANDBOX_CANARY, config=SandboxConfig.unlimited()
    )
    try:
        monkeypatch.setenv(config.SANDBOX_URL_ENV, sandbox.url)
        monkeypatch.setenv(config.SANDBOX_TOKEN_ENV, SANDBOX_CANARY)
        monkeypatch.setenv(HUBSPOT.token_env, HUBSPOT_CANARY)
        monkeypatch.setenv(HUBSPOT.base_url_env, hostile_server)
        monkeypatch.setenv(ATTIO.token_env, ATTIO_CANARY)
        monkeypatch.setenv(ATTIO.base_url_env, hostile_server)
        caplog.set_level(logging.DEBUG)
        resources = default_resources()
        good = register_import(contacts_csv(tmp_path / "good.csv", ["ann@example.com"]))
        hostile = register_import(
            contacts_csv(tmp_path / "hostile.csv", ["bob@example.com"]), target="hubspot"
        )
        hostile_attio = register_import(
            contacts_csv(tmp_path / "hostile attio.csv", ["eve@example.com"]), target="attio"
        )
        instance.add_dynamic_partitions(
            imports_partitions.name or "imports",
            [good.import_id, hostile.import_id, hostile_attio.import_id],
        )

        imported = _materialize(instance, good.import_id, dict(resources))
        refused = _materialize(instance, hostile.import_id, dict(resources))
        refused_attio = _materialize(instance, hostile_attio.import_id, dict(resources))

        assert imported.success
        assert [r["properties"]["email"] for r in sandbox.admin.records("contacts")] == [
            "ann@example.com"
        ]
        assert not refused.success
        assert any(HUBSPOT_CANARY in header for header in _EchoingServer.seen)
        failure = runs.failure_message(instance, refused.run_id)
        assert "Invalid request from client with header" in failure
        assert not refused_attio.success
        assert any(ATTIO_CANARY in header for header in _EchoingServer.seen)
        attio_failure = runs.failure_message(instance, refused_attio.run_id)
        assert "Invalid request from client with header" in attio_failure
        failure += attio_failure

        opened = resources["crm"].open("sandbox")  # type: ignore[attr-defined]
        literal_tokens = {
            HUBSPOT.token_env: HUBSPOT_CANARY,
            ATTIO.token_env: ATTIO_CANARY,
            config.SANDBOX_TOKEN_ENV: SANDBOX_CANARY,
        }
        reprs = [
            repr(resources),
            str(resources["crm"]),
            repr(CrmResource(settings=literal_tokens)),
            str(CrmResource(settings=literal_tokens)),
            repr(opened),
            str(opened),
        ]
        opened.close()
    finally:
        sandbox.stop()

    assert _leaks("\n".join(reprs)) == []
    assert _leaks(failure) == []
    records = [record for run in instance.get_runs() for record in instance.all_logs(run.run_id)]
    assert len(records) > 20
    assert [record for record in records if _leaks(dg.serialize_value(record))] == []
    materializations = [
        record.dagster_event.step_materialization_data.materialization
        for record in records
        if record.dagster_event is not None and record.dagster_event.is_step_materialization
    ]
    metadata = [str(value.value) for m in materializations for value in m.metadata.values()]
    assert metadata
    assert _leaks("\n".join(metadata)) == []
    assert [
        r.getMessage() for r in caplog.records if _leaks(r.getMessage() + str(r.exc_text))
    ] == []
    files = [path for path in config.data_home().rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in files)
    leaking = [
        path for path in files if any(canary.encode() in path.read_bytes() for canary in CANARIES)
    ]
    assert leaking == []
