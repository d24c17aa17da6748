"""CRM merges through the engine: links follow the survivor, and a merge never makes or
duplicates a billing customer (issue 12, part 1).

Every case runs on both stores and on each way a CRM merges: Salesforce (the loser is
deleted with ``MasterRecordId``), HubSpot as it has merged since 2024 (a new record under a
new id; both old ids resolve to it and are listed in its ``hs_merged_object_ids``) and
HubSpot as it merged before (the primary keeps its id, the loser is archived).

Merges seen through webhooks re-point links at once on both CRMs: HubSpot's merge event
names the records, and a Salesforce Outbound Message names only the master (none fires for
the deleted losers), whose read finds the records merged into it in the same query.

Also here: crmsync writes its billing id into the external-id field / property of a record
it links to a customer billing already had, in the page's one push batch, and that write
does not come back as a change; a write the CRM refuses is a failure in the dead letter,
made again by ``crmsync retry`` (or when the record next syncs) until the CRM takes it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from connectors.base import WebhookRequest
from sandbox.server import Sandbox
from sync import customers
from sync.customer import CustomerIn
from sync.engine import RunResult
from sync.failures import retry_failures
from sync.inbox import process_inbox, receive_webhook
from sync.store.db import transaction
from tests.sync.conftest import CRMS, World, make_world

#: the store that production runs on, for what the store does not change
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

#: how the CRM merges: Salesforce; HubSpot under a new id (its default); HubSpot keeping
#: the primary's id (its behaviour before 2024)
MERGES = ("salesforce", "hubspot", "hubspot-keeps-id")


@pytest.fixture(params=MERGES)
def world(request: pytest.FixtureRequest, engine: Engine, sandbox: Sandbox) -> World:
    crm, _, keeps = str(request.param).partition("-")
    world = make_world(engine, sandbox, crm)
    if crm == "hubspot":
        world.harness.hs.set_merges_keep_primary_id(bool(keeps))
    return world


@pytest.fixture(params=CRMS)
def crm_world(request: pytest.FixtureRequest, engine: Engine, sandbox: Sandbox) -> World:
    """One world per CRM, for what does not depend on how it merges."""
    return make_world(engine, sandbox, str(request.param))


def _customer_ids(world: World) -> set[str]:
    return {c["id"] for c in world.customers()}


def _active_link_of(world: World, customer_id: str) -> list[str]:
    return [
        link.crm_id
        for link in world.links()
        if link.customer_id == customer_id and link.state == "active"
    ]


def _billing_create(world: World, **data: Any) -> str:
    with transaction(world.engine) as s:
        return str(
            customers.create_customer(s, world.organisation_id, CustomerIn.model_validate(data)).id
        )


def _billing_id_in_crm(world: World, crm_id: str) -> str | None:
    [record] = world.harness.connector().pull_customers_by_ids([crm_id])
    return record.billing_id


def _webhook(world: World, change: Any) -> RunResult:
    """Deliver the CRM's webhooks for ``change`` to crmsync's inbox, then sync them."""
    requests = world.harness.webhook_requests(change)
    assert requests, "the CRM delivered no webhook"
    kind = world.harness.key
    for request in requests:
        receive_webhook(
            world.engine,
            world.settings,
            kind,
            world.connection_id,
            WebhookRequest(request.method, request.url, dict(request.headers), request.body),
        )
    result = process_inbox(world.engine, world.settings, world.connection_id)
    assert result is not None and result.status == "succeeded", result and result.error
    return result


# --- one linked record merged --------------------------------------------------------------


@pytest.mark.parametrize("linked_is_primary", [True, False], ids=["primary", "secondary"])
def test_a_merge_with_one_linked_record_moves_its_link_and_creates_no_customer(
    world: World, linked_is_primary: bool
) -> None:
    [linked] = world.harness.seed(1)
    assert world.sync().status == "succeeded"
    customer_id = world.customer_by_external_id(linked)["id"]
    other = world.harness.create({"customer_name": "Unlinked Ltd", "address.city": "Leeds"})
    winner, loser = (linked, other) if linked_is_primary else (other, linked)
    survivor = world.harness.merge(winner, loser)

    result = world.sync()
    assert result.status == "succeeded", result.error
    assert _customer_ids(world) == {customer_id}, "a merge created a customer"
    assert _active_link_of(world, customer_id) == [survivor]
    assert [c for c in world.conflicts() if c.kind == "merge"] == []
    assert result.counters["created"] == 0
    again = world.sync()
    assert again.status == "succeeded" and again.counters["created"] == 0
    assert _customer_ids(world) == {customer_id}


def test_a_merge_of_two_linked_records_opens_a_merge_conflict_and_creates_no_customer(
    world: World,
) -> None:
    primary, secondary = world.harness.seed(2)
    assert world.sync().status == "succeeded"
    before = _customer_ids(world)
    kept = world.customer_by_external_id(primary)["id"]
    survivor = world.harness.merge(primary, secondary)

    result = world.sync()
    assert result.status == "succeeded", result.error
    assert _customer_ids(world) == before, "a merge created or removed a customer"
    merges = [c for c in world.conflicts() if c.kind == "merge"]
    assert len(merges) == 1 and merges[0].crm_id == survivor
    # the primary's customer follows the survivor; the other's link is marked merged
    assert _active_link_of(world, kept) == [survivor]
    states = {link.customer_id: link.state for link in world.links()}
    assert sorted(states.values()) == ["active", "merged"]
    # a full run walks every customer: the merged-away one is not pushed as a new record
    again = world.sync(full=True)
    assert again.status == "succeeded", again.error
    assert again.counters["conflicts_opened"] == 0 and again.counters["crm_created"] == 0
    assert _customer_ids(world) == before


# --- merges seen through webhooks ----------------------------------------------------------


def test_a_merge_webhook_moves_the_link_of_one_linked_record(world: World) -> None:
    [linked] = world.harness.seed(1)
    assert world.sync().status == "succeeded"
    customer_id = world.customer_by_external_id(linked)["id"]
    other = world.harness.create({"customer_name": "Unlinked Ltd", "address.city": "Leeds"})
    survivor: list[str] = []
    hooked = _webhook(world, lambda: survivor.append(world.harness.merge(other, linked)))

    # HubSpot's merge event names the survivor and the merged ids; Salesforce sends an
    # Outbound Message for the master only (none for the deleted loser), and reading it
    # finds the records merged into it: either way the link moves now, not at the next pull
    assert _customer_ids(world) == {customer_id}, "a merge webhook created a customer"
    assert _active_link_of(world, customer_id) == survivor
    assert hooked.counters["merged"] == 1 and hooked.counters["created"] == 0
    if world.harness.key == "salesforce":
        # the losers ride in the master's read: one query, as for any one record
        assert hooked.api_calls == 1
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert _customer_ids(world) == {customer_id}
    assert _active_link_of(world, customer_id) == survivor


def test_a_merge_webhook_of_two_linked_records_opens_a_merge_conflict(world: World) -> None:
    primary, secondary = world.harness.seed(2)
    assert world.sync().status == "succeeded"
    before = _customer_ids(world)
    survivor: list[str] = []
    _webhook(world, lambda: survivor.append(world.harness.merge(primary, secondary)))

    assert _customer_ids(world) == before, "a merge webhook created a customer"
    merges = [c for c in world.conflicts() if c.kind == "merge"]
    assert [c.crm_id for c in merges] == survivor
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert _customer_ids(world) == before
    assert [c.crm_id for c in world.conflicts() if c.kind == "merge"] == survivor


# --- the billing id written back -----------------------------------------------------------


def test_linking_existing_customers_writes_the_billing_id_back_in_one_batch(
    crm_world: World,
) -> None:
    world = crm_world
    count = world.harness.push_batch_max
    crm_ids = world.harness.seed(count)
    billing = {
        crm_id: _billing_create(
            world, customer_name=world.harness.read(crm_id)["customer_name"], external_id=crm_id
        )
        for crm_id in crm_ids
    }
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["linked"] == count and result.counters["created"] == 0
    # the write-back rides in the page's push: one batch for a batch's worth of records
    assert result.counters["calls_push"] == world.harness.push_calls(count, 0)
    for crm_id in (crm_ids[0], crm_ids[-1]):
        assert _billing_id_in_crm(world, crm_id) == billing[crm_id]
    again = world.sync()
    assert again.status == "succeeded", again.error
    changed = {k: v for k, v in again.counters.items() if v and k in ("updated", "pushed")}
    assert changed == {}, "the write-back came back as a change"
    assert again.counters["calls_push"] == 0


def test_records_billing_created_from_the_crm_cost_no_write_back(crm_world: World) -> None:
    world = crm_world
    world.harness.seed(3)
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["created"] == 3 and result.counters["calls_push"] == 0


def test_a_survivor_finds_an_unlinked_customer_by_a_merged_id(world: World) -> None:
    primary, secondary = world.harness.seed(2)
    name = world.harness.read(primary)["customer_name"]
    customer_id = _billing_create(world, customer_name=name, external_id=primary)
    survivor = world.harness.merge(primary, secondary)

    result = world.sync()  # the connection's first sync, after the merge
    assert result.status == "succeeded", result.error
    assert _customer_ids(world) == {customer_id}, "the survivor became a second customer"
    assert _active_link_of(world, customer_id) == [survivor]
    assert _billing_id_in_crm(world, survivor) == customer_id


def test_a_merge_of_two_unlinked_customers_records_opens_a_merge_conflict(world: World) -> None:
    primary, secondary = world.harness.seed(2)
    kept, other = (
        _billing_create(
            world, customer_name=world.harness.read(crm_id)["customer_name"], external_id=crm_id
        )
        for crm_id in (primary, secondary)
    )
    survivor = world.harness.merge(primary, secondary)

    result = world.sync()  # the connection's first sync, after the merge
    assert result.status == "succeeded", result.error
    assert _customer_ids(world) == {kept, other}, "a merge created a customer"
    assert result.counters["crm_created"] == 0, "a merged-away customer was pushed as new"
    assert _active_link_of(world, kept) == [survivor]
    assert _active_link_of(world, other) == []
    assert [c.crm_id for c in world.conflicts() if c.kind == "merge"] == [survivor]
    again = world.sync(full=True)
    assert again.status == "succeeded", again.error
    assert again.counters["crm_created"] == 0 and again.counters["conflicts_opened"] == 0


def test_a_customer_naming_a_merged_away_record_is_not_pushed_as_a_new_one(world: World) -> None:
    primary, secondary = world.harness.seed(2)
    survivor = world.harness.merge(primary, secondary)
    assert world.sync().status == "succeeded"
    [owner] = _customer_ids(world)
    late = _billing_create(world, customer_name="Late Import Ltd", external_id=secondary)

    result = world.sync()  # the push step looks the external id up: merged into a linked one
    assert result.status == "succeeded", result.error
    assert result.counters["crm_created"] == 0, "the CRM's merge was undone"
    assert _active_link_of(world, owner) == [survivor]
    assert _active_link_of(world, late) == []
    merges = [c for c in world.conflicts() if c.kind == "merge"]
    assert [(c.customer_id, c.crm_id) for c in merges] == [(late, survivor)]


def _link_with_a_refused_write_back(world: World) -> tuple[str, str]:
    """A CRM record linked to a customer billing had, whose billing id the CRM refused
    (duplicate value): (its CRM id, the customer id)."""
    refused, accepted = world.harness.seed(2)
    billing = {
        crm_id: _billing_create(
            world, customer_name=world.harness.read(crm_id)["customer_name"], external_id=crm_id
        )
        for crm_id in (refused, accepted)
    }
    world.harness.reject_record(refused, "duplicate")
    result = world.sync()
    assert result.status == "succeeded", result.error
    assert result.counters["linked"] == 2 and result.counters["failed"] == 1
    assert _billing_id_in_crm(world, accepted) == billing[accepted]
    assert _billing_id_in_crm(world, refused) is None
    [failure] = world.failures()
    assert (failure.direction, failure.crm_id, failure.customer_id) == (
        "push",
        refused,
        billing[refused],
    )
    assert _active_link_of(world, billing[refused]) == [refused], "the link stands"
    return refused, billing[refused]


@ON_POSTGRESQL
def test_a_refused_billing_id_write_back_is_a_failure_that_retry_writes(
    crm_world: World,
) -> None:
    world = crm_world
    refused, customer_id = _link_with_a_refused_write_back(world)
    [failure] = world.failures()

    # still refused: the failure stays open (the same one), and nothing is written
    still = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (still.retried, still.recovered, still.still_failing) == (1, 0, 1)
    assert [(f.id, f.attempts) for f in world.failures()] == [(failure.id, 2)]
    assert _billing_id_in_crm(world, refused) is None

    world.harness.set_faults(record_errors={})
    done = retry_failures(world.engine, world.settings, world.organisation_id)
    assert (done.retried, done.recovered, done.still_failing) == (1, 1, 0)
    assert done.runs[0].counters["calls_push"] == 1
    assert world.failures() == []
    assert _billing_id_in_crm(world, refused) == customer_id
    again = world.sync()
    assert again.status == "succeeded", again.error
    assert again.counters["calls_push"] == 0 and again.counters["updated"] == 0


@ON_POSTGRESQL
def test_a_refused_billing_id_write_back_is_made_again_when_the_record_syncs(
    crm_world: World,
) -> None:
    world = crm_world
    refused, customer_id = _link_with_a_refused_write_back(world)
    world.harness.set_faults(record_errors={})
    world.harness.edit(refused, {"customer_name": "Renamed After The Refusal Ltd"})

    result = world.sync()  # the record's change comes by: the write-back goes with it
    assert result.status == "succeeded", result.error
    assert result.counters["updated"] == 1 and result.counters["calls_push"] == 1, {
        k: v for k, v in result.counters.items() if v
    }
    assert world.failures() == []
    assert _billing_id_in_crm(world, refused) == customer_id
