"""Resolving conflicts: keep billing, keep the CRM, or set a value.

The chosen value is written on whichever side lacks it (billing through the customer
model's rules, the CRM through the connector), the link's base becomes that value, the
conflict is closed, and an audit row records who resolved what and when. If the CRM refuses
the value, nothing changes and the conflict stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine

from connectors.base import Connector, CustomerPush, RateGate
from sync.billing import apply_fields
from sync.connections import open_connector
from sync.customer import FieldValue, flatten
from sync.customers import to_public
from sync.match import MatchMode, canonical
from sync.settings import Settings
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import LinkRow, utcnow

Keep = Literal["billing", "crm"]


class ConflictError(Exception):
    """A conflict that cannot be resolved as asked, with the reason."""


@dataclass(frozen=True)
class Resolution:
    conflict_id: str
    field: str
    value: FieldValue
    billing_written: bool
    crm_written: bool


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
    """Resolve one open conflict; exactly one of ``keep`` or ``set_value`` is given."""
    if (keep is None) == (not set_value):
        raise ConflictError("choose one: keep billing, keep crm, or set a value")
    with transaction(engine) as session:
        conflict = repo.get_conflict(session, organisation_id, conflict_id)
        if conflict is None:
            raise LookupError(f"no conflict {conflict_id}")
        if conflict.status != "open":
            raise ConflictError(f"conflict {conflict_id} is already {conflict.status}")
        connection = repo.get_connection(session, conflict.connection_id)
        link = session.get(LinkRow, conflict.link_id) if conflict.link_id else None
        if connection is None or link is None:
            raise ConflictError("the conflict's connection or link no longer exists")
        if conflict.kind == "merge":
            return _acknowledge_merge(session, conflict, keep, actor)
        customer = repository.get_customer(session, organisation_id, conflict.customer_id)
        if customer is None:
            raise ConflictError("the conflict's customer no longer exists")
        if connector is None:
            connector = open_connector(settings, connection, gate=gate)
        name = conflict.field
        mode: MatchMode = "normalized" if connection.match_mode == "normalized" else "exact"
        public = to_public(customer)
        billing_value = flatten(public).get(name)
        crm_records = connector.pull_customers_by_ids([link.crm_id])
        crm_value = crm_records[0].fields.get(name) if crm_records else conflict.crm_value
        chosen: FieldValue
        if keep == "billing":
            chosen = billing_value
        elif keep == "crm":
            chosen = crm_value
        else:
            chosen = value
        billing_written = crm_written = False
        if canonical(chosen, mode, name) != canonical(billing_value, mode, name):
            columns = apply_fields(public, {name: chosen})
            email = columns.get("email")
            if name == "email" and email:
                holder = repository.find_customers_by_emails(session, organisation_id, [email])
                if email in holder and holder[email].id != customer.id:
                    raise ConflictError(
                        f"email {email!r} belongs to customer {holder[email].id}: change that "
                        "customer's e-mail first, or keep this customer's"
                    )
            changed = {k: v for k, v in columns.items() if public.get(k) != v}
            repository.update_customers(session, organisation_id, [{"id": customer.id, **changed}])
            repository.add_outbox_entries(
                session,
                organisation_id,
                [(customer.id, [name])],
                origin_connection_id=connection.id,
            )
            billing_written = True
        if canonical(chosen, mode, name) != canonical(crm_value, mode, name):
            results = connector.push_customers(
                [CustomerPush(billing_id=customer.id, crm_id=link.crm_id, fields={name: chosen})]
            )
            error = results[0].error if results else None
            if error is not None or not results:
                message = error.message if error else "no result"
                raise ConflictError(f"the CRM refused {name}={chosen!r}: {message}")
            crm_written = True
        link.base = {**link.base, name: chosen}
        link.updated_at = utcnow()
        conflict.status = "resolved"
        conflict.resolution = keep or "value"
        conflict.resolved_value = chosen
        conflict.resolved_by = actor
        conflict.resolved_at = utcnow()
        repo.add_audit(
            session,
            organisation_id,
            actor,
            "conflict_resolved",
            customer.id,
            {
                "conflict_id": conflict.id,
                "field": name,
                "resolution": conflict.resolution,
                "value": chosen,
                "billing_value": billing_value,
                "crm_value": crm_value,
            },
        )
        return Resolution(conflict.id, name, chosen, billing_written, crm_written)


def _acknowledge_merge(session: Any, conflict: Any, keep: Keep | None, actor: str) -> Resolution:
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
