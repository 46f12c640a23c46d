"""How Attio-like the sandbox's Attio dialect limits calls.

Attio documents (docs.attio.com, "Rate limiting") 100 read requests and 25 write requests per
second across the whole API, answered 429 with a ``Retry-After`` HTTP date (usually the next
second) when exceeded, and that it may lower the limits during incidents. The sandbox counts reads
(``GET`` and the ``.../query`` listings) and writes (every other call) in rolling one-second
windows. Attio's score-based limits on queries are not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bulk_pipeline.sandbox import settings
from bulk_pipeline.sandbox.ratelimit import RateLimit

READ_LIMIT = RateLimit(100, 1_000)
WRITE_LIMIT = RateLimit(25, 1_000)


@dataclass(frozen=True)
class AttioSettings:
    read_limit: RateLimit | None = READ_LIMIT
    """Read requests per rolling window; ``None`` for none."""
    write_limit: RateLimit | None = WRITE_LIMIT
    """Write requests per rolling window; ``None`` for none."""

    @classmethod
    def unlimited(cls) -> AttioSettings:
        return cls(read_limit=None, write_limit=None)

    def changed(self, changes: Mapping[str, Any]) -> AttioSettings:
        return settings.changed(self, changes, _PARSERS)

    def as_json(self) -> dict[str, Any]:
        def limit(value: RateLimit | None) -> dict[str, int] | None:
            return None if value is None else value.as_json()

        return {"read_limit": limit(self.read_limit), "write_limit": limit(self.write_limit)}


_PARSERS: dict[str, settings.Parser] = {
    "read_limit": settings.rate_limit,
    "write_limit": settings.rate_limit,
}
