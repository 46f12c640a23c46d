"""The dialects one sandbox serves, and how a request path picks one.

To add a vendor: write ``sandbox/<vendor>/`` with a ``Dialect``
subclass (see ``dialect.py`` for what the server asks of it, and ``pipedrive/`` for a complete
one), give ``SandboxConfig`` a field for its settings, and add the class to ``DIALECTS``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bulk_pipeline.sandbox.attio import AttioDialect
from bulk_pipeline.sandbox.dialect import Dialect
from bulk_pipeline.sandbox.hubspot import HubSpotDialect
from bulk_pipeline.sandbox.pipedrive import PipedriveDialect

DIALECTS: tuple[type[Dialect], ...] = (HubSpotDialect, PipedriveDialect, AttioDialect)


class DialectRouter:
    """Picks the dialect whose path prefix is the longest match."""

    def __init__(self, dialects: Sequence[Dialect]) -> None:
        self.dialects = {dialect.name: dialect for dialect in dialects}
        self._by_prefix = sorted(
            ((prefix, dialect) for dialect in dialects for prefix in dialect.prefixes),
            key=lambda item: -len(item[0]),
        )
        claimed = [prefix for prefix, _ in self._by_prefix]
        if len(set(claimed)) != len(claimed):
            raise ValueError(f"two dialects claim the same path prefix: {sorted(claimed)}")

    def for_path(self, path: str) -> Dialect | None:
        for prefix, dialect in self._by_prefix:
            if path.startswith(prefix):
                return dialect
        return None
