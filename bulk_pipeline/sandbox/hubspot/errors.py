"""HubSpot's error bodies, so that importers see in the sandbox what they will see in production."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bulk_pipeline.sandbox.dialect import ApiError

PORTAL_ID = 1000001
"""The sandbox's HubSpot account id, which some of HubSpot's messages name."""


def hubspot_error(
    status: int,
    category: str,
    message: str,
    *,
    context: Mapping[str, Sequence[str]] | None = None,
) -> ApiError:
    """The body HubSpot sends for a failed call (schema ``Error`` in the specs)."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if context:
        body["context"] = {key: list(values) for key, values in context.items()}
    return ApiError(status, body)


def validation_error(message: str, **context: Sequence[str]) -> ApiError:
    return hubspot_error(400, "VALIDATION_ERROR", message, context=context or None)


def invalid_properties(issues: Sequence[Mapping[str, Any]]) -> ApiError:
    """HubSpot packs per-property problems as a JSON list inside the message string."""
    listed = json.dumps(list(issues), separators=(",", ":"))
    return validation_error(f"Property values were not valid: {listed}")


def missing_required(singular: str, names: Sequence[str]) -> ApiError:
    """HubSpot's refusal of a create that leaves required properties unset (two spaces, sic)."""
    return validation_error(
        f"Error creating {singular.upper()}.  Some required properties were not set.",
        properties=names,
    )


def non_unique_id_property(verb: str, type_id: str, name: str) -> ApiError:
    """HubSpot finds records by ``idProperty`` only when the property holds unique values; it
    names the type by id and the portal, e.g. "... by non-unique 0-2 property domain ..."."""
    return validation_error(
        f"Unable to perform {verb} by non-unique {type_id} property {name} in portal ID {PORTAL_ID}"
    )


def object_not_found(label: str, record_id: str) -> ApiError:
    return hubspot_error(404, "OBJECT_NOT_FOUND", f"{label} {record_id} was not found.")


def standard_error(category: str, message: str, ids: Sequence[str]) -> dict[str, Any]:
    """One entry of the ``errors`` list of a 207 batch answer (schema ``StandardError``)."""
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": {"ids": list(ids)},
        "errors": [],
        "links": {},
    }


def invalid_associations(context: Mapping[str, Sequence[str]]) -> ApiError:
    """HubSpot's refusal of associations naming records or types it does not have; ``context``
    says which (``INVALID_OBJECT_IDS``, or ``INVALID_ASSOCIATION_TYPE_ID``)."""
    return hubspot_error(
        400, "VALIDATION_ERROR", "One or more associations are invalid", context=context
    )


def wrong_from_type(given: str, expected: str, type_id: int) -> ApiError:
    """A create carrying an association type that starts from another object type."""
    return validation_error(
        f"invalid from object type {given} for associations to be created. expected: "
        f"{expected}. For definition 0-{type_id}"
    )


def no_associations(from_name: str, to_name: str, from_id: str) -> dict[str, Any]:
    """The ``errors`` entry of a v4 batch read for a record without associations of the type
    (or no such record): HubSpot says the same for both."""
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {to_name} is associated with {from_name} {from_id}.",
        "context": {
            "fromObjectId": [from_id],
            "fromObjectType": [from_name],
            "toObjectType": [to_name],
        },
        "errors": [],
        "links": {},
    }


def unauthorized() -> ApiError:
    return hubspot_error(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
        "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    )


def rate_limited(policy_name: str, limit_label: str) -> ApiError:
    """HubSpot's 429 body, which has ``errorType`` and ``policyName`` instead of a category."""
    return ApiError(
        429,
        {
            "status": "error",
            "message": f"You have reached your {limit_label} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy_name,
        },
    )


_SERVER_ERRORS = {
    500: "An internal error occurred.",
    502: "Bad gateway: the upstream service did not answer in time.",
    503: "Service temporarily unavailable. Please retry.",
    504: "Gateway timeout: the request took too long.",
}
SERVER_ERROR_STATUSES = tuple(_SERVER_ERRORS)


def server_error(status: int) -> ApiError:
    return hubspot_error(status, "INTERNAL_ERROR", _SERVER_ERRORS[status])
