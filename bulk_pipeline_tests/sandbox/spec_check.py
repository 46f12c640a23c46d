"""Calls to the sandbox whose answers are validated against HubSpot's official OpenAPI files.

Error answers are declared as ``*/*`` with the ``Error`` schema; openapi-core has no deserializer
for ``*/*``, so the check reads those bodies as the JSON they are.

Where HubSpot's spec contradicts what HubSpot documents and answers, the sandbox answers as HubSpot
does and the check applies the correction below, so each deviation is named in one place:

- ``AssociationSpecWithLabel.label``: the v4 associations guide says unlabeled association types
  are "always returned in responses with a label value of null"; the spec's string type has no
  ``nullable``.
- ``StandardError.subCategory``: HubSpot sends a string (``crm.associations.
  NO_ASSOCIATIONS_FOUND``, which clients test for); the spec declares an object without
  properties. ``Error.subCategory`` in the same spec is a string.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from bulk_pipeline_tests.specs import load_spec

HUBSPOT = "https://api.hubapi.com"
CORRECTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "AssociationSpecWithLabel": {"label": {"type": "string", "nullable": True}},
    "StandardError": {"subCategory": {"type": "string"}},
}
"""Schema properties replaced before checking: ``{schema: {property: replacement}}``."""


def _json(value: bytes, **parameters: str) -> Any:
    return json.loads(value)


def corrected(
    spec: dict[str, Any], corrections: dict[str, dict[str, dict[str, Any]]] = CORRECTIONS
) -> dict[str, Any]:
    """The spec with the corrections applied to whichever of those schemas it has."""
    fixed = copy.deepcopy(spec)
    schemas = fixed["components"]["schemas"]
    for schema, replacements in corrections.items():
        if schema in schemas:
            for name, replacement in replacements.items():
                assert name in schemas[schema]["properties"], (schema, name)
                schemas[schema]["properties"][name] = replacement
    return fixed


@cache
def spec(name: str) -> tuple[OpenAPI, dict[str, Any]]:
    """A HubSpot spec fixture, ready to validate answers, and its JSON."""
    raw = corrected(load_spec("hubspot", name))
    config = Config(extra_media_type_deserializers={"*/*": _json})
    return OpenAPI.from_dict(raw, config=config), raw


class CheckedClient:
    """Calls the sandbox and validates each answer against one spec file."""

    def __init__(self, crm: httpx.Client, spec_name: str, base: str = "") -> None:
        self.crm = crm
        self.spec, self.raw_spec = spec(spec_name)
        self.base = base

    def call(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        url = f"{self.base}{path}"
        answer = self.crm.request(method, url, json=body, params=params)
        assert answer.status_code == expect, f"{method} {url}: {answer.status_code} {answer.text}"
        if expect == 204:
            # The specs declare 204 with an empty "content" map, which openapi-core reads as
            # "a body is required"; HTTP forbids one, so check the declaration and the silence.
            assert answer.content == b""
            assert "204" in self._operation(method, url)["responses"]
            return None
        request = MockRequest(HUBSPOT, method, url, args=params, data=answer.request.content)
        response = MockResponse(
            answer.content,
            status_code=answer.status_code,
            headers=dict(answer.headers),
            content_type=answer.headers.get("content-type", ""),
        )
        self.spec.validate_response(request, response)
        return answer.json()

    def _operation(self, method: str, url: str) -> dict[str, Any]:
        for template, operations in self.raw_spec["paths"].items():
            if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), url):
                return operations[method.lower()]
        raise AssertionError(f"the spec has no path for {url}")
