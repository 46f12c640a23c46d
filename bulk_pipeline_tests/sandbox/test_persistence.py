"""Records live in the SQLite file: they survive restarts and stay unique across servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bulk_pipeline.config import sandbox_token
from bulk_pipeline.sandbox.server import SandboxConfig, start_in_thread

CONTACTS = "/crm/v3/objects/contacts"


def client(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {sandbox_token()}"},
        timeout=30,
        trust_env=False,
    )


def upsert(crm: httpx.Client, emails: list[str]) -> dict[str, str]:
    inputs = [{"id": email, "idProperty": "email", "properties": {}} for email in emails]
    answer = crm.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    return {r["properties"]["email"]: r["id"] for r in answer.json()["results"]}


@pytest.fixture
def other_process(tmp_path: Path) -> Iterator[str]:
    """A sandbox in its own process on ``tmp_path / "shared.sqlite3"``; yields its URL."""
    db = str(tmp_path / "shared.sqlite3")
    argv = [sys.executable, "-m", "bulk_pipeline.sandbox", "--port", "0", "--rate-limit", "0"]
    process = subprocess.Popen([*argv, "--db", db], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert "listening on http://" in banner, banner
        yield banner.split("listening on ")[1].split(";")[0]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_records_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite3"
    with (
        start_in_thread(db_path=db, config=SandboxConfig.unlimited()) as first,
        client(first.url) as crm,
    ):
        ids = upsert(crm, ["a@example.com", "b@example.com"])
    with (
        start_in_thread(db_path=db, config=SandboxConfig.unlimited()) as second,
        client(second.url) as crm,
    ):
        read = crm.post(
            f"{CONTACTS}/batch/read",
            json={
                "idProperty": "email",
                "inputs": [{"id": "a@example.com"}, {"id": "b@example.com"}],
            },
        )
        assert {r["properties"]["email"]: r["id"] for r in read.json()["results"]} == ids
        new = upsert(crm, ["c@example.com"])["c@example.com"]
        assert int(new) > max(int(record_id) for record_id in ids.values()), "ids are never reused"


def test_two_servers_on_one_file_never_duplicate_a_key(tmp_path: Path, other_process: str) -> None:
    emails = [f"user{i}@example.com" for i in range(60)]
    db = tmp_path / "shared.sqlite3"
    with start_in_thread(db_path=db, config=SandboxConfig.unlimited()) as here:
        urls = [here.url, other_process]

        def hammer(worker: int) -> dict[str, str]:
            seen: dict[str, str] = {}
            with client(urls[worker % 2]) as crm:
                for start in range(0, len(emails), 20):
                    chunk = emails[start : start + 20]
                    seen.update(upsert(crm, chunk[worker % 3 :] + chunk[: worker % 3]))
            return seen

        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(hammer, range(6)))

        assert all(outcome == outcomes[0] for outcome in outcomes), (
            "every server names one id per key"
        )
        assert len(set(outcomes[0].values())) == len(emails)
        assert here.admin.counts() == {"contacts": len(emails)}

        def create(url: str) -> int:
            with client(url) as crm:
                body = {"inputs": [{"properties": {"email": "race@example.com"}}]}
                return crm.post(f"{CONTACTS}/batch/create", json=body).status_code

        with ThreadPoolExecutor(max_workers=2) as pool:
            assert sorted(pool.map(create, urls)) == [201, 409]


def test_associations_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite3"
    with (
        start_in_thread(db_path=db, config=SandboxConfig.unlimited()) as first,
        client(first.url) as crm,
    ):
        company = crm.post("/crm/v3/objects/companies", json={"properties": {}}).json()["id"]
        association = {
            "to": {"id": company},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
        }
        contact = crm.post(CONTACTS, json={"properties": {}, "associations": [association]}).json()[
            "id"
        ]
    with (
        start_in_thread(db_path=db, config=SandboxConfig.unlimited()) as second,
        client(second.url) as crm,
    ):
        answer = crm.get(f"/crm/v4/objects/companies/{company}/associations/contacts")
        assert [r["toObjectId"] for r in answer.json()["results"]] == [contact]
