"""What a command says when a step fails of an exception nobody foresaw."""

from __future__ import annotations

import dagster as dg

from bulk_pipeline import runs


def test_an_unforeseen_failure_is_told_by_the_exception_the_step_raised() -> None:
    @dg.op
    def staged() -> None:
        raise RuntimeError("the staging file is damaged")

    @dg.job
    def import_job() -> None:
        staged()

    instance = dg.DagsterInstance.ephemeral()
    result = import_job.execute_in_process(instance=instance, raise_on_error=False)

    message = runs.failure_message(instance, result.run_id)
    assert message == "RuntimeError: the staging file is damaged"
    assert runs.failure_step(instance, result.run_id) == "staged"
