"""Operators (admins): add one (their one-time link is shown once), change a role, send a
new link, remove one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.console.base import (
    AdminDep,
    EngineDep,
    console_session,
    not_found,
    reading,
    redirect,
    render,
)
from sync import operators

router = APIRouter()


def _page(
    request: Request, me: AdminDep, engine: EngineDep, link: str | None = None, status: int = 200
) -> Response:
    with reading(engine) as db:
        found = operators.list_operators(db, me.organisation_id)
    return render(
        request,
        "operators.html",
        {"me": me, "operators": found, "roles": operators.ROLES, "link": link},
        status=status,
    )


@router.get("/operators")
def operators_page(request: Request, me: AdminDep, engine: EngineDep) -> Response:
    return _page(request, me, engine)


@router.post("/operators")
def add_operator(
    request: Request,
    me: AdminDep,
    engine: EngineDep,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form()],
    name: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    """Add an operator; the page shows their one-time link (this once only)."""
    session = console_session(request)
    try:
        with reading(engine) as db:
            new = operators.add_operator(
                db, me.organisation_id, email, role, name=name or None, by=me.actor
            )
    except operators.OperatorError as error:
        session.say(f"Not added: {error}", "error")
        return redirect("/console/operators")
    link = operators.password_link(str(request.base_url), new.token)
    session.say(f"Added {new.email} as {new.role}. Send them the link below: it is shown once.")
    return _page(request, me, engine, link=link)


@router.post("/operators/{operator_id}/role")
def change_role(
    request: Request,
    operator_id: str,
    me: AdminDep,
    engine: EngineDep,
    role: Annotated[str, Form()],
) -> Response:
    session = console_session(request)
    try:
        with reading(engine) as db:
            changed = operators.set_role(db, me.organisation_id, operator_id, role, by=me.actor)
            email = changed.email
    except LookupError:
        raise not_found("operator") from None
    except operators.OperatorError as error:
        session.say(str(error).capitalize() + ".", "error")
        return redirect("/console/operators")
    session.say(f"{email} is now {role}.")
    return redirect("/console/operators")


@router.post("/operators/{operator_id}/link")
def new_link(request: Request, operator_id: str, me: AdminDep, engine: EngineDep) -> Response:
    """A new one-time link (a forgotten password); older links stop working."""
    session = console_session(request)
    try:
        with reading(engine) as db:
            found = [
                o for o in operators.list_operators(db, me.organisation_id) if o.id == operator_id
            ]
            if not found:
                raise LookupError(operator_id)
            token = operators.new_password_link(db, me.organisation_id, found[0].email, by=me.actor)
            email = found[0].email
    except LookupError:
        raise not_found("operator") from None
    except operators.OperatorError as error:
        session.say(str(error).capitalize() + ".", "error")
        return redirect("/console/operators")
    session.say(f"A new link for {email}: it is shown once.")
    return _page(request, me, engine, link=operators.password_link(str(request.base_url), token))


@router.post("/operators/{operator_id}/remove")
def remove(request: Request, operator_id: str, me: AdminDep, engine: EngineDep) -> Response:
    session = console_session(request)
    try:
        with reading(engine) as db:
            operators.remove_operator(db, me.organisation_id, operator_id, by=me.actor)
    except LookupError:
        raise not_found("operator") from None
    except operators.OperatorError as error:
        session.say(str(error).capitalize() + ".", "error")
        return redirect("/console/operators")
    session.say("Operator removed; their sessions have ended.")
    return redirect("/console/operators")
