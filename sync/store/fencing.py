"""Fencing tokens: the store refuses the writes of a run that is no longer the lock's holder.

A lock in Redis can be lost without its holder noticing at once (a long pause, a Redis
restart or failover) while another worker takes it. So each holder claims a token with
the lock — the next number for the lock's name, issued here by the store, so it outlives
any Redis — and every commit of a run checks in its own transaction that its token is
still the newest (:func:`check`). A new holder's claim makes every older token stale; the
check takes the row's lock, so a claim and a commit never interleave.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sync.errors import StaleRun as StaleRun
from sync.store.models import LockFence, utcnow
from sync.store.repository import _insert_for


def claim(session: Session, name: str) -> int:
    """A new fencing token for the lock ``name``, greater than every token issued before
    (commit it before the run starts: older tokens are stale from then on)."""
    stmt = _insert_for(session)(LockFence).values(name=name, token=1, updated_at=utcnow())
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"token": LockFence.token + 1, "updated_at": stmt.excluded.updated_at},
    ).returning(LockFence.token)
    return int(session.execute(stmt).scalar_one())


def check(session: Session, name: str, token: int) -> None:
    """Raise :class:`StaleRun` unless ``token`` is still the newest for ``name``; on
    success the fence row stays locked until the caller's transaction ends, so no new
    holder can claim in between."""
    result = session.execute(
        update(LockFence)
        .where(LockFence.name == name, LockFence.token == token)
        .values(updated_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        newest = session.scalar(select(LockFence.token).where(LockFence.name == name))
        raise StaleRun(
            f"the lock {name} has a newer holder (token {newest}, this run's {token}): "
            "this run's writes are refused"
        )
