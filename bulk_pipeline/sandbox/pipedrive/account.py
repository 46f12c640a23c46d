"""What a fresh sandbox Pipedrive account holds: its users, activity types, a pipeline with stages.

Users and activity types are fixed (the sandbox has no endpoints to change them); user 1 owns
the API token. The pipeline and stages are ordinary records, seeded once and changeable through
the API like any other.
"""

from __future__ import annotations

from typing import Any

from bulk_pipeline.sandbox.pipedrive.entities import now_iso
from bulk_pipeline.sandbox.pipedrive.store import PipedriveStore

TOKEN_OWNER = 1
CREATED = "2024-01-02 09:00:00"

USERS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Sandbox Owner", "email": "owner@sandbox.example.com", "admin": True},
    {"id": 2, "name": "Ada Lovelace", "email": "ada@sandbox.example.com", "admin": False},
    {"id": 3, "name": "Grace Hopper", "email": "grace@sandbox.example.com", "admin": False},
)
USER_IDS = frozenset(user["id"] for user in USERS)
COMPANY = {
    "company_id": 1,
    "company_name": "Sandbox CRM",
    "company_domain": "sandbox",
    "company_country": "US",
    "company_industry": "Software",
    "language": {"language_code": "en", "country_code": "US"},
}
DEFAULT_CURRENCY = "USD"

ACTIVITY_TYPES = ("call", "meeting", "task", "deadline", "email", "lunch")
DEFAULT_PIPELINE = "Pipeline"
DEFAULT_STAGES = (
    ("Qualified", 10),
    ("Contact Made", 20),
    ("Demo Scheduled", 40),
    ("Proposal Made", 60),
    ("Negotiations Started", 80),
)


def user_answer(user: dict[str, Any], *, me: bool = False) -> dict[str, Any]:
    """A user as ``/api/v1/users`` answers it (``/users/me`` adds the company)."""
    answer = {
        "id": user["id"],
        "name": user["name"],
        "default_currency": DEFAULT_CURRENCY,
        "locale": "en_US",
        "lang": 1,
        "email": user["email"],
        "phone": None,
        "activated": True,
        "last_login": CREATED,
        "created": CREATED,
        "modified": CREATED,
        "has_created_company": user["id"] == TOKEN_OWNER,
        "access": [{"app": "sales", "admin": user["admin"], "permission_set_id": "sandbox"}],
        "active_flag": True,
        "timezone_name": "UTC",
        "timezone_offset": "+00:00",
        "role_id": 1,
        "icon_url": None,
        "is_you": user["id"] == TOKEN_OWNER,
        "is_deleted": False,
    }
    return {**answer, **COMPANY} if me else answer


def activity_type_answers() -> list[dict[str, Any]]:
    return [
        {
            "id": number,
            "name": key.capitalize(),
            "icon_key": key,
            "order_nr": number,
            "key_string": key,
            "active_flag": True,
            "is_custom_flag": False,
            "add_time": CREATED.replace(" ", "T") + "Z",
            "update_time": CREATED.replace(" ", "T") + "Z",
        }
        for number, key in enumerate(ACTIVITY_TYPES, start=1)
    ]


def seed(store: PipedriveStore, wall: float) -> None:
    """The default pipeline and its stages, unless pipelines were ever created."""
    if store.has_items("pipeline"):
        return
    now = now_iso()
    pipeline = store.insert(
        "pipeline",
        store.next_id("pipeline"),
        {"name": DEFAULT_PIPELINE, "order_nr": 1, "is_deal_probability_enabled": False},
        now,
        None,
        wall=wall,
        lag_s=0,
    )
    for order, (name, probability) in enumerate(DEFAULT_STAGES, start=1):
        store.insert(
            "stage",
            store.next_id("stage"),
            {
                "name": name,
                "order_nr": order,
                "pipeline_id": pipeline.id,
                "deal_probability": probability,
                "is_deal_rot_enabled": False,
                "days_to_rotten": None,
            },
            now,
            None,
            wall=wall,
            lag_s=0,
        )
