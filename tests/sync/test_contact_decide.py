"""Deciding contacts without a store (sync.contact_sync): the three-way merge per field,
echo suppression, matching by e-mail, flags for deletes, pushes of what changed."""

from __future__ import annotations

from connectors.base import CrmContact
from sync.contact_sync import (
    AdoptionState,
    BillingContact,
    ContactsState,
    decide_adoptions,
    decide_contact_pushes,
    decide_contacts,
)

BASE = {"name": "Ann Lee", "email": "Ann@Example.com", "communications": "billing"}


def _state(*contacts: BillingContact, unsynced: BillingContact | None = None) -> ContactsState:
    return ContactsState(
        owners={"acc-1": "cust-1"},
        by_crm_id={c.crm_id: c for c in contacts if c.crm_id},
        unsynced={("cust-1", "bo@example.com"): unsynced} if unsynced else {},
    )


def _billing(**fields: str | None) -> BillingContact:
    return BillingContact("k-1", "cust-1", "crm-1", {**BASE, **fields}, dict(BASE))


def _crm(
    name: str = "Ann Lee", email: str | None = "ann@example.com", deleted: bool = False
) -> CrmContact:
    return CrmContact("crm-1", "acc-1", name, email, deleted=deleted)


def test_an_echo_of_the_pushed_values_changes_nothing_even_lower_cased() -> None:
    decision = decide_contacts(_state(_billing()), [_crm()])
    assert decision.is_empty()


def test_a_crm_change_is_taken_and_a_billing_change_kept_for_the_push() -> None:
    (change,) = decide_contacts(
        _state(_billing(email="ann@new.example")), [_crm("Ann Park")]
    ).change
    assert change.changes == {"name": "Ann Park"}
    assert change.base["name"] == "Ann Park" and change.base["email"] == "Ann@Example.com"
    assert change.pending is True  # the e-mail is billing's, still to push


def test_both_sides_changing_a_field_is_a_conflict_and_neither_is_written() -> None:
    decision = decide_contacts(_state(_billing(name="Ann Moss")), [_crm("Ann Park")])
    (conflict,) = decision.conflicts
    assert (conflict.field, conflict.base, conflict.billing, conflict.crm) == (
        "name",
        "Ann Lee",
        "Ann Moss",
        "Ann Park",
    )
    assert all("name" not in c.changes for c in decision.change)


def test_a_delete_or_a_move_off_the_linked_accounts_is_a_flag() -> None:
    deleted = decide_contacts(_state(_billing()), [_crm(deleted=True)])
    assert deleted.flag == ("k-1",) and not deleted.change
    moved = decide_contacts(_state(_billing()), [CrmContact("crm-1", "acc-9", "Ann Lee", None)])
    assert moved.flag == ("k-1",)


def test_a_new_crm_contact_links_a_billing_contact_by_email_or_is_attached() -> None:
    waiting = BillingContact("k-2", "cust-1", None, {"name": "Bo", "email": "Bo@example.com"}, None)
    found = CrmContact("crm-2", "acc-1", "Bo Park", "bo@example.com")
    other = CrmContact("crm-3", "acc-1", "Cy", "cy@example.com")
    decision = decide_contacts(_state(unsynced=waiting), [found, other])
    (linked,) = decision.change
    assert (linked.id, linked.crm_id) == ("k-2", "crm-2")
    assert [a.crm_id for a in decision.attach] == ["crm-3"]


def test_pushes_carry_what_differs_from_the_base_and_creates_carry_everything() -> None:
    changed = _billing(name="Ann Moss")
    new = BillingContact("k-3", "cust-1", None, {"name": "Di", "email": None}, None, version=2)
    pushes = decide_contact_pushes([(changed, "acc-1"), (new, "acc-1")], {}, communications=False)
    assert [(p.crm_id, p.fields) for p in pushes] == [
        ("crm-1", {"name": "Ann Moss"}),
        (None, {"name": "Di"}),
    ]
    held = decide_contact_pushes(
        [(changed, "acc-1")], {"crm-1": frozenset({"name"})}, communications=False
    )
    assert held[0].fields == {}  # a field with an open conflict waits for the operator


def test_a_create_whose_email_the_crm_has_adopts_that_contact_unless_it_is_taken() -> None:
    """Deciding adoptions reads nothing: the CRM contacts found by the creates' e-mails
    and what the store knows of them come in, adoptions and taken e-mails come out."""
    new = [
        BillingContact(f"k-{i}", customer, None, {"name": name, "email": email}, None)
        for i, (customer, name, email) in enumerate(
            [
                ("cust-1", "Ann Lee", "Ann@Example.com"),  # a nameless CRM contact
                ("cust-1", "Bo Chen", "bo@example.com"),  # the CRM's has another name
                ("cust-2", "Bo Chen", "bo@example.com"),  # adopted by k-1 just before
                ("cust-1", "Cy", "cy@example.com"),  # linked to another billing contact
                ("cust-1", "Di", "di@example.com"),  # of another customer's company
                ("cust-1", "Eve", "eve@example.com"),  # the CRM has none: a create
            ]
        )
    ]
    pushes = decide_contact_pushes([(c, "acc-1") for c in new], {}, communications=False)
    found = {
        "ann@example.com": CrmContact("c-ann", None, "", "ann@example.com"),
        "bo@example.com": CrmContact("c-bo", "acc-1", "Bobby Chen", "bo@example.com"),
        "cy@example.com": CrmContact("c-cy", "acc-1", "Cy", "cy@example.com"),
        "di@example.com": CrmContact("c-di", "acc-9", "Di", "di@example.com"),
    }
    state = AdoptionState(
        creates=tuple(p for p in pushes if p.fields.get("email")),
        found=found,
        holders={"c-cy": ("k-other", "cust-3")},
        companies={"acc-1": "cust-1", "acc-9": "cust-9"},
    )
    adoptions, taken = decide_adoptions(state)
    assert [(a.contact_id, a.crm_id, a.associate, a.fill) for a in adoptions] == [
        ("k-0", "c-ann", "primary", {"name": "Ann Lee"}),
        ("k-1", "c-bo", "other", {}),
    ]
    ann, bo = adoptions
    assert ann.change.changes == {} and ann.base["email"] == "Ann@Example.com"
    assert [(c.field, c.billing, c.crm) for c in bo.conflicts] == [
        ("name", "Bo Chen", "Bobby Chen")
    ]
    assert [(t.contact_id, t.customer_id) for t in taken] == [
        ("k-2", "cust-2"),
        ("k-3", "cust-1"),
        ("k-4", "cust-1"),
    ]
    assert "adopted by billing contact k-1" in taken[0].message
    assert "linked to billing contact k-other" in taken[1].message
    assert "linked to customer cust-9" in taken[2].message
