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
from sqlalchemy.orm import Session

from connectors.base import Connector, ContactPush, ContactWriter, RateGate
from sync.connections import open_connector
from sync.contact_sync import communications_text
from sync.contacts import ContactPatch
from sync.errors import ConflictError, ConflictNotOpen
from sync.settings import Settings
from sync.store import contact_repository as contacts_repo
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import Conflict, ConnectionRow, ContactRow, utcnow


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
    """Resolve an open ``contact`` conflict (see the module docstring): read the contact
    (one short transaction), push the chosen value if the CRM lacks it (none open), then
    write it, close the conflict and audit it (another short transaction)."""
    name = conflict.field.removeprefix("contact.")
    side = _read(engine, conflict, name)
    crm_value = conflict.crm_value
    chosen = side.billing_value if keep == "billing" else crm_value if keep == "crm" else value
    chosen = _checked(name, chosen)
    crm_written = chosen != crm_value
    if crm_written:
        connector = connector or open_connector(settings, side.connection, gate=gate)
        _push(connector, side, conflict, name, chosen)
    with transaction(engine) as session:
        locked = session.get(Conflict, conflict.id, with_for_update=True)
        if locked is None or locked.status != "open":
            raise ConflictNotOpen(f"conflict {conflict.id} was resolved meanwhile")
        billing_written = _write_billing(session, conflict, side, name, chosen)
        _close(locked, keep, chosen, actor)
        repo.add_audit(
            session,
            conflict.organisation_id,
            actor,
            "conflict_resolved",
            conflict.customer_id,
            {
                "conflict_id": conflict.id,
                "field": conflict.field,
                "contact_id": side.contact_id,
                "resolution": keep or "value",
                "value": chosen,
                "billing_value": side.billing_value,
                "crm_value": crm_value,
            },
        )
    return ContactResolution(conflict.field, chosen, billing_written, crm_written)


@dataclass(frozen=True)
class _Contact:
    """The conflict's billing contact as it was read: its id and version, the field's
    billing value, its link to the CRM contact ``crm_id`` and the connection."""

    contact_id: str
    version: int
    billing_value: Any
    crm_id: str
    link: contacts_repo.LinkedContact
    connection: ConnectionRow


def _read(engine: Engine, conflict: Conflict, name: str) -> _Contact:
    with transaction(engine) as session:
        crm_id = str(conflict.crm_id)
        linked = contacts_repo.contacts_by_crm_ids(session, conflict.connection_id, [crm_id])
        link = linked.get(crm_id)
        connection = repo.get_connection(session, conflict.connection_id)
        if link is None or connection is None:
            raise ConflictError("the conflict's contact or connection no longer exists")
        return _Contact(
            link.row.id, link.row.version, _value_of(link.row, name), crm_id, link, connection
        )


def _push(connector: Connector, side: _Contact, conflict: Conflict, name: str, chosen: Any) -> None:
    """The chosen value to the CRM contact; a refusal leaves everything as it was."""
    if not isinstance(connector, ContactWriter):
        raise ConflictError(f"the {side.connection.kind} connector cannot write contacts")
    push = ContactPush(side.contact_id, conflict.crm_id, "", {name: chosen})
    (result,) = connector.push_contacts([push])
    if result.error is not None:
        raise ConflictError(f"the CRM refused {name}={chosen!r}: {result.error.message}")


def _write_billing(
    session: Session, conflict: Conflict, side: _Contact, name: str, chosen: Any
) -> bool:
    """The chosen value on the billing contact (unless it has it) and in its link's base;
    whether billing was written. Refused if the contact changed since it was read."""
    contact = session.get(ContactRow, side.contact_id)
    if contact is None or contact.version != side.version:
        raise ConflictError("the contact changed meanwhile: resolve it again")
    billing_written = bool(chosen != side.billing_value)
    link = side.link
    link_version = link.version
    if billing_written:
        _take_value(session, conflict, contact, name, chosen)
        # the new version of the contact, which this CRM contact has if it had the last one
        if link.version == side.version:
            link_version = side.version + 1
    contact.updated_at = utcnow()
    session.flush()
    base = {**(link.base or {}), name: chosen}
    contacts_repo.write_links(
        session,
        conflict.organisation_id,
        conflict.connection_id,
        [contacts_repo.LinkWrite(side.contact_id, side.crm_id, base, link_version, link.home)],
    )
    return billing_written


def _take_value(
    session: Session, conflict: Conflict, contact: ContactRow, name: str, chosen: Any
) -> None:
    """The billing contact takes the value: a new version, which the other connections
    linking the customer are to be pushed."""
    stored = [c for c in str(chosen).split(",") if c] if name == "communications" else chosen
    setattr(contact, name, stored)
    contact.version = contact.version + 1
    elsewhere = contacts_repo.linked_elsewhere(
        session, conflict.connection_id, [contact.customer_id]
    )
    if elsewhere:
        contact.pending = True


def _close(
    locked: Conflict, keep: Literal["billing", "crm"] | None, chosen: Any, actor: str
) -> None:
    locked.status = "resolved"
    locked.resolution = keep or "value"
    locked.resolved_value = chosen
    locked.resolved_by = actor
    locked.resolved_at = utcnow()
