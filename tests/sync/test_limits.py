"""CRM rate limits during a sync, through the sandbox and the real client libraries, on both
CRMs and both stores (issue 12, part 2):

- a burst of per-second limits is traffic: the run waits each out and completes;
- a spent daily allowance pauses the connection (a visible state, with the reason and the
  time it ends), burns no calls while paused, and the connection resumes once the
  allowance returns, completing the sync with nothing lost.

The waits are the harnesses' (10 ms for a limit without ``Retry-After``), so these run fast.
"""

from __future__ import annotations

from datetime import timedelta

from sync import connections, customers
from sync.customer import CustomerIn
from sync.health import connection_health
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import ConnectionRow
from tests.sync.conftest import World

RECORDS = 150


def _billing_create(world: World, name: str) -> str:
    with transaction(world.engine) as s:
        data = CustomerIn.model_validate({"customer_name": name})
        return str(customers.create_customer(s, world.organisation_id, data).id)


def _connection(world: World) -> ConnectionRow:
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        s.expunge(row)
        return row


def test_thirty_per_second_limits_in_a_row_are_waited_out_and_nothing_is_lost(
    world: World,
) -> None:
    crm_ids = world.harness.seed(RECORDS)
    billing_only = [_billing_create(world, f"Billing only {n}") for n in range(3)]
    fault = world.harness.rate_limit(30)  # no Retry-After: the policy's window is waited
    assert fault.wait_seconds is not None and fault.wait_seconds < 0.1

    result = world.sync()

    assert result.status == "succeeded", result.error
    assert result.counters["created"] == RECORDS
    for crm_id in crm_ids:
        world.customer_by_external_id(crm_id)
    links = {link.customer_id: link.crm_id for link in world.links()}
    for customer_id in billing_only:  # pushed to the CRM despite the burst
        assert world.harness.read(links[customer_id])["customer_name"].startswith("Billing only")
    assert world.failures() == []
    # the CRM refused 30 calls more than the run needed: all were made again
    again = world.sync()
    assert again.status == "succeeded" and again.counters.get("created", 0) == 0


def _pause_for_an_hour(world: World) -> None:
    """Salesforce names no time its allowance returns: the harness pauses 1 s for speed, which
    a loaded machine can outlast between two steps of this test. HubSpot's pause runs to the
    portal's midnight and needs nothing."""
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        row.settings = {**row.settings, "daily_limit_recheck_seconds": 3600.0}


def test_a_spent_daily_allowance_pauses_the_connection_until_it_returns(world: World) -> None:
    _pause_for_an_hour(world)
    crm_ids = world.harness.seed(RECORDS)
    world.harness.spend_allowance(after=1)  # the run's second call is refused

    paused = world.sync()

    assert paused.status == "paused"
    assert paused.error is not None and "paused by the CRM's daily limit until" in paused.error
    row = _connection(world)
    described = connections.describe(row)
    assert described["state"] == connections.PAUSED_BY_LIMIT
    pause = described["paused_by_limit"]
    assert pause is not None and pause["reason"]
    until = connections.limit_pause(row)
    assert until is not None
    assert row.next_sync_at is not None
    assert row.next_sync_at == until[0]  # due again when it returns
    assert row.alert_state.get("paused_until") == until[0].isoformat()  # alerted once
    with transaction(world.engine) as s:
        (health,) = connection_health(s, world.organisation_id)
    assert health.state == connections.PAUSED_BY_LIMIT and health.paused_until == until[0]
    assert health.paused_reason == pause["reason"]

    # paused: a run started anyway (an operator's command) burns no call
    calls = world.harness.api_calls()
    again = world.sync()
    assert again.status == "paused" and again.api_calls == 0
    assert world.harness.api_calls() == calls

    # before the time, the scheduler leaves it paused; once it has passed, it resumes it
    with transaction(world.engine) as s:
        assert connections.resume_expired(s, until[0] - timedelta(seconds=1)) == []
    world.harness.restore_allowance()
    with transaction(world.engine) as s:
        resumed = connections.resume_expired(s, until[0] + timedelta(seconds=1))
        assert [r.id for r in resumed] == [world.connection_id]
        due = [r.id for r in repo.due_connections(s, until[0] + timedelta(seconds=1))]
        assert world.connection_id in due
    assert connections.describe(_connection(world))["state"] == "active"

    done = world.sync()

    assert done.status == "succeeded", done.error
    for crm_id in crm_ids:
        world.customer_by_external_id(crm_id)
    assert world.count_customers() == RECORDS
    assert world.failures() == []
    usage = _connection(world).api_usage
    assert usage["limit"] > 0 and usage["used"] >= 0  # as the CRM's answers reported it


def test_an_operator_resume_ends_a_pause_by_limit(world: World) -> None:
    world.harness.seed(5)
    world.harness.spend_allowance(after=0)
    assert world.sync().status == "paused"
    world.harness.restore_allowance()
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        connections.set_state(row, "active")
    assert connections.describe(_connection(world))["state"] == "active"
    assert world.sync().status == "succeeded"
