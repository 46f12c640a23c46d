"""HubSpot CRM v3 as a dialect: its requests, its answers, its budget.

What HubSpot needs that a plain loop of POSTs does not give:

- batches of at most 100 inputs, answered per record (results matched back by
  ``objectWriteTraceId``, id or unique key, since HubSpot does not promise input order);
- a batch refused for some of its records' values (400) is bisected until the bad records stand
  alone, so the good ones are written and each bad one carries HubSpot's reason;
- a batch create refused because a key exists (409, naming only the first) is reported as
  ``conflicted`` so the runner looks its keys up once instead of bisecting;
- HubSpot enforces unique emails but not unique company domains or deal names: those are found
  by search (its own, lower budget).

Limits: a rolling ten-second window learnt from ``X-HubSpot-RateLimit-*``, search at 4 per
second, and a daily allowance whose 429 (``policyName: DAILY``) stops the push until the reset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bulk_pipeline.entities import ENTITY_SPECS, Entity, normalize_key
from bulk_pipeline.errors import CrmRefused, TransientError
from bulk_pipeline.redaction import redact
from bulk_pipeline.targets.base import (
    BatchResult,
    Capabilities,
    CreateResult,
    CrmRecord,
    DeleteKind,
    Dialect,
    Estimate,
    Failed,
    FailureKind,
    Item,
    LinkItem,
    LinkStyle,
    NoteParent,
    Record,
    Work,
    Written,
)
from bulk_pipeline.targets.http.exchange import (
    PREFLIGHT_SECONDS,
    ApiRequest,
    Exchange,
    Operation,
    Outcome,
    Verdict,
)
from bulk_pipeline.targets.http.limits import (
    Budget,
    DailyAllowance,
    RollingWindow,
    WindowHeaders,
)
from bulk_pipeline.targets.hubspot.pipelines import DealPipelines
from bulk_pipeline.targets.hubspot.properties import (
    OBJECT_TYPES,
    PROPERTY_MAP,
    TIMESTAMP_PROPERTY,
    from_properties,
    hubspot_property,
    key_property,
    now_timestamp,
    to_properties,
    unmapped_fields,
)

BATCH_LIMIT = 100
SEARCH_PAGE_LIMIT = 100
SEARCH = "search"
STANDARD_WINDOW = WindowHeaders(
    max="X-HubSpot-RateLimit-Max",
    remaining="X-HubSpot-RateLimit-Remaining",
    interval_ms="X-HubSpot-RateLimit-Interval-Milliseconds",
)
DAILY_HEADER = "X-HubSpot-RateLimit-Daily"
DAILY_REMAINING_HEADER = "X-HubSpot-RateLimit-Daily-Remaining"
DEFAULT_MAX_REQUESTS = 100
DEFAULT_INTERVAL_SECONDS = 10.0
"""HubSpot's Free/Starter burst limit; used until the CRM's headers say otherwise."""
SEARCH_MAX_REQUESTS = 4
SEARCH_INTERVAL_SECONDS = 1.0
"""HubSpot's search endpoints have their own, lower limit and send no rate-limit headers."""
ASSOCIATION_TYPES: dict[tuple[Entity, Entity], int] = {
    (Entity.CONTACTS, Entity.COMPANIES): 1,
    (Entity.DEALS, Entity.COMPANIES): 5,
    (Entity.DEALS, Entity.CONTACTS): 3,
    (Entity.ACTIVITIES, Entity.CONTACTS): 204,
    (Entity.ACTIVITIES, Entity.COMPANIES): 192,
    (Entity.ACTIVITIES, Entity.DEALS): 216,
    (Entity.NOTES, Entity.CONTACTS): 202,
    (Entity.NOTES, Entity.COMPANIES): 190,
    (Entity.NOTES, Entity.DEALS): 214,
}
"""HubSpot-defined association type ids from a record to the record it refers to: a contact's
and a deal's company as their primary company; the unlabeled type for the others."""

