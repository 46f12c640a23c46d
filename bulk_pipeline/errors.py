"""One hierarchy of errors, by what a person (or a scheduler) should do about them.

Every module raises one of these kinds; one place in the Dagster layer (``defs/failures.py``) maps
them to failure and retry behaviour, and the CLI prints their message as it is. Messages are
written for people and never carry a token (they pass through ``redaction.redact``).
"""

from __future__ import annotations

from datetime import UTC, datetime


class BulkPipelineError(Exception):
    """Base of the errors bulk_pipeline raises on purpose; the message says what to do."""


class UserInputError(BulkPipelineError):
    """The file, mapping or option given is wrong: fix it and import again (never retried)."""


class TargetConfigError(BulkPipelineError):
    """The CRM target cannot be used as configured: a missing or refused token, an unknown
    target, a CRM that does not answer at its URL. Fix the configuration (never retried)."""


class TransientError(BulkPipelineError):
    """The CRM failed for longer than the retry window allows; what was acknowledged is saved,
    and running the import again later resumes without writing anything twice."""


class BudgetExhausted(BulkPipelineError):
    """The CRM account's budget (a daily limit, a token budget) is spent until ``resume_at``.

    Raised before a request that would exceed it, or when the CRM says so; the push stops with
    its state saved, and a run after ``resume_at`` resumes without writing anything twice.
    """

    def __init__(self, budget: str, resume_at: datetime, detail: str = "") -> None:
        self.budget = budget
        self.resume_at = resume_at.astimezone(UTC)
        when = self.resume_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        text = f"the CRM's {budget} is spent until {when}"
        if detail:
            text = f"{text} ({detail})"
        super().__init__(
            f"{text}; the import stopped with its state saved and resumes without duplicates "
            "when run again after that time"
        )


class CrmRefused(BulkPipelineError):
    """The CRM definitely refused a call that should not fail (a read, a note); the message
    carries its reason. Not retried: the same call would be refused again."""
