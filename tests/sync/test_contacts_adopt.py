"""A billing contact whose e-mail HubSpot already has (issue 12 §5: a contact is matched by
e-mail within its customer). HubSpot keeps one contact per e-mail and refuses a create of a
taken one (409 CONFLICT); the push looks the e-mails of its creates up first (one batch read
by ``idProperty=email`` per 100) and adopts the contact it finds: linked to the billing
contact, associated with the customer's company, merged with the first link's rules. Two
billing contacts with one e-mail are a real conflict: dead letter, naming both."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from sandbox.server import Sandbox
from sync import contacts
from sync.connections import update_connection
from sync.customer import Contact, CustomerIn
from sync.customers import create_customer
from sync.engine import RunResult, sync_connection
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tests.sync.conftest import World, harness_for, make_world
from tests.sync.test_contacts_fan_out import TwoCrms

pytestmark = pytest.mark.usefixtures("sandbox")


def _ok(world: World, **options: Any) -> RunResult:
    result = sync_connection(world.engine, world.settings, world.connection_id, **options)
    assert result.status == "succeeded", result.error
    return result


def _contact_failures(world: World) -> list[Any]:
    return [f for f in world.failures() if f.direction == "contact"]


def _billing(world: World, customer_id: str) -> dict[str, contacts.ContactOut]:
    with transaction(world.engine) as s:
        found = contacts.list_contacts(s, world.organisation_id, customer_id)
    return {str(c.email): c for c in found}


def test_contacts_hubspot_already_has_are_adopted_not_refused_on_every_push(
    engine: Engine, sandbox: Sandbox
) -> None:
    """The reporter's setting: Salesforce and HubSpot hold the same companies and contacts
    (same seed); the customers come from Salesforce and reach HubSpot by --push-creates.
    Each billing contact links the HubSpot contact of its e-mail (no create, no 409), which
    is associated with the customer's company (its primary one: the seeded company is
    linked to no customer); nothing is pushed or flagged afterwards, a full pull included."""
    crms = TwoCrms(engine, sandbox, hubspot=False)
    crms.sf.harness.seed(2)
    hubspot: Any = harness_for("hubspot", sandbox)
    hubspot.seed(2)
    in_hubspot = hubspot.hs.count("contacts")
    assert _ok(crms.sf).counters["contacts"] == in_hubspot  # the same contacts
    crms.hs = crms.add_hubspot(push_creates=True)

    run = _ok(crms.hs)
    assert run.counters["contacts_adopted"] == in_hubspot
    assert run.counters["contacts_crm_created"] == 0 and not _contact_failures(crms.hs)
    # 1 company upsert, 1 read of the creates' e-mails, 1 association batch
    assert run.counters["calls_push"] == 3
    assert hubspot.hs.count("contacts") == in_hubspot  # nothing created twice
    for link in crms.hs.links():
        for email, contact in _billing(crms.hs, link.customer_id).items():
            crm_id = contact.crm_ids[crms.hs.connection_id]
            record = hubspot.hs.read(crm_id, "contacts")
            assert record["properties"]["email"] == email.lower()
            assert record["associations"][0] == link.crm_id  # its primary company now
            assert not contact.pending
    for options in ({}, {"full": True}):
        again = _ok(crms.hs, **options)
        assert again.counters["contacts"] == again.counters["contacts_flagged"] == 0
        assert again.counters["contacts_pushed"] + again.counters["contacts_adopted"] == 0
        assert again.counters["contacts_crm_created"] == 0


def test_adopting_fills_an_empty_name_and_a_different_name_is_a_conflict(
    engine: Engine, sandbox: Sandbox
) -> None:
    """The first link's rules: an empty side takes the other's value; a name that differs
    is a contact conflict (neither side written), not an overwrite. A contact that has a
    primary company keeps it when that company is linked to this customer."""
    world = make_world(engine, sandbox, "hubspot", push_creates=True)
    hs: Any = world.harness
    nameless = hs.hs.create("contacts", {"email": "ann@adopt.example"})
    other_name = hs.hs.create(
        "contacts", {"firstname": "Bobby", "lastname": "Chen", "email": "bo@adopt.example"}
    )
    with transaction(engine) as s:
        org = world.organisation_id
        customer = str(create_customer(s, org, CustomerIn(customer_name="Adopt Ltd")).id)
        for name, email in (("Ann Lee", "Ann@adopt.example"), ("Bo Chen", "bo@adopt.example")):
            contacts.add_contact(s, org, customer, Contact(name=name, email=email))

    run = _ok(world)
    assert run.counters["contacts_adopted"] == 2 and run.counters["conflicts_opened"] == 1
    assert not _contact_failures(world)
    billing = _billing(world, customer)
    assert billing["Ann@adopt.example"].crm_ids == {world.connection_id: nameless}
    assert billing["bo@adopt.example"].crm_ids == {world.connection_id: other_name}
    ann = hs.hs.read(nameless, "contacts")["properties"]
    assert (ann["firstname"], ann["lastname"], ann["email"]) == ("Ann", "Lee", "ann@adopt.example")
    assert hs.hs.read(other_name, "contacts")["properties"]["firstname"] == "Bobby"
    assert billing["bo@adopt.example"].name == "Bo Chen"
    (conflict,) = world.conflicts()
    assert (conflict.field, conflict.billing_value, conflict.crm_value) == (
        "contact.name",
        "Bo Chen",
        "Bobby Chen",
    )
    again = _ok(world)
    assert again.counters["contacts_pushed"] + again.counters["contacts_adopted"] == 0
    assert again.counters["conflicts_opened"] == 0 and len(world.conflicts()) == 1
    assert _billing(world, customer)["Ann@adopt.example"].email == "Ann@adopt.example"


def test_two_billing_contacts_with_one_email_are_a_dead_letter_naming_both(
    engine: Engine, sandbox: Sandbox
) -> None:
    """Two customers share a contact e-mail HubSpot has once: the first adopts it, the
    second is refused (no silent re-link), with an error naming both billing contacts; the
    next run refuses it again, still naming both, and re-links nothing."""
    world = make_world(engine, sandbox, "hubspot", push_creates=True)
    hs: Any = world.harness
    shared = hs.hs.create(
        "contacts", {"firstname": "Cy", "lastname": "Moss", "email": "cy@shared.example"}
    )
    ids = {}
    with transaction(engine) as s:
        org = world.organisation_id
        for name in ("First Ltd", "Second Ltd"):
            customer = str(create_customer(s, org, CustomerIn(customer_name=name)).id)
            added = contacts.add_contact(
                s, org, customer, Contact(name="Cy Moss", email="cy@shared.example")
            )
            ids[name] = (customer, str(added.id))

    for _ in range(2):
        run = _ok(world)
        (failure,) = _contact_failures(world)
        assert failure.error_code == "CONTACT_EMAIL_TAKEN"
        loser = (
            ids["First Ltd"] if failure.customer_id == ids["First Ltd"][0] else ids["Second Ltd"]
        )
        winner = ids["Second Ltd"] if loser == ids["First Ltd"] else ids["First Ltd"]
        assert winner[1] in failure.error_message and loser[1] in failure.error_message
        assert shared in failure.error_message
        assert _billing(world, winner[0])["cy@shared.example"].crm_ids == {
            world.connection_id: shared
        }
        assert _billing(world, loser[0])["cy@shared.example"].crm_ids == {}
        assert run.counters["contacts_crm_created"] == 0
    assert hs.hs.count("contacts") == 1


def test_two_new_billing_contacts_with_one_email_hubspot_lacks(
    engine: Engine, sandbox: Sandbox
) -> None:
    """HubSpot has no contact of the e-mail yet: one create makes it, the other is refused
    (409, a duplicate in the dead letter); the next run finds it linked to the first and
    refuses the second again, naming both, instead of adopting it a second time."""
    world = make_world(engine, sandbox, "hubspot", push_creates=True)
    hs: Any = world.harness
    ids = []
    with transaction(engine) as s:
        org = world.organisation_id
        for name in ("One Ltd", "Two Ltd"):
            customer = str(create_customer(s, org, CustomerIn(customer_name=name)).id)
            added = contacts.add_contact(
                s, org, customer, Contact(name="Di Ray", email="di@twice.example")
            )
            ids.append(str(added.id))
    run = _ok(world)
    assert run.counters["contacts_crm_created"] == 1 and run.counters["failed"] == 1
    (first,) = _contact_failures(world)
    assert first.error_kind == "duplicate" and "already exists" in first.error_message
    again = _ok(world)
    assert again.counters["contacts_adopted"] == again.counters["contacts_crm_created"] == 0
    (failure,) = _contact_failures(world)
    assert failure.error_code == "CONTACT_EMAIL_TAKEN"
    assert all(i in failure.error_message for i in ids)
    assert hs.hs.count("contacts") == 1


def test_adopting_merges_communications_through_the_connections_field(
    engine: Engine, sandbox: Sandbox
) -> None:
    """With a communications field mapped, the first link's rules hold for it too: the
    CRM's value is taken when billing's differs, billing's fills an empty CRM one; nothing
    comes back on the next sync."""
    field = "crmsync_communications"
    world = make_world(engine, sandbox, "hubspot", push_creates=True)
    with transaction(engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        settings = {**row.settings, "contact_communications_field": field}
        update_connection(s, world.settings, row, {"settings": settings}, check=False)
    hs: Any = world.harness
    legal = hs.hs.create("contacts", {"email": "eve@comms.example", field: "legal"})
    empty = hs.hs.create(
        "contacts", {"email": "fay@comms.example", "firstname": "Fay", "lastname": "Wu"}
    )
    with transaction(engine) as s:
        org = world.organisation_id
        customer = str(create_customer(s, org, CustomerIn(customer_name="Comms Ltd")).id)
        for name, email in (("Eve Ng", "eve@comms.example"), ("Fay Wu", "fay@comms.example")):
            contacts.add_contact(
                s,
                org,
                customer,
                Contact(name=name, email=email, communications=["billing", "updates"]),
            )
    run = _ok(world)
    assert run.counters["contacts_adopted"] == 2 and run.counters["conflicts_opened"] == 0
    billing = _billing(world, customer)
    assert billing["eve@comms.example"].communications == ["legal"]
    assert hs.hs.read(legal, "contacts")["properties"]["lastname"] == "Ng"
    assert hs.hs.read(empty, "contacts")["properties"][field] == "billing;updates"
    assert not any(c.pending for c in billing.values())
    again = _ok(world)
    assert again.counters["contacts"] == again.counters["contacts_pushed"] == 0


def test_a_plan_shows_the_adoptions_the_run_then_makes(engine: Engine, sandbox: Sandbox) -> None:
    """--plan reads the creates' e-mails as the run does: a billing contact HubSpot already
    has is shown as adopted (linked, its empty fields filled), not as a create; a name that
    differs is shown as the conflict the run opens, a taken e-mail as the failure it makes.
    The plan writes nothing, and the run's counters are the plan's."""
    world = make_world(engine, sandbox, "hubspot", push_creates=True)
    hs: Any = world.harness
    nameless = hs.hs.create("contacts", {"email": "ann@plan.example"})
    other_name = hs.hs.create(
        "contacts", {"firstname": "Bobby", "lastname": "Chen", "email": "bo@plan.example"}
    )
    shared = hs.hs.create("contacts", {"firstname": "Cy", "email": "cy@plan.example"})
    with transaction(engine) as s:
        org = world.organisation_id
        first = str(create_customer(s, org, CustomerIn(customer_name="Plan Ltd")).id)
        second = str(create_customer(s, org, CustomerIn(customer_name="Other Ltd")).id)
    _ok(world)  # their companies, created in HubSpot and linked
    with transaction(engine) as s:
        for customer, name, email in (
            (first, "Ann Lee", "ann@plan.example"),
            (first, "Bo Chen", "bo@plan.example"),
            (first, "Cy", "cy@plan.example"),
            (second, "Cy", "cy@plan.example"),
            (first, "Dee New", "dee@plan.example"),
        ):
            contacts.add_contact(s, org, customer, Contact(name=name, email=email))
    in_hubspot = hs.hs.count("contacts")

    planned = _ok(world, plan=True)
    assert planned.plan is not None
    adopted = {a["crm_id"]: a for a in planned.plan.contact_adoptions}
    assert set(adopted) == {nameless, other_name, shared}
    assert adopted[nameless]["crm_fields_filled"] == {"name": "Ann Lee"}
    assert adopted[other_name]["crm_fields_filled"] == {}
    (create,) = planned.plan.contact_creates
    assert create["fields"]["email"] == "dee@plan.example"
    assert [(c["field"], c["billing"], c["crm"]) for c in planned.plan.conflicts] == [
        ("contact.name", "Bo Chen", "Bobby Chen")
    ]
    (taken,) = planned.plan.failures
    assert shared in taken["message"] and taken["kind"] == "duplicate"
    assert hs.hs.count("contacts") == in_hubspot  # nothing written
    assert not _contact_failures(world) and not world.conflicts()
    assert all(not c.crm_ids for c in _billing(world, first).values())

    run = _ok(world)
    counted = {k: v for k, v in run.counters.items() if not k.startswith("calls_")}
    assert counted == {k: v for k, v in planned.counters.items() if not k.startswith("calls_")}
    assert run.counters["contacts_adopted"] == 3 and run.counters["contacts_crm_created"] == 1
    (failure,) = _contact_failures(world)
    assert failure.customer_id == taken["customer_id"]
    billing = _billing(world, first)
    assert billing["ann@plan.example"].crm_ids == {world.connection_id: nameless}
    assert billing["bo@plan.example"].crm_ids == {world.connection_id: other_name}
    assert hs.hs.count("contacts") == in_hubspot + 1
