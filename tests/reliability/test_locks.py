"""The per-connection lock and its fencing token: the lock lives as long as its holder, a
holder that lost it knows, and the store refuses the writes of a holder that is stale."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine

from sync.fencing import StaleRun, claim_fence
from sync.store.db import transaction
from tasks.locks import RedisLock
from tests.sync.conftest import World, sandbox, world

__all__ = ["sandbox", "world"]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def key() -> str:
    return f"crmsync-test-{uuid.uuid4().hex}:lock:sync:c1"


def test_a_held_lock_is_extended_for_as_long_as_its_holder_lives(client: redis.Redis) -> None:
    name = key()
    lock = RedisLock(client, name, ttl_seconds=2)
    assert lock.acquire()
    try:
        time.sleep(5)  # more than two TTLs
        assert lock.holder() == lock.token
        assert not lock.lost
        assert not RedisLock(client, name, ttl_seconds=2).acquire()
    finally:
        lock.release()
    assert client.get(name) is None


def test_a_holder_knows_when_its_lock_was_lost_and_never_frees_the_new_holders(
    client: redis.Redis,
) -> None:
    name = key()
    lock = RedisLock(client, name, ttl_seconds=1)
    assert lock.acquire()
    client.delete(name)  # as a Redis restart without persistence does
    second = RedisLock(client, name, ttl_seconds=1)
    assert second.acquire()
    deadline = time.monotonic() + 5
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.lost
    lock.release()
    assert second.holder() == second.token  # the old holder did not free the new one's
    assert not second.lost
    second.release()


def test_the_store_refuses_a_stale_holders_commit(engine: Engine) -> None:
    with transaction(engine) as session:
        first = claim_fence(session, "sync:c1")
    with transaction(engine) as session:
        first.check(session)  # still the newest
        second = claim_fence(session, "sync:c1")
    assert second.token > first.token
    with pytest.raises(StaleRun, match="newer holder"), transaction(engine) as session:
        first.check(session)
    with transaction(engine) as session:
        second.check(session)
        assert claim_fence(session, "sync:other").token == 1  # per lock name


def test_a_lost_lock_stops_the_run_even_before_anyone_else_claims(engine: Engine) -> None:
    lost = False
    with transaction(engine) as session:
        fence = claim_fence(session, "sync:c2", lambda: lost)
    with transaction(engine) as session:
        fence.check(session)
    lost = True
    with pytest.raises(StaleRun, match="lost"), transaction(engine) as session:
        fence.check(session)


# --- the engine checks the fence at every commit ----------------------------------------------


def _customers(world: World) -> int:
    return world.count_customers()


def test_a_run_whose_lock_has_a_newer_holder_writes_nothing(world: World) -> None:
    world.harness.seed(5)
    name = f"sync:{world.connection_id}"
    with transaction(world.engine) as session:
        stale = claim_fence(session, name)
    with transaction(world.engine) as session:
        claim_fence(session, name)  # another worker took the lock meanwhile
    result = world.sync(fence=stale)
    assert result.status == "interrupted"
    assert "newer holder" in (result.error or "")
    assert _customers(world) == 0


def test_a_run_that_lost_its_lock_stops_before_its_next_commit(world: World) -> None:
    crm_ids = world.harness.seed(5)
    name = f"sync:{world.connection_id}"
    lost = False
    with transaction(world.engine) as session:
        fence = claim_fence(session, name, lambda: lost)

    def lose_after_the_first_page(step: str, counters: dict[str, int]) -> None:
        nonlocal lost
        lost = True

    first = world.sync(fence=fence, progress=lose_after_the_first_page)
    assert first.status == "interrupted" and "was lost" in (first.error or "")
    assert _customers(world) == 5  # the page committed before the loss stays
    # the next holder carries on from there
    with transaction(world.engine) as session:
        fresh = claim_fence(session, name)
    assert world.sync(fence=fresh).status == "succeeded"
    assert {c["external_id"] for c in world.customers()} == set(crm_ids)
