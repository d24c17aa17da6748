"""Every query on console operators, their one-time password links and sign-in attempts.

Operators are scoped by organisation like every other row; a sign-in looks an e-mail up
across organisations (the same person may operate several). Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from sync.store.models import Operator, OperatorToken, Organisation, SignInAttempt, utcnow


def add_operator(
    session: Session, organisation_id: str, email: str, name: str, role: str
) -> Operator:
    operator = Operator(
        organisation_id=organisation_id,
        email=email,
        name=name,
        role=role,
        password_hash=None,
        active=True,
        session_epoch=0,
    )
    session.add(operator)
    session.flush()
    return operator


def get_operator(session: Session, organisation_id: str, operator_id: str) -> Operator | None:
    return session.scalar(
        select(Operator).where(
            Operator.organisation_id == organisation_id, Operator.id == operator_id
        )
    )


def operator_by_id(session: Session, operator_id: str) -> Operator | None:
    """Any organisation's operator by id (a session cookie names the operator only)."""
    return session.get(Operator, operator_id)


def find_operator(session: Session, organisation_id: str, email: str) -> Operator | None:
    return session.scalar(
        select(Operator).where(Operator.organisation_id == organisation_id, Operator.email == email)
    )


def operators_with_email(session: Session, email: str) -> Sequence[tuple[Operator, str]]:
    """Active operators with this e-mail in any organisation, with the organisation's name."""
    rows = session.execute(
        select(Operator, Organisation.name)
        .join(Organisation, Organisation.id == Operator.organisation_id)
        .where(Operator.email == email, Operator.active.is_(True))
        .order_by(Organisation.name)
    ).all()
    return [(operator, name) for operator, name in rows]


def list_operators(session: Session, organisation_id: str) -> Sequence[Operator]:
    return session.scalars(
        select(Operator)
        .where(Operator.organisation_id == organisation_id)
        .order_by(Operator.active.desc(), Operator.email)
    ).all()


def count_admins(session: Session, organisation_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Operator)
            .where(
                Operator.organisation_id == organisation_id,
                Operator.role == "admin",
                Operator.active.is_(True),
            )
        )
        or 0
    )


# --- one-time password links ---------------------------------------------------------------


def add_token(
    session: Session, operator_id: str, token_hash: str, expires_at: datetime
) -> OperatorToken:
    token = OperatorToken(operator_id=operator_id, token_hash=token_hash, expires_at=expires_at)
    session.add(token)
    session.flush()
    return token


def token_by_hash(session: Session, token_hash: str) -> OperatorToken | None:
    return session.scalar(select(OperatorToken).where(OperatorToken.token_hash == token_hash))


def spend_tokens(session: Session, operator_id: str) -> None:
    """Mark every unused link of the operator used (a new link or a removal voids them)."""
    session.execute(
        update(OperatorToken)
        .where(OperatorToken.operator_id == operator_id, OperatorToken.used_at.is_(None))
        .values(used_at=utcnow())
    )


# --- sign-in attempts ----------------------------------------------------------------------


def add_attempt(session: Session, email: str, client: str, succeeded: bool) -> None:
    session.add(SignInAttempt(email=email, client=client, succeeded=succeeded, at=utcnow()))
    session.flush()


def failures_since(
    session: Session, *, since: datetime, email: str | None = None, client: str | None = None
) -> tuple[int, datetime | None]:
    """Failed attempts since ``since`` for the e-mail (after its last success in that
    window) or for the client address: how many, and when the oldest of them was."""
    query = select(func.count(), func.min(SignInAttempt.at)).where(
        SignInAttempt.succeeded.is_(False), SignInAttempt.at >= since
    )
    if email is not None:
        last_success = (
            select(func.max(SignInAttempt.at))
            .where(
                SignInAttempt.email == email,
                SignInAttempt.succeeded.is_(True),
                SignInAttempt.at >= since,
            )
            .scalar_subquery()
        )
        query = query.where(
            SignInAttempt.email == email,
            (last_success.is_(None)) | (SignInAttempt.at > last_success),
        )
    if client is not None:
        query = query.where(SignInAttempt.client == client)
    count, oldest = session.execute(query).one()
    return int(count or 0), oldest


def forget_attempts(session: Session, *, email: str, client: str, before: datetime) -> None:
    """Drop this e-mail's and this client's attempts older than the limit's window (they
    no longer count), so the table stays as small as the window."""
    session.execute(
        delete(SignInAttempt).where(
            (SignInAttempt.email == email) | (SignInAttempt.client == client),
            SignInAttempt.at < before,
        )
    )
