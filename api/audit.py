"""The organisation's audit trail over HTTP, as the console's audit page and ``crmsync
audit list`` show it: ``GET /audit`` (newest first; by actor, action, connection, customer
and time; a page by ``limit`` / ``offset``). Another organisation's connection or customer
as a filter is 404, and its events never appear."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import OrganisationId, SessionDep
from api.lookups import ConnectionFilter, Offset, require_connection, responses
from sync import audit
from sync.errors import NotFound
from sync.store import repository

router = APIRouter(
    prefix="/audit", tags=["audit"], responses=responses("connection or customer named")
)


class Target(BaseModel):
    """A record the action was done to."""

    kind: str = Field(description="`customer`, `conflict`, `connection`, `failure`, `operator`")
    id: str
    label: str = Field(description="its name (a customer's, a connection's, an e-mail)")


class AuditEvent(BaseModel):
    """Who did what, to which records, and when."""

    id: int
    at: datetime
    actor: str = Field(description="as recorded: `console:Name <e-mail>`, `api:key …`, `cli:user`")
    who: str = Field(description="the actor in people's words")
    action: str = Field(description="`conflict_resolved`, `connection_paused`, …")
    what: str = Field(description="the action in people's words")
    subject: str
    targets: list[Target]
    detail: dict[str, Any]


@router.get("", response_model=list[AuditEvent])
def list_audit(
    session: SessionDep,
    org: OrganisationId,
    actor: Annotated[
        str | None, Query(max_length=255, description="Only this actor's (as recorded)")
    ] = None,
    action: Annotated[str | None, Query(max_length=64, description="Only this action")] = None,
    connection: ConnectionFilter = None,
    customer: Annotated[uuid.UUID | None, Query(description="Only this customer's")] = None,
    since: Annotated[datetime | None, Query(description="At or after this moment")] = None,
    until: Annotated[datetime | None, Query(description="Before this moment")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE, description="At most this many")] = 50,
    offset: Offset = 0,
) -> list[AuditEvent]:
    """The organisation's audit events, newest first, a page of ``limit`` from ``offset``
    (``crmsync audit list``). An unknown connection or customer is 404."""
    connection_id = require_connection(session, org, connection).id if connection else None
    if customer is not None and repository.get_customer(session, org, str(customer)) is None:
        raise NotFound(f"no customer {customer} in this organisation")
    filters = audit.AuditFilter(
        actor=actor,
        action=action,
        connection_id=connection_id,
        customer_id=str(customer) if customer else None,
        since=since,
        until=until,
    )
    page = audit.audit_page(session, org, filters, limit=limit, offset=offset)
    return [AuditEvent.model_validate(e.to_json()) for e in page.events]
