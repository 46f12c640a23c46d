"""Write the bundled sample files, byte for byte the same on every run.

    .venv/bin/python data/samples/make_samples.py

The samples are what a real upload looks like, mess included, so the demo and the end-to-end
tests exercise the cleaning rules: see docs/input-files.md for what each quirk tests.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
FIXED_TIME = datetime(2024, 1, 1)

CONTACT_HEADER = [
    "E-mail",
    "First Name",
    "Last Name",
    "Phone",
    "Company",
    "Job Title",
    "Date of birth",
    "Street Address",
    "Favourite Colour",
]

# fmt: off
CONTACT_ROWS = [
    ["ada.lovelace@example.com", "Ada", "Lovelace", "+44 20 7946 0018", "Analytical Engines Ltd",
     "Mathematician", "1815-12-10", "12 St James's Square, London", "Blue"],
    [" John.Smith@Example.com ", "John", "Smith", "(415) 555-2671", "Acme Corp",
     "Sales  Manager", "03/05/1985", "", "Green"],
    ["zoe.martin@example.fr", "Zoë", "Martin", "+33 1 42 68 53 00", "Café Lumière",
     "Designer", "5 Mar 1990", "", "Red"],
    ["lukasz.nowak@example.pl", "Łukasz", "Nowak", "+48 22 123 45 67", "Żabka Sp. z o.o.",
     "Engineer", "05.03.1988", "", "Yellow"],
    ["yamada.taro@example.jp", "太郎", "山田", "+81 3-1234-5678", "山田商事",
     "部長", "1975-07-20", "", ""],
    ["olga.ivanova@example.ru", "Ольга", "Иванова", "+7 495 123-45-67", "Ромашка",
     "Бухгалтер", "", "", "Purple"],
    ["JOHN.SMITH@example.com", "John", "Smith", "", "Acme Corp", "", "", "", ""],
    ["not-an-email", "Bad", "Address", "", "", "", "", "", ""],
    ["sarah.connor@example.com", "Sarah", "Connor", "+1 213 555 0199", "Cyberdyne Systems",
     "", "", "1984 Tech Way\nLos Angeles, CA 90001", "Black"],
    ["mailto:Grace.Hopper@Example.org", "Grace", "Hopper", "202-555-0147", "US Navy",
     "Rear Admiral", "December 9, 1906", "", "Navy"],
    ["Alan Turing <Alan.Turing@Example.co.uk>", "Alan", "Turing", "+44 161 496 0000",
     "University of Manchester", "Reader", "23/06/1912", "", ""],
    ["mary.jones(at)example.com", "Mary", "Jones", "", "", "", "", "", "Orange"],
    ["eve@example.com", "Eve", "Example", "+49 30 1234567", "Evil Inc", "", "", "",
     '=HYPERLINK("http://evil.example","click me")'],
    ["soren.kierkegaard@example.dk", "Søren", "Kierkegaard", "+45 32 12 34 56", "",
     "Philosopher", "1813-05-05", "", "Grey"],
    ["nguyen.van.an@example.vn", "Văn An", "Nguyễn", "+84 24 3825 3536", "Phở Hà Nội",
     "Owner", "", "", ""],
    ["jose.garcia@example.es", "José", "García", "+34 912 345 678", "Telefónica; Madrid",
     "Analyst", "1980-01-31", "", "Red"],
    ["  zoe.martin@EXAMPLE.fr", "Zoë", "Martin", "", "", "", "", "", ""],
    ["peter@@example.com", "Peter", "Parker", "", "Daily Bugle", "Photographer", "", "", "Red"],
    ["", "No", "Email", "555-0100", "", "", "", "", "Green"],
    ["li.wei@example.cn", "伟", "李", "+86 10 1234 5678", "", "", "", "", ""],
    ["muller.hans@example.de", "Hans", "Müller", "030 1234567", "Müller & Söhne GmbH",
     "Geschäftsführer", "31.12.1970", "", "+49 formula-like"],
    ["fatima.zahra@example.ma", "Fatima", "Zahra", "", "", "", "", "", ""],
    ["brian.oconnor@example.ie", "Brian", "O'Connor", "+353 1 234 5678", "", "", "", "", ""],
    ["chen.jing@example.tw", "靜", "陳", "", "", "", "", "", "Jade"],
    ["anna.schmidt@example.at", "Anna", "Schmidt", "+43 1 23456789", "", "", "", "", ""],
    ["raj.patel@example.in", "Raj", "Patel", "+91 22 1234 5678", "Tata Consultancy", "",
     "1992-11-02", "", "Saffron"],
    ["maria.rossi@example.it", "Maria", "Rossi", "+39 06 1234 5678", "", "", "", "", ""],
    ["kim.minji@example.kr", "민지", "김", "+82 2-123-4567", "", "", "", "", ""],
    ["ahmed.hassan@example.eg", "Ahmed", "Hassan", "", "", "", "", "", ""],
    ["sofia.andersson@example.se", "Sofia", "Andersson", "+46 8 123 456 78", "", "", "", "",
     "Blue"],
    ["pierre.dubois@example.fr", "Pierre", "Dubois", "", "", "", "", "", ""],
    ["lucas.silva@example.com.br", "Lucas", "Silva", "+55 11 91234-5678", "", "", "", "", ""],
    ["emma.wilson@example.com", "Emma", "Wilson", "415.555.0123", "Acme Corp", "CTO", "", "",
     ""],
    ["Emma.Wilson@example.com", "Emma", "Wilson", "", "", "", "", "", "Same person, other case"],
    ["noah.brown@example.com", "Noah", "Brown", "1-212-555-0188", "", "", "", "", ""],
    ["olivia.taylor@example.com", "Olivia", "Taylor", "", "", "", "", "", ""],
    ["liam.davies@example.co.uk", "Liam", "Davies", "07700 900123", "", "", "", "", ""],
]
# fmt: on
RAGGED_LINE = "tom.ragged@example.com;Tom;Ragged;;;;;;Blue;an extra field;and another"
"""A row with 11 fields under a 9-column header: ingest rejects it with its line number."""
RAGGED_AFTER = 20
BLANK_AFTER = 30
"""A blank line after this many rows: skipped, it is not a row."""


def contacts_csv() -> bytes:
    """UTF-8 with BOM, `;`-delimited, one blank line and one ragged row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(CONTACT_HEADER)
    for index, row in enumerate(CONTACT_ROWS, start=1):
        writer.writerow(row)
        if index == RAGGED_AFTER:
            buffer.write(RAGGED_LINE + "\n")
        if index == BLANK_AFTER:
            buffer.write("\n")
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


