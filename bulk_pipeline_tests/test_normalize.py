"""Each normalization rule, and that no value is ever dropped."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.normalize import dates, normalize, phones


def one(
    entity: Entity, column: str, values: Sequence[str | None], **kwargs: str
) -> list[str | None]:
    frame = pl.DataFrame(
        {column: pl.Series(values, dtype=pl.String), "_line": range(2, 2 + len(values))}
    )
    result = normalize(frame, entity, **kwargs)
    return result[column].to_list()


def test_trims_every_string_and_turns_empty_into_null() -> None:
    frame = pl.DataFrame(
        {
            "city": ["  Berlin\u00a0", "\u200bParis\ufeff", "   ", "", None],
            "country": ["DE ", " FR", "\t", "x", None],
            "_line": [2, 3, 4, 5, 6],
        }
    )
    result = normalize(frame, Entity.CONTACTS)
    assert result.columns == frame.columns
    assert result["city"].to_list() == ["Berlin", "Paris", None, None, None]
    assert result["country"].to_list() == ["DE", "FR", None, "x", None]
    assert result["_line"].to_list() == [2, 3, 4, 5, 6]


def test_collapses_internal_whitespace_in_names_only() -> None:
    frame = pl.DataFrame(
        {
            "first_name": ["Anne   Marie", "Jean\t\tLuc"],
            "address": ["1 Main St\nApt  2", None],
            "_line": [2, 3],
        }
    )
    result = normalize(frame, Entity.CONTACTS)
    assert result["first_name"].to_list() == ["Anne Marie", "Jean Luc"]
    assert result["address"].to_list() == ["1 Main St\nApt  2", None]


def test_non_latin_names_are_untouched() -> None:
    names = ["Zoë", "Łukasz", "山田 太郎", "Ольга", "Nguyễn"]
    assert one(Entity.CONTACTS, "first_name", list(names)) == names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("  John.Doe@Example.COM ", "john.doe@example.com"),
        ("mailto:Sarah@X.com", "sarah@x.com"),
        ("MAILTO:sarah@x.com", "sarah@x.com"),
        ("<a@b.co>", "a@b.co"),
        ("Ivan Petrov <Ivan.Petrov@Example.ru>", "ivan.petrov@example.ru"),
        ("a@b.co;", "a@b.co"),
        ("not an email", "not an email"),
        ("<>", None),
    ],
)
def test_emails(given: str, expected: str | None) -> None:
    assert one(Entity.CONTACTS, "email", [given]) == [expected]


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("https://www.Acme.com/about", "acme.com"),
        ("http://acme.com:8080/x?y=1#z", "acme.com"),
        ("WWW.ACME.CO.UK", "acme.co.uk"),
        ("acme.io/", "acme.io"),
        ("https://user:pass@shop.acme.com", "shop.acme.com"),
        ("https://www.münchen.de/", "xn--mnchen-3ya.de"),
        ("not a website", None),
        (None, None),
    ],
)
def test_company_domain_is_filled_from_the_website(website: str | None, domain: str | None) -> None:
    frame = pl.DataFrame(
        {"website": [website], "domain": pl.Series([None], dtype=pl.String), "_line": [2]}
    )
    result = normalize(frame, Entity.COMPANIES)
    assert result["domain"].to_list() == [domain]
    assert result["website"].to_list() == [website.strip() if website else None]


def test_given_company_domain_is_cleaned_and_wins_over_the_website() -> None:
    frame = pl.DataFrame(
        {
            "website": ["https://acme.com", "https://beta.io", "https://gamma.org"],
            "domain": ["WWW.Other.COM", "info@beta-mail.io", "not a domain"],
            "_line": [2, 3, 4],
        }
    )
    result = normalize(frame, Entity.COMPANIES)
    assert result["domain"].to_list() == ["other.com", "beta-mail.io", "not a domain"]


def test_companies_without_a_domain_column_get_one_from_the_website() -> None:
    frame = pl.DataFrame({"name": ["Acme"], "website": ["https://www.acme.com/"], "_line": [2]})
    result = normalize(frame, Entity.COMPANIES)
    assert result.columns == ["name", "website", "domain", "_line"]
    assert result["domain"].to_list() == ["acme.com"]


def test_contact_website_is_kept_as_given_but_trimmed() -> None:
    given = ["  https://www.Acme.com/about "]
    assert one(Entity.CONTACTS, "website", given) == ["https://www.Acme.com/about"]


def test_fields_not_in_the_frame_are_not_added() -> None:
    frame = pl.DataFrame({"email": ["a@x.com"], "_line": [2]})
    assert normalize(frame, Entity.CONTACTS).columns == ["email", "_line"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("(415) 555-2671", "+14155552671"),
        ("415.555.2671", "+14155552671"),
        ("1-415-555-2671", "+14155552671"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+49 30 1234567", "+49301234567"),
        ("(415) 555-2671 ext. 12", "+14155552671 ext. 12"),
        ("1-800-FLOWERS", "+18003569377"),
        ("555-0100", "555-0100"),
        ("0101  000001", "0101 000001"),
        ('=HYPERLINK("x")', '=HYPERLINK("x")'),
        (None, None),
    ],
)
def test_phones_us_default(given: str | None, expected: str | None) -> None:
    assert one(Entity.CONTACTS, "phone", [given]) == [expected]


def test_phones_use_the_default_region_for_national_numbers() -> None:
    given = ["030 1234567", "12", "+1 415 555 2671"]
    assert one(Entity.CONTACTS, "mobile_phone", given, default_region="DE") == [
        "+49301234567",
        "12",
        "+14155552671",
    ]
    assert one(Entity.CONTACTS, "phone", ["07911 123456"], default_region="GB") == ["+447911123456"]


def test_phones_parse_each_distinct_value_once_and_keep_row_order() -> None:
    values = pl.Series("phone", ["030 1234567", None, "030 1234567", "junk"] * 1000)
    result = phones(values, "DE")
    assert result.name == "phone"
    assert result.to_list()[:4] == ["+49301234567", None, "+49301234567", "junk"]
    assert result.len() == values.len()


def test_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown default region"):
        one(Entity.CONTACTS, "phone", ["1"], default_region="XX")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-03-05", "2024-03-05"),
        ("2024-3-5", "2024-03-05"),
        ("2024-03-05T10:30:00Z", "2024-03-05"),
        ("2024-03-05 10:30", "2024-03-05"),
        ("03/05/2024", "2024-03-05"),
        ("3/5/2024", "2024-03-05"),
        ("03-05-2024", "2024-03-05"),
        ("31/12/2024", "2024-12-31"),
        ("03/05/24", "2024-03-05"),
        ("05.03.2024", "2024-03-05"),
        ("5 Mar 2024", "2024-03-05"),
        ("5 March 2024", "2024-03-05"),
        ("Mar 5, 2024", "2024-03-05"),
        ("March 5th, 2024", "2024-03-05"),
        ("5-Mar-2024", "2024-03-05"),
        ("2024/03/05", "2024-03-05"),
        ("20240305", "2024-03-05"),
        ("2024-02-30", "2024-02-30"),
        ("next Tuesday", "next Tuesday"),
        ("45356", "45356"),
    ],
)
def test_dates_us_order_by_default(given: str, expected: str) -> None:
    assert one(Entity.CONTACTS, "date_of_birth", [given]) == [expected]


def test_numeric_dates_are_day_first_outside_the_us() -> None:
    assert one(Entity.DEALS, "close_date", ["03/05/2024", "12/31/2024"], default_region="GB") == [
        "2024-05-03",
        "2024-12-31",
    ]


def test_dates_keep_nulls_and_order() -> None:
    values = pl.Series("d", [None, "5 Mar 2024", None, "2024-03-05"])
    assert dates(values).to_list() == [None, "2024-03-05", None, "2024-03-05"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("$1,200.50", "1200.50"),
        ("1200.50", "1200.50"),
        ("1,200", "1200"),
        ("1.200.000", "1200000"),
        ("1.200,50 €", "1200.50"),
        ("EUR 1 200,50", "1200.50"),
        ("12,5", "12.5"),
        ("CHF 1'200", "1200"),
        ("(300)", "-300"),
        ("-42", "-42"),
        ("+7", "7"),
        ("US$ 3,000", "3000"),
        ("1.2M", "1.2M"),
        ("50-100", "50-100"),
        ("about ten", "about ten"),
    ],
)
def test_numbers(given: str, expected: str) -> None:
    assert one(Entity.DEALS, "amount", [given]) == [expected]
    assert one(Entity.COMPANIES, "annual_revenue", [given]) == [expected]
    assert one(Entity.COMPANIES, "number_of_employees", [given]) == [expected]
