"""The conflict queue: filter by connection and field, see base, billing and CRM side by
side with the match rule's explanation, resolve one or the whole filtered set (keeping
billing, keeping the CRM, or, filtered to one field, setting one value). Each conflict has
its own page too, open or resolved: the link a customer's page or an alert can point at."""

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
from sync.conflicts import ConflictError, Keep, explain_conflicts, resolve_conflict
from sync.crypto import SecretKeyMissing
from sync.store import repository, review_repository, sync_repository
from sync.store.models import Conflict
from tasks.work import connection_gate

router = APIRouter()

#: the most conflicts one bulk resolution takes on
BULK_LIMIT = 1000


def _filters(connection: str | None, field: str | None) -> tuple[str | None, str | None]:
    return (connection or None), (field or None)


def describe(db: Any, organisation_id: str, conflicts: list[Conflict]) -> list[dict[str, Any]]:
    """Conflicts with their customer's name, connection and explanation."""
    connections = {c.id: c for c in sync_repository.list_connections(db, organisation_id)}
    customers = repository.get_customers(db, organisation_id, [c.customer_id for c in conflicts])
    why = explain_conflicts(db, organisation_id, conflicts)
    described = []
    for conflict in conflicts:
        connection = connections.get(conflict.connection_id)
        customer = customers.get(conflict.customer_id)
        described.append(
            {
                "c": conflict,
                "connection": connection.name if connection else conflict.connection_id,
                "customer": customer.customer_name if customer else conflict.customer_id,
                "why": why[conflict.id],
            }
        )
    return described


@router.get("/conflicts")
def conflicts_page(
    request: Request,
    me: MeDep,
    engine: EngineDep,
    connection: str | None = None,
    field: str | None = None,
) -> Response:
    connection_id, field_name = _filters(connection, field)
    with reading(engine) as db:
        connections = list(sync_repository.list_connections(db, me.organisation_id))
        if connection_id is not None and connection_id not in {c.id for c in connections}:
            raise not_found("connection")
        found = list(
            review_repository.conflicts(
                db, me.organisation_id, connection_id=connection_id, field=field_name
            )
        )
        total = review_repository.count_conflicts(
            db, me.organisation_id, connection_id=connection_id, field=field_name
        )
        rows = describe(db, me.organisation_id, found)
        fields = review_repository.conflict_fields(db, me.organisation_id, connection_id)
    return render(
        request,
        "conflicts.html",
        {
            "me": me,
            "conflicts": rows,
            "total": total,
            "connections": connections,
            "fields": fields,
            "connection": connection_id or "",
            "field": field_name or "",
        },
    )


@router.get("/conflicts/{conflict_id}")
def conflict_page(request: Request, conflict_id: str, me: MeDep, engine: EngineDep) -> Response:
    """One conflict: the three values, why they differ, and how (and by whom) it was
    resolved, or the resolve form while it is open."""
    with reading(engine) as db:
        conflict = sync_repository.get_conflict(db, me.organisation_id, conflict_id)
        if conflict is None:
            raise not_found("conflict")
        item = describe(db, me.organisation_id, [conflict])[0]
    return render(request, "conflict.html", {"me": me, "item": item, "c": conflict})


def _keep(action: str) -> tuple[Keep | None, bool]:
    if action == "billing":
        return "billing", False
    if action == "crm":
        return "crm", False
    if action == "value":
        return None, True
    raise ConflictError("choose keep billing, keep CRM or set a value")


def _resolve(
    request: Request, engine: Any, me: Any, conflict: Conflict, action: str, value: str
) -> str:
    settings = get_settings(request)
    keep, set_value = _keep(action)
    resolution = resolve_conflict(
        engine,
        settings,
        me.organisation_id,
        conflict.id,
        keep=keep,
        value=value if set_value else None,
        set_value=set_value,
        actor=me.actor,
        gate=connection_gate(settings, engine, conflict.connection_id),
    )
    sides = [
        side
        for side, written in (
            ("billing", resolution.billing_written),
            ("the CRM", resolution.crm_written),
        )
        if written
    ]
    where = f"written to {' and '.join(sides)}" if sides else "both sides already agreed"
    return f"{resolution.field} = {resolution.value!r} ({where})"


@router.post("/conflicts/{conflict_id}/resolve")
def resolve_one(
    request: Request,
    conflict_id: str,
    me: OperatorDep,
    engine: EngineDep,
    action: Annotated[str, Form()],
    value: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    """Resolve one conflict: keep billing, keep the CRM, or set a value on both sides."""
    session = console_session(request)
    with reading(engine) as db:
        conflict = sync_repository.get_conflict(db, me.organisation_id, conflict_id)
    if conflict is None:
        raise not_found("conflict")
    try:
        done = _resolve(request, engine, me, conflict, action, value)
    except (ConflictError, LookupError, ConnectorError, SecretKeyMissing) as error:
        session.say(f"Not resolved: {error}", "error")
    else:
        session.say(f"Resolved: {done}.")
    return back_to(request, "/console/conflicts")


@router.post("/conflicts/resolve")
def resolve_many(
    request: Request,
    me: OperatorDep,
    engine: EngineDep,
    action: Annotated[str, Form()],
    value: Annotated[str, Form(max_length=10_000)] = "",
    connection: Annotated[str, Form()] = "",
    field: Annotated[str, Form()] = "",
) -> Response:
    """Resolve every open conflict the filter shows, the same way (each on its own: one
    the CRM refuses stays open, the others are resolved). Setting one value takes a filter
    by field."""
    session = console_session(request)
    connection_id, field_name = _filters(connection, field)
    if action == "value" and field_name is None:
        # one value for conflicts of different fields would write a name into a city
        session.say(
            "Not resolved: filter the queue by one field to set one value for all.", "error"
        )
        return back_to(request, "/console/conflicts")
    with reading(engine) as db:
        found = list(
            review_repository.conflicts(
                db,
                me.organisation_id,
                connection_id=connection_id,
                field=field_name,
                limit=BULK_LIMIT,
            )
        )
    resolved, refused = 0, []
    for conflict in found:
        try:
            _resolve(request, engine, me, conflict, action, value)
            resolved += 1
        except (ConflictError, LookupError, ConnectorError, SecretKeyMissing) as error:
            refused.append(f"{conflict.field} of {conflict.customer_id}: {error}")
    if resolved:
        session.say(f"Resolved {resolved} conflict(s).")
    for line in refused[:5]:
        session.say(f"Not resolved: {line}", "error")
    if len(refused) > 5:
        session.say(f"… and {len(refused) - 5} more not resolved.", "error")
    if not found:
        session.say("No open conflicts matched.", "warn")
    return back_to(request, "/console/conflicts")
