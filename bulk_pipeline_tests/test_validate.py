"""validate_rows: every line ends up valid or rejected, with a reason a person can act on."""

from __future__ import annotations

import random

import pandera.polars as pa
import polars as pl
import pytest
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors
from pandera.typing.polars import Series
from polars.testing import assert_frame_equal

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.schemas import SCHEMAS
from bulk_pipeline.validate import (
    MAX_VALUE_IN_REASON,
    REJECTED_SCHEMA,
    MissingColumnsError,
    validate_rows,
)


def _frame(columns: dict[str, list[str | None]], lines: list[int] | None = None) -> pl.DataFrame:
    """A normalized frame: String fields plus ``_line`` (source lines from 2 unless given)."""
    height = len(next(iter(columns.values())))
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    return frame.with_columns(
        pl.Series("_line", lines or list(range(2, height + 2)), dtype=pl.Int64)
    )


def _reasons(frame: pl.DataFrame, entity: Entity) -> list[tuple[int, str, str | None, str]]:
    return list(validate_rows(frame, entity).rejected.iter_rows())


def test_a_clean_frame_passes_unchanged() -> None:
    frame = _frame(
        {"email": ["bob@example.com", "ANN@EXAMPLE.ORG"], "city": [None, "Lyon"]}
    ).with_columns(pl.lit(7).alias("extra"))
    result = validate_rows(frame, Entity.CONTACTS)
    assert_frame_equal(result.valid, frame)
    assert result.rejected.schema == REJECTED_SCHEMA
    assert result.rejected.is_empty()


def test_contact_rejections_name_the_column_the_value_and_why() -> None:
    frame = _frame(
        {
            "email": ["bob@example.com", "bob@@x", None, "ann@example.com"],
            "date_of_birth": ["1990-05-01", None, None, "1990-02-30"],
            "phone": ["call me", None, None, None],
        },
        lines=[2, 5, 6, 9],
    )
    result = validate_rows(frame, Entity.CONTACTS)
    assert result.valid["_line"].to_list() == [2]
    assert result.rejected.rows() == [
        (5, "email", "bob@@x", "email 'bob@@x' is not a valid email address"),
        (6, "email", None, "email is missing"),
        (
            9,
            "date_of_birth",
            "1990-02-30",
            "date_of_birth '1990-02-30' is not a valid date (expected YYYY-MM-DD)",
        ),
    ]


def test_company_rejections() -> None:
    frame = _frame(
        {
            "name": ["Acme", None, "Initech", "Globex"],
            "domain": ["acme.com", "hooli.com", "https://initech.com", "globex.com"],
            "number_of_employees": ["12", None, None, "about 40"],
        }
    )
    assert _reasons(frame, Entity.COMPANIES) == [
        (3, "name", None, "name is missing"),
        (
            4,
            "domain",
            "https://initech.com",
            "domain 'https://initech.com' is not a valid domain (expected a host name such as "
            "acme.com)",
        ),
        (5, "number_of_employees", "about 40", "number_of_employees 'about 40' is not a number"),
    ]


def test_deal_rejections_give_one_reason_per_broken_amount() -> None:
    frame = _frame(
        {
            "name": ["Renewal", "Upsell", "Pilot", None],
            "amount": ["1200.00", "-5", "-1e3", "10"],
        }
    )
    assert _reasons(frame, Entity.DEALS) == [
        (3, "amount", "-5", "amount '-5' is negative"),
        (4, "amount", "-1e3", "amount '-1e3' is not a number"),
        (5, "name", None, "name is missing"),
    ]


def test_a_line_with_several_failures_is_one_rejected_row_with_every_reason() -> None:
    frame = _frame(
        {
            "close_date": ["2024-13-01"],
            "name": [None],
            "amount": ["ten"],
        }
    )
    assert _reasons(frame, Entity.DEALS) == [
        (
            2,
            "close_date",
            "2024-13-01",
            "close_date '2024-13-01' is not a valid date (expected YYYY-MM-DD); "
            "name is missing; amount 'ten' is not a number",
        )
    ]


