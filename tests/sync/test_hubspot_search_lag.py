"""HubSpot's search index lags behind writes: the engine with the connector's default
``search_lag_seconds`` (the harness sets 0 so that the shared suites count exact pulls).

A pull reads again the records modified in the seconds before the previous one began: they
are unchanged against the base, so nothing is written or pushed, and they count as pulled
and unchanged; a record the index had late is synced by the next run.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from connectors.hubspot.config import SEARCH_LAG_SECONDS
from sandbox.server import Sandbox
from sync.connections import update_connection
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tests.sync.conftest import World, make_world

#: how long the sandbox's index would take to have the late write: longer than any test, so
#: the index has it only when the test says (``index_now``), however slow the first sync
#: (a 1.5 s delay was outlasted by a first sync on a loaded machine, which then read it)
INDEX_DELAY = 600.0


@pytest.fixture
def world(engine: Engine, sandbox: Sandbox) -> World:
    """A HubSpot connection with the connector's default search lag."""
    world = make_world(engine, sandbox, "hubspot")
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        settings = {**row.settings, "search_lag_seconds": SEARCH_LAG_SECONDS}
        update_connection(s, world.settings, row, {"settings": settings}, check=False)
    return world


def test_a_sync_right_after_reads_the_last_seconds_again_and_changes_nothing(
    world: World,
) -> None:
    assert SEARCH_LAG_SECONDS > 0
    world.harness.seed(10)
    world.sync()
    before = world.customers()
    calls = world.harness.api_calls()
    again = world.sync()
    assert again.status == "succeeded"
    assert world.customers() == before
    done = {k: v for k, v in again.counters.items() if v and not k.startswith("calls_")}
    # the ten seeded seconds ago are read again: pulled, unchanged, nothing written or pushed
    assert done == {"pulled": 10, "unchanged": 10}
    # at no extra call: a search and an archived list per object, as with nothing to read
    assert world.harness.api_calls() - calls == 4


def test_a_record_the_index_had_late_is_synced_by_the_next_run(world: World) -> None:
    late, prompt, _ = world.harness.seed(3)
    world.sync()
    world.harness.set_faults(search_index_delay_seconds=INDEX_DELAY)
    world.harness.edit(late, {"address.city": "Tromsø"})
    world.harness.set_faults(search_index_delay_seconds=0)
    time.sleep(0.005)  # the prompt edit in a later millisecond
    world.harness.edit(prompt, {"address.city": "Bodø"})
    first = world.sync()
    assert world.customer_by_external_id(prompt)["address"]["city"] == "Bodø"
    assert world.customer_by_external_id(late)["address"]["city"] != "Tromsø"  # not indexed
    world.harness.hs.index_now()
    second = world.sync()
    assert world.customer_by_external_id(late)["address"]["city"] == "Tromsø"
    assert first.counters["updated"] == second.counters["updated"] == 1
    assert not second.counters.get("pushed") and not world.conflicts()
