"""The public API's argument handling, on an in-memory HubSpot (no sandbox needed)."""

from __future__ import annotations

import asyncio
import random

import pytest

from bulk_pipeline import api
from bulk_pipeline.entities import Entity
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.http import Budget
from bulk_pipeline_tests.targets.fake_hubspot import BASE_URL, FakeHubSpot

TOKEN = "pat-na1-api-test-token-0000"
SETTINGS = {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": BASE_URL}


def test_object_types_by_name_singular_or_hubspot_id() -> None:
    assert api.entity_for("Contacts") is Entity.CONTACTS
    assert api.entity_for("company") is Entity.COMPANIES
    assert api.entity_for("0-3") is Entity.DEALS
    with pytest.raises(ValueError, match="unknown object type 'tickets'"):
        api.entity_for("tickets")


def test_calls_on_a_target_instance_leave_it_open() -> None:
    fake = FakeHubSpot()
    target = open_target("hubspot", SETTINGS, budget=Budget({"*": ()}), transport=fake.transport())
    created = api.create_many("contacts", [{"email": "a@example.com"}], target=target)
    (written,) = created.successful
    updated = api.update_many("contact", [{"city": "Oslo"}], ids=[written.id], target=target)
    assert [w.id for w in updated.successful] == [written.id]
    assert api.get_many("0-1", [written.id], target=target)[written.id].fields["city"] == "Oslo"
    with pytest.raises(ValueError, match="got 2 ids for 1 records"):
        api.update_many("contacts", [{"city": "x"}], ids=["1", "2"], target=target)
    assert len(api.archive_many("contacts", [written.id], target=target).successful) == 1
    target.close()


def test_async_calls_on_a_target_instance() -> None:
    fake = FakeHubSpot()

    async def run() -> None:
        target = open_async_target(
            "hubspot",
            SETTINGS,
            budget=Budget({"*": ()}),
            transport=fake.transport(),
            rng=random.Random(0),
        )
        records = [{"email": f"p{i}@example.com"} for i in range(230)]
        result = await api.async_upsert_many("contacts", records, target=target)
        assert [w.index for w in result.successful] == list(range(230))
        ids = [w.id for w in result.successful]
        read = await api.async_get_many("contacts", ids, target=target)
        assert set(read) == set(ids)
        updated = await api.async_update_many(
            "contacts", [{"id": ids[0], "city": "Rome"}], target=target
        )
        assert [w.id for w in updated.successful] == [ids[0]]
        archived = await api.async_archive_many("contacts", ids, target=target)
        assert len(archived.successful) == 230
        await target.aclose()

    asyncio.run(run())
    assert [len(b["inputs"]) for b in fake.bodies("upsert")] == [100, 100, 30]
