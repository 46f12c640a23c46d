"""The vendors' OpenAPI specs as compact committed fixtures (see README.md here).

Tests read the specs only through this module, never from ``../shared``: a clone has nothing
beside it. ``derive.py`` regenerates the files from the full vendor specs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent


def spec_path(vendor: str, name: str) -> Path:
    """The fixture ``name`` (e.g. ``"contacts.json"``) of ``vendor`` (hubspot, pipedrive, attio)."""
    path = FIXTURES / vendor / name
    if not path.is_file():
        known = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*.json"))
        raise FileNotFoundError(f"no spec fixture {vendor}/{name}; the fixtures are {known}")
    return path


def load_spec(vendor: str, name: str) -> dict[str, Any]:
    """The fixture as a dict, e.g. to look up an operation's declared responses."""
    return dict(json.loads(spec_path(vendor, name).read_text(encoding="utf-8")))


def nullable_cursors(node: Any) -> None:
    """Let ``next_cursor`` be null in every schema of a Pipedrive spec, as Pipedrive's pagination
    docs say it is on the last page (most list schemas type it as a plain string)."""
    if isinstance(node, dict):
        cursor = node.get("properties", {}).get("next_cursor")
        if isinstance(cursor, dict):
            cursor["nullable"] = True
        for value in node.values():
            nullable_cursors(value)
    elif isinstance(node, list):
        for value in node:
            nullable_cursors(value)
