"""Clean values into the forms CRMs match and deduplicate on, without ever dropping a value.

Every rule either produces a canonical form (lower-case email, bare domain, E.164 phone, ISO
date, plain decimal) or leaves the cleaned original in place, so that validation can reject it
with a reason the user can act on. Work is vectorized; the two rules that need a library or many
formats (phones, dates) run once per distinct value, not once per row.
"""

from __future__ import annotations

import phonenumbers
import polars as pl

from bulk_pipeline.csv_export import UNQUOTE_PATTERN
from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.ingest import LINE_COLUMN

WHITESPACE = (
    " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff"
)
"""Unicode white space plus the zero-width characters and BOMs that copy-paste leaves behind."""

RUNS_OF_SPACE = r"\s\s+|[^\S ]"
"""Runs of white space, or a single tab or newline: each becomes one space. (Faster than \\s+,
which would also rewrite every single space.)"""
PHONE_SEPARATORS = [" ", "-", ".", "/", "(", ")"]

NAME_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "name",
    "job_title",
    "owner",
    "subject",
    "deal_name",
)
EMAIL_FIELDS = ("email", "contact_email")
PHONE_FIELDS = ("phone", "mobile_phone")
DATE_FIELDS = ("date_of_birth", "close_date", "due_date", "date")
NUMBER_FIELDS = ("amount", "annual_revenue", "number_of_employees")
DOMAIN_FIELDS = ("company_domain",)
"""A company named by its domain or website: the bare host, as the companies' key is."""
YES_NO_FIELDS = ("done",)
LOWER_CASE_FIELDS = ("priority",)
YES = ("true", "yes", "y", "1", "done", "completed", "complete", "closed", "x", "✓", "✔")
NO = (
    "false",
    "no",
    "n",
    "0",
    "open",
    "not done",
    "pending",
    "to do",
    "todo",
    "not started",
    "in progress",
    "waiting",
    "deferred",
)

NANP_REGIONS = frozenset({"US", "CA"})
"""Regions whose 10-digit national numbers take the vectorized "+1" path."""

HOST = r"(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+(?:\p{L}{2,}|xn--[a-z0-9-]+)"
DOMAIN_IN_URL = r"^(?:[a-z][a-z0-9+.\-]*://)?(?:[^@/?#\s]*@)?(?:www[0-9]{0,3}\.)?([^/?#:\s]+)"
"""Scheme, credentials (or an email's local part) and www. skipped; the host captured."""

TIME_SUFFIX = (
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[AaPp][Mm])?\s*(?:Z|[+-]\d{2}:?\d{2})?)$"
)
MONTH_NAME_NOISE = r"(?i)(\d)(?:st|nd|rd|th)\b|,|\.(?:\s)|-"

CURRENCY = (
    r"(?i)(?:[a-z]{0,2}\$|[€£¥₹₽₩₪₫฿¢]|\b(?:usd|eur|gbp|chf|cad|aud|nzd|jpy|cny|rmb|inr|sek"
    r"|nok|dkk|pln|czk|huf|brl|mxn|zar|sgd|hkd|rub|try|kr)\b)"
)
PLAIN_NUMBER = r"^[+-]?[0-9]+(?:\.[0-9]+)?$"
THOUSANDS_COMMA = r"^[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$"
THOUSANDS_DOT = r"^[+-]?[0-9]{1,3}(?:(?:\.[0-9]{3})+,[0-9]+|(?:\.[0-9]{3}){2,})$"
DECIMAL_COMMA = r"^[+-]?[0-9]+,[0-9]{1,2}$"


