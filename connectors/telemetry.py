"""What the CRM edge tells operators: calls, retries and rate-limit waits.

Metrics (labels are ids and kinds, never a record or a value)::

    crmsync_api_calls_total{crm,connection_id,operation,status}
        status: ok, or what the call ended in (429, 5xx, retriable, auth, config, error)
    crmsync_rate_limit_waits_total{crm,connection_id,reason}
    crmsync_rate_limit_wait_seconds_total{crm,connection_id,reason}
        reason: crm (the CRM said wait: 429, Retry-After), budget (the shared per-connection
        budget had no token left, or another worker's wait holds)

Each retry and each rate-limit wait is also one log line; the organisation and run ids are
on it when the caller bound them (``sync.logs``), the connection id always.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from connectors.errors import AuthError, ConfigError, ConnectorError, RetriableError

log = logging.getLogger("crmsync.connectors")

API_CALLS = Counter(
    "crmsync_api_calls",
    "CRM API calls, by CRM, operation and how they ended.",
    ["crm", "connection_id", "operation", "status"],
)
RATE_LIMIT_WAITS = Counter(
    "crmsync_rate_limit_waits",
    "Waits imposed by a CRM's rate limit or the shared rate budget.",
    ["crm", "connection_id", "reason"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "crmsync_rate_limit_wait_seconds",
    "Seconds spent waiting for a CRM's rate limit or the shared rate budget.",
    ["crm", "connection_id", "reason"],
)


def call_status(error: BaseException | None) -> str:
    """The ``status`` label of a call that ended in ``error`` (None: it succeeded)."""
    if error is None:
        return "ok"
    if isinstance(error, RetriableError):
        if error.status is not None:
            return "5xx" if error.status >= 500 else str(error.status)
        return "retriable"
    if isinstance(error, AuthError):
        return "auth"
    if isinstance(error, ConfigError):
        return "config"
    return "error" if isinstance(error, ConnectorError) else "exception"


def api_call(crm: str, connection_id: str, operation: str, error: BaseException | None) -> None:
    """Count one API call and how it ended."""
    API_CALLS.labels(crm, connection_id, operation, call_status(error)).inc()


def rate_limit_wait(
    crm: str, connection_id: str, seconds: float, reason: str, **facts: object
) -> None:
    """Count and log a wait for a rate limit (``reason``: crm, budget)."""
    if seconds <= 0:
        return
    RATE_LIMIT_WAITS.labels(crm, connection_id, reason).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(crm, connection_id, reason).inc(seconds)
    log.info(
        "rate-limit wait",
        extra={
            "crm": crm,
            "connection_id": connection_id,
            "reason": reason,
            "wait_seconds": round(seconds, 3),
            **facts,
        },
    )


def retrying(
    crm: str,
    connection_id: str,
    operation: str,
    attempt: int,
    error: BaseException,
    **facts: object,
) -> None:
    """Log a CRM call about to be tried again (``attempt``: the try about to be made)."""
    log.warning(
        "retrying CRM call",
        extra={
            "crm": crm,
            "connection_id": connection_id,
            "operation": operation,
            "attempt": attempt,
            "error": type(error).__name__,
            **facts,
        },
    )
