"""The targets the contract suite runs over, each with a view of its CRM's records.

Every harness opens a fresh target on a fresh CRM and can say what the CRM holds (in our field
names), how many writes it received, and arrange for answers to creates to be lost after the CRM
applied them. In-memory combinations cover capabilities no real CRM of ours has yet; HubSpot,
Attio and Pipedrive each run against a spec-checked fake transport and against the sandbox over
loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bulk_pipeline.config import SANDBOX_TOKEN_ENV, SANDBOX_URL_ENV
from bulk_pipeline.entities import Entity
from bulk_pipeline.sandbox.server import SandboxConfig, start_in_thread
from bulk_pipeline.targets import open_target
from bulk_pipeline.targets.attio import attio_budget
from bulk_pipeline.targets.base import Target
from bulk_pipeline.targets.fake import FakeCrm, Faults, fake_target, with_capabilities
from bulk_pipeline.targets.http import Budget, RetryPolicy
from bulk_pipeline.targets.hubspot.dialect import hubspot_budget
from bulk_pipeline.targets.hubspot.properties import OBJECT_TYPES, from_properties
from bulk_pipeline.targets.pipedrive.budget import pipedrive_budget
from bulk_pipeline.targets.pipedrive.fields import PATHS, from_item
from bulk_pipeline_tests.targets import fake_attio, fake_pipedrive
from bulk_pipeline_tests.targets.fake_hubspot import BASE_URL, FakeHubSpot

Records = dict[str, dict[str, str]]
"""CRM id -> our non-blank fields."""

QUICK = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05)
PATIENT = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05)
"""For a CRM without batches, whose push makes a call per record: more calls meet the dropped
connections of ``lose_create_answers`` (reads too), so each call is retried longer."""


@dataclass
class Harness:
    name: str
    target: Target
    records: Callable[[Entity], Records]
    writes: Callable[[], int]
    lose_create_answers: Callable[[], None]
    """From now on, some creates are applied and their answers lost."""


def _pipedrive_kind(entity: Entity) -> str:
    """Pipedrive's item type of an entity, as its paths name it (``persons``)."""
    return PATHS[entity].rsplit("/", 1)[-1]


def _ours(entity: Entity, properties: dict[str, object]) -> dict[str, str]:
    return {k: v for k, v in from_properties(entity, dict(properties)).items() if v}


FAKE_COMBINATIONS: dict[str, dict[str, object]] = {
    "fake-batched-unique-contacts": {},
    "fake-single-no-unique": {
        "batch_size": 1,
        "lookup_batch_size": 1,
        "concurrency": 4,
        "refuses_duplicate_keys": frozenset(),
        "native_upsert": frozenset(),
    },
    "fake-batched-no-unique": {"refuses_duplicate_keys": frozenset(), "native_upsert": frozenset()},
    "fake-single-all-unique": {
        "batch_size": 1,
        "concurrency": 3,
        "refuses_duplicate_keys": frozenset(Entity),
        "native_upsert": frozenset(Entity),
    },
    "fake-small-batches-unique-deals": {
        "batch_size": 7,
        "lookup_batch_size": 5,
        "refuses_duplicate_keys": frozenset({Entity.DEALS, Entity.CONTACTS}),
        "native_upsert": frozenset(),
    },
}
HARNESSES = [
    *FAKE_COMBINATIONS,
    "hubspot-fake-transport",
    "hubspot-sandbox",
    "attio-fake-transport",
    "attio-sandbox",
    "pipedrive-fake-transport",
    "pipedrive-sandbox",
]

ATTIO_OBJECTS = {Entity.CONTACTS: "people", Entity.COMPANIES: "companies", Entity.DEALS: "deals"}
ATTIO_VIEW: dict[Entity, dict[str, tuple[str, str]]] = {
    Entity.CONTACTS: {
        "email": ("email_addresses", "email_address"),
        "first_name": ("name", "first_name"),
        "last_name": ("name", "last_name"),
        "city": ("primary_location", "locality"),
    },
    Entity.COMPANIES: {"name": ("name", "value"), "domain": ("domains", "domain")},
    Entity.DEALS: {"name": ("name", "value"), "amount": ("value", "currency_value")},
}
"""Where the suite's fields are in an Attio record, read straight from Attio's answer."""


def _attio_records(entity: Entity, records: list[dict[str, object]]) -> Records:
    """Our non-blank fields of Attio records (the most recent value of each attribute)."""
    view: Records = {}
    for record in records:
        values = record["values"]
        assert isinstance(values, dict)
        fields: dict[str, str] = {}
        for name, (slug, key) in ATTIO_VIEW[entity].items():
            held = values.get(slug) or []
            if held and held[0].get(key) not in (None, ""):
                fields[name] = str(held[0][key])
        view[str(record["id"]["record_id"])] = fields  # type: ignore[index]
    return view


def _pipedrive_ours(entity: Entity, item: dict[str, object]) -> dict[str, str]:
    return {k: v for k, v in from_item(entity, item, None).items() if v}


