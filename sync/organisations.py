"""Organisations (tenants), their API keys and business entities."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from sync.errors import InvalidInput, NotFound
from sync.store import repository
from sync.store.models import BusinessEntity, Organisation


@dataclass(frozen=True)
class NewOrganisation:
    """A created organisation and its API key, which is shown once and stored hashed."""

    id: str
    name: str
    api_key: str


def create_organisation(session: Session, name: str) -> NewOrganisation:
    if not name.strip():
        raise InvalidInput("organisation name must not be blank")
    api_key = "crm_" + secrets.token_urlsafe(32)
    org = repository.add_organisation(session, name.strip(), api_key)
    return NewOrganisation(org.id, org.name, api_key)


def authenticate(session: Session, organisation_id: str, api_key: str) -> bool:
    """Whether ``api_key`` is a key of the organisation (constant work whatever the key)."""
    if not organisation_id or not api_key:
        return False
    return repository.api_key_belongs_to(session, organisation_id, api_key)


def get_organisation(session: Session, organisation_id: str) -> Organisation | None:
    return repository.get_organisation(session, organisation_id)


def list_organisations(session: Session) -> Sequence[Organisation]:
    """Every organisation, oldest first."""
    return repository.list_organisations(session)


def create_business_entity(session: Session, organisation_id: str, name: str) -> BusinessEntity:
    if repository.get_organisation(session, organisation_id) is None:
        raise NotFound(f"no organisation {organisation_id}")
    if not name.strip():
        raise InvalidInput("business entity name must not be blank")
    return repository.add_business_entity(session, organisation_id, name.strip())


def list_business_entities(session: Session, organisation_id: str) -> Sequence[BusinessEntity]:
    return repository.list_business_entities(session, organisation_id)
