"""Readiness: can this deployment do its work? (``/readyz``, ``crmsync health ready``)

Three checks, each answering ``ok`` or what is wrong: the store answers, its migrations are
at the head this code ships, and the broker accepts a connection. Liveness (``/healthz``)
is separate: a process that answers is alive even while its database is away.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.logs import redact
from sync.settings import Settings
from sync.store.db import engine_for, migration_heads
from tasks.app import celery

#: seconds each check may take before it counts as failed
CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Readiness:
    """Each check's answer (``ok`` or the reason it failed)."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(answer == "ok" for answer in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, answer in self.checks.items() if answer != "ok"]


def _unreachable(error: Exception, detail: bool) -> str:
    """Why a check failed: the error's class (all ``/readyz`` tells the world), and for an
    operator (``detail``) its first line too, redacted."""
    answer = f"unreachable: {type(error).__name__}"
    if not detail:
        return answer
    words = redact(" ".join(str(getattr(error, "orig", None) or error).split()))[:300]
    return f"{answer}: {words}" if words else answer


def _database(settings: Settings, detail: bool) -> tuple[str, str]:
    try:
        current, heads = migration_heads(engine_for(settings.database_url))
    except Exception as error:  # any driver error means "not reachable" here
        return _unreachable(error, detail), "unknown: the database is unreachable"
    if current == heads:
        return "ok", "ok"
    return "ok", (
        f"not at head: the store is at {sorted(current) or 'no revision'}, this code needs "
        f"{sorted(heads)} (run `crmsync db upgrade`)"
    )


def _broker(settings: Settings, detail: bool) -> str:
    try:
        with celery(settings).connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS
            )
    except Exception as error:  # kombu raises the transport's own errors
        return _unreachable(error, detail)
    return "ok"


def readiness(settings: Settings, *, detail: bool = False) -> Readiness:
    """Check the store, its migrations and the broker; ``detail`` (``crmsync health
    ready``, not ``/readyz``) adds why a service is unreachable, in its own words."""
    database, migrations = _database(settings, detail)
    broker = _broker(settings, detail)
    return Readiness({"database": database, "migrations": migrations, "broker": broker})