COMPANY_HEADER = [
    "Company Name",
    "Website",
    "Domain",
    "Industry",
    "Employees",
    "Annual Revenue",
    "Phone",
    "City",
    "Country",
    "Founded",
]

# fmt: off
COMPANY_ROWS: list[list[object]] = [
    ["Acme Corporation", "https://www.Acme.com/about", None, "Manufacturing", 1200, 125000000.5,
     "+1 415 555 0100", "San Francisco", "US", datetime(1949, 3, 5)],
    ["Globex", "http://globex.com", "globex.com", "Energy", 5400, 980000000,
     "(212) 555-0199", "New York", "US", datetime(1989, 5, 1)],
    ["Initech", "www.initech.com", None, "Software", 250, 31000000, "512-555-0142", "Austin",
     "US", None],
    ["Umbrella Corp", "https://umbrella-corp.com/en/home", None, "Pharmaceuticals", 75000,
     "$2,500,000,000", None, "Raccoon City", "US", None],
    ["Stark Industries", "https://www.starkindustries.com", None, "Defense", "1,200",
     4500000000, "+1 212 555 0123", "New York", "US", datetime(1940, 1, 1)],
    ["Wayne Enterprises", "https://wayne-enterprises.com/", "WAYNE-ENTERPRISES.COM", "Conglomerate",
     180000, 31300000000, None, "Gotham", "US", None],
    ["Wonka Industries", "https://www.wonka.co.uk/chocolate?lang=en", None, "Food", 800, None,
     "+44 20 7946 0321", "London", "GB", datetime(1964, 1, 17)],
    ["Hooli", "https://hooli.xyz", None, "Technology", 32000, 82000000000, None, "Palo Alto",
     "US", None],
    ["Pied Piper", "piedpiper.com", None, "Software", 12, 150000.75, None, "Palo Alto", "US",
     datetime(2014, 4, 6)],
    ["Soylent Industries", "https://soylent.example.com", None, "Food", 400, None, None,
     "New York", "US", None],
    ["Cyberdyne Systems", "https://www.cyberdyne-systems.com", None, "Robotics", 1500, None,
     "+1 213 555 0170", "Sunnyvale", "US", None],
    ["Tyrell Corporation", "HTTPS://WWW.TYRELL.COM/NEXUS", None, "Biotechnology", 9000, None,
     None, "Los Angeles", "US", None],
    ["Vandelay Industries", None, None, "Import/Export", 3, None, "+1 212 555 0111",
     "New York", "US", None],
    ["Dunder Mifflin", "https://www.dundermifflin.com", None, "Paper", 180, 45000000,
     "570-555-0193", "Scranton", "US", datetime(1949, 1, 1)],
    ["Aperture Science", "https://aperturescience.com", None, "Research", 600, None, None,
     "Cleveland", "US", None],
    ["Black Mesa", "https://www.blackmesa.org/", None, "Research", 2100, None, None,
     "Albuquerque", "US", None],
    ["Oscorp", "https://www.oscorp.com", None, "Biotechnology", 4000, 1200000000, None,
     "New York", "US", None],
    ["Massive Dynamic", "https://www.massivedynamic.com", None, "Technology", 43000, None,
     None, "New York", "US", None],
    ["Müller & Söhne GmbH", "https://www.müller-söhne.de/impressum", None, "Engineering", 85,
     "1.250.000,00 €", "030 1234567", "Berlin", "DE", datetime(1921, 10, 1)],
    ["Café   Lumière  SARL", "https://www.cafe-lumiere.fr", None, "Hospitality", 14, None,
     "+33 1 42 68 53 00", "Paris", "FR", None],
]
# fmt: on

