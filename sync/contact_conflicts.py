"""Resolving a ``contact`` conflict: one field of a secondary contact that both sides changed.

The chosen value (billing's, the CRM's as the conflict recorded it, or a new one checked by
the contact model) is pushed to the CRM contact when the CRM lacks it, then written on the
billing contact with its base, and the conflict is closed with an audit row, in one short
transaction. If the CRM refuses the value, nothing changes and the conflict stays open.
:func:`sync.conflicts.resolve_conflict` hands contact conflicts here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Engine

from connectors.base import Connector, ContactPush, ContactWriter, RateGate
from sync.connections import open_connector
from sync.contact_sync import communications_text
from sync.contacts import ContactPatch
from sync.errors import ConflictError, ConflictNotOpen
from sync.settings import Settings
from sync.store import contact_repository as contacts_repo
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import Conflict, ContactRow, utcnow


@dataclass(frozen=True)
class ContactResolution:
    field: str
    value: Any
    billing_written: bool
    crm_written: bool


def _value_of(row: ContactRow, name: str) -> Any:
    if name == "communications":
        return communications_text(row.communications)
    return getattr(row, name)


def _checked(name: str, value: Any) -> Any:
    """A value for the contact field, checked by the contact model (canonical form)."""
    if name == "communications":
        parts = [p for p in str(value or "").replace(";", ",").split(",") if p.strip()]
        value = [p.strip() for p in parts]
    try:
        patch = ContactPatch.model_validate({name: value})
    except ValidationError as error:
        raise ConflictError(
            f"{name}={value!r} is not a valid contact value: {error.errors()[0]['msg']}"
        ) from error
    checked = getattr(patch, name)
    return communications_text(checked) if name == "communications" else checked


def resolve_contact_conflict(
    engine: Engine,
    settings: Settings,
    conflict: Conflict,
    *,
    keep: Literal["billing", "crm"] | None,
    value: Any,
    actor: str,
    gate: RateGate | None = None,
    connector: Connector | None = None,
) -> ContactResolution:
    """Resolve an open ``contact`` conflict (see the module docstring)."""
    name = conflict.field.removeprefix("contact.")
    with transaction(engine) as session:
        crm_id = str(conflict.crm_id)
        linked = contacts_repo.contacts_by_crm_ids(session, conflict.connection_id, [crm_id])
        link = linked.get(crm_id)
        connection = repo.get_connection(session, conflict.connection_id)
        if link is None or connection is None:
            raise ConflictError("the conflict's contact or connection no longer exists")
        billing_value = _value_of(link.row, name)
        contact_id, version = link.row.id, link.row.version
    crm_value = conflict.crm_value
    chosen = billing_value if keep == "billing" else crm_value if keep == "crm" else value
    chosen = _checked(name, chosen)
    crm_written = chosen != crm_value
    if crm_written:
        connector = connector or open_connector(settings, connection, gate=gate)
        if not isinstance(connector, ContactWriter):
            raise ConflictError(f"the {connection.kind} connector cannot write contacts")
        push = ContactPush(contact_id, conflict.crm_id, "", {name: chosen})
        (result,) = connector.push_contacts([push])
        if result.error is not None:
            raise ConflictError(f"the CRM refused {name}={chosen!r}: {result.error.message}")
    with transaction(engine) as session:
        locked = session.get(Conflict, conflict.id, with_for_update=True)
        if locked is None or locked.status != "open":
            raise ConflictNotOpen(f"conflict {conflict.id} was resolved meanwhile")
        contact = session.get(ContactRow, contact_id)
        if contact is None or contact.version != version:
            raise ConflictError("the contact changed meanwhile: resolve it again")
        billing_written = chosen != billing_value
        link_version = link.version
        if billing_written:
            setattr(
                contact,
                name,
                [c for c in str(chosen).split(",") if c] if name == "communications" else chosen,
            )
            # a new version of the contact, which this CRM contact has (if it had the last
            # one) and the other connections linking the customer are to be pushed
            contact.version = version + 1
            if link.version == version:
                link_version = version + 1
            elsewhere = contacts_repo.linked_elsewhere(
                session, conflict.connection_id, [contact.customer_id]
            )
            if elsewhere:
                contact.pending = True
        contact.updated_at = utcnow()
        session.flush()
        contacts_repo.write_links(
            session,
            conflict.organisation_id,
            conflict.connection_id,
            [
                contacts_repo.LinkWrite(
                    contact_id,
                    crm_id,
                    {**(link.base or {}), name: chosen},
                    link_version,
                    link.home,
                )
            ],
        )
        locked.status = "resolved"
        locked.resolution = keep or "value"
        locked.resolved_value = chosen
        locked.resolved_by = actor
        locked.resolved_at = utcnow()
        repo.add_audit(
            session,
            conflict.organisation_id,
            actor,
            "conflict_resolved",
            conflict.customer_id,
            {
                "conflict_id": conflict.id,
                "field": conflict.field,
                "contact_id": contact_id,
                "resolution": keep or "value",
                "value": chosen,
                "billing_value": billing_value,
                "crm_value": crm_value,
            },
        )
    return ContactResolution(conflict.field, chosen, billing_written, crm_written)
