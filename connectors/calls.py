"""The one place where CRM calls are made, counted, rate-gated and retried.

Both connectors wrap every request in :func:`call_crm`. The SDKs' own retries are switched
off, so a request is retried here and nowhere else:

- ``RetriableError`` (429, REQUEST_LIMIT_EXCEEDED, 5xx, time-out): the wait the CRM asked for
  is shared through the rate gate (every worker waits), then exponential back-off with full
  jitter, at most ``policy.attempts`` tries in all;
- ``AuthError``: the connector's ``refresh`` is called once and the request tried again;
- anything else is raised at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from connectors.base import RateGate
from connectors.errors import AuthError, ConnectorError, RetriableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off with full jitter."""

    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Seconds to sleep before try ``attempt + 1`` (``attempt`` counts from 0)."""
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))


class LocalRateGate:
    """An in-process gate: honours pauses the CRM asked for; no shared budget.

    Used on the embedded default and in connector tests; ``tasks/`` supplies a Redis gate
    shared by all workers."""

    def __init__(self) -> None:
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            wait = self._paused_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        return None


class CallCounter:
    """Counts API calls made by one connector instance (from any thread: the engine
    fetches the next page while it pushes)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    @count.setter
    def count(self, value: int) -> None:
        with self._lock:
            self._count = value

    def add(self, calls: int = 1) -> None:
        with self._lock:
            self._count += calls


def call_crm(
    request: Callable[[], T],
    *,
    classify: Callable[[Exception], ConnectorError | None],
    gate: RateGate,
    counter: CallCounter,
    policy: RetryPolicy,
    refresh: Callable[[], None] | None = None,
) -> T:
    """Make one CRM request with the gate, classification and bounded retries.

    ``classify`` turns an SDK exception into a connector error, or returns None for an
    exception that is not the CRM's (a bug), which is re-raised unchanged.
    """
    refreshed = False
    attempt = 0
    while True:
        gate.acquire()
        counter.add()
        try:
            return request()
        except Exception as exc:
            error = classify(exc)
            if error is None:
                raise
            if isinstance(error, AuthError) and refresh is not None and not refreshed:
                refreshed = True
                refresh()
                continue
            if isinstance(error, RetriableError) and attempt + 1 < policy.attempts:
                if error.wait_seconds:
                    gate.pause(error.wait_seconds)
                time.sleep(policy.backoff(attempt))
                attempt += 1
                continue
            raise error from exc
