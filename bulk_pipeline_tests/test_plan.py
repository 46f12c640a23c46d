from bulk_pipeline.push.plan import Action, PlanSummary, changed_fields, plan_record
from bulk_pipeline.targets.base import CrmRecord

OURS = {"email": "ada@example.com", "first_name": "Ada", "phone": "+442079460018"}


def test_a_missing_record_is_created_with_every_field() -> None:
    planned = plan_record("ada@example.com", 2, OURS, None)
    assert planned.action is Action.CREATE
    assert planned.fields == OURS


def test_an_update_sends_only_changed_fields_and_captures_their_old_values() -> None:
    existing = CrmRecord("17", {"email": "ada@example.com", "first_name": "A.", "phone": None})
    planned = plan_record("ada@example.com", 2, OURS, existing)
    assert planned.action is Action.UPDATE
    assert planned.fields == {"first_name": "Ada", "phone": "+442079460018"}
    assert planned.before == {"first_name": "A.", "phone": None}
    assert planned.crm_id == "17"


def test_identical_values_are_unchanged_and_blanks_never_clear_the_crm() -> None:
    existing = CrmRecord("17", {**OURS, "company": "Analytical Engines"})
    assert plan_record("ada@example.com", 2, {**OURS, "company": ""}, existing).action is (
        Action.UNCHANGED
    )
    assert changed_fields({"company": ""}, CrmRecord("17", {"company": "Analytical Engines"})) == {}


def test_numbers_are_compared_as_numbers_and_codes_as_text() -> None:
    existing = CrmRecord("17", {"amount": "1200.5", "zip": "1234"})
    assert changed_fields({"amount": "1200.50", "zip": "01234"}, existing) == {"zip": "01234"}
    assert changed_fields({"amount": "1200.51"}, existing) == {"amount": "1200.51"}


def test_a_value_among_the_crms_several_is_held_and_case_counts_only_where_the_crm_cares() -> None:
    existing = CrmRecord(
        "17",
        {"phone": "+33142685300", "stage": "In Progress", "first_name": "Ada"},
        also={"phone": ("+442079460018",)},
        case_blind=frozenset({"stage"}),
    )
    ours = {"phone": "+442079460018", "stage": "in progress", "first_name": "ADA"}
    assert changed_fields(ours, existing) == {"first_name": "ADA"}


def test_a_record_recreated_under_another_id_is_a_conflict_not_a_write() -> None:
    existing = CrmRecord("99", dict(OURS))
    planned = plan_record("ada@example.com", 2, OURS, existing, known_crm_id="17")
    assert planned.action is Action.CONFLICT
    assert "99" in (planned.reason or "") and "17" in (planned.reason or "")


def test_summary_counts_actions_and_changed_fields() -> None:
    existing = CrmRecord("1", {"email": "b@x.com", "first_name": "B"})
    records = [
        plan_record("a@x.com", 2, {"email": "a@x.com"}, None),
        plan_record("b@x.com", 3, {"email": "b@x.com", "first_name": "Bee"}, existing),
        plan_record("c@x.com", 4, {"email": "c@x.com"}, CrmRecord("2", {"email": "c@x.com"})),
    ]
    summary = PlanSummary.of(records)
    assert (summary.creates, summary.updates, summary.unchanged, summary.conflicts) == (1, 1, 1, 0)
    assert summary.changed_field_counts == {"first_name": 1}
    assert summary.create_share == 1 / 3
