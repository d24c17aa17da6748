"""Errors a connector raises, classified once at the CRM's edge.

    ConnectorError        anything a connector raises
    ├── RetriableError    429 / REQUEST_LIMIT_EXCEEDED (with the wait asked), 5xx, time-outs
    ├── AuthError         credentials refused even after one refresh: fatal for the run
    ├── ConfigError       a bad connection set-up (unknown field in the map, bad URL)
    └── WebhookRejected   a webhook that is not authentic, fresh or well-formed (HTTP status)

Record-level refusals (validation, duplicate, a locked row) are not exceptions: they come
back per record as ``connectors.base.RecordError`` so one bad record never fails a batch.
"""

from __future__ import annotations


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


class AuthError(ConnectorError):
    """The CRM refused the credentials and a refresh did not help."""


class ConfigError(ConnectorError):
    """The connection is set up wrongly; fix the configuration, retrying will not help."""


class WebhookRejected(ConnectorError):
    """A webhook request to refuse, with the HTTP status to answer (400, 401, 413)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
