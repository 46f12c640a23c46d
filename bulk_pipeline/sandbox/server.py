"""The sandbox's HTTP server: HubSpot's paths behind auth, rate limits and fault injection,
plus an admin view under ``/_sandbox/``.

Built on the standard library's threading HTTP server (one thread and one SQLite connection per
client connection, HTTP/1.1 keep-alive) because it lets a request be answered with a cut
connection, the ambiguous outcome importers must survive.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bulk_pipeline.config import SANDBOX_TOKEN_ENV, sandbox_db_path, sandbox_token
from bulk_pipeline.sandbox import launcher
from bulk_pipeline.sandbox.admin import SandboxAdmin
from bulk_pipeline.sandbox.api import CrmApi, Route, parse_route, public
from bulk_pipeline.sandbox.errors import (
    SERVER_ERROR_STATUSES,
    ApiError,
    hubspot_error,
    rate_limited,
    server_error,
    unauthorized,
    validation_error,
)
from bulk_pipeline.sandbox.objects import OBJECT_TYPES
from bulk_pipeline.sandbox.ratelimit import (
    HUBSPOT_DAILY_LIMIT,
    HUBSPOT_RATE_LIMIT,
    HUBSPOT_SEARCH_RATE_LIMIT,
    RateLimit,
    RequestLimits,
)
from bulk_pipeline.sandbox.stats import RequestCounters, SandboxStats
from bulk_pipeline.sandbox.store import Store, StoreConnection

RATE_LIMIT_ENV = "BULK_PIPELINE_SANDBOX_RATE_LIMIT"
"""``MAX/INTERVAL_MS`` (e.g. ``100/10000``), or ``0`` to turn every limit off."""
SEARCH_RATE_LIMIT_ENV = "BULK_PIPELINE_SANDBOX_SEARCH_RATE_LIMIT"

_THREAD_POLL_INTERVAL_S = 0.02
"""How often an in-thread server checks for ``stop()``; tests start and stop many."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxConfig:
    """How HubSpot-like the sandbox behaves. The defaults are HubSpot's Free/Starter limits."""

    rate_limit: RateLimit | None = HUBSPOT_RATE_LIMIT
    """Ten-secondly rolling limit for every call but search; ``None`` for none."""
    search_rate_limit: RateLimit | None = HUBSPOT_SEARCH_RATE_LIMIT
    daily_limit: int | None = HUBSPOT_DAILY_LIMIT
    error_rate: float = 0.0
    """Fraction of calls answered 500/502/503/504 before any work is done."""
    drop_rate: float = 0.0
    """Fraction of calls whose work is done but whose connection is then cut without an answer."""
    latency_ms: float = 0.0
    """Delay added to every call."""
    seed: int | None = None
    """Seed of the fault-injection RNG, for reproducible runs."""

    @classmethod
    def unlimited(cls) -> SandboxConfig:
        return cls(rate_limit=None, search_rate_limit=None, daily_limit=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SandboxConfig:
        """Defaults, changed by ``BULK_PIPELINE_SANDBOX_RATE_LIMIT`` / ``..._SEARCH_RATE_LIMIT``."""
        config = cls()
        if environ.get(RATE_LIMIT_ENV):
            config = config.with_rate_limit(environ[RATE_LIMIT_ENV])
        if environ.get(SEARCH_RATE_LIMIT_ENV):
            config = replace(
                config, search_rate_limit=RateLimit.parse(environ[SEARCH_RATE_LIMIT_ENV])
            )
        return config

    def with_rate_limit(self, spec: str) -> SandboxConfig:
        """``MAX/INTERVAL_MS`` sets the general limit; ``0`` turns off every limit (general,
        search and daily), which is what someone asking for an unlimited sandbox means."""
        limit = RateLimit.parse(spec)
        if limit is None:
            return replace(self, rate_limit=None, search_rate_limit=None, daily_limit=None)
        return replace(self, rate_limit=limit)

    def changed(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """A copy with the admin view's JSON changes applied; refuses unknown or bad values."""
        unknown = set(changes) - set(_SETTINGS)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(
            self, **{name: _SETTINGS[name](name, value) for name, value in changes.items()}
        )

    def as_json(self) -> dict[str, Any]:
        def limit(value: RateLimit | None) -> dict[str, int] | None:
            return (
                None
                if value is None
                else {"max": value.max_requests, "interval_ms": value.interval_ms}
            )

        return {
            **asdict(self),
            "rate_limit": limit(self.rate_limit),
            "search_rate_limit": limit(self.search_rate_limit),
        }


class SandboxServer(ThreadingHTTPServer):
    """One sandbox: a store, a token, a configuration and the counters of what it was asked."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        *,
        db_path: Path,
        token: str | None = None,
        config: SandboxConfig | None = None,
    ) -> None:
        self.store = Store(db_path)
        self.token = token or sandbox_token()
        self.counters = RequestCounters()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._apply(config or SandboxConfig())
        super().__init__(address, SandboxHandler)

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
        self.limits = RequestLimits(config.rate_limit, config.search_rate_limit, config.daily_limit)
        if reseed:
            self._rng = random.Random(config.seed)

    def roll(self, rate: float) -> bool:
        """Whether a fault with this probability happens to the current request."""
        return rate > 0 and self._rng.random() < rate

    def pick_server_error(self) -> int:
        return self._rng.choice(SERVER_ERROR_STATUSES)

    def stats(self, db: StoreConnection) -> SandboxStats:
        return SandboxStats(counts=db.counts(), requests=self.counters.snapshot())

    def reset(self, db: StoreConnection) -> None:
        db.reset()
        self.counters.reset()

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
        self._api: CrmApi | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)
            if self._db is not None:
                self._db.close()

    def version_string(self) -> str:
        return self.server_version

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
        else:
            self._hubspot(parts.path, parts.query, body)

    def _read_body(self) -> bytes | None:
        """The request body, or ``None`` after refusing a body the server cannot delimit."""
        length = self.headers.get("Content-Length") or "0"
        if "chunked" in (self.headers.get("Transfer-Encoding") or "") or not length.isdigit():
            self.close_connection = True
            self._send(411, validation_error("Send the body with a Content-Length.").body)
            return None
        return self.rfile.read(int(length)) if length != "0" else b""

    # HubSpot paths ----------------------------------------------------------------------------

    def _hubspot(self, path: str, query: str, body: bytes) -> None:
        server = self.server
        config = server.config
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000)
        route = parse_route(self.command, path)
        search = route is not None and route.is_search
        if not self._authorized():
            admission = server.limits.admit(search=search, now=time.monotonic(), consume=False)
            self._answer_error(unauthorized(), admission.headers())
            return
        admission = server.limits.admit(search=search, now=time.monotonic())
        headers = admission.headers()
        if admission.refused_by is not None:
            policy = admission.refused_by
            self._answer_error(rate_limited(policy.name, policy.label), headers)
            return
        if server.roll(config.error_rate):
            self._answer_error(server_error(server.pick_server_error()), headers)
            return
        if route is None:
            message = f"No HubSpot CRM endpoint answers {self.command} {path}."
            self._answer_error(hubspot_error(404, "OBJECT_NOT_FOUND", message), headers)
            return
        server.counters.routed(route.name, write=route.is_write)
        status, payload = self._run(route, query, body)
        if server.roll(config.drop_rate):
            server.counters.dropped()
            self._drop()
            return
        server.counters.answered(status)
        self._send(status, payload, headers)

    def _run(self, route: Route, query: str, body: bytes) -> tuple[int, Any]:
        if self._api is None:
            self._api = CrmApi(self.db)
        try:
            return self._api.handle(route, parse_qs(query), body)
        except ApiError as error:
            return error.status, error.body
        except Exception:
            logger.exception("sandbox failed on %s %s", self.command, self.path)
            failure = server_error(500)
            return failure.status, failure.body

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization") or ""
        return hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode())

    def _answer_error(self, error: ApiError, headers: dict[str, str]) -> None:
        self.server.counters.answered(error.status)
        self._send(error.status, error.body, headers)

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
        match self.command, path.split("/"):
            case "GET", [""]:
                self._send_html(_page(server.stats(self.db), server.config))
            case "GET", ["health"]:
                self._send(200, {"ok": True})
            case "GET", ["stats"]:
                self._send(200, server.stats(self.db))
            case "POST", ["reset"]:
                server.reset(self.db)
                self._send(200, {"ok": True})
            case "GET", ["config"]:
                self._send(200, server.config.as_json())
            case "POST", ["config"]:
                self._configure(body)
            case "GET", ["records", type_name] if type_name in OBJECT_TYPES:
                records = self.db.all_active(type_name)
                self._send(200, {"results": [public(record) for record in records]})
            case _:
                self._send(
                    404, {"message": f"No sandbox admin page at {self.command} {self.path}."}
                )

    def _configure(self, body: bytes) -> None:
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            config = self.server.configure(changes)
        except (ValueError, TypeError) as problem:
            error = validation_error(f"Bad sandbox configuration: {problem}")
            self._send(400, error.body)
            return
        self._send(200, config.as_json())

    # Sending ----------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self._send_bytes(status, data, "application/json;charset=utf-8", headers or {})

    def _send_html(self, page: str) -> None:
        self._send_bytes(200, page.encode(), "text/html;charset=utf-8", {})

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


def _rate_limit(name: str, value: Any) -> RateLimit | None:
    """``{"max": n, "interval_ms": n}``, ``"MAX/INTERVAL_MS"``, or 0 / null for no limit."""
    if value in (None, 0):
        return None
    if isinstance(value, Mapping):
        return RateLimit(int(value["max"]), int(value["interval_ms"])).checked()
    return RateLimit.parse(str(value))


def _fraction(name: str, value: Any) -> float:
    fraction = float(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return fraction


def _latency(name: str, value: Any) -> float:
    latency = float(value)
    if latency < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return latency


def _optional_int(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer or null, got {value!r}")
    return value


def _daily_limit(name: str, value: Any) -> int | None:
    return _optional_int(name, value) or None


_SETTINGS: dict[str, Callable[[str, Any], Any]] = {
    "rate_limit": _rate_limit,
    "search_rate_limit": _rate_limit,
    "daily_limit": _daily_limit,
    "error_rate": _fraction,
    "drop_rate": _fraction,
    "latency_ms": _latency,
    "seed": _optional_int,
}
"""How the admin view's JSON values become ``SandboxConfig`` fields."""


def _page(stats: SandboxStats, config: SandboxConfig) -> str:
    """The admin view for people: record counts, request counters, configuration."""

    def rows(values: Mapping[str, Any]) -> str:
        return "".join(
            f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
            for name, value in values.items()
        )

    counts = {name: stats["counts"].get(name, 0) for name in OBJECT_TYPES}
    requests = stats["requests"]
    totals = {name: value for name, value in requests.items() if not isinstance(value, dict)}
    return (
        "<!doctype html><meta charset=utf-8><title>Sandbox CRM</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}"
        "table{margin-bottom:1.5em}</style><h1>Sandbox CRM</h1>"
        f"<h2>Records</h2><table>{rows(counts)}</table>"
        f"<h2>Requests</h2><table>{rows(totals)}</table>"
        f"<h3>By route</h3><table>{rows(requests['by_route'])}</table>"
        f"<h3>By status</h3><table>{rows(requests['by_status'])}</table>"
        f"<h2>Configuration</h2><table>{rows(config.as_json())}</table>"
    )


def start_in_thread(
    *,
    db_path: Path,
    port: int = 0,
    token: str | None = None,
    config: SandboxConfig | None = None,
) -> RunningSandbox:
    """A sandbox on a loopback port of this process (0 picks a free one); ``stop()`` it after.

    ``config`` defaults to HubSpot's limits; tests usually want ``SandboxConfig.unlimited()``.
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
    print(
        f"Sandbox CRM (HubSpot dialect) listening on {server.url}; database {path}; "
        f"bearer token from ${SANDBOX_TOKEN_ENV} or the default.",
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
