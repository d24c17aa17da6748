"""Errors as JSON, in one place.

Every error body is ``{"detail": ...}``. For 401 and 404 ``detail`` is a sentence; for 409
and 422 it is a list of field errors, each naming the ``field`` (dotted: ``address.country_code``,
``tax_info.0``), its ``loc``, the rule it broke (``msg``) and a machine-readable ``type``:

- 401: missing or wrong ``organisation`` / ``x-api-key``
- 404: no such customer in the organisation (another organisation's customer included)
- 409: ``external_id`` or ``email`` already used by another customer (``type: "duplicate"``)
- 422: a model rule (pydantic's types), or a rule that needs the store
  (``business_entity_id``: unknown entity, or a change once set)
- 503: the store has no tables yet (``crmsync db upgrade`` was not run)

Every error of the domain's tree (:mod:`sync.errors`) and of the connectors' has its status
in one table, :data:`HTTP_STATUS` (an error takes the status of its nearest class there), and
one handler, :func:`_sync_error`, answers them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from connectors.errors import ConnectorError, DailyLimitExceeded, RetriableError
from sync.errors import (
    AlertDeliveryFailed,
    ChooseOrganisation,
    ConflictError,
    ConnectionPaused,
    CustomerNotFound,
    CustomerRuleBroken,
    Duplicate,
    DuplicateCustomer,
    InvalidInput,
    NotFound,
    SecretKeyMissing,
    SignInError,
    SignInLimited,
    StaleRun,
    StoreNotCurrent,
    SyncError,
)

_SOURCES = {"body", "query", "path", "header", "cookie"}

# Every error class's HTTP status, once: an error takes the status of its nearest class here.
HTTP_STATUS: dict[type[Exception], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    InvalidInput: 422,  # FastAPI's own for a broken rule
    Duplicate: status.HTTP_409_CONFLICT,
    ConflictError: status.HTTP_409_CONFLICT,
    ConnectionPaused: status.HTTP_409_CONFLICT,
    SignInError: status.HTTP_401_UNAUTHORIZED,
    SignInLimited: status.HTTP_429_TOO_MANY_REQUESTS,
    ChooseOrganisation: status.HTTP_300_MULTIPLE_CHOICES,
    StaleRun: status.HTTP_409_CONFLICT,
    SecretKeyMissing: status.HTTP_503_SERVICE_UNAVAILABLE,
    StoreNotCurrent: status.HTTP_503_SERVICE_UNAVAILABLE,
    AlertDeliveryFailed: status.HTTP_502_BAD_GATEWAY,
    # the CRM's errors reach a request only where it calls the CRM (the console's actions)
    ConnectorError: status.HTTP_502_BAD_GATEWAY,
    RetriableError: status.HTTP_503_SERVICE_UNAVAILABLE,
    DailyLimitExceeded: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def status_for(error: type[SyncError] | type[ConnectorError]) -> int:
    """The HTTP status of an error class: that of its nearest class in :data:`HTTP_STATUS`."""
    for cls in error.__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    raise KeyError(f"{error.__name__} has no HTTP status in HTTP_STATUS")


class Message(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str | None
    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    detail: list[FieldError]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Message, "description": "Missing or wrong organisation / x-api-key"},
    404: {"model": Message, "description": "No such customer in this organisation"},
    409: {"model": FieldErrors, "description": "external_id or email already used"},
    422: {"model": FieldErrors, "description": "Invalid input: one entry per field and rule"},
}


def _field_name(loc: Sequence[str | int]) -> str | None:
    parts = list(loc)
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or None


def field_error(loc: Sequence[str | int], msg: str, type_: str) -> dict[str, Any]:
    # pydantic prefixes the messages of our validators with "Value error, "; the rule reads
    # better without it.
    msg = msg.removeprefix("Value error, ")
    return {"field": _field_name(loc), "loc": list(loc), "msg": msg, "type": type_}


def field_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """pydantic / FastAPI errors as :class:`FieldError` dicts (without the input echoed)."""
    return [field_error(e["loc"], str(e["msg"]), str(e["type"])) for e in errors]


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": field_errors(exc.errors())}, 422)


def _sync_error(_request: Request, exc: Exception) -> JSONResponse:
    """Any error of the domain's tree: its status from :data:`HTTP_STATUS`; a field's error
    (a duplicate, a broken rule) as a field-error list, any other as a sentence."""
    assert isinstance(exc, SyncError)
    code = status_for(type(exc))
    if isinstance(exc, DuplicateCustomer):
        detail: Any = [field_error(["body", exc.field], str(exc), "duplicate")]
    elif isinstance(exc, CustomerRuleBroken):
        detail = [field_error(["body", exc.field], f"{exc.field} {exc.message}", exc.field)]
    elif isinstance(exc, InvalidInput):
        detail = [field_error(["body"], str(exc), type(exc).__name__)]
    elif isinstance(exc, CustomerNotFound):
        detail = f"customer {exc.customer_id} not found"
    else:
        detail = str(exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, SignInLimited) else None
    return JSONResponse({"detail": detail}, code, headers=headers)


def _connector_error(_request: Request, exc: Exception) -> JSONResponse:
    """A CRM's error where a request called the CRM (resolving a conflict, a retry): 502,
    or 503 when it is passing (5xx, time-out, rate limit)."""
    assert isinstance(exc, ConnectorError)
    return JSONResponse({"detail": f"the CRM: {exc}"}, status_for(type(exc)))


def _integrity(_request: Request, exc: Exception) -> JSONResponse:
    # A concurrent request won the race between the service's uniqueness check and the
    # insert: the store's unique constraint is the last word.
    text = str(getattr(exc, "orig", exc))
    field = next((f for f in ("external_id", "email") if f in text), None)
    msg = f"another customer already has this {field or 'value'}"
    return JSONResponse(
        {"detail": [field_error(["body", field] if field else ["body"], msg, "duplicate")]},
        status.HTTP_409_CONFLICT,
    )


def store_not_set_up(exc: BaseException) -> bool:
    """Whether a store error says its tables are missing (SQLite's "no such table",
    PostgreSQL's 'relation "x" does not exist'): the store was never migrated."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    # A store without its tables answered every request with a bare 500: say what to do.
    if not store_not_set_up(exc):
        raise exc  # anything else stays an internal error (500, logged)
    return JSONResponse(
        {"detail": "the store is not set up: run `crmsync db upgrade`"},
        status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SyncError, _sync_error)
    app.add_exception_handler(ConnectorError, _connector_error)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(OperationalError, _store_error)
    app.add_exception_handler(ProgrammingError, _store_error)
