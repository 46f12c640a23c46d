"""Tokens never show in reprs, logs, exception messages or per-record failure messages."""

from __future__ import annotations

import logging
import random

import httpx
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import TargetConfigError, UserInputError
from bulk_pipeline.redaction import Secret, redact, redacting_logger, register_secret
from bulk_pipeline.targets import open_async_target, open_target
from bulk_pipeline.targets.base import FailureKind
from bulk_pipeline.targets.http import Budget, RetryPolicy
from bulk_pipeline.targets.hubspot import HUBSPOT
from bulk_pipeline.targets.runner import SyncTarget
from bulk_pipeline_tests.targets.fake_hubspot import BASE_URL

TOKEN = "pat-eu1-aaaabbbb-cccc-dddd-eeee-ffff00001111"


def echoing_transport(status: int) -> httpx.MockTransport:
    """A server that echoes the request's Authorization header in its error body."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json={
                "message": f"bad call with {request.headers['authorization']} and {TOKEN}",
                "category": "VALIDATION_ERROR",
            },
        )

    return httpx.MockTransport(handle)


SETTINGS = {HUBSPOT.token_env: TOKEN, HUBSPOT.base_url_env: BASE_URL}


def target_on(transport: httpx.MockTransport) -> SyncTarget:
    return open_target(
        "hubspot",
        SETTINGS,
        retry=RetryPolicy(max_attempts=2, base_delay=0.001),
        budget=Budget({"*": ()}),
        transport=transport,
        rng=random.Random(0),
    )


def test_redact_masks_registered_secrets_and_credential_patterns() -> None:
    register_secret("s3cr3t-value")
    text = (
        "token s3cr3t-value; Authorization: Bearer abc.def-123; "
        "GET /x?hapikey=zzz123&limit=1; authorization=Bearer qqq"
    )
    cleaned = redact(text)
    for leaked in ("s3cr3t-value", "abc.def-123", "zzz123", "qqq"):
        assert leaked not in cleaned
    assert "limit=1" in cleaned


def test_secret_and_targets_hide_the_token_in_their_repr() -> None:
    secret = Secret(TOKEN)
    assert TOKEN not in repr(secret)
    assert TOKEN not in str(secret)
    assert secret.reveal() == TOKEN
    target = target_on(echoing_transport(200))
    async_target = open_async_target("hubspot", SETTINGS)
    for shown in (
        repr(target),
        str(target),
        repr(async_target),
        repr(target.__dict__),
        repr(target.dialect.__dict__),
        repr(target.exchange),
    ):
        assert TOKEN not in shown
    target.close()


def test_failure_messages_and_logs_never_carry_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for status in (400, 500):
        result = target_on(echoing_transport(status)).update(
            Entity.CONTACTS, ["1"], [{"city": "Paris"}]
        )
        (failed,) = result.failed
        assert "bad call" in failed.message
        assert TOKEN not in failed.message
        assert TOKEN not in repr(failed)
    assert any("retry" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


def test_a_log_call_that_names_the_token_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(TOKEN)
    logger = redacting_logger("bulk_pipeline.targets.hubspot")
    with caplog.at_level(logging.INFO):
        logger.info("sending with %s", TOKEN)
    assert "sending with ***" in caplog.text
    assert TOKEN not in caplog.text


def test_unauthorized_raises_without_the_token() -> None:
    with pytest.raises(TargetConfigError) as caught:
        target_on(echoing_transport(401)).upsert(Entity.CONTACTS, [{"email": "a@b.co"}])
    assert "HTTP 401" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


def test_transport_errors_mentioning_the_token_are_scrubbed() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect using {TOKEN}", request=request)

    result = target_on(httpx.MockTransport(handle)).upsert(Entity.CONTACTS, [{"email": "a@b.co"}])
    (failed,) = result.failed
    assert failed.retryable
    assert failed.kind is FailureKind.TRANSIENT
    assert TOKEN not in failed.message
    assert "cannot connect" in failed.message


def test_missing_hubspot_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HUBSPOT.token_env, raising=False)
    with pytest.raises(TargetConfigError, match=HUBSPOT.token_env):
        open_target("hubspot")


def test_hubspot_target_from_environment_keeps_the_token_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(HUBSPOT.token_env, TOKEN)
    monkeypatch.setenv(HUBSPOT.base_url_env, "http://127.0.0.1:9")
    target = open_target("hubspot")
    try:
        assert target.account.startswith("hubspot:http://127.0.0.1:9#")
        assert TOKEN not in repr(target) + target.account
    finally:
        target.close()
    given = open_target(
        "hubspot",
        {HUBSPOT.token_env: "pat-given-000000", HUBSPOT.base_url_env: "http://127.0.0.1:8"},
    )
    try:
        assert given.account.startswith("hubspot:http://127.0.0.1:8#")
        assert given.account != target.account
    finally:
        given.close()
    with pytest.raises(UserInputError, match="unknown CRM target"):
        open_target("salesforce")


def test_pipedrive_token_stays_out_of_urls_messages_and_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0"
    assert redact("x-api-token: zzzqqq123456") == "x-api-token: ***"
    assert "zzzqqq123456" not in redact('{"x-api-token": "zzzqqq123456"}')
    monkeypatch.delenv("PIPEDRIVE_API_TOKEN", raising=False)
    with pytest.raises(TargetConfigError, match="PIPEDRIVE_API_TOKEN"):
        open_target("pipedrive")
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"success": False, "error": f"bad token {token}"})

    target = open_target(
        "pipedrive",
        {"PIPEDRIVE_API_TOKEN": token, "PIPEDRIVE_BASE_URL": "https://api.pipedrive.com"},
        transport=httpx.MockTransport(refuse),
        budget=Budget({"*": ()}),
    )
    try:
        with pytest.raises(TargetConfigError) as refused:
            target.check()
    finally:
        target.close()
    assert token not in str(refused.value) + repr(target) + target.account
    assert [r.headers["x-api-token"] for r in seen] == [token]
    assert token not in str(seen[0].url)
