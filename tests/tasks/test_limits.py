"""A spent daily allowance through the real scheduler pieces (issue 12, part 2), on both
CRMs, with PostgreSQL and the Redis gate every worker shares: the connection is paused
(visible in ``crmsync connections list``), the scheduler and the webhook inbox make no call
while it is, and beat's dispatcher resumes it once the allowance returns, with no operator.

The allowance's return is simulated on both sides: the sandbox starts a new day (HubSpot) or
lets the spent calls age out (Salesforce), and the dispatcher is asked what it does at a
moment past the pause's end.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from sandbox.server import Sandbox
from sync import connections
from sync.connections import ConnectionSpec, add_connection
from sync.engine import RunResult
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import CustomerRow
from tasks import work
from tasks.rate import RedisRateGate
from tests.tasks.conftest import Stack

RECORDS = 120


def _connection(stack: Stack, sb: Sandbox, org: str, crm: str) -> str:
    if crm == "hubspot":
        sb.hubspot.set_faults(rate_limit_interval_ms=20, search_per_second=None)
        spec = ConnectionSpec(
            name="hs",
            kind="hubspot",
            credentials={"access_token": "token-hs", "client_secret": "hs-secret"},
            settings={
                "host": sb.hubspot_url,
                "backoff_base_seconds": 0.01,
                "rate_limit_wait_seconds": 0.01,
                "search_per_second": 0,
                "clock_skew_ms": 0,
            },
        )
    else:
        spec = ConnectionSpec(
            name="sf",
            kind="salesforce",
            credentials={
                "client_id": sb.salesforce.client_id,
                "client_secret": sb.salesforce.client_secret,
                "webhook_secret": "sf-outbound-secret",
            },
            settings={
                "instance_url": sb.salesforce_url,
                "ca_bundle": str(sb.ca_file),
                "organization_id": sb.salesforce.organization_id,
                "backoff_base_seconds": 0.01,
                "limit_wait_seconds": 0.01,
            },
            field_map={"email": "Billing_Email__c"},
        )
    with transaction(stack.engine) as session:
        return add_connection(session, stack.settings, org, spec).id


def _seed(sb: Sandbox, crm: str, count: int) -> None:
    if crm == "hubspot":
        sb.hubspot.seed_companies(count)
    else:
        sb.salesforce.seed(count)


def _spend_allowance(sb: Sandbox, crm: str, after: int) -> None:
    if crm == "hubspot":
        sb.hubspot.set_faults(daily_limit=sb.hubspot.api.limits.used_today() + after)
    else:
        sb.salesforce.set_faults(daily_limit=sb.salesforce.api_usage + after)


def _restore_allowance(sb: Sandbox, crm: str) -> None:
    if crm == "hubspot":
        sb.hubspot.set_faults(daily_limit=None)
        sb.hubspot.new_day()
    else:
        sb.salesforce.set_faults(daily_limit=None)


def _api_calls(sb: Sandbox, crm: str) -> int:
    return int(sb.hubspot.api_calls() if crm == "hubspot" else sb.salesforce.api_requests())


def _customers(stack: Stack) -> int:
    with transaction(stack.engine) as session:
        return session.query(CustomerRow).count()


@pytest.mark.parametrize("kind", ["hubspot", "salesforce"])
def test_paused_by_the_daily_limit_then_resumed_by_the_scheduler(
    stack: Stack, crm: Sandbox, kind: str
) -> None:
    org = stack.organisation()
    _seed(crm, kind, RECORDS)
    connection = _connection(stack, crm, org, kind)
    _spend_allowance(crm, kind, after=1)

    paused = work.run_sync(stack.settings, stack.engine, connection)

    assert isinstance(paused, RunResult) and paused.status == "paused"
    with transaction(stack.engine) as session:
        row = repo.get_connection(session, connection)
        assert row is not None
        pause = connections.limit_pause(row)
    assert pause is not None
    until, reason = pause
    listed = stack.cli("connections", "list", "--org", org, "--json")
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert shown["state"] == "paused_by_limit"
    assert shown["paused_by_limit"] == {"until": until.isoformat(), "reason": reason}
    table = stack.cli("connections", "list", "--org", org)
    assert "paused by CRM limit until" in " ".join(table.stdout.split())
    # every worker's gate is suspended: a call would be refused before it is made
    gate = work.connection_gate(stack.settings, stack.engine, connection)
    assert isinstance(gate, RedisRateGate) and gate.suspension() is not None

    # while paused: the scheduler does not pick it, and neither it nor the inbox calls the CRM
    calls = _api_calls(crm, kind)
    early = work.dispatch(stack.settings, stack.engine, now=until - timedelta(seconds=5))
    assert connection not in early["due"] and early["resumed"] == []
    skipped: Any = work.run_sync(stack.settings, stack.engine, connection)
    assert isinstance(skipped, work.Skipped) and skipped.reason == "paused_by_limit"
    assert skipped.detail is not None and until.isoformat() in skipped.detail
    assert isinstance(work.run_inbox(stack.settings, stack.engine, connection), work.Skipped)
    assert _api_calls(crm, kind) == calls

    # the allowance returns: the dispatcher resumes the connection and it is due at once
    _restore_allowance(crm, kind)
    later = work.dispatch(stack.settings, stack.engine, now=until + timedelta(seconds=1))
    assert later["resumed"] == [connection]
    assert connection in later["due"]
    assert gate.suspension() is None

    done = work.run_sync(stack.settings, stack.engine, connection)  # as the worker would

    assert isinstance(done, RunResult) and done.status == "succeeded", done
    assert _customers(stack) == RECORDS
    name = "hs" if kind == "hubspot" else "sf"
    data = json.loads(stack.cli("connections", "show", name, "--org", org, "--json").stdout)
    assert data["state"] == "active" and data["paused_by_limit"] is None
    assert data["api_usage"]["limit"] > 0
