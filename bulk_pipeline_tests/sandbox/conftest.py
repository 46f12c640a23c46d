"""A keep-alive HubSpot client on the sandbox, as importers use it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bulk_pipeline.sandbox.server import RunningSandbox


@pytest.fixture
def crm(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sandbox.url,
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=10,
        trust_env=False,
    ) as client:
        yield client
