"""The dead letter over HTTP, as ``crmsync failures`` and ``crmsync retry`` have it.

``GET /failures`` (newest first; by status, connection and run; a page by ``limit`` /
``offset``), ``GET /failures/{id}``, ``POST /failures/{id}/retry`` and ``POST
/failures/retry`` (every open one, of a connection or a run). Each failure is a record's
(``level: record``) or a connection's whose run failed as a whole (``level:
connection``). A retry syncs the records again now, in the request, one run per
connection (a connection's failure: its whole sync, under its lock), and is audited as the
API key. Another organisation's failure, run or connection is 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.caller import CallerDep, EngineDep
from api.deps import OrganisationId, SessionDep, get_settings
from api.errors import Message
from api.lookups import ConnectionFilter, Limit, Offset, require_connection, responses
from sync import operator_actions
from sync.errors import NotFound
from sync.failures import RetryOutcome, describe_failure
from sync.settings import Settings
from sync.store import review_repository
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tasks.work import connection_gate, retry_connection

router = APIRouter(
    prefix="/failures", tags=["failures"], responses=responses("failure, run or connection")
)

SettingsDep = Annotated[Settings, Depends(get_settings)]
RETRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: {"model": Message, "description": "The CRM answered with an error"},
    503: {"model": Message, "description": "The CRM is unavailable, or no secret key"},
}


class Failure(BaseModel):
    """A record that failed to sync, or a connection whose run failed as a whole."""

    id: str
    level: Literal["record", "connection"] = Field(
        description="`record`: one record (its ids below); `connection`: the connection's "
        "run failed as a whole, and every record waits for it"
    )
    connection_id: str
    run_id: str | None
    direction: str = Field(description="`pull`, `push`, `contact` or `connection`")
    crm_id: str | None
    customer_id: str | None
    error_kind: str
    error_code: str | None
    error_message: str | None
    attempts: int
    status: str = Field(description="`open`, `retried` or `resolved`")
    next_retry_at: datetime | None
    created_at: datetime | None
    payload: Any = Field(description="the record as it was sent (a connection's: the run)")


class RunOutcome(BaseModel):
    run_id: str | None
    status: str
    error: str | None


class Retried(BaseModel):
    """What a retry did: how many it retried, recovered and left failing, and its runs."""

    retried: int
    recovered: int
    still_failing: int
    runs: list[RunOutcome]


class RetryAll(BaseModel):
    """Which open failures to retry: all, or a connection's, or a run's."""

    model_config = ConfigDict(extra="forbid")

    connection: str | None = Field(default=None, max_length=255, description="id or name")
    run_id: uuid.UUID | None = None


@router.get("", response_model=list[Failure])
def list_failures(
    session: SessionDep,
    org: OrganisationId,
    status: Annotated[
        Literal["open", "retried", "resolved", "all"],
        Query(description="open (default), retried, resolved or all"),
    ] = "open",
    connection: ConnectionFilter = None,
    run_id: Annotated[uuid.UUID | None, Query(description="Only this run's")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Failure]:
    """The organisation's failures, the most recently updated first."""
    connection_id = require_connection(session, org, connection).id if connection else None
    found = review_repository.failures(
        session,
        org,
        connection_id=connection_id,
        run_id=str(run_id) if run_id else None,
        status=None if status == "all" else status,
        limit=limit,
        offset=offset,
    )
    return [Failure(**describe_failure(f)) for f in found]


@router.get("/{failure_id}", response_model=Failure)
def get_failure(failure_id: uuid.UUID, session: SessionDep, org: OrganisationId) -> Failure:
    """One failure with the CRM's words and the record's payload."""
    failure = repo.get_failure(session, org, str(failure_id))
    if failure is None:
        raise NotFound(f"no failure {failure_id} in this organisation")
    return Failure(**describe_failure(failure))


def _retry(
    engine: Any,
    settings: Settings,
    caller: Any,
    *,
    failure_ids: list[str] | None = None,
    connection_id: str | None = None,
    run_id: str | None = None,
) -> Retried:
    outcome: RetryOutcome = operator_actions.retry(
        engine,
        settings,
        caller.organisation_id,
        actor=caller.actor,
        failure_ids=failure_ids,
        run_id=run_id,
        connection_id=connection_id,
        gate_for=lambda cid: connection_gate(settings, engine, cid),
        run_connection=lambda cid: retry_connection(settings, engine, cid),
    )
    return Retried(
        retried=outcome.retried,
        recovered=outcome.recovered,
        still_failing=outcome.still_failing,
        runs=[RunOutcome(run_id=r.run_id, status=r.status, error=r.error) for r in outcome.runs],
    )


@router.post("/retry", response_model=Retried, responses=RETRY_RESPONSES)
def retry_all(
    caller: CallerDep,
    engine: EngineDep,
    settings: SettingsDep,
    body: RetryAll | None = None,
) -> Retried:
    """Retry every open failure (of a connection, or of a run), as ``crmsync retry --all``."""
    chosen = body or RetryAll()
    connection_id = None
    if chosen.connection:
        with transaction(engine) as session:
            connection_id = require_connection(
                session, caller.organisation_id, chosen.connection
            ).id
    if chosen.run_id is not None:
        with transaction(engine) as session:
            if repo.get_run(session, caller.organisation_id, str(chosen.run_id)) is None:
                raise NotFound(f"no run {chosen.run_id} in this organisation")
    return _retry(
        engine,
        settings,
        caller,
        connection_id=connection_id,
        run_id=str(chosen.run_id) if chosen.run_id else None,
    )


@router.post("/{failure_id}/retry", response_model=Retried, responses=RETRY_RESPONSES)
def retry_one(
    failure_id: uuid.UUID, caller: CallerDep, engine: EngineDep, settings: SettingsDep
) -> Retried:
    """Retry one open failure, as ``crmsync retry FAILURE``: 404 when it is not an open
    failure of the organisation. ``still_failing`` says whether it failed again."""
    return _retry(engine, settings, caller, failure_ids=[str(failure_id)])
