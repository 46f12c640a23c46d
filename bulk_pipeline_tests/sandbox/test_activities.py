"""Tasks and notes as HubSpot keeps them: a required due time, enumerations, batch and search."""

from __future__ import annotations

import httpx
import pytest

from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.answers import invalid_values

TASKS = "/crm/v3/objects/tasks"
NOTES = "/crm/v3/objects/notes"


@pytest.mark.parametrize(("path", "singular"), [(TASKS, "TASK"), (NOTES, "NOTE")])
def test_a_create_without_hs_timestamp_is_refused(
    crm: httpx.Client, sandbox: RunningSandbox, path: str, singular: str
) -> None:
    single = crm.post(path, json={"properties": {}, "associations": []})
    assert single.status_code == 400
    body = single.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"] == f"Error creating {singular}.  Some required properties were not set."
    assert body["context"] == {"properties": ["hs_timestamp"]}

    inputs = [
        {"properties": {"hs_timestamp": "2024-05-01T10:00:00Z"}, "associations": []},
        {"properties": {}, "associations": []},
    ]
    batch = crm.post(f"{path}/batch/create", json={"inputs": inputs})
    assert batch.status_code == 400
    assert batch.json()["context"] == {"properties": ["hs_timestamp"]}
    assert sandbox.admin.counts() == {}, "the batch is refused whole"


def test_hs_timestamp_takes_epoch_milliseconds_or_iso_and_answers_iso(crm: httpx.Client) -> None:
    def stamp(value: str) -> str:
        answer = crm.post(NOTES, json={"properties": {"hs_timestamp": value}, "associations": []})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["properties"]["hs_timestamp"])

    assert stamp("1714557600000") == "2024-05-01T10:00:00Z"
    assert stamp("1714557600123") == "2024-05-01T10:00:00.123Z"
    assert stamp("2024-05-01T12:00:00+02:00") == "2024-05-01T10:00:00Z"
    assert stamp("2024-05-01") == "2024-05-01T00:00:00Z"
    bad = crm.post(NOTES, json={"properties": {"hs_timestamp": "tomorrow"}, "associations": []})
    assert bad.status_code == 400
    assert invalid_values(bad) == [
        {
            "isValid": False,
            "message": "tomorrow was not a valid long.",
            "error": "INVALID_LONG",
            "name": "hs_timestamp",
        }
    ]


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "hs_task_status",
            ["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"],
            "DONE",
        ),
        ("hs_task_priority", ["LOW", "MEDIUM", "HIGH"], "URGENT"),
        ("hs_task_type", ["TODO", "CALL", "EMAIL"], "todo"),
    ],
)
def test_task_enumerations(crm: httpx.Client, name: str, good: list[str], bad: str) -> None:
    due = "2024-05-01T10:00:00Z"
    inputs = [{"properties": {"hs_timestamp": due, name: value}} for value in good]
    created = crm.post(f"{TASKS}/batch/create", json={"inputs": inputs})
    assert created.status_code == 201, created.text
    assert sorted(r["properties"][name] for r in created.json()["results"]) == sorted(good)

    refused = crm.post(TASKS, json={"properties": {"hs_timestamp": due, name: bad}})
    assert refused.status_code == 400
    (problem,) = invalid_values(refused)
    assert (problem["error"], problem["name"]) == ("INVALID_OPTION", name)
    message = str(problem["message"])
    assert message.startswith(f"{bad} was not one of the allowed options: [label: ")
    assert all(f'value: "{value}"' in message for value in good)

    task_id = created.json()["results"][0]["id"]
    patched = crm.patch(f"{TASKS}/{task_id}", json={"properties": {name: bad}})
    assert patched.status_code == 400
    assert invalid_values(patched)[0]["error"] == "INVALID_OPTION"


def test_tasks_batch_read_update_search_and_archive(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    inputs = [
        {
            "properties": {
                "hs_timestamp": f"2024-05-0{n}T09:00:00Z",
                "hs_task_subject": f"Call {n}",
                "hs_task_status": "NOT_STARTED",
            }
        }
        for n in (1, 2, 3)
    ]
    ids = [
        r["id"]
        for r in crm.post(f"{TASKS}/batch/create", json={"inputs": inputs}).json()["results"]
    ]
    read = crm.post(
        f"{TASKS}/batch/read",
        json={
            "properties": ["hs_task_subject"],
            "propertiesWithHistory": [],
            "inputs": [{"id": i} for i in ids],
        },
    )
    assert sorted(r["properties"]["hs_task_subject"] for r in read.json()["results"]) == [
        "Call 1",
        "Call 2",
        "Call 3",
    ]
    done = crm.post(
        f"{TASKS}/batch/update",
        json={"inputs": [{"id": ids[0], "properties": {"hs_task_status": "COMPLETED"}}]},
    )
    assert done.status_code == 200
    open_tasks = crm.post(
        f"{TASKS}/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "hs_task_status", "operator": "EQ", "value": "NOT_STARTED"}
                    ]
                }
            ],
            "properties": ["hs_task_subject"],
        },
    ).json()
    assert sorted(r["id"] for r in open_tasks["results"]) == sorted(ids[1:])
    assert crm.post(f"{TASKS}/batch/archive", json={"inputs": [{"id": ids[1]}]}).status_code == 204
    assert sandbox.admin.counts() == {"tasks": 2}
