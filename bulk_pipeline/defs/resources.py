"""Dagster resources: the CRM targets' settings and the staging store, from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from bulk_pipeline import config
from bulk_pipeline.redaction import MASK
from bulk_pipeline.staging import StagingStore, open_store
from bulk_pipeline.targets import Target
from bulk_pipeline.targets.registry import REGISTRY, account_of, open_target


class CrmResource(dg.ConfigurableResource):
    """Opens the CRM target an import asks for, by registry name.

    ``settings`` holds the registered targets' tokens, each a ``dg.EnvVar`` so the value is read
    at run time and never stored in the run's config; other settings (base URLs, limits) are
    read from the environment when a target is opened.
    """

    settings: dict[str, str] = Field(default_factory=dict)

    def _settings(self) -> dict[str, str]:
        return {**os.environ, **self.settings}

    def open(self, target: str) -> Target:
        return open_target(target, self._settings())

    def account(self, target: str) -> str:
        """The CRM account a target writes to (sync state is kept per account)."""
        return account_of(target, self._settings())

    def __repr__(self) -> str:
        return f"CrmResource(settings={{{', '.join(f'{k!r}: {MASK!r}' for k in self.settings)}}})"

    __str__ = __repr__


class StagingResource(dg.ConfigurableResource):
    """The staging store: a DuckDB file (``path``, by default under the data home), or the
    PostgreSQL database at ``database_url`` (a ``dg.EnvVar``, read at run time and never stored
    in the run's config)."""

    path: str | None = None
    database_url: str | None = None

    @property
    def store(self) -> StagingStore:
        return open_store(Path(self.path) if self.path else None, database_url=self.database_url)

    def __repr__(self) -> str:
        url = MASK if self.database_url else None
        return f"StagingResource(path={self.path!r}, database_url={url!r})"

    __str__ = __repr__


def crm_settings() -> dict[str, dg.EnvVar]:
    """The token of every registered target, as EnvVar, for those that are set (an unset
    optional secret must not break loading the code location)."""
    names = {entry.secret_env() for entry in REGISTRY.values()}
    return {name: dg.EnvVar(name) for name in sorted(names) if os.environ.get(name)}


def staging_resource() -> StagingResource:
    """PostgreSQL when its URL is set where the code location loads, else DuckDB."""
    if config.database_url() is None:
        return StagingResource()
    return StagingResource(database_url=dg.EnvVar(config.DATABASE_URL_ENV))  # type: ignore[arg-type]


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "crm": CrmResource(settings=crm_settings()),  # type: ignore[arg-type]
        "staging": staging_resource(),
    }
