"""What people use instead of bulk_pipeline, pointed at the same file, sandbox and limits.

(a) ``per-row``: the script of a typical CRM import guide. For each row: search the contact by
    email, create it or update it, sleep 100 ms. Stops after ``--budget`` seconds (it is slow by
    design); the harness extrapolates its rate to the whole file.
(b) ``dlt``: a dlt pipeline whose custom destination (``@dlt.destination``, ``batch_size=100``)
    posts each batch to the same ``batch/upsert`` endpoint the pipeline's ``upsert_many`` uses.
(c) ``pipedrive-per-row``: the same guide's script for Pipedrive (API v2): for each row, an
    exact search of the person by email, then create or update it, sleep 100 ms. Capped by
    ``--budget`` like (a).

Both do what such scripts do and no more: map the file's headers to HubSpot properties by hand,
trim and lower-case the email, skip rows without one (dlt: without a plausible one, or nearly
every batch of 100 would be refused for one bad email), and wait out a 429 for its
``Retry-After``, as HubSpot asks. Neither deduplicates nor keeps an outcome per row; what they
could not write is counted as ``failed``.

    python -m bench.peers per-row bench/out/contacts_20k.csv --url URL --budget 60
    python -m bench.peers pipedrive-per-row bench/out/contacts_1k.csv --url URL --budget 60
    python -m bench.peers dlt bench/out/contacts_20k.csv --url URL --workdir DIR
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.bench_push import TOKEN
from bench.worker import emit, status_mib

PROPERTIES = {
    "E-mail": "email",
    "First Name": "firstname",
    "Last Name": "lastname",
    "Phone": "phone",
    "Company": "company",
    "Lifecycle Stage": "lifecyclestage",
}
"""The generator's headers and the HubSpot properties a script author maps them to."""
CONTACTS = "/crm/v3/objects/contacts"
ROW_PAUSE_S = 0.1
MAX_ATTEMPTS = 10
PLAUSIBLE_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
BATCH_SIZE = 100


class _Client:
    """An httpx client that waits out 429s for their Retry-After and counts them."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(
            base_url=url,
            headers=headers or {"Authorization": f"Bearer {TOKEN}"},
            timeout=30.0,
            trust_env=False,
        )
        self.rate_limited = 0

    def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        for _ in range(MAX_ATTEMPTS):
            response = self.http.request(method, path, json=body, params=params)
            if response.status_code != 429:
                return response
            self.rate_limited += 1
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response

    def close(self) -> None:
        self.http.close()


def _contacts(path: Path) -> Iterator[dict[str, str]]:
    """The file's rows as HubSpot properties, email trimmed and lower-cased."""
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            properties = {prop: row[header] for header, prop in PROPERTIES.items()}
            properties["email"] = properties["email"].strip().lower()
            yield properties


def _row_by_row(
    path: Path,
    client: _Client,
    write: Callable[[_Client, dict[str, str]], httpx.Response],
    *,
    budget_s: float,
) -> dict[str, Any]:
    """The guide's loop: each row with an email written by ``write``, 100 ms apart, for
    ``budget_s``."""
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        for properties in _contacts(path):
            if time.perf_counter() - started >= budget_s:
                break
            outcomes["rows"] += 1
            if not properties["email"]:
                outcomes["skipped"] += 1
                continue
            answer = write(client, properties)
            outcomes["written" if answer.is_success else "failed"] += 1
            time.sleep(ROW_PAUSE_S)
    finally:
        client.close()
    return {
        **outcomes,
        "seconds": time.perf_counter() - started,
        "client_429": client.rate_limited,
    }


def _hubspot_row(client: _Client, properties: dict[str, str]) -> httpx.Response:
    """Search the contact by email, then update it or create it."""
    search = {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": properties["email"]}]}
        ],
        "properties": ["email"],
        "limit": 1,
    }
    found = client.send("POST", f"{CONTACTS}/search", search)
    results = found.json().get("results", []) if found.is_success else []
    if results:
        return client.send("PATCH", f"{CONTACTS}/{results[0]['id']}", {"properties": properties})
    return client.send("POST", CONTACTS, {"properties": properties})


