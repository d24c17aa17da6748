"""What a run checks before each commit: that it still holds its lock (see
:mod:`sync.store.fencing` for the tokens, and ``tasks/locks.py`` for the locks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from sync.errors import StaleRun as StaleRun
from sync.store import fencing


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Fence:
    """A run's claim on its lock: the lock's ``name``, the fencing ``token`` claimed with
    it, and ``lost`` (the lock's own word that it was lost while held)."""

    name: str
    token: int
    lost: Callable[[], bool] = _never

    def check(self, session: Session) -> None:
        """Raise :class:`StaleRun` if the run may no longer write; call it inside the
        transaction that commits the run's page (with its cursor)."""
        if self.lost():
            raise StaleRun(f"the lock {self.name} was lost: the run stops before its commit")
        fencing.check(session, self.name, self.token)


def claim_fence(session: Session, name: str, lost: Callable[[], bool] = _never) -> Fence:
    """A fence with a fresh token for the lock ``name`` (just taken by the caller)."""
    return Fence(name, fencing.claim(session, name), lost)


__all__ = ["Fence", "StaleRun", "claim_fence"]