CAPABILITIES = Capabilities(
    entities=frozenset(OBJECT_TYPES),
    batch_size=BATCH_LIMIT,
    lookup_batch_size=BATCH_LIMIT,
    concurrency=1,
    refuses_duplicate_keys=frozenset({Entity.CONTACTS}),
    native_upsert=frozenset({Entity.CONTACTS}),
    delete=DeleteKind.ARCHIVE,
    links=LinkStyle.ASSOCIATION,
    note_needs_parent=False,
    links_on_create=True,
)


def hubspot_budget(state_file: Path | None = None) -> Budget:
    """The limits of one HubSpot account (portal)."""
    standard = RollingWindow(
        "ten-secondly request limit",
        DEFAULT_MAX_REQUESTS,
        DEFAULT_INTERVAL_SECONDS,
        headers=STANDARD_WINDOW,
    )
    search = RollingWindow("search request limit", SEARCH_MAX_REQUESTS, SEARCH_INTERVAL_SECONDS)
    daily = DailyAllowance(
        "daily request limit",
        None,
        remaining_header=DAILY_REMAINING_HEADER,
        limit_header=DAILY_HEADER,
        state_file=state_file,
    )
    return Budget(
        {"*": (standard, daily), SEARCH: (search, daily)},
        on_rate_limited=_rate_limit_rule(daily),
    )


def _rate_limit_rule(
    daily: DailyAllowance,
) -> Callable[[ApiRequest, httpx.Response, float | None], float]:
    """A 429 whose ``policyName`` is DAILY ends the day's work; others are waited out."""

    def rule(request: ApiRequest, response: httpx.Response, retry_after: float | None) -> float:
        if _policy_name(response) == "DAILY":
            until = (
                datetime.now(UTC) + timedelta(seconds=retry_after)
                if retry_after is not None and retry_after > 60
                else None
            )
            raise daily.exhaust(until, "HubSpot answered 429 DAILY")
        return retry_after if retry_after is not None else 1.0

    return rule


def _policy_name(response: httpx.Response) -> str | None:
    body = response_json(response)
    name = body.get("policyName")
    return name if isinstance(name, str) else None


# --- requests -----------------------------------------------------------------------------------


def object_path(entity: Entity, suffix: str = "") -> str:
    return f"/crm/v3/objects/{OBJECT_TYPES[entity]}{suffix}"


def _trace_id(item: Item) -> str:
    """Echoed by HubSpot in each result, so answers can be matched to inputs."""
    return str(item.index)


def associations(entity: Entity, record: Record) -> list[dict[str, Any]]:
    """The links a record's link fields name, as HubSpot's associations on a create."""
    return [
        association_input(entity, reference.entity, value)
        for reference in ENTITY_SPECS[entity].references
        if (value := record.get(reference.link_field))
    ]


def association_input(entity: Entity, to: Entity, to_id: str) -> dict[str, Any]:
    return {"to": {"id": to_id}, "types": [association_type(entity, to)]}


def association_type(entity: Entity, to: Entity) -> dict[str, Any]:
    return {
        "associationCategory": "HUBSPOT_DEFINED",
        "associationTypeId": ASSOCIATION_TYPES[(entity, to)],
    }


def create_properties(entity: Entity, record: Record) -> dict[str, str]:
    """The properties of a new record; a task or note without a date is dated now, since
    HubSpot requires ``hs_timestamp``."""
    properties = to_properties(entity, record)
    if entity in (Entity.ACTIVITIES, Entity.NOTES):
        properties.setdefault(TIMESTAMP_PROPERTY, now_timestamp())
    return properties


def create_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    inputs = [
        {
            "properties": create_properties(entity, it.record),
            "associations": associations(entity, it.record),
            "objectWriteTraceId": _trace_id(it),
        }
        for it in items
    ]
    return ApiRequest(
        "POST",
        object_path(entity, "/batch/create"),
        json={"inputs": inputs},
        kind="write",
        idempotent=False,
    )


def upsert_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    prop = key_property(entity)
    if prop is None:
        raise TypeError(f"HubSpot upserts {entity} by no property")
    inputs = []
    for it in items:
        properties = to_properties(entity, it.record)
        inputs.append(
            {
                "id": properties[prop],
                "idProperty": prop,
                "properties": properties,
                "objectWriteTraceId": _trace_id(it),
            }
        )
    return ApiRequest(
        "POST", object_path(entity, "/batch/upsert"), json={"inputs": inputs}, kind="write"
    )


