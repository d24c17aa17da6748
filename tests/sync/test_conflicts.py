"""Resolving a conflict: decided in one transaction, the CRM called outside any, recorded in
another; on both CRMs and both stores."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import event

from connectors.base import Connector
from sync import customers
from sync.conflicts import resolve_conflict
from sync.connections import open_connector
from sync.customer import CustomerPatch
from sync.errors import ConflictNotOpen, InvalidInput, NotFound
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tests.sync.conftest import World


class Watched:
    """The connection's real connector, noting how many store connections are checked out
    (an open transaction holds one) whenever the CRM is called."""

    def __init__(self, real: Connector, open_connections: list[int]) -> None:
        self._real = real
        self._open = open_connections
        self.held: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def pull_customers_by_ids(self, ids: Any) -> Any:
        self.held.append(self._open[0])
        return self._real.pull_customers_by_ids(ids)

    def push_customers(self, pushes: Any) -> Any:
        self.held.append(self._open[0])
        return self._real.push_customers(pushes)


def _conflict(world: World) -> tuple[str, str]:
    (crm_id,) = world.harness.seed(1)
    world.sync()
    customer = world.customer_by_external_id(crm_id)
    world.harness.edit(crm_id, {"customer_name": "CRM Name"})
    with transaction(world.engine) as s:
        patch = CustomerPatch(customer_name="Billing Name")
        customers.update_customer(s, world.organisation_id, customer["id"], patch)
    world.sync()
    (conflict,) = world.conflicts()
    return crm_id, conflict.id


def test_no_transaction_is_open_while_the_crm_is_called(world: World) -> None:
    crm_id, conflict_id = _conflict(world)
    open_connections = [0]

    def checked_out(*_: Any) -> None:
        open_connections[0] += 1

    def checked_in(*_: Any) -> None:
        open_connections[0] -= 1

    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        watched = Watched(open_connector(world.settings, row), open_connections)
    event.listen(world.engine, "checkout", checked_out)
    event.listen(world.engine, "checkin", checked_in)
    try:
        done = resolve_conflict(
            world.engine,
            world.settings,
            world.organisation_id,
            conflict_id,
            keep="billing",
            actor="test",
            connector=cast(Connector, watched),
        )
    finally:
        event.remove(world.engine, "checkout", checked_out)
        event.remove(world.engine, "checkin", checked_in)
    assert watched.held == [0, 0]  # read the CRM's value, then push billing's: no store held
    assert (done.value, done.crm_written, done.billing_written) == ("Billing Name", True, False)
    assert world.harness.read(crm_id)["customer_name"] == "Billing Name"
    assert world.conflicts() == []
    (resolved,) = world.conflicts(status="resolved")
    assert (resolved.resolution, resolved.resolved_by) == ("billing", "test")
    # once resolved, it stays so; an unknown conflict is not found; one choice only
    with pytest.raises(ConflictNotOpen):
        resolve_conflict(world.engine, world.settings, world.organisation_id, conflict_id,
                         keep="crm", actor="test")  # fmt: skip
    with pytest.raises(NotFound):
        resolve_conflict(world.engine, world.settings, world.organisation_id, "nope",
                         keep="crm", actor="test")  # fmt: skip
    with pytest.raises(InvalidInput):
        resolve_conflict(world.engine, world.settings, world.organisation_id, conflict_id,
                         keep="crm", set_value=True, actor="test")  # fmt: skip
