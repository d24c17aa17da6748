"""The conflict queue over HTTP: what ``crmsync conflicts`` and the console's queue do.

``GET /conflicts`` (filtered by status, connection, field and customer; a page by ``limit``
/ ``offset``, oldest first), ``GET /conflicts/{id}`` (base, billing and CRM values with the
match rule's explanation) and ``POST /conflicts/{id}/resolve`` (keep billing, keep the CRM,
or set a value: :func:`sync.conflicts.resolve_conflict`, audited as the API key). Another
organisation's conflict, or connection as a filter, is 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.caller import CallerDep, EngineDep
from api.deps import OrganisationId, SessionDep, get_settings
from api.errors import Message
from api.lookups import ConnectionFilter, Limit, Offset, require_connection, responses
from sync.conflicts import Keep, describe_conflict, explain_conflicts, resolve_conflict
from sync.errors import NotFound
from sync.settings import Settings
from sync.store import review_repository
from sync.store import sync_repository as repo
from sync.store.db import transaction
from tasks.work import connection_gate

router = APIRouter(
    prefix="/conflicts", tags=["conflicts"], responses=responses("conflict (or connection named)")
)

#: a value of a customer field, as a conflict holds it
Value = (
    Annotated[str, StringConstraints(max_length=10_000)]
    | bool
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | None
)


class Conflict(BaseModel):
    """A field that changed differently on both sides (or did not match when first linked)."""

    id: str
    connection_id: str
    customer_id: str
    crm_id: str
    kind: str = Field(description="`field`, `contact` or `merge`")
    field: str
    base: Any = Field(description="the value both sides agreed on at the last sync")
    billing: Any
    crm: Any
    status: str = Field(description="`open` or `resolved`")
    resolution: str | None = Field(description="`billing`, `crm` or `value` once resolved")
    resolved_value: Any
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime | None
    why: list[str] = Field(description="why it is a conflict, under the match rule")


class Resolve(BaseModel):
    """Exactly one of ``keep`` (the billing or the CRM value) or ``value`` (written on
    both sides; ``null`` clears the field)."""

    model_config = ConfigDict(extra="forbid")

    keep: Literal["billing", "crm"] | None = None
    value: Value = None

    @model_validator(mode="after")
    def _one_choice(self) -> Resolve:
        chosen = [name for name in ("keep", "value") if name in self.model_fields_set]
        if self.keep is None and "keep" in chosen:
            chosen.remove("keep")
        if len(chosen) != 1:
            raise ValueError('choose one: {"keep": "billing" | "crm"} or {"value": ...}')
        return self


class Resolution(BaseModel):
    conflict_id: str
    field: str
    value: Any = Field(description="the value both sides now hold")
    billing_written: bool
    crm_written: bool


def _described(session: Any, org: str, conflicts: list[Any]) -> list[Conflict]:
    why = explain_conflicts(session, org, conflicts)
    return [Conflict(**describe_conflict(c), why=why[c.id]) for c in conflicts]


@router.get("", response_model=list[Conflict])
def list_conflicts(
    session: SessionDep,
    org: OrganisationId,
    status: Annotated[
        Literal["open", "resolved", "all"], Query(description="open (default), resolved or all")
    ] = "open",
    connection: ConnectionFilter = None,
    field: Annotated[
        str | None, Query(max_length=255, description="Only this field (`address.city`)")
    ] = None,
    customer: Annotated[uuid.UUID | None, Query(description="Only this customer's")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Conflict]:
    """The organisation's conflicts, oldest first, a page of ``limit`` from ``offset``
    (``crmsync conflicts list``). An unknown connection is 404."""
    connection_id = require_connection(session, org, connection).id if connection else None
    found = review_repository.conflicts(
        session,
        org,
        connection_id=connection_id,
        field=field,
        customer_id=str(customer) if customer else None,
        status=None if status == "all" else status,
        limit=limit,
        offset=offset,
    )
    return _described(session, org, list(found))


@router.get("/{conflict_id}", response_model=Conflict)
def get_conflict(conflict_id: uuid.UUID, session: SessionDep, org: OrganisationId) -> Conflict:
    """One conflict: base, billing and CRM values, and why it is one
    (``crmsync conflicts show``)."""
    conflict = repo.get_conflict(session, org, str(conflict_id))
    if conflict is None:
        raise NotFound(f"no conflict {conflict_id} in this organisation")
    return _described(session, org, [conflict])[0]


@router.post(
    "/{conflict_id}/resolve",
    response_model=Resolution,
    responses={
        409: {"model": Message, "description": "Resolved already, or the CRM refused the value"},
        502: {"model": Message, "description": "The CRM answered with an error"},
        503: {"model": Message, "description": "The CRM is unavailable or rate limited"},
    },
)
def resolve(
    conflict_id: uuid.UUID,
    body: Resolve,
    caller: CallerDep,
    engine: EngineDep,
    settings: Annotated[Settings, Depends(get_settings)],
) -> Resolution:
    """Resolve an open conflict as ``crmsync conflicts resolve`` does: the chosen value is
    written on the side that lacks it (billing through the customer model's rules: 422;
    the CRM through its connector: 409 when it refuses, and then nothing changes), the
    link's base becomes that value, and the audit trail names the API key."""
    with transaction(engine) as session:
        conflict = repo.get_conflict(session, caller.organisation_id, str(conflict_id))
        if conflict is None:
            raise NotFound(f"no conflict {conflict_id} in this organisation")
        connection_id = conflict.connection_id
    keep: Keep | None = body.keep
    done = resolve_conflict(
        engine,
        settings,
        caller.organisation_id,
        str(conflict_id),
        keep=keep,
        value=None if keep else body.value,
        set_value=keep is None,
        actor=caller.actor,
        gate=connection_gate(settings, engine, connection_id),
    )
    return Resolution(
        conflict_id=done.conflict_id,
        field=done.field,
        value=done.value,
        billing_written=done.billing_written,
        crm_written=done.crm_written,
    )
