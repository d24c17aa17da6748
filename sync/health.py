"""A connection's health at a glance: what the console's Connections page shows.

For each connection: its state (active, paused, or paused by the CRM's daily limit until a
given time, with the CRM's reason), the CRM's API allowance used as its last answer
reported it (Salesforce ``Sforce-Limit-Info``, HubSpot's daily rate headers), its last run
(status, when, how long, counters), the run in progress, when the next scheduled run is
due, the *lag* (how long the oldest change that crmsync knows of and has not synced yet has
waited: a webhook event in the inbox or a billing-side change not pushed), the API calls its
runs made in the last 24 hours, and its open conflicts and failures. Read in a handful of
grouped queries per organisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from sync.connections import effective_state, limit_pause
from sync.store import health_repository as repo
from sync.store import sync_repository
from sync.store.models import Conflict, ConnectionRow, RecordFailure, SyncRun, utcnow

#: the window of the API-call figure (Salesforce's allowance is a rolling 24 hours)
API_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class RunSummary:
    """One run as the console shows it."""

    id: str
    connection_id: str
    trigger: str
    scope: str
    status: str
    full: bool
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    counters: dict[str, int]
    api_calls: int
    error: str | None


def summarise_run(run: SyncRun) -> RunSummary:
    return RunSummary(
        id=run.id,
        connection_id=run.connection_id,
        trigger=run.trigger,
        scope=run.scope,
        status=run.status,
        full=run.full,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_seconds=run.duration_seconds,
        counters=dict(run.counters or {}),
        api_calls=run.api_calls,
        error=run.error,
    )


@dataclass(frozen=True)
class Lag:
    """The oldest change known and not yet synced: since when, and what waits."""

    since: datetime
    waiting: list[str]

    def seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.since).total_seconds())


@dataclass(frozen=True)
class ConnectionHealth:
    id: str
    name: str
    kind: str
    state: str
    schedule_seconds: int
    created_at: datetime
    last_sync_at: datetime | None
    next_sync_at: datetime | None
    last_run: RunSummary | None
    running: RunSummary | None
    lag: Lag | None
    api_calls_24h: int
    open_conflicts: int
    open_failures: int
    settings: dict[str, Any] = field(default_factory=dict)
    #: paused by the CRM's daily limit until then (state ``paused_by_limit``), and why
    paused_until: datetime | None = None
    paused_reason: str | None = None
    #: the CRM's allowance as last seen: ``{used, limit, window, at}`` (empty: not yet)
    api_usage: dict[str, Any] = field(default_factory=dict)

    @property
    def api_usage_percent(self) -> float | None:
        """The share of the CRM's allowance used, as last seen (None when unknown)."""
        used, limit = self.api_usage.get("used"), self.api_usage.get("limit")
        if not isinstance(used, int) or not isinstance(limit, int) or limit <= 0:
            return None
        return 100.0 * used / limit

    @property
    def healthy(self) -> bool:
        """Active, its last run succeeded, nothing failing."""
        return (
            self.state == "active"
            and (self.last_run is None or self.last_run.status == "succeeded")
            and self.open_failures == 0
        )


def connection_health(
    session: Session,
    organisation_id: str,
    *,
    connection_id: str | None = None,
    now: datetime | None = None,
) -> list[ConnectionHealth]:
    """The health of the organisation's connections (or of one of them), oldest first."""
    now = now or utcnow()
    rows = [
        row
        for row in sync_repository.list_connections(session, organisation_id)
        if connection_id is None or row.id == connection_id
    ]
    ids = [row.id for row in rows]
    last_connection_runs = repo.latest_runs(session, ids, scope="connection")
    last_any_runs = repo.latest_runs(session, [i for i in ids if i not in last_connection_runs])
    running = repo.running_runs(session, organisation_id)
    conflicts = repo.open_counts(session, organisation_id, Conflict)
    failures = repo.open_counts(session, organisation_id, RecordFailure)
    events = repo.pending_events(session, organisation_id)
    outbox = repo.cursors(session, ids, "outbox")
    calls = repo.api_calls_since(session, organisation_id, now - API_WINDOW)
    found = []
    for row in rows:
        last = last_connection_runs.get(row.id) or last_any_runs.get(row.id)
        in_progress = running.get(row.id)
        pause = limit_pause(row, now)
        found.append(
            ConnectionHealth(
                id=row.id,
                name=row.name,
                kind=row.kind,
                state=effective_state(row, now),
                schedule_seconds=row.schedule_seconds,
                created_at=row.created_at,
                last_sync_at=row.last_sync_at,
                next_sync_at=row.next_sync_at,
                last_run=summarise_run(last) if last is not None else None,
                running=summarise_run(in_progress) if in_progress is not None else None,
                lag=_lag(session, row, events.get(row.id), outbox.get(row.id)),
                api_calls_24h=calls.get(row.id, 0),
                open_conflicts=conflicts.get(row.id, 0),
                open_failures=failures.get(row.id, 0),
                settings=dict(row.settings or {}),
                paused_until=pause[0] if pause else None,
                paused_reason=pause[1] if pause else None,
                api_usage=dict(row.api_usage or {}),
            )
        )
    return found


def _lag(
    session: Session,
    row: ConnectionRow,
    events: tuple[int, datetime] | None,
    outbox_position: str | None,
) -> Lag | None:
    if outbox_position is None:
        # never pushed: every billing customer waits for the first sync
        return Lag(row.created_at, ["the first sync"])
    candidates: list[tuple[datetime, str]] = []
    if events is not None:
        count, oldest = events
        candidates.append((oldest, f"{count} webhook event(s)"))
    count, oldest_change = repo.unpushed_changes(
        session, row.organisation_id, row.id, int(outbox_position)
    )
    if count and oldest_change is not None:
        candidates.append((oldest_change, f"{count} billing change(s) to push"))
    if not candidates:
        return None
    return Lag(min(moment for moment, _ in candidates), [what for _, what in candidates])


def status_text(status: str, counters: dict[str, int]) -> str:
    """The status as an operator reads it: a run that left records in the dead letter is
    not a plain success (``succeeded with 3 failures``)."""
    failed = int(counters.get("failed", 0) or 0)
    if failed and status in ("succeeded", "paused", "interrupted"):
        return f"{status} with {failed} failure{'s' if failed != 1 else ''}"
    return status


def describe_run(run: SyncRun, connection: str | None = None) -> dict[str, Any]:
    """A run as ``crmsync runs --json`` and the HTTP API show it (``connection``: its name)."""
    counters = dict(run.counters or {})
    return {
        "id": run.id,
        "connection_id": run.connection_id,
        "connection": connection,
        "trigger": run.trigger,
        "status": run.status,
        "status_text": status_text(run.status, counters),
        "failures": int(counters.get("failed", 0) or 0),
        "crm_records_created": int(counters.get("crm_created", 0) or 0),
        "full": run.full,
        "counters": counters,
        "api_calls": run.api_calls,
        "started_at": _when(run.started_at),
        "finished_at": _when(run.finished_at),
        "duration_seconds": run.duration_seconds,
        "error": run.error,
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
