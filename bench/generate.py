"""Seeded generator of realistic messy contacts files for benchmarks.

About 10% of rows repeat an earlier email (in other case and with stray spaces) and about 8% are
invalid (broken or missing emails). Built with vectorized numpy/polars, a million rows at a time
(each row's domain follows from its number, so a repeat of an earlier chunk's email is known
without that chunk): 30 million rows take a minute and the memory of one chunk.

    python bench/generate.py 100000 bench/out/contacts_100k.csv --seed 7
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

FIRST_NAMES = np.array(
    [
        "Ada",
        "Zoë",
        "Łukasz",
        "Ольга",
        "太郎",
        "María",
        "Chloé",
        "Søren",
        "Grace",
        "Amir",
        "Li",
        "Ana",
    ]
)
LAST_NAMES = np.array(
    ["Lovelace", "Saldaña", "Żółć", "Иванова", "山田", "García", "Dubois", "Kierkegaard", "Hopper"]
)
DOMAINS = np.array(["example.com", "example.org", "mail.example.net", "corp.example.io"])
COMPANIES = np.array(["Acme Inc", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay"])
STAGES = np.array(["lead", "subscriber", "customer", "opportunity"])
AREA_CODES = np.array(["206", "212", "303", "305", "312", "404", "415", "503", "512", "617"])
"""Real North American area codes, so that phone numbers are valid ones (a CRM that checks
numbers, as Attio does, takes them)."""
DUPLICATE_SHARE = 0.10
INVALID_SHARE = 0.08


CHUNK_ROWS = 1_000_000


def generate_contacts(rows: int, seed: int = 7, first_id: int = 0) -> pl.DataFrame:
    """Rows ``first_id`` to ``first_id + rows - 1`` of the file made with ``seed``."""
    rng = np.random.default_rng([seed, first_id])
    ids = np.arange(first_id, first_id + rows)
    first = FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), rows)]
    last = LAST_NAMES[rng.integers(0, len(LAST_NAMES), rows)]
    domain = DOMAINS[ids % len(DOMAINS)]
    frame = pl.DataFrame(
        {
            "id": ids,
            "First Name": first,
            "Last Name": last,
            "domain": domain,
            "Phone": np.char.add(
                AREA_CODES[rng.integers(0, len(AREA_CODES), rows)],
                rng.integers(2_000_000, 9_999_999, rows).astype(str),
            ),
            "Company": COMPANIES[rng.integers(0, len(COMPANIES), rows)],
            "Lifecycle Stage": STAGES[rng.integers(0, len(STAGES), rows)],
            "Favourite Colour": np.where(rng.random(rows) < 0.5, "blue", "green"),
        }
    )
    duplicate_of = (ids * rng.random(rows)).astype(np.int64)
    duplicate_domain = pl.Series(DOMAINS[duplicate_of % len(DOMAINS)]).str.to_uppercase()
    roll = pl.lit(pl.Series(rng.random(rows)))
    frame = frame.with_columns(
        pl.when(roll < DUPLICATE_SHARE)
        .then(pl.format("  USER{}@{} ", pl.lit(pl.Series(duplicate_of)), pl.lit(duplicate_domain)))
        .when(roll < DUPLICATE_SHARE + INVALID_SHARE / 2)
        .then(pl.format("user{}@@{}", pl.col("id"), pl.col("domain")))
        .when(roll < DUPLICATE_SHARE + INVALID_SHARE)
        .then(pl.lit(""))
        .otherwise(pl.format("user{}@{}", pl.col("id"), pl.col("domain")))
        .alias("E-mail"),
        pl.format("+1 ({}) {}-{}", *_phone_parts()).alias("Phone"),
    )
    return frame.select(
        "E-mail",
        "First Name",
        "Last Name",
        "Phone",
        "Company",
        "Lifecycle Stage",
        "Favourite Colour",
    )


def write_contacts(rows: int, output: Path, seed: int = 7) -> None:
    """The file, written a chunk at a time."""
    with output.open("wb") as handle:
        for first_id in range(0, rows, CHUNK_ROWS):
            chunk = generate_contacts(min(CHUNK_ROWS, rows - first_id), seed, first_id)
            chunk.write_csv(handle, include_header=first_id == 0)


def _phone_parts() -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    phone = pl.col("Phone")
    return phone.str.slice(0, 3), phone.str.slice(3, 3), phone.str.slice(6, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=int)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_contacts(args.rows, args.output, args.seed)
    print(f"wrote {args.rows} rows to {args.output}")


if __name__ == "__main__":
    main()
