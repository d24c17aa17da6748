"""What the tasks do, as plain functions (the tasks in :mod:`tasks.jobs` are one call each,
and ``crmsync sync --wait`` runs the same function in the foreground).

Every sync of a connection holds the connection's ``sync`` lock, so at most one runs at a
time across all workers; the webhook inbox of a connection has its own ``inbox`` lock, so a
long backfill never delays webhook syncs (both share the connection's rate budget).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from connectors.base import RateGate
from sync import alerts, connections
from sync.context import Progress
from sync.engine import RunResult, sync_connection
from sync.fencing import Fence, claim_fence
from sync.inbox import process_inbox
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import utcnow
from tasks import enqueue
from tasks.locks import Lock, held
from tasks.metrics import lock_busy
from tasks.rate import gate_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A sync that did not run, and why: ``busy`` (another holds the lock), ``paused``,
    ``paused_by_limit`` (the CRM's daily allowance is spent: ``detail`` says until when),
    ``missing`` (no such connection), ``empty`` (no pending events)."""

    reason: str
    detail: str | None = None


Outcome = RunResult | Skipped


def connection_gate(settings: Settings, engine: Engine, connection_id: str) -> RateGate | None:
    """The shared rate gate of a connection (None when there is no such connection)."""
    with transaction(engine) as session:
        row = repo.get_connection(session, connection_id)
        if row is None:
            return None
        kind, options, organisation_id = row.kind, dict(row.settings), row.organisation_id
    return gate_for(settings, connection_id, kind, options, organisation_id)


def _skip(engine: Engine, connection_id: str) -> Skipped | None:
    """Why the connection must not sync now (gone, paused, paused by its CRM's limit: no
    call is made until the allowance returns), or None."""
    with transaction(engine) as session:
        row = repo.get_connection(session, connection_id)
        if row is None:
            return Skipped("missing")
        if row.state == "paused":
            return Skipped("paused")
        pause = connections.limit_pause(row)
        if pause is not None:
            return Skipped(connections.PAUSED_BY_LIMIT, connections.limit_error(*pause))
    return None


def _lock_busy(engine: Engine, connection_id: str, lock: str) -> Skipped:
    """Count a sync that found the connection's lock held, labelled as every crmsync metric
    is (its organisation and CRM read from the connection); the run is skipped as busy."""
    with transaction(engine) as session:
        row = repo.get_connection(session, connection_id)
        organisation_id, crm = (row.organisation_id, row.kind) if row is not None else ("", "")
    lock_busy(organisation_id, connection_id, crm, lock)
    return Skipped("busy")


def run_sync(
    settings: Settings,
    engine: Engine,
    connection_id: str,
    *,
    trigger: str = "schedule",
    full: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """Sync one connection under its lock; skipped when paused, busy or gone."""
    skipped = _skip(engine, connection_id)
    if skipped is not None:
        return skipped
    name = f"sync:{connection_id}"
    with held(settings, name) as lock:
        if lock is None:
            return _lock_busy(engine, connection_id, "sync")
        gate = connection_gate(settings, engine, connection_id)
        result = sync_connection(
            engine,
            settings,
            connection_id,
            trigger=trigger,
            full=full,
            gate=gate,
            progress=progress,
            fence=fence_for(engine, name, lock),
        )
    return result


def retry_connection(settings: Settings, engine: Engine, connection_id: str) -> RunResult:
    """Sync the connection now for ``crmsync retry`` of its failure, the worker's way (its
    lock, its rate gate); a sync that could not run is a result ``skipped`` with why."""
    outcome = run_sync(settings, engine, connection_id, trigger="retry")
    if isinstance(outcome, Skipped):
        why = outcome.reason + (f" ({outcome.detail})" if outcome.detail else "")
        return RunResult(
            None,
            "skipped",
            {},
            0,
            0.0,
            error=f"the sync of connection {connection_id} did not run: {why}",
        )
    return outcome


def run_inbox(settings: Settings, engine: Engine, connection_id: str) -> Outcome:
    """Sync the records named by the connection's pending webhook events."""
    # events arriving from now on need a new task: this one may have read the inbox already
    enqueue.clear_inbox_flag(settings, connection_id)
    skipped = _skip(engine, connection_id)
    if skipped is not None:
        return skipped  # the events wait in the inbox until the connection resumes
    name = f"inbox:{connection_id}"
    with held(settings, name) as lock:
        if lock is None:
            return _lock_busy(engine, connection_id, "inbox")
        gate = connection_gate(settings, engine, connection_id)
        result = process_inbox(
            engine, settings, connection_id, gate=gate, fence=fence_for(engine, name, lock)
        )
    if result is None:
        return Skipped("empty")
    return result


def fence_for(engine: Engine, name: str, lock: Lock) -> Fence:
    """A fresh fencing token for the lock just taken, committed before the run starts (every
    older holder's commits are refused from then on), tied to the lock's own word that it
    was lost."""
    with transaction(engine) as session:
        return claim_fence(session, name, lambda: lock.lost)


def dispatch(
    settings: Settings, engine: Engine, *, now: datetime | None = None
) -> dict[str, list[str]]:
    """Beat's dispatcher: resume every connection whose pause by a CRM limit has ended,
    enqueue every active connection that is due by its own interval,
    the inbox of every connection whose webhook events still wait (their task was lost
    or their sync failed), and the alerts now due (:func:`send_alerts`).

    A due connection is claimed by moving its ``next_sync_at`` one interval on in the same
    transaction, so it is enqueued once per interval however long its run takes (a run
    that succeeds sets it again from its end); tasks are sent after that commit.
    """
    now = now or utcnow()
    stale_before = now - timedelta(seconds=max(30.0, 2 * settings.dispatch_interval_seconds))
    with transaction(engine) as session:
        resumed = [row.id for row in connections.resume_expired(session, now)]
    for connection_id in resumed:
        # the allowance is back: the shared gate lets every worker call again
        lift = getattr(connection_gate(settings, engine, connection_id), "lift", None)
        if callable(lift):
            lift()
    with transaction(engine) as session:
        due = []
        for row in repo.due_connections(session, now):
            row.next_sync_at = now + timedelta(seconds=row.schedule_seconds)
            due.append(row.id)
        waiting = repo.connections_with_pending_events(session, stale_before)
    for connection_id in due:
        enqueue.enqueue_sync(settings, connection_id, trigger="schedule")
    for connection_id in waiting:
        enqueue.enqueue_inbox(settings, connection_id)
    sent = send_alerts(settings, engine)
    return {"due": due, "inbox": waiting, "alerts": sent, "resumed": resumed}


def send_alerts(settings: Settings, engine: Engine) -> list[str]:
    """Decide the alerts now due and queue their delivery; the kinds queued. One dispatcher
    at a time decides (a lock), so an alert is never sent twice; a failure here is logged
    and never stops the dispatcher's real work."""
    try:
        with held(settings, "alerts") as acquired:
            if not acquired:
                return []
            with transaction(engine) as session:
                due = alerts.collect(session, settings)
            for alert in due:
                enqueue.enqueue_alert(settings, alert)
    except Exception:
        log.exception("alerts could not be decided or queued")
        return []
    return [alert.kind for alert in due]


def summary(outcome: Outcome) -> dict[str, Any]:
    """A JSON-able line for the task's log."""
    if isinstance(outcome, Skipped):
        return {"skipped": outcome.reason, "detail": outcome.detail}
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "counters": outcome.counters,
        "api_calls": outcome.api_calls,
        "error": outcome.error,
    }
