"""simple-salesforce and requests exceptions -> ``connectors.errors``, in one place.

    403 REQUEST_LIMIT_EXCEEDED
        TotalRequests ...               DailyLimitExceeded (until ``now + recheck``)
        ConcurrentRequests / other      RateLimited (wait ``limit_wait_seconds``)
    5xx, time-out, connection error     RetriableError
    400 INVALID_QUERY_LOCATOR           RetriableError (the cursor expired: run again)
    400 QUERY_TIMEOUT, REQUEST_RUNNING_TOO_LONG, UNABLE_TO_LOCK_ROW
                                        RetriableError
    401                                 AuthError (call_crm refreshes once, then gives up)
    other 403, 400, 404, 300            ConfigError (bad field, object, URL, permissions)
    TLS failure, bad URL                ConfigError

simple-salesforce raises one exception class per status and never retries
(https://github.com/simple-salesforce/simple-salesforce/blob/v1.12.10/simple_salesforce/util.py).
Record-level refusals inside sObject Collections answers are not exceptions: see
:func:`record_error`. Messages always carry the CRM's own ``errorCode: message``.

``REQUEST_LIMIT_EXCEEDED`` names two limits
(https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm):
the org's total API requests over a rolling 24 hours ("TotalRequests Limit exceeded."),
spent until enough of the day's calls age out, and the concurrent long-running requests
("ConcurrentRequests (Concurrent API Requests) Limit exceeded."), free again as soon as
one of them ends. Salesforce says nothing of when the allowance returns: the connection is
paused for ``daily_limit_recheck_seconds`` and then tries again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from connectors.base import RecordError
from connectors.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    DailyLimitExceeded,
    RateLimited,
    RetriableError,
)

_VALIDATION = frozenset(
    {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "REQUIRED_FIELD_MISSING",
        "STRING_TOO_LONG",
        "INVALID_EMAIL_ADDRESS",
        "FIELD_INTEGRITY_EXCEPTION",
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "JSON_PARSER_ERROR",
        "MISSING_ARGUMENT",
        "NUMBER_OUTSIDE_VALID_RANGE",
    }
)
_DUPLICATE = frozenset({"DUPLICATE_VALUE", "DUPLICATES_DETECTED", "DUPLICATE_EXTERNAL_ID"})
_NOT_FOUND = frozenset(
    {
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
        "NOT_FOUND",
        "MALFORMED_ID",
        "INVALID_ID_FIELD",
    }
)
_RETRIABLE = frozenset({"UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK"})
#: request-level refusals that pass: an expired query cursor, a query or request that ran
#: too long (QUERY_TIMEOUT, REQUEST_RUNNING_TOO_LONG), a row locked by another transaction
_RETRIABLE_REQUEST = frozenset(
    {"INVALID_QUERY_LOCATOR", "QUERY_TIMEOUT", "REQUEST_RUNNING_TOO_LONG", "UNABLE_TO_LOCK_ROW"}
)


def crm_message(content: Any) -> tuple[str, str]:
    """(errorCode, "errorCode: message; ...") from a Salesforce error body (a JSON array of
    ``{message, errorCode}``, an OAuth ``{error, error_description}``, or text)."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        code = str(content[0].get("errorCode") or content[0].get("statusCode") or "")
        text = "; ".join(
            f"{e.get('errorCode') or e.get('statusCode')}: {e.get('message')}"
            for e in content
            if isinstance(e, dict)
        )
        return code, text
    if isinstance(content, dict) and "error" in content:
        return str(content["error"]), f"{content['error']}: {content.get('error_description')}"
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return "", str(content)[:500]


def classify(
    exc: Exception,
    *,
    limit_wait_seconds: float = 1.0,
    recheck_seconds: float = 1800.0,
    now: datetime | None = None,
) -> ConnectorError | None:
    """The connector error for ``exc``; None when it is not the CRM's (a bug: re-raised)."""
    if isinstance(exc, SalesforceError):
        code, message = crm_message(exc.content)
        message = f"Salesforce {exc.status} {message}".strip()
        if isinstance(exc, SalesforceExpiredSession):
            return AuthError(message)
        if isinstance(exc, SalesforceRefusedRequest):
            if code == "REQUEST_LIMIT_EXCEEDED":
                if "TotalRequests" in message:
                    until = (now or datetime.now(UTC)) + timedelta(seconds=recheck_seconds)
                    return DailyLimitExceeded(message, until=until, policy="TotalRequests")
                return RateLimited(
                    message, wait_seconds=limit_wait_seconds, policy="CONCURRENT", status=403
                )
            return ConfigError(message)
        if code in _RETRIABLE_REQUEST:
            return RetriableError(message, status=exc.status)
        if isinstance(exc, SalesforceGeneralError):
            if exc.status >= 500 or exc.status in (408, 429):
                return RetriableError(message, status=exc.status)
            return ConnectorError(message)
        return ConfigError(message)
    if isinstance(exc, requests.exceptions.SSLError):
        return ConfigError(f"TLS failure talking to Salesforce (check ca_bundle): {exc}")
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return RetriableError(f"Salesforce unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return RetriableError(f"Salesforce answered something that is not JSON: {exc}")
    if isinstance(exc, requests.RequestException):
        return ConfigError(f"bad Salesforce request: {exc}")
    return None


def record_error(errors: Any) -> RecordError:
    """A per-record SaveResult ``errors`` list -> :class:`RecordError`."""
    if not isinstance(errors, list) or not errors:
        return RecordError("other", "UNKNOWN", "Salesforce refused the record without a reason")
    first = errors[0] if isinstance(errors[0], dict) else {}
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN")
    message = "; ".join(
        str(e.get("message")) + (f" (fields: {', '.join(e['fields'])})" if e.get("fields") else "")
        for e in errors
        if isinstance(e, dict)
    )
    if code in _RETRIABLE:
        kind = "retriable"
    elif code in _DUPLICATE:
        kind = "duplicate"
    elif code in _NOT_FOUND:
        kind = "not_found"
    elif code in _VALIDATION or code.endswith("_EXCEPTION"):
        kind = "validation"
    else:
        kind = "other"
    return RecordError(kind, code, message)  # type: ignore[arg-type]
