"""The shared rate budget: the Redis gate on its own, then two Celery workers syncing one
connection against a HubSpot that rate-limits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from connectors.errors import DailyLimitExceeded
from sandbox.server import Sandbox, SandboxOptions
from sync.engine import sync_connection
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tasks.enqueue import enqueue_inbox, enqueue_sync
from tasks.rate import MAX_BATCH, Limit, RedisRateGate, gate_for
from tests.tasks.conftest import Stack, wait_for
from tests.tasks.test_worker import runs

# --- the gate against real Redis -----------------------------------------------------------


@pytest.fixture
def gates(stack: Stack) -> Iterator[tuple[RedisRateGate, RedisRateGate]]:
    """Two gates of one connection, as two workers would hold them."""
    limit = Limit(5, 1)
    prefix = stack.settings.redis_key_prefix
    yield (
        RedisRateGate(stack.redis, prefix, "conn-1", limit),
        RedisRateGate(stack.redis, prefix, "conn-1", limit),
    )


def test_a_pause_asked_of_one_worker_makes_every_worker_wait(
    gates: tuple[RedisRateGate, RedisRateGate],
) -> None:
    first, second = gates
    first.pause(0.5)
    assert 0 < second.paused_for() <= 0.5
    second.acquire()
    assert second.waited_seconds >= 0.4  # it slept out the pause the other one was told
    assert second.paused_for() == 0


def test_the_bucket_is_shared_and_refills(gates: tuple[RedisRateGate, RedisRateGate]) -> None:
    first, second = gates
    for _ in range(5):
        first.acquire()
    assert first.waited_seconds == 0
    second.acquire()  # the sixth call of the second: the bucket is empty, it waits
    assert second.waited_seconds > 0


def test_limit_headers_correct_the_budget(
    stack: Stack, gates: tuple[RedisRateGate, RedisRateGate]
) -> None:
    first, _ = gates
    first.observe(
        {
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Remaining": "0",
        }
    )
    bucket = {k.decode(): v.decode() for k, v in stack.redis.hgetall(first.bucket_key).items()}
    assert float(bucket["cap"]) == 190 and float(bucket["tokens"]) == 0
    first.acquire()
    assert first.waited_seconds > 0  # no token left: it waited for the refill
    first.observe({"Sforce-Limit-Info": "api-usage=14999/15000"})
    assert first.usage() == (14999, 15000)


def test_a_suspension_stops_every_worker_without_a_call(
    gates: tuple[RedisRateGate, RedisRateGate],
) -> None:
    first, second = gates
    until = datetime.now(UTC) + timedelta(hours=3)
    first.suspend(until, "HubSpot 429: You have reached your daily limit.")
    with pytest.raises(DailyLimitExceeded) as err:
        second.acquire()
    assert err.value.until == until and "daily limit" in str(err.value)
    first.suspend(until - timedelta(hours=1), "earlier")  # never shortened by a later word
    assert second.suspension() == (until, "HubSpot 429: You have reached your daily limit.")
    second.lift()  # an operator resumed the connection
    second.acquire()
    assert first.suspension() is None


class _Counted:
    """Counts the round trips of a gate's acquire script (Redis answers them)."""

    def __init__(self, script: Any) -> None:
        self.script, self.calls = script, 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return self.script(**kwargs)


