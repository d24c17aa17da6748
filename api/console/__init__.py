"""The operator console: server-rendered pages under ``/console/`` (Jinja2, a little plain
JavaScript, assets served by the app itself from ``/console/static/``).

``install(app)`` mounts it: the session middleware, the static files, the pages, and the
handlers that turn a missing sign-in into a redirect and a refusal into an error page.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from api.console import (
    audit,
    conflicts,
    connections,
    customers,
    failures,
    operators,
    runs,
    sign_in,
)
from api.console.base import (
    HERE,
    ConsoleSessionMiddleware,
    NeedsSignIn,
    PageError,
    check_csrf,
    render,
    sign_in_redirect,
)

PAGES = (sign_in, connections, conflicts, failures, runs, customers, audit, operators)


def _page_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PageError)
    me = None
    return render(
        request,
        "error.html",
        {"title": error.title, "message": error.message, "me": me},
        status=error.status,
    )


def _needs_sign_in(_request: Request, error: Exception) -> Response:
    assert isinstance(error, NeedsSignIn)
    return sign_in_redirect(error.next_path)


def install(app: FastAPI) -> None:
    """Mount the console on ``app``."""
    router = APIRouter(
        prefix="/console", dependencies=[Depends(check_csrf)], include_in_schema=False
    )
    for page in PAGES:
        router.include_router(page.router)
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(ConsoleSessionMiddleware)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(NeedsSignIn, _needs_sign_in)
