"""HubSpot CRM v3 as a bulk_pipeline target (and the embedded sandbox, which speaks the same API).

What HubSpot needs that a plain loop of POSTs does not give:

- batches of at most 100 inputs, answered per record (results matched back by
  ``objectWriteTraceId``, id or unique key, since HubSpot does not promise input order);
- a batch that HubSpot refuses because of some of its records (400, 409) is bisected until the bad
  records stand alone, so the good ones are written and each bad one carries HubSpot's reason;
- a create whose outcome is unknown (timeout, dropped connection, 5xx) is never simply resent: the
  records are read back by unique key first, and only the missing ones go again;
- HubSpot enforces unique emails but not unique company domains or deal names, so creates of
  those look the keys up first, and their upserts are a lookup plus update/create.

The logic lives in :class:`HubSpotOperations` as effect-yielding generators (see ``http.py``);
:class:`HubSpotTarget` runs them one batch at a time on an ``httpx.Client``,
:class:`AsyncHubSpotTarget` several at a time on an ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.redaction import Secret, redact, redacting_logger
from bulk_pipeline.targets.base import (
    AsyncCrmTarget,
    BatchResult,
    CrmError,
    CrmRecord,
    CrmTarget,
    FailedRecord,
    ReadResult,
    Record,
    WrittenRecord,
)
from bulk_pipeline.targets.http import (
    ApiRequest,
    AsyncDriver,
    ClientSettings,
    Operation,
    Outcome,
    Pacer,
    Pause,
    RetryPolicy,
    SyncDriver,
    Verdict,
    exchange,
    shared_pacer,
)

log = redacting_logger(__name__)

R = TypeVar("R")
T = TypeVar("T")

PROPERTY_MAP: dict[Entity, dict[str, str]] = {
    Entity.CONTACTS: {
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone": "phone",
        "mobile_phone": "mobilephone",
        "company": "company",
        "job_title": "jobtitle",
        "website": "website",
        "address": "address",
        "city": "city",
        "state": "state",
        "zip": "zip",
        "country": "country",
        "lifecycle_stage": "lifecyclestage",
        "date_of_birth": "date_of_birth",
    },
    Entity.COMPANIES: {
        "name": "name",
        "domain": "domain",
        "website": "website",
        "phone": "phone",
        "industry": "industry",
        "address": "address",
        "city": "city",
        "state": "state",
        "zip": "zip",
        "country": "country",
        "description": "description",
        "number_of_employees": "numberofemployees",
        "annual_revenue": "annualrevenue",
    },
    Entity.DEALS: {
        "name": "dealname",
        "amount": "amount",
        "stage": "dealstage",
        "pipeline": "pipeline",
        "close_date": "closedate",
        "description": "description",
    },
}
"""Our field name -> HubSpot property, per entity: the only place that knows HubSpot's names."""

OBJECT_TYPES: dict[Entity, str] = {
    Entity.CONTACTS: "contacts",
    Entity.COMPANIES: "companies",
    Entity.DEALS: "deals",
}
SINGULAR_LABELS: dict[Entity, str] = {
    Entity.CONTACTS: "contact",
    Entity.COMPANIES: "company",
    Entity.DEALS: "deal",
}
BATCH_LIMIT = 100
SEARCH_PAGE_LIMIT = 100
KEYS_ENFORCED_BY_HUBSPOT = frozenset({Entity.CONTACTS})
"""HubSpot refuses a second contact with the same email; domains and deal names it allows twice."""
NATIVE_UPSERT = frozenset({Entity.CONTACTS})
"""``batch/upsert`` needs a unique property as ``idProperty``: only ``email`` is one by default."""
SPLITTABLE_STATUSES = frozenset({400, 404, 409})
WITHOUT_CONFLICTS = SPLITTABLE_STATUSES - {409}


@dataclass(frozen=True)
class CreateOptions:
    known_absent: bool = False
    """The caller has just looked the keys up: skip the existence check before creating."""
    isolate_conflicts: bool = True
    """Split a batch refused for an existing key to write the rest; when False the whole batch
    fails with CONFLICT at once (nothing written), for callers that then look the keys up."""


