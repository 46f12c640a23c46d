"""Pipedrive (API v2, v1 for notes) as a dialect: its requests, its answers, its match index.

What Pipedrive needs that a plain loop of POSTs does not give:

- no unique keys: two creates of one email make two persons. Lookups and reads are answered
  from our match index (``index.py``), filled by the cheapest route for the job: the listing of
  the whole account (10 tokens per 500 items, oldest first) for as long as it has cost less
  than searching (20 tokens per key) and reading by id (10 per 100 ids) everything asked of the
  index so far would have, then those for what is still unknown (ski rental: never more than
  about twice the cheaper route). Search lags behind new records, so before the first search the
  items changed within that lag are listed;
- the index is refreshed (items updated since the last listing, ``updated_since``) when it is
  older than ``REFRESH_SECONDS`` and before it answers for a key whose create was unclear: such
  a key is answered only by a listing that began after the answer was lost, never by search;
- where the account holds several items under one key, the oldest (smallest id) is the one the
  import uses; the others are named in the record's ``duplicates`` (the push lists them in
  ``crm_duplicates.csv``);
- no batch writes: one record per call, several calls in flight (``capabilities.concurrency``);
- notes need a parent record (v1 ``/notes``); a note whose answer was lost is looked for
  among its parent's notes instead of being written twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bulk_pipeline.entities import Entity, normalize_key
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
    Pause,
    Verdict,
)
from bulk_pipeline.targets.pipedrive.budget import POST, SEARCH, token_cost
from bulk_pipeline.targets.pipedrive.fields import (
    FIELD_LISTS,
    NOTE_PARENTS,
    PATHS,
    SEARCH_FIELDS,
    Catalog,
    FieldDef,
    Stage,
    ValueProblem,
    from_item,
    keys_of,
    to_body,
)
from bulk_pipeline.targets.pipedrive.index import Gate, MatchIndex

PAGE_LIMIT = 500
"""Items per page of a v2 list (Pipedrive's maximum)."""
IDS_PER_READ = 100
"""Ids per ``GET /api/v2/persons?ids=`` (the spec's comma-separated list)."""
SINGLE_READS = 9
"""Up to this many ids are read one by one (1 token each) rather than listed by id (10)."""
REFRESH_SECONDS = 30.0
REBUILD_SECONDS = 1800.0
"""The index lists what changed when older than the first, and starts over when its listing
is older than the second (items deleted by others leave no trace in ``updated_since``)."""
SYNC_MARGIN = timedelta(seconds=10)
"""Listed again on refresh: Pipedrive's clock is known from ``Date`` to the second, and a write
may be committed a moment after it was answered."""
SEARCH_LAG = timedelta(minutes=15)
"""How far behind new records Pipedrive's search index may be (not documented; generous)."""
TRASH_DAYS = 30
"""Pipedrive keeps deleted persons, organizations and deals in its trash this long."""
GATE_POLL = 0.02
NOTE_SEARCH_LIMIT = 100

CAPABILITIES = Capabilities(
    entities=frozenset(PATHS),
    batch_size=1,
    lookup_batch_size=PAGE_LIMIT,
    concurrency=8,
    refuses_duplicate_keys=frozenset(),
    native_upsert=frozenset(),
    delete=DeleteKind.TRASH,
    links=LinkStyle.FOREIGN_KEY,
    note_needs_parent=True,
    restorable_days=TRASH_DAYS,
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def response_json(outcome: Outcome) -> dict[str, Any]:
    response = outcome.response
    if response is None or not response.content:
        return {}
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def error_message(outcome: Outcome) -> str:
    """Pipedrive's reason (``{"success": false, "error": ...}``), or what went wrong."""
    body = response_json(outcome)
    said = body.get("error")
    if isinstance(said, str) and said:
        return redact(f"Pipedrive refused it (HTTP {outcome.status}): {said}")
    return redact(outcome.failure or f"HTTP {outcome.status}")


def failure(index: int, outcome: Outcome, *, missing: FailureKind) -> Failed:
    """A write that got no success; ``missing`` is what a 404 means for this call."""
    if outcome.verdict is Verdict.GAVE_UP:
        return Failed(
            index,
            FailureKind.TRANSIENT,
            f"gave up after {outcome.attempts} attempts; last: {outcome.failure}",
        )
    kind = missing if outcome.status == 404 else FailureKind.INVALID
    return Failed(index, kind, error_message(outcome))


class PipedriveDialect(Dialect):
    """Every Pipedrive call sequence as an operation; writes take one record at a time."""

    capabilities = CAPABILITIES

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._indexes = {entity: MatchIndex(partial(keys_of, entity)) for entity in PATHS}
        self._catalogs: dict[Entity, Catalog] = {}
        self._catalog_gate = Gate()

    # plumbing ---------------------------------------------------------------------------------

    def _send(self, request: ApiRequest) -> Operation[Outcome]:
        return self.exchange.send(request)

    def _body(self, outcome: Outcome) -> dict[str, Any]:
        """The body of a call that must succeed (reads, notes); else the error for the call."""
        if outcome.verdict is Verdict.OK:
            return response_json(outcome)
        if outcome.verdict is Verdict.GAVE_UP:
            raise TransientError(
                f"the CRM at {self.exchange.where} did not answer {outcome.request.describe()} "
                f"for {outcome.attempts} attempts within the retry window; last: "
                f"{outcome.failure}"
            )
        raise CrmRefused(f"{outcome.request.describe()}: {error_message(outcome)}")

    def _enter(self, gate: Gate) -> Operation[None]:
        while not gate.try_begin():
            yield Pause(GATE_POLL)

    def _list(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> Operation[list[dict[str, Any]]]:
        """Every item of a v2 list, page by page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {**(params or {}), "limit": str(PAGE_LIMIT)}
            if cursor:
                query["cursor"] = cursor
            body = self._body((yield from self._send(ApiRequest("GET", path, params=query))))
            items += [i for i in body.get("data") or () if isinstance(i, dict)]
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return items

    def _since(self, started: float) -> datetime | None:
        """The CRM's time when a listing that began at monotonic ``started`` began, less a
        margin: a refresh lists what changed from then on."""
        now = self.exchange.clock.now()
        if now is None:
            return None
        return now - timedelta(seconds=time.monotonic() - started) - SYNC_MARGIN

    # what the account defines -----------------------------------------------------------------

    def _catalog(self, entity: Entity) -> Operation[Catalog]:
        """The entity's fields (and deals' pipelines and stages), read once."""
        catalog = self._catalogs.get(entity)
        if catalog is not None:
            return catalog
        yield from self._enter(self._catalog_gate)
        try:
            catalog = self._catalogs.get(entity)
            if catalog is None:
                fields = yield from self._list(f"/api/v2/{FIELD_LISTS[entity]}")
                pipelines: list[dict[str, Any]] = []
                stages: list[dict[str, Any]] = []
                if entity is Entity.DEALS:
                    pipelines = yield from self._list("/api/v2/pipelines")
                    stages = yield from self._list("/api/v2/stages")
                catalog = self._catalogs[entity] = Catalog(
                    entity,
                    [FieldDef.from_api(f) for f in fields],
                    {int(p["id"]): str(p.get("name") or "") for p in pipelines},
                    [
                        Stage(int(s["id"]), str(s.get("name") or ""), int(s["pipeline_id"]))
                        for s in stages
                    ],
                )
            return catalog
        finally:
            self._catalog_gate.end()

    def unmapped(self, entity: Entity, record: Record) -> list[str]:
        """Fields with no place in Pipedrive; custom ones are known once the catalog is read
        (until then, a write refuses the record that names an unknown field)."""
        catalog = self._catalogs.get(entity)
        if catalog is None:
            return []
        return [name for name in record if not catalog.holds(name)]

    def fields(self, entity: Entity) -> Operation[frozenset[str]]:
        """Our fields with a place of their own, and the account's custom fields (a field of
        ours without a place goes to the custom field of its name, see ``fields.py``)."""
        catalog = yield from self._catalog(entity)
        return catalog.native() | frozenset(catalog.custom_names)

    def check(self) -> Operation[None]:
        request = ApiRequest("GET", "/api/v1/users/me", patience=PREFLIGHT_SECONDS)
        self._body((yield from self._send(request)))

    def estimate(self, entity: Entity, work: Work) -> Estimate:
        """Tokens: the listing of the account (its size as the index saw it, else the work's),
        the catalog, the preflight, and 5 per create or update."""
        index = self._indexes[entity]
        size = max(index.size(), work.lookups + work.reads)
        pages = max(1, math.ceil(size / PAGE_LIMIT))
        catalog_calls = [("GET", f"/api/v2/{FIELD_LISTS[entity]}")]
        if entity is Entity.DEALS:
            catalog_calls += [("GET", "/api/v2/pipelines"), ("GET", "/api/v2/stages")]
        path = f"/api/v2/{PATHS[entity]}"
        calls = [
            (pages, ApiRequest("GET", path)),
            (1, ApiRequest("GET", "/api/v1/users/me")),
            *((1, ApiRequest(m, p)) for m, p in catalog_calls),
            (work.creates, ApiRequest("POST", path)),
            (work.updates, ApiRequest("PATCH", f"{path}/1")),
        ]
        return Estimate(
            requests=sum(n for n, _ in calls),
            units=sum(n * token_cost(request) for n, request in calls),
            unit="tokens",
        )

    # the match index --------------------------------------------------------------------------

    def _record(self, entity: Entity, item: Mapping[str, Any], key: str | None) -> CrmRecord:
        """A record in our fields; a person found by one of several emails shows that one.
        Other items under the same key (found by key: ``key``; read by id: any of its keys)
        are named in ``duplicates``, oldest first."""
        fields = from_item(entity, item, self._catalogs.get(entity))
        if entity is Entity.CONTACTS and key is not None:
            matched = next(
                (
                    str(e.get("value"))
                    for e in item.get("emails") or ()
                    if isinstance(e, dict) and normalize_key(str(e.get("value") or "")) == key
                ),
                None,
            )
            fields["email"] = matched or fields.get("email")
        index = self._indexes[entity]
        others = {
            str(holder["id"])
            for k in ([key] if key is not None else keys_of(entity, item))
            for holder in index.holders(k)
        } - {str(item["id"])}
        return CrmRecord(
            str(item["id"]),
            fields,
            _timestamp(item.get("add_time")),
            duplicates=tuple(sorted(others, key=lambda i: (len(i), i))),
        )

    def _ensure(
        self, entity: Entity, values: Mapping[str, str], ids: Sequence[str]
    ) -> Operation[None]:
        """Make the index able to answer for these keys (``values``: key -> value as given)
        and ids, by the cheapest route (see the module's docstring)."""
        yield from self._catalog(entity)
        index = self._indexes[entity]
        yield from self._enter(index)
        try:
            if index.started and index.built_for() > REBUILD_SECONDS:
                index.reset()
            if index.started and (index.age() > REFRESH_SECONDS or index.has_suspects(values)):
                yield from self._refresh(entity, index, index.synced_at)
            keys = [k for k in values if not index.knows_key(k)]
            unknown = [i for i in ids if not index.knows_id(i)]
            instead = self._instead(entity, keys, unknown)
            if instead is not None:
                index.asked(instead)
            while not index.complete and (keys or unknown):
                if index.started and instead is not None and index.listing_spent >= index.asked_for:
                    break
                yield from self._list_page(entity, index)
                keys = [k for k in keys if not index.knows_key(k)]
                unknown = [i for i in unknown if not index.knows_id(i)]
            if index.complete or not (keys or unknown):
                return
            if not index.lag_covered and index.synced_at is not None:
                yield from self._refresh(entity, index, index.synced_at - SEARCH_LAG)
                index.lag_covered = True
                keys = [k for k in keys if not index.knows_key(k)]
                unknown = [i for i in unknown if not index.knows_id(i)]
            yield from self._search(entity, index, {k: values[k] for k in keys})
            yield from self._read_ids(entity, index, unknown)
        finally:
            index.end()

    def _instead(self, entity: Entity, keys: Sequence[str], ids: Sequence[str]) -> int | None:
        """What searching these keys and reading these ids would cost; None when a key cannot
        be searched (organizations: their website is not searchable)."""
        if keys and entity not in SEARCH_FIELDS:
            return None
        path = f"/api/v2/{PATHS[entity]}"
        searches = len(keys) * token_cost(ApiRequest("GET", f"{path}/search")) if keys else 0
        if len(ids) <= SINGLE_READS:
            reads = len(ids) * token_cost(ApiRequest("GET", f"{path}/1"))
        else:
            reads = math.ceil(len(ids) / IDS_PER_READ) * token_cost(ApiRequest("GET", path))
        return searches + reads

    def _list_page(self, entity: Entity, index: MatchIndex) -> Operation[None]:
        """The next page of the listing of the whole account, oldest first."""
        started = time.monotonic()
        index.began_listing(self._since(started))
        params = {"limit": str(PAGE_LIMIT), "sort_by": "id", "sort_direction": "asc"}
        if index.cursor:
            params["cursor"] = index.cursor
        request = ApiRequest("GET", f"/api/v2/{PATHS[entity]}", params=params)
        body = self._body((yield from self._send(request)))
        if index.synced_at is None:
            index.synced_at = self._since(started)
        items = [i for i in body.get("data") or () if isinstance(i, dict)]
        cursor = (body.get("additional_data") or {}).get("next_cursor")
        index.listed(items, cursor or None, token_cost(request))

    def _refresh(
        self, entity: Entity, index: MatchIndex, since: datetime | None
    ) -> Operation[None]:
        """List the items updated since ``since``; without a time, start over."""
        if since is None:
            index.reset()
            return
        started = time.monotonic()
        items = yield from self._list(f"/api/v2/{PATHS[entity]}", {"updated_since": rfc3339(since)})
        index.put(items)
        index.refreshed(started, self._since(started))

    def _search(
        self, entity: Entity, index: MatchIndex, values: Mapping[str, str]
    ) -> Operation[None]:
        """Exact searches for keys the partial listing did not reach; what they find is read
        in full (search results are abridged) into the index."""
        path = f"/api/v2/{PATHS[entity]}"
        found: list[str] = []
        for key, value in values.items():
            cursor: str | None = None
            while True:
                params = {
                    "term": value.strip(),
                    "fields": SEARCH_FIELDS[entity],
                    "exact_match": "true",
                    "limit": str(PAGE_LIMIT),
                }
                if cursor:
                    params["cursor"] = cursor
                request = ApiRequest("GET", f"{path}/search", params=params, kind=SEARCH)
                body = self._body((yield from self._send(request)))
                results = (body.get("data") or {}).get("items") or ()
                found += [
                    str(r["item"]["id"])
                    for r in results
                    if isinstance(r, dict) and isinstance(r.get("item"), dict)
                ]
                cursor = (body.get("additional_data") or {}).get("next_cursor")
                if not cursor:
                    break
            index.searched([key])
        yield from self._read_ids(entity, index, [i for i in found if index.item(i) is None])

    def _read_ids(self, entity: Entity, index: MatchIndex, ids: Sequence[str]) -> Operation[None]:
        path = f"/api/v2/{PATHS[entity]}"
        wanted = list(dict.fromkeys(i for i in ids if i.isdigit()))
        index.read_by_id([], [i for i in ids if not i.isdigit()])
        if len(wanted) <= SINGLE_READS:
            for item_id in wanted:
                item = yield from self._get(entity, item_id)
                index.read_by_id([item] if item is not None else [], [item_id])
            return
        for start in range(0, len(wanted), IDS_PER_READ):
            batch = wanted[start : start + IDS_PER_READ]
            request = ApiRequest("GET", path, params={"ids": ",".join(batch)})
            body = self._body((yield from self._send(request)))
            index.read_by_id([i for i in body.get("data") or () if isinstance(i, dict)], batch)

    def _get(self, entity: Entity, item_id: str) -> Operation[dict[str, Any] | None]:
        request = ApiRequest("GET", f"/api/v2/{PATHS[entity]}/{item_id}")
        outcome = yield from self._send(request)
        if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
            return None
        data = self._body(outcome).get("data")
        return data if isinstance(data, dict) else None

    # reads ------------------------------------------------------------------------------------

    def lookup(self, entity: Entity, values: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        wanted = {normalize_key(v): v for v in values if v.strip()}
        yield from self._ensure(entity, wanted, ())
        index = self._indexes[entity]
        found: dict[str, CrmRecord] = {}
        for key in wanted:
            holders = index.holders(key)
            if holders:
                found[key] = self._record(entity, holders[0], key)
        return found

    def read(self, entity: Entity, ids: Sequence[str]) -> Operation[dict[str, CrmRecord]]:
        yield from self._ensure(entity, {}, ids)
        index = self._indexes[entity]
        found: dict[str, CrmRecord] = {}
        for item_id in ids:
            item = index.item(item_id)
            if item is not None:
                found[item_id] = self._record(entity, item, None)
        return found

    # writes -----------------------------------------------------------------------------------

    def create(self, entity: Entity, items: Sequence[Item]) -> Operation[CreateResult]:
        """One POST per record. An answer lost after sending marks the key suspect in the
        index, so the runner's read-back lists what changed instead of trusting the index."""
        catalog = yield from self._catalog(entity)
        index = self._indexes[entity]
        result = CreateResult()
        for it in items:
            try:
                body = to_body(entity, it.record, catalog)
            except ValueProblem as problem:
                result.failed.append(Failed(it.index, FailureKind.INVALID, str(problem)))
                continue
            request = ApiRequest(
                "POST", f"/api/v2/{PATHS[entity]}", json=body, kind=POST, idempotent=False
            )
            outcome = yield from self._send(request)
            data = response_json(outcome).get("data") if outcome.verdict is Verdict.OK else None
            if isinstance(data, dict) and "id" in data:
                index.put([data])
                result.successful.append(Written(it.index, str(data["id"]), created=True))
            elif outcome.verdict in (Verdict.AMBIGUOUS, Verdict.OK):
                index.suspect(it.key or "")
                result.unconfirmed.append(it)
            else:
                result.failed.append(failure(it.index, outcome, missing=FailureKind.INVALID))
        return result

    def update(
        self, entity: Entity, items: Sequence[Item], *, clear_blanks: bool
    ) -> Operation[BatchResult]:
        """One PATCH per record, merged with the item's current values (a phone among
        several, one part of an address) so only the fields named change."""
        catalog = yield from self._catalog(entity)
        index = self._indexes[entity]
        result = BatchResult()
        for it in items:
            item_id = it.id or ""
            current = index.item(item_id)
            if current is None and item_id.isdigit():
                current = yield from self._get(entity, item_id)
            if current is None:
                result.failed.append(
                    Failed(it.index, FailureKind.NOT_FOUND, f"Pipedrive holds no item {item_id}")
                )
                continue
            try:
                body = to_body(entity, it.record, catalog, current, clear_blanks=clear_blanks)
            except ValueProblem as problem:
                result.failed.append(Failed(it.index, FailureKind.INVALID, str(problem)))
                continue
            request = ApiRequest(
                "PATCH", f"/api/v2/{PATHS[entity]}/{item_id}", json=body, kind="write"
            )
            outcome = yield from self._send(request)
            data = response_json(outcome).get("data") if outcome.verdict is Verdict.OK else None
            if isinstance(data, dict):
                index.put([data])
                result.successful.append(Written(it.index, item_id, created=False))
                continue
            if outcome.status == 404:
                index.drop(item_id)
            result.failed.append(failure(it.index, outcome, missing=FailureKind.NOT_FOUND))
        return result

    def remove(self, entity: Entity, items: Sequence[Item]) -> Operation[BatchResult]:
        """DELETE moves the item to Pipedrive's trash (30 days). An item already gone (404,
        e.g. when the answer to an earlier DELETE was lost) counts as removed."""
        index = self._indexes[entity]
        result = BatchResult()
        for it in items:
            item_id = it.id or ""
            request = ApiRequest("DELETE", f"/api/v2/{PATHS[entity]}/{item_id}", kind="write")
            outcome = yield from self._send(request)
            if outcome.verdict is Verdict.OK or outcome.status == 404:
                index.drop(item_id)
                result.successful.append(Written(it.index, item_id, created=False))
            else:
                result.failed.append(failure(it.index, outcome, missing=FailureKind.NOT_FOUND))
        return result

    def add_note(self, body: str, parent: NoteParent | None) -> Operation[str]:
        """A v1 note on ``parent``. A note whose answer was lost is looked for among the
        parent's notes (same content) before anything is said: never written twice."""
        if parent is None:
            raise CrmRefused(
                "Pipedrive attaches every note to a person, an organization or a deal; "
                "give the note a parent record"
            )
        link = {NOTE_PARENTS[parent.entity]: int(parent.id)}
        request = ApiRequest(
            "POST", "/api/v1/notes", json={"content": body, **link}, kind=POST, idempotent=False
        )
        outcome = yield from self._send(request)
        if outcome.verdict is not Verdict.AMBIGUOUS:
            return str(self._body(outcome)["data"]["id"])
        listing = ApiRequest(
            "GET",
            "/api/v1/notes",
            params={
                **{k: str(v) for k, v in link.items()},
                "sort": "id DESC",
                "limit": str(NOTE_SEARCH_LIMIT),
            },
        )
        notes = self._body((yield from self._send(listing))).get("data") or ()
        for note in notes:
            if isinstance(note, dict) and note.get("content") == body:
                return str(note["id"])
        raise TransientError(
            f"the note's answer was lost and it is not among {parent.entity.value} "
            f"{parent.id}'s notes; write it again"
        )
