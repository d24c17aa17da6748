"""What every console page shares: the session cookie, CSRF, who is signed in, rendering.

**Session.** One cookie, ``crmsync_console``, path ``/console``: JSON signed with
itsdangerous (HMAC with a key derived from ``CRMSYNC_SECRET_KEY``, timestamped, valid
:data:`SESSION_LIFETIME`). It holds the CSRF token, the signed-in operator's id and
session epoch (bumped by a new password or a removal, which ends every session of theirs)
and one-shot messages. It is ``HttpOnly`` and ``SameSite=Lax``, and ``Secure`` when the
request came over https (directly, or through a proxy that uvicorn trusts with
``X-Forwarded-Proto``). A visitor gets an anonymous session (a CSRF token) on their first
page, so the sign-in form is protected too; signing in issues a new token.

**CSRF.** Every form carries ``csrf_token``; every POST under ``/console`` is refused (403)
unless it matches the session's, compared in constant time.

**Who.** :func:`signed_in` reloads the operator on every request (removed operators and
stale sessions are out at once); :func:`needs` adds the role check. Everything a page
reads is scoped by the operator's organisation, so another organisation's page is 404.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import get_engine
from sync import operators, organisations
from sync.settings import Settings
from sync.store.db import transaction
from sync.store.models import utcnow

HERE = Path(__file__).resolve().parent
COOKIE = "crmsync_console"
#: how long a signed-in session lasts (then the operator signs in again)
SESSION_LIFETIME = 12 * 3600
_SALT = "crmsync.console.session"

templates = Jinja2Templates(directory=str(HERE / "templates"))


# --- the session cookie --------------------------------------------------------------------


@dataclass
class ConsoleSession:
    """What the signed cookie holds."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    operator_id: str | None = None
    epoch: int = 0
    messages: list[tuple[str, str]] = field(default_factory=list)
    changed: bool = False

    def say(self, message: str, level: str = "ok") -> None:
        """A message for the next page (after a redirect)."""
        self.messages.append((level, message))
        self.changed = True

    def take_messages(self) -> list[tuple[str, str]]:
        taken, self.messages = self.messages, []
        if taken:
            self.changed = True
        return taken

    def sign_in(self, operator_id: str, epoch: int) -> None:
        # a new CSRF token on sign-in: one seen before it is worth nothing after
        self.csrf = secrets.token_urlsafe(32)
        self.operator_id, self.epoch = operator_id, epoch
        self.changed = True

    def sign_out(self) -> None:
        self.csrf = secrets.token_urlsafe(32)
        self.operator_id, self.epoch = None, 0
        self.changed = True

    def dump(self) -> dict[str, Any]:
        return {"c": self.csrf, "o": self.operator_id, "e": self.epoch, "m": self.messages}

    @classmethod
    def load(cls, data: Any) -> ConsoleSession:
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            raise ValueError("not a console session")
        operator_id = data.get("o")
        messages = [
            (str(m[0]), str(m[1]))
            for m in data.get("m") or []
            if isinstance(m, list) and len(m) == 2
        ]
        return cls(
            csrf=data["c"],
            operator_id=operator_id if isinstance(operator_id, str) else None,
            epoch=int(data.get("e") or 0),
            messages=messages,
        )


def _serializer(settings: Settings) -> URLSafeTimedSerializer | None:
    if settings.secret_key is None:
        return None
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt=_SALT)