"""A batch refused with these may hold good records next to the bad: bisect to find them."""


class UnmappedFieldError(ValueError):
    """A field of ours that HubSpot has no property for; it is never sent."""

    def __init__(self, entity: Entity, fields: Sequence[str]) -> None:
        known = ", ".join(PROPERTY_MAP[entity])
        names = ", ".join(repr(f) for f in fields)
        super().__init__(
            f"no HubSpot {entity.value} property for field(s) {names}; "
            f"map the column to one of: {known}"
        )


# --- pure helpers: records <-> properties, requests, responses ----------------------------------


def hubspot_property(entity: Entity, field_name: str) -> str:
    """The HubSpot property for one of our fields (HubSpot's own name is accepted too)."""
    mapping = PROPERTY_MAP[entity]
    if field_name in mapping:
        return mapping[field_name]
    if field_name in mapping.values():
        return field_name
    raise UnmappedFieldError(entity, [field_name])


def key_property(entity: Entity) -> str:
    return PROPERTY_MAP[entity][ENTITY_SPECS[entity].key_field]


def normalize_key(value: str) -> str:
    """Unique keys compare case-insensitively (HubSpot lower-cases emails and domains)."""
    return value.strip().lower()


def is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


def to_properties(entity: Entity, record: Record, *, clear_blanks: bool = False) -> dict[str, str]:
    """HubSpot properties of a record.

    Blanks are left out so they never clear a CRM value, unless ``clear_blanks`` asks for it
    (a rollback restoring a field that was empty): HubSpot clears a property set to "".
    """
    mapping = PROPERTY_MAP[entity]
    unknown = [name for name in record if name not in mapping]
    if unknown:
        raise UnmappedFieldError(entity, unknown)
    if clear_blanks:
        return {
            mapping[name]: "" if is_blank(value) else value or "" for name, value in record.items()
        }
    return {
        mapping[name]: value
        for name, value in record.items()
        if value is not None and not is_blank(value)
    }


def from_properties(entity: Entity, properties: dict[str, Any]) -> dict[str, str | None]:
    """Our fields from HubSpot properties; properties we do not map are dropped."""
    return {
        name: (None if properties.get(prop) is None else str(properties[prop]))
        for name, prop in PROPERTY_MAP[entity].items()
        if prop in properties
    }


def object_path(entity: Entity, suffix: str = "") -> str:
    return f"/crm/v3/objects/{OBJECT_TYPES[entity]}{suffix}"


@dataclass(frozen=True)
class Item:
    """One input on its way to HubSpot: where it came from and what will be sent."""

    index: int
    record: Record
    properties: dict[str, str]
    key: str | None = None
    """Normalized unique-key value."""
    id: str | None = None
    """HubSpot id, for updates and archives."""

    @property
    def trace_id(self) -> str:
        """Echoed by HubSpot in each result, so answers can be matched to inputs."""
        return str(self.index)


def create_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    inputs = [
        {"properties": it.properties, "associations": [], "objectWriteTraceId": it.trace_id}
        for it in items
    ]
    return ApiRequest(
        "POST", object_path(entity, "/batch/create"), json={"inputs": inputs}, idempotent=False
    )


def upsert_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    prop = key_property(entity)
    inputs = [
        {
            "id": it.properties[prop],
            "idProperty": prop,
            "properties": it.properties,
            "objectWriteTraceId": it.trace_id,
        }
        for it in items
    ]
    return ApiRequest("POST", object_path(entity, "/batch/upsert"), json={"inputs": inputs})


def update_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    inputs = [
        {"id": it.id, "properties": it.properties, "objectWriteTraceId": it.trace_id}
        for it in items
    ]
    return ApiRequest("POST", object_path(entity, "/batch/update"), json={"inputs": inputs})


def archive_request(entity: Entity, items: Sequence[Item]) -> ApiRequest:
    inputs = [{"id": it.id} for it in items]
    return ApiRequest("POST", object_path(entity, "/batch/archive"), json={"inputs": inputs})


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