NOTES_ROWS = [
    ["Imported from the 2024 trade fair leads list."],
    ["Revenue figures are estimates; ask finance before quoting them."],
    ["Vandelay Industries has no website yet."],
]


def companies_xlsx(path: Path) -> None:
    """An "Organizations" sheet with typed cells (numbers, dates) and an unrelated "Notes" sheet."""
    workbook = xlsxwriter.Workbook(path, {"strings_to_numbers": False})
    workbook.set_properties({"created": FIXED_TIME, "author": "bulk_pipeline samples"})
    bold = workbook.add_format({"bold": True})
    date = workbook.add_format({"num_format": "yyyy-mm-dd"})
    money = workbook.add_format({"num_format": "#,##0.00"})

    sheet = workbook.add_worksheet("Organizations")
    sheet.write_row(0, 0, COMPANY_HEADER, bold)
    for row, values in enumerate(COMPANY_ROWS, start=1):
        for column, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, datetime):
                sheet.write_datetime(row, column, value, date)
            elif column == COMPANY_HEADER.index("Annual Revenue") and not isinstance(value, str):
                sheet.write_number(row, column, float(str(value)), money)
            else:
                sheet.write(row, column, value)

    notes = workbook.add_worksheet("Notes")
    for row, note in enumerate(NOTES_ROWS):
        notes.write_row(row, 0, note)
    workbook.close()


# fmt: off
PERSONS = [
    {"email": "ada.lovelace@example.com", "firstname": "Ada", "lastname": "Lovelace",
     "phone": "+44 20 7946 0018", "company": "Analytical Engines Ltd",
     "location": {"street": "12 St James's Square", "city": "London", "country": "GB"},
     "tags": ["vip", "newsletter"]},
    {"email": "Zoe.Martin@Example.fr", "firstname": "Zoë", "lastname": "Martin",
     "phone": "+33 1 42 68 53 00", "company": "Café Lumière", "location": None, "tags": []},
    {"email": "lukasz.nowak@example.pl", "firstname": "Łukasz", "lastname": "Nowak",
     "phone": None, "company": "Żabka Sp. z o.o.", "tags": ["newsletter"]},
    {"email": "yamada.taro@example.jp", "firstname": "太郎", "lastname": "山田",
     "phone": "+81 3-1234-5678", "company": "山田商事"},
    {"email": "olga.ivanova@example.ru", "firstname": "Ольга", "lastname": "Иванова",
     "phone": "+7 495 123-45-67", "jobtitle": "Бухгалтер"},
    {"email": "grace.hopper@example.org", "firstname": "Grace", "lastname": "Hopper",
     "phone": "202-555-0147", "jobtitle": "Rear Admiral", "birthday": "1906-12-09"},
    {"email": "alan.turing@example.co.uk", "firstname": "Alan", "lastname": "Turing",
     "jobtitle": "Reader", "birthday": "23/06/1912"},
    {"email": "not-an-email", "firstname": "Bad", "lastname": "Address"},
    {"email": "sofia.andersson@example.se", "firstname": "Sofia", "lastname": "Andersson",
     "phone": "+46 8 123 456 78", "score": 4.5, "subscribed": True},
    {"email": "ADA.LOVELACE@example.com", "firstname": "Ada", "lastname": "Lovelace",
     "score": 3, "subscribed": False},
]
# fmt: on


def contacts_json() -> bytes:
    text = json.dumps({"persons": PERSONS}, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def main() -> None:
    (HERE / "contacts_messy.csv").write_bytes(contacts_csv())
    (HERE / "contacts.json").write_bytes(contacts_json())
    companies_xlsx(HERE / "companies.xlsx")


if __name__ == "__main__":
    main()
