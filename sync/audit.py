"""The organisation's audit trail as a whole: who did what, to which record, and when.

Every face reads it through :func:`audit_page` (the console's ``/console/audit``, ``GET
/audit``, ``crmsync audit list``), so that they agree on what an event says: who did it in
people's words (an operator's name and e-mail, an API key's prefix, a CLI user, a sync),
what was done, and the records it was done to (each with its kind, for a link). A page is
at most :data:`MAX_PAGE` events, always scoped to one organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from sync.store import review_repository
from sync.store import sync_repository as repo
from sync.store.models import AuditEvent

#: the most events one page holds, whatever a caller asks for
MAX_PAGE = 200

#: what each recorded action is, in people's words
ACTIONS: dict[str, str] = {
    "conflict_resolved": "resolved a conflict",
    "merge_conflict_acknowledged": "acknowledged a CRM merge",
    "connection_added": "added a connection",
    "connection_changed": "changed a connection's options",
    "connection_paused": "paused a connection",
    "connection_resumed": "resumed a connection",
    "sync_requested": "started a sync",
    "failure_retried": "retried a failure",
    "operator_added": "added an operator",
    "operator_link_issued": "issued a password link",
    "operator_password_set": "set their password",
    "operator_role_changed": "changed an operator's role",
    "operator_removed": "removed an operator",
    "crm_deleted": "the CRM deleted the record",
    "crm_merged": "the CRM merged the record",
    "crm_restored": "the CRM restored the record",
}

#: the detail keys that name a record shown as a target (not repeated as detail)
_TARGET_KEYS = ("conflict_id", "failure_id", "connection_id")
_CONNECTION_ACTIONS = ("connection_", "sync_requested")


@dataclass(frozen=True)
class AuditFilter:
    """Which events: by whom (the actor as recorded), which action, about which
    connection or customer, from ``since`` (included) until ``until`` (excluded)."""

    actor: str | None = None
    action: str | None = None
    connection_id: str | None = None
    customer_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Target:
    """A record an event was done to: ``customer``, ``conflict``, ``connection``,
    ``failure`` or ``operator``, its id and how to name it."""

    kind: str
    id: str
    label: str


@dataclass(frozen=True)
class Event:
    """One audit event, described."""

    id: int
    at: datetime
    actor: str
    who: str
    action: str
    what: str
    subject: str
    targets: list[Target]
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "who": self.who,
            "action": self.action,
            "what": self.what,
            "subject": self.subject,
            "targets": [{"kind": t.kind, "id": t.id, "label": t.label} for t in self.targets],
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditPage:
    """A page of events, newest first, and whether an older page follows."""

    events: list[Event]
    offset: int
    limit: int
    more: bool = False


def audit_page(
    session: Session,
    organisation_id: str,
    filters: AuditFilter = AuditFilter(),
    *,
    limit: int = 50,
    offset: int = 0,
) -> AuditPage:
    """A page of the organisation's audit trail, newest first. ``limit`` is bounded by
    :data:`MAX_PAGE`; one more row is read to tell whether another page follows."""
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    rows = list(
        review_repository.audit_events(
            session,
            organisation_id,
            actor=filters.actor,
            action=filters.action,
            connection_id=filters.connection_id,
            customer_id=filters.customer_id,
            since=_utc(filters.since),
            until=_utc(filters.until),
            limit=limit + 1,
            offset=offset,
        )
    )
    more, rows = len(rows) > limit, rows[:limit]
    connections = {c.id: c.name for c in repo.list_connections(session, organisation_id)}
    customers = review_repository.customer_names(
        session, organisation_id, [r.subject for r in rows]
    )
    named = [r.detail.get("conflict_id") for r in rows if r.detail]
    conflicts = review_repository.conflict_connections(
        session, organisation_id, [c for c in named if isinstance(c, str)]
    )
    events = [describe(r, connections, customers, conflicts) for r in rows]
    return AuditPage(events, offset, limit, more)


def _utc(moment: datetime | None) -> datetime | None:
    """A moment given without a time zone is taken as UTC (as the store writes them)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def actors(session: Session, organisation_id: str) -> list[tuple[str, str]]:
    """Who appears in the organisation's trail: (the actor as recorded, in people's words)."""
    connections = {c.id: c.name for c in repo.list_connections(session, organisation_id)}
    return [
        (a, who(a, connections)) for a in review_repository.audit_actors(session, organisation_id)
    ]


def actions(session: Session, organisation_id: str) -> list[tuple[str, str]]:
    """Every action kind (those recorded so far included): (kind, in people's words)."""
    recorded = review_repository.audit_actions(session, organisation_id)
    kinds = sorted(set(ACTIONS) | set(recorded))
    return [(k, what(k)) for k in kinds]


def who(actor: str, connections: dict[str, str] | None = None) -> str:
    """The actor as people say it: ``Ada Admin <ada@…>``, ``API key crm_AbCd``, ``CLI
    (alice)``, ``sync of acme-hubspot``; anything else as recorded (``system`` if empty)."""
    kind, _, name = actor.partition(":")
    if not name:
        return actor or "system"
    if kind == "console":
        return name
    if kind == "api":
        return "API key " + name.removeprefix("key ").rstrip("…").strip()
    if kind == "cli":
        return f"CLI ({name})"
    if kind == "sync":
        return f"sync of {(connections or {}).get(name, name)}"
    return actor


def what(action: str) -> str:
    return ACTIONS.get(action, action.replace("_", " "))


def describe(
    row: AuditEvent,
    connections: dict[str, str],
    customers: dict[str, str],
    conflicts: dict[str, str] | None = None,
) -> Event:
    """One row in people's words, with the records it was done to (``conflicts``: the
    connection of each conflict the page names)."""
    detail = dict(row.detail or {})
    return Event(
        id=row.id,
        at=row.at,
        actor=row.actor,
        who=who(row.actor, connections),
        action=row.action,
        what=what(row.action),
        subject=row.subject,
        targets=_targets(row, detail, connections, customers, conflicts or {}),
        detail={k: v for k, v in detail.items() if k not in _TARGET_KEYS},
    )


def _targets(
    row: AuditEvent,
    detail: dict[str, Any],
    connections: dict[str, str],
    customers: dict[str, str],
    conflicts: dict[str, str],
) -> list[Target]:
    found: list[Target] = []
    if row.subject in customers:
        found.append(Target("customer", row.subject, customers[row.subject] or row.subject))
    if isinstance(detail.get("conflict_id"), str):
        label = str(detail.get("field") or "conflict")
        found.append(Target("conflict", detail["conflict_id"], label))
    if isinstance(detail.get("failure_id"), str):
        found.append(Target("failure", detail["failure_id"], "failure"))
    connection_id = detail.get("connection_id")
    if not isinstance(connection_id, str) and row.action.startswith(_CONNECTION_ACTIONS):
        connection_id = row.subject
    if not isinstance(connection_id, str) and row.actor.startswith("sync:"):
        connection_id = row.actor.removeprefix("sync:")  # what its sync found the CRM did
    if not isinstance(connection_id, str):
        connection_id = conflicts.get(str(detail.get("conflict_id")))
    if isinstance(connection_id, str):
        name = connections.get(connection_id) or str(detail.get("name") or connection_id)
        found.append(Target("connection", connection_id, name))
    if row.action.startswith("operator_"):
        # setting one's own password records no e-mail: the operator is the actor
        named = detail.get("email") or (
            who(row.actor) if row.action == "operator_password_set" else row.subject
        )
        found.append(Target("operator", row.subject, str(named)))
    if not found and row.subject:
        found.append(Target("record", row.subject, row.subject))
    return found
