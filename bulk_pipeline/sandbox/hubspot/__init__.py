"""The HubSpot dialect: CRM v3 objects (``/crm/v3/objects/...``), v4 associations
(``/crm/v4/...``) and deal pipelines (``/crm/v3/pipelines/deals``) as HubSpot answers them.

Bearer token; unique contact emails with 409 on conflict (company domains are not unique);
batch operations with 207 partial answers; a rolling 10-second window, a secondly search window
and a daily cap, announced in ``X-HubSpot-RateLimit-*`` headers. Its settings are the top-level
``rate_limit``, ``search_rate_limit``, ``daily_limit`` and ``deal_pipelines`` of
``SandboxConfig``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bulk_pipeline.sandbox.dialect import Answer, ApiError, Dialect, Gate, Request, Route
from bulk_pipeline.sandbox.hubspot import pipelines
from bulk_pipeline.sandbox.hubspot.api import CrmApi, HubSpotRoute, parse_route, public
from bulk_pipeline.sandbox.hubspot.association_store import SCHEMA as ASSOCIATIONS_SCHEMA
from bulk_pipeline.sandbox.hubspot.association_store import HubSpotAssociations
from bulk_pipeline.sandbox.hubspot.associations_api import (
    AssociationRoute,
    AssociationsApi,
    parse_association_route,
)
from bulk_pipeline.sandbox.hubspot.errors import (
    hubspot_error,
    rate_limited,
    server_error,
    unauthorized,
)
from bulk_pipeline.sandbox.hubspot.limits import RequestLimits
from bulk_pipeline.sandbox.hubspot.objects import OBJECT_TYPES
from bulk_pipeline.sandbox.hubspot.pipelines import (
    DEFAULT_DEAL_PIPELINE,
    Pipeline,
    PipelineRoute,
    parse_pipeline_route,
)
from bulk_pipeline.sandbox.hubspot.store import SCHEMA, HubSpotRecords

if TYPE_CHECKING:
    from bulk_pipeline.sandbox.config import SandboxConfig
    from bulk_pipeline.sandbox.store import StoreConnection


class HubSpotDialect(Dialect):
    name = "hubspot"
    title = "HubSpot CRM v3"
    prefixes = ("/crm/v3/", "/crm/v4/")
    schema = SCHEMA + ASSOCIATIONS_SCHEMA
    record_types = tuple(OBJECT_TYPES)

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self._bearer = f"Bearer {token}".encode()
        self.limits = RequestLimits(None, None, None)
        self.clock_offset_s = 0.0
        self.deal_pipelines: tuple[Pipeline, ...] = (DEFAULT_DEAL_PIPELINE,)

    def apply(self, config: SandboxConfig) -> None:
        self.limits = RequestLimits(config.rate_limit, config.search_rate_limit, config.daily_limit)
        self.clock_offset_s = config.clock_offset_s
        self.deal_pipelines = (DEFAULT_DEAL_PIPELINE, *config.deal_pipelines)

    def now_iso(self) -> str:
        """HubSpot's timestamp format (``2019-10-30T03:30:17.883Z``), on the sandbox's clock."""
        now = datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)
        return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def current_pipelines(self) -> tuple[Pipeline, ...]:
        """The deal pipelines of the configuration in force now."""
        return self.deal_pipelines

    def route(self, method: str, path: str) -> Route | None:
        return (
            parse_route(method, path)
            or parse_association_route(method, path)
            or parse_pipeline_route(method, path)
        )

    def gate(self, request: Request, route: Route | None, now: float) -> Gate:
        search = isinstance(route, HubSpotRoute) and route.is_search
        given = (request.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(given, self._bearer):
            admission = self.limits.admit(search=search, now=now, consume=False)
            return Gate(admission.headers(), unauthorized())
        admission = self.limits.admit(search=search, now=now)
        policy = admission.refused_by
        refusal = None if policy is None else rate_limited(policy.name, policy.label)
        return Gate(admission.headers(), refusal)

    def server_error(self, status: int) -> ApiError:
        return server_error(status)

    def no_route(self, request: Request) -> ApiError:
        message = f"No HubSpot CRM endpoint answers {request.method} {request.path}."
        return hubspot_error(404, "OBJECT_NOT_FOUND", message)

    def open_api(self, conn: StoreConnection) -> HubSpotApi:
        records, links = HubSpotRecords(conn), HubSpotAssociations(conn)
        return HubSpotApi(
            CrmApi(records, links, now_iso=self.now_iso, pipelines=self.current_pipelines),
            AssociationsApi(records, links, now_iso=self.now_iso),
            self.current_pipelines,
        )

    def counts(self, conn: StoreConnection) -> dict[str, int]:
        return HubSpotRecords(conn).counts()

    def records(self, conn: StoreConnection, type_name: str) -> list[dict[str, Any]] | None:
        if type_name not in OBJECT_TYPES:
            return None
        return [public(record) for record in HubSpotRecords(conn).all_active(type_name)]

    def reset(self, conn: StoreConnection) -> None:
        HubSpotRecords(conn).reset()
        HubSpotAssociations(conn).reset()

    def seed(self, conn: StoreConnection) -> None:
        """A fresh HubSpot portal has no records the sandbox models."""

    def reset_limits(self) -> None:
        self.limits = self.limits.emptied()


class HubSpotApi:
    """The dialect's operations on one store connection, each route to its own API."""

    def __init__(
        self,
        objects: CrmApi,
        associations: AssociationsApi,
        deal_pipelines: Callable[[], tuple[Pipeline, ...]],
    ) -> None:
        self._objects = objects
        self._associations = associations
        self._deal_pipelines = deal_pipelines

    def handle(
        self, route: HubSpotRoute | AssociationRoute | PipelineRoute, request: Request
    ) -> Answer:
        if isinstance(route, PipelineRoute):
            return pipelines.answer(self._deal_pipelines(), route)
        if isinstance(route, AssociationRoute):
            return self._associations.handle(route, request)
        return self._objects.handle(route, request)
