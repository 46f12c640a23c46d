"""Dedupe keys and reference values computed on a chunk of rows, the way ``entities`` defines
them, before the rows reach the staging store.

``entities.normalize_key`` is the one rule: plain ASCII text takes vectorized string operations
(where case folding is lower-casing and NFC changes nothing), any other value goes through the
Python rule itself, once per distinct value. Every store receives the same columns, so no
database has to imitate the rule in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from bulk_pipeline.entities import (
    ENTITY_SPECS,
    KEY_PARTS_SEPARATOR,
    Entity,
    EntitySpec,
    Identity,
    normalize_key,
)

KEY = "_key"
KEY_TEXT = "_key_text"
"""The key as a person reads it (``entities.describe_key``), for duplicate reasons."""
LINE = "_line"
SHEET = "_sheet"
PART = "_part"
"""The position of the rows' sheet among the sheets holding the entity: with the line, the
order that decides which duplicate comes first."""
PLAIN_TEXT = r"^[\t-\r -~]*$"
"""Printable ASCII and ASCII white space: what the vectorized rule handles exactly."""

REFERENCED_FIELDS: dict[Entity, tuple[str, ...]] = {
    entity: tuple(
        dict.fromkeys(
            theirs
            for spec in ENTITY_SPECS.values()
            for reference in spec.references
            if reference.entity is entity
            for _, theirs in reference.by
        )
    )
    for entity in Entity
}
"""Per entity, the fields other records name it by (a company's domain and name)."""


def key_reference(entity: Entity) -> str | None:
    """The field other records name the entity by that is its key itself (a company's domain,
    a contact's email): ``domain:acme.com`` names the record whose key is ``acme.com``, so
    such references need no table of their own."""
    first = ENTITY_SPECS[entity].identities[0]
    return first.field if not first.slots and first.field in REFERENCED_FIELDS[entity] else None


def stored_references(entity: Entity) -> tuple[str, ...]:
    """The fields other records name the entity by that ``record_refs`` keeps (a company's
    name)."""
    return tuple(f for f in REFERENCED_FIELDS[entity] if f != key_reference(entity))


def reference_column(field_name: str) -> str:
    return f"_ref_{field_name}"


def _normalized(frame: pl.DataFrame, column: str) -> pl.Series:
    """``normalize_key`` of every value of a column (null for a blank one)."""
    text = frame[column].cast(pl.String)
    plain = text.str.contains(PLAIN_TEXT).fill_null(True)
    keys = text.str.replace_all(r"\s+", " ").str.strip_chars().str.to_lowercase()
    others = text.filter(~plain).unique().drop_nulls()
    if others.len():
        mapping = {value: normalize_key(value) for value in others.to_list()}
        general = text.replace_strict(mapping, default=None, return_dtype=pl.String)
        keys = pl.select(pl.when(plain).then(keys).otherwise(general)).to_series()
    return pl.select(pl.when(keys != "").then(keys)).to_series().alias(column)


def custom_columns(columns: Sequence[str], entity: Entity) -> list[str]:
    """The CRM's custom fields among a frame's columns (``mapping.map_columns`` keeps them
    under their names, beside ours), in a stable order."""
    ours = set(ENTITY_SPECS[entity].fields)
    return sorted(c for c in columns if c not in ours and not c.startswith("_"))


def keyed(frame: pl.DataFrame, entity: Entity, *, sheet: str, part: int) -> pl.DataFrame:
    """A chunk of valid rows as a staging store takes them: ``_sheet``, ``_part``, ``_line``,
    ``_key``, ``_key_text``, the entity's fields the frame has and the CRM's custom fields it
    feeds, and the values ``record_refs`` keeps (``stored_references``) as ``_ref_<field>``."""
    spec = ENTITY_SPECS[entity]
    named = {f for identity in spec.identities for f in _identity_fields(identity)}
    named |= set(REFERENCED_FIELDS[entity])
    present = sorted(name for name in named if name in frame.columns)
    normalized = pl.DataFrame([frame[LINE], *(_normalized(frame, name) for name in present)])
    key, text = _identity(spec, present)
    return pl.concat(
        [
            frame.select(
                pl.lit(sheet, pl.String).alias(SHEET),
                pl.lit(part, pl.Int32).alias(PART),
                pl.col(LINE).cast(pl.Int64),
            ),
            normalized.select(key.alias(KEY), text.alias(KEY_TEXT)),
            frame.select(
                pl.col(name).cast(pl.String)
                for name in [*spec.fields, *custom_columns(frame.columns, entity)]
                if name in frame.columns
            ),
            normalized.select(
                (pl.lit(f"{name}:") + pl.col(name)).alias(reference_column(name))
                if name in present
                else pl.lit(None, pl.String).alias(reference_column(name))
                for name in stored_references(entity)
            ),
        ],
        how="horizontal",
    )


def _identity_fields(identity: Identity) -> list[str]:
    return [identity.field, *(name for slot in identity.slots for name in slot)]


def _identity(spec: EntitySpec, columns: Sequence[str]) -> tuple[pl.Expr, pl.Expr]:
    """``EntitySpec.identify``'s key over normalized columns, and the key as it reads."""

    def value(name: str) -> pl.Expr:
        return pl.col(name) if name in columns else pl.lit(None, pl.String)

    keys: list[pl.Expr] = []
    texts: list[pl.Expr] = []
    for position, identity in enumerate(spec.identities):
        slots = [
            pl.coalesce(*(value(name) for name in slot), pl.lit("")) for slot in identity.slots
        ]
        key = pl.concat_str([value(identity.field), *slots], separator=KEY_PARTS_SEPARATOR)
        if slots:
            text = (
                pl.concat_list([value(identity.field), *slots])
                .list.eval(pl.element().filter(pl.element() != ""))
                .list.join(" / ")
            )
        else:
            text = value(identity.field)
        if position:
            key = pl.lit(f"{identity.field}:") + key
            text = pl.lit(f"{identity.field} ") + text
        keys.append(key)
        texts.append(pl.when(key.is_not_null()).then(text))
    return pl.coalesce(keys), pl.coalesce(texts)
