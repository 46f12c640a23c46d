"""Reading the HubSpot dialect's error answers in tests."""

from __future__ import annotations

import json

import httpx


def invalid_values(answer: httpx.Response) -> list[dict[str, object]]:
    """The list HubSpot packs into the message of a VALIDATION_ERROR about property values."""
    assert answer.status_code == 400, answer.text
    prefix = "Property values were not valid: "
    message = answer.json()["message"]
    assert message.startswith(prefix), message
    return json.loads(message.removeprefix(prefix))
