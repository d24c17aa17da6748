"""Sync runs over HTTP, as ``crmsync runs`` shows them: ``GET /runs`` (newest first, by
connection, a page by ``limit`` / ``offset``) and ``GET /runs/{id}``. Another
organisation's run, or connection as a filter, is 404."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import OrganisationId, SessionDep
from api.lookups import ConnectionFilter, Limit, Offset, require_connection, responses
from sync.errors import NotFound
from sync.health import describe_run
from sync.store import sync_repository as repo

router = APIRouter(prefix="/runs", tags=["runs"], responses=responses("run (or connection named)"))


class Run(BaseModel):
    """One sync run: what started it, what it did, how long it took, why it failed."""

    id: str
    connection_id: str
    connection: str | None = Field(description="the connection's name")
    trigger: str = Field(description="`schedule`, `webhook`, `operator` or `retry`")
    status: str = Field(description="`running`, `succeeded`, `failed`, `paused`, `interrupted`")
    status_text: str = Field(description="the status, with the failures it left")
    failures: int = Field(description="records it left in the dead letter")
    crm_records_created: int
    full: bool
    counters: dict[str, int]
    api_calls: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None


@router.get("", response_model=list[Run])
def list_runs(
    session: SessionDep,
    org: OrganisationId,
    connection: ConnectionFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[Run]:
    """The organisation's runs, newest first, a page of ``limit`` from ``offset``."""
    connection_id = require_connection(session, org, connection).id if connection else None
    names = {c.id: c.name for c in repo.list_connections(session, org)}
    found = repo.list_runs(session, org, connection_id, limit, offset)
    return [Run(**describe_run(r, names.get(r.connection_id))) for r in found]


@router.get("/{run_id}", response_model=Run)
def get_run(run_id: uuid.UUID, session: SessionDep, org: OrganisationId) -> Run:
    """One run with all its counters."""
    run = repo.get_run(session, org, str(run_id))
    if run is None:
        raise NotFound(f"no run {run_id} in this organisation")
    connection = repo.get_connection(session, run.connection_id)
    return Run(**describe_run(run, connection.name if connection is not None else None))
