"""CRM targets by name: ``sandbox`` (the embedded HubSpot-dialect CRM) and ``hubspot``.

The factory is the one place that reads where a target lives and which token it uses; everything
else receives a ready ``CrmTarget``.
"""

from __future__ import annotations

import os

from bulk_pipeline import config
from bulk_pipeline.redaction import Secret
from bulk_pipeline.targets.base import AsyncCrmTarget, CrmError, CrmTarget
from bulk_pipeline.targets.hubspot import (
    DEFAULT_MAX_CONCURRENT,
    AsyncHubSpotTarget,
    HubSpotTarget,
)

TARGET_NAMES = ("sandbox", "hubspot")

__all__ = [
    "TARGET_NAMES",
    "AsyncCrmTarget",
    "CrmError",
    "CrmTarget",
    "open_async_target",
    "open_target",
]


def _connection(
    name: str,
    *,
    hubspot_access_token: str | None,
    hubspot_base_url: str | None,
    sandbox_token: str | None,
) -> tuple[str, Secret]:
    """Base URL and token of a named target: given values first, then the environment."""
    if name == "sandbox":
        from bulk_pipeline.sandbox.launcher import ensure_sandbox

        return ensure_sandbox(), Secret(sandbox_token or config.sandbox_token())
    if name == "hubspot":
        token = (hubspot_access_token or os.environ.get(config.HUBSPOT_TOKEN_ENV, "")).strip()
        if not token:
            raise CrmError(
                f"{config.HUBSPOT_TOKEN_ENV} is not set: create a HubSpot private app with the "
                "crm.objects.*.read/write scopes and export its access token in that variable"
            )
        base_url = (
            hubspot_base_url
            or os.environ.get(config.HUBSPOT_BASE_URL_ENV)
            or config.HUBSPOT_DEFAULT_BASE_URL
        )
        return base_url, Secret(token)
    raise ValueError(f"unknown CRM target {name!r}; choose one of: {', '.join(TARGET_NAMES)}")


def open_target(
    name: str,
    *,
    hubspot_access_token: str | None = None,
    hubspot_base_url: str | None = None,
    sandbox_token: str | None = None,
) -> CrmTarget:
    """A ready target by name; the caller closes it (``with contextlib.closing(...)``).

    Unset credentials come from the environment (``HUBSPOT_ACCESS_TOKEN``,
    ``HUBSPOT_BASE_URL``, ``BULK_PIPELINE_SANDBOX_TOKEN``).
    """
    base_url, token = _connection(
        name,
        hubspot_access_token=hubspot_access_token,
        hubspot_base_url=hubspot_base_url,
        sandbox_token=sandbox_token,
    )
    return HubSpotTarget(base_url, token, name=name)


def open_async_target(
    name: str,
    *,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    hubspot_access_token: str | None = None,
    hubspot_base_url: str | None = None,
    sandbox_token: str | None = None,
) -> AsyncCrmTarget:
    """The async variant of :func:`open_target`; the caller awaits ``aclose()``."""
    base_url, token = _connection(
        name,
        hubspot_access_token=hubspot_access_token,
        hubspot_base_url=hubspot_base_url,
        sandbox_token=sandbox_token,
    )
    return AsyncHubSpotTarget(base_url, token, name=name, max_concurrent=max_concurrent)
