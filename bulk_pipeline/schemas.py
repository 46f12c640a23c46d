"""Pandera polars models, one per entity: what a normalized row must satisfy to be sent to a CRM.

Normalization runs first, so every column is a string and nothing is coerced here. A file may lack
any optional column (``Series[str] | None``); the required ones are checked by ``validate.py``
before pandera runs, so a missing column is reported to the user rather than as a schema error.

Each check's ``error`` text completes the sentence "<column> '<value>' ...": ``validate.py`` turns
it into the reason a user reads in rejected.csv. The check expressions give null for a null cell,
which pandera counts as a pass (``ignore_na``), so an empty optional cell is never a rejection.
"""

from __future__ import annotations

from collections.abc import Callable

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.typing.polars import Series

from bulk_pipeline.entities import Entity

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
_HOSTNAME = rf"(?:{_LABEL}\.)+{_TLD}"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"

# ASCII classes on purpose: the regex engine is Unicode-aware, so (?i) or \d would also accept
# look-alikes such as the Kelvin sign or Arabic-Indic digits.
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@{_HOSTNAME}$"
"""Dot-atom local part, one @, a hostname with a dot and a 2+ letter (or punycode) TLD."""
DOMAIN_PATTERN = rf"^{_HOSTNAME}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
NUMBER_PATTERN = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
"""A plain decimal: no thousands separators, currency signs, exponents, inf or nan."""

MAX_EMAIL_LENGTH = 254
MAX_DOMAIN_LENGTH = 253

INVALID_EMAIL = "is not a valid email address"
INVALID_DOMAIN = "is not a valid domain (expected a host name such as acme.com)"
INVALID_DATE = "is not a valid date (expected YYYY-MM-DD)"
NOT_A_NUMBER = "is not a number"
NEGATIVE = "is negative"
NOT_YES_OR_NO = "is not yes or no (expected true or false)"
UNKNOWN_PRIORITY = "is not a priority (expected low, medium or high)"
PRIORITIES = ("low", "medium", "high")


def _when_present(value: pl.Expr, passed: pl.Expr) -> pl.Expr:
    """Null for a null cell (pandera lets it pass); otherwise the check, an unknown being a fail."""
    return pl.when(value.is_not_null()).then(passed.fill_null(False))


def is_email(value: pl.Expr) -> pl.Expr:
    return _when_present(
        value,
        value.str.contains(EMAIL_PATTERN) & (value.str.len_bytes() <= MAX_EMAIL_LENGTH),
    )


def is_domain(value: pl.Expr) -> pl.Expr:
    return _when_present(
        value,
        value.str.contains(DOMAIN_PATTERN) & (value.str.len_bytes() <= MAX_DOMAIN_LENGTH),
    )


def is_iso_date(value: pl.Expr) -> pl.Expr:
    """The exact YYYY-MM-DD shape and a real calendar day (2024-02-30 fails), year 1 or later."""
    parsed = value.str.to_date("%Y-%m-%d", strict=False)
    return _when_present(value, value.str.contains(DATE_PATTERN) & (parsed.dt.year() >= 1))


def is_number(value: pl.Expr) -> pl.Expr:
    return _when_present(value, value.str.contains(NUMBER_PATTERN))


def is_non_negative(value: pl.Expr) -> pl.Expr:
    """Passes non-numbers so that a bad number gets one reason (``is_number``'s), not two."""
    negative = value.str.contains(NUMBER_PATTERN) & (value.cast(pl.Float64, strict=False) < 0)
    return _when_present(value, negative.not_())


def is_boolean(value: pl.Expr) -> pl.Expr:
    """``true`` or ``false``: what normalization makes of yes/no, done/open, 1/0."""
    return _when_present(value, value.is_in(["true", "false"]))


def is_priority(value: pl.Expr) -> pl.Expr:
    return _when_present(value, value.is_in(list(PRIORITIES)))


def _apply(check: Callable[[pl.Expr], pl.Expr], data: PolarsData) -> pl.LazyFrame:
    """Run one of the expression checks above on the column pandera hands over."""
    return data.lazyframe.select(check(pl.col(data.key)))


class ContactSchema(pa.DataFrameModel):
    """A contact is keyed by its email, so a contact without a usable email cannot be sent."""

    email: Series[str] = pa.Field(nullable=False)
    first_name: Series[str] | None = pa.Field(nullable=True)
    last_name: Series[str] | None = pa.Field(nullable=True)
    phone: Series[str] | None = pa.Field(nullable=True)
    mobile_phone: Series[str] | None = pa.Field(nullable=True)
    company: Series[str] | None = pa.Field(nullable=True)
    company_domain: Series[str] | None = pa.Field(nullable=True)
    job_title: Series[str] | None = pa.Field(nullable=True)
    website: Series[str] | None = pa.Field(nullable=True)
    address: Series[str] | None = pa.Field(nullable=True)
    city: Series[str] | None = pa.Field(nullable=True)
    state: Series[str] | None = pa.Field(nullable=True)
    zip: Series[str] | None = pa.Field(nullable=True)
    country: Series[str] | None = pa.Field(nullable=True)
    lifecycle_stage: Series[str] | None = pa.Field(nullable=True)
    date_of_birth: Series[str] | None = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check("email", error=INVALID_EMAIL)
    def _email(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_email, data)

    @pa.check("date_of_birth", error=INVALID_DATE)
    def _date_of_birth(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_iso_date, data)

    @pa.check("company_domain", error=INVALID_DOMAIN)
    def _company_domain(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_domain, data)


