"""The linked migration workbook the linked-import tests of every CRM share: Companies,
Contacts, Deals and Activities sheets that refer to each other (companies by website in some
rows and by domain in others, deals by their id, activities by contact email and deal id), with
a few references that name nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import xlsxwriter

COMPANIES = [
    ["Name", "Domain", "Website"],
    ["Acme", "acme.com", ""],
    ["Globex", "", "https://www.globex.io/about"],
    ["Initech", "initech.com", "initech.com"],
]
CONTACTS = [
    ["Email", "First Name", "Company Website"],
    ["ada@acme.com", "Ada", "http://acme.com"],
    ["bob@globex.io", "Bob", "globex.io"],
    ["cy@initech.com", "Cy", "https://initech.com/"],
    ["dee@nowhere.org", "Dee", "nowhere.org"],
]
DEALS = [
    ["Deal ID", "Deal Name", "Amount", "Company Domain", "Contact Email"],
    ["D-1", "Acme renewal", "1200", "acme.com", "ada@acme.com"],
    ["D-2", "Globex pilot", "500", "globex.io", "bob@globex.io"],
    ["D-3", "Ghost deal", "10", "ghost.example", ""],
]
ACTIVITIES = [
    ["Subject", "Due Date", "Contact Email", "Deal ID"],
    ["Call Ada", "2025-01-10", "ada@acme.com", "D-1"],
    ["Email Bob", "2025-01-11", "bob@globex.io", "D-2"],
    ["Call nobody", "2025-01-12", "nobody@acme.com", ""],
    ["Chase ghost", "2025-01-13", "", "D-404"],
]


def workbook(path: Path, sheets: dict[str, list[list[str]]]) -> Path:
    book = xlsxwriter.Workbook(str(path))
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value != "":
                    sheet.write_string(r, c, value)
    book.close()
    return path


def csv_file(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def migration(path: Path) -> Path:
    return workbook(
        path,
        {"Companies": COMPANIES, "Contacts": CONTACTS, "Deals": DEALS, "Activities": ACTIVITIES},
    )
