"""Every run ends with a status and a reason on its row, never a traceback to its caller
(issue 13 §2c): the one run wrapper of ``sync_connection`` and ``sync_records``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors.base import Connector, CrmContact, Page
from sandbox.server import Sandbox
from sync.store.db import transaction
from sync.store.models import SyncRun
from tests.sync.conftest import World, make_world


@pytest.fixture
def world(engine: Engine, sandbox: Sandbox) -> World:
    """One CRM is enough here: the wrapper is the engine's, not the connector's."""
    return make_world(engine, sandbox, "hubspot")


def _failing(world: World, error: BaseException) -> Connector:
    """The harness's real connector, whose contacts pull breaks with ``error`` once the
    accounts / companies are in (a bug of ours, or the process being stopped)."""
    connector = world.harness.connector()

    def pull_contacts(cursor: str | None, *, full: bool = False) -> Iterator[Page[CrmContact]]:
        raise error

    connector.pull_contacts = pull_contacts  # type: ignore[method-assign]
    return connector


def _run_row(world: World, run_id: str | None) -> SyncRun:
    with transaction(world.engine) as session:
        run = session.scalars(select(SyncRun).where(SyncRun.id == run_id)).one()
        session.expunge(run)
        return run


def test_an_unexpected_error_fails_the_run_with_its_reason(world: World) -> None:
    crm_ids = world.harness.seed(3)
    result = world.sync(connector=_failing(world, KeyError("the CRM left out a key")))
    assert result.status == "failed"
    assert result.error == "KeyError: 'the CRM left out a key'"
    run = _run_row(world, result.run_id)
    assert (run.status, run.error) == ("failed", result.error)
    assert run.finished_at is not None
    # the pages committed before the error stay
    assert {c["external_id"] for c in world.customers()} == set(crm_ids)
    # and the next run, with nothing broken, goes on
    assert world.sync().status == "succeeded"


def test_records_runs_share_the_wrapper(world: World) -> None:
    (crm_id,) = world.harness.seed(1)
    connector: Any = world.harness.connector()

    def pull_customers_by_ids(ids: list[str]) -> list[Any]:
        raise ValueError("a record the connector could not read\nsecond line")

    connector.pull_customers_by_ids = pull_customers_by_ids
    result = world.sync_records(crm_ids=[crm_id], connector=connector)
    assert (result.status, result.error) == (
        "failed",
        "ValueError: a record the connector could not read",
    )
    assert _run_row(world, result.run_id).status == "failed"


def test_a_stopping_process_interrupts_the_run_and_goes_on(world: World) -> None:
    world.harness.seed(1)
    with pytest.raises(KeyboardInterrupt):
        world.sync(connector=_failing(world, KeyboardInterrupt()))
    with transaction(world.engine) as session:
        (run,) = session.scalars(
            select(SyncRun).where(SyncRun.connection_id == world.connection_id)
        )
        assert run.status == "interrupted"
        assert run.error == "the process stopped (KeyboardInterrupt)"