def per_row_script(path: Path, url: str, *, budget_s: float) -> dict[str, Any]:
    """Search, then create or update, one row at a time, 100 ms apart, for ``budget_s``."""
    return _row_by_row(path, _Client(url), _hubspot_row, budget_s=budget_s)


PERSONS = "/api/v2/persons"


def _pipedrive_row(client: _Client, row: dict[str, str]) -> httpx.Response:
    """Search the person by email (exact), then PATCH it or POST a new one."""
    person: dict[str, Any] = {
        "first_name": row["firstname"],
        "last_name": row["lastname"],
        "phones": [{"value": row["phone"], "primary": True, "label": "work"}],
    }
    found = client.send(
        "GET",
        f"{PERSONS}/search",
        params={"term": row["email"], "fields": "email", "exact_match": "true", "limit": "1"},
    )
    items = (found.json().get("data") or {}).get("items", []) if found.is_success else []
    if items:
        return client.send("PATCH", f"{PERSONS}/{items[0]['item']['id']}", person)
    person["emails"] = [{"value": row["email"], "primary": True, "label": "work"}]
    return client.send("POST", PERSONS, person)


def pipedrive_per_row(path: Path, url: str, *, budget_s: float) -> dict[str, Any]:
    """Pipedrive's version of the guide's loop, for ``budget_s``."""
    client = _Client(url, {"x-api-token": TOKEN})
    return _row_by_row(path, client, _pipedrive_row, budget_s=budget_s)


def dlt_pipeline(path: Path, url: str, *, workdir: Path) -> dict[str, Any]:
    """Load the file with dlt into a custom destination that calls HubSpot's batch upsert."""
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no network but the sandbox
    os.environ["DLT_DATA_DIR"] = str(workdir / "dlt-data")
    try:
        import dlt
        from dlt.common.schema import TTableSchema
        from dlt.common.typing import TDataItems
    except ImportError:
        return {"error": "dlt is not installed (pip install -e '.[bench]')"}

    client = _Client(url)
    outcomes: Counter[str] = Counter()

    @dlt.resource(name="contacts", write_disposition="append")
    def contacts() -> Iterator[dict[str, str]]:
        for properties in _contacts(path):
            outcomes["rows"] += 1
            if PLAUSIBLE_EMAIL.fullmatch(properties["email"]):
                yield properties
            else:
                outcomes["skipped"] += 1

    @dlt.destination(batch_size=BATCH_SIZE, name="hubspot_upsert")
    def hubspot_upsert(items: TDataItems, table: TTableSchema) -> None:
        inputs = [
            {"idProperty": "email", "id": item["email"], "properties": item} for item in items
        ]
        answer = client.send("POST", f"{CONTACTS}/batch/upsert", {"inputs": inputs})
        outcomes["written" if answer.is_success else "failed"] += len(items)

    pipeline = dlt.pipeline(
        pipeline_name="bench_peer",
        destination=hubspot_upsert(),
        pipelines_dir=str(workdir / "dlt-pipelines"),
    )
    started = time.perf_counter()
    try:
        pipeline.run(contacts())
    finally:
        client.close()
    return {
        **outcomes,
        "seconds": time.perf_counter() - started,
        "client_429": client.rate_limited,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    kinds = parser.add_subparsers(dest="kind", required=True)
    per_row = kinds.add_parser("per-row")
    per_row.add_argument("file", type=Path)
    per_row.add_argument("--url", required=True)
    per_row.add_argument("--budget", type=float, required=True, help="seconds before stopping")
    pipedrive = kinds.add_parser("pipedrive-per-row")
    pipedrive.add_argument("file", type=Path)
    pipedrive.add_argument("--url", required=True)
    pipedrive.add_argument("--budget", type=float, required=True, help="seconds before stopping")
    dlt = kinds.add_parser("dlt")
    dlt.add_argument("file", type=Path)
    dlt.add_argument("--url", required=True)
    dlt.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.kind == "per-row":
        result = per_row_script(args.file, args.url, budget_s=args.budget)
    elif args.kind == "pipedrive-per-row":
        result = pipedrive_per_row(args.file, args.url, budget_s=args.budget)
    else:
        result = dlt_pipeline(args.file, args.url, workdir=args.workdir)
    emit({**result, "peak_rss_mib": status_mib("VmHWM")})


if __name__ == "__main__":
    main()
