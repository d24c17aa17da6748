"""hubspot-api-client and urllib3 exceptions -> the connector error tree, in one place.

    429 policyName DAILY              DailyLimitExceeded (until the portal's next midnight)
    429 other policies                RateLimited (wait: Retry-After, else the policy window)
    5xx, status 0                     RetriableError
    urllib3 time-outs, connection
    errors, MaxRetryError             RetriableError
    401                               AuthError
    403                               ConfigError (the token lacks a scope)
    400, 404, 409, other 4xx          ConfigError (callers turn record-level ones into
                                      RecordError before they get here)

Every message carries HubSpot's own ``message``, ``category`` and ``correlationId``.

HubSpot's 429 body names the limit that was hit: ``{"status": "error", "message": "You have
reached your daily limit.", "errorType": "RATE_LIMIT", "correlationId": ..., "policyName":
"DAILY"}``; ``policyName`` is ``SECONDLY`` or ``TEN_SECONDLY_ROLLING`` for the short
windows, and "the daily limit resets at midnight based on your time zone setting"
(https://developers.hubspot.com/docs/api/usage-details). ``Retry-After`` is often absent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3.exceptions

from connectors.base import RecordError
from connectors.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    DailyLimitExceeded,
    RateLimited,
    RetriableError,
)


def is_api_exception(exc: BaseException) -> bool:
    """True for any subpackage's ``ApiException`` (each SDK subpackage has its own class)."""
    return any(cls.__name__ == "ApiException" for cls in type(exc).__mro__) and hasattr(
        exc, "status"
    )


def error_body(exc: BaseException) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"message": str(raw)[:500]}
    return data if isinstance(data, dict) else {"message": str(data)[:500]}


def headers_of(exc: BaseException) -> Mapping[str, str]:
    headers = getattr(exc, "headers", None)
    return headers if headers is not None else {}


def describe(status: int, body: Mapping[str, Any]) -> str:
    message = str(body.get("message") or "no message")
    parts = [f"HubSpot {status}: {message}"]
    if body.get("category"):
        parts.append(f"category={body['category']}")
    if body.get("correlationId"):
        parts.append(f"correlationId={body['correlationId']}")
    return " ".join(parts)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, v in headers.items():
            if key.lower() == lowered:
                return v
    return value


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The wait a 429's ``Retry-After`` asks for, if HubSpot sent one: seconds, or an
    HTTP-date (RFC 9110 section 10.2.3 allows both: ``Retry-After: Fri, 31 Dec 1999
    23:59:59 GMT``); None when absent or neither."""
    value = (_header(headers, "Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_midnight(now: datetime, zone: tzinfo) -> datetime:
    """The next midnight in ``zone`` after ``now`` (when a HubSpot daily limit resets)."""
    local = now.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)


def classify(
    exc: Exception,
    *,
    limit_wait_seconds: float = 1.0,
    zone: tzinfo = UTC,
    now: datetime | None = None,
) -> ConnectorError | None:
    """The connector error for an SDK / transport exception; None when it is not one.

    A 429 without ``Retry-After`` waits ``limit_wait_seconds``: the per-second window, and a
    tenth of the ten-second rolling one (calls age out of a rolling window continuously)."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, urllib3.exceptions.HTTPError):
        # time-outs, refused connections, MaxRetryError (if a Retry were ever configured)
        return RetriableError(f"HubSpot unreachable: {type(exc).__name__}: {exc}")
    if not is_api_exception(exc):
        return None
    status = int(getattr(exc, "status", 0) or 0)
    body = error_body(exc)
    message = describe(status, body)
    if status == 429:
        policy = str(body.get("policyName") or "TEN_SECONDLY_ROLLING").upper()
        if policy == "DAILY":
            until = next_midnight(now or datetime.now(UTC), zone)
            return DailyLimitExceeded(message, until=until, policy=policy)
        wait = retry_after(headers_of(exc), now)
        return RateLimited(
            message,
            wait_seconds=limit_wait_seconds if wait is None else wait,
            policy=policy,
            status=429,
        )
    if status == 0 or status >= 500:
        return RetriableError(message, status=status)
    if status == 401:
        return AuthError(message)
    return ConfigError(message)


def record_error(entry: Mapping[str, Any]) -> RecordError:
    """A per-record ``RecordError`` from one entry of a 207's ``errors``."""
    category = str(entry.get("category") or "")
    # a text in the errors HubSpot sends; the references' schema types it as an object
    sub_category = entry.get("subCategory")
    sub = sub_category if isinstance(sub_category, str) else ""
    codes = " ".join(
        [category, sub] + [str(e.get("code") or "") for e in entry.get("errors") or []]
    ).upper()
    kind: Any
    if "DUPLICATE" in codes or category == "CONFLICT":
        kind = "duplicate"
    elif category == "OBJECT_NOT_FOUND":
        kind = "not_found"
    elif category in {"RATE_LIMITS", "INTERNAL_ERROR"} or "LOCK" in codes:
        kind = "retriable"
    elif category == "VALIDATION_ERROR":
        kind = "validation"
    else:
        kind = "other"
    return RecordError(
        kind=kind, code=sub or category or "ERROR", message=str(entry.get("message"))
    )