def normalize(frame: pl.DataFrame, entity: Entity, *, default_region: str = "US") -> pl.DataFrame:
    """Trim every string, then apply the rule of each field present (see docs/input-files.md).

    ``default_region`` (ISO 3166 code) reads phone numbers written without a country code and
    decides the order of ambiguous numeric dates (month first for US, day first elsewhere).
    The frame keeps its columns, with one addition: a companies frame that has ``website`` but
    no ``domain`` gets ``domain`` derived from the website, since it is the companies' key.
    """
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {default_region!r}; use a code such as US, GB")
    fields = set(ENTITY_SPECS[entity].fields)
    frame = frame.with_columns(
        pl.col(c).cast(pl.String) for c in frame.columns if frame.schema[c] == pl.Null
    )
    present = [c for c in frame.columns if c != LINE_COLUMN and frame.schema[c] == pl.String]

    frame = frame.with_columns(
        _blank_to_null(
            _unquote_formula(pl.col(c).str.strip_chars(WHITESPACE)).str.strip_chars(WHITESPACE)
        )
        for c in present
    )
    frame = frame.with_columns(
        *(_collapse_spaces(c) for c in present if c in fields and c in NAME_FIELDS),
        *(_email(c) for c in present if c in fields and c in EMAIL_FIELDS),
        *(_number(c) for c in present if c in fields and c in NUMBER_FIELDS),
        *(_yes_no(c) for c in present if c in fields and c in YES_NO_FIELDS),
        *(pl.col(c).str.to_lowercase() for c in present if c in fields and c in LOWER_CASE_FIELDS),
    )
    frame = frame.with_columns(
        _host(frame[c]) for c in present if c in fields and c in DOMAIN_FIELDS
    )
    if entity == Entity.COMPANIES:
        frame = _company_domain(frame)
    for column in present:
        if column in fields and column in PHONE_FIELDS:
            frame = frame.with_columns(phones(frame[column], region))
        if column in fields and column in DATE_FIELDS:
            frame = frame.with_columns(dates(frame[column], month_first=region in NANP_REGIONS))
    return frame


def _unquote_formula(value: pl.Expr) -> pl.Expr:
    """Drop the apostrophe that our CSV files (and spreadsheet users) put before a formula-like
    value, so a corrected rejected.csv imports with its original values."""
    return value.str.replace(UNQUOTE_PATTERN, "$1")


def _blank_to_null(value: pl.Expr) -> pl.Expr:
    return pl.when(value.str.len_bytes() > 0).then(value)


def _collapse_spaces(column: str) -> pl.Expr:
    return pl.col(column).str.replace_all(RUNS_OF_SPACE, " ").alias(column)


def _email(column: str) -> pl.Expr:
    """``"Ada <ADA@Example.com>"``, ``mailto:ada@example.com`` and ``<ada@example.com>`` all
    become ``ada@example.com``."""
    value = pl.col(column)
    inside_angles = value.str.extract(r"<\s*([^<>\s]+)\s*>\s*$", 1)
    cleaned = (
        pl.coalesce(inside_angles, value)
        .str.replace(r"(?i)^\s*mailto:", "")
        .str.strip_chars(WHITESPACE + "<>\"',;")
        .str.to_lowercase()
    )
    return _blank_to_null(cleaned).alias(column)


def domain_of(value: pl.Expr) -> pl.Expr:
    """The bare host of a URL, website or email, lower-case, without www.; null if none."""
    host = value.str.to_lowercase().str.extract(DOMAIN_IN_URL, 1).str.strip_chars(".")
    return pl.when(host.str.contains(f"^{HOST}$")).then(host)


def _yes_no(column: str) -> pl.Expr:
    """``true``/``false`` from the ways sheets say it (yes, done, 1, x...); others kept for
    validation to reject."""
    lowered = pl.col(column).str.to_lowercase()
    return (
        pl.when(lowered.is_in(YES))
        .then(pl.lit("true"))
        .when(lowered.is_in(NO))
        .then(pl.lit("false"))
        .otherwise(pl.col(column))
        .alias(column)
    )


def _host(values: pl.Series) -> pl.Series:
    """A website, URL or email made its host (punycode for international names); a value
    that holds none is kept for validation to reject."""
    hosts = pl.select(pl.coalesce(domain_of(pl.lit(values)), pl.lit(values))).to_series()
    return _punycode(hosts).alias(values.name)


def _company_domain(frame: pl.DataFrame) -> pl.DataFrame:
    """Clean ``domain`` (a URL or email pasted there becomes its host) and fill it from
    ``website`` when blank; a domain that cannot be cleaned is kept for validation to reject."""
    has_domain = "domain" in frame.columns
    has_website = "website" in frame.columns
    if not has_domain and not has_website:
        return frame
    given = domain_of(pl.col("domain")) if has_domain else pl.lit(None, pl.String)
    kept = pl.col("domain") if has_domain else pl.lit(None, pl.String)
    derived = domain_of(pl.col("website")) if has_website else pl.lit(None, pl.String)
    frame = frame.with_columns(pl.coalesce(given, kept, derived).alias("domain"))
    frame = frame.with_columns(_punycode(frame["domain"]))
    if LINE_COLUMN in frame.columns:
        frame = frame.select(pl.exclude(LINE_COLUMN), LINE_COLUMN)
    return frame


