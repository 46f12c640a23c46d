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
- lookups by any field an item is found by (a company by domain or name, a deal by title, an
  activity by subject, a note by content), and searches for every item with a value (deals
  with one title at different companies, told apart by their ``org_id``): a key is known whole
  only from the listing of the whole account or a search, never from part of a listing;
- links are foreign keys (``org_id``, ``person_id``, ``deal_id``): fields of the record, read
  back and compared like the others, so a link that is there is never written again;
- no batch writes: one record per call, several calls in flight (``capabilities.concurrency``);
- notes are API v1 (``/api/v1/notes``: offset pages, ``PUT``) and need a parent record; a
  summary note whose answer was lost is looked for among its parent's notes instead of being
  written twice.
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
    ACTIVITY_TYPES,
    FIELD_LISTS,
    KEY_FIELDS,
    NOTE_PARENTS,
    PATHS,
    SEARCH_FIELDS,
    UNIQUE_KEY_FIELDS,
    V1,
    ActivityType,
    Catalog,
    FieldDef,
    Stage,
    ValueProblem,
    from_item,
    index_key,
    keys_of,
    record_keys,
    to_body,
)
from bulk_pipeline.targets.pipedrive.index import Gate, MatchIndex

PAGE_LIMIT = 500
"""Items per page of a list (Pipedrive's maximum)."""
IDS_PER_READ = 100
"""Ids per ``GET /api/v2/persons?ids=`` (the spec's comma-separated list; v1 notes have none)."""
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
CASE_BLIND = frozenset({"stage", "pipeline", "industry", "type", "priority"})
"""Fields holding a name Pipedrive matches case aside (an option, a stage, an activity type):
a value of ours differing in case only is held already."""
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

    def _page(
        self, path: str, params: Mapping[str, str], cursor: str | None, *, v1: bool = False
    ) -> Operation[tuple[list[dict[str, Any]], str | None, int]]:
        """One page of a list, the cursor of the next (None on the last) and its token cost.
        v2 pages by ``cursor``; v1 by ``start``, with ``more_items_in_collection``."""
        query = {**params, "limit": str(PAGE_LIMIT)}
        if cursor:
            query["start" if v1 else "cursor"] = cursor
        request = ApiRequest("GET", path, params=query)
        body = self._body((yield from self._send(request)))
        items = [i for i in body.get("data") or () if isinstance(i, dict)]
        more = body.get("additional_data") or {}
        if v1:
            pages = more.get("pagination") or {}
            following = pages.get("next_start") if pages.get("more_items_in_collection") else None
            return items, None if following is None else str(following), token_cost(request)
        return items, more.get("next_cursor") or None, token_cost(request)

    def _list(
        self, path: str, params: Mapping[str, str] | None = None, *, v1: bool = False
    ) -> Operation[list[dict[str, Any]]]:
        """Every item of a list, page by page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page, cursor, _ = yield from self._page(path, params or {}, cursor, v1=v1)
            items += page
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
        """The entity's fields (and deals' pipelines and stages, activities' types), read
        once. Notes have no fields to read."""
        catalog = self._catalogs.get(entity)
        if catalog is not None:
            return catalog
        yield from self._enter(self._catalog_gate)
        try:
            catalog = self._catalogs.get(entity)
            if catalog is None:
                fields: list[dict[str, Any]] = []
                if entity in FIELD_LISTS:
                    fields = yield from self._list(FIELD_LISTS[entity])
                pipelines: list[dict[str, Any]] = []
                stages: list[dict[str, Any]] = []
                kinds: list[ActivityType] = []
                if entity is Entity.DEALS:
                    pipelines = yield from self._list("/api/v2/pipelines")
                    stages = yield from self._list("/api/v2/stages")
                if entity is Entity.ACTIVITIES:
                    kinds = yield from self._activity_types()
                catalog = self._catalogs[entity] = Catalog(
                    entity,
                    [FieldDef.from_api(f) for f in fields],
                    {int(p["id"]): str(p.get("name") or "") for p in pipelines},
                    [
                        Stage(int(s["id"]), str(s.get("name") or ""), int(s["pipeline_id"]))
                        for s in stages
                    ],
                    kinds,
                )
            return catalog
        finally:
            self._catalog_gate.end()

    def _activity_types(self) -> Operation[list[ActivityType]]:
        """The account's active activity types (v1, one call, no pages)."""
        body = self._body((yield from self._send(ApiRequest("GET", ACTIVITY_TYPES))))
        return [
            ActivityType(str(t["key_string"]), str(t.get("name") or t["key_string"]))
            for t in body.get("data") or ()
            if isinstance(t, dict) and t.get("key_string") and t.get("active_flag") is not False
        ]

    def unmapped(self, entity: Entity, record: Record) -> list[str]:
        """Fields with no place in Pipedrive; custom ones are known once the catalog is read
        (until then, a write refuses the record that names an unknown field)."""
        catalog = self._catalogs.get(entity)
        if catalog is None:
            return []
        return [name for name in record if not catalog.holds(name)]

    def fields(self, entity: Entity) -> Operation[frozenset[str]]:
        """Our fields with a place of their own (link fields included), and the account's
        custom fields (a field of ours without a place goes to the custom field of its name,
        see ``fields.py``)."""
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
        catalog_calls = [FIELD_LISTS[entity]] if entity in FIELD_LISTS else []
        if entity is Entity.DEALS:
            catalog_calls += ["/api/v2/pipelines", "/api/v2/stages"]
        if entity is Entity.ACTIVITIES:
            catalog_calls.append(ACTIVITY_TYPES)
        path = PATHS[entity]
        calls = [
            (pages, ApiRequest("GET", path)),
            (1, ApiRequest("GET", "/api/v1/users/me")),
            *((1, ApiRequest("GET", p)) for p in catalog_calls),
            (work.creates, ApiRequest("POST", path)),
            (work.updates, ApiRequest(self._update_method(entity), f"{path}/1")),
        ]
        return Estimate(
            requests=sum(n for n, _ in calls),
            units=sum(n * token_cost(request) for n, request in calls),
            unit="tokens",
        )

    # the match index --------------------------------------------------------------------------

    def _record(self, entity: Entity, item: Mapping[str, Any], key: str | None) -> CrmRecord:
        """A record in our fields; a person found by one of several emails shows that one.
        Other items under the same unique value (an email, a domain; by ``key`` when found by
        one, else any of the item's) are named in ``duplicates``, oldest first."""
        fields = from_item(entity, item, self._catalogs.get(entity))
        if entity is Entity.CONTACTS and key is not None:
            matched = next(
                (
                    str(e.get("value"))
                    for e in item.get("emails") or ()
                    if isinstance(e, dict)
                    and index_key("email", normalize_key(str(e.get("value") or ""))) == key
                ),
                None,
            )
            fields["email"] = matched or fields.get("email")
        index = self._indexes[entity]
        unique = UNIQUE_KEY_FIELDS.get(entity)
        keys = [key] if key is not None else keys_of(entity, item)
        others = {
            str(holder["id"])
            for k in keys
            if unique is not None and k.startswith(index_key(unique, ""))
            for holder in index.holders(k)
        } - {str(item["id"])}
        return CrmRecord(
            str(item["id"]),
            fields,
            self._created_at(entity, item),
            duplicates=tuple(sorted(others, key=lambda i: (len(i), i))),
            case_blind=CASE_BLIND & fields.keys(),
        )

    @staticmethod
    def _created_at(entity: Entity, item: Mapping[str, Any]) -> datetime | None:
        """When Pipedrive created the item, by its clock. A note's ``add_time`` is the date the
        note is about (ours, when the file gives one), so its first ``update_time`` stands in:
        it is no earlier than the note's creation."""
        if entity is Entity.NOTES:
            return _timestamp(item.get("update_time"))
        return _timestamp(item.get("add_time"))

    def _ensure(
        self,
        entity: Entity,
        values: Mapping[str, tuple[str, str]],
        ids: Sequence[str],
        *,
        every: bool = False,
    ) -> Operation[None]:
        """Make the index able to answer for these keys (``values``: index key -> our field
        and the value as given) and ids, by the cheapest route (see the module's docstring);
        ``every``: for every item under each key, not only the oldest."""
        yield from self._catalog(entity)
        index = self._indexes[entity]
        known = index.knows_every if every else index.knows_key
        yield from self._enter(index)
        try:
            if index.started and index.built_for() > REBUILD_SECONDS:
                index.reset()
            if index.started and (index.age() > REFRESH_SECONDS or index.has_suspects(values)):
                yield from self._refresh(entity, index, index.synced_at)
            keys = [k for k in values if not known(k)]
            unknown = [i for i in ids if not index.knows_id(i)]
            instead = self._instead(entity, [values[k][0] for k in keys], unknown)
            if instead is not None:
                index.asked(instead)
            while not index.complete and (keys or unknown):
                if index.started and instead is not None and index.listing_spent >= index.asked_for:
                    break
                yield from self._list_page(entity, index)
                keys = [k for k in keys if not known(k)]
                unknown = [i for i in unknown if not index.knows_id(i)]
            if index.complete or not (keys or unknown):
                return
            if not index.lag_covered and index.synced_at is not None:
                yield from self._refresh(entity, index, index.synced_at - SEARCH_LAG)
                index.lag_covered = True
                keys = [k for k in keys if not known(k)]
                unknown = [i for i in unknown if not index.knows_id(i)]
            yield from self._search(entity, index, {k: values[k] for k in keys})
            yield from self._read_ids(entity, index, unknown)
        finally:
            index.end()

    def _instead(self, entity: Entity, by: Sequence[str], ids: Sequence[str]) -> int | None:
        """What searching values of these fields and reading these ids would cost; None when
        a field cannot be searched (an organization's website, an activity's subject)."""
        if any((entity, field_name) not in SEARCH_FIELDS for field_name in by):
            return None
        path = PATHS[entity]
        searches = len(by) * token_cost(ApiRequest("GET", f"{path}/search")) if by else 0
        if len(ids) <= SINGLE_READS or entity in V1:
            reads = len(ids) * token_cost(ApiRequest("GET", f"{path}/1"))
        else:
            reads = math.ceil(len(ids) / IDS_PER_READ) * token_cost(ApiRequest("GET", path))
        return searches + reads

    def _list_page(self, entity: Entity, index: MatchIndex) -> Operation[None]:
        """The next page of the listing of the whole account, oldest first."""
        started = time.monotonic()
        index.began_listing(self._since(started))
        v1 = entity in V1
        order = {"sort": "id ASC"} if v1 else {"sort_by": "id", "sort_direction": "asc"}
        items, cursor, cost = yield from self._page(PATHS[entity], order, index.cursor, v1=v1)
        if index.synced_at is None:
            index.synced_at = self._since(started)
        index.listed(items, cursor, cost)

    def _refresh(
        self, entity: Entity, index: MatchIndex, since: datetime | None
    ) -> Operation[None]:
        """List the items updated since ``since``; without a time, start over."""
        if since is None:
            index.reset()
            return
        started = time.monotonic()
        items = yield from self._list(
            PATHS[entity], {"updated_since": rfc3339(since)}, v1=entity in V1
        )
        index.put(items)
        index.refreshed(started, self._since(started))

    def _search(
        self, entity: Entity, index: MatchIndex, values: Mapping[str, tuple[str, str]]
    ) -> Operation[None]:
        """Exact searches for keys the partial listing did not reach; what they find is read
        in full (search results are abridged) into the index."""
        path = PATHS[entity]
        found: list[str] = []
        for key, (field_name, value) in values.items():
            cursor: str | None = None
            while True:
                params = {
                    "term": value.strip(),
                    "fields": SEARCH_FIELDS[(entity, field_name)],
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
        path = PATHS[entity]
        wanted = list(dict.fromkeys(i for i in ids if i.isdigit()))
        index.read_by_id([], [i for i in ids if not i.isdigit()])
        if len(wanted) <= SINGLE_READS or entity in V1:
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
        request = ApiRequest("GET", f"{PATHS[entity]}/{item_id}")
        outcome = yield from self._send(request)
        if outcome.verdict is Verdict.REJECTED and outcome.status == 404:
            return None
        data = self._body(outcome).get("data")
        return data if isinstance(data, dict) else None

    # reads ------------------------------------------------------------------------------------

    def _wanted(self, entity: Entity, values: Sequence[str], by: str) -> dict[str, tuple[str, str]]:
        """Index key -> (field, value) of each value; nothing for a field items are not found
        by (Pipedrive cannot be asked for it: such records are created)."""
        if by not in KEY_FIELDS[entity]:
            return {}
        return {index_key(by, normalize_key(v)): (by, v) for v in values if v.strip()}

    def lookup(
        self, entity: Entity, values: Sequence[str], by: str
    ) -> Operation[dict[str, CrmRecord]]:
        """The oldest item with each value, keyed by the normalized value."""
        wanted = self._wanted(entity, values, by)
        yield from self._ensure(entity, wanted, ())
        index = self._indexes[entity]
        found: dict[str, CrmRecord] = {}
        for key, (_, value) in wanted.items():
            holders = index.holders(key)
            if holders:
                found[normalize_key(value)] = self._record(entity, holders[0], key)
        return found

    def search(self, entity: Entity, values: Sequence[str], by: str) -> Operation[list[CrmRecord]]:
        """Every item with one of the values, oldest first."""
        wanted = self._wanted(entity, values, by)
        yield from self._ensure(entity, wanted, (), every=True)
        index = self._indexes[entity]
        found: dict[str, CrmRecord] = {}
        for key in wanted:
            for item in index.holders(key):
                found.setdefault(str(item["id"]), self._record(entity, item, key))
        return list(found.values())

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
            request = ApiRequest("POST", PATHS[entity], json=body, kind=POST, idempotent=False)
            outcome = yield from self._send(request)
            data = response_json(outcome).get("data") if outcome.verdict is Verdict.OK else None
            if isinstance(data, dict) and "id" in data:
                index.put([data])
                result.successful.append(Written(it.index, str(data["id"]), created=True))
            elif outcome.verdict in (Verdict.AMBIGUOUS, Verdict.OK):
                for key in record_keys(entity, it.record):
                    index.suspect(key)
                result.unconfirmed.append(it)
            else:
                result.failed.append(failure(it.index, outcome, missing=FailureKind.INVALID))
        return result

    def update(
        self, entity: Entity, items: Sequence[Item], *, clear_blanks: bool
    ) -> Operation[BatchResult]:
        """One PATCH (v1 notes: PUT) per record, merged with the item's current values (a phone
        among several, one part of an address) so only the fields named change."""
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
            method = self._update_method(entity)
            request = ApiRequest(
                method,
                f"{PATHS[entity]}/{item_id}",
                json=body,
                kind=POST if method == "PUT" else "write",
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
        """DELETE moves the item to Pipedrive's trash (30 days; notes are deleted). An item
        already gone (404, e.g. when the answer to an earlier DELETE was lost) counts as
        removed."""
        index = self._indexes[entity]
        result = BatchResult()
        for it in items:
            item_id = it.id or ""
            request = ApiRequest("DELETE", f"{PATHS[entity]}/{item_id}", kind="write")
            outcome = yield from self._send(request)
            if outcome.verdict is Verdict.OK or outcome.status == 404:
                index.drop(item_id)
                result.successful.append(Written(it.index, item_id, created=False))
            else:
                result.failed.append(failure(it.index, outcome, missing=FailureKind.NOT_FOUND))
        return result

    @staticmethod
    def _update_method(entity: Entity) -> str:
        """Pipedrive's v2 updates are PATCH; v1's (notes) PUT."""
        return "PUT" if entity in V1 else "PATCH"

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
            "POST", PATHS[Entity.NOTES], json={"content": body, **link}, kind=POST, idempotent=False
        )
        outcome = yield from self._send(request)
        if outcome.verdict is not Verdict.AMBIGUOUS:
            return str(self._body(outcome)["data"]["id"])
        listing = ApiRequest(
            "GET",
            PATHS[Entity.NOTES],
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