class ConsoleSessionMiddleware:
    """Loads the console session for requests under ``/console`` (``request.state.console``,
    None when no secret key is set) and writes the cookie back when it changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith("/console")
            or path.startswith("/console/static/")
        ):
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.settings
        serializer = _serializer(settings)
        session: ConsoleSession | None = None
        if serializer is not None:
            session = _read(serializer, scope)
        scope.setdefault("state", {})["console"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session is not None:
                headers = MutableHeaders(scope=message)
                headers.append("cache-control", "no-store")
                if session.changed:
                    assert serializer is not None
                    headers.append("set-cookie", _cookie(serializer, session, scope))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _read(serializer: URLSafeTimedSerializer, scope: Scope) -> ConsoleSession:
    raw = ""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookies: SimpleCookie = SimpleCookie()
            try:
                cookies.load(value.decode("latin-1"))
            except Exception:
                continue
            if COOKIE in cookies:
                raw = cookies[COOKIE].value
    if raw:
        try:
            return ConsoleSession.load(serializer.loads(raw, max_age=SESSION_LIFETIME))
        except (BadSignature, ValueError, TypeError):
            pass
    return ConsoleSession(changed=True)


def _cookie(serializer: URLSafeTimedSerializer, session: ConsoleSession, scope: Scope) -> str:
    value = serializer.dumps(session.dump())
    parts = [
        f"{COOKIE}={value}",
        "Path=/console",
        f"Max-Age={SESSION_LIFETIME}",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if scope.get("scheme") == "https":
        parts.append("Secure")
    return "; ".join(parts)


# --- errors the pages raise ------------------------------------------------------------------


class PageError(Exception):
    """A page that cannot be shown: its status, a title and what to do."""

    def __init__(self, status: int, title: str, message: str = "") -> None:
        super().__init__(message or title)
        self.status = status
        self.title = title
        self.message = message


class NeedsSignIn(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def not_found(what: str = "page") -> PageError:
    return PageError(404, "Not found", f"There is no such {what} in your organisation.")


def console_session(request: Request) -> ConsoleSession:
    session: ConsoleSession | None = getattr(request.state, "console", None)
    if session is None:
        raise PageError(
            503,
            "The console is not set up",
            "Set CRMSYNC_SECRET_KEY (crmsync secret-key makes one): it signs the console's "
            "session cookies.",
        )
    return session


async def check_csrf(request: Request) -> None:
    """Refuse a POST whose CSRF token is missing or not the session's."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    session = console_session(request)
    form = await request.form()
    request.state.form = form  # the handlers read repeated or dynamic fields from it
    sent = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise PageError(
            403,
            "This form has expired",
            "The form did not carry this session's security token (it is older than your "
            "last sign-in, or it did not come from this console). Go back, reload the page "
            "and try again.",
        )


# --- who is signed in ------------------------------------------------------------------------


@dataclass(frozen=True)
class Me:
    """The signed-in operator, read for this request."""

    id: str
    organisation_id: str
    organisation_name: str
    email: str
    name: str
    role: str

    def can(self, needed: str) -> bool:
        return operators.can(self.role, needed)

    @property
    def actor(self) -> str:
        return f"console:{self.name} <{self.email}>"


EngineDep = Annotated[Engine, Depends(get_engine)]


def signed_in(request: Request, engine: EngineDep) -> Me:
    """The operator this request is from, or a redirect to the sign-in page."""
    session = console_session(request)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if session.operator_id is None:
        raise NeedsSignIn(next_path)
    with transaction(engine) as db:
        operator = operators.signed_in_operator(db, session.operator_id, session.epoch)
        organisation = (
            organisations.get_organisation(db, operator.organisation_id) if operator else None
        )
        if operator is None or organisation is None:
            session.sign_out()
            session.say("Your session has ended: sign in again.", "warn")
            raise NeedsSignIn(next_path)
        return Me(
            operator.id,
            operator.organisation_id,
            organisation.name,
            operator.email,
            operator.name,
            operator.role,
        )


MeDep = Annotated[Me, Depends(signed_in)]


def needs(role: str) -> Callable[[Me], Me]:
    """A dependency: the signed-in operator, who must have at least ``role``."""

    def check(me: MeDep) -> Me:
        if not me.can(role):
            raise PageError(
                403,
                "Not allowed",
                f"Your role ({me.role}) cannot do this: it needs {role}. Ask an admin.",
            )
        return me

    return check


OperatorDep = Annotated[Me, Depends(needs("operator"))]
AdminDep = Annotated[Me, Depends(needs("admin"))]


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A short transaction for a page's reads (pages never hold one across CRM calls)."""
    with transaction(engine) as session:
        yield session


# --- rendering -------------------------------------------------------------------------------


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    """A page from ``templates/``, with the session's CSRF token and messages."""
    session: ConsoleSession | None = getattr(request.state, "console", None)
    base = {
        "csrf": session.csrf if session else "",
        "messages": session.take_messages() if session else [],
        "now": utcnow(),
        "path": request.url.path,
    }
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def back_to(request: Request, fallback: str) -> RedirectResponse:
    """A 303 back to the page the form was on (a console path only), else ``fallback``."""
    target = request.query_params.get("back") or ""
    if not target.startswith("/console/") or target.startswith("//"):
        target = fallback
    return RedirectResponse(target, status_code=303)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def sign_in_redirect(next_path: str) -> Response:
    return RedirectResponse(f"/console/sign-in?next={quote(next_path, safe='/')}", status_code=303)


# --- template filters ------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``3 min ago`` / ``in 5 min``."""
    if moment is None:
        return "—"
    seconds = ((now or utcnow()) - _aware(moment)).total_seconds()
    future = seconds < 0
    text = span(abs(seconds))
    return f"in {text}" if future else f"{text} ago"


def span(seconds: float | None) -> str:
    """A duration for people: ``0.4 s``, ``12 s``, ``3 min``, ``2 h 5 min``, ``3 d``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


def shown(value: Any) -> str:
    """A field value as text (empty shows as —; structures as JSON)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


templates.env.filters.update(when=when, ago=ago, span=span, shown=shown, pretty=pretty)
