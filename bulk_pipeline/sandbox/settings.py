"""How the admin view's JSON values (and the command line's) become typed sandbox settings.

Each setting has a parser that takes its name and the raw value and returns the value to store,
raising ``ValueError`` with a message for people; ``changed`` applies a mapping of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from bulk_pipeline.sandbox.ratelimit import RateLimit

Parser = Callable[[str, Any], Any]
T = TypeVar("T")


def changed(settings: T, changes: Mapping[str, Any], parsers: Mapping[str, Parser]) -> T:
    """A copy of a settings dataclass with the changes applied; refuses unknown or bad values."""
    unknown = set(changes) - set(parsers)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return replace(  # type: ignore[type-var]
        settings, **{name: parsers[name](name, value) for name, value in changes.items()}
    )


def rate_limit(name: str, value: Any) -> RateLimit | None:
    """``{"max": n, "interval_ms": n}``, ``"MAX/INTERVAL_MS"``, or 0 / null for no limit."""
    if value in (None, 0):
        return None
    if isinstance(value, Mapping):
        return RateLimit(int(value["max"]), int(value["interval_ms"])).checked()
    return RateLimit.parse(str(value))


def fraction(name: str, value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return number


def non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if number < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return number


def number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def optional_int(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer or null, got {value!r}")
    return value


def positive_int_or_none(name: str, value: Any) -> int | None:
    """An integer limit; 0 or null turns it off."""
    limit = optional_int(name, value)
    if limit is not None and limit < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return limit or None
