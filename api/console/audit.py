"""The organisation's audit trail: every action, newest first, by whom and on what, a page
at a time, filtered by who, what, connection, customer and days. Every role reads it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.base import EngineDep, MeDep, PageError, not_found, reading, render
from sync import audit
from sync.store import repository, sync_repository

router = APIRouter()

#: events on one page of the console, and the last page one may ask for
PAGE = 50
LAST_PAGE = 1_000_000


def _page_number(value: str) -> int:
    # a page error, as the console's others are, not the API's JSON 422
    if not value.isdigit() or not 1 <= int(value) <= LAST_PAGE:
        raise PageError(400, "No such page", f"page must be a number from 1 to {LAST_PAGE}.")
    return int(value)


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PageError(400, "Not a date", f"{name} must be a date (YYYY-MM-DD).") from None


def _end_of(day: date) -> datetime | None:
    """ "To" a day is the whole day: up to the start of the next (none after the last)."""
    if day == date.max:
        return None
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


@router.get("/audit")
def audit_page(
    request: Request,
    me: MeDep,
    engine: EngineDep,
    actor: str = "",
    action: str = "",
    connection: str = "",
    customer: str = "",
    since: str = "",
    until: str = "",
    page: str = "1",
) -> Response:
    number = _page_number(page)
    first, last = _day(since, "From"), _day(until, "To")
    filters = audit.AuditFilter(
        actor=actor or None,
        action=action or None,
        connection_id=connection or None,
        customer_id=customer or None,
        since=datetime.combine(first, datetime.min.time(), UTC) if first else None,
        until=_end_of(last) if last else None,
    )
    with reading(engine) as db:
        connections = list(sync_repository.list_connections(db, me.organisation_id))
        if connection and connection not in {c.id for c in connections}:
            raise not_found("connection")
        chosen_customer = None
        if customer:
            chosen_customer = repository.get_customer(db, me.organisation_id, customer)
            if chosen_customer is None:
                raise not_found("customer")
        found = audit.audit_page(
            db, me.organisation_id, filters, limit=PAGE, offset=(number - 1) * PAGE
        )
        actors = audit.actors(db, me.organisation_id)
        actions = audit.actions(db, me.organisation_id)
    kept = {
        k: v
        for k, v in {
            "actor": actor,
            "action": action,
            "connection": connection,
            "customer": customer,
            "since": since,
            "until": until,
        }.items()
        if v
    }
    return render(
        request,
        "audit.html",
        {
            "me": me,
            "events": found.events,
            "more": found.more,
            "page": number,
            "newer": f"/console/audit?{urlencode({**kept, 'page': number - 1})}"
            if number > 1
            else "",
            "older": f"/console/audit?{urlencode({**kept, 'page': number + 1})}"
            if found.more
            else "",
            "filters": kept,
            "actors": actors,
            "actions": actions,
            "connections": connections,
            "customer_name": chosen_customer.customer_name if chosen_customer else "",
        },
    )
