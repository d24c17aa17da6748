"""Resolving conflicts: keep billing, keep the CRM, or set a value.

The chosen value is written on whichever side lacks it (billing through the customer
model's rules, the CRM through the connector), the link's base becomes that value, the
conflict is closed, and an audit row records who resolved what and when. If the CRM refuses
the value, nothing changes and the conflict stays open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connectors.base import Connector, CustomerPush, RateGate
from sync.billing import validated
from sync.connections import open_connector
from sync.contact_conflicts import resolve_contact_conflict
from sync.customer import FieldValue
from sync.decision import BillingCustomer
from sync.errors import ConflictError as ConflictError
from sync.errors import ConflictNotOpen, InvalidInput, NotFound
from sync.explain import ConflictFacts, explain_conflict
from sync.match import MatchMode, canonical
from sync.settings import Settings
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.convert import billing_customer, changed_columns
from sync.store.db import transaction
from sync.store.models import Conflict, ConnectionRow, LinkRow, utcnow

Keep = Literal["billing", "crm"]


@dataclass(frozen=True)
class Resolution:
    conflict_id: str
    field: str
    value: FieldValue
    billing_written: bool
    crm_written: bool


@dataclass(frozen=True)
class _Open:
    """An open field conflict as read, with what resolving it needs."""

    id: str
    field: str
    crm_value: FieldValue
    connection: ConnectionRow
    crm_id: str
    customer: BillingCustomer

    @property
    def mode(self) -> MatchMode:
        return "normalized" if self.connection.match_mode == "normalized" else "exact"

    def differs(self, a: FieldValue, b: FieldValue) -> bool:
        return canonical(a, self.mode, self.field) != canonical(b, self.mode, self.field)


def resolve_conflict(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    conflict_id: str,
    *,
    keep: Keep | None = None,
    value: FieldValue = None,
    set_value: bool = False,
    actor: str,
    gate: RateGate | None = None,
    connector: Connector | None = None,
) -> Resolution:
    """Resolve one open conflict; exactly one of ``keep`` or ``set_value`` is given.

    Three steps, and no transaction stays open across a CRM call: read the conflict (one
    short transaction); ask the CRM for its value, check the chosen value on the billing
    side and push it to the CRM if it lacks it (no transaction); then write billing, the
    base, the conflict and the audit row (another short transaction, which checks that
    neither the conflict nor the customer changed meanwhile)."""
    if (keep is None) == (not set_value):
        raise InvalidInput("choose one: keep billing, keep crm, or set a value")
    with transaction(engine) as session:
        row = repo.get_conflict(session, organisation_id, conflict_id)
    if row is not None and row.kind == "contact" and row.status == "open":
        done = resolve_contact_conflict(
            engine,
            settings,
            row,
            keep=keep,
            value=value,
            actor=actor,
            gate=gate,
            connector=connector,
        )
        return Resolution(row.id, done.field, done.value, done.billing_written, done.crm_written)
    with transaction(engine) as session:
        found = _read(session, organisation_id, conflict_id)
        if isinstance(found, Conflict):
            return _acknowledge_merge(session, found, keep, actor)
    connector = connector or open_connector(settings, found.connection, gate=gate)
    records = connector.pull_customers_by_ids([found.crm_id])
    crm_value = records[0].fields.get(found.field) if records else found.crm_value
    billing_value = found.customer.fields.get(found.field)
    chosen = billing_value if keep == "billing" else crm_value if keep == "crm" else value
    changes = _billing_changes(engine, organisation_id, found, chosen)
    crm_written = found.differs(chosen, crm_value)
    if crm_written:
        _push(connector, found, chosen)
    with transaction(engine) as session:
        _write(session, organisation_id, found, changes, chosen, keep, actor)
        audit = {"value": chosen, "billing_value": billing_value, "crm_value": crm_value}
        _audit(session, organisation_id, actor, found, keep, audit)
    return Resolution(found.id, found.field, chosen, changes is not None, crm_written)


def _audit(
    session: Session,
    organisation_id: str,
    actor: str,
    found: _Open,
    keep: Keep | None,
    values: dict[str, FieldValue],
) -> None:
    details = {"conflict_id": found.id, "field": found.field, "resolution": keep or "value"}
    repo.add_audit(
        session, organisation_id, actor, "conflict_resolved", found.customer.id, details | values
    )


def _read(session: Session, organisation_id: str, conflict_id: str) -> _Open | Conflict:
    """The open conflict (a merge conflict as its row), or why it cannot be resolved."""
    conflict = repo.get_conflict(session, organisation_id, conflict_id)
    if conflict is None:
        raise NotFound(f"no conflict {conflict_id}")
    if conflict.status != "open":
        raise ConflictNotOpen(f"conflict {conflict_id} is already {conflict.status}")
    connection = repo.get_connection(session, conflict.connection_id)
    link = session.get(LinkRow, conflict.link_id) if conflict.link_id else None
    if connection is None or link is None:
        raise ConflictError("the conflict's connection or link no longer exists")
    if conflict.kind == "merge":
        return conflict
    customer = repository.get_customer(session, organisation_id, conflict.customer_id)
    if customer is None:
        raise ConflictError("the conflict's customer no longer exists")
    return _Open(
        conflict.id,
        conflict.field,
        conflict.crm_value,
        connection,
        link.crm_id,
        billing_customer(customer),
    )


def _billing_changes(
    engine: Engine, organisation_id: str, found: _Open, chosen: FieldValue
) -> dict[str, FieldValue] | None:
    """The billing change the chosen value makes (None when billing has it already),
    checked by the customer model and, for an e-mail, against its owner."""
    if not found.differs(chosen, found.customer.fields.get(found.field)):
        return None
    changes = validated(found.customer.fields, {found.field: chosen})
    email = changes.get("email")
    if found.field == "email" and isinstance(email, str) and email:
        with transaction(engine) as session:
            holder = repository.find_customers_by_emails(session, organisation_id, [email])
        if email in holder and holder[email].id != found.customer.id:
            raise ConflictError(
                f"email {email!r} belongs to customer {holder[email].id}: change that "
                "customer's e-mail first, or keep this customer's"
            )
    return changes


def _push(connector: Connector, found: _Open, chosen: FieldValue) -> None:
    push = CustomerPush(found.customer.id, found.crm_id, {found.field: chosen})
    results = connector.push_customers([push])
    error = results[0].error if results else None
    if error is not None or not results:
        message = error.message if error else "no result"
        raise ConflictError(f"the CRM refused {found.field}={chosen!r}: {message}")


def _write(
    session: Session,
    organisation_id: str,
    found: _Open,
    changes: dict[str, FieldValue] | None,
    chosen: FieldValue,
    keep: Keep | None,
    actor: str,
) -> None:
    """Billing's new value, the link's base and the conflict's resolution, together; the
    conflict must still be open and the customer as it was read."""
    conflict = session.get(Conflict, found.id, with_for_update=True)
    if conflict is None or conflict.status != "open":
        raise ConflictNotOpen(f"conflict {found.id} was resolved meanwhile")
    if changes is not None:
        current = repository.get_customer(session, organisation_id, found.customer.id)
        if current is None or billing_customer(current).fields != found.customer.fields:
            raise ConflictError("the customer changed meanwhile: resolve the conflict again")
        columns = changed_columns(found.customer, changes)
        repository.update_customers(
            session, organisation_id, [{"id": found.customer.id, **columns}]
        )
        repository.add_outbox_entries(
            session,
            organisation_id,
            [(found.customer.id, [found.field])],
            origin_connection_id=found.connection.id,
        )
    link = session.get(LinkRow, conflict.link_id) if conflict.link_id else None
    if link is not None:
        link.base = {**link.base, found.field: chosen}
        link.updated_at = utcnow()
    conflict.status = "resolved"
    conflict.resolution = keep or "value"
    conflict.resolved_value = chosen
    conflict.resolved_by = actor
    conflict.resolved_at = utcnow()


def _acknowledge_merge(
    session: Session, conflict: Conflict, keep: Keep | None, actor: str
) -> Resolution:
    """A CRM merge of records linked to two customers: the operator acknowledges it (and
    merges the billing customers themselves if they should be one); sync never does."""
    conflict.status = "resolved"
    conflict.resolution = keep or "value"
    conflict.resolved_by = actor
    conflict.resolved_at = utcnow()
    repo.add_audit(
        session,
        conflict.organisation_id,
        actor,
        "merge_conflict_acknowledged",
        conflict.customer_id,
        {"conflict_id": conflict.id, "crm_id": conflict.crm_id},
    )
    return Resolution(conflict.id, conflict.field, None, False, False)


def describe_conflict(conflict: Any) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "connection_id": conflict.connection_id,
        "customer_id": conflict.customer_id,
        "crm_id": conflict.crm_id,
        "kind": conflict.kind,
        "field": conflict.field,
        "base": conflict.base_value,
        "billing": conflict.billing_value,
        "crm": conflict.crm_value,
        "status": conflict.status,
        "resolution": conflict.resolution,
        "resolved_value": conflict.resolved_value,
        "resolved_by": conflict.resolved_by,
        "resolved_at": conflict.resolved_at.isoformat() if conflict.resolved_at else None,
        "created_at": conflict.created_at.isoformat() if conflict.created_at else None,
    }


def explain_conflicts(
    session: Session, organisation_id: str, conflicts: Sequence[Conflict]
) -> dict[str, list[str]]:
    """Why each conflict is one, by conflict id (:func:`sync.explain.explain_conflict`
    under its connection's match rule; for an e-mail, the customer that has the CRM's
    e-mail already). What the console's queue and the HTTP API show."""
    modes = {c.id: c.match_mode for c in repo.list_connections(session, organisation_id)}
    emails = [str(c.crm_value) for c in conflicts if c.field == "email" and c.crm_value]
    owners = repository.find_customers_by_emails(session, organisation_id, emails) if emails else {}
    explained: dict[str, list[str]] = {}
    for conflict in conflicts:
        owner = owners.get(str(conflict.crm_value)) if conflict.field == "email" else None
        mode: MatchMode = (
            "normalized" if modes.get(conflict.connection_id) == "normalized" else "exact"
        )
        facts = ConflictFacts(
            kind=conflict.kind,
            field=conflict.field,
            base=conflict.base_value,
            billing=conflict.billing_value,
            crm=conflict.crm_value,
            mode=mode,
            email_owner=owner.id
            if owner is not None and owner.id != conflict.customer_id
            else None,
        )
        explained[conflict.id] = explain_conflict(facts)
    return explained
