"""The queries an operator reviews with: the conflict queue by connection and field, the
dead letter by connection, a record's audit trail, finding customers. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from sync.store.models import AuditEvent, Conflict, CustomerRow, RecordFailure


def conflicts(
    session: Session,
    organisation_id: str,
    *,
    connection_id: str | None = None,
    field: str | None = None,
    customer_id: str | None = None,
    status: str | None = "open",
    limit: int = 200,
    offset: int = 0,
) -> Sequence[Conflict]:
    """Conflicts, oldest first, filtered by connection, field, customer and status; a page
    of ``limit`` from ``offset``."""
    query = select(Conflict).where(Conflict.organisation_id == organisation_id)
    if connection_id is not None:
        query = query.where(Conflict.connection_id == connection_id)
    if field is not None:
        query = query.where(Conflict.field == field)
    if customer_id is not None:
        query = query.where(Conflict.customer_id == customer_id)
    if status is not None:
        query = query.where(Conflict.status == status)
    query = query.order_by(Conflict.created_at, Conflict.field, Conflict.id)
    query = query.limit(limit).offset(offset)
    return session.scalars(query).all()


def count_conflicts(
    session: Session,
    organisation_id: str,
    *,
    connection_id: str | None = None,
    field: str | None = None,
) -> int:
    query = (
        select(func.count())
        .select_from(Conflict)
        .where(Conflict.organisation_id == organisation_id, Conflict.status == "open")
    )
    if connection_id is not None:
        query = query.where(Conflict.connection_id == connection_id)
    if field is not None:
        query = query.where(Conflict.field == field)
    return int(session.scalar(query) or 0)


def conflict_fields(
    session: Session, organisation_id: str, connection_id: str | None = None
) -> list[str]:
    """The fields that have open conflicts (for the queue's filter)."""
    query = select(Conflict.field).where(
        Conflict.organisation_id == organisation_id, Conflict.status == "open"
    )
    if connection_id is not None:
        query = query.where(Conflict.connection_id == connection_id)
    return sorted(set(session.scalars(query.distinct())))


def failures(
    session: Session,
    organisation_id: str,
    *,
    connection_id: str | None = None,
    run_id: str | None = None,
    status: str | None = "open",
    limit: int = 200,
    offset: int = 0,
) -> Sequence[RecordFailure]:
    """Dead-letter rows, newest first; a page of ``limit`` from ``offset``."""
    query = select(RecordFailure).where(RecordFailure.organisation_id == organisation_id)
    if connection_id is not None:
        query = query.where(RecordFailure.connection_id == connection_id)
    if run_id is not None:
        query = query.where(RecordFailure.run_id == run_id)
    if status is not None:
        query = query.where(RecordFailure.status == status)
    query = query.order_by(RecordFailure.updated_at.desc(), RecordFailure.id)
    query = query.limit(limit).offset(offset)
    return session.scalars(query).all()


def audit_trail(
    session: Session, organisation_id: str, subject: str, limit: int = 200
) -> Sequence[AuditEvent]:
    """What was done to one record (a customer, a connection, an operator), newest first."""
    return session.scalars(
        select(AuditEvent)
        .where(AuditEvent.organisation_id == organisation_id, AuditEvent.subject == subject)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    ).all()


def audit_events(
    session: Session,
    organisation_id: str,
    *,
    actor: str | None = None,
    action: str | None = None,
    connection_id: str | None = None,
    customer_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Sequence[AuditEvent]:
    """The organisation's audit trail, newest first, filtered by who, what, connection,
    customer and time (``since`` included, ``until`` not); a page of ``limit`` from
    ``offset``."""
    query = select(AuditEvent).where(AuditEvent.organisation_id == organisation_id)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if connection_id is not None:
        query = query.where(_concerns_connection(organisation_id, connection_id))
    if customer_id is not None:
        query = query.where(AuditEvent.subject == customer_id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    return session.scalars(query.limit(limit).offset(offset)).all()


def _concerns_connection(organisation_id: str, connection_id: str) -> ColumnElement[bool]:
    """An event is a connection's when the connection is its subject (paused, synced,
    changed), its sync wrote it (``sync:<id>``: a CRM delete or merge), its detail names the
    connection (a retried failure) or the conflict it resolved was the connection's."""
    conflicts_of_connection = select(Conflict.id).where(
        Conflict.organisation_id == organisation_id, Conflict.connection_id == connection_id
    )
    return or_(
        AuditEvent.subject == connection_id,
        AuditEvent.actor == f"sync:{connection_id}",
        AuditEvent.detail["connection_id"].as_string() == connection_id,
        AuditEvent.detail["conflict_id"].as_string().in_(conflicts_of_connection),
    )


def audit_actors(session: Session, organisation_id: str, limit: int = 500) -> list[str]:
    """Who appears in the organisation's audit trail (for a filter), most recent first."""
    query = (
        select(AuditEvent.actor)
        .where(AuditEvent.organisation_id == organisation_id)
        .group_by(AuditEvent.actor)
        .order_by(func.max(AuditEvent.at).desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def audit_actions(session: Session, organisation_id: str) -> list[str]:
    """The kinds of action the organisation's audit trail holds (for a filter)."""
    query = (
        select(AuditEvent.action).where(AuditEvent.organisation_id == organisation_id).distinct()
    )
    return sorted(session.scalars(query))


def customer_names(
    session: Session, organisation_id: str, customer_ids: Sequence[str]
) -> dict[str, str]:
    """The names of the organisation's customers among ``customer_ids`` (others are left
    out: an id that is not one of its customers has no name here)."""
    if not customer_ids:
        return {}
    query = select(CustomerRow.id, CustomerRow.customer_name).where(
        CustomerRow.organisation_id == organisation_id, CustomerRow.id.in_(set(customer_ids))
    )
    return {row.id: row.customer_name or "" for row in session.execute(query)}


def conflict_connections(
    session: Session, organisation_id: str, conflict_ids: Sequence[str]
) -> dict[str, str]:
    """The connection of each of the organisation's conflicts among ``conflict_ids``."""
    if not conflict_ids:
        return {}
    query = select(Conflict.id, Conflict.connection_id).where(
        Conflict.organisation_id == organisation_id, Conflict.id.in_(set(conflict_ids))
    )
    return {row.id: row.connection_id for row in session.execute(query)}


def search_customers(
    session: Session, organisation_id: str, text: str, limit: int = 50
) -> Sequence[CustomerRow]:
    """Customers whose name, e-mail or external id contains ``text`` (any case), or whose
    id is ``text``; the newest first when ``text`` is empty."""
    query = select(CustomerRow).where(CustomerRow.organisation_id == organisation_id)
    wanted = text.strip()
    if wanted:
        pattern = f"%{_escape_like(wanted.lower())}%"
        query = query.where(
            or_(
                CustomerRow.id == wanted,
                func.lower(CustomerRow.customer_name).like(pattern, escape="\\"),
                func.lower(CustomerRow.email).like(pattern, escape="\\"),
                func.lower(CustomerRow.external_id).like(pattern, escape="\\"),
            )
        )
        query = query.order_by(CustomerRow.customer_name, CustomerRow.id)
    else:
        query = query.order_by(CustomerRow.created_at.desc(), CustomerRow.id)
    return session.scalars(query.limit(limit)).all()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