def search_request(
    entity: Entity, prop: str, values: Sequence[str], after: str | None = None
) -> ApiRequest:
    """Records whose ``prop`` is one of ``values`` (HubSpot wants IN values lower-cased)."""
    values = [normalize_key(v) for v in values]
    condition: dict[str, Any] = (
        {"propertyName": prop, "operator": "EQ", "value": values[0]}
        if len(values) == 1
        else {"propertyName": prop, "operator": "IN", "values": values}
    )
    body = {
        "filterGroups": [{"filters": [condition]}],
        "properties": list(PROPERTY_MAP[entity].values()),
        "sorts": [],
        "limit": SEARCH_PAGE_LIMIT,
        "after": after or "0",
    }
    return ApiRequest("POST", object_path(entity, "/search"), json=body, kind="search")


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


def _result_rows(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    rows = body.get(name)
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def match_results(
    entity: Entity, items: Sequence[Item], results: Sequence[dict[str, Any]]
) -> tuple[list[tuple[Item, dict[str, Any]]], list[Item]]:
    """Pair each result with its input: by trace id, then id, then unique key, then position."""
    by_trace = {it.trace_id: it for it in items}
    by_id = {it.id: it for it in items if it.id}
    by_key = {it.key: it for it in items if it.key}
    prop = key_property(entity)
    matched: dict[int, dict[str, Any]] = {}
    unplaced: list[dict[str, Any]] = []
    for row in results:
        properties = row.get("properties") or {}
        key_value = properties.get(prop) if isinstance(properties, dict) else None
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
            WrittenRecord(
                index=it.index,
                input=it.record,
                id=str(row.get("id")),
                created=bool(row.get("new")) if created is None else created,
            )
            for it, row in pairs
        ]
    )
    if rest:
        result.failed.extend(_failures_from_errors(rest, _result_rows(body, "errors")))
    return result


def _failures_from_errors(
    items: Sequence[Item], errors: Sequence[dict[str, Any]]
) -> list[FailedRecord]:
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
            (by_id[k] for k in (it.id, it.key, it.trace_id) if k and normalize_key(k) in by_id),
            shared,
        )
        failed.append(FailedRecord(it.index, it.record, category, message))
    return failed


def fail_all(items: Sequence[Item], outcome: Outcome) -> list[FailedRecord]:
    """Every input of a batch that got no per-record answer, with the batch's reason."""
    category, message = error_detail(outcome.status, response_json(outcome.response))
    if outcome.verdict is Verdict.GAVE_UP:
        if outcome.response is None:
            category = "TRANSPORT_ERROR"
        message = f"gave up after {outcome.attempts} attempts; last: {outcome.failure}"
    retryable = outcome.verdict is Verdict.GAVE_UP
    return [FailedRecord(it.index, it.record, category, message, retryable) for it in items]


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


# --- the HubSpot logic, as operations -----------------------------------------------------------


