"""Deal pipelines: HubSpot's default one, configured ones, and deals' pipeline and stage checks."""

from __future__ import annotations

import httpx
import pytest

from bulk_pipeline.sandbox.config import SandboxConfig
from bulk_pipeline.sandbox.server import RunningSandbox
from bulk_pipeline_tests.sandbox.answers import invalid_values
from bulk_pipeline_tests.sandbox.spec_check import CheckedClient

DEALS = "/crm/v3/objects/deals"
RENEWALS = {
    "id": "renewals",
    "label": "Renewals",
    "stages": [
        {"id": "renewaldue", "label": "Renewal due", "probability": 0.5},
        {"id": "renewed", "label": "Renewed", "probability": 1.0, "closed": True},
    ],
}
DEFAULT_STAGES = [
    ("appointmentscheduled", "Appointment Scheduled", "0.2", "false"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", "false"),
    ("presentationscheduled", "Presentation Scheduled", "0.6", "false"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", "false"),
    ("contractsent", "Contract Sent", "0.9", "false"),
    ("closedwon", "Closed Won", "1.0", "true"),
    ("closedlost", "Closed Lost", "0.0", "true"),
]


def test_the_default_deal_pipeline_answers_like_hubspot(crm: httpx.Client) -> None:
    api = CheckedClient(crm, "pipelines.json", "/crm/v3/pipelines")
    listed = api.call("GET", "/deals", 200)
    assert [p["id"] for p in listed["results"]] == ["default"]
    default = api.call("GET", "/deals/default", 200)
    assert default == listed["results"][0]
    assert (default["label"], default["displayOrder"], default["archived"]) == (
        "Sales Pipeline",
        0,
        False,
    )
    stages = [
        (s["id"], s["label"], s["metadata"]["probability"], s["metadata"]["isClosed"])
        for s in default["stages"]
    ]
    assert stages == DEFAULT_STAGES
    assert [s["displayOrder"] for s in default["stages"]] == list(range(7))
    assert api.call("GET", "/deals/default/stages", 200)["results"] == default["stages"]
    assert api.call("GET", "/0-3/default/stages/closedwon", 200) == default["stages"][5]
    api.call("GET", "/deals/nope", 404)
    api.call("GET", "/deals/default/stages/nope", 404)


def test_configured_pipelines_come_after_the_default(
    crm: httpx.Client, sandbox: RunningSandbox
) -> None:
    shown = sandbox.admin.configure(deal_pipelines=[RENEWALS])
    assert shown["deal_pipelines"] == [
        {**RENEWALS, "stages": [{**RENEWALS["stages"][0], "closed": False}, RENEWALS["stages"][1]]}
    ]
    api = CheckedClient(crm, "pipelines.json", "/crm/v3/pipelines/deals")
    assert [(p["id"], p["displayOrder"]) for p in api.call("GET", "", 200)["results"]] == [
        ("default", 0),
        ("renewals", 1),
    ]
    renewed = api.call("GET", "/renewals/stages/renewed", 200)
    assert renewed["metadata"] == {"isClosed": "true", "probability": "1.0"}


@pytest.mark.parametrize(
    ("pipelines", "complaint"),
    [
        ([{**RENEWALS, "id": "default"}], "pipeline id 'default' is taken"),
        ([{**RENEWALS, "stages": [{"id": "closedwon", "label": "W", "probability": 1}]}], "taken"),
        ([{**RENEWALS, "stages": []}], "at least one stage"),
        ([{**RENEWALS, "stages": [{"id": "x", "label": "X", "probability": 2}]}], "probability"),
    ],
)
def test_impossible_pipelines_are_refused(
    sandbox: RunningSandbox, pipelines: list[object], complaint: str
) -> None:
    with httpx.Client(base_url=f"{sandbox.url}/_sandbox", trust_env=False) as admin:
        answer = admin.post("/config", json={"hubspot": {"deal_pipelines": pipelines}})
    assert answer.status_code == 400
    assert complaint in answer.json()["message"]
    with pytest.raises(ValueError, match=complaint):
        SandboxConfig().changed({"deal_pipelines": pipelines})


def test_deal_writes_check_pipeline_and_stage(crm: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.admin.configure(deal_pipelines=[RENEWALS])
    won = crm.post(DEALS, json={"properties": {"dealname": "A", "dealstage": "closedwon"}})
    assert won.status_code == 201
    assert won.json()["properties"]["pipeline"] == "default", "no pipeline means the default"
    unstaged = crm.post(DEALS, json={"properties": {"dealname": "B"}})
    assert unstaged.status_code == 201 and "pipeline" not in unstaged.json()["properties"]

    (problem,) = invalid_values(
        crm.post(DEALS, json={"properties": {"dealname": "C", "dealstage": "renewed"}})
    )
    assert (problem["error"], problem["name"]) == ("INVALID_OPTION", "dealstage")
    message = str(problem["message"])
    assert message.startswith("renewed was not one of the allowed options: [label: ")
    assert all(f'value: "{stage}"' in message for stage, *_ in DEFAULT_STAGES)
    assert 'value: "renewaldue"' not in message, "only the deal's pipeline's stages are allowed"

    (problem,) = invalid_values(
        crm.post(DEALS, json={"properties": {"pipeline": "nope", "dealstage": "renewed"}})
    )
    assert problem["name"] == "pipeline"
    assert 'value: "default"' in str(problem["message"])
    assert 'value: "renewals"' in str(problem["message"])

    renewal = crm.post(
        DEALS, json={"properties": {"pipeline": "renewals", "dealstage": "renewaldue"}}
    )
    assert renewal.status_code == 201
    renewal_id = renewal.json()["id"]
    wrong_stage = crm.patch(
        f"{DEALS}/{renewal_id}", json={"properties": {"dealstage": "closedwon"}}
    )
    assert invalid_values(wrong_stage)[0]["name"] == "dealstage"
    left_behind = crm.patch(f"{DEALS}/{renewal_id}", json={"properties": {"pipeline": "default"}})
    assert invalid_values(left_behind)[0]["name"] == "dealstage", "the stage must follow"
    moved = crm.patch(
        f"{DEALS}/{renewal_id}",
        json={"properties": {"pipeline": "default", "dealstage": "contractsent"}},
    )
    assert moved.status_code == 200

    batch = crm.post(
        f"{DEALS}/batch/update",
        json={
            "inputs": [
                {"id": won.json()["id"], "properties": {"dealstage": "closedlost"}},
                {"id": renewal_id, "properties": {"dealstage": "renewed"}},
            ]
        },
    )
    assert [p["name"] for p in invalid_values(batch)] == ["dealstage"]
    stages = {r["id"]: r["properties"].get("dealstage") for r in sandbox.admin.records("deals")}
    assert stages[won.json()["id"]] == "closedwon", "a refused batch changes nothing"
    assert stages[renewal_id] == "contractsent"
