"""Errors as JSON, in one place.

Every error body is ``{"detail": ...}``. For 401 and 404 ``detail`` is a sentence; for 409
and 422 it is a list of field errors, each naming the ``field`` (dotted: ``address.country_code``,
``tax_info.0``), its ``loc``, the rule it broke (``msg``) and a machine-readable ``type``:

- 401: missing or wrong ``organisation`` / ``x-api-key``
- 404: no such customer in the organisation (another organisation's customer included)
- 409: ``external_id`` or ``email`` already used by another customer (``type: "duplicate"``)
- 422: a model rule (pydantic's types), or a rule that needs the store
  (``business_entity_id``: unknown entity, or a change once set)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from sync.customers import CustomerNotFound, CustomerRuleBroken, DuplicateCustomer

_SOURCES = {"body", "query", "path", "header", "cookie"}


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


def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"customer {exc} not found"}, status.HTTP_404_NOT_FOUND)


def _duplicate(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DuplicateCustomer)
    error = field_error(["body", exc.field], str(exc), "duplicate")
    return JSONResponse({"detail": [error]}, status.HTTP_409_CONFLICT)


def _rule_broken(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CustomerRuleBroken)
    error = field_error(["body", exc.field], f"{exc.field} {exc.message}", exc.field)
    return JSONResponse({"detail": [error]}, 422)


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


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(CustomerNotFound, _not_found)
    app.add_exception_handler(DuplicateCustomer, _duplicate)
    app.add_exception_handler(CustomerRuleBroken, _rule_broken)
    app.add_exception_handler(IntegrityError, _integrity)
