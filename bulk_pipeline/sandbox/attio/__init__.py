"""The Attio dialect: REST API v2 (``/v2/...``) as Attio answers it.

Bearer token; records of people (``email_addresses`` unique), companies (``domains`` unique) and
deals (no unique attribute) whose values are typed arrays of value objects; create (refusing a
unique value that exists), assert by a unique attribute, ``PATCH`` (adds to multiselect values)
and ``PUT`` (overwrites them), deletes for good; attributes with select options and statuses;
record references; lists and entries; notes; tasks linked to records; reads and writes limited
separately, 429 with an HTTP-date ``Retry-After``. Its settings are ``SandboxConfig.attio``
(``settings.py``).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from bulk_pipeline.sandbox.attio.api import AttioApi, AttioRoute, parse_route
from bulk_pipeline.sandbox.attio.errors import attio_error, server_error, unauthorized
from bulk_pipeline.sandbox.attio.limits import AttioLimits
from bulk_pipeline.sandbox.attio.settings import AttioSettings
from bulk_pipeline.sandbox.attio.store import SCHEMA, AttioStore
from bulk_pipeline.sandbox.attio.values import now_text
from bulk_pipeline.sandbox.attio.workspace import OBJECTS
from bulk_pipeline.sandbox.dialect import ApiError, Dialect, Gate, Request, Route

if TYPE_CHECKING:
    from bulk_pipeline.sandbox.config import SandboxConfig
    from bulk_pipeline.sandbox.store import StoreConnection


class AttioDialect(Dialect):
    name = "attio"
    title = "Attio REST API v2"
    prefixes = ("/v2/",)
    schema = SCHEMA
    record_types = (*OBJECTS, "entries", "lists", "notes", "tasks")

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self._bearer = f"Bearer {token}".encode()
        self.limits = AttioLimits(AttioSettings())
        self.clock_offset_s = 0.0

    def apply(self, config: SandboxConfig) -> None:
        self.limits = self.limits.with_settings(config.attio)
        self.clock_offset_s = config.clock_offset_s

    def now_text(self) -> str:
        """Attio's timestamp format, on the sandbox's clock."""
        return now_text(self.clock_offset_s)

    def route(self, method: str, path: str) -> AttioRoute | None:
        return parse_route(method, path)

    def gate(self, request: Request, route: Route | None, now: float) -> Gate:
        given = (request.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(given, self._bearer):
            return Gate({}, unauthorized())
        write = route.is_write if route is not None else request.method != "GET"
        return Gate({}, self.limits.admit(write=write, now=now))

    def server_error(self, status: int) -> ApiError:
        return server_error(status)

    def no_route(self, request: Request) -> ApiError:
        return attio_error(
            404, "not_found", f"No Attio endpoint answers {request.method} {request.path}."
        )

    def open_api(self, conn: StoreConnection) -> AttioApi:
        return AttioApi(AttioStore(conn), now=self.now_text)

    def counts(self, conn: StoreConnection) -> dict[str, int]:
        return AttioStore(conn).counts()

    def records(self, conn: StoreConnection, type_name: str) -> list[dict[str, Any]] | None:
        api = self.open_api(conn)
        if type_name in OBJECTS:
            return api.all_records(type_name)
        if type_name == "entries":
            return api.all_entries()
        if type_name == "lists":
            return api.store.lists()
        if type_name == "notes":
            return api.store.notes()
        if type_name == "tasks":
            return api.store.tasks()
        return None

    def reset(self, conn: StoreConnection) -> None:
        api = self.open_api(conn)
        with conn.write():
            api.store.clear()
            api.seed()

    def seed(self, conn: StoreConnection) -> None:
        with conn.write():
            self.open_api(conn).seed()

    def reset_limits(self) -> None:
        self.limits = AttioLimits(self.limits.settings)

    def limits_state(self) -> dict[str, Any]:
        return self.limits.state()
