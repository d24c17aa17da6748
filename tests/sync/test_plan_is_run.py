"""The plan is the run: for random two-sided states, what ``--plan`` says equals what the
run then does, field by field, on both CRMs (through the sandbox, into PostgreSQL).

A state is built from CRM records (linked by a first sync, or met for the first time by
customers that claim their external ids), then edits on either side or both (to the same
value or to different ones), new CRM records, billing-only customers, a CRM delete, and
billing contacts of linked, claiming or billing-only customers (on HubSpot some with an
e-mail a HubSpot contact already has: the run adopts it).
The plan must change nothing; then the run's effects, read back from the store and the
CRM, must be exactly the plan's lines, and its counters the plan's counters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from sandbox.server import Sandbox
from sync import contacts, customers
from sync.customer import Contact, CustomerIn, CustomerPatch, flatten
from sync.plan import Plan
from sync.store.db import make_engine, transaction
from sync.store.models import Conflict, CustomerRow, LinkRow
from tests.sync.conftest import CRMS, World, make_world

SLOW = os.environ.get("CRMSYNC_HYPOTHESIS_PROFILE") == "slow"
FIELDS = ("customer_name", "address.city", "address.zipCode")
VALUES = st.sampled_from(["Alder", "Birch", "Cedar"])
SIDES = st.sampled_from(["crm", "billing", "both_same", "both_different"])


@dataclass
class Scenario:
    records: int
    synced: bool
    edits: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    claims: list[tuple[int, bool]] = field(default_factory=list)
    new_crm: list[str] = field(default_factory=list)
    billing_only: list[str] = field(default_factory=list)
    delete: int | None = None
    #: billing contacts: of a record's customer or a billing-only one (by index), with an
    #: e-mail HubSpot already has or not
    contacts: list[tuple[bool, int, bool]] = field(default_factory=list)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    records = draw(st.integers(1, 3))
    index = st.integers(0, records - 1)
    synced = draw(st.booleans())
    scenario = Scenario(records, synced)
    if synced:
        scenario.edits = draw(
            st.lists(st.tuples(index, st.sampled_from(FIELDS), SIDES, VALUES, VALUES), max_size=5)
        )
        scenario.delete = draw(st.none() | index)
    else:
        # customers that claim a record's external id, with its name or another one
        scenario.claims = draw(
            st.lists(st.tuples(index, st.booleans()), max_size=records, unique_by=lambda c: c[0])
        )
    scenario.new_crm = draw(st.lists(VALUES, max_size=2))
    scenario.billing_only = draw(st.lists(VALUES, max_size=2))
    scenario.contacts = draw(
        st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.booleans()), max_size=3)
    )
    return scenario


@pytest.fixture(scope="module")
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def _set_up(world: World, scenario: Scenario) -> None:
    ids = world.harness.seed(scenario.records)
    if scenario.synced:
        assert world.sync().status == "succeeded"
    for i, same_name in scenario.claims:
        name = world.harness.read(ids[i])["customer_name"] if same_name else "Claimed Name"
        _create(world, customer_name=name, external_id=ids[i])
    for i, name, side, crm_value, billing_value in scenario.edits:
        if side in ("crm", "both_same", "both_different"):
            world.harness.edit(ids[i], {name: crm_value})
        if side in ("billing", "both_same", "both_different"):
            value = crm_value if side == "both_same" else billing_value
            _billing_edit(world, world.customer_by_external_id(ids[i])["id"], name, value)
    for name in scenario.new_crm:
        world.harness.create({"customer_name": f"New {name}", "address.city": name})
    billing_only = [
        _create(
            world, customer_name=f"Billing {name}", address={"city": name, "country_code": "SE"}
        )
        for name in scenario.billing_only
    ]
    if scenario.delete is not None:
        world.harness.delete(ids[scenario.delete])
    for n, (of_record, index, in_crm) in enumerate(scenario.contacts):
        if of_record:
            found = [c for c in world.customers() if c.get("external_id") == ids[index % len(ids)]]
            customer = found[0]["id"] if found else None
        else:
            customer = billing_only[index % len(billing_only)] if billing_only else None
        if customer is not None:
            _add_contact(world, customer, n, in_crm)


def _add_contact(world: World, customer_id: str, n: int, in_crm: bool) -> None:
    email = f"person{n}@plan.example"
    hubspot: Any = world.harness
    if in_crm and hubspot.key == "hubspot":
        hubspot.hs.create("contacts", {"email": email})  # no company: the run adopts it
    with transaction(world.engine) as s:
        contacts.add_contact(
            s, world.organisation_id, customer_id, Contact(name=f"Person {n}", email=email)
        )


def _create(world: World, **data: Any) -> str:
    with transaction(world.engine) as s:
        created = customers.create_customer(
            s, world.organisation_id, CustomerIn.model_validate(data)
        )
    return str(created.id)


def _billing_edit(world: World, customer_id: str, name: str, value: str) -> None:
    head, _, part = name.partition(".")
    with transaction(world.engine) as s:
        row = s.get(CustomerRow, customer_id)
        assert row is not None
        patch = {head: value} if not part else {head: {**(row.address or {}), part: value}}
        customers.update_customer(
            s, world.organisation_id, customer_id, CustomerPatch.model_validate(patch)
        )


@dataclass
class Snapshot:
    """Both sides as the run finds and leaves them."""

    billing: dict[str, dict[str, Any]]  # customer id -> flat fields
    crm: dict[str, dict[str, Any]]  # CRM id -> customer fields
    links: dict[str, tuple[str, str]]  # link id -> (CRM id, customer id), active ones
    states: dict[str, str]  # link id -> state
    conflicts: set[str]
    contacts: dict[str, str | None]  # billing contact id -> its CRM contact's id, if any


def _snapshot(world: World, crm_ids: set[str]) -> Snapshot:
    with transaction(world.engine) as s:
        rows = s.scalars(
            select(CustomerRow).where(CustomerRow.organisation_id == world.organisation_id)
        )
        billing = {r.id: flatten(customers.to_public(r)) for r in rows}
        links = list(s.scalars(select(LinkRow).where(LinkRow.connection_id == world.connection_id)))
        conflicts = set(
            s.scalars(select(Conflict.id).where(Conflict.connection_id == world.connection_id))
        )
        linked_contacts = {
            str(c.id): c.crm_ids.get(world.connection_id)
            for customer_id in billing
            for c in contacts.list_contacts(s, world.organisation_id, customer_id)
        }
    ids = crm_ids | {link.crm_id for link in links}
    return Snapshot(
        billing,
        {i: dict(world.harness.read(i)) for i in ids if _exists(world, i)},
        {link.id: (link.crm_id, link.customer_id) for link in links},
        {link.id: link.state for link in links},
        conflicts,
        linked_contacts,
    )


def _exists(world: World, crm_id: str) -> bool:
    try:
        world.harness.read(crm_id)
    except KeyError:
        return False
    return True


def _crm_ids(world: World) -> set[str]:
    connector = world.harness.connector()
    try:
        return {r.id for page in connector.pull_customers(None, full=True) for r in page.records}
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()


def _check(world: World, plan: Plan, before: Snapshot, after: Snapshot) -> None:
    # billing: new customers, and each field that changed on an existing one
    created = {
        after.billing[c]["external_id"] for c in after.billing.keys() - before.billing.keys()
    }
    assert created == {c["crm_id"] for c in plan.billing_creates}
    changed = {
        (cid, name): after.billing[cid].get(name)
        for cid, fields in before.billing.items()
        for name in fields.keys() | after.billing[cid].keys()
        if fields.get(name) != after.billing[cid].get(name) and name != "external_id"
    }
    assert changed == {(u["customer_id"], u["field"]): u["to"] for u in plan.billing_updates}
    # the CRM: each field that changed on an existing record, and the records created
    crm_changed = {
        (crm_id, name): after.crm[crm_id].get(name)
        for crm_id, fields in before.crm.items()
        for name in fields
        if crm_id in after.crm and fields.get(name) != after.crm[crm_id].get(name)
    }
    assert crm_changed == {(u["crm_id"], u["field"]): u["to"] for u in plan.crm_updates}
    new_links = {lid: pair for lid, pair in after.links.items() if lid not in before.links}
    crm_created = {cid: crm_id for crm_id, cid in new_links.values() if crm_id not in before.crm}
    crm_created = {cid: crm_id for cid, crm_id in crm_created.items() if cid in before.billing}
    assert set(crm_created) == {c["customer_id"] for c in plan.crm_creates}
    for create in plan.crm_creates:
        record = after.crm[crm_created[create["customer_id"]]]
        assert {k: record.get(k) for k in create["fields"]} == create["fields"]
    # links to existing customers, conflicts, deletes
    linked = {
        (crm_id, cid)
        for crm_id, cid in new_links.values()
        if cid in before.billing and crm_id in before.crm
    }
    assert linked == {(x["crm_id"], x["customer_id"]) for x in plan.links}
    with transaction(world.engine) as s:
        opened = list(
            s.scalars(select(Conflict).where(Conflict.id.in_(after.conflicts - before.conflicts)))
        )
    assert sorted((c.crm_id, c.field, c.billing_value, c.crm_value) for c in opened) == sorted(
        (c["crm_id"], c["field"], c["billing"], c["crm"]) for c in plan.conflicts
    )
    removed = {
        (before.links[lid][0], state)
        for lid, state in after.states.items()
        if lid in before.states and state != before.states[lid]
    }
    shown = {
        (r["crm_id"], {"deleted": "remote_deleted", "restored": "active"}.get(r["kind"], r["kind"]))
        for r in plan.removals
    }
    assert removed == shown
    # billing contacts: created in the CRM, or linked to the CRM's contact of their e-mail
    created_contacts = {
        contact_id: crm_id
        for contact_id, crm_id in after.contacts.items()
        if crm_id is not None and contact_id in before.contacts and not before.contacts[contact_id]
    }
    # and the CRM's contacts that became billing contacts
    attached = {after.contacts[c] for c in after.contacts.keys() - before.contacts.keys()}
    assert attached == {c["crm_id"] for c in plan.contacts_from_crm if "crm_id" in c}
    adopted = {a["contact_id"]: a["crm_id"] for a in plan.contact_adoptions}
    assert {c: created_contacts[c] for c in adopted if c in created_contacts} == adopted
    assert set(created_contacts) - set(adopted) == {c["contact_id"] for c in plan.contact_creates}


@pytest.mark.parametrize("crm", CRMS)
@settings(max_examples=60 if SLOW else 5, deadline=None)
@given(scenario=scenarios())
def test_the_plan_is_what_the_run_then_does(
    crm: str, scenario: Scenario, pg_engine: Engine, sandbox: Sandbox
) -> None:
    world = make_world(pg_engine, sandbox, crm)
    _set_up(world, scenario)
    crm_ids = _crm_ids(world)
    before = _snapshot(world, crm_ids)

    planned = world.sync(plan=True)
    assert planned.status == "succeeded", planned.error
    assert _snapshot(world, crm_ids) == before, "a plan must change nothing"
    run = world.sync()
    assert run.status == "succeeded", run.error

    assert planned.plan is not None
    _check(world, planned.plan, before, _snapshot(world, crm_ids | _crm_ids(world)))
    counted = {k: v for k, v in run.counters.items() if not k.startswith("calls_")}
    assert counted == {k: v for k, v in planned.counters.items() if not k.startswith("calls_")}
    assert world.failures() == []