def test_calls_in_quick_succession_take_tokens_a_few_at_a_time(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tasks.rate.BATCH_SECONDS", 5.0)  # a loaded machine's stall is quick
    gate = RedisRateGate(stack.redis, stack.settings.redis_key_prefix, "conn-b", Limit(100, 1))
    counted = gate._acquire = _Counted(gate._acquire)
    for _ in range(40):
        gate.acquire()
    # batches of 1, 2, 4, then 8 at most: a round trip for several calls
    assert counted.calls == 3 + -(-(40 - 7) // MAX_BATCH)
    tokens = float(stack.redis.hget(gate.bucket_key, "tokens"))
    assert tokens <= 100 - 40 + 100 * 1.0  # every call took its token from the shared bucket


def test_held_tokens_go_back_to_the_bucket_and_the_gate_slows_down(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = 1.0  # long enough that a loaded machine's stall does not end it early
    monkeypatch.setattr("tasks.rate.BATCH_SECONDS", held)
    # ten tokens in nearly three hours: the bucket does not refill while the test runs
    gate = RedisRateGate(stack.redis, stack.settings.redis_key_prefix, "conn-c", Limit(10, 10_000))
    other = RedisRateGate(stack.redis, stack.settings.redis_key_prefix, "conn-c", Limit(10, 10_000))
    for _ in range(4):  # round trips take 1, 2 (one held), then 4 (three held)
        gate.acquire()
    assert float(stack.redis.hget(gate.bucket_key, "tokens")) == pytest.approx(3, abs=0.05)
    time.sleep(held + 0.05)
    other.acquire()  # the held three are not the other worker's yet
    assert float(stack.redis.hget(gate.bucket_key, "tokens")) == pytest.approx(2, abs=0.05)
    gate.acquire()  # held too long: given back, and this call takes one
    assert float(stack.redis.hget(gate.bucket_key, "tokens")) == pytest.approx(4, abs=0.05)
    assert gate._held == 0  # one at a time again
    gate.acquire()  # and again quick: a batch of two (one held)
    assert float(stack.redis.hget(gate.bucket_key, "tokens")) == pytest.approx(2, abs=0.05)


def test_a_pause_drops_the_tokens_a_gate_holds(stack: Stack) -> None:
    gate = RedisRateGate(stack.redis, stack.settings.redis_key_prefix, "conn-d", Limit(100, 1))
    for _ in range(4):
        gate.acquire()
    gate.pause(0.3)  # the CRM refused this worker: it waits like every other
    gate.acquire()
    assert gate.waited_seconds >= 0.25


def test_without_redis_the_gate_is_shared_by_the_process(stack: Stack) -> None:
    local = stack.settings.model_copy(update={"broker_url": "", "redis_url": ""})
    assert gate_for(local, "c", "hubspot") is gate_for(local, "c", "hubspot")
    assert gate_for(local, "c", "hubspot") is not gate_for(local, "d", "hubspot")


# --- two workers against a CRM that rate-limits --------------------------------------------


class RateWindow:
    """ASGI wrapper over the HubSpot sandbox: every ``every``-th API request is refused with
    429 and ``Retry-After``; a request that arrives before that window ends is refused again
    ("early"): that is the refusal for the same reason a client must never earn twice."""

    def __init__(self, app: Any, every: int = 5, retry_after: float = 0.5) -> None:
        self.app = app
        self.every = every
        self.retry_after = retry_after
        self.count = 0
        self.blocked_until = 0.0
        self.events: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/crm/"):
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        with self.lock:
            if now < self.blocked_until:
                kind = "early"
            else:
                self.count += 1
                kind = "limited" if self.count % self.every == 0 else "ok"
                if kind == "limited":
                    self.blocked_until = now + self.retry_after
            self.events.append(kind)
            wait = max(0.001, self.blocked_until - now)
        if kind == "ok":
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "category": "RATE_LIMITS",
                "correlationId": "rate-window",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", f"{wait:.3f}".encode()),
                    (b"x-hubspot-ratelimit-remaining", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def limited_crm() -> Iterator[tuple[Sandbox, RateWindow]]:
    sb = Sandbox(SandboxOptions())
    window = RateWindow(sb.hubspot.app)
    sb.hubspot.app = window  # type: ignore[assignment]
    with sb:
        yield sb, window


def test_when_the_crm_rate_limits_every_worker_waits(
    stack: Stack, limited_crm: tuple[Sandbox, RateWindow]
) -> None:
    crm, window = limited_crm
    org = stack.organisation()
    ids = crm.hubspot.seed_companies(500)
    connection = stack.hubspot(crm, org)
    window.every = 10**9  # no limits while the records are first linked
    assert sync_connection(stack.engine, stack.settings, connection).status == "succeeded"
    with transaction(stack.engine) as session:
        repo.add_inbound_events(
            session,
            [
                {
                    "organisation_id": org,
                    "connection_id": connection,
                    "event_key": f"evt-{crm_id}",
                    "kind": "changed",
                    "object_type": "customer",
                    "crm_id": crm_id,
                    "payload": {"merged_into": None, "merged_ids": []},
                }
                for crm_id in ids
            ],
        )
    # one worker for operator work, one for webhook work: both on this connection at once
    stack.worker("operator-worker", queues="operator")
    stack.worker("webhook-worker", queues="webhook")
    window.events.clear()
    window.count = 0
    window.every = 5
    enqueue_sync(stack.settings, connection, trigger="operator", full=True)
    enqueue_inbox(stack.settings, connection)

    def finished() -> bool:
        # both runs ended (the webhook run beside the full sync never marks it interrupted)
        found = runs(stack, connection)
        return len(found) == 3 and all(r.status in ("succeeded", "failed") for r in found)

    wait_for(finished, 120, "both runs")
    found = runs(stack, connection)
    assert [r.status for r in found] == ["succeeded"] * 3, [r.error for r in found]
    assert {r.trigger for r in found[1:]} == {"operator", "webhook"}
    events = window.events
    limited, early = events.count("limited"), events.count("early")
    assert limited >= 3, events
    # after a refusal every worker waits out the window; at most a request already on its
    # way from the other worker arrives inside it, and never two refusals in a row after it
    assert early <= limited, events
    for before, after in pairwise(events):
        assert not (before == "early" and after == "early"), events