@contextmanager
def open_harness(name: str, tmp_path: Path) -> Iterator[Harness]:
    if name in FAKE_COMBINATIONS:
        crm = FakeCrm(capabilities=with_capabilities(**FAKE_COMBINATIONS[name]))

        def lose() -> None:
            crm.faults = Faults(lose_create_answers=0.5, seed=7)
            crm.__post_init__()

        yield Harness(
            name,
            fake_target(crm),
            lambda entity: {
                r.id: {k: v for k, v in r.fields.items() if v} for r in crm.of(entity).values()
            },
            crm.writes,
            lose,
        )
    elif name == "hubspot-fake-transport":
        fake = FakeHubSpot()
        target = open_target(
            "hubspot",
            {"HUBSPOT_ACCESS_TOKEN": "pat-contract-0000", "HUBSPOT_BASE_URL": BASE_URL},
            retry=QUICK,
            budget=Budget({"*": ()}),
            transport=fake.transport(),
        )

        def lose_fake() -> None:
            fake.lose_create_answers = 3

        try:
            yield Harness(
                name,
                target,
                lambda entity: {
                    i: _ours(entity, props)
                    for i, props in fake.records.get(OBJECT_TYPES[entity], {}).items()
                },
                lambda: sum(
                    "/batch/" in r.url.path and not r.url.path.endswith("/batch/read")
                    for r in fake.requests
                ),
                lose_fake,
            )
        finally:
            target.close()
    elif name == "attio-fake-transport":
        attio = fake_attio.FakeAttio(tmp_path / "fake-attio.sqlite3")
        target = open_target(
            "attio",
            {"ATTIO_ACCESS_TOKEN": fake_attio.TOKEN, "ATTIO_BASE_URL": fake_attio.BASE_URL},
            retry=QUICK,
            budget=Budget({"*": ()}),
            transport=attio.transport(),
        )

        def lose_attio() -> None:
            attio.lose_create_answers = 3

        try:
            yield Harness(
                name,
                target,
                lambda entity: _attio_records(entity, attio.records(ATTIO_OBJECTS[entity])),
                attio.writes,
                lose_attio,
            )
        finally:
            target.close()
            attio.close()
    elif name == "attio-sandbox":
        sandbox = start_in_thread(
            db_path=tmp_path / "contract-attio.sqlite3", config=SandboxConfig.unlimited()
        )
        target = open_target(
            "sandbox-attio",
            {SANDBOX_URL_ENV: sandbox.url, SANDBOX_TOKEN_ENV: sandbox.token},
            retry=PATIENT,
            budget=attio_budget(),
        )
        try:
            yield Harness(
                name,
                target,
                lambda entity: _attio_records(
                    entity, sandbox.admin.records(ATTIO_OBJECTS[entity], dialect="attio")
                ),
                lambda: int(sandbox.admin.requests("attio")["writes"]),
                lambda: sandbox.admin.configure(drop_rate=0.3, seed=3),
            )
        finally:
            target.close()
            sandbox.stop()
    elif name == "pipedrive-fake-transport":
        pipedrive = fake_pipedrive.FakePipedrive()
        target = open_target(
            "pipedrive",
            {
                "PIPEDRIVE_API_TOKEN": fake_pipedrive.TOKEN,
                "PIPEDRIVE_BASE_URL": fake_pipedrive.BASE_URL,
            },
            retry=QUICK,
            budget=pipedrive_budget({}),
            transport=pipedrive.transport(),
        )

        def lose_pipedrive() -> None:
            pipedrive.lose_create_answers = 3

        try:
            yield Harness(
                name,
                target,
                lambda entity: {
                    str(i): _pipedrive_ours(entity, item)
                    for i, item in pipedrive.items[_pipedrive_kind(entity)].items()
                },
                pipedrive.writes,
                lose_pipedrive,
            )
        finally:
            target.close()
    else:
        sandbox = start_in_thread(
            db_path=tmp_path / "contract-crm.sqlite3", config=SandboxConfig.unlimited()
        )
        speaks_pipedrive = name == "pipedrive-sandbox"
        target = open_target(
            "sandbox-pipedrive" if speaks_pipedrive else "sandbox",
            {SANDBOX_URL_ENV: sandbox.url, SANDBOX_TOKEN_ENV: sandbox.token},
            retry=QUICK,
            budget=pipedrive_budget({}) if speaks_pipedrive else hubspot_budget(),
        )

        def held(entity: Entity) -> Records:
            if speaks_pipedrive:
                return {
                    str(r["id"]): _pipedrive_ours(entity, r)
                    for r in sandbox.admin.records(_pipedrive_kind(entity), "pipedrive")
                }
            return {
                r["id"]: _ours(entity, r["properties"])
                for r in sandbox.admin.records(OBJECT_TYPES[entity])
            }

        try:
            yield Harness(
                name,
                target,
                held,
                lambda: int(sandbox.admin.stats()["requests"]["writes"]),
                lambda: sandbox.admin.configure(drop_rate=0.4, seed=3),
            )
        finally:
            target.close()
            sandbox.stop()
