"""With real Celery workers on Redis and PostgreSQL, against the sandbox: scheduled syncs,
webhook syncs (HubSpot webhooks, Salesforce Outbound Messages), de-duplication, the
per-connection lock, and recovering failures with ``crmsync retry``."""

from __future__ import annotations

import json
from itertools import pairwise

import httpx
import pytest
from sqlalchemy import select

from sandbox.server import Sandbox
from sync.engine import sync_connection
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import CustomerRow, InboundEvent, LinkRow, SyncRun
from tasks.enqueue import enqueue_sync
from tests.tasks.conftest import HUBSPOT_SECRET, SALESFORCE_WEBHOOK_SECRET, Stack, wait_for


def runs(stack: Stack, connection_id: str, trigger: str | None = None) -> list[SyncRun]:
    with transaction(stack.engine) as session:
        query = select(SyncRun).where(SyncRun.connection_id == connection_id)
        if trigger is not None:
            query = query.where(SyncRun.trigger == trigger)
        return list(session.scalars(query.order_by(SyncRun.started_at)))


def customer_names(stack: Stack, org: str) -> set[str]:
    with transaction(stack.engine) as session:
        query = select(CustomerRow.customer_name).where(CustomerRow.organisation_id == org)
        return set(session.scalars(query))


def customer_of(stack: Stack, connection_id: str, crm_id: str) -> CustomerRow | None:
    with transaction(stack.engine) as session:
        link = session.scalar(
            select(LinkRow).where(LinkRow.connection_id == connection_id, LinkRow.crm_id == crm_id)
        )
        return session.get(CustomerRow, link.customer_id) if link else None


def test_scheduled_sync_fires_and_completes(stack: Stack, crm: Sandbox) -> None:
    org = stack.organisation()
    crm.hubspot.seed_companies(25)
    connection = stack.hubspot(crm, org, schedule_seconds=10)
    stack.worker()
    stack.beat()

    def scheduled_run_done() -> list[SyncRun]:
        return [r for r in runs(stack, connection, "schedule") if r.status == "succeeded"]

    done = wait_for(scheduled_run_done, 60, "a scheduled run")
    assert done[0].counters["created"] == 25
    assert len(customer_names(stack, org)) == 25
    with transaction(stack.engine) as session:
        row = repo.get_connection(session, connection)
        assert row is not None and row.next_sync_at is not None and row.last_sync_at is not None
        assert row.next_sync_at > row.last_sync_at


def test_paused_connection_is_not_scheduled(stack: Stack, crm: Sandbox) -> None:
    org = stack.organisation()
    crm.hubspot.seed_companies(3)
    paused = stack.hubspot(crm, org, name="paused", schedule_seconds=10)
    active = stack.hubspot(crm, stack.organisation("Other"), name="active", schedule_seconds=10)
    assert stack.cli("connections", "pause", paused, "--org", org).returncode == 0
    stack.worker()
    stack.beat()
    wait_for(lambda: runs(stack, active, "schedule"), 60, "the active connection's run")
    wait_for(lambda: all(r.status != "running" for r in runs(stack, active)), 60, "the run to end")
    assert runs(stack, paused) == []


def test_hubspot_webhook_reaches_customers_once_for_ten_deliveries(
    stack: Stack, crm: Sandbox
) -> None:
    org = stack.organisation()
    ids = crm.hubspot.seed_companies(5)
    connection = stack.hubspot(crm, org)
    assert sync_connection(stack.engine, stack.settings, connection).status == "succeeded"
    api = stack.serve_api()
    url = f"{api}/webhooks/hubspot/{connection}"
    crm.hubspot.configure_webhooks(
        url=url, client_secret=HUBSPOT_SECRET, enabled=True, duplicate=True
    )
    stack.worker()

    crm.hubspot.edit(ids[0], {"name": "Renamed By Webhook Inc"})
    assert crm.hubspot.flush_webhooks(10)
    # the sandbox sent it twice; deliver the same events eight times more
    delivery = crm.hubspot.webhooks.deliveries[-1]
    with httpx.Client() as client:
        for _ in range(8):
            response = client.post(url, content=delivery.body, headers=delivery.headers)
            assert response.status_code == 200, response.text
            assert response.json()["new_events"] == 0

    def renamed() -> bool:
        customer = customer_of(stack, connection, ids[0])
        return customer is not None and customer.customer_name == "Renamed By Webhook Inc"

    wait_for(renamed, 60, "the webhook's change in the customer table")
    wait_for(
        lambda: all(r.status == "succeeded" for r in runs(stack, connection, "webhook")),
        30,
        "the webhook run to end",
    )
    with transaction(stack.engine) as session:
        events = list(session.scalars(select(InboundEvent)))
    assert len(events) == len({e.event_key for e in events}) >= 1
    assert all(e.status == "handled" for e in events)
    assert len(runs(stack, connection, "webhook")) == 1


