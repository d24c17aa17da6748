"""Billing-side customer operations: create, update, read, import.

Every create or update writes its outbox entry in the same transaction, so the change is
pushed to each connected CRM exactly when it is committed. Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from sync.customer import Customer, CustomerIn, CustomerPatch, flatten
from sync.errors import CustomerNotFound as CustomerNotFound
from sync.errors import CustomerRuleBroken as CustomerRuleBroken
from sync.errors import DuplicateCustomer as DuplicateCustomer
from sync.store import repository, sync_repository
from sync.store.convert import row_columns
from sync.store.models import CustomerRow, new_id, utcnow


def to_public(row: CustomerRow) -> dict[str, Any]:
    """A customer row as the public shape (JSON-ready dict)."""
    return {**row_columns(row), "id": row.id}


def to_model(row: CustomerRow) -> Customer:
    return Customer.model_validate(to_public(row))


def _columns(data: CustomerIn | CustomerPatch, *, only_set: bool) -> dict[str, Any]:
    dumped = data.model_dump(mode="json", exclude_unset=only_set, exclude={"contacts"})
    return {k: v for k, v in dumped.items() if k in repository.CUSTOMER_COLUMNS}


def _check_business_entity(session: Session, organisation_id: str, entity_id: str | None) -> None:
    if entity_id is None:
        return
    if not repository.business_entity_ids(session, organisation_id, [entity_id]):
        raise CustomerRuleBroken(
            "business_entity_id", f"{entity_id} is not a business entity of this organisation"
        )


def _check_unique(
    session: Session, organisation_id: str, columns: dict[str, Any], exclude_id: str | None = None
) -> None:
    external_id, email = columns.get("external_id"), columns.get("email")
    if external_id:
        found = repository.find_customers_by_external_ids(session, organisation_id, [external_id])
        if external_id in found and found[external_id].id != exclude_id:
            raise DuplicateCustomer("external_id", external_id)
    if email:
        found = repository.find_customers_by_emails(session, organisation_id, [email])
        if email in found and found[email].id != exclude_id:
            raise DuplicateCustomer("email", email)


def create_customer(session: Session, organisation_id: str, data: CustomerIn) -> Customer:
    """Create a customer and log it in the outbox."""
    columns = _columns(data, only_set=False)
    _check_business_entity(session, organisation_id, columns["business_entity_id"])
    _check_unique(session, organisation_id, columns)
    row = CustomerRow(id=new_id(), organisation_id=organisation_id, **columns)
    session.add(row)
    session.flush()
    repository.replace_contacts(
        session, organisation_id, row.id, [c.model_dump(mode="json") for c in data.contacts]
    )
    repository.add_outbox_entries(session, organisation_id, [(row.id, _set_fields(to_public(row)))])
    return to_model(row)


def update_customer(
    session: Session, organisation_id: str, customer_id: str, patch: CustomerPatch
) -> Customer:
    """Apply the fields given in ``patch``; log the changed fields in the outbox.

    ``business_entity_id`` may be set once; changing it afterwards is refused.
    """
    row = repository.get_customer(session, organisation_id, customer_id)
    if row is None:
        raise CustomerNotFound(customer_id)
    columns = _columns(patch, only_set=True)
    if "business_entity_id" in columns:
        new_entity = columns["business_entity_id"]
        if row.business_entity_id is not None and new_entity != row.business_entity_id:
            raise CustomerRuleBroken(
                "business_entity_id", "cannot be changed once set (it is fixed at creation)"
            )
        _check_business_entity(session, organisation_id, new_entity)
    _check_unique(session, organisation_id, columns, exclude_id=row.id)
    before = to_public(row)
    for column, value in columns.items():
        setattr(row, column, value)
    if patch.contacts is not None:
        repository.replace_contacts(
            session, organisation_id, row.id, [c.model_dump(mode="json") for c in patch.contacts]
        )
    changed = _changed_fields(before, to_public(row))
    if changed:
        row.updated_at = utcnow()
        repository.add_outbox_entries(session, organisation_id, [(row.id, changed)])
    session.flush()
    return to_model(row)


def get_customer(session: Session, organisation_id: str, customer_id: str) -> Customer:
    """The organisation's customer, or :class:`CustomerNotFound` (also for an id that is
    not a UUID, or another organisation's customer)."""
    try:
        wanted = str(uuid.UUID(customer_id))
    except ValueError:
        raise CustomerNotFound(customer_id) from None
    row = repository.get_customer(session, organisation_id, wanted)
    if row is None:
        raise CustomerNotFound(customer_id)
    return to_model(row)


def contacts_of(session: Session, organisation_id: str, customer_id: str) -> list[dict[str, Any]]:
    """A customer's secondary contacts (those synced from a CRM carry its contact id)."""
    return [
        {
            "name": c.name,
            "email": c.email,
            "communications": list(c.communications),
            "crm_id": c.crm_id,
        }
        for c in repository.list_contacts(session, organisation_id, customer_id)
    ]


