"""The per-connection rate budget shared by every worker and every kind of work.

:class:`RedisRateGate` implements ``connectors.base.RateGate`` as a token bucket kept in
Redis, one per connection, so scheduled syncs, webhook syncs, retries and operator commands
on any host draw from one budget:

- ``acquire()`` takes a token (a Lua script on Redis's own clock, so hosts whose clocks
  differ agree), or sleeps until the next token or the end of a pause;
- ``pause(seconds)`` is called when the CRM says wait (429 with ``Retry-After``,
  ``REQUEST_LIMIT_EXCEEDED``): it moves the connection's ``paused-until`` stamp, so every
  worker's next ``acquire()`` waits, not only the one that was refused;
- ``suspend(until, reason)`` is called when the CRM's daily allowance is spent (HubSpot
  ``DAILY``, Salesforce ``TotalRequests``): until then every worker's ``acquire()`` raises
  ``DailyLimitExceeded`` at once, so no worker burns another call;
- ``observe(headers)`` corrects the bucket from the CRM's own view: HubSpot's
  ``X-HubSpot-RateLimit-Max`` / ``-Interval-Milliseconds`` set the bucket's size and rate and
  ``-Remaining`` caps the tokens left; Salesforce's ``Sforce-Limit-Info: api-usage=USED/TOTAL``
  is recorded (:meth:`RedisRateGate.usage`).

Starting budgets (:data:`DEFAULT_LIMITS`) are the CRMs' documented limits: HubSpot private
apps 100 requests per 10 seconds (190 on higher tiers: set ``rate_max`` in the connection's
settings, or let the headers say so); Salesforce has no short-window limit but a daily
allocation and at most 25 concurrent long-running requests, so its bucket allows bursts of
25 and 25 per second. A connection's settings may override both: ``rate_max`` (requests)
per ``rate_interval_seconds``.
https://developers.hubspot.com/docs/api/usage-details
https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm

Without Redis (the embedded default, one process) :func:`gate_for` gives one
:class:`connectors.calls.LocalRateGate` per connection, shared by the process's threads.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors import telemetry
from connectors.base import RateGate
from connectors.calls import LocalRateGate
from connectors.errors import DailyLimitExceeded
from sync.settings import Settings
from tasks.runtime import redis_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    requests: float
    interval_seconds: float

    @property
    def per_ms(self) -> float:
        return self.requests / (self.interval_seconds * 1000)


DEFAULT_LIMITS: dict[str, Limit] = {
    "hubspot": Limit(100, 10),
    "salesforce": Limit(25, 1),
}
FALLBACK_LIMIT = Limit(10, 1)
#: longest single sleep inside acquire(), so a lifted pause is noticed soon
MAX_SLEEP_SECONDS = 1.0
#: the most tokens a gate takes from the bucket in one round trip, and how long it holds
#: them: a pause another worker was asked for is seen within that time
MAX_BATCH = 8
BATCH_SECONDS = 0.25

# KEYS[1] bucket hash, KEYS[2] paused-until (ms), KEYS[3] suspended; ARGV capacity, tokens
# per ms, ttl ms, tokens wanted, tokens given back. Returns {wait, taken, tokens}: wait 0
# when tokens were taken (1 to the number wanted, as many as the bucket has), -1 while the
# connection is suspended (nothing taken), else the milliseconds to wait; tokens, what the
# bucket holds after.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {-1, 0, '0'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return {paused - now, 0, '0'} end
local cap = tonumber(redis.call('HGET', KEYS[1], 'cap') or ARGV[1])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or cap)
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate + tonumber(ARGV[5]))
local wait = 0
local taken = 0
if tokens >= 1 then
  taken = math.min(tonumber(ARGV[4]), math.floor(tokens))
  tokens = tokens - taken
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {wait, taken, tostring(tokens)}
"""

# KEYS[1] paused-until; ARGV milliseconds to pause. Only ever moves the stamp later.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000)
end
return math.max(untl, current)
"""

# KEYS[1] bucket hash; ARGV capacity, tokens per ms, remaining (-1: unknown), ttl ms.
_OBSERVE = """
if tonumber(ARGV[1]) > 0 then
  redis.call('HSET', KEYS[1], 'cap', ARGV[1], 'rate', ARGV[2])
