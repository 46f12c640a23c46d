"""Pipedrive's error answers.

Documented (developers.pipedrive.com, "Responses"): errors are ``{"success": false, "error": ...,
"error_info": ..., "data": null, "additional_data": null}``. The 401 body is the one Pipedrive's
gateway sends for a bad token (``errorCode`` 401, as in the v1 spec's ``unathorizedResponse``);
the daily-budget 429 is the body seen from the live API ("daily request budget exceeded"). The
burst 429's wording and every 400/404 message are the sandbox's guesses in Pipedrive's shape.
"""

from __future__ import annotations

from bulk_pipeline.sandbox.dialect import HTML_CONTENT, ApiError

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


def pipedrive_error(status: int, message: str) -> ApiError:
    return ApiError(
        status,
        {
            "success": False,
            "error": message,
            "error_info": ERROR_INFO,
            "data": None,
            "additional_data": None,
        },
    )


def bad_request(message: str) -> ApiError:
    return pipedrive_error(400, message)


def not_found(label: str) -> ApiError:
    return pipedrive_error(404, f"{label} not found")


def unauthorized() -> ApiError:
    return ApiError(
        401,
        {
            "success": False,
            "error": "unauthorized access",
            "errorCode": 401,
            "error_info": "Please check developers.pipedrive.com",
        },
    )


def budget_exhausted(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        {"success": False, "error": "daily request budget exceeded", "errorCode": 429},
        headers={"Retry-After": str(retry_after_s)},
    )


def rate_limited(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        {
            "success": False,
            "error": "Rate limit exceeded",
            "errorCode": 429,
            "error_info": ERROR_INFO,
        },
        headers={"Retry-After": str(retry_after_s)},
    )


BLOCK_PAGE = (
    "<!DOCTYPE html><html><head><title>Access denied | api.pipedrive.com used Cloudflare to "
    "restrict access</title></head><body><h1>Error 1020</h1><h2>Access denied</h2>"
    "<p>This error is produced by Cloudflare. The sandbox CRM blocked this API token for a while "
    "because it kept sending requests after being answered 429 Too Many Requests.</p>"
    "</body></html>"
)


def blocked() -> ApiError:
    """What Pipedrive documents for api_token clients that ignore 429: 403 and an HTML page."""
    return ApiError(403, BLOCK_PAGE, content_type=HTML_CONTENT)


_SERVER_ERRORS = {
    500: "An internal server error occurred",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}


def server_error(status: int) -> ApiError:
    return pipedrive_error(status, _SERVER_ERRORS[status])
