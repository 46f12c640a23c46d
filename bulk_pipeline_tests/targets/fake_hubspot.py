"""An in-memory HubSpot behind ``httpx.MockTransport`` that checks every request against the specs.

Unit tests only: it answers in HubSpot's shapes (409 naming the existing ID, 400 for a bad email,
an unknown property or an option a property does not have, 207 for missing ids) and lets a test
queue faults (5xx, timeouts after the write was applied, refused connections). Each request is
validated with openapi-core against the official HubSpot OpenAPI files (CRM v3 objects, v4
associations, v3 pipelines) before it is answered, and each answer the fake gives is validated
against the same files; an invalid request or answer fails the test.

What it models beyond records:

- tasks and notes, whose ``hs_timestamp`` is required and kept as HubSpot keeps it (ISO 8601 in
  UTC, from ISO 8601 or epoch milliseconds), and a task's status, priority and type options;
- deal pipelines (``GET /crm/v3/pipelines/deals``): HubSpot's default "Sales Pipeline" and any a
  test adds; a deal written with a pipeline or stage id the account does not have is refused
  with ``INVALID_OPTION``, as HubSpot refuses any enumeration value;
- associations, from ``associations`` on creates and from the v4 batch calls: each is held in
  both directions (the inverse type reads from the other side), a primary type comes with the
  unlabeled one, and a record has one primary company. An association naming a record that
  does not exist, or a type that does not join the two object types, refuses the call whole
  with HubSpot's "One or more associations are invalid"; ``partial_link_batches`` makes v4
  batch creates answer those inputs as errors of a 207 instead (the spec allows both, and
  HubSpot does not document which it does).
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.testing import MockResponse
from werkzeug.datastructures import Headers, ImmutableMultiDict

from bulk_pipeline_tests.sandbox.spec_check import spec

BASE_URL = "https://api.hubapi.com"
SPEC_FILES = {
    "contacts": "contacts.json",
    "companies": "companies.json",
    "deals": "deals.json",
    "tasks": "tasks.json",
    "notes": "notes.json",
}
SPEC_PATH_NAMES = {"deals": "0-3"}
"""deals.json writes its paths with the object type id ``0-3``; we call the ``deals`` alias.
The other object specs name their paths as we call them."""
ASSOCIATIONS_SPEC = "associations-v4.json"
PIPELINES_SPEC = "pipelines.json"
TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "tasks": "0-27", "notes": "0-46"}
SINGULAR = {
    "contacts": "CONTACT",
    "companies": "COMPANY",
    "deals": "DEAL",
    "tasks": "TASK",
    "notes": "NOTE",
}
KEY_PROPERTIES = {"contacts": "email", "companies": "domain", "deals": "dealname"}
PROPERTIES: dict[str, frozenset[str]] = {
    "contacts": frozenset(
        [
            "email",
            "firstname",
            "lastname",
            "phone",
            "mobilephone",
            "company",
            "jobtitle",
            "website",
            "address",
            "city",
            "state",
            "zip",
            "country",
            "lifecyclestage",
            "date_of_birth",
        ]
    ),
    "companies": frozenset(
        [
            "name",
            "domain",
            "website",
            "phone",
            "industry",
            "address",
            "city",
            "state",
            "zip",
            "country",
            "description",
            "numberofemployees",
            "annualrevenue",
        ]
    ),
    "deals": frozenset(["dealname", "amount", "dealstage", "pipeline", "closedate", "description"]),
    "tasks": frozenset(
        [
            "hs_task_subject",
            "hs_task_body",
            "hs_task_status",
            "hs_task_priority",
            "hs_task_type",
            "hs_timestamp",
        ]
    ),
    "notes": frozenset(("hs_note_body", "hs_timestamp")),
}
"""The HubSpot properties the fake holds; writing any other is refused as HubSpot refuses a
property that does not exist."""
OPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("tasks", "hs_task_status"): ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
    ("tasks", "hs_task_priority"): ("LOW", "MEDIUM", "HIGH"),
    ("tasks", "hs_task_type"): ("EMAIL", "CALL", "TODO"),
}
REQUIRED = {"tasks": ("hs_timestamp",), "notes": ("hs_timestamp",)}
TIMESTAMPS = frozenset({("tasks", "hs_timestamp"), ("notes", "hs_timestamp")})


@dataclass(frozen=True)
class AssociationKind:
    """A HubSpot-defined association type, from one object type to another."""

    id: int
    from_type: str
    to_type: str
    inverse: int
    label: str | None = None
    unlabeled: int | None = None
    """For a primary type: the unlabeled type that always comes with it."""


def _kinds() -> dict[int, AssociationKind]:
    """HubSpot's default association types (v4 associations guide, "Association type IDs")."""
    pairs = [
        ("contacts", "companies", 279, 280, (1, 2)),
        ("deals", "contacts", 3, 4, None),
        ("deals", "companies", 341, 342, (5, 6)),
        ("tasks", "contacts", 204, 203, None),
        ("tasks", "companies", 192, 191, None),
        ("tasks", "deals", 216, 215, None),
        ("notes", "contacts", 202, 201, None),
        ("notes", "companies", 190, 189, None),
        ("notes", "deals", 214, 213, None),
    ]
    kinds: list[AssociationKind] = []
    for one, other, there, back, primary in pairs:
        kinds += [
            AssociationKind(there, one, other, back),
            AssociationKind(back, other, one, there),
        ]
        if primary is not None:
            kinds += [
                AssociationKind(primary[0], one, other, primary[1], "Primary", there),
                AssociationKind(primary[1], other, one, primary[0], "Primary", back),
            ]
    return {kind.id: kind for kind in kinds}


