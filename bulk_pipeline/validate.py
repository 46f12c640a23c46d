"""Split a normalized frame into rows a CRM can take and rows quarantined with a reason.

Every input line lands in exactly one of the two: the valid frame goes on to staging, the rejected
one to rejected.csv, where users fix the rows and import them again. The rules live in the pandera
models (``schemas.py``); this module runs them once over the whole frame (lazy, vectorized) and
turns pandera's failure cases into one readable reason per rejected line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.errors import UserInputError
from bulk_pipeline.schemas import SCHEMAS

LINE_COLUMN = "_line"
REJECTED_SCHEMA = pl.Schema(
    {"_line": pl.Int64, "column": pl.String, "value": pl.String, "reason": pl.String}
)
MAX_VALUE_IN_REASON = 80
"""Longer values are cut in the reason text (the full value stays in ``value``)."""

_NOT_NULLABLE = "not_nullable"


@dataclass
class ValidationResult:
    valid: pl.DataFrame
    """The input's columns, only the rows that passed, in input order."""
    rejected: pl.DataFrame
    """One row per rejected line (``REJECTED_SCHEMA``), in input order: the first failing column,
    its value, and every reason for the line joined with "; "."""


class MissingColumnsError(UserInputError):
    """The file lacks a column the entity requires, so none of its rows can be imported."""

    def __init__(
        self, entity: Entity, missing: Sequence[str], found: Sequence[str], source: str = ""
    ) -> None:
        self.entity = entity
        self.missing = tuple(missing)
        self.found = tuple(found)
        self.source = source
        where = f"{source}: " if source else ""
        names = ", ".join(f"'{name}'" for name in self.missing)
        noun = "column" if len(self.missing) == 1 else "columns"
        has = ", ".join(f"'{name}'" for name in self.found) or "none"
        super().__init__(
            f"{where}importing {entity} needs the {noun} {names}, which the file does not have. "
            f"Columns the file has (after header mapping): {has}. If it holds this data under "
            f"another header, map that header to {names} in a mapping file and import again."
        )


def validate_rows(frame: pl.DataFrame, entity: Entity, *, source: str = "") -> ValidationResult:
    """Check every row against the entity's pandera model and quarantine the failing ones.

    Raises:
        MissingColumnsError: a required column is absent (``source`` names the file).
        ValueError: the frame has no ``_line`` column to trace rows back to the file.
    """
    spec = ENTITY_SPECS[entity]
    missing = [name for name in spec.required if name not in frame.columns]
    if missing:
        found = [name for name in frame.columns if name != LINE_COLUMN]
        raise MissingColumnsError(entity, missing, found, source)
    if LINE_COLUMN not in frame.columns:
        raise ValueError(f"the frame to validate needs a {LINE_COLUMN!r} column")

    fields = [name for name in frame.columns if name in spec.fields]
    checked = frame.select(pl.col(name).cast(pl.String) for name in fields)
    try:
        # Pinned so that an environment variable cannot turn the data checks off.
        with config_context(
            validation_enabled=True,
            validation_depth=ValidationDepth.SCHEMA_AND_DATA,
            use_narwhals_backend=False,
        ):
            SCHEMAS[entity].validate(checked, lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases
        if failures["index"].null_count():
            exc.add_note(
                "bulk_pipeline: a schema-level failure cannot be traced to a row; "
                "the models and the normalized frame disagree on a column's type."
            )
            raise
    else:
        return ValidationResult(valid=frame, rejected=pl.DataFrame(schema=REJECTED_SCHEMA))

    rejected = _reasons_per_row(failures, fields)
    rows = rejected["row"]
    return ValidationResult(
        valid=frame.filter(pl.int_range(pl.len()).is_in(rows.implode()).not_()),
        rejected=rejected.select(
            frame[LINE_COLUMN].gather(rows).cast(pl.Int64).alias(LINE_COLUMN),
            "column",
            "value",
            "reason",
        ),
    )


def _reasons_per_row(failures: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """One row per failing row position: first failure by column order, all reasons joined."""
    value = pl.col("failure_case")
    shown = (
        pl.when(value.str.len_chars() > MAX_VALUE_IN_REASON)
        .then(value.str.slice(0, MAX_VALUE_IN_REASON - 1) + "…")
        .otherwise(value)
    )
    reason = (
        pl.when(pl.col("check") == _NOT_NULLABLE)
        .then(pl.format("{} is missing", pl.col("column")))
        .otherwise(pl.format("{} '{}' {}", pl.col("column"), shown, pl.col("check")))
    )
    position = pl.col("column").replace_strict(
        {name: i for i, name in enumerate(fields)}, default=len(fields), return_dtype=pl.Int64
    )
    return (
        failures.lazy()
        .select(
            row=pl.col("index").cast(pl.Int64),
            position=position,
            check_number=pl.col("check_number"),
            column=pl.col("column"),
            value=value,
            reason=reason,
        )
        .sort(["row", "position", "check_number"], nulls_last=False)
        .group_by("row", maintain_order=True)
        .agg(
            pl.col("column").first(),
            pl.col("value").first(),
            pl.col("reason").str.join("; "),
        )
        .collect()
    )
