"""How a target proves who it is: one small ``httpx.Auth`` per scheme.

The token is added per request, so it sits in no client default headers and no repr.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from bulk_pipeline.redaction import Secret


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class HeaderTokenAuth(httpx.Auth):
    """The token in a header of its own (``x-api-token``), never in the URL."""

    def __init__(self, header: str, token: Secret) -> None:
        self._header = header
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._token.reveal()
        yield request

    def __repr__(self) -> str:
        return f"HeaderTokenAuth({self._header!r}, ***)"
