"""Adding records to a CRM list, as any target with lists does it (on the in-memory CRM):
each record once however often it is asked, a missing list a clear error or created on request,
a CRM without lists refusing the option."""

from __future__ import annotations

import pytest

from bulk_pipeline.entities import Entity
from bulk_pipeline.errors import UserInputError
from bulk_pipeline.targets.fake import FakeCrm, fake_target, with_capabilities


def test_records_are_added_once_however_often_asked() -> None:
    crm = FakeCrm(capabilities=with_capabilities(lists=True, batch_size=1, concurrency=3))
    crm.lists["Q3 leads"] = ["7"]
    target = fake_target(crm)

    first = target.add_to_list("Q3 leads", Entity.CONTACTS, ["1", "2", "7", "2", ""])
    again = target.add_to_list("Q3 leads", Entity.CONTACTS, ["1", "2", "7"])

    assert (first.added, first.already, first.failed) == (2, 1, [])
    assert (again.added, again.already) == (0, 3)
    assert sorted(crm.lists["Q3 leads"]) == ["1", "2", "7"]
    assert crm.calls["add_to_list"] == 2, "one call per record the list lacked"


def test_a_missing_list_is_an_error_unless_its_creation_is_asked_for() -> None:
    crm = FakeCrm(capabilities=with_capabilities(lists=True))
    target = fake_target(crm)
    with pytest.raises(UserInputError, match="no list named 'Nope'"):
        target.add_to_list("Nope", Entity.CONTACTS, ["1"])
    assert target.add_to_list("Nope", Entity.CONTACTS, ["1"], create=True).added == 1
    assert crm.lists == {"Nope": ["1"]}


def test_a_crm_without_lists_refuses_the_option() -> None:
    target = fake_target(FakeCrm())
    with pytest.raises(UserInputError, match="has no lists"):
        target.add_to_list("Q3 leads", Entity.CONTACTS, ["1"])
