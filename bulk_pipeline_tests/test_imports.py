import re
from pathlib import Path

import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.imports import import_id_for, load_import, register_import

PARTITION_SAFE = re.compile(r"^[a-z0-9_-]+-[0-9a-f]{10}$")


@pytest.mark.parametrize(
    "name",
    ["Kontakte März 2024 (final).csv", "...csv", "a,b|c[1].xlsx", "../../etc.json", "Ω.csv"],
)
def test_import_ids_are_valid_partition_keys(name: str) -> None:
    import_id = import_id_for(name, "0123456789abcdef")
    assert PARTITION_SAFE.match(import_id)
    assert "..." not in import_id


def test_the_same_content_is_the_same_import_and_options_are_remembered(tmp_path: Path) -> None:
    first = tmp_path / "contacts.csv"
    first.write_text("email\na@x.com\n", encoding="utf-8")
    changed = tmp_path / "other" / "contacts.csv"
    changed.parent.mkdir()
    changed.write_text("email\nb@x.com\n", encoding="utf-8")

    one = register_import(first, entity=Entity.CONTACTS)
    again = register_import(first)
    other = register_import(changed)

    assert one.import_id == again.import_id
    assert one.import_id != other.import_id
    assert load_import(one.import_id).entity is None
    assert Path(load_import(one.import_id).stored_path).read_text() == "email\na@x.com\n"
