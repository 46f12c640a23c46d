"""JSON and NDJSON: arrays, objects keyed by entity, nested values, element and line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.ingest import InputFileError, Limits, read_file
from bulk_pipeline.ingest.json import RAW_VALUE


def write(tmp_path: Path, text: str, name: str = "export.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_array_of_objects_with_element_numbers_as_lines(tmp_path: Path) -> None:
    document = [
        {"email": "a@x.com", "name": "Ольга", "age": 41, "score": 1.50, "vip": True},
        {"email": "b@x.com", "extra": None},
    ]
    table = read_file(write(tmp_path, json.dumps(document, ensure_ascii=False)))
    assert table.frame.columns == ["email", "name", "age", "score", "vip", "extra", "_line"]
    assert table.frame.rows() == [
        ("a@x.com", "Ольга", "41", "1.5", "true", None, 1),
        ("b@x.com", None, None, None, None, None, 2),
    ]
    assert table.entity_hint is None


def test_numbers_keep_their_written_form(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, '[{"amount": 1200.50, "count": 3}]'))
    assert table.frame.row(0) == ("1200.50", "3", 1)


def test_nested_values_become_json_text(tmp_path: Path) -> None:
    document = [{"email": "a@x.com", "address": {"city": "Zürich", "zip": 8001}, "tags": ["a"]}]
    frame = read_file(write(tmp_path, json.dumps(document))).frame
    assert frame["address"].to_list() == ['{"city":"Zürich","zip":8001}']
    assert frame["tags"].to_list() == ['["a"]']


def test_object_keyed_by_entity_picks_the_list_and_hints_the_entity(tmp_path: Path) -> None:
    document = {
        "organizations": [{"name": "Acme"}],
        "persons": [{"email": "a@x.com"}, {"email": "b@x.com"}],
    }
    path = write(tmp_path, json.dumps(document))
    first = read_file(path)
    assert (first.sheet, first.entity_hint) == ("organizations", Entity.COMPANIES)
    people = read_file(path, entity=Entity.CONTACTS)
    assert (people.sheet, people.entity_hint) == ("persons", Entity.CONTACTS)
    assert people.frame.rows() == [("a@x.com", 1), ("b@x.com", 2)]


def test_single_unnamed_list_such_as_api_results_is_read(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, json.dumps({"total": 1, "results": [{"id": "7"}]})))
    assert table.frame.rows() == [("7", 1)]
    assert table.entity_hint is None


def test_object_without_rows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no array under a key naming 'deals'"):
        read_file(write(tmp_path, json.dumps({"persons": []})), entity=Entity.DEALS)


def test_element_that_is_not_an_object_is_a_row_issue(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, '[{"email": "a@x.com"}, "oops", [1], {"email": "b"}]'))
    assert table.frame["_line"].to_list() == [1, 4]
    assert [(i.line, i.reason, i.values) for i in table.rejected] == [
        (2, "element is a string, not an object with named fields", {RAW_VALUE: "oops"}),
        (3, "element is a list, not an object with named fields", {RAW_VALUE: "[1]"}),
    ]


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"line 2, column 13: not valid JSON"):
        read_file(write(tmp_path, '[\n  {"email": }\n]'))


def test_ndjson_lines_blank_lines_and_a_broken_line(tmp_path: Path) -> None:
    text = '{"email": "a@x.com"}\n\n{"email": "b@x.com", "name": "Zoë"}\n{broken\n'
    table = read_file(write(tmp_path, text, "export.ndjson"))
    assert table.frame.rows() == [("a@x.com", None, 1), ("b@x.com", "Zoë", 3)]
    [issue] = table.rejected
    assert issue.line == 4
    assert issue.reason.startswith("line is not valid JSON")
    assert issue.values == {RAW_VALUE: "{broken"}


def test_json_file_holding_one_object_per_line_is_read_as_ndjson(tmp_path: Path) -> None:
    text = '{"email": "a@x.com"}\n{"email": "b@x.com"}\n'
    assert read_file(write(tmp_path, text, "export.json")).frame.height == 2


def test_row_limit_applies_to_json(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="more than the limit of 2"):
        read_file(write(tmp_path, json.dumps([{"a": 1}] * 3)), limits=Limits(max_rows=2))
    text = "\n".join(['{"a": 1}'] * 3)
    with pytest.raises(InputFileError, match="more than the limit of 2"):
        read_file(write(tmp_path, text, "x.jsonl"), limits=Limits(max_rows=2))


def test_objects_without_any_field_are_not_rows(tmp_path: Path) -> None:
    table = read_file(write(tmp_path, "[{}, {}]"))
    assert table.frame.height == 0
    assert table.frame.columns == ["_line"]