class CompanySchema(pa.DataFrameModel):
    """A company needs a name; it is keyed by its domain, or by its name when it has none."""

    name: Series[str] = pa.Field(nullable=False)
    domain: Series[str] | None = pa.Field(nullable=True)
    website: Series[str] | None = pa.Field(nullable=True)
    phone: Series[str] | None = pa.Field(nullable=True)
    industry: Series[str] | None = pa.Field(nullable=True)
    address: Series[str] | None = pa.Field(nullable=True)
    city: Series[str] | None = pa.Field(nullable=True)
    state: Series[str] | None = pa.Field(nullable=True)
    zip: Series[str] | None = pa.Field(nullable=True)
    country: Series[str] | None = pa.Field(nullable=True)
    description: Series[str] | None = pa.Field(nullable=True)
    number_of_employees: Series[str] | None = pa.Field(nullable=True)
    annual_revenue: Series[str] | None = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check("domain", error=INVALID_DOMAIN)
    def _domain(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_domain, data)

    @pa.check("number_of_employees", "annual_revenue", error=NOT_A_NUMBER)
    def _numbers(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_number, data)


class DealSchema(pa.DataFrameModel):
    """A deal needs a name; its amount, when given, is a non-negative number. It is keyed by
    its id in the source system when the file has one, else by its name and company."""

    external_id: Series[str] | None = pa.Field(nullable=True)
    name: Series[str] = pa.Field(nullable=False)
    amount: Series[str] | None = pa.Field(nullable=True)
    stage: Series[str] | None = pa.Field(nullable=True)
    pipeline: Series[str] | None = pa.Field(nullable=True)
    close_date: Series[str] | None = pa.Field(nullable=True)
    description: Series[str] | None = pa.Field(nullable=True)
    company_domain: Series[str] | None = pa.Field(nullable=True)
    company: Series[str] | None = pa.Field(nullable=True)
    contact_email: Series[str] | None = pa.Field(nullable=True)
    owner: Series[str] | None = pa.Field(nullable=True)
    """Who owns the deal in the CRM, as the CRM knows its users (an email, for most)."""

    class Config:
        strict = False
        coerce = False

    @pa.check("amount", error=NOT_A_NUMBER)
    def _amount_is_number(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_number, data)

    @pa.check("amount", error=NEGATIVE)
    def _amount_not_negative(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_non_negative, data)

    @pa.check("close_date", error=INVALID_DATE)
    def _close_date(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_iso_date, data)

    @pa.check("company_domain", error=INVALID_DOMAIN)
    def _company_domain(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_domain, data)

    @pa.check("contact_email", error=INVALID_EMAIL)
    def _contact_email(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_email, data)


class ActivitySchema(pa.DataFrameModel):
    """An activity (a task, call or meeting) needs a subject; what it is about is given by its
    contact's email, its company and its deal."""

    external_id: Series[str] | None = pa.Field(nullable=True)
    subject: Series[str] = pa.Field(nullable=False)
    type: Series[str] | None = pa.Field(nullable=True)
    due_date: Series[str] | None = pa.Field(nullable=True)
    done: Series[str] | None = pa.Field(nullable=True)
    priority: Series[str] | None = pa.Field(nullable=True)
    body: Series[str] | None = pa.Field(nullable=True)
    contact_email: Series[str] | None = pa.Field(nullable=True)
    company_domain: Series[str] | None = pa.Field(nullable=True)
    company: Series[str] | None = pa.Field(nullable=True)
    deal_id: Series[str] | None = pa.Field(nullable=True)
    deal_name: Series[str] | None = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check("due_date", error=INVALID_DATE)
    def _due_date(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_iso_date, data)

    @pa.check("done", error=NOT_YES_OR_NO)
    def _done(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_boolean, data)

    @pa.check("priority", error=UNKNOWN_PRIORITY)
    def _priority(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_priority, data)

    @pa.check("contact_email", error=INVALID_EMAIL)
    def _contact_email(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_email, data)

    @pa.check("company_domain", error=INVALID_DOMAIN)
    def _company_domain(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_domain, data)


class NoteSchema(pa.DataFrameModel):
    """A note needs a body; what it is about is given like an activity's."""

    external_id: Series[str] | None = pa.Field(nullable=True)
    body: Series[str] = pa.Field(nullable=False)
    date: Series[str] | None = pa.Field(nullable=True)
    contact_email: Series[str] | None = pa.Field(nullable=True)
    company_domain: Series[str] | None = pa.Field(nullable=True)
    company: Series[str] | None = pa.Field(nullable=True)
    deal_id: Series[str] | None = pa.Field(nullable=True)
    deal_name: Series[str] | None = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check("date", error=INVALID_DATE)
    def _date(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_iso_date, data)

    @pa.check("contact_email", error=INVALID_EMAIL)
    def _contact_email(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_email, data)

    @pa.check("company_domain", error=INVALID_DOMAIN)
    def _company_domain(cls, data: PolarsData) -> pl.LazyFrame:
        return _apply(is_domain, data)


SCHEMAS: dict[Entity, type[pa.DataFrameModel]] = {
    Entity.CONTACTS: ContactSchema,
    Entity.COMPANIES: CompanySchema,
    Entity.DEALS: DealSchema,
    Entity.ACTIVITIES: ActivitySchema,
    Entity.NOTES: NoteSchema,
}
