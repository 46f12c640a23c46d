"""What a CRM dialect is to the sandbox: the contract between the shared server and one vendor API.

The server (``server.py``) owns what every dialect shares: HTTP, the SQLite file, fault injection
(latency, 5xx answers, connections cut after the work), request counters and the admin view. A
dialect (``hubspot/``, ``pipedrive/``) owns what differs between vendors: its paths, how it checks
credentials, its limits and the headers that describe them, its error bodies, its store tables and
its operations. The server asks a dialect, for each request, in this order:

1. ``route``: which operation the method and path name (``None`` when the vendor has none);
2. ``gate``: credentials and limits, which may refuse the call, and the headers every answer of
   the dialect carries;
3. ``server_error`` / ``no_route``: the vendor's body for an injected 5xx or an unknown path;
4. ``open_api(...).handle``: the operation itself, on the client connection's store connection.

A new dialect is a package with one ``Dialect`` subclass, registered in ``dialects.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from bulk_pipeline.sandbox.config import SandboxConfig
    from bulk_pipeline.sandbox.store import StoreConnection

JSON_CONTENT = "application/json;charset=utf-8"
HTML_CONTENT = "text/html;charset=utf-8"

Answer = tuple[int, Any]
"""An HTTP status and the JSON body (``None`` for no body)."""
Query = Mapping[str, Sequence[str]]


class ApiError(Exception):
    """An error answer: the status, the body in the vendor's shape, and extra headers."""

    def __init__(
        self,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = JSON_CONTENT,
    ) -> None:
        super().__init__(body.get("message", "") if isinstance(body, dict) else "")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.content_type = content_type


class Headers(Protocol):
    def get(self, name: str, default: None = None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One API request as the dialects see it."""

    method: str
    path: str
    query: Query
    headers: Headers
    body: bytes


class Route(Protocol):
    """An operation a dialect recognised; the stats count calls by ``name``."""

    @property
    def name(self) -> str: ...

    @property
    def is_write(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Gate:
    """What a dialect's credentials check and limits decided about one request."""

    headers: dict[str, str] = field(default_factory=dict)
    """Sent with the answer, whatever it is (rate-limit headers, for instance)."""
    refusal: ApiError | None = None
    """The answer instead of the operation (401, 429, a block), or ``None`` to go ahead."""


class DialectApi(Protocol):
    """The operations of one dialect on one store connection (one per client connection)."""

    def handle(self, route: Any, request: Request) -> Answer: ...


class Dialect(ABC):
    """One vendor API served by the sandbox. Instances live as long as the server."""

    name: ClassVar[str]
    """Short name used in stats, admin paths and configuration (``hubspot``, ``pipedrive``)."""
    title: ClassVar[str]
    """How people call the API (``HubSpot CRM v3``)."""
    prefixes: ClassVar[tuple[str, ...]]
    """Path prefixes the dialect answers; the server picks the dialect by the longest match."""
    schema: ClassVar[str]
    """SQL creating the dialect's tables (``IF NOT EXISTS``); run once per store."""
    record_types: ClassVar[tuple[str, ...]]
    """The types ``counts`` and ``records`` know, in the order people read them."""

    def __init__(self, token: str) -> None:
        self.token = token

    @abstractmethod
    def apply(self, config: SandboxConfig) -> None:
        """Take the dialect's settings from a new configuration; rolling windows start empty."""

    @abstractmethod
    def route(self, method: str, path: str) -> Route | None:
        """The operation a method and path name, or ``None`` when the vendor has no such one."""

    @abstractmethod
    def gate(self, request: Request, route: Route | None, now: float) -> Gate:
        """Check credentials and limits at monotonic time ``now``; a call let through is
        counted against the limits."""

    @abstractmethod
    def server_error(self, status: int) -> ApiError:
        """The vendor's body for an injected 500/502/503/504."""

    @abstractmethod
    def no_route(self, request: Request) -> ApiError:
        """The vendor's answer for a path it does not serve."""

    @abstractmethod
    def open_api(self, conn: StoreConnection) -> DialectApi:
        """The operations on one store connection."""

    @abstractmethod
    def counts(self, conn: StoreConnection) -> dict[str, int]:
        """Active records per type (types without records are absent)."""

    @abstractmethod
    def records(self, conn: StoreConnection, type_name: str) -> list[dict[str, Any]] | None:
        """Every active record of a type as the API shows it, or ``None`` for an unknown type."""

    @abstractmethod
    def reset(self, conn: StoreConnection) -> None:
        """Delete every record (and put back what a fresh account has)."""

    @abstractmethod
    def seed(self, conn: StoreConnection) -> None:
        """Put in what a fresh account has, if missing; run when the store opens."""

    @abstractmethod
    def reset_limits(self) -> None:
        """Empty rolling windows, daily counters and blocks."""

    def limits_state(self) -> dict[str, Any]:
        """What the admin view shows about the dialect's limits now; nothing by default."""
        return {}

    def admin(
        self, conn: StoreConnection, method: str, parts: Sequence[str], body: bytes
    ) -> Answer | None:
        """Dialect-specific admin actions under ``/_sandbox/<name>/``; ``None`` if unknown."""
        return None
