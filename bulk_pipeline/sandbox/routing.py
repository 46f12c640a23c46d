"""Operations found by method and path template (``/api/v2/persons/{id}``), as vendors' specs
write their paths; shared by the dialects that route that way."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

R = TypeVar("R")


def literal_first(routes: Iterable[R], template_of: Callable[[R], str]) -> list[R]:
    """Routes in the order to try them: literal segments win over parameters, so
    ``/persons/search`` is tried before ``/persons/{id}``."""
    return sorted(routes, key=lambda route: template_of(route).count("{"))


def path_params(template: str, path: str) -> dict[str, str] | None:
    """The values a path gives a template's parameters, or ``None`` when it does not fit."""
    expected = template.split("/")
    given = path.rstrip("/").split("/")
    if len(expected) != len(given):
        return None
    params: dict[str, str] = {}
    for segment, value in zip(expected, given, strict=True):
        if segment.startswith("{"):
            params[segment[1:-1]] = value
        elif segment != value:
            return None
    return params
