"""HTTP machinery shared by every CRM target: the retry loop, budgets, auth schemes, drivers.

Nothing here knows a CRM by name; each dialect (``targets/<crm>/``) composes these pieces.
"""

from bulk_pipeline.targets.http.auth import BearerAuth, HeaderTokenAuth
from bulk_pipeline.targets.http.clock import CrmClock
from bulk_pipeline.targets.http.drivers import AsyncDriver, ClientSettings, SyncDriver
from bulk_pipeline.targets.http.exchange import (
    ApiRequest,
    Effect,
    Exchange,
    Operation,
    Outcome,
    Pause,
    RetryPolicy,
    Send,
    Verdict,
    exchange,
    parse_retry_after,
)
from bulk_pipeline.targets.http.limits import (
    Budget,
    Cooldown,
    DailyAllowance,
    LimitState,
    RollingWindow,
    WindowHeaders,
    shared_budget,
)

__all__ = [
    "ApiRequest",
    "AsyncDriver",
    "BearerAuth",
    "Budget",
    "ClientSettings",
    "Cooldown",
    "CrmClock",
    "DailyAllowance",
    "Effect",
    "Exchange",
    "HeaderTokenAuth",
    "LimitState",
    "Operation",
    "Outcome",
    "Pause",
    "RetryPolicy",
    "RollingWindow",
    "Send",
    "SyncDriver",
    "Verdict",
    "WindowHeaders",
    "exchange",
    "parse_retry_after",
    "shared_budget",
]
