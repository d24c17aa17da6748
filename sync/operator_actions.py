"""What an operator does to a connection or the dead letter, each in the audit trail with
their name: pause, resume, ask for a sync, retry failures, change a connection's options.

(Resolving a conflict audits itself: :func:`sync.conflicts.resolve_conflict` takes the
actor.) The callers own the transactions, except for :func:`retry`, which syncs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connectors.base import RateGate
from sync import connections, customers
from sync.engine import RunResult, sync_records
from sync.errors import ConnectionPaused, NotFound
from sync.failures import ConnectionRun, RetryOutcome, retry_failures
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


def retry(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    *,
    actor: str,
    failure_ids: Sequence[str] | None = None,
    run_id: str | None = None,
    connection_id: str | None = None,
    gate_for: Callable[[str], RateGate | None] | None = None,
    run_connection: ConnectionRun | None = None,
) -> RetryOutcome:
    """Retry chosen open failures (by id or by run), or every open one (of a connection):
    each retried failure is audited, then its records sync again, one run per connection.
    ``gate_for(connection_id)`` gives each connection's shared rate gate; a connection's
    own failure is retried by ``run_connection(connection_id)``, a run of its whole sync."""
    return retry_failures(
        engine,
        settings,
        organisation_id,
        failure_ids=failure_ids,
        run_id=run_id,
        connection_id=connection_id,
        gate_for=gate_for,
        actor=actor,
        run_connection=run_connection,
    )


def _resync_targets(
    session: Session, organisation_id: str, customer_id: str, connection_id: str | None
) -> dict[str, list[str]]:
    """The connections a resync of the customer touches, each with the CRM records to pull:
    those it is linked to (merged-away links aside), or, with no link yet, every active
    connection (to push it). ``connection_id`` narrows them to one."""
    crm_ids: dict[str, list[str]] = {}
    for link in repo.links_of_customer(session, organisation_id, customer_id):
        if link.state != "merged":
            crm_ids.setdefault(link.connection_id, []).append(link.crm_id)
    if not crm_ids:
        active = repo.list_connections(session, organisation_id)
        crm_ids = {c.id: [] for c in active if c.state == "active"}
    return {k: v for k, v in crm_ids.items() if connection_id is None or k == connection_id}


def resync_customer(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    customer_id: str,
    *,
    connection_id: str | None = None,
    gate_for: Callable[[str], RateGate | None] | None = None,
) -> dict[str, RunResult]:
    """Pull and push one customer now: one run per connection it touches (linked ones, or
    every active one when it has no link yet), each with its connection's rate gate; the
    runs by connection id. Raises :class:`CustomerNotFound`."""
    with transaction(engine) as session:
        wanted = str(customers.get_customer(session, organisation_id, customer_id).id)
        targets = _resync_targets(session, organisation_id, wanted, connection_id)
    return {
        target: sync_records(
            engine,
            settings,
            target,
            crm_ids=crm_ids,
            customer_ids=[wanted],
            trigger="operator",
            gate=gate_for(target) if gate_for is not None else None,
        )
        for target, crm_ids in targets.items()
    }