def _punycode(domains: pl.Series) -> pl.Series:
    """International domains in the ASCII form DNS and CRMs use: münchen.de -> xn--mnchen-3ya.de."""
    unicode_hosts = domains.filter(domains.str.contains(r"[^\x00-\x7f]")).unique()
    if unicode_hosts.len() == 0:
        return domains
    converted: dict[str, str] = {}
    for host in unicode_hosts.to_list():
        try:
            converted[host] = host.encode("idna").decode("ascii")
        except UnicodeError:
            continue
    return domains.replace(converted)


def phones(values: pl.Series, region: str) -> pl.Series:
    """E.164 where the number is clear; the cleaned original where it is not.

    Two vectorized paths cover most files: numbers written with ``+`` and a country code keep
    their digits (``+44 (0)20 7946 0958`` -> ``+442079460958``), and in the US and Canada a
    10-digit number shaped like a North American one gets ``+1``. The rest go through
    libphonenumber once per distinct value, taken when valid for ``region`` (extensions kept as
    ``" ext. 123"``).
    """
    cleaned = values.str.replace_all(RUNS_OF_SPACE, " ")
    digits = cleaned.str.replace("(0)", "", literal=True).str.replace_many(
        PHONE_SEPARATORS, [""] * len(PHONE_SEPARATORS)
    )
    frame = pl.DataFrame({"digits": digits})
    international = pl.when(pl.col("digits").str.contains(r"^\+[1-9][0-9]{7,14}$")).then(
        pl.col("digits")
    )
    national: pl.Expr
    if region in NANP_REGIONS:
        national = pl.when(pl.col("digits").str.contains(r"^1?[2-9][0-9]{2}[2-9][0-9]{6}$")).then(
            "+1" + pl.col("digits").str.slice(-10)
        )
    else:
        national = pl.lit(None, pl.String)
    fast = frame.select(pl.coalesce(international, national)).to_series()

    slow = cleaned.filter(fast.is_null() & cleaned.is_not_null()).unique()
    slow = slow.filter(_may_be_valid(slow, region))
    parsed = {value: e164 for value in slow.to_list() if (e164 := _e164(value, region))}
    if not parsed:
        return pl.select(pl.coalesce(fast, cleaned)).to_series().alias(values.name)
    from_library = cleaned.replace_strict(parsed, default=None, return_dtype=pl.String)
    return pl.select(pl.coalesce(fast, from_library, cleaned)).to_series().alias(values.name)


