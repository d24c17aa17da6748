"""What an operator does to a connection or the dead letter, each in the audit trail with
their name: pause, resume, ask for a sync, retry failures, change a connection's options.

(Resolving a conflict audits itself: :func:`sync.conflicts.resolve_conflict` takes the
actor.) The callers own the transactions, except for :func:`retry`, which syncs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connectors.base import RateGate
from sync import connections
from sync.errors import ConnectionPaused, NotFound
from sync.failures import RetryOutcome, retry_failures
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import ConnectionRow


def require_connection(session: Session, organisation_id: str, connection_id: str) -> ConnectionRow:
    """The organisation's connection, or :class:`NotFound` (another organisation's included)."""
    row = repo.get_connection(session, connection_id)
    if row is None or row.organisation_id != organisation_id:
        raise NotFound(f"no connection {connection_id} in this organisation")
    return row


def set_state(
    session: Session, organisation_id: str, connection_id: str, state: str, *, actor: str
) -> ConnectionRow:
    """Pause (``paused``) or resume (``active``) a connection."""
    row = require_connection(session, organisation_id, connection_id)
    before = row.state
    connections.set_state(row, state)
    action = "connection_paused" if state == "paused" else "connection_resumed"
    repo.add_audit(
        session, organisation_id, actor, action, row.id, {"name": row.name, "from": before}
    )
    return row


def note_sync_requested(
    session: Session, organisation_id: str, connection_id: str, *, actor: str, full: bool = False
) -> ConnectionRow:
    """Check that a sync may be asked for now, and audit the request (the caller enqueues
    it once this transaction commits)."""
    row = require_connection(session, organisation_id, connection_id)
    if row.state != "active":
        raise ConnectionPaused(f"connection {row.name} is {row.state}: resume it first")
    repo.add_audit(
        session, organisation_id, actor, "sync_requested", row.id, {"name": row.name, "full": full}
    )
    return row


def change_connection(
    session: Session,
    settings: Settings,
    organisation_id: str,
    connection_id: str,
    changes: Mapping[str, Any],
    *,
    actor: str,
    check: bool = True,
) -> ConnectionRow:
    """Change a connection's options (as ``crmsync connections set``), audited by option
    name; credential values never reach the trail."""
    row = require_connection(session, organisation_id, connection_id)
    connections.update_connection(session, settings, row, changes, check=check)
    shown = {k: v for k, v in changes.items() if k != "credentials"}
    if "credentials" in changes:
        shown["credentials"] = sorted(changes["credentials"])
    repo.add_audit(session, organisation_id, actor, "connection_changed", row.id, shown)
    return row


def add_connection(
    session: Session,
    settings: Settings,
    organisation_id: str,
    spec: connections.ConnectionSpec,
    *,
    actor: str,
    check: bool = True,
) -> ConnectionRow:
    """Add a connection (as ``crmsync connections add``: checked with the CRM first unless
    ``check`` is off), audited with the names of its credentials, never their values."""
    row = connections.add_connection(session, settings, organisation_id, spec, check=check)
    repo.add_audit(
        session,
        organisation_id,
        actor,
        "connection_added",
        row.id,
        {
            "name": row.name,
            "kind": row.kind,
            "settings": sorted(spec.settings),
            "credentials": sorted(spec.credentials),
            "checked": check,
        },
    )
    return row


@dataclass
class RetryReport:
    retried: int = 0
    recovered: int = 0
    still_failing: int = 0
    failed_runs: list[str] = field(default_factory=list)


def retry(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    *,
    actor: str,
    failure_ids: Sequence[str] | None = None,
    connection_id: str | None = None,
    gate_for: Callable[[str], RateGate | None] | None = None,
) -> RetryReport:
    """Retry chosen open failures (by id), or every open one (of a connection): each
    retried failure is audited, then its records sync again, one run per connection.
    ``gate_for(connection_id)`` gives each connection's shared rate gate."""
    with transaction(engine) as session:
        targets = repo.open_failures(
            session, organisation_id, connection_id=connection_id, failure_ids=failure_ids
        )
        if failure_ids is not None and len(targets) != len(set(failure_ids)):
            missing = sorted(set(failure_ids) - {f.id for f in targets})
            raise NotFound(f"no open failure(s) {', '.join(missing)}")
        by_connection: dict[str, list[str]] = {}
        for failure in targets:
            by_connection.setdefault(failure.connection_id, []).append(failure.id)
            repo.add_audit(
                session,
                organisation_id,
                actor,
                "failure_retried",
                failure.customer_id or failure.crm_id or failure.id,
                {
                    "failure_id": failure.id,
                    "connection_id": failure.connection_id,
                    "direction": failure.direction,
                    "crm_id": failure.crm_id,
                    "error": f"{failure.error_kind} {failure.error_code}".strip(),
                },
            )
    report = RetryReport()
    for conn_id, ids in by_connection.items():
        gate: RateGate | None = gate_for(conn_id) if gate_for is not None else None
        outcome: RetryOutcome = retry_failures(
            engine, settings, organisation_id, failure_ids=ids, connection_id=conn_id, gate=gate
        )
        report.retried += outcome.retried
        report.recovered += outcome.recovered
        report.still_failing += outcome.still_failing
        report.failed_runs += [
            f"{r.run_id}: {r.error}" for r in outcome.runs if r.status != "succeeded"
        ]
    return report
