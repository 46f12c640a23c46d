"""The sandbox's configuration: fault injection shared by every dialect, and each dialect's limits.

HubSpot's settings sit at the top level (``rate_limit``, ``search_rate_limit``, ``daily_limit``,
``deal_pipelines``), where they were before the sandbox spoke other dialects; every other dialect
has its own block (``pipedrive``, ``attio``), which the admin view changes with a nested object:
``POST /_sandbox/config {"pipedrive": {"daily_budget": 500}}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bulk_pipeline.sandbox import settings
from bulk_pipeline.sandbox.attio.settings import AttioSettings
from bulk_pipeline.sandbox.hubspot.limits import (
    HUBSPOT_DAILY_LIMIT,
    HUBSPOT_RATE_LIMIT,
    HUBSPOT_SEARCH_RATE_LIMIT,
)
from bulk_pipeline.sandbox.hubspot.pipelines import Pipeline, parse_pipelines
from bulk_pipeline.sandbox.pipedrive.settings import PipedriveSettings
from bulk_pipeline.sandbox.ratelimit import RateLimit

RATE_LIMIT_ENV = "BULK_PIPELINE_SANDBOX_RATE_LIMIT"
"""``MAX/INTERVAL_MS`` (e.g. ``100/10000``), or ``0`` to turn every limit off."""
SEARCH_RATE_LIMIT_ENV = "BULK_PIPELINE_SANDBOX_SEARCH_RATE_LIMIT"


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves. The defaults are each vendor's limits for a small plan."""

    rate_limit: RateLimit | None = HUBSPOT_RATE_LIMIT
    """HubSpot: ten-secondly rolling limit for every call but search; ``None`` for none."""
    search_rate_limit: RateLimit | None = HUBSPOT_SEARCH_RATE_LIMIT
    """HubSpot: the search window."""
    daily_limit: int | None = HUBSPOT_DAILY_LIMIT
    """HubSpot: requests per UTC day."""
    deal_pipelines: tuple[Pipeline, ...] = ()
    """HubSpot: deal pipelines beside the default "Sales Pipeline" every account has."""
    error_rate: float = 0.0
    """Fraction of calls answered 500/502/503/504 before any work is done (every dialect)."""
    drop_rate: float = 0.0
    """Fraction of calls whose work is done but whose connection is then cut without an answer."""
    latency_ms: float = 0.0
    """Delay added to every call."""
    seed: int | None = None
    """Seed of the fault-injection RNG, for reproducible runs."""
    clock_offset_s: float = 0.0
    """Seconds added to the sandbox's wall clock (record times and the ``Date`` of every
    answer): a CRM whose clock runs behind or ahead of its clients'."""
    pipedrive: PipedriveSettings = field(default_factory=PipedriveSettings)
    """Pipedrive: token budget, burst and search windows, block, search lag."""
    attio: AttioSettings = field(default_factory=AttioSettings)
    """Attio: reads and writes per rolling second."""

    @classmethod
    def unlimited(cls) -> SandboxConfig:
        """Every dialect's limits off: what tests of the pipeline usually want."""
        return cls(
            rate_limit=None,
            search_rate_limit=None,
            daily_limit=None,
            pipedrive=PipedriveSettings.unlimited(),
            attio=AttioSettings.unlimited(),
        )

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
        """``MAX/INTERVAL_MS`` sets HubSpot's general limit; ``0`` turns off every limit of every
        dialect, which is what someone asking for an unlimited sandbox means."""
        limit = RateLimit.parse(spec)
        if limit is None:
            return replace(
                SandboxConfig.unlimited(),
                deal_pipelines=self.deal_pipelines,
                error_rate=self.error_rate,
                drop_rate=self.drop_rate,
                latency_ms=self.latency_ms,
                seed=self.seed,
                clock_offset_s=self.clock_offset_s,
            )
        return replace(self, rate_limit=limit)

    def changed(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """A copy with the admin view's JSON changes applied; refuses unknown or bad values.

        ``{"hubspot": {...}}`` is accepted as another spelling of HubSpot's top-level settings.
        """
        flat = dict(changes)
        hubspot = _block(flat.pop("hubspot", None), "hubspot")
        pipedrive = _block(flat.pop("pipedrive", None), "pipedrive")
        attio = _block(flat.pop("attio", None), "attio")
        config = settings.changed(self, {**flat, **hubspot}, _PARSERS)
        if pipedrive:
            config = replace(config, pipedrive=config.pipedrive.changed(pipedrive))
        if attio:
            config = replace(config, attio=config.attio.changed(attio))
        return config

    def as_json(self) -> dict[str, Any]:
        def limit(value: RateLimit | None) -> dict[str, int] | None:
            return None if value is None else value.as_json()

        return {
            "rate_limit": limit(self.rate_limit),
            "search_rate_limit": limit(self.search_rate_limit),
            "daily_limit": self.daily_limit,
            "deal_pipelines": [pipeline.as_setting() for pipeline in self.deal_pipelines],
            "error_rate": self.error_rate,
            "drop_rate": self.drop_rate,
            "latency_ms": self.latency_ms,
            "seed": self.seed,
            "clock_offset_s": self.clock_offset_s,
            "pipedrive": self.pipedrive.as_json(),
            "attio": self.attio.as_json(),
        }


def _block(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object of settings")
    return value


_PARSERS: dict[str, settings.Parser] = {
    "rate_limit": settings.rate_limit,
    "search_rate_limit": settings.rate_limit,
    "daily_limit": settings.positive_int_or_none,
    "deal_pipelines": parse_pipelines,
    "error_rate": settings.fraction,
    "drop_rate": settings.fraction,
    "latency_ms": settings.non_negative,
    "seed": settings.optional_int,
    "clock_offset_s": settings.number,
}
"""How the admin view's JSON values become ``SandboxConfig`` fields."""
