"""Secondary contacts both ways (issue 12 §5), on both CRMs and both stores, through the
sandbox and the real client libraries: billing contacts reach the CRM under the linked
account / company in batches, CRM changes come back, a pushed value never comes back as a
change, both sides changing a field opens a conflict, deletes are flagged and never
carried over, a refused contact goes to the dead letter and is retried, and a plan shows
the pushes a run makes."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest
from sqlalchemy import Engine, event

from connectors.base import Connector, CrmContact
from connectors.errors import ConfigError
from sandbox.server import Sandbox
from sync import contacts
from sync.conflicts import resolve_conflict
from sync.connections import open_connector, update_connection
from sync.contacts import ContactPatch
from sync.customer import Contact, CustomerIn
from sync.customers import create_customer
from sync.failures import retry_failures
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tests.sync.conftest import World, make_world
from tests.sync.test_conflicts import Watched


def _linked(world: World, count: int) -> list[tuple[str, str]]:
    """Seed ``count`` CRM records, sync them in; (customer id, CRM id) of each."""
    crm_ids = world.harness.seed(count)
    result = world.sync(full=True)
    assert result.status == "succeeded", result.error
    by_crm = {link.crm_id: link.customer_id for link in world.links()}
    return [(by_crm[crm_id], crm_id) for crm_id in crm_ids]


def _add(world: World, customer_id: str, name: str, email: str, **extra: Any) -> str:
    with transaction(world.engine) as s:
        added = contacts.add_contact(
            s, world.organisation_id, customer_id, Contact(name=name, email=email, **extra)
        )
    return str(added.id)


def _change(world: World, customer_id: str, contact_id: str, **fields: Any) -> None:
    with transaction(world.engine) as s:
        contacts.change_contact(
            s, world.organisation_id, customer_id, contact_id, ContactPatch(**fields)
        )


def _billing(world: World, customer_id: str) -> dict[str, contacts.ContactOut]:
    """The customer's billing contacts by e-mail."""
    with transaction(world.engine) as s:
        found = contacts.list_contacts(s, world.organisation_id, customer_id)
    return {str(c.email): c for c in found}


def _crm(
    world: World, account_id: str, settings: dict[str, Any] | None = None
) -> dict[str, CrmContact]:
    """The CRM's contacts of an account / company by e-mail, read with the client."""
    return {str(c.email): c for c in _all_in_crm(world, settings) if c.customer_id == account_id}


def _all_in_crm(world: World, settings: dict[str, Any] | None = None) -> list[CrmContact]:
    """Every live contact in the CRM (Salesforce's full pull lists deleted ones too)."""
    connector = world.harness.connector(**(settings or {}))
    pulled = [c for page in connector.pull_contacts(None, full=True) for c in page.records]
    return [c for c in pulled if not c.deleted]


def _edit_in_crm(world: World, crm_id: str, last_name: str) -> None:
    harness: Any = world.harness
    if harness.key == "salesforce":
        harness.sf.edit("Contact", crm_id, {"LastName": last_name})
    else:
        harness.hs.edit(crm_id, {"lastname": last_name}, object_type="contacts")


def _delete_in_crm(world: World, crm_id: str) -> None:
    harness: Any = world.harness
    if harness.key == "salesforce":
        harness.sf.delete("Contact", crm_id)
    else:
        harness.hs.archive(crm_id, "contacts")


def test_a_billing_contact_reaches_the_crm_and_does_not_come_back(world: World) -> None:
    (customer, account), _ = _linked(world, 2)
    contact_id = _add(world, customer, "Ann Lee", "ann.lee@example.com")
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["contacts_crm_created"] == 1
    in_crm = _crm(world, account)["ann.lee@example.com"]
    assert in_crm.name == "Ann Lee"
    billing = _billing(world, customer)["ann.lee@example.com"]
    assert (str(billing.id), billing.crm_id, billing.pending) == (contact_id, in_crm.id, False)
    # the next syncs pull the contact the push wrote: nothing changes, nothing is pushed
    for _ in range(2):
        again = world.sync()
        assert again.status == "succeeded", again.error
        assert again.counters["contacts"] == 0
        assert again.counters["contacts_pushed"] + again.counters["contacts_crm_created"] == 0
    assert _billing(world, customer)["ann.lee@example.com"] == billing
    emails = [c.email for c in _all_in_crm(world)]
    assert emails.count("ann.lee@example.com") == 1  # no duplicate made