ASSOCIATION_KINDS = _kinds()


def pipeline(pipeline_id: str, label: str, stages: list[tuple[str, str]]) -> dict[str, Any]:
    """A deal pipeline as ``GET /crm/v3/pipelines/deals`` lists it (schema ``Pipeline``)."""
    created = "1970-01-01T00:00:00Z"
    return {
        "id": pipeline_id,
        "label": label,
        "displayOrder": 0,
        "archived": False,
        "createdAt": created,
        "updatedAt": created,
        "stages": [
            {
                "id": stage_id,
                "label": stage_label,
                "displayOrder": order,
                "metadata": {"isClosed": "false", "probability": "0.5"},
                "archived": False,
                "createdAt": created,
                "updatedAt": created,
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            }
            for order, (stage_id, stage_label) in enumerate(stages)
        ],
    }


SALES_PIPELINE = pipeline(
    "default",
    "Sales Pipeline",
    [
        ("appointmentscheduled", "Appointment Scheduled"),
        ("qualifiedtobuy", "Qualified To Buy"),
        ("presentationscheduled", "Presentation Scheduled"),
        ("decisionmakerboughtin", "Decision Maker Bought-In"),
        ("contractsent", "Contract Sent"),
        ("closedwon", "Closed Won"),
        ("closedlost", "Closed Lost"),
    ],
)
"""The deal pipeline every HubSpot account starts with."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_MILLIS = re.compile(r"^-?\d{1,15}$")
_OBJECTS = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)(?:/(?P<op>batch/\w+|search))?$")
_ASSOCIATIONS = re.compile(
    r"^/crm/v4/associations/(?P<type>[^/]+)/(?P<to>[^/]+)/batch/(?P<op>read|create|archive)$"
)
_PIPELINES = re.compile(r"^/crm/v3/pipelines/(?P<type>[^/]+)$")


@dataclass(frozen=True)
class Route:
    """Which spec file defines a request, the path as that file writes it, and the operation."""

    spec: str
    path: str
    operation: str
    object_type: str
    to_type: str | None = None


def route(request: httpx.Request) -> Route:
    path = request.url.path
    if match := _OBJECTS.match(path):
        object_type = match["type"]
        assert object_type in SPEC_FILES, f"no spec for object type {object_type}"
        alias = SPEC_PATH_NAMES.get(object_type, object_type)
        return Route(
            SPEC_FILES[object_type],
            re.sub(f"/objects/{object_type}(/|$)", f"/objects/{alias}\\1", path),
            match["op"] or request.method,
            object_type,
        )
    if match := _ASSOCIATIONS.match(path):
        return Route(
            ASSOCIATIONS_SPEC, path, f"associations/{match['op']}", match["type"], match["to"]
        )
    if match := _PIPELINES.match(path):
        return Route(PIPELINES_SPEC, path, f"pipelines/{request.method}", match["type"])
    raise AssertionError(f"unexpected path {path}")


class SpecRequest:
    """An ``httpx.Request`` as openapi-core's ``Request`` protocol, path aliased to the spec's."""

    def __init__(self, request: httpx.Request, path: str) -> None:
        self._request = request
        self._path = path
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(request.url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return f"{self._request.url.scheme}://{self._request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self._path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "")


def _checker(name: str) -> OpenAPI:
    return spec(name)[0]


def validate_against_spec(request: httpx.Request) -> None:
    """Raise if the request is not one the HubSpot spec defines (method, path, query, body)."""
    where = route(request)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unsupported scheme type")
        _checker(where.spec).validate_request(SpecRequest(request, where.path))


def validate_answer(request: httpx.Request, response: httpx.Response) -> None:
    """Raise if the answer is not one the spec declares for the request (status and body).

    The specs declare 204 with an empty ``content`` map, which openapi-core reads as "a body is
    required"; HTTP forbids one, so a 204 is checked for being declared and silent.
    """
    where = route(request)
    if response.status_code == 204:
        assert not response.content
        operations = spec(where.spec)[1]["paths"]
        template = next(
            t for t in operations if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", t), where.path)
        )
        assert "204" in operations[template][request.method.lower()]["responses"]
        return
    answer = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("content-type", ""),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unsupported scheme type")
        _checker(where.spec).validate_response(SpecRequest(request, where.path), answer)


Apply = Callable[[httpx.Request], httpx.Response]
Fault = Callable[[httpx.Request, Apply], httpx.Response]
"""Given the request and a function that applies a request, answer (or raise) as a failing
server."""


def apply_then(exc: type[httpx.TransportError]) -> Fault:
    """The write is applied, then the connection fails: the client cannot know it worked."""

    def fault(request: httpx.Request, apply: Apply) -> httpx.Response:
        apply(request)
        raise exc("connection lost after the write", request=request)

    return fault


def apply_some_then(positions: Collection[int], exc: type[httpx.TransportError]) -> Fault:
    """Only the inputs of the batch at ``positions`` are applied, then the connection fails (a
    server that fell over part of the way through)."""

    def fault(request: httpx.Request, apply: Apply) -> httpx.Response:
        body = json.loads(request.content)
        body["inputs"] = [item for i, item in enumerate(body["inputs"]) if i in positions]
        apply(httpx.Request(request.method, request.url, json=body))
        raise exc("connection lost part of the way through the write", request=request)

    return fault


def refuse(exc: type[httpx.TransportError]) -> Fault:
    """The request never reaches the server."""

    def fault(request: httpx.Request, apply: Apply) -> httpx.Response:
        raise exc("connection refused", request=request)

    return fault


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    """The server answers ``status`` without doing the work."""

    def fault(request: httpx.Request, apply: Apply) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return fault


Link = tuple[str, str, str, str, int]
"""(from object type, from id, to object type, to id, association type id)."""


@dataclass
class FakeHubSpot:
    page_size: int = 100
    echo_trace_ids: bool = True
    shuffle_results: bool = False
    records: dict[str, dict[str, dict[str, str]]] = field(
        default_factory=lambda: {name: {} for name in SPEC_FILES}
    )
    links: set[Link] = field(default_factory=set)
    """Every association, in both directions."""
    pipelines: list[dict[str, Any]] = field(default_factory=lambda: [SALES_PIPELINE])
    """The account's deal pipelines, as HubSpot lists them."""
    link_page_size: int = 500
    """Associated records per record in a v4 batch read, before ``paging.next.after``."""
    partial_link_batches: bool = False
    """v4 batch creates answer bad inputs as errors of a 207 instead of refusing the batch."""
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[Fault | None] = field(default_factory=list)
    """Consumed one per request; ``None`` lets that request through."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers on every normal answer (rate-limit headers, say)."""
    lose_create_answers: int = 0
    """The next this many batch creates of records are applied and their answers lost."""
    created: dict[str, str] = field(default_factory=dict)
    """When each record was created (the fake's clock is this machine's)."""
    _next_id: int = 1000

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def bodies(self, op: str | None = None) -> list[dict[str, Any]]:
        """JSON bodies of the requests received, optionally only those to ``.../{op}``."""
        return [
            json.loads(r.content)
            for r in self.requests
            if r.content and (op is None or r.url.path.endswith("/" + op))
        ]

    def paths(self) -> list[str]:
        """Paths received: ``contacts/batch/create``, ``associations/tasks/deals/batch/read``,
        ``pipelines/deals``."""
        return [re.sub(r"^/crm/v\d/(objects/)?", "", r.url.path) for r in self.requests]

    def add(self, object_type: str, properties: dict[str, str]) -> str:
        self._next_id += 1
        record_id = str(self._next_id)
        self.records.setdefault(object_type, {})[record_id] = dict(properties)
        self.created[record_id] = _moment(datetime.now(UTC))
        return record_id

    def linked(self, object_type: str, record_id: str, to_type: str) -> dict[str, set[int]]:
        """The records of ``to_type`` a record is associated with, and the type ids of each."""
        found: dict[str, set[int]] = {}
        for one, one_id, other, other_id, type_id in self.links:
            if (one, one_id, other) == (object_type, record_id, to_type):
                found.setdefault(other_id, set()).add(type_id)
        return found

    def associate(
        self, object_type: str, record_id: str, to_type: str, to_id: str, type_id: int
    ) -> None:
        """Hold an association both ways; a primary type brings the unlabeled one and takes the
        place of the record's previous primary association of the type."""
        kind = ASSOCIATION_KINDS[type_id]
        if kind.label is not None:
            for link in [lk for lk in self.links if lk[:3] == (object_type, record_id, to_type)]:
                if link[4] == type_id:
                    self.links -= {link, (to_type, link[3], object_type, record_id, kind.inverse)}
        for held in (type_id, kind.unlabeled):
            if held is not None:
                inverse = ASSOCIATION_KINDS[held].inverse
                self.links |= {
                    (object_type, record_id, to_type, to_id, held),
                    (to_type, to_id, object_type, record_id, inverse),
                }

    def handle(self, request: httpx.Request) -> httpx.Response:
        validate_against_spec(request)
        assert request.headers.get("authorization", "").startswith("Bearer ")
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if (
            fault is None
            and self.lose_create_answers
            and request.url.path.startswith("/crm/v3/objects/")
            and request.url.path.endswith("batch/create")
        ):
            self.lose_create_answers -= 1
            fault = apply_then(httpx.ReadTimeout)
        if fault is not None:
            return fault(request, self._route)
        return self._route(request)

    # --- HubSpot behaviour ----------------------------------------------------------------------

    def _route(self, request: httpx.Request) -> httpx.Response:
        where = route(request)
        body = json.loads(request.content) if request.content else {}
        handler: Callable[[str, dict[str, Any]], tuple[int, Any]] = {
            "GET": self._list,
            "POST": self._create_one,
            "batch/create": self._create,
            "batch/upsert": self._upsert,
            "batch/update": self._update,
            "batch/archive": self._archive,
            "batch/read": self._read,
            "search": self._search,
            "associations/read": lambda t, b: self._read_links(t, where.to_type or "", b),
            "associations/create": lambda t, b: self._create_links(t, where.to_type or "", b),
            "associations/archive": lambda t, b: self._archive_links(t, where.to_type or "", b),
            "pipelines/GET": self._pipelines,
        }[where.operation]
        status, payload = handler(where.object_type, body)
        headers = {"Date": email.utils.formatdate(usegmt=True), **self.headers}
        response = httpx.Response(status, json=payload, headers=headers)
        validate_answer(request, response)
        return response

    def _list(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        first = sorted(self.records[object_type], key=int)[:1]
        return 200, {"results": [self._public(object_type, r) for r in first]}

    def _create_one(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        refused = self._refuse_creates(object_type, [body])
        if refused:
            return refused
        return 201, self._public(object_type, self._insert(object_type, body))

    def _insert(self, object_type: str, item: dict[str, Any]) -> str:
        """A new record from a create input already checked, with its associations."""
        record_id = self.add(object_type, self._stored(object_type, item["properties"]))
        for association in item.get("associations") or []:
            for kind in association["types"]:
                to_type = ASSOCIATION_KINDS[kind["associationTypeId"]].to_type
                self.associate(
                    object_type,
                    record_id,
                    to_type,
                    association["to"]["id"],
                    kind["associationTypeId"],
                )
        return record_id

    def _find_key(self, object_type: str, value: str) -> str | None:
        prop = KEY_PROPERTIES[object_type]
        for record_id, props in self.records[object_type].items():
            if props.get(prop, "").lower() == value.lower():
                return record_id
        return None

    def _public(self, object_type: str, record_id: str, trace: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": record_id,
            "properties": dict(self.records[object_type][record_id]),
            "createdAt": self.created[record_id],
            "updatedAt": self.created[record_id],
            "archived": False,
        }
        if trace is not None and self.echo_trace_ids:
            row["objectWriteTraceId"] = trace
        return row

    def _batch(
        self, results: list[dict[str, Any]], errors: list[dict[str, Any]], ok: int = 200
    ) -> tuple[int, Any]:
        if self.shuffle_results:
            random.Random(7).shuffle(results)
        payload: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": "2024-01-01T00:00:00.000Z",
            "completedAt": "2024-01-01T00:00:01.000Z",
        }
        if errors:
            payload.update(errors=errors, numErrors=len(errors))
            return 207, payload
        return ok, payload

    @staticmethod
    def _error(
        status: int, category: str, message: str, context: dict[str, list[str]] | None = None
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {
            "status": "error",
            "message": message,
            "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
            "category": category,
        }
        if context:
            body["context"] = context
        return status, body

    # property values

    def _issues(
        self,
        object_type: str,
        properties: dict[str, str],
        current: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """What HubSpot says about property values: names it does not have, bad emails, options
        a property does not have, timestamps in neither of its formats, deal stages that are not
        stages of the deal's pipeline (``current``: what the record holds)."""
        issues = []
        for name, value in properties.items():
            if name not in PROPERTIES[object_type]:
                issues.append(
                    _issue(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                )
            elif name == "email" and not _EMAIL.match(value):
                issues.append(_issue(name, "INVALID_EMAIL", f"Email address {value} is invalid"))
            elif (object_type, name) in OPTIONS and value not in OPTIONS[(object_type, name)]:
                issues.append(_option_issue(name, value, OPTIONS[(object_type, name)]))
            elif (object_type, name) in TIMESTAMPS and _timestamp(value) is None:
                issues.append(_issue(name, "INVALID_DATETIME", f"{value} is not a valid datetime"))
        if object_type == "deals":
            issues += self._stage_issues(properties, current or {})
        return issues

    def _stage_issues(self, patch: dict[str, str], current: dict[str, str]) -> list[dict[str, Any]]:
        if "pipeline" not in patch and "dealstage" not in patch:
            return []
        by_id = {p["id"]: p for p in self.pipelines}
        pipeline_id = patch.get("pipeline", current.get("pipeline")) or "default"
        if pipeline_id not in by_id:
            return [_option_issue("pipeline", pipeline_id, tuple(by_id))]
        stages = tuple(stage["id"] for stage in by_id[pipeline_id]["stages"])
        stage_id = patch.get("dealstage", current.get("dealstage"))
        if stage_id is not None and stage_id not in stages:
            return [_option_issue("dealstage", stage_id, stages)]
        return []

    @staticmethod
    def _stored(object_type: str, properties: dict[str, str]) -> dict[str, str]:
        """Values as HubSpot keeps them: timestamps as ISO 8601 in UTC."""
        return {
            name: (_timestamp(value) or value) if (object_type, name) in TIMESTAMPS else value
            for name, value in properties.items()
        }

    def _refuse_values(
        self, object_type: str, patches: list[tuple[dict[str, str], dict[str, str] | None]]
    ) -> tuple[int, Any] | None:
        issues = [
            i for patch, current in patches for i in self._issues(object_type, patch, current)
        ]
        if issues:
            return self._error(
                400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(issues)}"
            )
        return None

    def _refuse_creates(
        self, object_type: str, inputs: list[dict[str, Any]]
    ) -> tuple[int, Any] | None:
        """A create refused whole: bad values, required properties unset, bad associations."""
        refused = self._refuse_values(object_type, [(i["properties"], None) for i in inputs])
        if refused:
            return refused
        unset = [
            name
            for name in REQUIRED.get(object_type, ())
            if any(not i["properties"].get(name) for i in inputs)
        ]
        if unset:
            return self._error(
                400,
                "VALIDATION_ERROR",
                f"Error creating {SINGULAR[object_type]}.  Some required properties were not set.",
                {"properties": unset},
            )
        problems = [
            problem
            for item in inputs
            for association in item.get("associations") or []
            for kind in association["types"]
            if (problem := self._link_problem(object_type, "", None, association["to"]["id"], kind))
        ]
        return _invalid_associations(problems) if problems else None

    def _link_problem(
        self,
        object_type: str,
        from_id: str,
        to_type: str | None,
        to_id: str,
        kind: dict[str, Any],
    ) -> dict[str, list[str]] | None:
        """Why HubSpot would refuse an association (``from_id`` empty for a record being created;
        ``to_type`` None when the type alone says it), as the context of its error."""
        known = ASSOCIATION_KINDS.get(kind["associationTypeId"])
        if (
            kind["associationCategory"] != "HUBSPOT_DEFINED"
            or known is None
            or known.from_type != object_type
            or (to_type is not None and known.to_type != to_type)
        ):
            definition = f"{kind['associationCategory']}={kind['associationTypeId']}"
            return {
                "INVALID_ASSOCIATION_TYPE_ID": [
                    f"{definition} is not a valid association definition id"
                ]
            }
        missing = [
            (object_type, record_id)
            for object_type, record_id in ((known.from_type, from_id), (known.to_type, to_id))
            if record_id and record_id not in self.records[object_type]
        ]
        if not missing:
            return None
        return {
            "INVALID_OBJECT_IDS": [f"{SINGULAR[t]}={i} is not valid" for t, i in missing],
            "objectId": [i for _, i in missing],
            "objectType": [SINGULAR[t] for t, _ in missing],
        }

    # records

    def _create(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = body["inputs"]
        refused = self._refuse_creates(object_type, inputs)
        if refused:
            return refused
        if object_type == "contacts":
            for item in inputs:
                existing = self._find_key(object_type, item["properties"].get("email", ""))
                if existing:
                    return self._error(
                        409, "CONFLICT", f"Contact already exists. Existing ID: {existing}"
                    )
        results = [
            self._public(object_type, self._insert(object_type, item), item["objectWriteTraceId"])
            for item in inputs
        ]
        return self._batch(results, [], ok=201)

    def _upsert(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = body["inputs"]
        refused = self._refuse_values(object_type, [(i["properties"], None) for i in inputs])
        if refused:
            return refused
        results = []
        for item in inputs:
            assert item["idProperty"] == KEY_PROPERTIES[object_type]
            record_id = self._find_key(object_type, item["id"])
            new = record_id is None
            if record_id is None:
                record_id = self.add(object_type, self._stored(object_type, item["properties"]))
            else:
                self.records[object_type][record_id].update(item["properties"])
            row = self._public(object_type, record_id, item.get("objectWriteTraceId"))
            results.append({**row, "new": new})
        return self._batch(results, [])

    def _update(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        held = self.records[object_type]
        refused = self._refuse_values(
            object_type, [(i["properties"], held.get(i["id"])) for i in body["inputs"]]
        )
        if refused:
            return refused
        results, missing = [], []
        for item in body["inputs"]:
            if item["id"] not in held:
                missing.append(item["id"])
                continue
            held[item["id"]].update(self._stored(object_type, item["properties"]))
            results.append(self._public(object_type, item["id"], item.get("objectWriteTraceId")))
        return self._batch(results, [self._not_found(missing)] if missing else [])

    def _archive(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Archived records leave association reads at once."""
        gone = {item["id"] for item in body["inputs"] if item["id"] in self.records[object_type]}
        for record_id in gone:
            del self.records[object_type][record_id]
        self.links = {
            link
            for link in self.links
            if (link[0], link[1]) not in {(object_type, g) for g in gone}
            and (link[2], link[3]) not in {(object_type, g) for g in gone}
        }
        return 204, None

    def _read(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        results, missing = [], []
        for item in body["inputs"]:
            if body.get("idProperty"):
                record_id = self._find_key(object_type, item["id"])
            else:
                record_id = item["id"] if item["id"] in self.records[object_type] else None
            if record_id is None:
                missing.append(item["id"])
            else:
                results.append(self._public(object_type, record_id))
        return self._batch(results, [self._not_found(missing)] if missing else [])

    def _search(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        (group,) = body["filterGroups"]
        (condition,) = group["filters"]
        values = condition.get("values") or [condition["value"]]
        assert all(v == v.lower() for v in values), "IN values must be lower-cased"
        prop = condition["propertyName"]
        matching = sorted(
            (
                record_id
                for record_id, props in self.records[object_type].items()
                if props.get(prop, "").lower() in values
            ),
            key=int,
        )
        start = int(body.get("after") or 0)
        page = [r for r in matching if int(r) > start][: min(body["limit"], self.page_size)]
        payload: dict[str, Any] = {
            "total": len(matching),
            "results": [self._public(object_type, r) for r in page],
        }
        if page and page[-1] != matching[-1]:
            payload["paging"] = {"next": {"after": page[-1]}}
        return 200, payload

    @staticmethod
    def _not_found(ids: list[str]) -> dict[str, Any]:
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some objects, they may be deleted or not exist.",
            "context": {"ids": ids},
            "errors": [],
            "links": {},
        }

    # associations (v4)

    def _read_links(self, object_type: str, to_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Per input record, its associated records with every type between them, a page at a
        time; a record without any (or no such record) is an error of a 207, as HubSpot says."""
        results, errors = [], []
        for item in body["inputs"]:
            linked = self.linked(object_type, item["id"], to_type)
            if not linked:
                errors.append(_no_associations(object_type, item["id"], to_type))
                continue
            ordered = sorted(linked, key=int)
            after = item.get("after")
            start = ordered.index(after) + 1 if after in ordered else 0
            page = ordered[start : start + self.link_page_size]
            row: dict[str, Any] = {
                "from": {"id": item["id"]},
                "to": [
                    {
                        "toObjectId": to_id,
                        "associationTypes": [
                            {
                                "category": "HUBSPOT_DEFINED",
                                "typeId": type_id,
                                "label": ASSOCIATION_KINDS[type_id].label,
                            }
                            for type_id in sorted(linked[to_id])
                        ],
                    }
                    for to_id in page
                ],
            }
            if page[-1] != ordered[-1]:
                row["paging"] = {"next": {"after": page[-1]}}
            results.append(row)
        return self._batch(results, errors)

    def _create_links(
        self, object_type: str, to_type: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        made, errors = [], []
        for item in body["inputs"]:
            from_id, to_id = item["from"]["id"], item["to"]["id"]
            problems = [
                problem
                for kind in item["types"]
                if (problem := self._link_problem(object_type, from_id, to_type, to_id, kind))
            ]
            if problems and not self.partial_link_batches:
                return _invalid_associations(problems)
            if problems:
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": "One or more associations are invalid",
                        "context": _merged(problems),
                        "errors": [],
                        "links": {},
                    }
                )
                continue
            made.append((from_id, to_id, [kind["associationTypeId"] for kind in item["types"]]))
        results = []
        for from_id, to_id, type_ids in made:
            for type_id in type_ids:
                self.associate(object_type, from_id, to_type, to_id, type_id)
            results.append(
                {
                    "fromObjectTypeId": TYPE_IDS[object_type],
                    "fromObjectId": from_id,
                    "toObjectTypeId": TYPE_IDS[to_type],
                    "toObjectId": to_id,
                    "labels": [
                        label
                        for type_id in type_ids
                        if (label := ASSOCIATION_KINDS[type_id].label) is not None
                    ],
                }
            )
        return self._batch(results, errors, ok=201)

    def _archive_links(
        self, object_type: str, to_type: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        """Every association type between each pair goes, both ways."""
        pairs = {(item["from"]["id"], to["id"]) for item in body["inputs"] for to in item["to"]}
        self.links = {
            link
            for link in self.links
            if not ((link[0], link[2]) == (object_type, to_type) and (link[1], link[3]) in pairs)
            and not ((link[0], link[2]) == (to_type, object_type) and (link[3], link[1]) in pairs)
        }
        return 204, None

    # pipelines

    def _pipelines(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        assert object_type == "deals", "the fake holds deal pipelines only"
        return 200, {
            "results": [{**p, "displayOrder": order} for order, p in enumerate(self.pipelines)]
        }


def _issue(name: str, error: str, message: str) -> dict[str, Any]:
    """One entry of the list inside HubSpot's "Property values were not valid" message."""
    return {"isValid": False, "message": message, "error": error, "name": name}


def _option_issue(name: str, value: str, options: tuple[str, ...]) -> dict[str, Any]:
    listed = ", ".join(f'value: "{option}"' for option in options)
    return _issue(name, "INVALID_OPTION", f"{value} was not one of the allowed options: [{listed}]")


def _timestamp(value: str) -> str | None:
    """A datetime as HubSpot keeps it (``2024-05-01T10:00:00Z``), from ISO 8601 or epoch
    milliseconds; None for anything else (a bare date included)."""
    try:
        if _MILLIS.match(value):
            when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(value))
        elif "T" in value:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return _moment(when if when.tzinfo else when.replace(tzinfo=UTC))


def _moment(when: datetime) -> str:
    """A time as HubSpot writes it: UTC, milliseconds only when there are some."""
    when = when.astimezone(UTC)
    millis = when.microsecond // 1000
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{millis:03d}Z" if millis else "Z")


def _merged(problems: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    for problem in problems:
        for key, values in problem.items():
            context.setdefault(key, []).extend(values)
    return context


def _invalid_associations(problems: list[dict[str, list[str]]]) -> tuple[int, dict[str, Any]]:
    return FakeHubSpot._error(
        400, "VALIDATION_ERROR", "One or more associations are invalid", _merged(problems)
    )


def _no_associations(object_type: str, record_id: str, to_type: str) -> dict[str, Any]:
    """HubSpot's error for a record without associations of the type, or no such record."""
    one, other = SINGULAR[object_type].lower(), SINGULAR[to_type].lower()
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {other} is associated with {one} {record_id}.",
        "context": {"fromObjectId": [record_id]},
        "errors": [],
        "links": {},
    }
