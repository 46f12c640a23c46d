"""The one place that turns bulk_pipeline's error kinds into Dagster failure and retry behaviour,
and records why an import stopped in the staging store (the one source of its state).

- bad input, target configuration, a CRM that refuses a call: fail, never retried;
- the CRM down for the whole retry window: fail with the CRM's address; the window was the
  retrying, so the step is not retried on top (re-run it, or ``bulk-pipeline retry-failed``);
- the CRM account's budget spent: the import is *stopped* with the reset time; the
  ``budget_resume_sensor`` launches it again after that time;
- a push stopped on request: stopped, resumable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from bulk_pipeline.errors import BudgetExhausted, BulkPipelineError
from bulk_pipeline.outcomes import ImportState
from bulk_pipeline.push import PushStopped
from bulk_pipeline.redaction import redact
from bulk_pipeline.resume import RESUME_AT, mark_paused
from bulk_pipeline.runs import STOPPED_ON_REQUEST
from bulk_pipeline.staging import StagingStore


@contextmanager
def import_failures(store: StagingStore | None, import_id: str) -> Iterator[None]:
    """Run one import step: its errors become Dagster failures, and the import's state says
    why it stopped."""
    try:
        yield
    except BudgetExhausted as exc:
        if store is not None:
            store.set_state(
                import_id, ImportState.STOPPED, reason=str(exc), resume_at=exc.resume_at
            )
        mark_paused(import_id, exc)
        raise dg.Failure(
            description=redact(str(exc)),
            allow_retries=False,
            metadata={RESUME_AT: exc.resume_at.isoformat(), "budget": exc.budget},
        ) from exc
    except PushStopped as exc:
        if store is not None:
            store.set_state(import_id, ImportState.STOPPED, reason=str(exc))
        raise dg.Failure(
            description=str(exc), allow_retries=False, metadata={STOPPED_ON_REQUEST: True}
        ) from exc
    except BulkPipelineError as exc:
        message = redact(str(exc))
        if store is not None:
            store.set_state(import_id, ImportState.FAILED, reason=message)
        raise dg.Failure(description=message, allow_retries=False) from exc
