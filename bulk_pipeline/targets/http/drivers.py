"""Two small drivers that carry out an operation's effects: on ``httpx.Client`` (thread-safe,
shared by the threads of one target) and on ``httpx.AsyncClient`` (many operations on one loop).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from bulk_pipeline.targets.http.exchange import ApiRequest, Effect, Operation, Pause

T = TypeVar("T")

USER_AGENT = "bulk_pipeline/0.1 (+httpx)"


@dataclass(frozen=True)
class ClientSettings:
    """Connection settings for the one client a target keeps."""

    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_connections: int = 16
    max_keepalive: int = 8

    def timeout_config(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive,
        )


def is_loopback(base_url: str) -> bool:
    """A CRM on this machine (the sandbox) is never reached through an HTTP proxy."""
    host = httpx.URL(base_url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_request(client: httpx.Client | httpx.AsyncClient, request: ApiRequest) -> httpx.Request:
    return client.build_request(
        request.method, request.path, json=request.json, params=request.params
    )


def _client_options(base_url: str, auth: httpx.Auth, settings: ClientSettings) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "auth": auth,
        "timeout": settings.timeout_config(),
        "limits": settings.limits(),
        "headers": {"User-Agent": USER_AGENT},
        "trust_env": not is_loopback(base_url),
    }


class SyncDriver:
    """Runs operations on one ``httpx.Client``; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        settings: ClientSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.client = httpx.Client(
            **_client_options(base_url, auth, settings or ClientSettings()), transport=transport
        )

    def run(self, operation: Operation[T]) -> T:
        reply: Any = None
        try:
            while True:
                try:
                    effect = operation.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                reply = self._perform(effect)
        finally:
            operation.close()

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Pause):
            time.sleep(effect.seconds)
            return None
        try:
            return self.client.send(build_request(self.client, effect.request))
        except httpx.RequestError as exc:
            return exc

    def close(self) -> None:
        self.client.close()


class AsyncDriver:
    """Runs operations on one ``httpx.AsyncClient``; many may run concurrently on one loop."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        settings: ClientSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            **_client_options(base_url, auth, settings or ClientSettings()), transport=transport
        )

    async def run(self, operation: Operation[T]) -> T:
        reply: Any = None
        try:
            while True:
                try:
                    effect = operation.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                reply = await self._perform(effect)
        finally:
            operation.close()

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Pause):
            await asyncio.sleep(effect.seconds)
            return None
        try:
            return await self.client.send(build_request(self.client, effect.request))
        except httpx.RequestError as exc:
            return exc

    async def aclose(self) -> None:
        await self.client.aclose()