def test_changes_flow_both_ways_field_by_field(world: World) -> None:
    ((customer, account),) = _linked(world, 1)
    contact_id = _add(world, customer, "Bo Park", "bo@example.com")
    world.sync()
    crm_id = _crm(world, account)["bo@example.com"].id
    # billing changes the name: pushed, and only the name
    _change(world, customer, contact_id, name="Bo Parker")
    pushed = world.sync()
    assert pushed.counters["contacts_pushed"] == 1
    assert _crm(world, account)["bo@example.com"].name == "Bo Parker"
    # the CRM changes it: pulled into billing, nothing pushed back
    _edit_in_crm(world, crm_id, "Parkes")
    pulled = world.sync()
    assert pulled.counters["contacts"] == 1
    assert pulled.counters["contacts_pushed"] == 0
    contact = _billing(world, customer)["bo@example.com"]
    assert (contact.name, contact.pending) == ("Bo Parkes", False)


def test_both_sides_changing_a_field_opens_a_conflict_and_writes_neither(world: World) -> None:
    ((customer, account),) = _linked(world, 1)
    contact_id = _add(world, customer, "Cy Moss", "cy@example.com")
    world.sync()
    crm_id = _crm(world, account)["cy@example.com"].id
    _change(world, customer, contact_id, name="Cy Mossman")
    _edit_in_crm(world, crm_id, "Moss-Brown")
    result = world.sync()
    assert result.status == "succeeded", result.error
    (conflict,) = [c for c in world.conflicts() if c.kind == "contact"]
    assert (conflict.field, conflict.crm_id) == ("contact.name", crm_id)
    assert (conflict.base_value, conflict.billing_value, conflict.crm_value) == (
        "Cy Moss",
        "Cy Mossman",
        "Cy Moss-Brown",
    )
    assert _billing(world, customer)["cy@example.com"].name == "Cy Mossman"
    assert _crm(world, account)["cy@example.com"].name == "Cy Moss-Brown"
    again = world.sync()  # the open conflict is not opened twice, nor overwritten
    assert again.counters["conflicts_opened"] == 0
    assert len([c for c in world.conflicts() if c.kind == "contact"]) == 1
    assert _crm(world, account)["cy@example.com"].name == "Cy Moss-Brown"
    # the operator keeps billing's: written to the CRM, and the base, once
    done = resolve_conflict(
        world.engine,
        world.settings,
        world.organisation_id,
        conflict.id,
        keep="billing",
        actor="test",
    )
    assert (done.value, done.crm_written, done.billing_written) == ("Cy Mossman", True, False)
    assert _crm(world, account)["cy@example.com"].name == "Cy Mossman"
    after = world.sync()
    assert after.counters["contacts"] + after.counters["contacts_pushed"] == 0
    assert [c for c in world.conflicts() if c.kind == "contact"] == []


class _WatchedContacts(Watched):
    """As in test_conflicts, for the CRM's contact writes too."""

    def push_contacts(self, pushes: Any) -> Any:
        self.held.append(self._open[0])
        return self._real.push_contacts(pushes)