def _may_be_valid(values: pl.Series, region: str) -> pl.Series:
    """False for plain digit strings that cannot be a valid number of ``region``.

    libphonenumber costs ~30 µs a value; a column of junk numbers would spend most of the time
    there. The region's own metadata (its general number pattern, national prefix and
    international dialling prefix) rules those out in one vectorized pass. Anything with letters,
    a ``+`` or another script goes to the library, as do all numbers of regions whose national
    prefix rules are not a plain prefix.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    desc = metadata.general_desc if metadata is not None else None
    general = desc.national_number_pattern if desc is not None else None
    if metadata is None or general is None:
        return pl.Series(values.name, [True] * values.len(), dtype=pl.Boolean)
    prefix = metadata.national_prefix
    if metadata.national_prefix_for_parsing not in (None, prefix):
        return pl.Series(values.name, [True] * values.len(), dtype=pl.Boolean)
    digits = values.str.replace_all(r"[^0-9]", "")
    pattern = f"^(?:{general})$"
    possible = digits.str.contains(pattern)
    if prefix:
        possible = possible | (
            digits.str.starts_with(prefix) & digits.str.slice(len(prefix)).str.contains(pattern)
        )
    if metadata.international_prefix:
        possible = possible | digits.str.contains(f"^(?:{metadata.international_prefix})")
    return ~values.str.contains(r"^[0-9\s\-./()]+$") | possible


def _e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    written_international = value.lstrip().startswith("+")
    if not (
        phonenumbers.is_valid_number(number)
        or (written_international and phonenumbers.is_possible_number(number))
    ):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{e164} ext. {number.extension}" if number.extension else e164


def dates(values: pl.Series, *, month_first: bool = True) -> pl.Series:
    """``YYYY-MM-DD`` from the formats spreadsheets produce; unparseable values left as they were.

    Numeric day/month order follows ``month_first`` (03/05/2024 is March 5 in the US), unless
    the first number cannot be a month (31/12/2024). Dots always mean day first (05.03.2024).
    Time parts are dropped: the date is taken as written, without time-zone conversion.
    """
    distinct = values.drop_nulls().unique()
    if distinct.len() == 0:
        return values
    value = pl.col("value").str.replace(TIME_SUFFIX, "")
    worded = value.str.replace_all(MONTH_NAME_NOISE, "$1 ").str.replace_all(r"\s+", " ")
    numeric_order = ("%m", "%d") if month_first else ("%d", "%m")
    swapped = numeric_order[::-1]
    candidates: list[tuple[pl.Expr, str, str]] = [
        (value, r"^\d{4}-\d{1,2}-\d{1,2}$", "%Y-%m-%d"),
        (value, r"^\d{4}/\d{1,2}/\d{1,2}$", "%Y/%m/%d"),
        (value, r"^\d{4}\.\d{1,2}\.\d{1,2}$", "%Y.%m.%d"),
        (value, r"^(?:19|20)\d{6}$", "%Y%m%d"),
        (value, r"^\d{1,2}\.\d{1,2}\.\d{4}$", "%d.%m.%Y"),
        (value, r"^\d{1,2}\.\d{1,2}\.\d{2}$", "%d.%m.%y"),
    ]
    for separator in ("/", "-"):
        for first, second in (numeric_order, swapped):
            candidates.append(
                (
                    value,
                    rf"^\d{{1,2}}{separator}\d{{1,2}}{separator}\d{{4}}$",
                    f"{first}{separator}{second}{separator}%Y",
                )
            )
            candidates.append(
                (
                    value,
                    rf"^\d{{1,2}}{separator}\d{{1,2}}{separator}\d{{2}}$",
                    f"{first}{separator}{second}{separator}%y",
                )
            )
    for pattern in ("%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y"):
        candidates.append((worded.str.strip_chars(), r"^[\w ]+ \d{4}$", pattern))
    parsed = pl.coalesce(
        pl.when(text.str.contains(shape)).then(text.str.strptime(pl.Date, fmt, strict=False))
        for text, shape, fmt in candidates
    )
    lookup = (
        pl.DataFrame({"value": distinct})
        .select("value", parsed.dt.to_string("%Y-%m-%d").alias("iso"))
        .drop_nulls("iso")
    )
    converted = values.replace_strict(
        lookup["value"], lookup["iso"], default=None, return_dtype=pl.String
    )
    return pl.select(pl.coalesce(converted, values)).to_series().alias(values.name)


def _number(column: str) -> pl.Expr:
    """``$1,200.50`` -> ``1200.50``, ``1.200,50 €`` -> ``1200.50``, ``(300)`` -> ``-300``.

    A lone comma followed by three digits is a thousands separator (``1,200``), followed by one or
    two a decimal comma (``12,5``); a lone dot is a decimal point. Anything else stays as it was.
    """
    original = pl.col(column)
    negative = original.str.contains(r"^\(.*\)$") | original.str.starts_with("\u2212")
    bare = original.str.replace_all(CURRENCY, "").str.replace_all("[\\s'\u2019_()\u2212]", "")
    plain = (
        pl.when(bare.str.contains(PLAIN_NUMBER))
        .then(bare)
        .when(bare.str.contains(THOUSANDS_COMMA))
        .then(bare.str.replace_all(",", "", literal=True))
        .when(bare.str.contains(THOUSANDS_DOT))
        .then(bare.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
        .when(bare.str.contains(DECIMAL_COMMA))
        .then(bare.str.replace(",", ".", literal=True))
        .str.strip_prefix("+")
    )
    signed = (
        pl.when(negative & plain.is_not_null() & ~plain.str.starts_with("-"))
        .then("-" + plain)
        .otherwise(plain)
    )
    return pl.coalesce(signed, original).alias(column)
