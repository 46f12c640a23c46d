"""Dagster resources: the CRM credentials and the staging file, configured from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from bulk_pipeline import config
from bulk_pipeline.targets import open_target
from bulk_pipeline.targets.base import CrmTarget


class CrmResource(dg.ConfigurableResource):
    """Opens the CRM target an import asks for; tokens arrive through ``dg.EnvVar``."""

    hubspot_access_token: str | None = None
    hubspot_base_url: str | None = None
    sandbox_token: str | None = None

    def open(self, target: str) -> CrmTarget:
        return open_target(
            target,
            hubspot_access_token=self.hubspot_access_token,
            hubspot_base_url=self.hubspot_base_url,
            sandbox_token=self.sandbox_token,
        )

    def target_id(self, target: str) -> str:
        """The name sync state is kept under: one per CRM account, not per process."""
        if target == "hubspot":
            return f"hubspot:{self.hubspot_base_url or config.HUBSPOT_DEFAULT_BASE_URL}"
        return target


class StagingResource(dg.ConfigurableResource):
    """The DuckDB staging file; by default under the data home."""

    path: str | None = None

    @property
    def db_path(self) -> Path:
        return Path(self.path) if self.path else config.staging_db_path()


def _env(name: str) -> dg.EnvVar | None:
    """EnvVar for a variable that is set, so an unset optional secret does not break loading."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "crm": CrmResource(
            hubspot_access_token=_env(config.HUBSPOT_TOKEN_ENV),  # type: ignore[arg-type]
            hubspot_base_url=_env(config.HUBSPOT_BASE_URL_ENV),  # type: ignore[arg-type]
            sandbox_token=_env(config.SANDBOX_TOKEN_ENV),  # type: ignore[arg-type]
        ),
        "staging": StagingResource(),
    }
