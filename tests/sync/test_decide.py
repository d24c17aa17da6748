"""Deciding a page, without a database: CRM records and what the reads found in, a typed
decision out."""

from __future__ import annotations

import copy

from connectors.base import CrmCustomer
from sync.decide import PageState, Policy, PushState, decide_page, decide_pushes
from sync.decision import BillingCustomer, Link

FIELDS = ("customer_name", "email", "address.city", "address.country_code")
POLICY = Policy("org", "conn", FIELDS)
AGREED = {
    "customer_name": "Acme",
    "email": None,
    "address.city": "Oslo",
    "address.country_code": "NO",
}


def customer(**changes: object) -> BillingCustomer:
    return BillingCustomer("cust-1", {**AGREED, "external_id": "crm-1", **changes})


def linked_state(billing: BillingCustomer, **extra: object) -> PageState:
    link = Link("link-1", billing.id, "crm-1", base=dict(AGREED))
    return PageState(links={"crm-1": link}, customers={billing.id: billing}, **extra)  # type: ignore[arg-type]


def record(crm_id: str = "crm-1", **fields: object) -> CrmCustomer:
    return CrmCustomer(crm_id, {**AGREED, **fields})  # type: ignore[dict-item]


def test_a_new_crm_record_becomes_a_validated_customer_with_its_link() -> None:
    (decision,) = decide_page(
        POLICY, PageState(), [record("crm-9", **{"address.country_code": "no"})]
    )
    assert decision.counts == ("created",)
    assert decision.new_customer is not None
    assert decision.new_customer.fields["external_id"] == "crm-9"
    assert decision.new_customer.fields["address.country_code"] == "NO"  # as the model stores it
    assert decision.link is not None and decision.link.new and decision.link.crm_id == "crm-9"
    assert decision.push is None and decision.failure is None


def test_a_crm_change_updates_billing_and_a_billing_change_is_pushed() -> None:
    billing = customer(customer_name="Acme Billing")
    (decision,) = decide_page(POLICY, linked_state(billing), [record(**{"address.city": "Bergen"})])
    assert decision.change is not None and decision.change.changes == {"address.city": "Bergen"}
    assert decision.push is not None
    assert (decision.push.fields, decision.push.before) == (
        {"customer_name": "Acme Billing"},
        {"customer_name": "Acme"},
    )
    assert decision.counts == ("updated",)


def test_both_sides_changing_a_field_differently_opens_a_conflict_and_writes_neither() -> None:
    billing = customer(customer_name="Billing Name")
    (decision,) = decide_page(POLICY, linked_state(billing), [record(customer_name="CRM Name")])
    assert [(c.field, c.billing, c.crm) for c in decision.conflicts] == [
        ("customer_name", "Billing Name", "CRM Name")
    ]
    assert decision.change is None and decision.push is None


def test_a_first_link_that_breaks_the_match_rule_is_a_conflict() -> None:
    fields = {**AGREED, "customer_name": "Acme Corporation", "external_id": "crm-1"}
    billing = BillingCustomer("cust-2", fields)
    state = PageState(customers={"cust-2": billing}, by_external_id={"crm-1": billing})
    (decision,) = decide_page(POLICY, state, [record(email="ap@acme.example")])
    assert decision.counts[0] == "linked"
    assert decision.link is not None and decision.link.new
    assert [c.field for c in decision.conflicts] == ["customer_name"]
    # outside name and address, an empty billing field takes the CRM's value
    assert decision.change is not None
    assert decision.change.changes == {"email": "ap@acme.example"}


def test_a_crm_value_the_model_refuses_fails_that_record_only() -> None:
    records = [record("crm-8", customer_name=""), record("crm-9")]
    failed, created = decide_page(POLICY, PageState(), records)
    assert failed.failure is not None and "customer_name" in failed.failure.message
    assert failed.counts == ("failed",)
    assert created.new_customer is not None


def test_an_email_another_customer_has_is_held_as_a_conflict() -> None:
    billing = customer()
    state = linked_state(billing, email_owners={"a@example.com": "cust-other"})
    (decision,) = decide_page(
        POLICY, state, [record(email="a@example.com", **{"address.city": "Bergen"})]
    )
    assert [c.field for c in decision.conflicts] == ["email"]
    assert decision.change is not None and decision.change.changes == {"address.city": "Bergen"}


def test_a_delete_marks_the_link_and_a_merge_into_an_unlinked_record_repoints_it() -> None:
    billing = customer()
    (deleted,) = decide_page(
        POLICY, linked_state(billing), [CrmCustomer("crm-1", {}, deleted=True)]
    )
    assert deleted.move is not None and deleted.move.state == "remote_deleted"
    merged = CrmCustomer("crm-1", {}, deleted=True, merged_into="crm-2")
    survivor = record("crm-2", **{"address.city": "Bergen"})
    moved, synced = decide_page(POLICY, linked_state(billing), [survivor, merged])
    assert moved.move is not None and (moved.move.state, moved.move.crm_id) == ("active", "crm-2")
    assert synced.change is not None and synced.change.changes == {"address.city": "Bergen"}


def test_deciding_changes_nothing_it_was_given() -> None:
    billing = customer(customer_name="Acme Billing")
    state = linked_state(billing)
    records = [record(**{"address.city": "Bergen"}), record("crm-9")]
    kept = copy.deepcopy((state, records))
    first = decide_page(POLICY, state, records)
    assert (state, records) == kept
    second = decide_page(POLICY, state, records)
    assert [d.counts for d in first] == [d.counts for d in second]


def test_billing_side_changes_are_pushed_and_billing_only_customers_created_in_the_crm() -> None:
    policy = Policy("org", "conn", FIELDS, directions={"address.city": "crm_to_billing"})
    linked = customer(customer_name="Renamed", **{"address.city": "Paris"})
    alone = BillingCustomer("cust-3", {"customer_name": "Only Billing", "external_id": None})
    state = PushState(
        customers=[linked, alone],
        links={linked.id: Link("link-1", linked.id, "crm-1", base=dict(AGREED))},
    )
    pushed, created = decide_pushes(policy, state)
    assert pushed.push is not None and pushed.push.fields == {"customer_name": "Renamed"}
    # billing may not change a CRM-owned field: it is put back
    assert pushed.change is not None and pushed.change.changes == {"address.city": "Oslo"}
    assert created.push is not None and created.push.crm_id is None
    assert created.push.fields == {"customer_name": "Only Billing"}
    assert created.push.set_external_id


def test_only_carry_out_asks_whether_a_run_is_a_plan() -> None:
    """Plan mode is branched on in one place (sync.apply.carry_out: show the decision, or
    apply it), so that no step can plan one thing and do another. (The run's result hands
    the plan over; that is no branch.)"""
    import ast
    from pathlib import Path

    import sync

    def asks(test: ast.AST) -> bool:
        return any(
            isinstance(n, ast.Attribute)
            and n.attr == "plan"
            and isinstance(n.value, ast.Name)
            and n.value.id == "ctx"
            for n in ast.walk(test)
        )

    branches = []
    for path in sorted(Path(sync.__file__).parent.rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                tests = [node.test] if isinstance(node, ast.If | ast.IfExp | ast.While) else []
                if isinstance(node, ast.comprehension):
                    tests = list(node.ifs)
                if any(asks(t) for t in tests):
                    branches.append(f"{path.name}:{function.name}")
    assert branches == ["apply.py:carry_out"]
