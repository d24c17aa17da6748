"""Connections over HTTP, as ``crmsync connections list/show`` and ``crmsync sync`` have
them: ``GET /connections``, ``GET /connections/{id}`` (options and health; never a
credential or a secret) and ``POST /connections/{id}/sync`` (queues a sync for a worker:
202). Another organisation's connection is 404."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.caller import CallerDep, EngineDep
from api.deps import OrganisationId, SessionDep, get_settings
from api.errors import Message
from api.lookups import responses
from connectors.errors import ConnectorError
from sync import connections, health, operator_actions
from sync.errors import NotFound, SecretKeyMissing
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import ConnectionRow
from tasks import enqueue

log = logging.getLogger(__name__)

router = APIRouter(prefix="/connections", tags=["connections"], responses=responses("connection"))


class RunSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    trigger: str
    scope: str
    status: str
    full: bool
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    counters: dict[str, int]
    api_calls: int
    error: str | None


class Lag(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    since: datetime = Field(description="the oldest change known and not yet synced")
    waiting: list[str] = Field(description="what waits: webhook events, billing changes")


class Health(BaseModel):
    """The connection at a glance, as the console's Connections page shows it."""

    model_config = ConfigDict(from_attributes=True)

    healthy: bool = Field(description="active, its last run succeeded, nothing failing")
    state: str = Field(description="`active`, `paused` or `paused_by_limit`")
    last_run: RunSummary | None
    running: RunSummary | None
    lag: Lag | None
    api_calls_24h: int
    api_usage_percent: float | None = Field(description="of the CRM's allowance, as last seen")
    open_conflicts: int
    open_failures: int
    paused_until: datetime | None
    paused_reason: str | None


class Connection(BaseModel):
    """A connection's options and health; its credentials are never shown."""

    id: str
    name: str
    kind: str
    state: str
    paused_by_limit: dict[str, Any] | None
    api_usage: dict[str, Any] | None
    settings: dict[str, Any]
    field_map: dict[str, Any] | None
    fields_the_crm_lacks: dict[str, Any]
    directions: dict[str, Any] | None
    match_mode: str
    create_policy: str
    push_creates: bool
    schedule_seconds: int
    last_sync_at: datetime | None
    next_sync_at: datetime | None
    alert_webhook: str | None = Field(description="scheme and host only")
    health: Health


class ConnectionDetail(Connection):
    links: int = Field(description="CRM records linked to customers")
    unmapped_fields: dict[str, str] | None = Field(
        description="customer fields the connection does not map, with why "
        "(null when the connector cannot be opened: no secret key, say)"
    )


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full: bool = Field(default=False, description="read every CRM record, not only changes")


class SyncQueued(BaseModel):
    connection_id: str
    task_id: str
    queued: bool
    full: bool
    runs: str = Field(description="where the run shows once a worker starts it")


def _connection(row: ConnectionRow, found: health.ConnectionHealth) -> dict[str, Any]:
    return {
        **connections.describe(row),
        "health": Health.model_validate(found, from_attributes=True),
    }


@router.get("", response_model=list[Connection])
def list_connections(session: SessionDep, org: OrganisationId) -> list[Connection]:
    """The organisation's connections, oldest first, with their health."""
    rows = repo.list_connections(session, org)
    healths = {h.id: h for h in health.connection_health(session, org)}
    return [Connection(**_connection(r, healths[r.id])) for r in rows if r.id in healths]


@router.get("/{connection_id}", response_model=ConnectionDetail)
def get_connection(
    connection_id: uuid.UUID,
    session: SessionDep,
    org: OrganisationId,
    settings: Annotated[Settings, Depends(get_settings)],
) -> ConnectionDetail:
    """One connection (``crmsync connections show``): its options, links and health."""
    row = operator_actions.require_connection(session, org, str(connection_id))
    found = health.connection_health(session, org, connection_id=row.id)
    if not found:
        raise NotFound(f"no connection {connection_id} in this organisation")
    try:
        unmapped: dict[str, str] | None = connections.unmapped(settings, row)
    except (ConnectorError, SecretKeyMissing):
        unmapped = None  # the connector cannot be opened: its health says the rest
    return ConnectionDetail(
        **_connection(row, found[0]),
        links=repo.count_links(session, row.id),
        unmapped_fields=unmapped,
    )


@router.post(
    "/{connection_id}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncQueued,
    responses={
        409: {"model": Message, "description": "The connection is paused"},
        503: {"model": Message, "description": "The queue (broker) cannot be reached"},
    },
)
def sync_connection(
    connection_id: uuid.UUID,
    caller: CallerDep,
    engine: EngineDep,
    settings: Annotated[Settings, Depends(get_settings)],
    body: SyncRequest | None = None,
) -> SyncQueued:
    """Queue a sync of the connection for a worker, as ``crmsync sync`` (without
    ``--wait``) does, audited as the API key; sent once the audit row commits. 409 when the
    connection is paused. ``GET /runs?connection=ID`` shows the run once a worker starts it."""
    full = body.full if body is not None else False
    with transaction(engine) as session:
        row = operator_actions.note_sync_requested(
            session, caller.organisation_id, str(connection_id), actor=caller.actor, full=full
        )
        queued_id = row.id
    try:
        task_id = enqueue.enqueue_sync(settings, queued_id, trigger="operator", full=full)
    except Exception as error:  # the broker is down: say so; the schedule still runs
        log.warning("could not queue the sync of %s: %s", queued_id, type(error).__name__)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the sync could not be queued (the broker answered {type(error).__name__}); "
            "the connection's schedule still runs",
        ) from None
    return SyncQueued(
        connection_id=queued_id,
        task_id=task_id,
        queued=True,
        full=full,
        runs=f"/runs?connection={queued_id}",
    )
