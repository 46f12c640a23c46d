"""What a CRM package declares about itself, so the registry can open it by name.

A CRM package (``targets/<crm>/``) exports one :class:`Crm`: where its credentials come from,
how it authenticates, its budget and its dialect. Everything else (opening a connection,
sharing the account's budget, the sandbox variant) is generic, in ``registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from bulk_pipeline.redaction import Secret
from bulk_pipeline.targets.base import Dialect
from bulk_pipeline.targets.http.exchange import Exchange
from bulk_pipeline.targets.http.limits import Budget

Settings = Mapping[str, str]
"""Environment-style settings (variable name -> value) a target is configured from."""


@dataclass(frozen=True)
class Crm:
    name: str
    """Registry name of the real CRM (its package's name)."""
    label: str
    """The CRM's name as people write it."""
    token_env: str
    base_url_env: str
    default_base_url: str
    token_help: str
    """How a person gets a token, for the error that says it is missing."""
    auth: Callable[[Secret], httpx.Auth]
    budget: Callable[[Settings, Path | None], Budget]
    """The account's limits; ``Path`` is where an exhausted daily budget is remembered."""
    dialect: Callable[[Exchange, Settings], Dialect]
    extra_env: tuple[str, ...] = ()
    """Other variables the CRM reads (e.g. a daily token budget)."""

    @property
    def env(self) -> tuple[str, ...]:
        return (self.token_env, self.base_url_env, *self.extra_env)