def test_salesforce_outbound_message_reaches_customers(stack: Stack, crm: Sandbox) -> None:
    org = stack.organisation()
    ids = crm.salesforce.seed(4)
    connection = stack.salesforce(crm, org)
    assert sync_connection(stack.engine, stack.settings, connection).status == "succeeded"
    api = stack.serve_api()
    crm.salesforce.configure_outbound(
        url=f"{api}/webhooks/salesforce/{connection}",
        secret=SALESFORCE_WEBHOOK_SECRET,
        secret_mode="header",
        retry_seconds=0.2,
    )
    stack.worker(queues="webhook")

    crm.salesforce.edit("Account", ids[1], {"Name": "Outbound Renamed Ltd"})
    assert crm.salesforce.wait_for_delivery(15)
    assert crm.salesforce.outbound_stats()["delivered_messages"] >= 1

    def renamed() -> bool:
        customer = customer_of(stack, connection, ids[1])
        return customer is not None and customer.customer_name == "Outbound Renamed Ltd"

    wait_for(renamed, 60, "the Outbound Message's change in the customer table")


def test_two_workers_never_sync_one_connection_at_the_same_time(stack: Stack, crm: Sandbox) -> None:
    org = stack.organisation()
    crm.hubspot.seed_companies(30)
    connection = stack.hubspot(crm, org)
    crm.hubspot.set_faults(latency_ms=150)  # each run takes a while
    stack.worker("w1", queues="operator")
    stack.worker("w2", queues="operator")
    result = stack.cli("sync", connection, "--org", org, "--full", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queued"] is True
    for _ in range(7):  # all at once, so that both workers reach for the connection
        enqueue_sync(stack.settings, connection, trigger="operator", full=True)

    lock_key = f"{stack.settings.redis_key_prefix}:lock:sync:{connection}"

    def settled() -> bool:
        # the lock is free last: a worker may hold it for a moment before its run is recorded
        found = runs(stack, connection)
        return (
            stack.queue_length("operator") == 0
            and bool(found)
            and all(r.status != "running" for r in found)
            and "'skipped': 'busy'" in "".join(p.output() for p in stack.processes)
            and stack.redis.get(lock_key) is None
        )

    wait_for(settled, 90, "the queued syncs")
    found = runs(stack, connection)
    intervals = sorted((r.started_at, r.finished_at) for r in found)
    for (_, end), (start, _) in pairwise(intervals):
        assert end is not None and end <= start, f"runs overlap: {intervals}"
    assert all(r.status == "succeeded" for r in found), [(r.status, r.error) for r in found]


# make test covers failures list and retry under CRM faults in tests/reliability/test_crm_faults.py
# (in-process workers); this variant, through worker processes and the CLI, runs in make test-slow
@pytest.mark.slow
def test_failures_recorded_under_faults_are_recovered_by_crmsync_retry(
    stack: Stack, crm: Sandbox
) -> None:
    org = stack.organisation()
    crm.hubspot.seed_companies(3)
    connection = stack.hubspot(crm, org)
    stack.worker(queues="operator")
    assert stack.cli("sync", connection, "--org", org).returncode == 0
    wait_for(lambda: [r for r in runs(stack, connection) if r.status == "succeeded"], 60, "sync")

    # billing-side changes whose push the CRM refuses record by record
    with transaction(stack.engine) as session:
        links = list(session.scalars(select(LinkRow).where(LinkRow.connection_id == connection)))
    from sync.customer import CustomerPatch
    from sync.customers import update_customer

    with transaction(stack.engine) as session:
        for n, link in enumerate(links):
            update_customer(
                session, org, link.customer_id, CustomerPatch(customer_name=f"Billing Name {n}")
            )
    crm.hubspot.set_faults(record_errors={link.crm_id: "validation" for link in links[:2]})
    assert stack.cli("sync", connection, "--org", org).returncode == 0
    wait_for(
        lambda: len(runs(stack, connection)) == 2 and runs(stack, connection)[-1].finished_at,
        60,
        "second sync",
    )
    listed = stack.cli("failures", "list", "--org", org, "--json")
    assert listed.returncode == 0, listed.stderr
    failures = json.loads(listed.stdout)
    assert {f["crm_id"] for f in failures} == {link.crm_id for link in links[:2]}

    still = stack.cli("retry", "--all", "--org", org, "--json")
    assert still.returncode == 1, still.stdout + still.stderr  # the fault is still there
    assert json.loads(still.stdout)["still_failing"] == 2

    crm.hubspot.clear_faults()
    fixed = stack.cli("retry", "--all", "--org", org, "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert json.loads(fixed.stdout)["recovered"] == 2
    assert json.loads(stack.cli("failures", "list", "--org", org, "--json").stdout) == []
    names = {crm.hubspot.read(link.crm_id)["properties"]["name"] for link in links}
    assert names == {f"Billing Name {n}" for n in range(len(links))}