def update_request(entity: Entity, items: Sequence[Item], clear_blanks: bool) -> ApiRequest:
    inputs = [
        {
            "id": it.id,
            "properties": to_properties(entity, it.record, clear_blanks=clear_blanks),
            "objectWriteTraceId": _trace_id(it),
        }
        for it in items
    ]
    return ApiRequest(
        "POST", object_path(entity, "/batch/update"), json={"inputs": inputs}, kind="write"
    )


def archive_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    inputs = [{"id": it.id} for it in items]
    return ApiRequest(
        "POST", object_path(entity, "/batch/archive"), json={"inputs": inputs}, kind="write"
    )


def read_request(entity: Entity, ids: Sequence[str], id_property: str | None = None) -> ApiRequest:
    body: dict[str, Any] = {
        "inputs": [{"id": value} for value in ids],
        "properties": list(PROPERTY_MAP[entity].values()),
        "propertiesWithHistory": [],
    }
    if id_property is not None:
        body["idProperty"] = id_property
    return ApiRequest(
        "POST", object_path(entity, "/batch/read"), json=body, params={"archived": "false"}
    )


def associations_path(entity: Entity, to: Entity, operation: str) -> str:
    return f"/crm/v4/associations/{OBJECT_TYPES[entity]}/{OBJECT_TYPES[to]}/batch/{operation}"


def read_links_request(
    entity: Entity, ids: Sequence[str], to: Entity, after: dict[str, str] | None = None
) -> ApiRequest:
    """The links of ``ids``; ``after`` continues a record's links past a page."""
    pages = after or {}
    inputs = [
        {"id": record_id, **({"after": pages[record_id]} if record_id in pages else {})}
        for record_id in ids
    ]
    return ApiRequest("POST", associations_path(entity, to, "read"), json={"inputs": inputs})


def add_links_request(entity: Entity, to: Entity, items: Sequence[LinkItem]) -> ApiRequest:
    """Labelled (typed) associations: HubSpot keeps one association per pair and type, so
    sending one that exists changes nothing."""
    inputs = [
        {
            "from": {"id": it.link.from_id},
            "to": {"id": it.link.to_id},
            "types": [association_type(entity, to)],
        }
        for it in items
    ]
    return ApiRequest(
        "POST", associations_path(entity, to, "create"), json={"inputs": inputs}, kind="write"
    )


def remove_links_request(entity: Entity, to: Entity, items: Sequence[LinkItem]) -> ApiRequest:
    inputs = [{"from": {"id": it.link.from_id}, "to": [{"id": it.link.to_id}]} for it in items]
    return ApiRequest(
        "POST", associations_path(entity, to, "archive"), json={"inputs": inputs}, kind="write"
    )


def pipelines_request() -> ApiRequest:
    return ApiRequest("GET", f"/crm/v3/pipelines/{OBJECT_TYPES[Entity.DEALS]}")


def search_request(
    entity: Entity, prop: str, values: Sequence[str], after: str | None = None
) -> ApiRequest:
    """Records whose ``prop`` is one of ``values`` (HubSpot wants IN values lower-cased; its
    string comparison ignores case)."""
    lowered = [v.lower() for v in values]
    condition: dict[str, Any] = (
        {"propertyName": prop, "operator": "EQ", "value": lowered[0]}
        if len(lowered) == 1
        else {"propertyName": prop, "operator": "IN", "values": lowered}
    )
    body = {
        "filterGroups": [{"filters": [condition]}],
        "properties": list(PROPERTY_MAP[entity].values()),
        "sorts": [],
        "limit": SEARCH_PAGE_LIMIT,
        "after": after or "0",
    }
    return ApiRequest("POST", object_path(entity, "/search"), json=body, kind=SEARCH)


# --- answers ------------------------------------------------------------------------------------


def response_json(response: httpx.Response | None) -> dict[str, Any]:
    if response is None or not response.content:
        return {}
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


_FALLBACK_CATEGORIES = {
    400: "VALIDATION_ERROR",
    404: "OBJECT_NOT_FOUND",
    409: "CONFLICT",
    429: "RATE_LIMIT",
}


