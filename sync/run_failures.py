"""A connection's own failure: a run that failed as a whole, in the dead letter beside the
records that failed.

A record that fails never ends a run (it is a record failure, :mod:`sync.failures`). A run
ends ``failed`` when the CRM or the store refuses the connection itself: credentials that
cannot be refreshed, 5xx answers or hangs past every attempt, a rate-limit time budget
spent, a bad set-up, or a bug of ours. Such a run leaves **one open failure per
connection** (``direction`` ``connection``, no record ids): a run that fails again updates
it in place (same id, ``attempts`` counted on, the newest run and error), so an operator
follows one row from the first failure to its recovery. It is listed by ``crmsync
failures list`` and the console, and ``crmsync retry`` runs the connection's sync again
for it. A run of the whole connection that succeeds resolves it: the fault is gone.

A run that cannot even start (its connector cannot be made: credentials that cannot be
decrypted with the current secret key, a setting the connector refuses) is recorded as a
``failed`` run with that reason, and opens the same failure, before the error goes on to
the caller (:func:`recorded_if_it_cannot_start`).

Not failures: a run ``paused`` by the CRM's daily allowance (the connection shows its
pause, and the scheduler resumes it), and an ``interrupted`` run (its lock was lost to
another worker, or its process stopped: the next run resumes from the last committed page;
neither says anything about the CRM). Neither opens nor resolves a connection's failure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connectors.errors import AuthError, ConfigError, ConnectorError, RateLimited, RetriableError
from sync.errors import NotFound, SyncError
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import SyncRun, utcnow

log = logging.getLogger("crmsync.sync")

CONNECTION = repo.CONNECTION_FAILURE

#: a CRM error's message starts with the CRM's name and the HTTP status it answered
#: ("HubSpot 401 ...", "Salesforce 503 ...")
_STATUS = re.compile(r"^\S+ ([1-5]\d\d)\b")


def classify(error: BaseException) -> tuple[str, str]:
    """The ``(kind, code)`` of a run's failure: the kind from the error tree (``auth``,
    ``config``, ``rate_limit``, ``unavailable`` for 5xx and time-outs, ``crm``, ``sync``,
    ``internal`` for a bug of ours); the code the CRM's HTTP status when known, else the
    error's class (or the rate limit's policy)."""
    status = getattr(error, "status", None) or _status_in(str(error))
    code = str(status) if status else type(error).__name__
    if isinstance(error, AuthError):
        return "auth", code
    if isinstance(error, ConfigError):
        return "config", code
    if isinstance(error, RateLimited):
        return "rate_limit", error.policy
    if isinstance(error, RetriableError):
        return "unavailable", code
    if isinstance(error, ConnectorError):
        return "crm", code
    if isinstance(error, SyncError):
        return "sync", type(error).__name__
    return "internal", type(error).__name__


def _status_in(message: str) -> int | None:
    found = _STATUS.match(message)
    return int(found.group(1)) if found else None


def _without_class(error: str | None, cause: BaseException | None) -> str | None:
    """The run's reason without the error's class in front ("OperationalError: ..."): the
    failure's code names the class already, and a failure reads as ``kind code: message``."""
    prefix = f"{type(cause).__name__}: " if cause is not None else ""
    if error and prefix and error.startswith(prefix):
        return error[len(prefix) :]
    return error


def note_run_end(
    session: Session, run: SyncRun, error: str | None, cause: BaseException | None
) -> None:
    """Keep the connection's failure in step with a run that just ended (in the run's own
    closing transaction): a failed run opens it or counts another attempt on it; a run of
    the whole connection that succeeded resolves it."""
    if run.status == "failed":
        kind, code = classify(cause) if cause is not None else ("internal", "")
        error = _without_class(error, cause)
        failure, opened = repo.record_connection_failure(
            session,
            organisation_id=run.organisation_id,
            connection_id=run.connection_id,
            run_id=run.id,
            error_kind=kind,
            error_code=code,
            error_message=error or "",
            payload={"scope": run.scope, "trigger": run.trigger, "full": bool(run.full)},
        )
        log.warning(
            "connection failure opened" if opened else "connection failure still open",
            extra={
                "failure_id": failure.id,
                "failed_run_id": run.id,
                "error_kind": kind,
                "error_code": code,
                "error_message": error,
                "attempts": failure.attempts,
            },
        )
    elif run.status == "succeeded" and run.scope == "connection":
        resolved = repo.resolve_connection_failure(session, run.connection_id)
        if resolved is not None:
            log.info(
                "connection failure resolved",
                extra={
                    "failure_id": resolved.id,
                    "resolved_by_run_id": run.id,
                    "trigger": run.trigger,
                    "attempts": resolved.attempts,
                },
            )


@contextmanager
def recorded_if_it_cannot_start(
    engine: Engine, connection_id: str, *, trigger: str, scope: str, full: bool, plan: bool
) -> Iterator[None]:
    """Around the start of a run: when the connection's run cannot start (its connector
    cannot be made), record it as a failed run, with the connection's failure, then let
    the error go on. An unknown connection, and a plan, record nothing."""
    try:
        yield
    except NotFound:
        raise
    except Exception as error:
        if not plan:
            try:
                _record_unstarted(engine, connection_id, trigger, scope, full, error)
            except Exception:  # the store itself may be what failed: the first error goes on
                log.warning("a run that could not start was not recorded", exc_info=True)
        raise


def _record_unstarted(
    engine: Engine, connection_id: str, trigger: str, scope: str, full: bool, error: Exception
) -> None:
    reason = f"{type(error).__name__}: {error}".splitlines()[0]
    with transaction(engine) as session:
        row = repo.get_connection(session, connection_id)
        if row is None:
            return
        # started (as every run is counted and logged), then failed at once
        run = repo.add_run(session, row, trigger=trigger, scope=scope, full=full, plan=False)
        run.status = "failed"
        run.finished_at = utcnow()
        run.duration_seconds = 0.0
        run.error = reason
        note_run_end(session, run, reason, error)
