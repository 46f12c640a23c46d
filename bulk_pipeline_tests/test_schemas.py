"""The pandera models: one rule at a time, straight through pandera (no validate.py plumbing)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pytest
from pandera.errors import SchemaErrors

from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.schemas import (
    INVALID_DATE,
    INVALID_DOMAIN,
    INVALID_EMAIL,
    NEGATIVE,
    NOT_A_NUMBER,
    SCHEMAS,
    CompanySchema,
    ContactSchema,
    DealSchema,
)


def _failures(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> list[tuple[str, str, int]]:
    """(column, check, row) of every failure, or [] when the frame passes."""
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as exc:
        return sorted(
            exc.failure_cases.select("column", "check", "index").iter_rows(),
            key=lambda failure: (failure[2], failure[0]),
        )
    return []


@pytest.mark.parametrize("entity", list(Entity))
def test_model_columns_follow_the_entity_spec(entity: Entity) -> None:
    spec = ENTITY_SPECS[entity]
    schema = SCHEMAS[entity].to_schema()
    assert tuple(schema.columns) == spec.fields
    for name, column in schema.columns.items():
        assert column.dtype.type == pl.String
        assert column.required == (name in spec.required)
        assert column.nullable == (name not in spec.required)
    assert not schema.coerce
    assert not schema.strict


@pytest.mark.parametrize(
    "email",
    [
        "bob@example.com",
        "Bob.Smith+crm@Example.CO.UK",
        "BOB@EXAMPLE.COM",
        "o'brien@example.ie",
        "first_last-1@sub-domain.example.org",
        "a@b.io",
        "user@xn--80ak6aa92e.xn--p1ai",
    ],
)
def test_valid_emails_pass(email: str) -> None:
    assert _failures(ContactSchema, pl.DataFrame({"email": [email]})) == []


@pytest.mark.parametrize(
    "email",
    [
        "bob@@x.com",
        "bob@@x",
        "bob",
        "bob@",
        "@example.com",
        "bob@localhost",
        "bob@example.c",
        "bob@example.c0m",
        "bob smith@example.com",
        "bob@exa mple.com",
        "bob@example..com",
        "bob@.example.com",
        "bob@example.com.",
        ".bob@example.com",
        "bob.@example.com",
        "bo..b@example.com",
        "bob@-example.com",
        "bob@example-.com",
        "bob@ex_ample.com",
        "jörg@example.de",
        "\u212aelvin@example.com",
        "mailto:bob@example.com",
        "<bob@example.com>",
        "a" * 250 + "@example.com",
    ],
)
def test_invalid_emails_fail(email: str) -> None:
    assert _failures(ContactSchema, pl.DataFrame({"email": [email]})) == [
        ("email", INVALID_EMAIL, 0)
    ]


def test_a_missing_email_fails_as_not_nullable() -> None:
    frame = pl.DataFrame({"email": ["bob@example.com", None]}, schema={"email": pl.String})
    assert _failures(ContactSchema, frame) == [("email", "not_nullable", 1)]


@pytest.mark.parametrize(
    "domain", ["acme.com", "sub.acme.co.uk", "ACME.COM", "a-b.io", "x.xn--p1ai"]
)
def test_valid_domains_pass(domain: str) -> None:
    frame = pl.DataFrame({"name": ["Acme"], "domain": [domain]})
    assert _failures(CompanySchema, frame) == []


@pytest.mark.parametrize(
    "domain",
    [
        "acme",
        "acme.c",
        "https://acme.com",
        "acme.com/about",
        "www.acme.com.",
        "ac me.com",
        "-acme.com",
        "acme-.com",
        "acme..com",
        "bob@acme.com",
        "acme.123",
        ("a" * 63 + ".") * 4 + "com",
    ],
)
def test_invalid_domains_fail(domain: str) -> None:
    frame = pl.DataFrame({"name": ["Acme"], "domain": [domain]})
    assert _failures(CompanySchema, frame) == [("domain", INVALID_DOMAIN, 0)]


def test_a_company_needs_a_name_and_may_lack_a_domain() -> None:
    frame = pl.DataFrame(
        {"name": ["Acme", None, "Initech"], "domain": ["acme.com", "globex.com", None]},
        schema={"name": pl.String, "domain": pl.String},
    )
    assert _failures(CompanySchema, frame) == [("name", "not_nullable", 1)]


@pytest.mark.parametrize("date", ["2024-02-29", "1999-12-31", "0001-01-01", None])
def test_valid_or_absent_dates_pass(date: str | None) -> None:
    frame = pl.DataFrame(
        {"email": ["bob@example.com"], "date_of_birth": [date]},
        schema={"email": pl.String, "date_of_birth": pl.String},
    )
    assert _failures(ContactSchema, frame) == []


@pytest.mark.parametrize(
    "date",
    [
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-2-3",
        "24-02-03",
        "2024/02/03",
        "03/02/2024",
        "20240203",
        "2024-02-03T10:00:00",
        "+2024-01-01",
        "0000-01-01",
        "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0661",
        "yesterday",
    ],
)
def test_invalid_dates_fail(date: str) -> None:
    frame = pl.DataFrame({"name": ["Renewal"], "close_date": [date]})
    assert _failures(DealSchema, frame) == [("close_date", INVALID_DATE, 0)]


@pytest.mark.parametrize("number", ["12", "1234.50", "-3", ".5", "5.", "+7", "0"])
def test_numbers_pass(number: str) -> None:
    frame = pl.DataFrame(
        {"name": ["Acme"], "domain": ["acme.com"], "annual_revenue": [number]},
    )
    assert _failures(CompanySchema, frame) == []


@pytest.mark.parametrize("number", ["1,000", "$5", "1e5", "inf", "nan", "12 employees", "-", "."])
def test_non_numbers_fail(number: str) -> None:
    frame = pl.DataFrame(
        {"name": ["Acme"], "domain": ["acme.com"], "number_of_employees": [number]},
    )
    assert _failures(CompanySchema, frame) == [("number_of_employees", NOT_A_NUMBER, 0)]


def test_a_deal_amount_must_be_a_non_negative_number_when_given() -> None:
    frame = pl.DataFrame(
        {
            "name": ["a", "b", "c", "d", "e", "f"],
            "amount": ["100.50", "0", None, "-1", "-2e3", "lots"],
        }
    )
    assert _failures(DealSchema, frame) == [
        ("amount", NEGATIVE, 3),
        ("amount", NOT_A_NUMBER, 4),
        ("amount", NOT_A_NUMBER, 5),
    ]


def test_a_deal_needs_a_name() -> None:
    frame = pl.DataFrame({"name": [None, "b"]}, schema={"name": pl.String})
    assert _failures(DealSchema, frame) == [("name", "not_nullable", 0)]


def test_optional_columns_may_be_absent_or_null_and_extra_columns_are_allowed() -> None:
    frame = pl.DataFrame(
        {
            "email": ["bob@example.com"],
            "first_name": [None],
            "phone": ["not a phone"],
            "Favourite Colour": ["teal"],
            "_line": [2],
        },
        schema_overrides={"first_name": pl.String},
    )
    assert _failures(ContactSchema, frame) == []