end
local remaining = tonumber(ARGV[3])
if remaining >= 0 then
  local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or (remaining + 1))
  if remaining < tokens then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', KEYS[1], 'tokens', tostring(remaining), 'ts', now)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

_SF_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, found in headers.items():
        if key.lower() == lowered:
            return found
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class RedisRateGate:
    """A token bucket per connection in Redis (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        connection_id: str,
        limit: Limit,
        crm: str = "",
        organisation_id: str = "",
    ) -> None:
        self.client = client
        self.limit = limit
        self.connection_id = connection_id
        self.crm = crm
        self.labels = telemetry.CallLabels(crm, organisation_id, connection_id)
        base = f"{prefix}:rate:{connection_id}"
        self.bucket_key = f"{base}:bucket"
        self.pause_key = f"{base}:paused-until"
        self.usage_key = f"{base}:daily"
        self.suspended_key = f"{base}:suspended"
        self._ttl_ms = int(max(limit.interval_seconds * 10, 3600) * 1000)
        self.waited_seconds = 0.0
        # sent by EVALSHA (the script's text only when Redis does not know it yet)
        self._acquire = client.register_script(_ACQUIRE)
        self._observe = client.register_script(_OBSERVE)
        #: the CRM's announced (capacity, tokens per ms) last written to the bucket
        self._announced: tuple[float, float] | None = None
        #: when this gate last took tokens, and what the bucket held after them
        self._left: tuple[float, float] | None = None
        #: tokens taken from the bucket and not used yet, until when, and how many to take
        #: at the next round trip (see :meth:`acquire`)
        self._held, self._held_until, self._want = 0, 0.0, 1
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take a token: one this gate holds, or from the shared bucket. A gate whose
        calls come faster than :data:`BATCH_SECONDS` takes them from Redis a few at a time
        (doubling up to :data:`MAX_BATCH` while each batch is used up in time): one round
        trip for several calls to the CRM. Tokens held longer go back to the bucket, and
        the gate takes one at a time again; a pause asked of another worker is seen
        within that time."""
        back = self._take_held()
        if back is None:
            return
        waited = 0.0
        while True:
            answer = self._acquire(
                keys=[self.bucket_key, self.pause_key, self.suspended_key],
                args=[
                    self.limit.requests,
                    repr(self.limit.per_ms),
                    self._ttl_ms,
                    self._want,
                    back,
                ],
            )
            back = 0
            wait_ms, taken, left = int(answer[0]), int(answer[1]), float(answer[2])
            if wait_ms < 0:
                suspended = self.suspension()
                if suspended is not None:
                    raise DailyLimitExceeded(suspended[1], until=suspended[0])
                continue  # lifted in between: take a token now
            if wait_ms == 0:
                with self._lock:
                    now = time.monotonic()
                    self._held, self._held_until = taken - 1, now + BATCH_SECONDS
                    self._left = (now, left)
                # counted once per call that had to wait: no token left in the shared
                # budget, or a pause the CRM asked of any worker of the connection
                telemetry.rate_limit_wait(self.labels, waited, "budget")
                return
            # a little jitter so waiting workers do not wake in lock-step
            sleep = min(MAX_SLEEP_SECONDS, wait_ms / 1000) * random.uniform(1.0, 1.1)
            self.waited_seconds += sleep
            waited += sleep
            time.sleep(sleep)

    def _take_held(self) -> int | None:
        """None when a held token was taken; else how many expired ones to give back."""
        with self._lock:
            now = time.monotonic()
            if self._held > 0:
                if now < self._held_until:
                    self._held -= 1
                    return None
                back, self._held, self._want = self._held, 0, 1
                return back
            if now < self._held_until:  # the last batch was used up in time
                self._want = min(MAX_BATCH, self._want * 2)
            return 0

    def _drop_held(self) -> None:
        """Forget the tokens this gate holds (the CRM said wait, or has none left)."""
        with self._lock:
            self._held, self._want = 0, 1

    def _bucket_at_most(self) -> float:
        """The most the bucket can hold now, as far as this gate knows: what it held after
        this gate's last token, refilled since at the announced rate, up to capacity (other
        workers only take from it). The CRM's remaining count caps the bucket only below
        that: one left for the call in flight either way, an observation that would take
        at most one token away costs no round trip (every call, at full speed)."""
        capacity, per_ms = self._announced or (self.limit.requests, self.limit.per_ms)
        if self._left is None:
            return capacity
        at, left = self._left
        return min(capacity, left + self._held + (time.monotonic() - at) * 1000 * per_ms)

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        log.info("rate gate %s: the CRM asked to wait %.1fs", self.pause_key, seconds)
        self._drop_held()
        self.client.eval(_PAUSE, 1, self.pause_key, int(seconds * 1000))

    def suspend(self, until: datetime, reason: str) -> None:
        ms = int((until - datetime.now(UTC)).total_seconds() * 1000)
        if ms <= 0:
            return
        self._drop_held()
        current = self.suspension()
        if current is not None and current[0] >= until:
            return
        log.warning("rate gate %s: suspended until %s", self.suspended_key, until.isoformat())
        value = json.dumps({"until": until.isoformat(), "reason": reason})
        self.client.set(self.suspended_key, value, px=ms)

    def suspension(self) -> tuple[datetime, str] | None:
        """(until, reason) while the connection's daily allowance is spent, else None."""
        raw = self.client.get(self.suspended_key)
        if not raw:
            return None
        data = json.loads(raw)
        return datetime.fromisoformat(data["until"]), str(data["reason"])

    def lift(self) -> None:
        """End a suspension early (an operator resumed the connection)."""
        self.client.delete(self.suspended_key)

    def usage(self) -> tuple[int, int] | None:
        """(used, total) of Salesforce's allowance as last observed, if any."""
        raw = self.client.get(self.usage_key)
        if not raw:
            return None
        used, _, total = raw.decode().partition("/")
        return int(used), int(total)

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none): for status and tests."""
        until = self.client.get(self.pause_key)
        if not until:
            return 0.0
        seconds, micros = self.client.time()
        return max(0.0, (int(until) - (int(seconds) * 1000 + int(micros) // 1000)) / 1000)

    def observe(self, headers: Mapping[str, str]) -> None:
        capacity = rate = 0.0
        remaining = -1.0
        hs_max = _number(_header(headers, "X-HubSpot-RateLimit-Max"))
        hs_interval = _number(_header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds"))
        if hs_max and hs_interval:
            capacity, rate = hs_max, hs_max / hs_interval
        hs_remaining = _number(_header(headers, "X-HubSpot-RateLimit-Remaining"))
        if hs_remaining is not None:
            remaining = hs_remaining
        usage = _header(headers, "Sforce-Limit-Info")
        if usage:
            match = _SF_USAGE.search(usage)
            if match:
                used, total = int(match.group(1)), int(match.group(2))
                self.client.set(self.usage_key, f"{used}/{total}", ex=86400)
        announced = (capacity, rate) if capacity else None
        news = announced is not None and announced != self._announced
        if news or (remaining >= 0 and remaining + 1 < self._bucket_at_most()):
            if 0 <= remaining < self._held:
                self._drop_held()
            self._observe(
                keys=[self.bucket_key], args=[capacity, repr(rate), remaining, self._ttl_ms]
            )
            if announced is not None:
                self._announced = announced


_local_gates: dict[str, LocalRateGate] = {}
_local_lock = threading.Lock()


def limit_for(kind: str, settings: Mapping[str, Any] | None = None) -> Limit:
    """The starting budget of a connection: its own ``rate_max`` / ``rate_interval_seconds``
    settings, else its CRM's documented limit."""
    default = DEFAULT_LIMITS.get(kind, FALLBACK_LIMIT)
    settings = settings or {}
    requests = float(settings.get("rate_max") or default.requests)
    interval = float(settings.get("rate_interval_seconds") or default.interval_seconds)
    return Limit(requests, interval)


def gate_for(
    settings: Settings,
    connection_id: str,
    kind: str,
    connection_settings: Mapping[str, Any] | None = None,
    organisation_id: str = "",
) -> RateGate:
    """The connection's gate: in Redis when there is one, else shared by this process."""
    client = redis_client(settings)
    if client is not None:
        return RedisRateGate(
            client,
            settings.redis_key_prefix,
            connection_id,
            limit_for(kind, connection_settings),
            crm=kind,
            organisation_id=organisation_id,
        )
    with _local_lock:
        return _local_gates.setdefault(connection_id, LocalRateGate())
