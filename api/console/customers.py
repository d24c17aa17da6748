"""Customers: find one; see its record, its links (one per connection: its aliases), its
contacts, its open conflicts and its audit trail."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.base import EngineDep, MeDep, not_found, reading, render
from api.console.conflicts import describe
from sync import customers
from sync.customer import flatten
from sync.store import repository, review_repository, sync_repository

router = APIRouter()


@router.get("/customers")
def customers_page(request: Request, me: MeDep, engine: EngineDep, q: str = "") -> Response:
    with reading(engine) as db:
        found = list(review_repository.search_customers(db, me.organisation_id, q[:200]))
        total = repository.count_customers(db, me.organisation_id)
    return render(request, "customers.html", {"me": me, "customers": found, "q": q, "total": total})


@router.get("/customers/{customer_id}")
def customer_page(request: Request, customer_id: str, me: MeDep, engine: EngineDep) -> Response:
    with reading(engine) as db:
        row = repository.get_customer(db, me.organisation_id, customer_id)
        if row is None:
            raise not_found("customer")
        public = customers.to_public(row)
        names = {c.id: c.name for c in sync_repository.list_connections(db, me.organisation_id)}
        links = [
            {
                "connection_id": link.connection_id,
                "connection": names.get(link.connection_id, link.connection_id),
                "crm_id": link.crm_id,
                "state": link.state,
                "merged_into": link.merged_into,
                "updated_at": link.updated_at,
            }
            for link in sync_repository.links_of_customer(db, me.organisation_id, customer_id)
        ]
        contacts = customers.contacts_of(db, me.organisation_id, customer_id)
        open_conflicts = describe(
            db,
            me.organisation_id,
            list(review_repository.conflicts(db, me.organisation_id, customer_id=customer_id)),
        )
        trail = list(review_repository.audit_trail(db, me.organisation_id, customer_id))
    fields = {k: v for k, v in flatten(public).items() if k != "id"}
    return render(
        request,
        "customer.html",
        {
            "me": me,
            "customer": public,
            "fields": fields,
            "links": links,
            "contacts": contacts,
            "conflicts": open_conflicts,
            "trail": trail,
        },
    )
