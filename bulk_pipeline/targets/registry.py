"""The one list of targets, by name: what the CLI, the Dagster resources, the inbox and the sources
offer, and the one place that opens a target from its settings.

Each entry is a CRM package's :class:`~bulk_pipeline.targets.crm.Crm`, reached either at its own
URL with the user's token (``hubspot``, ``attio``, ``pipedrive``) or on the embedded
sandbox, which speaks every dialect (``sandbox`` for HubSpot's, ``sandbox-attio``,
``sandbox-pipedrive``). Adding a CRM is a package plus its entries here.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from bulk_pipeline import config
from bulk_pipeline.errors import TargetConfigError, UserInputError
from bulk_pipeline.redaction import Secret, redact
from bulk_pipeline.targets.attio import ATTIO
from bulk_pipeline.targets.crm import Crm, Settings
from bulk_pipeline.targets.http.clock import CrmClock
from bulk_pipeline.targets.http.drivers import AsyncDriver, ClientSettings, SyncDriver
from bulk_pipeline.targets.http.exchange import Exchange, RetryPolicy
from bulk_pipeline.targets.http.limits import Budget, shared_budget
from bulk_pipeline.targets.hubspot import HUBSPOT
from bulk_pipeline.targets.pipedrive import PIPEDRIVE
from bulk_pipeline.targets.runner import AsyncTarget, SyncTarget


@dataclass(frozen=True)
class TargetEntry:
    name: str
    crm: Crm
    sandbox: bool = False
    """Reached on the embedded sandbox (started in the background when needed)."""

    @property
    def description(self) -> str:
        if self.sandbox:
            return f"the embedded sandbox CRM, speaking {self.crm.label}'s API"
        return f"{self.crm.label} ({self.crm.token_env}, {self.crm.base_url_env})"

    def env(self) -> tuple[str, ...]:
        """The variables this target is configured from."""
        if self.sandbox:
            return (config.SANDBOX_TOKEN_ENV, config.SANDBOX_URL_ENV)
        return self.crm.env

    def secret_env(self) -> str:
        """The variable holding its token."""
        return config.SANDBOX_TOKEN_ENV if self.sandbox else self.crm.token_env

    def connection(self, settings: Settings) -> tuple[str, Secret]:
        """Base URL and token; a missing token is a configuration error naming the variable."""
        if self.sandbox:
            from bulk_pipeline.sandbox.launcher import ensure_sandbox

            token = settings.get(config.SANDBOX_TOKEN_ENV) or config.DEFAULT_SANDBOX_TOKEN
            url = (settings.get(config.SANDBOX_URL_ENV) or "").strip() or ensure_sandbox()
            return url.rstrip("/"), Secret(token)
        token = (settings.get(self.crm.token_env) or "").strip()
        if not token:
            raise TargetConfigError(
                f"{self.crm.token_env} is not set: {self.crm.token_help} in that variable "
                f"to import into {self.crm.label}"
            )
        base_url = (settings.get(self.crm.base_url_env) or "").strip()
        return (base_url or self.crm.default_base_url).rstrip("/"), Secret(token)

    def account(self, base_url: str, token: Secret) -> str:
        """Sync state and budgets are kept per account: the sandbox has one; a real CRM's is
        its URL plus a fingerprint of the token (never the token)."""
        if self.sandbox:
            return self.name
        fingerprint = hashlib.sha256(token.reveal().encode()).hexdigest()[:12]
        return f"{self.crm.name}:{base_url}#{fingerprint}"


REGISTRY: dict[str, TargetEntry] = {
    entry.name: entry
    for entry in (
        TargetEntry("sandbox", HUBSPOT, sandbox=True),
        TargetEntry("hubspot", HUBSPOT),
        TargetEntry("sandbox-attio", ATTIO, sandbox=True),
        TargetEntry("attio", ATTIO),
        TargetEntry("sandbox-pipedrive", PIPEDRIVE, sandbox=True),
        TargetEntry("pipedrive", PIPEDRIVE),
    )
}
TARGET_NAMES: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_TARGET = "sandbox"


def entry(name: str) -> TargetEntry:
    found = REGISTRY.get(name)
    if found is None:
        raise UserInputError(
            f"unknown CRM target {name!r}; choose one of: {', '.join(TARGET_NAMES)}"
        )
    return found


def where(base_url: str) -> str:
    """The CRM's address for messages: URL and host:port, never credentials."""
    url = httpx.URL(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return redact(f"{base_url} ({url.host}:{port})")


def retry_policy(settings: Settings) -> RetryPolicy:
    raw = (settings.get(config.CRM_RETRY_SECONDS_ENV) or "").strip()
    if not raw:
        return RetryPolicy()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise TargetConfigError(
            f"{config.CRM_RETRY_SECONDS_ENV} must be a positive number of seconds, got {raw!r}"
        )
    return RetryPolicy(max_elapsed=seconds)


_clocks: dict[str, CrmClock] = {}
_clocks_lock = threading.Lock()


def shared_clock(account: str) -> CrmClock:
    """The CRM's clock as every target of the account in this process last read it."""
    with _clocks_lock:
        return _clocks.setdefault(account, CrmClock())


def _budget_file(account: str) -> Path:
    digest = hashlib.sha256(account.encode()).hexdigest()[:16]
    return config.data_home() / "budgets" / f"{digest}.json"


def account_budget(target: TargetEntry, settings: Settings, account: str, place: str) -> Budget:
    """The CRM's budget for an account; with a deployment database, its rolling windows are
    counted there too, so every process and machine importing into the account shares them."""
    built = target.crm.budget(settings, _budget_file(account))
    url = (settings.get(config.DATABASE_URL_ENV) or "").strip()
    if not url:
        return built
    from bulk_pipeline.staging.budget_ledger import shared_ledger

    return built.shared_through(shared_ledger(url), place)


def _exchange(
    target: TargetEntry,
    settings: Settings,
    base_url: str,
    account: str,
    retry: RetryPolicy | None,
    rng: random.Random | None,
    budget: Budget | None,
) -> Exchange:
    place = f"{account} at {base_url}"
    """One budget and one clock per account and address: the sandbox's account is the same
    whatever port it listens on, but two sandboxes are two servers."""
    return Exchange(
        policy=retry or retry_policy(settings),
        budget=budget
        or shared_budget(place, lambda: account_budget(target, settings, account, place)),
        clock=shared_clock(place),
        where=where(base_url),
        rng=rng or random.Random(),
    )


def open_target(
    name: str,
    settings: Settings | None = None,
    *,
    retry: RetryPolicy | None = None,
    concurrency: int | None = None,
    client_settings: ClientSettings | None = None,
    transport: httpx.BaseTransport | None = None,
    rng: random.Random | None = None,
    budget: Budget | None = None,
) -> SyncTarget:
    """A ready target by name; the caller closes it. ``settings`` default to the environment;
    ``budget`` replaces the account's shared one (tests and benchmarks)."""
    target = entry(name)
    settings = os.environ if settings is None else settings
    base_url, token = target.connection(settings)
    account = target.account(base_url, token)
    exchange = _exchange(target, settings, base_url, account, retry, rng, budget)
    return SyncTarget(
        name=name,
        account=account,
        dialect=target.crm.dialect(exchange, settings),
        exchange=exchange,
        driver=SyncDriver(
            base_url, target.crm.auth(token), settings=client_settings, transport=transport
        ),
        concurrency=concurrency,
    )


DEFAULT_ASYNC_CONCURRENCY = 4


def open_async_target(
    name: str,
    settings: Settings | None = None,
    *,
    concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
    retry: RetryPolicy | None = None,
    client_settings: ClientSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
    budget: Budget | None = None,
) -> AsyncTarget:
    """The async variant of :func:`open_target`; the caller awaits ``aclose()``."""
    target = entry(name)
    settings = os.environ if settings is None else settings
    base_url, token = target.connection(settings)
    account = target.account(base_url, token)
    exchange = _exchange(target, settings, base_url, account, retry, rng, budget)
    connections = client_settings or ClientSettings(
        max_connections=max(concurrency * 2, 4), max_keepalive=max(concurrency, 4)
    )
    return AsyncTarget(
        name=name,
        account=account,
        dialect=target.crm.dialect(exchange, settings),
        exchange=exchange,
        driver=AsyncDriver(
            base_url, target.crm.auth(token), settings=connections, transport=transport
        ),
        concurrency=concurrency,
    )


def account_of(name: str, settings: Settings | None = None) -> str:
    """The account a named target writes to, from its settings alone (no connection made):
    staging keeps sync state per account before any CRM call."""
    target = entry(name)
    if target.sandbox:
        return target.name
    base_url, token = target.connection(os.environ if settings is None else settings)
    return target.account(base_url, token)
