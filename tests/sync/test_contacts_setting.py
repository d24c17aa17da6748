"""``--setting contacts=false``: a connection that syncs accounts / companies only."""

from __future__ import annotations

import pytest

from sync.connections import ConnectionSetupError, update_connection
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tests.sync.conftest import World


def _set(world: World, **settings: object) -> None:
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        update_connection(s, world.settings, row, {"settings": settings}, check=False)


def test_with_contacts_off_a_sync_pulls_no_contacts(world: World) -> None:
    _set(world, contacts=False)
    world.harness.seed(5)
    result = world.sync(full=True)
    assert result.status == "succeeded", result.error
    assert result.counters["created"] == 5
    assert result.counters["contacts"] == 0
    assert result.counters["calls_contacts"] == 0  # not one API call for contacts
    _set(world, contacts=True)
    again = world.sync(full=True)
    assert again.counters["contacts"] >= 10  # two or three per record, now synced


def test_the_contacts_setting_is_true_or_false(world: World) -> None:
    with pytest.raises(ConnectionSetupError, match="contacts"):
        _set(world, contacts="no")
