"""Derive the compact OpenAPI fixtures in this folder from the vendor specs in ``../shared/specs``.

Tests must never read ``../shared`` (a clone has nothing beside it), so this script copies what the
tests check, the structure of each API, into committed JSON files: paths, methods, parameters,
request bodies, responses, schemas, security, and the ``components`` they reference, transitively.
The vendors' prose (descriptions, summaries, examples, tags, vendor extensions) is dropped, except
what OpenAPI requires (a response's ``description``, kept empty) and Pipedrive's ``x-token-cost``.

Run from the repository root: ``python -m bulk_pipeline_tests.specs.derive [--shared PATH]``;
``--check`` compares instead of writing and exits 1 when a fixture is out of date. Output is
deterministic (sorted keys), so re-running it on unchanged specs leaves no diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate

FIXTURES = Path(__file__).resolve().parent
REPOSITORY = FIXTURES.parents[1]
DEFAULT_SHARED = REPOSITORY / ".." / "shared" / "specs"

PROSE = frozenset({"description", "summary", "example", "examples", "externalDocs", "$comment"})
KEPT_EXTENSIONS = frozenset({"x-token-cost"})
"""Pipedrive's per-operation cost against the daily token budget: behaviour, not prose."""
SCHEMA_PROSE = frozenset({"title", "xml"})
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_SINGLES = (
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
)
"""Schema keywords whose values are schemas (in a map, a list, or alone); all others are data."""
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class Source:
    """One vendor spec file and the fixture derived from it."""

    vendor: str
    file: str
    fixture: str
    paths: tuple[str, ...] | None
    """The paths to keep, each of which must exist; ``None`` keeps every path."""


HUBSPOT_FILES = (
    "contacts",
    "companies",
    "deals",
    "notes",
    "tasks",
    "objects",
    "associations-v4",
    "pipelines",
    "properties",
)

SOURCES = (
    *(Source("hubspot", f"{name}.json", f"{name}.json", None) for name in HUBSPOT_FILES),
    Source(
        "pipedrive",
        "v2.yaml",
        "v2.json",
        (
            "/persons",
            "/persons/{id}",
            "/persons/search",
            "/organizations",
            "/organizations/{id}",
            "/organizations/search",
            "/deals",
            "/deals/{id}",
            "/deals/search",
            "/activities",
            "/activities/{id}",
            "/itemSearch",
            "/itemSearch/field",
            "/pipelines",
            "/pipelines/{id}",
            "/stages",
            "/stages/{id}",
            "/personFields",
            "/personFields/{field_code}",
            "/organizationFields",
            "/organizationFields/{field_code}",
            "/dealFields",
            "/dealFields/{field_code}",
            "/activityFields",
            "/activityFields/{field_code}",
        ),
    ),
    Source(
        "pipedrive",
        "v1.yaml",
        "v1.json",
        (
            "/notes",
            "/notes/{id}",
            "/users",
            "/users/me",
            "/users/find",
            "/activityTypes",
            "/personFields",
            "/organizationFields",
            "/dealFields",
        ),
    ),
    Source(
        "attio",
        "api-00.json",
        "api-00.json",
        (
            "/v2/objects",
            "/v2/objects/{object}",
            "/v2/{target}/{identifier}/attributes",
            "/v2/{target}/{identifier}/attributes/{attribute}",
            "/v2/{target}/{identifier}/attributes/{attribute}/options",
            "/v2/{target}/{identifier}/attributes/{attribute}/statuses",
            "/v2/objects/{object}/records",
            "/v2/objects/{object}/records/query",
            "/v2/objects/{object}/records/{record_id}",
            "/v2/objects/{object}/records/{record_id}/attributes/{attribute}/values",
            "/v2/objects/{object}/records/{record_id}/entries",
            "/v2/objects/records/search",
            "/v2/lists",
            "/v2/lists/{list}",
            "/v2/lists/{list}/entries",
            "/v2/lists/{list}/entries/query",
            "/v2/lists/{list}/entries/{entry_id}",
            "/v2/workspace_members",
            "/v2/workspace_members/{workspace_member_id}",
            "/v2/notes",
            "/v2/notes/{note_id}",
            "/v2/tasks",
            "/v2/tasks/{task_id}",
            "/v2/self",
        ),
    ),
)


