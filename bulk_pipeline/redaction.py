"""The one place that keeps access tokens out of logs, error messages and reprs.

Targets register their token here when they are built; every message that may carry text from
outside (server error bodies, exception strings) and every log record of bulk_pipeline passes
through :func:`redact`. Patterns catch credentials we were never told about (an ``Authorization``
header echoed back by a proxy, an ``x-api-token`` header, a ``hapikey=`` or ``api_token=`` query
parameter).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
_MIN_SECRET_LENGTH = 6
"""Shorter values would mask ordinary words; no real token is that short."""

_PATTERNS = (
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer\s+)?[^\s,;\"']+"),
    re.compile(r"(?i)((?:x-api-token|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s,;\"']+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:hapikey|access_token|api_token|token)=)[^&\s\"']+"),
)

_lock = threading.Lock()
_secrets: set[str] = set()


class Secret:
    """A string that never shows itself in ``repr``/``str``; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def register_secret(value: str) -> None:
    """Remember a credential so that :func:`redact` masks it wherever it turns up."""
    if len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential-looking pattern masked."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's final message (arguments included) before it is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def redacting_logger(name: str) -> logging.Logger:
    """A module logger whose records are scrubbed (filters on a logger apply to its own records)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def safe_str(value: Any) -> str:
    """``str(value)`` with secrets masked; for exceptions and payloads we did not build."""
    return redact(str(value))
