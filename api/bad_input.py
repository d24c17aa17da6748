"""Input the store cannot take is the caller's error (400), never a 500.

PostgreSQL refuses a NUL in any text it is asked to store *or compare* (psycopg's
``DataError``: "PostgreSQL text fields cannot contain NUL (0x00) bytes"), and no text can
hold a lone surrogate (``UnicodeEncodeError``). Values with a field and a rule are refused
by the customer model first (422, ``no_control_characters``); what is left is caught here:

- a NUL in a request's path or query string is refused before any route sees it: no id,
  search or filter of crmsync holds one;
- a value the store still refuses (a console form field, say) answers 400 with the
  store's reason, instead of a 500, and a log line.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

NUL_IN_URL = "the URL holds a NUL character (%00), which no crmsync value can hold"


class RefuseNulInUrl:
    """ASGI middleware: 400 for a NUL in the path or the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            body = json.dumps({"detail": NUL_IN_URL}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status.HTTP_400_BAD_REQUEST,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _store_refused(request: Request, error: Exception) -> JSONResponse:
    original = getattr(error, "orig", None) or error
    reason = str(original).splitlines()[0] if str(original) else type(original).__name__
    log.warning("request refused: the store cannot take a value of it: %s", reason)
    detail = f"a value of the request cannot be stored or compared: {reason}"
    return JSONResponse({"detail": detail}, status.HTTP_400_BAD_REQUEST)


def install(app: FastAPI) -> None:
    """Refuse NULs in URLs, and answer 400 where the store refuses a request's value."""
    app.add_middleware(RefuseNulInUrl)
    app.add_exception_handler(DataError, _store_refused)
    app.add_exception_handler(UnicodeEncodeError, _store_refused)
