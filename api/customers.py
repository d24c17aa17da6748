"""The customer routes, after the billing product's Create Customer API.

``POST /customers`` (201), ``GET /customers/{id}``, ``GET /customers`` (by ``external_id``,
or a page by ``limit`` / ``offset``) and ``PATCH /customers/{id}``. Every route acts for the
authenticated organisation only: another organisation's customer is 404.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AfterValidator

from api.deps import OrganisationId, SessionDep
from api.errors import ERROR_RESPONSES
from sync import customers
from sync.customer import Customer, CustomerIn, CustomerPatch, single_line

router = APIRouter(prefix="/customers", tags=["customers"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Customer)
def create_customer(body: CustomerIn, session: SessionDep, org: OrganisationId) -> Customer:
    """Create a customer. ``external_id`` and ``email`` are unique within the organisation
    (409); ``business_entity_id`` must be one of its business entities (422)."""
    return customers.create_customer(session, org, body)


@router.get("/{customer_id}", response_model=Customer)
def get_customer(customer_id: uuid.UUID, session: SessionDep, org: OrganisationId) -> Customer:
    """One customer of the organisation."""
    return customers.get_customer(session, org, str(customer_id))


@router.get("", response_model=list[Customer])
def list_customers(
    session: SessionDep,
    org: OrganisationId,
    external_id: Annotated[
        Annotated[str, AfterValidator(single_line)] | None,
        Query(max_length=255, description="Only the customer with this external ID"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    # SQL's OFFSET is a signed 64-bit integer: a larger one is bad input, not a 500
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> list[Customer]:
    """The organisation's customers, oldest first: the one with ``external_id`` (a list of
    zero or one), else a page of ``limit`` from ``offset``."""
    return customers.list_customers(
        session, org, external_id=external_id, limit=limit, offset=offset
    )


@router.patch("/{customer_id}", response_model=Customer)
def update_customer(
    customer_id: uuid.UUID, body: CustomerPatch, session: SessionDep, org: OrganisationId
) -> Customer:
    """Change the fields given (``null`` clears one). ``address`` and ``ship_to_address``
    are replaced whole: send every line to keep. ``business_entity_id`` can be set once and
    never changed (422)."""
    return customers.update_customer(session, org, str(customer_id), body)
