"""Attio's query filters: the shorthand (``{"email_addresses": "ada@example.com"}``) and the
verbose form (``{"$or": [{"name": {"full_name": {"$eq": "Ada"}}}]}``) over attribute values.

Supported: ``$and``, ``$or``, ``$not``; ``$eq``, ``$in``, ``$contains``, ``$starts_with``,
``$ends_with``, ``$not_empty``, ``$lt``, ``$lte``, ``$gt``, ``$gte`` on an attribute's properties
(its type's default property when none is named); ``record_id`` (and, on list entries,
``entry_id`` and ``parent_record_id``). Text comparisons by ``$eq`` are exact; emails and domains
are compared normalized (lower-case), as Attio stores them; ``$contains`` and its kin ignore case.
Anything else is a ``filter_error``. Path filters (through references) are not modelled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulk_pipeline.sandbox.attio.errors import bad_request
from bulk_pipeline.sandbox.attio.values import DEFAULT_PROPERTY, Attribute, property_of, value_key
from bulk_pipeline.sandbox.dialect import ApiError

OPERATORS = frozenset(
    {
        "$eq",
        "$in",
        "$contains",
        "$starts_with",
        "$ends_with",
        "$not_empty",
        "$lt",
        "$lte",
        "$gt",
        "$gte",
    }
)
NORMALIZED = frozenset({"email_address", "domain", "root_domain", "email_domain"})


def filter_error(message: str) -> ApiError:
    return bad_request("filter_error", f"Error in filter: {message}")


@dataclass(frozen=True)
class Subject:
    """A record or list entry as a filter sees it."""

    attributes: Mapping[str, Attribute]
    """By slug and by id."""
    values: Mapping[str, Sequence[Mapping[str, Any]]]
    """Stored values by attribute id."""
    plain: Mapping[str, str] = field(default_factory=dict)
    """Keys that are not attributes: ``record_id``, ``entry_id``, ``parent_record_id``."""


def check(filter_: Any, attributes: Mapping[str, Attribute], plain: Sequence[str]) -> None:
    """Refuse a filter that names unknown attributes or operators, before any record is read."""
    if not isinstance(filter_, Mapping):
        raise filter_error("a filter is an object")
    for key, condition in filter_.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise filter_error(f"{key} takes a non-empty list of filters")
            for part in condition:
                check(part, attributes, plain)
        elif key == "$not":
            check(condition, attributes, plain)
        elif key.startswith("$"):
            raise filter_error(f'unknown logical operator "{key}"')
        elif key not in plain and key not in attributes:
            raise filter_error(f'unknown attribute "{key}"')


def matches(filter_: Mapping[str, Any], subject: Subject) -> bool:
    for key, condition in filter_.items():
        if key == "$and":
            passed = all(matches(part, subject) for part in condition)
        elif key == "$or":
            passed = any(matches(part, subject) for part in condition)
        elif key == "$not":
            passed = not matches(condition, subject)
        elif key in subject.plain:
            passed = _compare_all([subject.plain[key]], condition)
        else:
            passed = _attribute_matches(subject.attributes[key], subject, condition)
        if not passed:
            return False
    return True


def _attribute_matches(attribute: Attribute, subject: Subject, condition: Any) -> bool:
    values = subject.values.get(attribute.id, [])
    default = DEFAULT_PROPERTY.get(attribute.type)
    if not isinstance(condition, Mapping) or all(k.startswith("$") for k in condition):
        if default is None:
            raise filter_error(f'name a property to filter "{attribute.slug}" by')
        condition = {default: condition}
    if not values:
        return all(_empty_ok(test) for test in condition.values())
    return any(
        all(
            _compare_all([property_of(attribute, value, name)], test, normalize=name in NORMALIZED)
            for name, test in condition.items()
        )
        for value in values
    )


def _empty_ok(test: Any) -> bool:
    """An attribute without values passes only ``{"$not_empty": false}``."""
    return isinstance(test, Mapping) and test.get("$not_empty") is False


def _compare_all(actual: Sequence[Any], test: Any, *, normalize: bool = False) -> bool:
    if not isinstance(test, Mapping):
        test = {"$eq": test}
    for operator, expected in test.items():
        if operator not in OPERATORS:
            raise filter_error(f'unknown operator "{operator}"')
        if not any(_compare(value, operator, expected, normalize) for value in actual):
            return False
    return True


def _folded(value: Any, normalize: bool) -> Any:
    return value.lower() if normalize and isinstance(value, str) else value


def _compare(actual: Any, operator: str, expected: Any, normalize: bool) -> bool:
    if operator == "$not_empty":
        return (actual not in (None, "")) is bool(expected)
    if actual is None:
        return False
    actual = _folded(actual, normalize)
    if operator == "$eq":
        return bool(actual == _folded(expected, normalize))
    if operator == "$in":
        if not isinstance(expected, list):
            raise filter_error("$in takes a list")
        return actual in [_folded(item, normalize) for item in expected]
    if operator in ("$contains", "$starts_with", "$ends_with"):
        if not isinstance(expected, str):
            raise filter_error(f"{operator} takes a string")
        text, part = str(actual).casefold(), expected.casefold()
        return {
            "$contains": part in text,
            "$starts_with": text.startswith(part),
            "$ends_with": text.endswith(part),
        }[operator]
    try:
        return {
            "$lt": actual < expected,
            "$lte": actual <= expected,
            "$gt": actual > expected,
            "$gte": actual >= expected,
        }[operator]
    except TypeError:
        raise filter_error(f"{operator} cannot compare {actual!r} with {expected!r}") from None


Holders = Callable[[Attribute, list[str]], set[str]]
"""The records holding any of these unique-value keys."""


def candidates(
    filter_: Mapping[str, Any], attributes: Mapping[str, Attribute], holders: Holders
) -> set[str] | None:
    """Record ids a filter can only match among (from ``record_id`` and unique values), or
    ``None`` when every record must be looked at. Only narrows: ``matches`` still decides."""
    found: set[str] | None = None
    for key, condition in filter_.items():
        narrowed: set[str] | None = None
        if key == "$or":
            parts = [candidates(part, attributes, holders) for part in condition]
            narrowed = None if any(p is None for p in parts) else set().union(*parts)  # type: ignore[arg-type]
        elif key == "$and":
            parts = [candidates(part, attributes, holders) for part in condition]
            known = [p for p in parts if p is not None]
            narrowed = set.intersection(*known) if known else None
        elif key == "record_id":
            narrowed = _equal_to(condition)
        elif key in attributes and attributes[key].unique:
            attribute = attributes[key]
            default = DEFAULT_PROPERTY.get(attribute.type)
            test = (
                condition.get(default)
                if isinstance(condition, Mapping) and default in condition
                else condition
            )
            wanted = _equal_to(test)
            if wanted is not None:
                keys = [value_key(attribute, _as_value(attribute, w)) for w in wanted]
                narrowed = holders(attribute, keys)
        if narrowed is not None:
            found = narrowed if found is None else found & narrowed
    return found


def _equal_to(test: Any) -> set[str] | None:
    if isinstance(test, str):
        return {test}
    if isinstance(test, Mapping) and len(test) == 1:
        if isinstance(test.get("$eq"), str):
            return {test["$eq"]}
        if isinstance(test.get("$in"), list) and all(isinstance(v, str) for v in test["$in"]):
            return set(test["$in"])
    return None


def _as_value(attribute: Attribute, given: str) -> dict[str, Any]:
    """A filter's literal as a stored value of a unique attribute, to find its holder."""
    text = given.strip().lower() if attribute.type in ("email-address", "domain") else given
    prop = DEFAULT_PROPERTY[attribute.type]
    return {prop: text, "value": text}