def error_detail(status: int | None, body: dict[str, Any]) -> tuple[str, str]:
    """Category and message of a HubSpot error body (schema ``Error`` / ``StandardError``)."""
    category = body.get("category")
    if not isinstance(category, str) or not category:
        if status is None:
            category = "TRANSPORT_ERROR"
        elif status >= 500:
            category = "SERVER_ERROR"
        else:
            category = _FALLBACK_CATEGORIES.get(status, "HTTP_ERROR")
    message = str(body.get("message") or (f"HTTP {status}" if status else "no answer"))
    details = [
        str(e["message"])
        for e in body.get("errors") or []
        if isinstance(e, dict) and e.get("message") and str(e["message"]) not in message
    ]
    if details:
        message = f"{message} ({'; '.join(details)})"
    return category, redact(message)


_KINDS = {
    "VALIDATION_ERROR": FailureKind.INVALID,
    "CONFLICT": FailureKind.CONFLICT,
    "OBJECT_NOT_FOUND": FailureKind.NOT_FOUND,
}


def _kind(category: str) -> FailureKind:
    return _KINDS.get(category, FailureKind.INVALID)


def _result_rows(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    rows = body.get(name)
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def match_results(
    entity: Entity, items: Sequence[Item], results: Sequence[dict[str, Any]]
) -> tuple[list[tuple[Item, dict[str, Any]]], list[Item]]:
    """Pair each result with its input: by trace id, then id, then unique key, then position."""
    by_trace = {_trace_id(it): it for it in items}
    by_id = {it.id: it for it in items if it.id}
    by_key = {it.key: it for it in items if it.key}
    prop = key_property(entity)
    matched: dict[int, dict[str, Any]] = {}
    unplaced: list[dict[str, Any]] = []
    for row in results:
        properties = row.get("properties") or {}
        key_value = properties.get(prop) if prop and isinstance(properties, dict) else None
        candidates = (
            by_trace.get(str(row.get("objectWriteTraceId"))),
            by_id.get(str(row.get("id"))),
            by_key.get(normalize_key(key_value)) if isinstance(key_value, str) else None,
        )
        item = next((c for c in candidates if c is not None and c.index not in matched), None)
        if item is None:
            unplaced.append(row)
        else:
            matched[item.index] = row
    rest = [it for it in items if it.index not in matched]
    if unplaced and len(unplaced) == len(rest):
        matched.update((it.index, row) for it, row in zip(rest, unplaced, strict=True))
        rest = []
    pairs = [(it, matched[it.index]) for it in items if it.index in matched]
    return pairs, rest


def parse_batch_write(
    entity: Entity, items: Sequence[Item], response: httpx.Response, *, created: bool | None
) -> BatchResult:
    """One outcome per input from a 200/201/207 answer; ``created=None`` reads upsert's ``new``."""
    body = response_json(response)
    pairs, rest = match_results(entity, items, _result_rows(body, "results"))
    result = BatchResult(
        successful=[
            Written(
                index=it.index,
                id=str(row.get("id")),
                created=bool(row.get("new")) if created is None else created,
            )
            for it, row in pairs
        ]
    )
    if rest:
        result.failed.extend(_failures_from_errors(rest, _result_rows(body, "errors")))
    return result


def _failures_from_errors(items: Sequence[Item], errors: Sequence[dict[str, Any]]) -> list[Failed]:
    """Per-record errors of a 207: by the ids in each error's context, else shared."""
    by_id: dict[str, tuple[str, str]] = {}
    for error in errors:
        detail = error_detail(None, error)
        context = error.get("context") or {}
        for values in context.values() if isinstance(context, dict) else ():
            for value in values if isinstance(values, list) else ():
                by_id[normalize_key(str(value))] = detail
    shared = (
        error_detail(None, errors[0])
        if len(errors) == 1
        else (
            "UNKNOWN",
            "HubSpot did not return this record; "
            + ("; ".join(error_detail(None, e)[1] for e in errors) or "no error given"),
        )
    )
    failed = []
    for it in items:
        category, message = next(
            (
                by_id[normalize_key(k)]
                for k in (it.id, it.key, _trace_id(it))
                if k and normalize_key(k) in by_id
            ),
            shared,
        )
        failed.append(Failed(it.index, _kind(category), message))
    return failed


def _refused_links(links: Sequence[LinkItem], errors: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Links a 207 refused, by the record ids each error's context names."""
    refused: dict[int, str] = {}
    for error in errors:
        _category, message = error_detail(None, error)
        context = error.get("context") or {}
        named = {
            str(value)
            for values in (context.values() if isinstance(context, dict) else ())
            for value in (values if isinstance(values, list) else ())
        }
        for it in links:
            if it.link.from_id in named or it.link.to_id in named:
                refused.setdefault(it.index, message)
    return refused


def fail_all(items: Sequence[Item] | Sequence[LinkItem], outcome: Outcome) -> list[Failed]:
    """Every input of a batch that got no per-record answer, with the batch's reason."""
    category, message = error_detail(outcome.status, response_json(outcome.response))
    if outcome.verdict is Verdict.GAVE_UP:
        return [
            Failed(
                it.index,
                FailureKind.TRANSIENT,
                f"gave up after {outcome.attempts} attempts; last: {outcome.failure}",
            )
            for it in items
        ]
    return [Failed(it.index, _kind(category), message) for it in items]


def records_from_rows(entity: Entity, rows: Sequence[dict[str, Any]]) -> list[CrmRecord]:
    return [
        CrmRecord(
            id=str(row.get("id")),
            fields=from_properties(entity, row.get("properties") or {}),
            created_at=_timestamp(row.get("createdAt")),
        )
        for row in rows
    ]


def _timestamp(value: Any) -> datetime | None:
    """HubSpot's ISO 8601 timestamps (``2024-05-01T10:00:00.123Z``); None when absent or odd."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _older(a: CrmRecord, b: CrmRecord) -> CrmRecord:
    """Of two records with the same key, the one created first (lower id) is the canonical one."""
    return a if (len(a.id), a.id) <= (len(b.id), b.id) else b


def _keyed(found: dict[str, CrmRecord], record: CrmRecord, row: dict[str, Any], prop: str) -> None:
    value = (row.get("properties") or {}).get(prop)
    if isinstance(value, str) and value.strip():
        key = normalize_key(value)
        previous = found.get(key)
        found[key] = record if previous is None else _older(previous, record)


SPLITTABLE_STATUSES = frozenset({400, 404})
"""A batch refused with these may hold good records next to the bad: bisect to find them."""


class HubSpotDialect(Dialect):
    """Every HubSpot call sequence as an operation; each handles at most one batch."""

    capabilities = CAPABILITIES

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._pipelines: DealPipelines | None = None

    def _deal_pipelines(self) -> Operation[DealPipelines]:
        """The account's deal pipelines, read once."""
        if self._pipelines is None:
            outcome = yield from self._send(pipelines_request())
            self._pipelines = DealPipelines.from_response(self._body(outcome))
        return self._pipelines

    def _placed(
        self, entity: Entity, items: Sequence[Item], held: dict[str, str] | None = None
    ) -> Operation[tuple[list[Item], list[Failed]]]:
        """Deals with their stage and pipeline labels made ids; a label the account does not
        have fails its deal with the labels it does have. ``held``: the pipeline ids of deals
        being updated, for a stage given without its pipeline."""
        if entity is not Entity.DEALS or not any(
            it.record.get("stage") or it.record.get("pipeline") for it in items
        ):
            return list(items), []
        pipelines = yield from self._deal_pipelines()
        placed: list[Item] = []
        failed: list[Failed] = []
        for it in items:
            current = (held or {}).get(it.id or "")
            pipeline = it.record.get("pipeline") or current
            placement = pipelines.place(it.record.get("stage"), pipeline, current)
            if isinstance(placement, str):
                failed.append(Failed(it.index, FailureKind.INVALID, placement))
                continue
            record = dict(it.record)
            if placement is not None:
                record["pipeline"] = placement.pipeline_id
                if placement.stage_id is not None:
                    record["stage"] = placement.stage_id
            placed.append(Item(it.index, record, it.key, it.id))
        return placed, failed

    def _records(
        self, entity: Entity, rows: Sequence[dict[str, Any]]
    ) -> Operation[list[CrmRecord]]:
        """Records from HubSpot's rows; deals with their stage and pipeline as labels."""
        records = records_from_rows(entity, rows)
        if entity is not Entity.DEALS or not any(
            r.fields.get("stage") or r.fields.get("pipeline") for r in records
        ):
            return records
        pipelines = yield from self._deal_pipelines()
        for record in records:
            if record.fields.get("stage") or record.fields.get("pipeline"):
                pipeline, stage = pipelines.labels(
                    record.fields.get("pipeline"), record.fields.get("stage")
                )
                record.fields.update(
                    {
                        k: v
                        for k, v in (("pipeline", pipeline), ("stage", stage))
                        if k in record.fields
                    }
                )
        return records

    def _send(self, request: ApiRequest) -> Operation[Outcome]:
        return self.exchange.send(request)

    def _body(self, outcome: Outcome) -> dict[str, Any]:
        """The body of a call that must succeed (reads, notes); else the error for the call."""
        if outcome.verdict is Verdict.OK:
            return response_json(outcome.response)
        if outcome.verdict is Verdict.GAVE_UP:
            raise TransientError(
                f"the CRM at {self.exchange.where} did not answer {outcome.request.describe()} "
                f"for {outcome.attempts} attempts within the retry window; last: "
                f"{outcome.failure}"
            )
        category, message = error_detail(outcome.status, response_json(outcome.response))
        raise CrmRefused(f"{outcome.request.describe()} was refused: {category}: {message}")

    def unmapped(self, entity: Entity, record: Record) -> list[str]:
        return unmapped_fields(entity, record)

    def check(self) -> Operation[None]:
        request = ApiRequest(
            "GET", object_path(Entity.CONTACTS), params={"limit": "1"}, patience=PREFLIGHT_SECONDS
        )
        self._body((yield from self._send(request)))

    def estimate(self, entity: Entity, work: Work) -> Estimate:
        requests = sum(
            math.ceil(n / BATCH_LIMIT)
            for n in (work.lookups, work.reads, work.creates, work.updates, work.links, work.links)
        )
        return Estimate(requests=requests, units=requests, unit="requests")

    def _settle(
        self,
        items: Sequence[Item],
        outcome: Outcome,
        again: Callable[[Sequence[Item]], Operation[BatchResult]],
        parse: Callable[[Sequence[Item], httpx.Response], BatchResult],
    ) -> Operation[BatchResult]:
        """Turn a batch's outcome into per-record results, bisecting a batch refused as a whole."""
        if outcome.verdict is Verdict.OK and outcome.response is not None:
            return parse(items, outcome.response)
        if (
            outcome.verdict is Verdict.REJECTED
            and outcome.status in SPLITTABLE_STATUSES
            and len(items) > 1
        ):
            middle = len(items) // 2
            result = yield from again(items[:middle])
            result.extend((yield from again(items[middle:])))
            return result
        return BatchResult(failed=fail_all(items, outcome))

    # writes

    def create(self, entity: Entity, items: Sequence[Item]) -> Operation[CreateResult]:
        """One batch create. A batch refused for bad values is bisected (the halves' own lost
        answers and key conflicts are reported for the runner to settle); one refused because
        a key exists is reported as ``conflicted`` whole, since HubSpot names only the first."""
        items, refused = yield from self._placed(entity, items)
        if not items:
            return CreateResult(failed=refused)
        result = yield from self._create_placed(entity, items)
        result.failed.extend(refused)
        return result

    def _create_placed(self, entity: Entity, items: Sequence[Item]) -> Operation[CreateResult]:
        outcome = yield from self._send(create_request(entity, items))
        if outcome.verdict is Verdict.AMBIGUOUS:
            return CreateResult(unconfirmed=list(items))
        if outcome.verdict is Verdict.OK and outcome.response is not None:
            parsed = parse_batch_write(entity, items, outcome.response, created=True)
            return CreateResult(parsed.successful, parsed.failed)
        if outcome.verdict is Verdict.REJECTED and outcome.status == 409:
            return CreateResult(conflicted=list(items))
        if (
            outcome.verdict is Verdict.REJECTED
            and outcome.status in SPLITTABLE_STATUSES
            and len(items) > 1
        ):
            middle = len(items) // 2
            result = CreateResult()
            for half in (items[:middle], items[middle:]):
                part = yield from self._create_placed(entity, half)
                result.extend(part)
                result.unconfirmed += part.unconfirmed
                result.conflicted += part.conflicted
            return result
        return CreateResult(failed=fail_all(items, outcome))

    def upsert(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Create or update by email (contacts); idempotent, so a plain retry is safe.

        ``created`` is HubSpot's ``new``: when an answer was lost and the batch resent, a record
        the lost attempt created reads as updated.
        """
        outcome = yield from self._send(upsert_request(entity, items))
        return (
            yield from self._settle(
                items,
                outcome,
                lambda part: self.upsert(entity, part),
                lambda part, response: parse_batch_write(entity, part, response, created=None),
            )
        )

    def update(
        self, entity: Entity, items: Sequence[Item], *, clear_blanks: bool
    ) -> Operation[BatchResult]:
        held = yield from self._pipelines_held(entity, items)
        items, refused = yield from self._placed(entity, items, held)
        result = BatchResult(failed=refused)
        if items:
            result.extend((yield from self._update_placed(entity, items, clear_blanks)))
        return result

    def _pipelines_held(self, entity: Entity, items: Sequence[Item]) -> Operation[dict[str, str]]:
        """The pipeline of each deal whose update names a stage or a pipeline but not both: a
        stage alone is one of the deal's pipeline's (a stage of the default pipeline with the
        same label must not move the deal there); a pipeline alone moves the deal, into that
        pipeline's first stage, only when it is another pipeline."""
        ids = [
            it.id
            for it in items
            if it.id and bool(it.record.get("stage")) != bool(it.record.get("pipeline"))
        ]
        if entity is not Entity.DEALS or not ids:
            return {}
        outcome = yield from self._send(read_request(entity, ids))
        if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
            return {}
        return {
            str(row.get("id")): str(pipeline)
            for row in _result_rows(self._body(outcome), "results")
            if (pipeline := (row.get("properties") or {}).get("pipeline"))
        }

    def _update_placed(
        self, entity: Entity, items: Sequence[Item], clear_blanks: bool
    ) -> Operation[BatchResult]:
        outcome = yield from self._send(update_request(entity, items, clear_blanks))
        return (
            yield from self._settle(
                items,
                outcome,
                lambda part: self._update_placed(entity, part, clear_blanks),
                lambda part, response: parse_batch_write(entity, part, response, created=False),
            )
        )

    def remove(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        outcome = yield from self._send(archive_request(entity, items))
        return (
            yield from self._settle(
                items,
                outcome,
                lambda part: self.remove(entity, part),
                lambda part, _response: BatchResult(
                    successful=[Written(it.index, it.id or "", False) for it in part]
                ),
            )
        )

    # reads

    def read(self, entity: Entity, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        """``batch/read`` by id; ids HubSpot does not hold (archived, merged away) are absent."""
        outcome = yield from self._send(read_request(entity, ids))
        if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
            return {}
        rows = _result_rows(self._body(outcome), "results")
        return {record.id: record for record in (yield from self._records(entity, rows))}

    def lookup(
        self, entity: Entity, values: Sequence[str], by: str
    ) -> Operation[dict[str, CrmRecord]]:
        """Unique values (contacts' email) by ``batch/read`` on them (exact, immediate);
        others by search, the first-created record of each value."""
        prop = hubspot_property(entity, by)
        found: dict[str, CrmRecord] = {}
        if entity in CAPABILITIES.refuses_duplicate_keys and prop == key_property(entity):
            outcome = yield from self._send(read_request(entity, values, prop))
            if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
                return {}
            rows = _result_rows(self._body(outcome), "results")
        else:
            rows = yield from self._search_rows(entity, prop, values)
        records = yield from self._records(entity, rows)
        for record, row in zip(records, rows, strict=True):
            _keyed(found, record, row, prop)
        return found

    def search(self, entity: Entity, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        rows = yield from self._search_rows(entity, hubspot_property(entity, by), values)
        return (yield from self._records(entity, rows))

    def _search_rows(
        self, entity: Entity, prop: str, values: Sequence[str]
    ) -> Operation[list[dict[str, Any]]]:
        """Every record whose ``prop`` is one of ``values``, page after page."""
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            outcome = yield from self._send(search_request(entity, prop, values, after))
            body = self._body(outcome)
            page = _result_rows(body, "results")
            rows += page
            paging = body.get("paging") or {}
            after = ((paging.get("next") or {}) if isinstance(paging, dict) else {}).get("after")
            if not page or not after:
                return rows

    # links

    def read_links(
        self, entity: Entity, ids: Sequence[str], to: Entity
    ) -> Operation[dict[str, set[str]]]:
        """v4 ``batch/read``, following each record's pages of links; an id without
        associations comes back as an error (or not at all), which reads as no links."""
        linked: dict[str, set[str]] = {record_id: set() for record_id in ids}
        asked: list[str] = list(ids)
        after: dict[str, str] = {}
        while asked:
            outcome = yield from self._send(read_links_request(entity, asked, to, after))
            if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
                return linked
            after = {}
            for row in _result_rows(self._body(outcome), "results"):
                source = row.get("from") or {}
                from_id = str(source.get("id")) if isinstance(source, dict) else ""
                targets = row.get("to") if isinstance(row.get("to"), list) else []
                linked.setdefault(from_id, set()).update(
                    str(t.get("toObjectId")) for t in targets or [] if isinstance(t, dict)
                )
                paging = row.get("paging") if isinstance(row.get("paging"), dict) else {}
                following = (paging or {}).get("next") or {}
                if isinstance(following, dict) and following.get("after"):
                    after[from_id] = str(following["after"])
            asked = list(after)
        return linked

    def add_links(
        self, entity: Entity, to: Entity, links: Sequence[LinkItem]
    ) -> Operation[BatchResult]:
        outcome = yield from self._send(add_links_request(entity, to, links))
        return (
            yield from self._settle_links(
                links, outcome, lambda part: self.add_links(entity, to, part)
            )
        )

    def remove_links(
        self, entity: Entity, to: Entity, links: Sequence[LinkItem]
    ) -> Operation[BatchResult]:
        outcome = yield from self._send(remove_links_request(entity, to, links))
        return (
            yield from self._settle_links(
                links, outcome, lambda part: self.remove_links(entity, to, part)
            )
        )

    def _settle_links(
        self,
        links: Sequence[LinkItem],
        outcome: Outcome,
        again: Callable[[Sequence[LinkItem]], Operation[BatchResult]],
    ) -> Operation[BatchResult]:
        """Per-link results: a batch refused whole is bisected down to the links it refuses;
        a lost answer is resent (linking, like unlinking, is the same done twice)."""
        if outcome.verdict is Verdict.OK:
            body = response_json(outcome.response)
            errors = _result_rows(body, "errors")
            refused = _refused_links(links, errors)
            return BatchResult(
                successful=[
                    Written(it.index, it.link.from_id, created=False)
                    for it in links
                    if it.index not in refused
                ],
                failed=[Failed(i, FailureKind.INVALID, m) for i, m in sorted(refused.items())],
            )
        if (
            outcome.verdict is Verdict.REJECTED
            and outcome.status in SPLITTABLE_STATUSES
            and len(links) > 1
        ):
            middle = len(links) // 2
            result = yield from again(links[:middle])
            result.extend((yield from again(links[middle:])))
            return result
        return BatchResult(failed=fail_all(links, outcome))

    def add_note(self, body: str, parent: NoteParent | None) -> Operation[str]:
        """One note; not resent after an unclear failure, so never doubled."""
        request = ApiRequest(
            "POST",
            object_path(Entity.NOTES),
            json={
                "properties": {"hs_note_body": body, TIMESTAMP_PROPERTY: now_timestamp()},
                "associations": (
                    []
                    if parent is None
                    else [association_input(Entity.NOTES, parent.entity, parent.id)]
                ),
            },
            kind="write",
            idempotent=False,
        )
        outcome = yield from self._send(request)
        return str(self._body(outcome)["id"])
