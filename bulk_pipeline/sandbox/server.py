"""The sandbox's HTTP server: every dialect's paths behind its credentials, limits and the shared
fault injection, plus an admin view under ``/_sandbox/``.

Built on the standard library's threading HTTP server (one thread and one SQLite connection per
client connection, HTTP/1.1 keep-alive) because it lets a request be answered with a cut
connection, the ambiguous outcome importers must survive. Which dialect answers a request is
decided by its path prefix (``dialects.py``); what a dialect must provide is in ``dialect.py``.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import closing, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bulk_pipeline.config import SANDBOX_TOKEN_ENV, sandbox_db_path, sandbox_token
from bulk_pipeline.redaction import redact
from bulk_pipeline.sandbox import launcher
from bulk_pipeline.sandbox.admin import SandboxAdmin
from bulk_pipeline.sandbox.config import RATE_LIMIT_ENV, SEARCH_RATE_LIMIT_ENV, SandboxConfig
from bulk_pipeline.sandbox.dialect import (
    HTML_CONTENT,
    JSON_CONTENT,
    ApiError,
    Dialect,
    DialectApi,
    Request,
)
from bulk_pipeline.sandbox.dialects import DIALECTS, DialectRouter
from bulk_pipeline.sandbox.stats import DialectStats, RequestCounters, SandboxStats
from bulk_pipeline.sandbox.store import Store, StoreConnection

__all__ = [
    "RATE_LIMIT_ENV",
    "SEARCH_RATE_LIMIT_ENV",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxServer",
    "serve",
    "start_in_thread",
]

SERVER_ERROR_STATUSES = (500, 502, 503, 504)
_THREAD_POLL_INTERVAL_S = 0.02
"""How often an in-thread server checks for ``stop()``; tests start and stop many."""

logger = logging.getLogger(__name__)


class SandboxServer(ThreadingHTTPServer):
    """One sandbox: a store, a token, the dialects, a configuration and the request counters."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        *,
        db_path: Path,
        token: str | None = None,
        config: SandboxConfig | None = None,
    ) -> None:
        self.token = token or sandbox_token()
        self.router = DialectRouter([dialect(self.token) for dialect in DIALECTS])
        self.store = Store(db_path, [dialect.schema for dialect in self.dialects])
        with closing(self.store.open()) as conn:
            for dialect in self.dialects:
                dialect.seed(conn)
        self.counters = RequestCounters()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._apply(config or SandboxConfig())
        super().__init__(address, SandboxHandler)

    @property
    def dialects(self) -> list[Dialect]:
        return list(self.router.dialects.values())

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup of the host, which can stall."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = (
            str(self.server_address[0]),
            int(self.server_address[1]),
        )

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.server_name in ("", "0.0.0.0") else self.server_name
        return f"http://{host}:{self.server_port}"

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """Apply changes at runtime; rate-limit windows start empty again."""
        with self._lock:
            self._apply(self._config.changed(changes), reseed="seed" in changes)
            return self._config

    def _apply(self, config: SandboxConfig, *, reseed: bool = True) -> None:
        self._config = config
        for dialect in self.dialects:
            dialect.apply(config)
        if reseed:
            self._rng = random.Random(config.seed)

    def roll(self, rate: float) -> bool:
        """Whether a fault with this probability happens to the current request."""
        return rate > 0 and self._rng.random() < rate

    def pick_server_error(self) -> int:
        return self._rng.choice(SERVER_ERROR_STATUSES)

    def stats(self, db: StoreConnection) -> SandboxStats:
        dialects = {
            dialect.name: DialectStats(
                counts=dialect.counts(db),
                requests=self.counters.snapshot_of(dialect.name),
                limits=dialect.limits_state(),
            )
            for dialect in self.dialects
        }
        return SandboxStats(
            counts=dialects["hubspot"]["counts"],
            requests=self.counters.snapshot(),
            dialects=dialects,
        )

    def reset(self, db: StoreConnection) -> None:
        """Delete every record of every dialect, zero the counters, empty the limits."""
        for dialect in self.dialects:
            dialect.reset(db)
        self.reset_limits()
        self.counters.reset()

    def reset_limits(self) -> None:
        with self._lock:
            for dialect in self.dialects:
                dialect.reset_limits()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut the kept-alive client connections, so that their threads end."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def start_in_thread(self) -> RunningSandbox:
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": _THREAD_POLL_INTERVAL_S},
            name=f"sandbox-{self.server_port}",
        )
        thread.daemon = True
        thread.start()
        return RunningSandbox(self, thread, SandboxAdmin(self.url))


