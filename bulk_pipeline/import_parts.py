"""An import's parts: the (sheet, entity) pairs its file holds, and where each keeps its work.

A CSV of contacts is one part. A workbook with Companies, Contacts and Deals sheets is three. A
contacts table with company columns (Company, Company Website) and no companies of its own
carries a second part on the same lines: the companies those columns name, found or created once
each and linked to their contacts. Each part goes through mapping, normalization and validation
on its own, and every line ends in one outcome per part it belongs to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bulk_pipeline import config
from bulk_pipeline.entities import ENTITY_SPECS, Entity
from bulk_pipeline.ingest import LINE_COLUMN

DERIVED_COMPANY_FIELDS = {"company": "name", "company_domain": "domain"}
"""A contact's company columns, as the fields of the company they name."""
CONTACT_COMPANY_LINK = next(
    r.link_field for r in ENTITY_SPECS[Entity.CONTACTS].references if r.entity is Entity.COMPANIES
)
"""Where a CRM that takes it links a contact to its company: companies are derived only then."""


@dataclass(frozen=True)
class Part:
    id: str
    """Its folder under the import's work folder: ``0``, ``0-companies``."""
    table: int
    """The table (sheet) of the file it comes from, in reading order."""
    sheet: str
    """The sheet's (or JSON key's) name; empty for a file with one unnamed table."""
    entity: Entity
    rows: int
    """Lines of the table this part has an outcome for."""
    column_map: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    derived: bool = False
    """Companies named by a contacts table's company columns."""

    def path(self, import_id: str, name: str) -> Path:
        folder = config.work_dir(import_id) / "parts" / self.id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "entity": self.entity.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        return cls(**{**data, "entity": Entity(data["entity"])})

    @property
    def where(self) -> str:
        return f"sheet '{self.sheet}'" if self.sheet else "the file"


ISSUE_REASON = "_reason"
"""Why a row of the table cannot be a record, beside its values in its issues file."""


def table_path(import_id: str, table: int) -> Path:
    """The table's source rows, as read (for rejected.csv)."""
    folder = config.work_dir(import_id) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{table}.parquet"


def issues_path(import_id: str, table: int, chunk: int) -> Path:
    """Rows of one chunk of the table that cannot be records (a ragged row), with what was
    readable of them (their columns differ from the table's) and ``_reason``."""
    folder = config.work_dir(import_id) / "tables" / f"{table}-issues"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{chunk:08d}.parquet"


def issue_files(import_id: str, table: int) -> list[Path]:
    """The table's issues files, in reading order."""
    return sorted((config.work_dir(import_id) / "tables" / f"{table}-issues").glob("*.parquet"))


def derived_companies(contacts: pl.DataFrame) -> pl.DataFrame:
    """The companies a contacts frame's company columns name, one row per contact line that
    names one: its name (the domain when no name is given) and its domain."""
    present = [c for c in DERIVED_COMPANY_FIELDS if c in contacts.columns]
    if not present:
        return pl.DataFrame()
    named = contacts.select(
        *(pl.col(c).alias(DERIVED_COMPANY_FIELDS[c]) for c in present), LINE_COLUMN
    )
    if "name" not in named.columns:
        named = named.with_columns(pl.lit(None, pl.String).alias("name"))
    if "domain" not in named.columns:
        named = named.with_columns(pl.lit(None, pl.String).alias("domain"))
    return (
        named.filter(pl.col("name").is_not_null() | pl.col("domain").is_not_null())
        .with_columns(pl.coalesce("name", "domain").alias("name"))
        .select("name", "domain", LINE_COLUMN)
    )
