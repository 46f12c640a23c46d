"""Failure alerts: a short message to a Slack-compatible webhook when a run fails.

Nobody watches an unattended pipeline, so a failed import or nightly sync must reach a person:
which import or sync day, the error, and a link to the run in the Dagster UI. The webhook URL
(``BULK_PIPELINE_ALERT_WEBHOOK``) is itself a credential and never appears in a message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from bulk_pipeline.imports import UnknownImportError, load_import
from bulk_pipeline.redaction import redact, register_secret
from bulk_pipeline.targets.http.drivers import is_loopback

WEBHOOK_ENV = "BULK_PIPELINE_ALERT_WEBHOOK"
WEBSERVER_URL_ENV = "DAGSTER_WEBSERVER_URL"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"
MAX_ERROR_CHARS = 600
POST_TIMEOUT_SECONDS = 10.0
POST_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 1.0


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept the alert (the message never contains the webhook URL)."""


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    job_name: str
    kind: str | None
    """``import`` or ``sync`` (see ``runs.run_kind``), None for other runs."""
    partition_key: str | None
    error: str


def webhook_url(environ: Mapping[str, str] = os.environ) -> str | None:
    url = (environ.get(WEBHOOK_ENV) or "").strip()
    if not url:
        return None
    register_secret(url)
    return url


def run_link(run_id: str, environ: Mapping[str, str] = os.environ) -> str:
    base = (environ.get(WEBSERVER_URL_ENV) or DEFAULT_WEBSERVER_URL).rstrip("/")
    return f"{base}/runs/{run_id}"


def subject(run: FailedRun) -> str:
    """What failed, as a person would name it: the import and its file, or the sync day."""
    key = run.partition_key
    if run.kind == "sync" and key:
        return f"nightly sync of {key}"
    if run.kind == "import" and key:
        try:
            return f"import {key} ({load_import(key).file_name})"
        except UnknownImportError:
            return f"import {key}"
    return f"run of {run.job_name}" + (f" for partition {key}" if key else "")


def alert_message(run: FailedRun, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The Slack-compatible payload: one ``text`` with what failed, why and where to look."""
    error = redact(run.error.strip())
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 1] + "…"
    link = run_link(run.run_id, environ)
    return {"text": (f"bulk_pipeline: {subject(run)} failed\nError: {error}\nRun: {link}")}


def post_alert(url: str, payload: dict[str, str], *, attempts: int = POST_ATTEMPTS) -> None:
    """Send one alert, trying again briefly when the webhook is unreachable or busy (5xx, 429).

    Raises ``AlertDeliveryError`` if it is not taken; the sensor's tick then shows the error.
    """
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            answer = httpx.post(
                url, json=payload, timeout=POST_TIMEOUT_SECONDS, trust_env=not is_loopback(url)
            )
        except httpx.HTTPError as exc:
            problem = f"could not be reached ({type(exc).__name__})"
        else:
            if answer.status_code < 300:
                return
            problem = f"answered HTTP {answer.status_code}"
            if answer.status_code < 500 and answer.status_code != 429:
                break
        if attempt < attempts:
            time.sleep(RETRY_DELAY_SECONDS * attempt)
    raise AlertDeliveryError(f"the alert webhook {problem}")
