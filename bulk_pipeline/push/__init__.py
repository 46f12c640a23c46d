"""The push: plan against the CRM, send in checkpointed chunks, and undo (rollback).

Talks only to the :class:`~bulk_pipeline.targets.base.Target` interface and the staging store;
the write strategy (look up then write, or create without a lookup where the CRM refuses
duplicate keys) is chosen from the target's capabilities, never from its name.
"""

from bulk_pipeline.push.execute import PushReport, PushStopped, plan_import, push_import
from bulk_pipeline.push.plan import Action, PlannedRecord, PlanSummary
from bulk_pipeline.push.rollback import RollbackReport, rollback_import

__all__ = [
    "Action",
    "PlanSummary",
    "PlannedRecord",
    "PushReport",
    "PushStopped",
    "RollbackReport",
    "plan_import",
    "push_import",
    "rollback_import",
]
