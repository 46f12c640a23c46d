"""The Pipedrive dialect: API v2 (``/api/v2/...``) and the v1 endpoints v2 lacks (``/api/v1/...``).

Credentials: the ``x-api-token`` header (or the ``api_token`` query parameter, which Pipedrive
still accepts) with the sandbox token, or ``Authorization: Bearer`` with it as an OAuth access
token. Every call costs its spec's ``x-token-cost`` against a daily token budget; burst windows
per credential, a search window and a block for clients that ignore 429 (``limits.py``); no
unique keys; deletes to the trash; optional search index lag. Its settings are
``SandboxConfig.pipedrive`` (``settings.py``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bulk_pipeline.sandbox.dialect import Answer, ApiError, Dialect, Gate, Request, Route
from bulk_pipeline.sandbox.pipedrive import account
from bulk_pipeline.sandbox.pipedrive.api import (
    PipedriveApi,
    PipedriveRoute,
    json_object,
    parse_route,
)
from bulk_pipeline.sandbox.pipedrive.entities import BY_PATH, ENTITIES
from bulk_pipeline.sandbox.pipedrive.errors import pipedrive_error, server_error, unauthorized
from bulk_pipeline.sandbox.pipedrive.limits import Credential, PipedriveLimits
from bulk_pipeline.sandbox.pipedrive.settings import PipedriveSettings
from bulk_pipeline.sandbox.pipedrive.store import SCHEMA, PipedriveStore

if TYPE_CHECKING:
    from bulk_pipeline.sandbox.config import SandboxConfig
    from bulk_pipeline.sandbox.store import StoreConnection


class PipedriveDialect(Dialect):
    name = "pipedrive"
    title = "Pipedrive API v2/v1"
    prefixes = ("/api/v2/", "/api/v1/")
    schema = SCHEMA
    record_types = tuple(entity.path for entity in ENTITIES.values())

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self._token = token.encode()
        self._bearer = f"Bearer {token}".encode()
        self.limits = PipedriveLimits(PipedriveSettings())

    def apply(self, config: SandboxConfig) -> None:
        self.limits = self.limits.with_settings(config.pipedrive)

    def route(self, method: str, path: str) -> PipedriveRoute | None:
        return parse_route(method, path)

    def gate(self, request: Request, route: Route | None, now: float) -> Gate:
        credential = self._credential(request)
        if credential is None:
            return Gate({}, unauthorized())
        pipedrive_route = route if isinstance(route, PipedriveRoute) else None
        admission = self.limits.admit(
            credential=credential,
            search=pipedrive_route is not None and pipedrive_route.is_search,
            cost=0 if pipedrive_route is None else pipedrive_route.cost,
            method=request.method,
            now=now,
        )
        return Gate(admission.headers, admission.refusal)

    def _credential(self, request: Request) -> Credential | None:
        header = request.headers.get("x-api-token")
        query = request.query.get("api_token")
        for given in (header, query[0] if query else None):
            if given is not None and hmac.compare_digest(given.encode(), self._token):
                return Credential.API_TOKEN
        bearer = (request.headers.get("Authorization") or "").encode()
        if hmac.compare_digest(bearer, self._bearer):
            return Credential.OAUTH
        return None

    def server_error(self, status: int) -> ApiError:
        return server_error(status)

    def no_route(self, request: Request) -> ApiError:
        return pipedrive_error(
            404, f"The sandbox's Pipedrive has no endpoint {request.method} {request.path}"
        )

    def open_api(self, conn: StoreConnection) -> PipedriveApi:
        return PipedriveApi(PipedriveStore(conn), lambda: self.limits.settings.search_lag_s)

    def counts(self, conn: StoreConnection) -> dict[str, int]:
        counts = PipedriveStore(conn).counts()
        return {entity.path: counts[name] for name, entity in ENTITIES.items() if name in counts}

    def records(self, conn: StoreConnection, type_name: str) -> list[dict[str, Any]] | None:
        entity = BY_PATH.get(type_name)
        if entity is None:
            return None
        api = self.open_api(conn)
        return [api.present(entity, item) for item in api.store.all_active(entity.name)]

    def reset(self, conn: StoreConnection) -> None:
        store = PipedriveStore(conn)
        with conn.write():
            store.clear()
            account.seed(store, time.time())

    def seed(self, conn: StoreConnection) -> None:
        with conn.write():
            account.seed(PipedriveStore(conn), time.time())

    def reset_limits(self) -> None:
        self.limits = self.limits.emptied()

    def limits_state(self) -> dict[str, Any]:
        return self.limits.state()

    def admin(
        self, conn: StoreConnection, method: str, parts: Sequence[str], body: bytes
    ) -> Answer | None:
        """``POST /_sandbox/pipedrive/fields/{persons|organizations|deals}``: add a custom field
        without spending tokens (the body of ``POST /api/v2/personFields``)."""
        match method, list(parts):
            case "POST", ["fields", path] if path in BY_PATH and BY_PATH[path].custom_fields:
                api = self.open_api(conn)
                try:
                    return 200, api.add_field(BY_PATH[path], json_object(body))
                except ApiError as error:
                    return error.status, error.body
        return None