def test_resolving_a_contact_conflict_holds_no_transaction_across_the_crm_call(
    world: World,
) -> None:
    ((customer, account),) = _linked(world, 1)
    contact_id = _add(world, customer, "Ed Hale", "ed@example.com")
    world.sync()
    crm_id = _crm(world, account)["ed@example.com"].id
    _change(world, customer, contact_id, name="Ed Halen")
    _edit_in_crm(world, crm_id, "Hales")
    world.sync()
    (conflict,) = [c for c in world.conflicts() if c.kind == "contact"]
    open_connections = [0]

    def checked_out(*_: Any) -> None:
        open_connections[0] += 1

    def checked_in(*_: Any) -> None:
        open_connections[0] -= 1

    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        watched = _WatchedContacts(open_connector(world.settings, row), open_connections)
    event.listen(world.engine, "checkout", checked_out)
    event.listen(world.engine, "checkin", checked_in)
    try:
        done = resolve_conflict(
            world.engine,
            world.settings,
            world.organisation_id,
            conflict.id,
            keep="billing",
            actor="test",
            connector=cast(Connector, watched),
        )
    finally:
        event.remove(world.engine, "checkout", checked_out)
        event.remove(world.engine, "checkin", checked_in)
    assert done.crm_written and watched.held == [0]  # billing's value pushed, no store held
    assert _crm(world, account)["ed@example.com"].name == "Ed Halen"


def test_a_crm_delete_is_flagged_and_never_carried_over(world: World) -> None:
    ((customer, account),) = _linked(world, 1)
    _add(world, customer, "Di Ray", "di@example.com")
    world.sync()
    crm_id = _crm(world, account)["di@example.com"].id
    _delete_in_crm(world, crm_id)
    result = world.sync()
    assert result.counters["contacts_flagged"] == 1
    flagged = _billing(world, customer)["di@example.com"]
    assert (flagged.state, flagged.crm_id) == ("crm_deleted", crm_id)
    # a billing change to a flagged contact is kept on the billing side, never pushed
    _change(world, customer, str(flagged.id), name="Di Raymond")
    again = world.sync()
    assert again.counters["contacts_pushed"] + again.counters["contacts_crm_created"] == 0
    assert "di@example.com" not in _crm(world, account)


def test_pushes_are_batched(world: World) -> None:
    """250 new contacts: 2 collection calls on Salesforce (200 each), 3 batch creates on
    HubSpot (100 each) — the associations travel in the creates — after 3 batch reads of
    their e-mails (HubSpot keeps one contact per e-mail: one it has is adopted instead)."""
    ((customer, account),) = _linked(world, 1)
    for i in range(250):
        _add(world, customer, f"Person {i}", f"p{i}@example.com")
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["contacts_crm_created"] == 250
    batch = world.harness.push_batch_max
    reads = math.ceil(250 / 100) if world.harness.key == "hubspot" else 0
    assert result.counters["calls_push"] == math.ceil(250 / batch) + reads
    in_crm = _crm(world, account)
    assert all(f"p{i}@example.com" in in_crm for i in range(250))


def test_a_refused_contact_goes_to_the_dead_letter_and_is_retried(world: World) -> None:
    ((customer, account),) = _linked(world, 1)
    _add(world, customer, "Ok Person", "ok@example.com")
    _add(world, customer, "Bad Person", "bad@example.com")
    world.harness.reject_record("bad@example.com", "validation")
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["contacts_crm_created"] == 1
    (failure,) = world.failures()
    assert (failure.direction, failure.customer_id) == ("contact", customer)
    (refused,) = failure.payload["contacts"]
    assert refused["fields"]["email"] == "bad@example.com"
    assert _billing(world, customer)["bad@example.com"].pending
    world.harness.set_faults(record_errors={})
    outcome = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (outcome.retried, outcome.recovered) == (1, 1)
    assert world.failures() == []
    assert "bad@example.com" in _crm(world, account)
    assert not _billing(world, customer)["bad@example.com"].pending


