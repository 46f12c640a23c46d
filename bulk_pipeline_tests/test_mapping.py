"""Header aliases, the YAML mapping file, and telling which entity a file holds."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest import RawTable
from bulk_pipeline.mapping import MappingError, infer_entity, keep_fields, load_mapping, map_columns

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "mappings" / "example.yaml"


def raw(*columns: str) -> RawTable:
    data = {name: [f"{name}-value"] for name in columns}
    return RawTable(frame=pl.DataFrame({**data, "_line": [2]}), source="test.csv")


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("e_mail", "email"),
        ("Mail", "email"),
        ("EMAIL", "email"),
        ("First Name", "first_name"),
        ("Firstname", "first_name"),
        ("Given name", "first_name"),
        ("Last name", "last_name"),
        ("Surname", "last_name"),
        ("Family name", "last_name"),
        ("Phone", "phone"),
        ("Phone Number", "phone"),
        ("Tel", "phone"),
        ("Mobile", "mobile_phone"),
        ("Company", "company"),
        ("Company Name", "company"),
        ("Organization", "company"),
        ("Job Title", "job_title"),
        ("Title", "job_title"),
        ("Position", "job_title"),
        ("Website", "website"),
        ("URL", "website"),
        ("Zip", "zip"),
        ("Postal Code", "zip"),
        ("Country", "country"),
        ("Lifecycle Stage", "lifecycle_stage"),
        ("Date of birth", "date_of_birth"),
        ("Birthday", "date_of_birth"),
        ("  Prénom ", "first_name"),
        ("Nom", "last_name"),
        ("Société", "company"),
        ("Nombre", "first_name"),
        ("Apellidos", "last_name"),
        ("Teléfono", "phone"),
        ("Unternehmen", "company"),
    ],
)
def test_contact_aliases(header: str, field: str) -> None:
    mapped = map_columns(raw(header), Entity.CONTACTS)
    assert mapped.column_map == {field: header}
    assert mapped.frame.columns == [field, "_line"]
    assert mapped.unmapped == []


@pytest.mark.parametrize(
    ("entity", "header", "field"),
    [
        (Entity.COMPANIES, "Company Name", "name"),
        (Entity.COMPANIES, "Raison sociale", "name"),
        (Entity.COMPANIES, "Empresa", "name"),
        (Entity.COMPANIES, "Organization", "name"),
        (Entity.COMPANIES, "Domain", "domain"),
        (Entity.COMPANIES, "Company Domain", "domain"),
        (Entity.COMPANIES, "URL", "website"),
        (Entity.COMPANIES, "Employees", "number_of_employees"),
        (Entity.COMPANIES, "Annual Revenue", "annual_revenue"),
        (Entity.DEALS, "Deal Name", "name"),
        (Entity.DEALS, "Amount", "amount"),
        (Entity.DEALS, "Close Date", "close_date"),
        (Entity.DEALS, "Stage", "stage"),
    ],
)
def test_company_and_deal_aliases(entity: Entity, header: str, field: str) -> None:
    assert map_columns(raw(header), entity).column_map == {field: header}


def test_unmapped_columns_are_listed_in_file_order_and_not_in_the_frame() -> None:
    mapped = map_columns(raw("Favourite Colour", "E-mail", "Shoe Size"), Entity.CONTACTS)
    assert mapped.unmapped == ["Favourite Colour", "Shoe Size"]
    assert mapped.frame.columns == ["email", "_line"]
    assert mapped.frame.row(0) == ("E-mail-value", 2)


def test_columns_named_like_the_crms_custom_fields_are_kept_for_them() -> None:
    held = frozenset({"email", "first_name", "Favourite Colour", "Job Title", "Lifecycle Stage"})
    columns = ["E-mail", "First Name", "Company", "Job Title", "favourite_colour", "Notes"]
    mapped = map_columns(raw(*columns), Entity.CONTACTS, custom=held)
    kept = keep_fields(mapped, Entity.CONTACTS, held, columns)

    assert kept.column_map == {
        "email": "E-mail",
        "first_name": "First Name",
        "company": "Company",
        "Job Title": "Job Title",
        "Favourite Colour": "favourite_colour",
    }, "a company is a reference, kept whatever the CRM holds; a job title goes to its field"
    assert kept.unmapped == ["Notes"]
    assert kept.frame["Job Title"].to_list() == ["Job Title-value"]


def test_link_fields_are_never_taken_for_custom_fields() -> None:
    held = frozenset({"email", "company_crm_id"})
    mapped = map_columns(raw("Email", "Company CRM ID"), Entity.CONTACTS, custom=held)
    kept = keep_fields(mapped, Entity.CONTACTS, held, ["Email", "Company CRM ID"])

    assert kept.column_map == {"email": "Email"}
    assert kept.unmapped == ["Company CRM ID"]


def test_first_of_two_columns_for_one_field_wins() -> None:
    mapped = map_columns(raw("Mail", "Email Address"), Entity.CONTACTS)
    assert mapped.column_map == {"email": "Mail"}
    assert mapped.unmapped == ["Email Address"]


def test_column_named_exactly_like_a_field_beats_an_earlier_alias() -> None:
    mapped = map_columns(raw("Company", "name"), Entity.COMPANIES)
    assert mapped.column_map == {"name": "name"}
    assert mapped.unmapped == ["Company"]


def test_frame_columns_follow_the_entity_field_order() -> None:
    mapped = map_columns(raw("Phone", "Last Name", "Email"), Entity.CONTACTS)
    assert mapped.frame.columns == ["email", "last_name", "phone", "_line"]


def test_mapping_overrides_aliases_and_ignores_columns() -> None:
    mapping = {"contacts": {"E-Mail Adresse": "email", "Notes": None, "Mail": "company"}}
    mapped = map_columns(raw("Mail", "E-Mail Adresse", "notes"), Entity.CONTACTS, mapping)
    assert mapped.column_map == {"email": "E-Mail Adresse", "company": "Mail"}
    assert mapped.unmapped == ["notes"]
    assert mapped.ignored == ["notes"]


def test_columns_for_fields_the_crm_has_no_place_for_are_not_sent() -> None:
    columns = ["Shoe Size", "E-mail", "Date of birth", "Job Title"]
    mapped = map_columns(raw(*columns), Entity.CONTACTS)
    kept = keep_fields(mapped, Entity.CONTACTS, frozenset({"first_name", "job_title"}), columns)
    assert kept.column_map == {"email": "E-mail", "job_title": "Job Title"}
    assert kept.unmapped == ["Shoe Size", "Date of birth"]
    assert kept.frame.columns == ["email", "job_title", "_line"]


def test_deal_owners_have_aliases() -> None:
    for header in ("Owner", "Deal Owner", "Owner Email"):
        assert map_columns(raw("Deal Name", header), Entity.DEALS).column_map["owner"] == header


def test_mapping_for_another_entity_does_not_apply() -> None:
    mapping = {"companies": {"Mail": "name"}}
    assert map_columns(raw("Mail"), Entity.CONTACTS, mapping).column_map == {"email": "Mail"}


def test_load_mapping_reads_the_example_file() -> None:
    mapping = load_mapping(EXAMPLE)
    assert mapping["contacts"]["E-Mail Adresse"] == "email"
    assert mapping["contacts"]["Favourite Colour"] is None
    assert set(mapping) == {"contacts", "companies", "deals"}


def test_unknown_target_field_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text('contacts:\n  "E-Mail Adresse": mail\n', encoding="utf-8")
    with pytest.raises(MappingError, match=r"'E-Mail Adresse' maps to 'mail'.*Did you mean"):
        load_mapping(path)


def test_unknown_section_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("people:\n  Mail: email\n", encoding="utf-8")
    with pytest.raises(MappingError, match="unknown section 'people'"):
        load_mapping(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("contacts:\n  Mail: email\n  - broken\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"mapping.yaml: line 3: not valid YAML"):
        load_mapping(path)


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("contacts:\n  - email\n", encoding="utf-8")
    with pytest.raises(MappingError, match="section 'contacts' must map source columns"):
        load_mapping(path)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read the mapping file"):
        load_mapping(tmp_path / "nope.yaml")


def test_in_memory_mapping_is_checked_too() -> None:
    with pytest.raises(MappingError, match="not a deals field"):
        map_columns(raw("X"), Entity.DEALS, {"deals": {"X": "email"}})


@pytest.mark.parametrize(
    ("columns", "entity"),
    [
        (["E-mail", "First Name", "Company", "Website"], Entity.CONTACTS),
        (["Company Name", "Website", "Employees"], Entity.COMPANIES),
        (["Name", "Domain"], Entity.COMPANIES),
        (["Deal Name", "Owner"], Entity.DEALS),
        (["Name", "Amount", "Stage"], Entity.DEALS),
        (["First Name", "Last Name"], None),
        (["Company Name"], None),
        (["Email", "Deal Name", "Amount"], None),
        (["_line"], None),
    ],
)
def test_infer_entity_from_headers(columns: list[str], entity: Entity | None) -> None:
    assert infer_entity([*columns, "_line"]) == entity


def test_hint_from_sheet_or_key_wins() -> None:
    assert infer_entity(["Email"], Entity.COMPANIES) == Entity.COMPANIES


def test_a_mapping_file_names_the_entity_of_headers_no_alias_knows() -> None:
    only_contacts = {"contacts": {"Courriel Pro": "email"}}
    two_sections = {
        "contacts": {"Courriel Pro": "email"},
        "companies": {"Raison Sociale": "name", "Site": "website"},
    }

    assert infer_entity(["Courriel Pro", "Prénom"], mapping=only_contacts) == Entity.CONTACTS
    assert infer_entity(["raison sociale", "Site"], mapping=two_sections) == Entity.COMPANIES
    assert infer_entity(["Something"], mapping=two_sections) is None
    assert infer_entity(["Email"], Entity.DEALS, mapping=only_contacts) == Entity.DEALS
