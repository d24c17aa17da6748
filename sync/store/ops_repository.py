"""Queries for what operators are told about connections: the metrics' gauges and alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync.store.models import Conflict, ConnectionRow, RecordFailure, SyncRun


@dataclass(frozen=True)
class OpenWork:
    organisation_id: str
    connection_id: str
    kind: str
    open_conflicts: int
    open_failures: int


def open_work_by_connection(session: Session) -> list[OpenWork]:
    """Every connection with its open conflicts and open dead-letter rows."""
    conflicts: dict[str, int] = {
        connection: count
        for connection, count in session.execute(
            select(Conflict.connection_id, func.count())
            .where(Conflict.status == "open")
            .group_by(Conflict.connection_id)
        )
    }
    failures: dict[str, int] = {
        connection: count
        for connection, count in session.execute(
            select(RecordFailure.connection_id, func.count())
            .where(RecordFailure.status == "open")
            .group_by(RecordFailure.connection_id)
        )
    }
    rows = session.execute(
        select(ConnectionRow.organisation_id, ConnectionRow.id, ConnectionRow.kind)
    )
    return [
        OpenWork(org, connection, kind, conflicts.get(connection, 0), failures.get(connection, 0))
        for org, connection, kind in rows
    ]


def recent_runs(session: Session, connection_id: str, limit: int) -> Sequence[SyncRun]:
    """The connection's last ``limit`` finished runs (not plans), newest first."""
    return session.scalars(
        select(SyncRun)
        .where(
            SyncRun.connection_id == connection_id,
            SyncRun.status.in_(("succeeded", "failed")),
            SyncRun.plan.is_(False),
        )
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(limit)
    ).all()


def conflicts_opened_since(
    session: Session, connection_id: str, since: datetime | None
) -> Sequence[Conflict]:
    """The connection's open conflicts created after ``since`` (all open ones when None)."""
    query = select(Conflict).where(
        Conflict.connection_id == connection_id, Conflict.status == "open"
    )
    if since is not None:
        query = query.where(Conflict.created_at > since)
    return session.scalars(query.order_by(Conflict.created_at)).all()