def test_a_plan_shows_the_contact_pushes_the_run_makes(world: World) -> None:
    ((customer, account),) = _linked(world, 1)
    contact_id = _add(world, customer, "Eve Stone", "eve@example.com")
    plan = world.sync(plan=True)
    assert plan.plan is not None
    (create,) = plan.plan.contact_creates
    assert (create["contact_id"], create["account_id"]) == (contact_id, account)
    assert create["fields"] == {"name": "Eve Stone", "email": "eve@example.com"}
    assert plan.counters["contacts_crm_created"] == 1
    assert _crm(world, account).get("eve@example.com") is None  # nothing written
    run = world.sync()
    assert run.counters["contacts_crm_created"] == plan.counters["contacts_crm_created"]


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_a_plan_shows_the_contacts_of_customers_it_would_link_or_create_in_the_crm(
    crm: str, engine: Engine, sandbox: Sandbox
) -> None:
    """A customer billing has and the CRM lacks is created there by the run's push, and a
    customer the pull links (by its external id) is linked only by the run: their contacts
    reach the CRM in the same run. The plan, which links and creates nothing, shows those
    contact creates too (under the account / company the run would link, or one it would
    create), and its counters are the run's."""
    world = make_world(engine, sandbox, crm, push_creates=True)
    (record,) = world.harness.seed(1)
    with transaction(engine) as s:
        org = world.organisation_id
        claimed = str(
            create_customer(s, org, CustomerIn(customer_name="Claims", external_id=record)).id
        )
        billing_only = str(create_customer(s, org, CustomerIn(customer_name="Billing Only")).id)
    first = _add(world, claimed, "Fay Claim", "fay@plan.example")
    second = _add(world, billing_only, "Gus Only", "gus@plan.example")

    planned = world.sync(plan=True)
    assert planned.status == "succeeded", planned.error
    assert planned.plan is not None
    creates = {c["contact_id"]: c for c in planned.plan.contact_creates}
    assert set(creates) == {first, second}
    assert creates[first]["account_id"] == record
    assert creates[second]["account_id"] is None  # a company the run creates first
    planned_emails = ("fay@plan.example", "gus@plan.example")
    assert all(c.email not in planned_emails for c in _all_in_crm(world))  # nothing written

    run = world.sync()
    assert run.status == "succeeded", run.error
    counted = {k: v for k, v in run.counters.items() if not k.startswith("calls_")}
    assert counted == {k: v for k, v in planned.counters.items() if not k.startswith("calls_")}
    assert run.counters["contacts_crm_created"] == 2
    assert world.failures() == []


def test_communications_sync_through_the_field_the_connection_names(world: World) -> None:
    field = "Communications__c" if world.harness.key == "salesforce" else "crmsync_communications"
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        settings = {**row.settings, "contact_communications_field": field}
        update_connection(s, world.settings, row, {"settings": settings}, check=False)
    ((customer, account),) = _linked(world, 1)
    contact_id = _add(world, customer, "Fay Wu", "fay@example.com", communications=["legal"])
    world.sync()
    assert _crm(world, account, settings)["fay@example.com"].communications == "legal"
    _change(world, customer, contact_id, communications=["billing", "updates"])
    pushed = world.sync()
    assert pushed.counters["contacts_pushed"] == 1
    assert _crm(world, account, settings)["fay@example.com"].communications == "billing,updates"
    assert world.sync().counters["contacts"] == 0  # no echo


def test_without_a_communications_field_they_are_not_synced(world: World) -> None:
    ((customer, account),) = _linked(world, 1)
    contact_id = _add(world, customer, "Gil Ash", "gil@example.com")
    world.sync()
    _change(world, customer, contact_id, communications=["legal"])
    result = world.sync()
    assert result.counters["contacts_pushed"] == 0 and result.counters["calls_push"] == 0
    assert not _billing(world, customer)["gil@example.com"].pending
    assert _crm(world, account)["gil@example.com"].communications is None


def test_a_communications_field_the_crm_lacks_is_a_clear_error(world: World) -> None:
    good = "Communications__c" if world.harness.key == "salesforce" else "crmsync_communications"
    world.harness.connector(contact_communications_field=good).check()
    with pytest.raises(ConfigError, match="contact_communications_field"):
        world.harness.connector(contact_communications_field="No_Such_Field__c").check()