def test_a_long_value_is_cut_in_the_reason_but_kept_whole_in_value() -> None:
    email = "x" * 300
    rejected = validate_rows(_frame({"email": [email]}), Entity.CONTACTS).rejected
    assert rejected["value"].to_list() == [email]
    reason = rejected["reason"].item()
    assert reason == f"email '{email[: MAX_VALUE_IN_REASON - 1]}…' is not a valid email address"


def test_a_column_that_is_entirely_empty_is_checked_like_any_other() -> None:
    frame = pl.DataFrame(
        {"email": [None, None], "first_name": [None, None], "_line": [2, 3]},
        schema={"email": pl.Null, "first_name": pl.Null, "_line": pl.Int64},
    )
    result = validate_rows(frame, Entity.CONTACTS)
    assert result.valid.is_empty()
    assert result.valid.schema == frame.schema
    assert result.rejected["reason"].to_list() == ["email is missing"] * 2


def test_a_missing_required_column_stops_the_file_with_a_helpful_message() -> None:
    frame = _frame({"first_name": ["Bob"], "phone": ["+33612345678"]})
    with pytest.raises(MissingColumnsError) as caught:
        validate_rows(frame, Entity.CONTACTS, source="people.xlsx")
    error = caught.value
    assert error.missing == ("email",)
    assert error.found == ("first_name", "phone")
    message = str(error)
    assert message.startswith("people.xlsx: ")
    assert "'email'" in message
    assert "'first_name', 'phone'" in message
    assert "mapping file" in message


def test_every_missing_required_column_is_named_before_any_row_is_checked() -> None:
    frame = _frame({"website": ["not a url at all"]})
    with pytest.raises(MissingColumnsError) as caught:
        validate_rows(frame, Entity.COMPANIES)
    assert caught.value.missing == ("name",)
    assert "'name'" in str(caught.value)
    assert not str(caught.value).startswith(":")


def test_a_frame_without_line_numbers_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="_line"):
        validate_rows(pl.DataFrame({"name": ["Pilot"]}), Entity.DEALS)


def test_an_empty_frame_gives_two_empty_frames() -> None:
    frame = _frame({"email": []})
    result = validate_rows(frame, Entity.CONTACTS)
    assert_frame_equal(result.valid, frame)
    assert result.rejected.schema == REJECTED_SCHEMA
    assert result.rejected.is_empty()


def test_pandera_settings_in_the_environment_cannot_switch_the_data_checks_off() -> None:
    frame = _frame({"email": ["bob@@x"]})
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        assert validate_rows(frame, Entity.CONTACTS).rejected.height == 1
    with config_context(validation_enabled=False):
        assert validate_rows(frame, Entity.CONTACTS).rejected.height == 1


def test_a_failure_that_no_row_can_be_blamed_for_is_raised_not_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class IntegerName(pa.DataFrameModel):
        name: Series[int]

    monkeypatch.setitem(SCHEMAS, Entity.DEALS, IntegerName)
    with pytest.raises(SchemaErrors) as caught:
        validate_rows(_frame({"name": ["Pilot"]}), Entity.DEALS)
    assert any("cannot be traced to a row" in note for note in caught.value.__notes__)