class HubSpotOperations:
    """Every HubSpot call sequence as an operation (effect-yielding generator; see ``http.py``).

    Each method handles at most one batch of inputs; targets split calls into batches and run the
    operations one at a time (sync) or several at once (async).
    """

    def __init__(self, *, policy: RetryPolicy, pacer: Pacer, rng: random.Random) -> None:
        self.policy = policy
        self.pacer = pacer
        self.rng = rng

    def _send(self, request: ApiRequest) -> Operation[Outcome]:
        return exchange(request, policy=self.policy, pacer=self.pacer, rng=self.rng)

    def _settle(
        self,
        items: Sequence[Item],
        outcome: Outcome,
        again: Callable[[Sequence[Item]], Operation[BatchResult]],
        parse: Callable[[Sequence[Item], httpx.Response], BatchResult],
        splittable: frozenset[int] = SPLITTABLE_STATUSES,
    ) -> Operation[BatchResult]:
        """Turn a batch's outcome into per-record results, bisecting a batch refused as a whole."""
        if outcome.verdict is Verdict.OK and outcome.response is not None:
            return parse(items, outcome.response)
        if outcome.verdict is Verdict.REJECTED and outcome.status in splittable and len(items) > 1:
            middle = len(items) // 2
            result = yield from again(items[:middle])
            result.extend((yield from again(items[middle:])))
            return result
        return BatchResult(failed=fail_all(items, outcome))

    # writes

    def create(
        self, entity: Entity, items: Sequence[Item], options: CreateOptions
    ) -> Operation[BatchResult]:
        """Create; inputs whose key exists already fail with CONFLICT naming the existing ID."""
        result = BatchResult()
        if entity not in KEYS_ENFORCED_BY_HUBSPOT and not options.known_absent:
            try:
                existing = yield from self.find(entity, [it.key for it in items if it.key])
            except CrmError as exc:
                if not exc.retryable:
                    raise
                return BatchResult(failed=_unchecked(items, exc))
            label = SINGULAR_LABELS[entity]
            key_field = ENTITY_SPECS[entity].key_field
            fresh = []
            for it in items:
                found = existing.found.get(it.key or "")
                if found is None:
                    fresh.append(it)
                    continue
                result.failed.append(
                    FailedRecord(
                        it.index,
                        it.record,
                        "CONFLICT",
                        f"A {label} with {key_field} {it.key} already exists. Existing ID: "
                        f"{found.id}",
                    )
                )
            items = fresh
        if items:
            result.extend((yield from self._create_new(entity, items, options)))
        return result

    def _create_new(
        self, entity: Entity, items: Sequence[Item], options: CreateOptions
    ) -> Operation[BatchResult]:
        """Send creates; after an unclear failure, read back by key and resend only the absent."""
        result = BatchResult()
        pending = list(items)
        outcome: Outcome | None = None
        for round_number in range(1, self.policy.max_attempts + 1):
            outcome = yield from self._send(create_request(entity, pending))
            if outcome.verdict is not Verdict.AMBIGUOUS:
                settled = yield from self._settle(
                    pending,
                    outcome,
                    lambda part: self._create_new(entity, part, options),
                    lambda part, response: parse_batch_write(entity, part, response, created=True),
                    SPLITTABLE_STATUSES if options.isolate_conflicts else WITHOUT_CONFLICTS,
                )
                result.extend(settled)
                return result
            yield Pause(self.policy.backoff(round_number, self.rng))
            try:
                found = yield from self.find(entity, [it.key for it in pending if it.key])
            except CrmError as exc:
                if not exc.retryable:
                    raise
                result.failed.extend(_unchecked(pending, exc))
                return result
            still_missing = []
            for it in pending:
                record = found.found.get(it.key or "")
                if record is None:
                    still_missing.append(it)
                else:
                    result.successful.append(WrittenRecord(it.index, it.record, record.id, True))
            pending = still_missing
            if not pending:
                return result
        last = outcome.failure if outcome is not None else "no answer"
        result.failed.extend(
            FailedRecord(
                it.index,
                it.record,
                "TRANSPORT_ERROR",
                f"not created after {self.policy.max_attempts} attempts (checked: it does not "
                f"exist in the CRM); last: {last}",
                retryable=True,
            )
            for it in pending
        )
        return result

    def upsert(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """Create or update by unique key; idempotent, so a plain retry is safe.

        ``created`` is HubSpot's ``new``: when an answer was lost and the batch resent, a record
        the lost attempt created reads as updated.
        """
        if entity in NATIVE_UPSERT:
            outcome = yield from self._send(upsert_request(entity, items))
            return (
                yield from self._settle(
                    items,
                    outcome,
                    lambda part: self.upsert(entity, part),
                    lambda part, response: parse_batch_write(entity, part, response, created=None),
                )
            )
        try:
            existing = yield from self.find(entity, [it.key for it in items if it.key])
        except CrmError as exc:
            if not exc.retryable:
                raise
            return BatchResult(failed=_unchecked(items, exc))
        updates = [
            replace(it, id=existing.found[it.key].id)
            for it in items
            if it.key and it.key in existing.found
        ]
        creates = [it for it in items if not (it.key and it.key in existing.found)]
        result = BatchResult()
        if updates:
            result.extend((yield from self.update(entity, updates)))
        if creates:
            result.extend(
                (yield from self._create_new(entity, creates, CreateOptions(known_absent=True)))
            )
        return result

    def update(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        outcome = yield from self._send(update_request(entity, items))
        return (
            yield from self._settle(
                items,
                outcome,
                lambda part: self.update(entity, part),
                lambda part, response: parse_batch_write(entity, part, response, created=False),
            )
        )

    def archive(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        outcome = yield from self._send(archive_request(entity, items))
        return (
            yield from self._settle(
                items,
                outcome,
                lambda part: self.archive(entity, part),
                lambda part, _response: BatchResult(
                    successful=[
                        WrittenRecord(it.index, it.record, it.id or "", False) for it in part
                    ]
                ),
            )
        )

    # reads

    def read(
        self, entity: Entity, ids: Sequence[str], id_property: str | None = None
    ) -> Operation[ReadResult]:
        """``batch/read`` by id or by a unique property; unknown ids come back as missing."""
        wanted = list(dict.fromkeys(ids))
        outcome = yield from self._send(read_request(entity, wanted, id_property))
        if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
            return ReadResult(missing=wanted)
        body = _read_body(outcome)
        result = ReadResult()
        for record, row in zip(
            records_from_rows(entity, _result_rows(body, "results")),
            _result_rows(body, "results"),
            strict=True,
        ):
            if id_property is None:
                result.found[record.id] = record
            else:
                value = (row.get("properties") or {}).get(id_property)
                if isinstance(value, str):
                    key = normalize_key(value)
                    previous = result.found.get(key)
                    result.found[key] = record if previous is None else _older(previous, record)
        result.missing = [v for v in wanted if v not in result.found]
        return result

    def search(self, entity: Entity, prop: str, values: Sequence[str]) -> Operation[ReadResult]:
        """Records whose ``prop`` is one of ``values``, keyed by the lower-cased value."""
        wanted = list(dict.fromkeys(normalize_key(v) for v in values))
        result = ReadResult()
        after: str | None = None
        while True:
            outcome = yield from self._send(search_request(entity, prop, wanted, after))
            body = _read_body(outcome)
            rows = _result_rows(body, "results")
            for record, row in zip(records_from_rows(entity, rows), rows, strict=True):
                value = (row.get("properties") or {}).get(prop)
                if not isinstance(value, str):
                    continue
                key = normalize_key(value)
                previous = result.found.get(key)
                result.found[key] = record if previous is None else _older(previous, record)
            paging = body.get("paging") or {}
            after = ((paging.get("next") or {}) if isinstance(paging, dict) else {}).get("after")
            if not rows or not after:
                break
        result.missing = [v for v in wanted if v not in result.found]
        return result

    def create_note(self, body: str, timestamp: str) -> Operation[str]:
        """One note (no associations); not resent after an unclear failure, so never doubled."""
        request = ApiRequest(
            "POST",
            "/crm/v3/objects/notes",
            json={
                "properties": {"hs_note_body": body, "hs_timestamp": timestamp},
                "associations": [],
            },
            idempotent=False,
        )
        outcome = yield from self._send(request)
        return str(_read_body(outcome)["id"])

    def find(self, entity: Entity, keys: Sequence[str]) -> Operation[ReadResult]:
        """Existing records by lower-cased unique key (contacts: batch read; others: search)."""
        wanted = list(dict.fromkeys(normalize_key(k) for k in keys if not is_blank(k)))
        if not wanted:
            return ReadResult()
        if entity in KEYS_ENFORCED_BY_HUBSPOT:
            return (yield from self.read(entity, wanted, key_property(entity)))
        return (yield from self.search(entity, key_property(entity), wanted))


def _read_body(outcome: Outcome) -> dict[str, Any]:
    """The body of a read that succeeded; a read that did not is an error for the whole call."""
    if outcome.verdict is Verdict.OK:
        return response_json(outcome.response)
    category, message = error_detail(outcome.status, response_json(outcome.response))
    if outcome.verdict is Verdict.GAVE_UP:
        message = f"gave up after {outcome.attempts} attempts; last: {outcome.failure}"
    raise CrmError(
        f"{outcome.request.describe()} failed: {category}: {message}",
        status=outcome.status,
        retryable=outcome.verdict is Verdict.GAVE_UP,
    )


def _unchecked(items: Sequence[Item], exc: CrmError) -> list[FailedRecord]:
    return [
        FailedRecord(
            it.index,
            it.record,
            "TRANSPORT_ERROR",
            f"could not check which records exist: {exc}",
            retryable=True,
        )
        for it in items
    ]


# --- planning calls: validation up front, then one operation per batch --------------------------


@dataclass
class WritePlan:
    """What a write call does: inputs refused before sending, and one operation per batch."""

    refused: list[FailedRecord]
    batches: list[Operation[BatchResult]]


def _refuse(index: int, record: Record, message: str) -> FailedRecord:
    return FailedRecord(index, record, "VALIDATION_ERROR", message)


def prepare_items(
    entity: Entity,
    records: Sequence[Record],
    *,
    ids: Sequence[str] | None = None,
    need_key: bool,
    clear_blanks: bool = False,
) -> tuple[list[Item], list[FailedRecord]]:
    """Map records to HubSpot properties; refuse unmapped fields, missing or repeated keys."""
    key_field = ENTITY_SPECS[entity].key_field
    items: list[Item] = []
    refused: list[FailedRecord] = []
    first_seen: dict[str, int] = {}
    for index, record in enumerate(records):
        try:
            properties = to_properties(entity, record, clear_blanks=clear_blanks)
        except UnmappedFieldError as exc:
            refused.append(_refuse(index, record, f"{exc} (nothing was sent)"))
            continue
        raw_key = record.get(key_field)
        key = None if is_blank(raw_key) else normalize_key(raw_key or "")
        record_id = None
        if ids is not None:
            record_id = ids[index].strip() if ids[index] else ""
            if not record_id:
                refused.append(_refuse(index, record, "no HubSpot id given for this record"))
                continue
        elif need_key:
            if key is None:
                refused.append(
                    _refuse(index, record, f"{key_field} is empty; it identifies {entity.value}")
                )
                continue
            if key in first_seen:
                refused.append(
                    _refuse(
                        index,
                        record,
                        f"{key_field} {key} repeats input {first_seen[key]}; "
                        "deduplicate before pushing",
                    )
                )
                continue
            first_seen[key] = index
        items.append(Item(index, record, properties, key, record_id))
    return items, refused


def _chunks(items: Sequence[T]) -> Iterator[list[T]]:
    """Batches of at most ``BATCH_LIMIT`` (``itertools.batched`` needs Python 3.12)."""
    for start in range(0, len(items), BATCH_LIMIT):
        yield list(items[start : start + BATCH_LIMIT])


def _sorted(result: BatchResult) -> BatchResult:
    result.successful.sort(key=lambda w: w.index)
    result.failed.sort(key=lambda f: f.index)
    return result


class HubSpotPlanner:
    """Turns target calls into plans; shared by the sync and async targets."""

    def __init__(self, ops: HubSpotOperations) -> None:
        self.ops = ops

    def create(
        self, entity: Entity, records: Sequence[Record], options: CreateOptions
    ) -> WritePlan:
        items, refused = prepare_items(entity, records, need_key=True)
        return WritePlan(
            refused, [self.ops.create(entity, chunk, options) for chunk in _chunks(items)]
        )

    def upsert(self, entity: Entity, records: Sequence[Record]) -> WritePlan:
        items, refused = prepare_items(entity, records, need_key=True)
        return WritePlan(refused, [self.ops.upsert(entity, chunk) for chunk in _chunks(items)])

    def update(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> WritePlan:
        if len(ids) != len(records):
            raise ValueError(f"update_many got {len(ids)} ids for {len(records)} records")
        items, refused = prepare_items(
            entity, records, ids=ids, need_key=False, clear_blanks=clear_blanks
        )
        return WritePlan(refused, [self.ops.update(entity, chunk) for chunk in _chunks(items)])

    def archive(self, entity: Entity, ids: Sequence[str]) -> WritePlan:
        records: list[Record] = [{"id": value} for value in ids]
        items: list[Item] = []
        refused: list[FailedRecord] = []
        for index, (value, record) in enumerate(zip(ids, records, strict=True)):
            if is_blank(value):
                refused.append(_refuse(index, record, "no HubSpot id given"))
            else:
                items.append(Item(index, record, {}, id=value.strip()))
        return WritePlan(refused, [self.ops.archive(entity, chunk) for chunk in _chunks(items)])

    def find(self, entity: Entity, keys: Sequence[str]) -> list[Operation[ReadResult]]:
        unique = list(dict.fromkeys(normalize_key(k) for k in keys if not is_blank(k)))
        return [self.ops.find(entity, list(chunk)) for chunk in _chunks(unique)]

    def get(
        self, entity: Entity, ids: Sequence[str], id_field: str | None
    ) -> list[Operation[ReadResult]]:
        if id_field is not None:
            prop = hubspot_property(entity, id_field)
            if prop != key_property(entity):
                raise ValueError(
                    f"{id_field!r} is not a unique property of HubSpot {entity.value}; "
                    f"read by id or by {ENTITY_SPECS[entity].key_field!r}"
                )
            return self.find(entity, ids)
        unique = list(dict.fromkeys(i.strip() for i in ids if not is_blank(i)))
        return [self.ops.read(entity, list(chunk)) for chunk in _chunks(unique)]


def merge_reads(parts: Sequence[ReadResult]) -> ReadResult:
    merged = ReadResult()
    for part in parts:
        merged.found.update(part.found)
        merged.missing.extend(part.missing)
    return merged


def merge_writes(refused: list[FailedRecord], parts: Sequence[BatchResult]) -> BatchResult:
    merged = BatchResult(failed=list(refused))
    for part in parts:
        merged.extend(part)
    return _sorted(merged)


# --- the targets --------------------------------------------------------------------------------


class _HubSpotBase:
    """Settings shared by the sync and async targets."""

    def __init__(
        self,
        base_url: str,
        token: str | Secret,
        *,
        name: str,
        retry: RetryPolicy | None,
        pacer: Pacer | None,
        rng: random.Random | None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is empty")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._token = token if isinstance(token, Secret) else Secret(token)
        self.retry = retry or RetryPolicy()
        self.pacer = pacer or shared_pacer(self.base_url, self._token)
        self.planner = HubSpotPlanner(
            HubSpotOperations(policy=self.retry, pacer=self.pacer, rng=rng or random.Random())
        )

    def key_field(self, entity: Entity) -> str:
        return ENTITY_SPECS[entity].key_field

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r}, token=***)"


class HubSpotTarget(_HubSpotBase, CrmTarget):
    """HubSpot over one pooled ``httpx.Client``; batches go one after another.

    Thread-safe: threads may share one target (and its pacer) to push in parallel.
    """

    def __init__(
        self,
        base_url: str,
        token: str | Secret,
        *,
        name: str = "hubspot",
        retry: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        client_settings: ClientSettings | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(base_url, token, name=name, retry=retry, pacer=pacer, rng=rng)
        self._driver = SyncDriver(
            self.base_url, self._token, settings=client_settings, transport=transport
        )

    def _write(self, plan: WritePlan) -> BatchResult:
        return merge_writes(plan.refused, [self._driver.run(op) for op in plan.batches])

    def _read(self, operations: list[Operation[ReadResult]]) -> ReadResult:
        return merge_reads([self._driver.run(op) for op in operations])

    def find_by_keys(self, entity: Entity, keys: Sequence[str]) -> ReadResult:
        return self._read(self.planner.find(entity, keys))

    def get_many(
        self, entity: Entity, ids: Sequence[str], *, id_field: str | None = None
    ) -> ReadResult:
        return self._read(self.planner.get(entity, ids, id_field))

    def create_many(
        self,
        entity: Entity,
        records: Sequence[Record],
        *,
        known_absent: bool = False,
        isolate_conflicts: bool = True,
    ) -> BatchResult:
        options = CreateOptions(known_absent, isolate_conflicts)
        return self._write(self.planner.create(entity, records, options))

    def enforces_unique_keys(self, entity: Entity) -> bool:
        return entity in KEYS_ENFORCED_BY_HUBSPOT

    def update_many(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        return self._write(self.planner.update(entity, ids, records, clear_blanks=clear_blanks))

    def upsert_many(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        return self._write(self.planner.upsert(entity, records))

    def archive_many(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        return self._write(self.planner.archive(entity, ids))

    def add_note(self, body: str) -> str:
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self._driver.run(self.planner.ops.create_note(body, timestamp))

    def close(self) -> None:
        self._driver.close()


DEFAULT_MAX_CONCURRENT = 4


class AsyncHubSpotTarget(_HubSpotBase, AsyncCrmTarget):
    """HubSpot over one pooled ``httpx.AsyncClient``; up to ``max_concurrent`` batches in flight.

    Shares the pacer of the account with every other target in the process, so concurrency raises
    throughput up to the rate limit and no further.
    """

    def __init__(
        self,
        base_url: str,
        token: str | Secret,
        *,
        name: str = "hubspot",
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        retry: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        client_settings: ClientSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        super().__init__(base_url, token, name=name, retry=retry, pacer=pacer, rng=rng)
        self.max_concurrent = max_concurrent
        settings = client_settings or ClientSettings(
            max_connections=max(max_concurrent * 2, 4), max_keepalive=max(max_concurrent, 4)
        )
        self._driver = AsyncDriver(
            self.base_url, self._token, settings=settings, transport=transport
        )

    async def _run_all(self, operations: Sequence[Operation[R]]) -> list[R]:
        """Run operations with at most ``max_concurrent`` in flight; results in input order."""
        results: dict[int, R] = {}
        queue = iter(enumerate(operations))

        async def worker() -> None:
            for position, operation in queue:
                results[position] = await self._driver.run(operation)

        workers = [
            asyncio.create_task(worker()) for _ in range(min(self.max_concurrent, len(operations)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return [results[position] for position in range(len(operations))]

    async def _write(self, plan: WritePlan) -> BatchResult:
        return merge_writes(plan.refused, await self._run_all(plan.batches))

    async def find_by_keys(self, entity: Entity, keys: Sequence[str]) -> ReadResult:
        return merge_reads(await self._run_all(self.planner.find(entity, keys)))

    async def get_many(
        self, entity: Entity, ids: Sequence[str], *, id_field: str | None = None
    ) -> ReadResult:
        return merge_reads(await self._run_all(self.planner.get(entity, ids, id_field)))

    async def create_many(
        self,
        entity: Entity,
        records: Sequence[Record],
        *,
        known_absent: bool = False,
        isolate_conflicts: bool = True,
    ) -> BatchResult:
        options = CreateOptions(known_absent, isolate_conflicts)
        return await self._write(self.planner.create(entity, records, options))

    async def update_many(
        self,
        entity: Entity,
        ids: Sequence[str],
        records: Sequence[Record],
        *,
        clear_blanks: bool = False,
    ) -> BatchResult:
        return await self._write(
            self.planner.update(entity, ids, records, clear_blanks=clear_blanks)
        )

    async def upsert_many(self, entity: Entity, records: Sequence[Record]) -> BatchResult:
        return await self._write(self.planner.upsert(entity, records))

    async def archive_many(self, entity: Entity, ids: Sequence[str]) -> BatchResult:
        return await self._write(self.planner.archive(entity, ids))

    async def aclose(self) -> None:
        await self._driver.aclose()
