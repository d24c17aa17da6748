"""The queries behind a connection's health: its last runs, what waits to be synced, its
open conflicts and failures, its API calls. One grouped query per figure for all of an
organisation's connections. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from sync.store.models import (
    Conflict,
    Cursor,
    InboundEvent,
    OutboxEntry,
    RecordFailure,
    SyncRun,
)


def latest_runs(
    session: Session, connection_ids: Sequence[str], *, scope: str | None = None
) -> dict[str, SyncRun]:
    """Each connection's most recent run (of ``scope`` when given)."""
    found: dict[str, SyncRun] = {}
    for connection_id in connection_ids:
        query = select(SyncRun).where(SyncRun.connection_id == connection_id)
        if scope is not None:
            query = query.where(SyncRun.scope == scope)
        run = session.scalar(query.order_by(SyncRun.started_at.desc()).limit(1))
        if run is not None:
            found[connection_id] = run
    return found


def open_counts(
    session: Session, organisation_id: str, model: type[Conflict] | type[RecordFailure]
) -> dict[str, int]:
    """Open conflicts or failures per connection."""
    query = (
        select(model.connection_id, func.count())
        .where(model.organisation_id == organisation_id, model.status == "open")
        .group_by(model.connection_id)
    )
    return {connection_id: int(count) for connection_id, count in session.execute(query)}


def pending_events(session: Session, organisation_id: str) -> dict[str, tuple[int, datetime]]:
    """Webhook events still waiting per connection: how many, and the oldest one's arrival."""
    query = (
        select(InboundEvent.connection_id, func.count(), func.min(InboundEvent.received_at))
        .where(InboundEvent.organisation_id == organisation_id, InboundEvent.status == "pending")
        .group_by(InboundEvent.connection_id)
    )
    return {cid: (int(count), oldest) for cid, count, oldest in session.execute(query)}


def cursors(session: Session, connection_ids: Sequence[str], obj: str) -> dict[str, str]:
    """Each connection's cursor of one object (``outbox``: its position in the outbox)."""
    if not connection_ids:
        return {}
    query = select(Cursor.connection_id, Cursor.value).where(
        Cursor.connection_id.in_(list(connection_ids)), Cursor.object == obj
    )
    return {connection_id: value for connection_id, value in session.execute(query)}


def unpushed_changes(
    session: Session, organisation_id: str, connection_id: str, after_id: int
) -> tuple[int, datetime | None]:
    """Billing-side changes after ``after_id`` in the outbox that this connection has yet
    to push (its own pulls excepted): how many, and when the oldest was made."""
    query = select(func.count(), func.min(OutboxEntry.created_at)).where(
        OutboxEntry.organisation_id == organisation_id,
        OutboxEntry.id > after_id,
        or_(
            OutboxEntry.origin_connection_id.is_(None),
            OutboxEntry.origin_connection_id != connection_id,
        ),
    )
    count, oldest = session.execute(query).one()
    return int(count or 0), oldest


def api_calls_since(session: Session, organisation_id: str, since: datetime) -> dict[str, int]:
    """API calls the connection's runs made since ``since``, per connection."""
    query = (
        select(SyncRun.connection_id, func.coalesce(func.sum(SyncRun.api_calls), 0))
        .where(SyncRun.organisation_id == organisation_id, SyncRun.started_at >= since)
        .group_by(SyncRun.connection_id)
    )
    return {connection_id: int(calls) for connection_id, calls in session.execute(query)}


def running_runs(session: Session, organisation_id: str) -> dict[str, SyncRun]:
    """The run in progress of each connection (a whole-connection sync first)."""
    query = (
        select(SyncRun)
        .where(SyncRun.organisation_id == organisation_id, SyncRun.status == "running")
        .order_by(SyncRun.scope, SyncRun.started_at)
    )
    found: dict[str, SyncRun] = {}
    for run in session.scalars(query):
        found.setdefault(run.connection_id, run)
    return found
