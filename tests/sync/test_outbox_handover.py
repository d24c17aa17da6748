"""A billing edit that races the first pull of its record reaches the CRM even when the
run that pulled it stops before its push step, and a later run does the first push.

The race: a page reads the customer, a billing user's edit commits, then the page links the
record with the name it read as the base. The link is written after the edit, so the
first push's walk (customers changed since their link was written) passes the customer by;
only the outbox, read from where it stood when the pull began, still holds the edit. A
run that lost its lock (a Redis restart) at that point ends 'interrupted', and the next
run, also a first push, must read the outbox from where the interrupted pull began, not
from where it began itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from sandbox.server import Sandbox
from sync.customer import CustomerIn, CustomerPatch
from sync.customers import create_customer, update_customer
from sync.fencing import claim_fence
from sync.store import sync_repository as repo
from sync.store.db import make_engine, transaction
from sync.store.models import Base
from tests.sync.conftest import CRMS, World, make_world


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    # the race needs two writers at once: PostgreSQL (SQLite serialises them)
    engine = make_engine(postgres_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


def _edit_while_the_page_is_open(
    world: World, customer_id: str, name: str, done: list[str]
) -> Callable[..., None]:
    """Once the sync's page has read its customers (inside its transaction), a billing
    user renames ``customer_id`` and commits, before the page writes its links; the
    listener (remove it after the run)."""

    def after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if done or "FROM customers" not in statement or "links" in statement:
            return
        if not conn.in_transaction() or "INSERT" in statement:
            return
        done.append(statement)
        with transaction(world.engine) as session:
            update_customer(
                session,
                world.organisation_id,
                customer_id,
                CustomerPatch.model_validate({"customer_name": name}),
            )

    event.listen(world.engine, "after_cursor_execute", after_execute)
    return after_execute


@pytest.mark.parametrize("crm", CRMS)
def test_an_edit_racing_an_interrupted_first_pull_reaches_the_crm(
    crm: str, pg_engine: Engine, sandbox: Sandbox
) -> None:
    world = make_world(pg_engine, sandbox, crm)
    crm_id = world.harness.seed(1)[0]
    original = world.harness.read(crm_id)["customer_name"]
    with transaction(pg_engine) as session:
        customer_id = str(
            create_customer(
                session,
                world.organisation_id,
                CustomerIn(customer_name=original, external_id=crm_id),
            ).id
        )

    # run 1 pulls and links the record while the edit commits, then loses its lock
    lost: list[bool] = []
    with transaction(pg_engine) as session:
        fence = claim_fence(session, f"sync:{world.connection_id}", lambda: bool(lost))
    raced: list[str] = []
    listener = _edit_while_the_page_is_open(world, customer_id, "Edited In Billing", raced)

    def progress(step: str, counters: dict[str, int]) -> None:
        lost.append(True)  # the lock's renewal finds it gone after the first page

    try:
        first = world.sync(fence=fence, progress=progress)
    finally:
        event.remove(world.engine, "after_cursor_execute", listener)

    assert raced, "the edit did not race the page"
    assert first.status == "interrupted", first.error
    link = world.link(crm_id)
    assert link is not None and link.base["customer_name"] == original
    with transaction(pg_engine) as session:
        assert repo.get_cursor(session, world.connection_id, "outbox") is None

    # run 2 (the scheduler's next, a new lock holder) does the first push
    second = world.sync()

    assert second.status == "succeeded", second.error
    assert world.harness.read(crm_id)["customer_name"] == "Edited In Billing"
    # (the address, unset in billing, differs on first link: conflicts of their own)
    assert [c.field for c in world.conflicts() if c.field == "customer_name"] == []
    assert world.sync().counters.get("pushed", 0) == 0  # and it stays done