@dataclass
class RunningSandbox:
    """A sandbox serving from a background thread of this process."""

    server: SandboxServer
    thread: threading.Thread
    admin: SandboxAdmin

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token

    @property
    def db_path(self) -> Path:
        return self.server.store.path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.thread.join()
        self.admin.close()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class SandboxHandler(BaseHTTPRequestHandler):
    """Answers the requests of one client connection, with its own store connection."""

    server: SandboxServer
    protocol_version = "HTTP/1.1"
    server_version = "bulk-pipeline-sandbox"
    wbufsize = 64 * 1024
    """Buffered, so that headers and body leave in one packet."""
    disable_nagle_algorithm = True
    timeout = 300

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)
        self._db: StoreConnection | None = None
        self._apis: dict[str, DialectApi] = {}

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)
            if self._db is not None:
                self._db.close()

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, on the sandbox's clock (which may be set off the real time)."""
        when = time.time() + self.server.config.clock_offset_s if timestamp is None else timestamp
        return super().date_time_string(when)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a line per request would cost more than the request."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    @property
    def db(self) -> StoreConnection:
        if self._db is None:
            self._db = self.server.store.open()
        return self._db

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        parts = urlsplit(self.path)
        if parts.path == "/_sandbox" or parts.path.startswith("/_sandbox/"):
            self._admin(parts.path.removeprefix("/_sandbox").strip("/"), body)
            return
        dialect = self.server.router.for_path(parts.path)
        if dialect is None:
            self.server.counters.answered(None, 404)
            names = ", ".join(f"{d.title} ({', '.join(d.prefixes)})" for d in self.server.dialects)
            self._send(404, {"message": f"No sandbox dialect serves {parts.path}; try {names}."})
            return
        request = Request(self.command, parts.path, parse_qs(parts.query), self.headers, body)
        self._serve(dialect, request)

    def _read_body(self) -> bytes | None:
        """The request body, or ``None`` after refusing a body the server cannot delimit."""
        length = self.headers.get("Content-Length") or "0"
        if "chunked" in (self.headers.get("Transfer-Encoding") or "") or not length.isdigit():
            self.close_connection = True
            self._send(411, {"message": "Send the body with a Content-Length."})
            return None
        return self.rfile.read(int(length)) if length != "0" else b""

    # API paths --------------------------------------------------------------------------------

    def _serve(self, dialect: Dialect, request: Request) -> None:
        """Latency, then the dialect's gate, then an injected 5xx, then the operation, then
        perhaps a cut connection: the order in which real CRMs fail."""
        server = self.server
        config = server.config
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000)
        route = dialect.route(request.method, request.path)
        gate = dialect.gate(request, route, time.monotonic())
        headers = gate.headers
        if gate.refusal is not None:
            self._answer_error(dialect, gate.refusal, headers)
            return
        if server.roll(config.error_rate):
            self._answer_error(dialect, dialect.server_error(server.pick_server_error()), headers)
            return
        if route is None:
            self._answer_error(dialect, dialect.no_route(request), headers)
            return
        server.counters.routed(dialect.name, route.name, write=route.is_write)
        status, payload = self._run(dialect, route, request)
        if server.roll(config.drop_rate):
            server.counters.dropped(dialect.name)
            self._drop()
            return
        server.counters.answered(dialect.name, status)
        self._send(status, payload, headers)

    def _run(self, dialect: Dialect, route: Any, request: Request) -> tuple[int, Any]:
        api = self._apis.get(dialect.name)
        if api is None:
            api = self._apis[dialect.name] = dialect.open_api(self.db)
        try:
            return api.handle(route, request)
        except ApiError as error:
            return error.status, error.body
        except Exception:
            logger.exception("sandbox failed on %s %s", self.command, redact(self.path))
            failure = dialect.server_error(500)
            return failure.status, failure.body

    def _answer_error(self, dialect: Dialect, error: ApiError, headers: dict[str, str]) -> None:
        self.server.counters.answered(dialect.name, error.status)
        if error.content_type == HTML_CONTENT:
            self._send_bytes(error.status, str(error.body).encode(), HTML_CONTENT, headers)
            return
        self._send(error.status, error.body, {**headers, **error.headers})

    def _drop(self) -> None:
        """Close the connection without a word, after the work was done."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # Admin view -------------------------------------------------------------------------------

    def _admin(self, path: str, body: bytes) -> None:
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._send(403, {"message": "The sandbox admin view answers loopback clients only."})
            return
        server = self.server
        dialects = server.router.dialects
        match self.command, path.split("/"):
            case "GET", [""]:
                self._send_html(_page(server.stats(self.db), server.dialects, server.config))
            case "GET", ["health"]:
                self._send(200, {"ok": True})
            case "GET", ["stats"]:
                self._send(200, server.stats(self.db))
            case "POST", ["reset"]:
                server.reset(self.db)
                self._send(200, {"ok": True})
            case "POST", ["limits", "reset"]:
                server.reset_limits()
                self._send(200, {"ok": True})
            case "GET", ["config"]:
                self._send(200, server.config.as_json())
            case "POST", ["config"]:
                self._configure(body)
            case "GET", ["records", type_name]:
                self._records(dialects["hubspot"], type_name)
            case "GET", ["records", name, type_name] if name in dialects:
                self._records(dialects[name], type_name)
            case method, [name, *rest] if name in dialects:
                answer = dialects[name].admin(self.db, method, rest, body)
                if answer is None:
                    self._admin_not_found()
                else:
                    self._send(*answer)
            case _:
                self._admin_not_found()

    def _records(self, dialect: Dialect, type_name: str) -> None:
        records = dialect.records(self.db, type_name)
        if records is None:
            self._admin_not_found()
        else:
            self._send(200, {"results": records})

    def _admin_not_found(self) -> None:
        self._send(404, {"message": f"No sandbox admin page at {self.command} {self.path}."})

    def _configure(self, body: bytes) -> None:
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            config = self.server.configure(changes)
        except (ValueError, TypeError, KeyError) as problem:
            self._send(400, {"message": f"Bad sandbox configuration: {problem}"})
            return
        self._send(200, config.as_json())

    # Sending ----------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self._send_bytes(status, data, JSON_CONTENT, headers or {})

    def _send_html(self, page: str) -> None:
        self._send_bytes(200, page.encode(), HTML_CONTENT, {})

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)


def _page(stats: SandboxStats, dialects: list[Dialect], config: SandboxConfig) -> str:
    """The admin view for people: per dialect, record counts, request counters and limits."""

    def rows(values: Mapping[str, Any]) -> str:
        return "".join(
            f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
            for name, value in values.items()
        )

    def section(dialect: Dialect) -> str:
        own = stats["dialects"][dialect.name]
        counts = {name: own["counts"].get(name, 0) for name in dialect.record_types}
        requests = own["requests"]
        totals = {name: value for name, value in requests.items() if not isinstance(value, dict)}
        limits = f"<h3>Limits</h3><table>{rows(own['limits'])}</table>" if own["limits"] else ""
        return (
            f"<h2>{html.escape(dialect.title)}</h2>"
            f"<p>{html.escape(', '.join(dialect.prefixes))}</p>"
            f"<h3>Records</h3><table>{rows(counts)}</table>"
            f"<h3>Requests</h3><table>{rows(totals)}</table>"
            f"<h3>By route</h3><table>{rows(requests['by_route'])}</table>"
            f"<h3>By status</h3><table>{rows(requests['by_status'])}</table>{limits}"
        )

    return (
        "<!doctype html><meta charset=utf-8><title>Sandbox CRM</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}"
        "table{margin-bottom:1.5em}</style><h1>Sandbox CRM</h1>"
        + "".join(section(dialect) for dialect in dialects)
        + f"<h2>Configuration</h2><table>{rows(config.as_json())}</table>"
    )


def start_in_thread(
    *,
    db_path: Path,
    port: int = 0,
    token: str | None = None,
    config: SandboxConfig | None = None,
) -> RunningSandbox:
    """A sandbox on a loopback port of this process (0 picks a free one); ``stop()`` it after.

    ``config`` defaults to each vendor's limits; tests usually want ``SandboxConfig.unlimited()``.
    """
    server = SandboxServer(("127.0.0.1", port), db_path=db_path, token=token, config=config)
    return server.start_in_thread()


def serve(
    port: int = 8765,
    host: str = "127.0.0.1",
    *,
    db_path: Path | None = None,
    config: SandboxConfig | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM).

    A server on the data home's own database announces itself in ``<data home>/sandbox/
    server.json`` so that ``ensure_sandbox()`` finds and reuses it.
    """
    path = (db_path or sandbox_db_path()).resolve()
    server = SandboxServer(
        (host, port),
        db_path=path,
        config=config if config is not None else SandboxConfig.from_env(),
    )
    announced = launcher.publish(server.url) if path == sandbox_db_path().resolve() else None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_quietly)
    titles = ", ".join(dialect.title for dialect in server.dialects)
    print(
        f"Sandbox CRM ({titles}) listening on {server.url}; database {path}; "
        f"token from ${SANDBOX_TOKEN_ENV} or the default.",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if announced is not None:
            launcher.withdraw(announced)


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
