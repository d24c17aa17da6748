"""Errors a connector raises, classified once at the CRM's edge.

    ConnectorError          anything a connector raises
    ├── RetriableError      5xx, time-outs, a lost connection: retried a few times
    │   └── RateLimited     a short-window rate limit (HubSpot SECONDLY / TEN_SECONDLY_ROLLING,
    │                       Salesforce's concurrent-request limit): traffic, not a failure;
    │                       waited out within the run's time budget, never counted as a try
    ├── DailyLimitExceeded  the CRM's daily allowance is spent (HubSpot DAILY, Salesforce
    │                       TotalRequests): stop calling until ``until``
    ├── AuthError           credentials refused even after one refresh: fatal for the run
    ├── ConfigError         a bad connection set-up (unknown field in the map, bad URL)
    └── WebhookRejected     a webhook that is not authentic, fresh or well-formed (HTTP status)

Record-level refusals (validation, duplicate, a locked row) are not exceptions: they come
back per record as ``connectors.base.RecordError`` so one bad record never fails a batch.
"""

from __future__ import annotations

from datetime import datetime


class ConnectorError(Exception):
    """Base of every connector error; ``str()`` carries the CRM's own message."""


class RetriableError(ConnectorError):
    """Try again later. ``wait_seconds`` is what the CRM asked for, if it said."""

    def __init__(
        self, message: str, *, wait_seconds: float | None = None, status: int | None = None
    ):
        super().__init__(message)
        self.wait_seconds = wait_seconds
        self.status = status


class RateLimited(RetriableError):
    """A short-window rate limit: wait ``wait_seconds`` (what the CRM asked, or the policy's
    window) and call again. ``policy`` names the limit (``SECONDLY``, ``TEN_SECONDLY_ROLLING``,
    ``CONCURRENT``). Raised out of a connector only when the run's rate-limit time budget is
    spent."""

    def __init__(
        self,
        message: str,
        *,
        wait_seconds: float,
        policy: str,
        status: int | None = None,
    ):
        super().__init__(message, wait_seconds=wait_seconds, status=status)
        self.wait: float = wait_seconds
        self.policy = policy


class DailyLimitExceeded(ConnectorError):
    """The CRM's daily API allowance is spent: every call is refused until ``until``
    (timezone-aware; the best the connector knows of when the allowance returns). Nothing
    is retried: the connection pauses until then and burns no calls meanwhile."""

    def __init__(self, message: str, *, until: datetime, policy: str = "DAILY"):
        super().__init__(message)
        self.until = until
        self.policy = policy


class AuthError(ConnectorError):
    """The CRM refused the credentials and a refresh did not help."""


class ConfigError(ConnectorError):
    """The connection is set up wrongly; fix the configuration, retrying will not help."""


class WebhookRejected(ConnectorError):
    """A webhook request to refuse, with the HTTP status to answer (400, 401, 413)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        #: whose connection refused it, once known (a label of the refusal's metric)
        self.organisation_id = ""
