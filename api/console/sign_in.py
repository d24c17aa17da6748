"""Signing in and out, and setting a password from a one-time link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.console.base import EngineDep, console_session, redirect, render
from sync import operators
from sync.store.db import transaction

router = APIRouter()


def _next(value: str | None) -> str:
    """Where to go after signing in: a console page of this site only."""
    if value and value.startswith("/console/") and not value.startswith("//"):
        return value
    return "/console/connections"


@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:
    console_session(request)
    return render(request, "sign_in.html", {"next": _next(next), "email": "", "choices": []})


@router.post("/sign-in")
def sign_in(
    request: Request,
    engine: EngineDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    organisation: Annotated[str | None, Form(max_length=36)] = None,
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """Check the e-mail and password (rate-limited); on success the session is the
    operator's, with a new CSRF token."""
    session = console_session(request)
    client = request.client.host if request.client else "unknown"
    context = {"next": _next(next), "email": email, "choices": []}
    # The attempt is recorded in the same transaction as the check, and committed whether
    # the check passes or not: the limit counts failures.
    with transaction(engine) as db:
        try:
            operator = operators.sign_in(
                db, email, password, client=client, organisation_id=organisation or None
            )
            signed = (operator.id, operator.session_epoch)
        except operators.SignInLimited as limited:
            response = render(
                request, "sign_in.html", {**context, "error": f"{limited}."}, status=429
            )
            response.headers["retry-after"] = str(limited.retry_after)
            return response
        except operators.SignInRefused:
            return render(
                request,
                "sign_in.html",
                {**context, "error": "Wrong e-mail or password."},
                status=401,
            )
        except operators.ChooseOrganisation as choose:
            return render(request, "sign_in.html", {**context, "choices": choose.choices})
    session.sign_in(*signed)
    return redirect(_next(next))


@router.post("/sign-out")
def sign_out(request: Request) -> Response:
    session = console_session(request)
    session.sign_out()
    session.say("Signed out.")
    return redirect("/console/sign-in")


@router.get("/set-password")
def set_password_page(request: Request) -> Response:
    """The page a one-time link opens; the token is in the link's fragment, which a little
    script puts into the form (it is never in a URL the server sees)."""
    console_session(request)
    return render(request, "set_password.html", {"min_length": operators.MIN_PASSWORD_LENGTH})


@router.post("/set-password")
def set_password(
    request: Request,
    engine: EngineDep,
    token: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    session = console_session(request)
    context = {"min_length": operators.MIN_PASSWORD_LENGTH}
    if password != confirm:
        return render(
            request,
            "set_password.html",
            {**context, "token": token, "error": "The two passwords differ."},
            status=422,
        )
    try:
        with transaction(engine) as db:
            operator = operators.set_password(db, token, password)
            email = operator.email
    except operators.OperatorError as error:
        return render(
            request,
            "set_password.html",
            {**context, "token": token, "error": f"{str(error).capitalize()}."},
            status=422,
        )
    session.sign_out()
    session.say(f"Password set for {email}: sign in with it.")
    return redirect("/console/sign-in")
