"""Billing-side changes out to the CRM: the outbox since this connection's position (or,
on a full run, every customer), in batches, with creates for customers the CRM lacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from connectors.base import CustomerPush
from sync.billing import InvalidRecord, apply_fields
from sync.context import PageWork, RunContext
from sync.customer import FieldValue, flatten
from sync.customers import to_public
from sync.match import canonical
from sync.pages import PendingPush, execute_pushes, sync_customer_page, write_page
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import CustomerRow, LinkRow, new_id

OUTBOX = "outbox"
#: customers per push transaction: five Salesforce batches, ten HubSpot ones
CHUNK = 1000


def push_billing_changes(ctx: RunContext, *, full: bool) -> None:
    """Push what changed on the billing side since this connection last looked (the
    outbox). A first or full run instead walks every customer this connection has not
    linked, or that changed since its link was written (the full pull has just compared
    every linked record with its customer). Commits its position per chunk."""
    with transaction(ctx.engine) as session:
        position = repo.get_cursor(session, ctx.connection_id, OUTBOX)
        head = repository.outbox_head(session, ctx.organisation_id)
    if full or position is None:
        _walk_customers(ctx, head)
        return
    after = int(position)
    while True:
        with transaction(ctx.engine) as session:
            entries = repository.outbox_after(session, ctx.organisation_id, after, CHUNK)
            if not entries:
                return
            ids = [e.customer_id for e in entries if e.origin_connection_id != ctx.connection_id]
            push_customers(ctx, session, list(dict.fromkeys(ids)))
            after = entries[-1].id
            if not ctx.planning:
                repo.set_cursor(session, ctx.connection_id, OUTBOX, str(after))
        ctx.report("push")


def _walk_customers(ctx: RunContext, head: int) -> None:
    """Walk the billing side by customer id; the outbox position then becomes ``head``
    (the changes logged before the walk began are covered by it)."""
    after = ""
    while True:
        with transaction(ctx.engine) as session:
            ids = list(
                repo.customers_to_push(
                    session, ctx.organisation_id, ctx.connection_id, after, CHUNK
                )
            )
            if not ids:
                if not ctx.planning:
                    repo.set_cursor(session, ctx.connection_id, OUTBOX, str(head))
                return
            push_customers(ctx, session, ids)
            after = ids[-1]
        ctx.report("push")


def push_customers(ctx: RunContext, session: Session, customer_ids: Sequence[str]) -> None:
    """Bring the CRM up to date with these customers (not committed here)."""
    customer_ids = [c for c in customer_ids if c not in ctx.refused]
    if not customer_ids:
        return
    customers = repository.get_customers(session, ctx.organisation_id, customer_ids)
    links = repo.links_by_customer_ids(session, ctx.connection_id, customer_ids)
    conflicted = repo.open_conflict_fields(session, [link.id for link in links.values()])
    aliases = repo.crm_ids_of_customers(session, ctx.organisation_id, customer_ids)
    work = PageWork()
    pushes: list[PendingPush] = []
    unlinked: list[CustomerRow] = []
    for customer_id in customer_ids:
        customer = customers.get(customer_id)
        if customer is None:
            continue
        link = links.get(customer_id)
        if link is not None:
            _push_linked(ctx, work, pushes, customer, link, conflicted.get(link.id, set()))
        else:
            unlinked.append(customer)
    # An unlinked customer whose external id may be a record of this CRM that the pull did
    # not reach (it has not changed lately) is looked up by id and linked like a pulled one.
    lookups = [
        c.external_id
        for c in unlinked
        if c.external_id and c.external_id not in aliases.get(c.id, set())
    ]
    found: set[str] = set()
    if lookups:
        records = [r for r in ctx.connector.pull_customers_by_ids(lookups) if not r.deleted]
        found = {r.id for r in records}
        sync_customer_page(ctx, session, records)
    for customer in unlinked:
        if customer.external_id in found:
            continue
        _create_in_crm(ctx, pushes, customer)
    execute_pushes(ctx, work, pushes)
    write_page(ctx, session, work)


def _push_linked(
    ctx: RunContext,
    work: PageWork,
    pushes: list[PendingPush],
    customer: CustomerRow,
    link: LinkRow,
    conflicted: set[str],
) -> None:
    if link.state != "active":
        return
    public = to_public(customer)
    billing = flatten(public)
    to_crm: dict[str, FieldValue] = {}
    to_billing: dict[str, FieldValue] = {}
    for name in ctx.fields:
        direction = ctx.directions.get(name, "both")
        if direction == "none" or name in conflicted:
            continue
        if canonical(billing.get(name), ctx.match_mode, name) == canonical(
            link.base.get(name), ctx.match_mode, name
        ):
            continue
        if direction == "crm_to_billing":
            # billing may not change a CRM-owned field: put the CRM's value back
            to_billing[name] = link.base.get(name)
        else:
            to_crm[name] = billing.get(name)
    if ctx.plan is not None:
        for name, value in to_crm.items():
            ctx.plan.crm_update(customer.id, link.crm_id, name, link.base.get(name), value)
        for name, value in to_billing.items():
            ctx.plan.billing_update(customer.id, link.crm_id, name, billing.get(name), value)
        return
    if to_billing:
        try:
            columns = apply_fields(public, to_billing)
        except InvalidRecord as error:
            # the CRM's value (the base) no longer passes the customer model: say so
            columns = {}
            work.failures.append(
                ctx.failure(
                    "pull",
                    crm_id=link.crm_id,
                    customer_id=customer.id,
                    payload={"fields": dict(to_billing)},
                    kind="validation",
                    message=str(error),
                )
            )
        changed = {k: v for k, v in columns.items() if public.get(k) != v}
        if changed:
            ctx.count("updated")
            work.customer_updates.append({"id": customer.id, **changed})
    if to_crm:
        base = dict(link.base)
        work.link_updates.append({"id": link.id, "base": base})
        push = CustomerPush(billing_id=customer.id, crm_id=link.crm_id, fields=to_crm)
        pushes.append(PendingPush(push=push, base=base))


def _create_in_crm(ctx: RunContext, pushes: list[PendingPush], customer: CustomerRow) -> None:
    if not ctx.push_creates:
        return
    billing = flatten(to_public(customer))
    fields = {
        name: billing.get(name)
        for name in ctx.fields
        if ctx.directions.get(name, "both") in ("both", "billing_to_crm")
        and billing.get(name) not in (None, "")
    }
    if ctx.plan is not None:
        ctx.plan.crm_creates.append(
            {"customer_id": customer.id, "customer_name": customer.customer_name, "fields": fields}
        )
        return
    new_link: dict[str, Any] = {
        "id": new_id(),
        "organisation_id": ctx.organisation_id,
        "connection_id": ctx.connection_id,
        "customer_id": customer.id,
        "crm_id": None,
        "billing_last": {},
        "state": "active",
    }
    pushes.append(
        PendingPush(
            push=CustomerPush(billing_id=customer.id, crm_id=None, fields=fields),
            base={},
            new_link=new_link,
            set_external_id=customer.external_id is None,
        )
    )
