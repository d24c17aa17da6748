"""Contacts in every linked CRM (issue 12 §5): one organisation with a Salesforce and a
HubSpot connection (both from the sandbox, through the real client libraries), a customer
linked in both. A billing contact reaches both CRMs, each with its own CRM contact and base;
a contact changed or added in one CRM reaches the other; nothing echoes back and forth."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from connectors.base import CrmContact
from sandbox.server import Sandbox
from sync import contacts
from sync.connections import ConnectionSpec, add_connection
from sync.customer import Contact, CustomerIn
from sync.customers import create_customer
from sync.engine import RunResult, sync_connection
from sync.store.db import transaction
from tests.sync.conftest import World, harness_for, make_world

pytestmark = pytest.mark.usefixtures("sandbox")


class TwoCrms:
    """A Salesforce connection, and a HubSpot one in the same organisation."""

    def __init__(self, engine: Engine, sandbox: Sandbox, *, hubspot: bool = True) -> None:
        self.sf: World = make_world(engine, sandbox, "salesforce")
        self.sandbox = sandbox
        harness_for("hubspot", sandbox).reset()
        self.hs: World
        if hubspot:
            self.hs = self.add_hubspot()

    def add_hubspot(self, **spec: Any) -> World:
        engine = self.sf.engine
        hubspot = harness_for("hubspot", self.sandbox)
        with transaction(engine) as s:
            connection = add_connection(
                s,
                self.sf.settings,
                self.sf.organisation_id,
                ConnectionSpec(
                    name="hubspot",
                    kind="hubspot",
                    credentials=hubspot.credentials(),
                    settings=hubspot.settings(),
                    field_map=dict(hubspot.field_map),
                    **spec,
                ),
            )
        return World(engine, self.sf.settings, hubspot, self.sf.organisation_id, connection.id)

    def sync(self, world: World) -> RunResult:
        result = sync_connection(world.engine, world.settings, world.connection_id)
        assert result.status == "succeeded", result.error
        assert result.counters["failed"] == 0
        return result

    def both(self) -> tuple[RunResult, RunResult]:
        return self.sync(self.sf), self.sync(self.hs)


def _in_crm(world: World, account_id: str) -> dict[str, CrmContact]:
    connector = world.harness.connector()
    pulled = [c for page in connector.pull_contacts(None, full=True) for c in page.records]
    return {str(c.email): c for c in pulled if not c.deleted and c.customer_id == account_id}


def _billing(crms: TwoCrms, customer_id: str) -> dict[str, contacts.ContactOut]:
    with transaction(crms.sf.engine) as s:
        found = contacts.list_contacts(s, crms.sf.organisation_id, customer_id)
    return {str(c.email): c for c in found}


def _pushes(result: RunResult) -> int:
    return result.counters["contacts_pushed"] + result.counters["contacts_crm_created"]


def test_contacts_reach_every_linked_crm_and_never_echo(engine: Engine, sandbox: Sandbox) -> None:
    crms = TwoCrms(engine, sandbox)
    with transaction(engine) as s:
        customer = str(
            create_customer(s, crms.sf.organisation_id, CustomerIn(customer_name="Two Crm Ltd")).id
        )
    crms.both()  # the new customer is created in both CRMs: linked in both
    account = {w.connection_id: w.links()[0].crm_id for w in (crms.sf, crms.hs)}
    assert len(account) == 2

    # a billing contact: created in both CRMs, one CRM contact each, no longer pending
    with transaction(engine) as s:
        contacts.add_contact(
            s, crms.sf.organisation_id, customer, Contact(name="Ann Lee", email="ann@two.example")
        )
    sf_run, hs_run = crms.both()
    assert sf_run.counters["contacts_crm_created"] == hs_run.counters["contacts_crm_created"] == 1
    ann = _billing(crms, customer)["ann@two.example"]
    in_sf = _in_crm(crms.sf, account[crms.sf.connection_id])["ann@two.example"]
    in_hs = _in_crm(crms.hs, account[crms.hs.connection_id])["ann@two.example"]
    assert ann.crm_ids == {crms.sf.connection_id: in_sf.id, crms.hs.connection_id: in_hs.id}
    assert not ann.pending
    for run in crms.both():  # each pulls what it was pushed: nothing changes, nothing pushed
        assert run.counters["contacts"] == 0 and _pushes(run) == 0

    # a billing change goes to both
    with transaction(engine) as s:
        contacts.change_contact(
            s,
            crms.sf.organisation_id,
            customer,
            str(ann.id),
            contacts.ContactPatch(name="Ann Lee-Park"),
        )
    assert [run.counters["contacts_pushed"] for run in crms.both()] == [1, 1]
    assert _in_crm(crms.hs, account[crms.hs.connection_id])["ann@two.example"].name == (
        "Ann Lee-Park"
    )

    # changed in Salesforce: taken into billing, pushed to HubSpot only, and it stops there
    sf_harness: Any = crms.sf.harness
    sf_harness.sf.edit("Contact", in_sf.id, {"LastName": "Park"})
    sf_run = crms.sync(crms.sf)
    assert sf_run.counters["contacts"] == 1 and _pushes(sf_run) == 0
    assert _billing(crms, customer)["ann@two.example"].pending  # HubSpot lacks it yet
    hs_run = crms.sync(crms.hs)
    assert hs_run.counters["contacts_pushed"] == 1 and hs_run.counters["contacts"] == 0
    assert _in_crm(crms.hs, account[crms.hs.connection_id])["ann@two.example"].name == "Ann Park"
    assert not _billing(crms, customer)["ann@two.example"].pending
    for run in crms.both():
        assert run.counters["contacts"] == 0 and _pushes(run) == 0

    # added in HubSpot: a new billing contact, created in Salesforce, and it stops there
    hs_harness: Any = crms.hs.harness
    bo = hs_harness.hs.create(
        "contacts", {"firstname": "Bo", "lastname": "Chen", "email": "bo@two.example"}
    )
    hs_harness.hs.associate(bo, account[crms.hs.connection_id])
    hs_run = crms.sync(crms.hs)
    assert hs_run.counters["contacts"] == 1 and _pushes(hs_run) == 0
    sf_run = crms.sync(crms.sf)
    assert sf_run.counters["contacts_crm_created"] == 1
    in_sf_bo = _in_crm(crms.sf, account[crms.sf.connection_id])["bo@two.example"]
    assert in_sf_bo.name == "Bo Chen"
    billed = _billing(crms, customer)["bo@two.example"]
    assert billed.crm_ids == {crms.hs.connection_id: bo, crms.sf.connection_id: in_sf_bo.id}
    for run in crms.both():
        assert run.counters["contacts"] == 0 and _pushes(run) == 0
    assert len(_in_crm(crms.sf, account[crms.sf.connection_id])) == 2
    assert len(_in_crm(crms.hs, account[crms.hs.connection_id])) == 2


def test_a_connection_linked_later_gets_the_contacts_another_crm_has(
    engine: Engine, sandbox: Sandbox
) -> None:
    """The customer and its contact reached Salesforce before HubSpot was connected: once
    HubSpot links the customer, its contacts are created there too (they are not pending:
    a connection that lacks a contact of a customer it links is pushed it all the same)."""
    crms = TwoCrms(engine, sandbox, hubspot=False)
    with transaction(engine) as s:
        org = crms.sf.organisation_id
        customer = str(create_customer(s, org, CustomerIn(customer_name="Later Ltd")).id)
        contacts.add_contact(s, org, customer, Contact(name="Cy Moss", email="cy@later.example"))
    assert crms.sync(crms.sf).counters["contacts_crm_created"] == 1
    assert not _billing(crms, customer)["cy@later.example"].pending

    crms.hs = crms.add_hubspot(push_creates=True)
    hs_run = crms.sync(crms.hs)
    assert hs_run.counters["contacts_crm_created"] == 1
    (link,) = crms.hs.links()
    assert _in_crm(crms.hs, link.crm_id)["cy@later.example"].name == "Cy Moss"
    assert len(_billing(crms, customer)["cy@later.example"].crm_ids) == 2
    for run in crms.both():
        assert run.counters["contacts"] == 0 and _pushes(run) == 0


def test_a_delete_in_one_crm_is_flagged_and_the_other_crm_does_not_restore_it(
    engine: Engine, sandbox: Sandbox
) -> None:
    crms = TwoCrms(engine, sandbox)
    with transaction(engine) as s:
        org = crms.sf.organisation_id
        customer = str(create_customer(s, org, CustomerIn(customer_name="Gone Ltd")).id)
        contacts.add_contact(s, org, customer, Contact(name="Di Ray", email="di@gone.example"))
    crms.both()
    di = _billing(crms, customer)["di@gone.example"]
    hs_harness: Any = crms.hs.harness
    hs_harness.hs.archive(di.crm_ids[crms.hs.connection_id], "contacts")
    assert crms.sync(crms.hs).counters["contacts_flagged"] == 1
    # Salesforce still has it, and a full pull reads it: the flag stays, nothing is pushed
    full = sync_connection(engine, crms.sf.settings, crms.sf.connection_id, full=True)
    assert full.status == "succeeded" and _pushes(full) == 0
    assert _billing(crms, customer)["di@gone.example"].state == "crm_deleted"
    assert _pushes(crms.sync(crms.hs)) == 0
    (link,) = crms.sf.links()
    assert "di@gone.example" in _in_crm(crms.sf, link.crm_id)  # never carried over
