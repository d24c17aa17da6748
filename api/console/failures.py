"""The dead letter: each failed record with the CRM's own error, the payload and the
attempts; retry one, or every open one (of a connection)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.console.base import (
    EngineDep,
    MeDep,
    OperatorDep,
    back_to,
    console_session,
    not_found,
    reading,
    render,
)
from api.deps import get_settings
from connectors.errors import ConnectorError
from sync import operator_actions
from sync.crypto import SecretKeyMissing
from sync.store import review_repository, sync_repository
from tasks.work import connection_gate, retry_connection

router = APIRouter()


@router.get("/failures")
def failures_page(
    request: Request,
    me: MeDep,
    engine: EngineDep,
    connection: str | None = None,
    status: str = "open",
) -> Response:
    chosen = status if status in ("open", "all") else "open"
    with reading(engine) as db:
        connections = list(sync_repository.list_connections(db, me.organisation_id))
        if connection and connection not in {c.id for c in connections}:
            raise not_found("connection")
        found = list(
            review_repository.failures(
                db,
                me.organisation_id,
                connection_id=connection or None,
                status=None if chosen == "all" else "open",
            )
        )
    names = {c.id: c.name for c in connections}
    return render(
        request,
        "failures.html",
        {
            "me": me,
            "failures": found,
            "names": names,
            "connections": connections,
            "connection": connection or "",
            "showing": chosen,  # not "status": the template imports a macro of that name
        },
    )


@router.get("/failures/{failure_id}")
def failure_page(request: Request, failure_id: str, me: MeDep, engine: EngineDep) -> Response:
    with reading(engine) as db:
        failure = sync_repository.get_failure(db, me.organisation_id, failure_id)
        if failure is None:
            raise not_found("failure")
        connection = sync_repository.get_connection(db, failure.connection_id)
    return render(
        request,
        "failure.html",
        {"me": me, "f": failure, "connection": connection.name if connection else ""},
    )


def _retry(
    request: Request, engine: Any, me: Any, *, ids: list[str] | None, connection: str | None
) -> Response:
    session = console_session(request)
    settings = get_settings(request)
    try:
        report = operator_actions.retry(
            engine,
            settings,
            me.organisation_id,
            actor=me.actor,
            failure_ids=ids,
            connection_id=connection,
            gate_for=lambda cid: connection_gate(settings, engine, cid),
            run_connection=lambda cid: retry_connection(settings, engine, cid),
        )
    except LookupError:
        raise not_found("open failure") from None
    except (ConnectorError, SecretKeyMissing) as error:
        session.say(f"Retry stopped: {type(error).__name__}: {error}", "error")
        return back_to(request, "/console/failures")
    if not report.retried:
        session.say("No open failures to retry.", "warn")
    else:
        level = "ok" if not report.still_failing and not report.failed_runs else "error"
        session.say(
            f"Retried {report.retried}: {report.recovered} recovered, "
            f"{report.still_failing} still failing.",
            level,
        )
    for line in report.failed_runs:
        session.say(line[0].upper() + line[1:], "error")
    return back_to(request, "/console/failures")


@router.post("/failures/{failure_id}/retry")
def retry_one(request: Request, failure_id: str, me: OperatorDep, engine: EngineDep) -> Response:
    return _retry(request, engine, me, ids=[failure_id], connection=None)


@router.post("/failures/retry")
def retry_all(
    request: Request,
    me: OperatorDep,
    engine: EngineDep,
    connection: Annotated[str, Form()] = "",
) -> Response:
    """Retry every open failure (of the chosen connection)."""
    if connection:
        with reading(engine) as db:
            try:
                operator_actions.require_connection(db, me.organisation_id, connection)
            except LookupError:
                raise not_found("connection") from None
    return _retry(request, engine, me, ids=None, connection=connection or None)
