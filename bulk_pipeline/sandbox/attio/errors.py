"""Attio's error answers: ``{"status_code", "type", "code", "message"}``, as the spec's error
responses are shaped.

Documented: the shape, the 429 body and its ``Retry-After`` date (the rate-limiting guide), and one
``code`` per error status and operation in the spec (``not_found``, ``value_not_found``,
``missing_value``, ``filter_error``, ``multiple_match_results``, ``slug_conflict``,
``validation_type``, ``immutable_value``). Seen from the live API but not in the spec:
``uniqueness_conflict`` (400) for a value a unique attribute holds already. Guesses: the 401 body
(``auth_error``/``unauthorized``) and every message's wording.
"""

from __future__ import annotations

import email.utils
import math
import time

from bulk_pipeline.sandbox.dialect import ApiError


def attio_error(
    status: int, code: str, message: str, *, kind: str = "invalid_request_error"
) -> ApiError:
    return ApiError(status, {"status_code": status, "type": kind, "code": code, "message": message})


def not_found(message: str) -> ApiError:
    return attio_error(404, "not_found", message)


def bad_request(code: str, message: str) -> ApiError:
    return attio_error(400, code, message)


def unauthorized() -> ApiError:
    return attio_error(
        401,
        "unauthorized",
        "Authentication failed: send a valid access token as 'Authorization: Bearer <token>'.",
        kind="auth_error",
    )


def rate_limited(wait_s: float, now: float | None = None) -> ApiError:
    """429 with ``Retry-After`` as an HTTP date: the second at which the limit has room again."""
    when = math.ceil((time.time() if now is None else now) + max(wait_s, 0.0))
    error = attio_error(
        429,
        "rate_limit_exceeded",
        "Rate limit exceeded, please try again later",
        kind="rate_limit_error",
    )
    error.headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
    return error


_SERVER_ERRORS = {
    500: "An unexpected error occurred.",
    502: "Bad gateway.",
    503: "The service is temporarily unavailable.",
    504: "Gateway timeout.",
}


def server_error(status: int) -> ApiError:
    return attio_error(status, "internal_server_error", _SERVER_ERRORS[status], kind="api_error")
