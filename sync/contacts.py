"""Billing-side secondary contacts: list, add and change a customer's contacts.

Every add or change marks the contact ``pending`` (and counts a new ``version``), so the
next sync of each connection that links the customer pushes it to the CRM
(:mod:`sync.contact_sync`). A contact's e-mail is unique among its customer's contacts:
it is how a contact is matched with the CRM's. Nothing here commits.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlalchemy.orm import Session

from sync.customer import Communication, Contact, Email, single_line
from sync.errors import ContactNotFound, CustomerNotFound, DuplicateContact, InvalidInput
from sync.store import contact_repository, repository
from sync.store.models import ContactRow, new_id, utcnow

M = TypeVar("M", bound=BaseModel)


class ContactPatch(BaseModel):
    """The body of a contact change: only the fields given change (``email: null``
    clears it)."""

    model_config = ConfigDict(extra="forbid")

    name: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
            AfterValidator(single_line),
        ]
        | None
    ) = None
    email: Email = None
    communications: list[Communication] | None = None

    @model_validator(mode="after")
    def _name_not_cleared(self) -> ContactPatch:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name is required and cannot be cleared")
        if "communications" in self.model_fields_set and self.communications is None:
            raise ValueError("communications is a list (empty for none), not null")
        return self


class ContactOut(BaseModel):
    """A secondary contact as the API shows it. ``crm_ids``: the CRM contact it syncs with
    in each connection (connection id -> CRM contact id); ``crm_id``: the one in the first
    connection it synced with; ``state`` is ``active`` or ``crm_deleted`` (deleted in a
    CRM: kept, flagged); ``pending``: a change not yet pushed to every linked CRM."""

    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    email: str | None
    communications: list[Communication] = Field(default_factory=list)
    crm_id: str | None = None
    crm_ids: dict[str, str] = Field(default_factory=dict)
    state: Literal["active", "crm_deleted"] = "active"
    pending: bool = False


def _spaced(name: str) -> str:
    """A name with single spaces between its words: CRMs keep first and last names apart
    and join them with one space, so "Ann  Lee" would come back as a change."""
    return " ".join(name.split())


def _out(row: ContactRow, crm_ids: dict[str, str] | None = None) -> ContactOut:
    return ContactOut.model_validate(
        {
            "crm_ids": crm_ids or {},
            "id": row.id,
            "customer_id": row.customer_id,
            "name": row.name,
            "email": row.email,
            "communications": list(row.communications or []),
            "crm_id": row.crm_id,
            "state": row.state or "active",
            "pending": bool(row.pending),
        }
    )


def _customer_rows(session: Session, organisation_id: str, customer_id: str) -> list[ContactRow]:
    try:
        customer_id = str(uuid.UUID(customer_id))
    except ValueError:
        raise CustomerNotFound(customer_id) from None
    if repository.get_customer(session, organisation_id, customer_id) is None:
        raise CustomerNotFound(customer_id)
    return list(repository.list_contacts(session, organisation_id, customer_id))


def _check_email(rows: list[ContactRow], email: str | None, exclude_id: str | None) -> None:
    if not email:
        return
    for row in rows:
        same = row.email is not None and row.email.casefold() == email.casefold()
        if same and row.id != exclude_id:
            raise DuplicateContact(email)


def list_contacts(session: Session, organisation_id: str, customer_id: str) -> list[ContactOut]:
    """A customer's secondary contacts, by name."""
    rows = _customer_rows(session, organisation_id, customer_id)
    links = contact_repository.links_of(session, [row.id for row in rows])
    return [_out(row, links.get(row.id)) for row in rows]


def add_contact(
    session: Session, organisation_id: str, customer_id: str, data: Contact
) -> ContactOut:
    """Add a contact to a customer; it is pushed to each linked CRM on the next sync."""
    rows = _customer_rows(session, organisation_id, customer_id)
    _check_email(rows, data.email, None)
    row = new_contact(organisation_id, customer_id, data)
    session.add(row)
    session.flush()
    return _out(row)


def new_contact(organisation_id: str, customer_id: str, data: Contact) -> ContactRow:
    """A billing-side contact, not yet added to the session: pending, for every linked CRM."""
    return ContactRow(
        id=new_id(),
        organisation_id=organisation_id,
        customer_id=customer_id,
        name=_spaced(data.name),
        email=data.email,
        communications=list(dict.fromkeys(data.communications)),
        pending=True,
        version=1,
        state="active",
        updated_at=utcnow(),
    )


def change_contact(
    session: Session, organisation_id: str, customer_id: str, contact_id: str, patch: ContactPatch
) -> ContactOut:
    """Change the fields given; a change marks the contact for the next push."""
    rows = _customer_rows(session, organisation_id, customer_id)
    row = next((r for r in rows if r.id == contact_id_of(contact_id)), None)
    if row is None:
        raise ContactNotFound(f"no contact {contact_id!r} of this customer")
    if "email" in patch.model_fields_set:
        _check_email(rows, patch.email, row.id)
    if patched(row, patch):
        session.flush()
    return _out(row, contact_repository.links_of(session, [row.id]).get(row.id))


def patched(row: ContactRow, patch: ContactPatch) -> bool:
    """Apply the fields given to a contact (its e-mail already checked); a change marks it
    pending with a new version. Whether anything changed."""
    given = patch.model_fields_set
    changes: dict[str, object] = {}
    if "name" in given and patch.name is not None and _spaced(patch.name) != row.name:
        changes["name"] = _spaced(patch.name)
    if "email" in given and patch.email != row.email:
        changes["email"] = patch.email
    if patch.communications is not None:
        wanted = list(dict.fromkeys(patch.communications))
        if sorted(wanted) != sorted(row.communications or []):
            changes["communications"] = wanted
    if not changes:
        return False
    for column, value in changes.items():
        setattr(row, column, value)
    row.pending = True
    row.version = int(row.version or 0) + 1
    row.updated_at = utcnow()
    return True


def contact_id_of(value: str) -> str:
    """A contact id as text, or :class:`ContactNotFound` for what is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError as error:
        raise ContactNotFound(f"no contact {value!r} of this customer") from error


def checked(model: type[M], fields: dict[str, object]) -> M:
    """A contact body (:class:`~sync.customer.Contact` or :class:`ContactPatch`) from plain
    fields, or :class:`InvalidInput` naming each field and the rule it broke."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'contact'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in error.errors()
        )
        raise InvalidInput(problems) from error


__all__ = [
    "ContactNotFound",
    "ContactOut",
    "ContactPatch",
    "DuplicateContact",
    "add_contact",
    "change_contact",
    "checked",
    "list_contacts",
    "new_contact",
    "patched",
]
