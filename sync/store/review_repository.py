"""The queries an operator reviews with: the conflict queue by connection and field, the
dead letter by connection, a record's audit trail, finding customers. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
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