class Stripper:
    """Walks one document by OpenAPI object type, so a schema property or parameter named
    ``description`` is kept while the prose field ``description`` is dropped, and collects every
    ``$ref`` it keeps."""

    def __init__(self) -> None:
        self.refs: set[str] = set()

    def _fields(
        self, node: dict[str, Any], children: dict[str, Callable[[Any], Any]]
    ) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, value in node.items():
            if key in PROSE or (key.startswith("x-") and key not in KEPT_EXTENSIONS):
                continue
            if key == "$ref":
                self.refs.add(value)
            kept[key] = children[key](value) if key in children else value
        return kept

    def _map(self, strip: Callable[[Any], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda mapping: {str(name): strip(value) for name, value in mapping.items()}

    def _each(self, strip: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
        return lambda items: [strip(item) for item in items]

    def schema(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        children: dict[str, Callable[[Any], Any]] = {
            **dict.fromkeys(SCHEMA_MAPS, self._map(self.schema)),
            **dict.fromkeys(SCHEMA_LISTS, self._each(self.schema)),
            **dict.fromkeys(SCHEMA_SINGLES, self.schema),
            "items": self._items,
        }
        kept = self._fields({k: v for k, v in node.items() if k not in SCHEMA_PROSE}, children)
        for target in kept.get("discriminator", {}).get("mapping", {}).values():
            if target.startswith("#/"):
                self.refs.add(target)
        return kept

    def _items(self, items: Any) -> Any:
        """``items`` is one schema, or a list of them in older JSON Schema drafts."""
        return self._each(self.schema)(items) if isinstance(items, list) else self.schema(items)

    def content(self, node: dict[str, Any]) -> dict[str, Any]:
        encoding = self._map(
            lambda item: self._fields(item, {"headers": self._map(self.parameter)})
        )
        return self._map(
            lambda media: self._fields(media, {"schema": self.schema, "encoding": encoding})
        )(node)

    def parameter(self, node: dict[str, Any]) -> dict[str, Any]:
        """A parameter or a header (a parameter without ``name`` and ``in``)."""
        return self._fields(node, {"schema": self.schema, "content": self.content})

    def request_body(self, node: dict[str, Any]) -> dict[str, Any]:
        return self._fields(node, {"content": self.content})

    def response(self, node: dict[str, Any]) -> dict[str, Any]:
        kept = self._fields(
            {k: v for k, v in node.items() if k != "links"},
            {"headers": self._map(self.parameter), "content": self.content},
        )
        return kept if "$ref" in kept else {**kept, "description": ""}

    def responses(self, node: dict[str, Any]) -> dict[str, Any]:
        return self._map(self.response)(
            {code: answer for code, answer in node.items() if not str(code).startswith("x-")}
        )

    def security_scheme(self, node: dict[str, Any]) -> dict[str, Any]:
        def flows(node: dict[str, Any]) -> dict[str, Any]:
            return self._map(
                lambda flow: self._fields(flow, {"scopes": lambda s: dict.fromkeys(s, "")})
            )(node)

        return self._fields(node, {"flows": flows})

    def operation(self, node: dict[str, Any]) -> dict[str, Any]:
        return self._fields(
            {k: v for k, v in node.items() if k not in ("tags", "callbacks")},
            {
                "parameters": self._each(self.parameter),
                "requestBody": self.request_body,
                "responses": self.responses,
                "servers": self.servers,
            },
        )

    def path_item(self, node: dict[str, Any]) -> dict[str, Any]:
        return self._fields(
            node,
            {
                **dict.fromkeys(METHODS, self.operation),
                "parameters": self._each(self.parameter),
                "servers": self.servers,
            },
        )

    def servers(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        variable = self._map(lambda node: self._fields(node, {}))
        return [self._fields(server, {"variables": variable}) for server in items]

    def component(self, kind: str, node: Any) -> Any:
        strip: dict[str, Callable[[Any], Any]] = {
            "schemas": self.schema,
            "responses": self.response,
            "parameters": self.parameter,
            "headers": self.parameter,
            "requestBodies": self.request_body,
            "pathItems": self.path_item,
        }
        if kind not in strip:
            raise ValueError(f"a kept part refers to components/{kind}, which derive cannot strip")
        return strip[kind](node)


def _component_address(ref: str) -> tuple[str, str]:
    """``#/components/schemas/a~1b`` -> ``("schemas", "a/b")``."""
    parts = ref.split("/")
    if len(parts) != 4 or parts[:2] != ["#", "components"]:
        raise ValueError(f"derive follows only local component references, not {ref!r}")
    return parts[2], parts[3].replace("~1", "/").replace("~0", "~")


def derive(document: dict[str, Any], paths: Iterable[str] | None) -> dict[str, Any]:
    """The structure of ``document`` restricted to ``paths`` (all when ``None``)."""
    wanted = list(document["paths"]) if paths is None else list(paths)
    absent = [path for path in wanted if path not in document["paths"]]
    if absent:
        raise KeyError(f"the spec no longer has {absent}; update SOURCES in derive.py")
    stripper = Stripper()
    derived: dict[str, Any] = {
        "openapi": document["openapi"],
        "info": {"title": document["info"]["title"], "version": document["info"]["version"]},
        "paths": {path: stripper.path_item(document["paths"][path]) for path in wanted},
    }
    if "servers" in document:
        derived["servers"] = stripper.servers(document["servers"])
    if "security" in document:
        derived["security"] = document["security"]

    components: dict[str, dict[str, Any]] = {}
    source = document.get("components", {})
    if "securitySchemes" in source:
        components["securitySchemes"] = {
            name: stripper.security_scheme(scheme)
            for name, scheme in source["securitySchemes"].items()
        }
    done: set[str] = set()
    while pending := stripper.refs - done:
        for ref in sorted(pending):
            done.add(ref)
            kind, name = _component_address(ref)
            components.setdefault(kind, {})[name] = stripper.component(kind, source[kind][name])
    if components:
        derived["components"] = components
    return derived


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read_spec(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return dict(json.loads(text))
    return dict(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED,
        help="folder of vendor specs with hubspot/, pipedrive/, attio/ (default ../shared/specs)",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a fixture is out of date"
    )
    arguments = parser.parse_args(argv)
    if not (arguments.shared / "README.md").is_file():
        parser.error(f"{arguments.shared.resolve()} holds no vendor specs; pass --shared PATH")

    stale = []
    total = 0
    for source in SOURCES:
        derived = derive(read_spec(arguments.shared / source.vendor / source.file), source.paths)
        validate(derived)
        text = render(derived)
        total += len(text.encode())
        target = FIXTURES / source.vendor / source.fixture
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if text == current:
            continue
        stale.append(target.relative_to(REPOSITORY))
        if not arguments.check:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text, encoding="utf-8")
    verb = "out of date" if arguments.check else "written"
    print(f"{len(SOURCES)} fixtures, {total / 1024:.0f} KiB; {verb}: {len(stale)}")
    for path in stale:
        print(f"  {path}")
    return 1 if arguments.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
