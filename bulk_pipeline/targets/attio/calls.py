"""Sending Attio requests and reading their answers, for records, tasks and notes alike.

Attio answers errors as ``{"status_code", "type", "code", "message"}``; a call that must succeed
(a read, a listing) raises the error kind of ``errors.py`` for the whole call, a write turns its
answer into a per-record :class:`~bulk_pipeline.targets.base.Failed`. The workspace's objects
are read once: a task answers its linked records by object id, a record reference names its
allowed objects by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import CrmRefused, TransientError
from bulk_pipeline.redaction import redact
from bulk_pipeline.targets.attio.attributes import OBJECTS, Workspace
from bulk_pipeline.targets.base import Failed, FailureKind
from bulk_pipeline.targets.http.exchange import ApiRequest, Exchange, Operation, Outcome, Verdict

WRITE = "write"


def response_json(response: httpx.Response | None) -> dict[str, Any]:
    if response is None or not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_code(outcome: Outcome) -> str:
    return str(response_json(outcome.response).get("code") or "")


def error_message(outcome: Outcome, workspace: Workspace | None = None) -> str:
    """Attio's message, with the fields it is about named where it names their attributes."""
    body = response_json(outcome.response)
    message = str(body.get("message") or outcome.failure or f"HTTP {outcome.status}")
    if workspace is not None:
        named = [
            name
            for name, slot in workspace.slots.items()
            if slot.attribute.id in message or f'"{slot.attribute.slug}"' in message
        ]
        if named:
            message = f"{', '.join(named)}: {message}"
    return redact(message)


class Calls:
    """One target's requests to Attio, over its exchange (retries, budget, clock)."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._objects: dict[str, str] | None = None

    def send(self, request: ApiRequest) -> Operation[Outcome]:
        return self.exchange.send(request)

    def body(self, outcome: Outcome) -> dict[str, Any]:
        """The body of a call that must succeed (reads, lists); else the error for the call."""
        if outcome.verdict is Verdict.OK:
            return response_json(outcome.response)
        if outcome.verdict is Verdict.GAVE_UP:
            raise TransientError(
                f"the CRM at {self.exchange.where} did not answer {outcome.request.describe()} "
                f"for {outcome.attempts} attempts within the retry window; last: "
                f"{outcome.failure}"
            )
        raise CrmRefused(
            f"{outcome.request.describe()} was refused: {error_code(outcome) or outcome.status}: "
            f"{error_message(outcome)}"
        )

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Operation[Any]:
        outcome = yield from self.send(ApiRequest("GET", path, params=params))
        return self.body(outcome).get("data")

    def failed(self, index: int, outcome: Outcome, workspace: Workspace | None = None) -> Failed:
        """A write's answer as the failure of its input."""
        if outcome.verdict is Verdict.GAVE_UP:
            return Failed(
                index,
                FailureKind.TRANSIENT,
                f"gave up after {outcome.attempts} attempts; last: {outcome.failure}",
            )
        kind = {
            404: FailureKind.NOT_FOUND,
            409: FailureKind.CONFLICT,
        }.get(outcome.status or 0, FailureKind.INVALID)
        if error_code(outcome) == "uniqueness_conflict":
            kind = FailureKind.CONFLICT
        return Failed(index, kind, error_message(outcome, workspace))

    def objects(self) -> Operation[dict[str, str]]:
        """The workspace's objects: slug -> object id (``GET /v2/objects``, asked once)."""
        if self._objects is None:
            listed = yield from self.get("/v2/objects")
            self._objects = {str(o["api_slug"]): str(o["id"]["object_id"]) for o in listed or []}
        return self._objects

    def entities(self) -> Operation[dict[str, Entity]]:
        """The entity of each of our objects, by its id and by its slug (Attio names an object
        by either)."""
        ids = yield from self.objects()
        by_slug = {slug: entity for entity, slug in OBJECTS.items()}
        return {
            **by_slug,
            **{ids[slug]: entity for slug, entity in by_slug.items() if slug in ids},
        }