def links_of(session: Session, organisation_id: str, customer_id: str) -> list[dict[str, Any]]:
    """The CRM records the customer is linked to, one per connection (its aliases)."""
    names = {c.id: c.name for c in sync_repository.list_connections(session, organisation_id)}
    return [
        {
            "connection": names.get(link.connection_id, link.connection_id),
            "crm_id": link.crm_id,
            "state": link.state,
        }
        for link in sync_repository.links_of_customer(session, organisation_id, customer_id)
    ]


def list_customers(
    session: Session,
    organisation_id: str,
    *,
    external_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Customer]:
    rows = repository.list_customers(
        session, organisation_id, external_id=external_id, limit=limit, offset=offset
    )
    return [to_model(row) for row in rows]


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    customer_ids: list[str] = field(default_factory=list)


def import_customers(
    session: Session, organisation_id: str, records: Sequence[CustomerIn]
) -> ImportSummary:
    """Create or update many customers keyed by ``external_id`` in bulk statements.

    Idempotent: importing the same records again changes nothing and logs nothing. A record
    without ``external_id`` is matched by ``email``, else created. ``business_entity_id`` of
    an existing customer is never changed (a different one is an error).
    """
    _check_business_entities(session, organisation_id, records)
    by_external = repository.find_customers_by_external_ids(
        session, organisation_id, [r.external_id for r in records if r.external_id]
    )
    by_email = repository.find_customers_by_emails(
        session, organisation_id, [r.email for r in records if r.email and not r.external_id]
    )
    summary, writes = ImportSummary(), _ImportWrites()
    for record in records:
        columns = _columns(record, only_set=False)
        keyed = bool(record.external_id)
        existing = (
            by_external.get(record.external_id or "") if keyed else by_email.get(record.email or "")
        )
        if existing is None:
            summary.customer_ids.append(writes.create(columns, keyed=keyed))
            summary.created += 1
            continue
        summary.customer_ids.append(existing.id)
        if writes.update(existing, columns, keyed=keyed):
            summary.updated += 1
        else:
            summary.unchanged += 1
    writes.flush(session, organisation_id)
    return summary


def _check_business_entities(
    session: Session, organisation_id: str, records: Sequence[CustomerIn]
) -> None:
    entity_ids = {str(r.business_entity_id) for r in records if r.business_entity_id}
    unknown = entity_ids - repository.business_entity_ids(session, organisation_id, entity_ids)
    if unknown:
        raise CustomerRuleBroken(
            "business_entity_id", f"not business entities of this organisation: {sorted(unknown)}"
        )


@dataclass
class _ImportWrites:
    """An import's bulk statements: upserts keyed by ``external_id``, inserts and updates
    of customers matched by e-mail (or neither), and the outbox entries of what changed."""

    upserts: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    changes: list[tuple[str, list[str]]] = field(default_factory=list)

    def create(self, columns: dict[str, Any], *, keyed: bool) -> str:
        row = {"id": new_id(), **columns}
        (self.upserts if keyed else self.inserts).append(row)
        self.changes.append((row["id"], _set_fields(row)))
        return str(row["id"])

    def update(self, existing: CustomerRow, columns: dict[str, Any], *, keyed: bool) -> bool:
        """Whether the record changes the customer (then its write is queued)."""
        entity = columns["business_entity_id"]
        if existing.business_entity_id and entity not in (None, existing.business_entity_id):
            raise CustomerRuleBroken(
                "business_entity_id",
                f"customer {existing.external_id or existing.email}: cannot be changed once set",
            )
        columns = {**columns, "business_entity_id": existing.business_entity_id or entity}
        before = to_public(existing)
        if all(before[k] == v for k, v in columns.items()):
            return False
        self.changes.append((existing.id, _changed_fields(before, {**before, **columns})))
        if keyed:
            self.upserts.append({"id": existing.id, **columns})
        else:  # business_entity_id is set only at creation
            kept = {k: v for k, v in columns.items() if k != "business_entity_id"}
            self.updates.append({"id": existing.id, **kept})
        return True

    def flush(self, session: Session, organisation_id: str) -> None:
        repository.update_customers(session, organisation_id, self.updates)
        repository.upsert_customers(session, organisation_id, self.upserts)
        repository.insert_customers(session, organisation_id, self.inserts)
        repository.add_outbox_entries(session, organisation_id, self.changes)


def _set_fields(public: dict[str, Any]) -> list[str]:
    """The flat fields a new customer sets (for its outbox entry)."""
    return [k for k, v in flatten(public).items() if v not in (None, "")]


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The flat fields that differ between two public shapes of a customer."""
    flat_before, flat_after = flatten(before), flatten(after)
    keys = flat_before.keys() | flat_after.keys()
    return sorted(k for k in keys if flat_before.get(k) != flat_after.get(k))
