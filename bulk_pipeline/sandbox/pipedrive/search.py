"""Search documents (what Pipedrive's search index holds about an item) and matching a term.

A document keeps the lower-cased texts of each searchable field and the result item the search
answers with, both as they were when the item was indexed: after a change, search shows the old
values until the index catches up (``PipedriveSettings.search_lag_s``).

Matching is case-insensitive: ``exact_match`` wants a whole field value equal to the term,
otherwise the term may appear anywhere in a value. Pipedrive's relevance scoring is not public;
the sandbox scores an exact value 1.0 and a partial one by how much of the value the term covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bulk_pipeline.sandbox.pipedrive.store import SearchDoc

MIN_TERM = 2
"""Characters a term needs, or 1 with ``exact_match`` (Pipedrive's rule)."""


def document(terms: dict[str, Iterable[str | None]], item: dict[str, Any]) -> SearchDoc:
    return {
        "terms": {
            field: [value.casefold() for value in values if value]
            for field, values in terms.items()
        },
        "item": item,
    }


def score(doc: SearchDoc, term: str, fields: Sequence[str], *, exact: bool) -> float | None:
    """How well the document matches in any of the fields, or ``None`` when it does not."""
    needle = term.casefold()
    best: float | None = None
    for field in fields:
        for value in doc["terms"].get(field, ()):
            if value == needle:
                return 1.0
            if not exact and needle in value:
                partial = round(len(needle) / len(value), 4)
                best = partial if best is None else max(best, partial)
    return best