# Pools of values whose fate is known in advance: a row is rejected exactly when it draws a bad one.
_GOOD: dict[str, list[str | None]] = {
    "email": ["bob@example.com", "Ann.Lee+x@Mail.Example.ORG", "o'neil@ex.ie"],
    "name": ["Acme", "=cmd|' /C calc'!A0", "Ünïcode GmbH"],
    "domain": ["acme.com", "sub.acme.co.uk", "ACME.IO"],
    "amount": ["0", "1200.50", None],
    "close_date": ["2024-02-29", "1999-12-31", None],
    "date_of_birth": ["1980-01-01", None],
    "number_of_employees": ["12", None],
    "annual_revenue": ["1000000", ".5", None],
    "subject": ["Call Ada", "=HYPERLINK()", "Réunion"],
    "body": ["Met at the fair", "Line one\nline two"],
    "done": ["true", "false", None],
    "priority": ["low", "medium", "high", None],
}
_GOOD |= {
    "company_domain": _GOOD["domain"],
    "contact_email": _GOOD["email"],
    "due_date": _GOOD["close_date"],
    "date": _GOOD["close_date"],
}
_BAD: dict[str, list[str | None]] = {
    "email": ["bob@@x", "bob", None, "bob @x.com", "jörg@x.de"],
    "name": [None],
    "domain": ["acme", "http://acme.com", None],
    "amount": ["-1", "1,200", "lots"],
    "close_date": ["2024-02-30", "31/12/1999"],
    "date_of_birth": ["1980-1-1", "never"],
    "number_of_employees": ["a dozen"],
    "annual_revenue": ["$1M"],
    "subject": [None],
    "body": [None],
    "done": ["maybe"],
    "priority": ["urgent"],
}
_BAD |= {
    "company_domain": _BAD["domain"],
    "contact_email": _BAD["email"],
    "due_date": _BAD["close_date"],
    "date": _BAD["close_date"],
}
_FREE = ["", "anything", "+1 555 0100", None]


def _random_frame(entity: Entity, rng: random.Random, height: int) -> tuple[pl.DataFrame, set[int]]:
    """A frame with a random subset of optional columns, and the lines that must be rejected."""
    spec = ENTITY_SPECS[entity]
    optional = [name for name in spec.fields if name not in spec.required]
    present = list(spec.required) + rng.sample(optional, rng.randint(0, len(optional)))
    rng.shuffle(present)
    lines = rng.sample(range(2, 10 * height + 2), height)
    columns: dict[str, list[str | None]] = {name: [] for name in present}
    bad_lines: set[int] = set()
    for line in lines:
        for name in present:
            bad = [v for v in _BAD.get(name, []) if v is not None or name in spec.required]
            if bad and rng.random() < 0.1:
                columns[name].append(rng.choice(bad))
                bad_lines.add(line)
            else:
                columns[name].append(rng.choice(_GOOD.get(name, _FREE)))
    return _frame(columns, lines), bad_lines


@pytest.mark.parametrize("entity", list(Entity))
@pytest.mark.parametrize("seed", range(15))
def test_every_line_is_either_valid_or_rejected(entity: Entity, seed: int) -> None:
    frame, bad_lines = _random_frame(entity, random.Random(seed), height=60)
    result = validate_rows(frame, entity)

    assert result.valid.columns == frame.columns
    valid_lines = result.valid["_line"].to_list()
    rejected_lines = result.rejected["_line"].to_list()
    assert set(rejected_lines) == bad_lines
    assert len(valid_lines) + len(rejected_lines) == frame.height
    assert set(valid_lines) | set(rejected_lines) == set(frame["_line"])
    assert_frame_equal(result.valid, frame.filter(~pl.col("_line").is_in(sorted(bad_lines))))
    assert rejected_lines == [line for line in frame["_line"] if line in bad_lines]
    assert result.rejected["reason"].str.len_chars().gt(0).all()


def test_a_large_frame_is_validated_in_one_vectorized_pass() -> None:
    height = 200_000
    row = pl.int_range(height, dtype=pl.Int64)
    frame = pl.select(
        email=pl.when(row % 10 == 0)
        .then(pl.lit("broken@@example.com"))
        .otherwise(pl.format("user{}@example.com", row)),
        first_name=pl.lit("Ann"),
        date_of_birth=pl.when(row % 25 == 0)
        .then(pl.lit("1990-02-30"))
        .otherwise(pl.lit("1990-02-28")),
        _line=row + 2,
    )
    result = validate_rows(frame, Entity.CONTACTS)
    assert result.rejected.height == 20_000 + 8_000 - 4_000
    assert result.valid.height + result.rejected.height == height
