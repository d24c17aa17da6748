"""What the CRM edge tells operators: calls, retries and rate-limit waits.

Metrics (labels are ids and kinds, never a record or a value)::

    crmsync_api_calls_total{crm,organisation_id,connection_id,operation,status}
        status: ok, or what the call ended in (429, 5xx, retriable, auth, config, error)
    crmsync_rate_limit_waits_total{crm,organisation_id,connection_id,reason}
    crmsync_rate_limit_wait_seconds_total{crm,organisation_id,connection_id,reason}
        reason: crm (the CRM said wait: 429, Retry-After), budget (the shared per-connection
        budget had no token left, or another worker's wait holds)

Each retry and each rate-limit wait is also one log line; the run id is on it when the
caller bound it (``sync.logs``), the organisation and connection ids always.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from prometheus_client import Counter

from connectors.errors import AuthError, ConfigError, ConnectorError, RetriableError

log = logging.getLogger("crmsync.connectors")

_LABELS = ["crm", "organisation_id", "connection_id"]

API_CALLS = Counter(
    "crmsync_api_calls",
    "CRM API calls, by CRM, operation and how they ended.",
    [*_LABELS, "operation", "status"],
)
RATE_LIMIT_WAITS = Counter(
    "crmsync_rate_limit_waits",
    "Waits imposed by a CRM's rate limit or the shared rate budget.",
    [*_LABELS, "reason"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "crmsync_rate_limit_wait_seconds",
    "Seconds spent waiting for a CRM's rate limit or the shared rate budget.",
    [*_LABELS, "reason"],
)


class CallLabels(NamedTuple):
    """Whose calls these are: the labels every metric of the CRM edge carries (and the
    fields of its log lines)."""

    crm: str
    organisation_id: str
    connection_id: str


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


def api_call(labels: CallLabels, operation: str, error: BaseException | None) -> None:
    """Count one API call and how it ended."""
    API_CALLS.labels(*labels, operation, call_status(error)).inc()


def rate_limit_wait(labels: CallLabels, seconds: float, reason: str, **facts: object) -> None:
    """Count and log a wait for a rate limit (``reason``: crm, budget)."""
    if seconds <= 0:
        return
    RATE_LIMIT_WAITS.labels(*labels, reason).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(*labels, reason).inc(seconds)
    log.info(
        "rate-limit wait",
        extra={
            **_ids(labels),
            "reason": reason,
            "wait_seconds": round(seconds, 3),
            **facts,
        },
    )


def retrying(
    labels: CallLabels, operation: str, attempt: int, error: BaseException, **facts: object
) -> None:
    """Log a CRM call about to be tried again (``attempt``: the try about to be made)."""
    log.warning(
        "retrying CRM call",
        extra={
            **_ids(labels),
            "operation": operation,
            "attempt": attempt,
            "error": type(error).__name__,
            **facts,
        },
    )


def _ids(labels: CallLabels) -> dict[str, str]:
    """The labels as log fields; an organisation id the caller did not give is left out, so
    that it does not hide the one ``sync.logs`` bound for the run."""
    ids = labels._asdict()
    if not ids["organisation_id"]:
        del ids["organisation_id"]
    return ids


def calls_counted(connection_id: str) -> list[dict[str, str]]:
    """The label sets under which this process counted the connection's API calls (for a
    connector's tests: its calls must carry its CRM, connection and organisation)."""
    return [
        dict(sample.labels)
        for metric in API_CALLS.collect()
        for sample in metric.samples
        if sample.name == "crmsync_api_calls_total"
        and sample.labels["connection_id"] == connection_id
    ]
