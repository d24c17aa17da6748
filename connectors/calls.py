"""The one place where CRM calls are made, counted, rate-gated and retried.

Both connectors wrap every request in :func:`call_crm`. The SDKs' own retries are switched
off, so a request is retried here and nowhere else:

- ``RateLimited`` (HubSpot 429 ``SECONDLY`` / ``TEN_SECONDLY_ROLLING``, Salesforce's
  concurrent-request limit): traffic, not a failure. The wait the CRM asked for (its
  ``Retry-After``, else the policy's window) is shared through the rate gate, so every worker
  of the connection waits, and the call is made again. It never counts as a try; what bounds
  it is the run's time budget (``RetryPolicy.rate_limit_budget_seconds``): once the run has
  waited that long in all, the ``RateLimited`` is raised;
- ``DailyLimitExceeded`` (HubSpot ``DAILY``, Salesforce ``TotalRequests``): the gate is
  suspended until the allowance returns, so no worker burns another call, and the error is
  raised for the engine to pause the connection;
- ``RetriableError`` (5xx, time-out): exponential back-off with full jitter, at most
  ``policy.attempts`` tries in all;
- ``AuthError``: the connector's ``refresh`` is called once and the request tried again;
- anything else is raised at once.

Every call is counted (``crmsync_api_calls_total`` by CRM, connection, operation and how it
ended), and every retry and every rate-limit wait is one log line and counted
(:mod:`connectors.telemetry`), with the CRM's own message and never a credential.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from connectors import telemetry
from connectors.base import RateGate
from connectors.errors import (
    AuthError,
    ConnectorError,
    DailyLimitExceeded,
    RateLimited,
    RetriableError,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

#: how long a run may spend waiting out rate limits, in all, before it gives up (an hour:
#: a per-second limit is usually gone after a second, so this only ends a run that the CRM
#: keeps refusing)
RATE_LIMIT_BUDGET_SECONDS = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off with full jitter for failures; a time budget for
    rate-limit waits."""

    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    rate_limit_budget_seconds: float = RATE_LIMIT_BUDGET_SECONDS

    def backoff(self, attempt: int) -> float:
        """Seconds to sleep before try ``attempt + 1`` (``attempt`` counts from 0)."""
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))


class LocalRateGate:
    """An in-process gate: honours pauses and suspensions the CRM asked for; no shared
    budget.

    Used on the embedded default and in connector tests; ``tasks/`` supplies a Redis gate
    shared by all workers."""

    def __init__(self) -> None:
        self._paused_until = 0.0
        self._suspended: tuple[datetime, str] | None = None
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            suspended = self._suspended
            if suspended is not None and suspended[0] <= datetime.now(UTC):
                suspended = self._suspended = None
            wait = self._paused_until - time.monotonic()
        if suspended is not None:
            raise DailyLimitExceeded(suspended[1], until=suspended[0])
        if wait > 0:
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def suspend(self, until: datetime, reason: str) -> None:
        with self._lock:
            if self._suspended is None or self._suspended[0] < until:
                self._suspended = (until, reason)

    def suspension(self) -> tuple[datetime, str] | None:
        """(until, reason) while the daily allowance is spent, else None."""
        with self._lock:
            suspended = self._suspended
        if suspended is None or suspended[0] <= datetime.now(UTC):
            return None
        return suspended

    def lift(self) -> None:
        """End a suspension early (the scheduler or an operator resumed the connection)."""
        with self._lock:
            self._suspended = None

    def observe(self, headers: Mapping[str, str]) -> None:
        return None


class CallCounter:
    """Counts the API calls one connector instance made (from any thread: the engine
    fetches the next page while it pushes), and the rate-limit waits among them."""

    def __init__(self) -> None:
        self._count = 0
        self.rate_limit_waits = 0
        self.rate_limited_seconds = 0.0
        self.retries = 0
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

    def waited(self, seconds: float) -> None:
        """One rate-limit wait of ``seconds`` (measured, the shared pause included)."""
        with self._lock:
            self.rate_limit_waits += 1
            self.rate_limited_seconds += seconds

    def retried(self) -> None:
        with self._lock:
            self.retries += 1


def call_crm(
    request: Callable[[], T],
    *,
    classify: Callable[[Exception], ConnectorError | None],
    gate: RateGate,
    counter: CallCounter,
    policy: RetryPolicy,
    refresh: Callable[[], None] | None = None,
    crm: str = "CRM",
    connection_id: str = "",
    organisation_id: str = "",
    operation: str = "call",
) -> T:
    """Make one CRM request with the gate, classification, rate-limit waits and bounded
    retries (see the module docstring).

    ``classify`` turns an SDK exception into a connector error, or returns None for an
    exception that is not the CRM's (a bug), which is re-raised unchanged. ``connection_id``,
    ``organisation_id`` and ``operation`` label the call's metrics and log lines.
    """
    kind = crm.lower()
    ids = {"crm": kind, "connection_id": connection_id, "operation": operation}
    labels = telemetry.CallLabels(kind, organisation_id, connection_id)
    refreshed = False
    attempt = 0
    waiting_since: float | None = None
    while True:
        gate.acquire()
        if waiting_since is not None:
            counter.waited(time.monotonic() - waiting_since)
            waiting_since = None
        counter.add()
        try:
            answer = request()
        except Exception as exc:
            error = classify(exc)
            telemetry.api_call(labels, operation, error or exc)
            if error is None:
                raise
            if isinstance(error, AuthError) and refresh is not None and not refreshed:
                refreshed = True
                log.info(
                    "%s refused the access token: getting a new one and trying again",
                    crm,
                    extra=ids,
                )
                refresh()
                continue
            if isinstance(error, DailyLimitExceeded):
                log.warning(
                    "%s daily allowance spent (%s): no calls until %s",
                    crm,
                    error.policy,
                    error.until.isoformat(),
                    extra=ids,
                )
                gate.suspend(error.until, str(error))
                raise error from exc
            if isinstance(error, RateLimited):
                spent = counter.rate_limited_seconds
                if spent + error.wait > policy.rate_limit_budget_seconds:
                    log.warning(
                        "%s rate limit (%s): the run's budget of %.0fs of waiting is spent "
                        "(%.1fs waited); giving up",
                        crm,
                        error.policy,
                        policy.rate_limit_budget_seconds,
                        spent,
                        extra=ids,
                    )
                    raise error from exc
                # every worker of the connection waits, then the call is made again
                telemetry.rate_limit_wait(
                    labels,
                    error.wait,
                    "crm",
                    operation=operation,
                    policy=error.policy,
                    budget_used_seconds=round(spent, 3),
                )
                waiting_since = time.monotonic()
                gate.pause(error.wait)
                continue
            if isinstance(error, RetriableError) and attempt + 1 < policy.attempts:
                if error.wait_seconds:
                    gate.pause(error.wait_seconds)
                backoff = policy.backoff(attempt)
                attempt += 1
                counter.retried()
                telemetry.retrying(
                    labels,
                    operation,
                    attempt + 1,
                    error,
                    attempts=policy.attempts,
                    backoff_seconds=round(backoff, 3),
                    reason=_first_line(error),
                )
                time.sleep(backoff)
                continue
            raise error from exc
        telemetry.api_call(labels, operation, None)
        return answer


def _first_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]
