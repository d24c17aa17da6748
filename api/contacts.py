"""A customer's secondary contacts: ``GET/POST /customers/{id}/contacts`` and
``PATCH /customers/{id}/contacts/{contact_id}``.

Every route acts for the authenticated organisation only: another organisation's customer
is 404, like an unknown one. A contact added or changed here is pushed to each CRM that
links the customer on its next sync. A contact's e-mail is unique among its customer's
contacts (409).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.deps import OrganisationId, SessionDep
from api.errors import ERROR_RESPONSES
from sync import contacts
from sync.contacts import ContactOut, ContactPatch
from sync.customer import Contact

router = APIRouter(
    prefix="/customers/{customer_id}/contacts", tags=["contacts"], responses=ERROR_RESPONSES
)


@router.get("", response_model=list[ContactOut])
def list_contacts(
    customer_id: uuid.UUID, session: SessionDep, org: OrganisationId
) -> list[ContactOut]:
    """The customer's secondary contacts, by name; ``crm_id`` names the CRM contact each
    syncs with, ``state`` is ``crm_deleted`` for one deleted in the CRM (kept)."""
    return contacts.list_contacts(session, org, str(customer_id))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ContactOut)
def add_contact(
    customer_id: uuid.UUID, body: Contact, session: SessionDep, org: OrganisationId
) -> ContactOut:
    """Add a contact: ``name`` (required), ``email``, ``communications`` (any of billing,
    updates, legal; default billing)."""
    return contacts.add_contact(session, org, str(customer_id), body)


@router.patch("/{contact_id}", response_model=ContactOut)
def change_contact(
    customer_id: uuid.UUID,
    contact_id: uuid.UUID,
    body: ContactPatch,
    session: SessionDep,
    org: OrganisationId,
) -> ContactOut:
    """Change the fields given (``email: null`` clears it; ``name`` cannot be cleared); an
    unknown contact, or one of another customer, is 404."""
    return contacts.change_contact(session, org, str(customer_id), str(contact_id), body)
