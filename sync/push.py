"""Billing-side changes out to the CRM: the outbox since this connection's position (or,
on a full run, every customer), in chunks, with creates for customers the CRM lacks."""

from __future__ import annotations

from sync.context import RunContext
from sync.decision import CursorMove
from sync.pages import push_page
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.db import transaction

OUTBOX = "outbox"
#: customers per push transaction: five Salesforce batches, ten HubSpot ones
CHUNK = 1000


def push_billing_changes(ctx: RunContext, *, full: bool, outbox_at_start: int) -> None:
    """Push what changed on the billing side since this connection last looked (the
    outbox). A first or full run first walks every customer this connection has not
    linked, or that changed since its link was written (the full pull has just compared
    every linked record with its customer), then reads the outbox from where it stood when
    the run began (``outbox_at_start``): a billing edit that raced the pull of its record
    (read before the edit, linked after it) is logged there, whatever the clocks said.
    Commits its position per chunk."""
    with transaction(ctx.engine) as session:
        position = repo.get_cursor(session, ctx.connection_id, OUTBOX)
    if full or position is None:
        _walk_customers(ctx, outbox_at_start)
        after = outbox_at_start
    else:
        after = int(position)
    while True:
        with transaction(ctx.engine) as session:
            entries = repository.outbox_after(session, ctx.organisation_id, after, CHUNK)
        if not entries:
            return
        ids = [e.customer_id for e in entries if e.origin_connection_id != ctx.connection_id]
        after = entries[-1].id
        push_page(ctx, list(dict.fromkeys(ids)), CursorMove(OUTBOX, str(after)))
        ctx.report("push")


def outbox_head(ctx: RunContext) -> int:
    """Where the organisation's outbox stands now (read when a run begins)."""
    with transaction(ctx.engine) as session:
        return repository.outbox_head(session, ctx.organisation_id)


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
            push_page(ctx, [], CursorMove(OUTBOX, str(head)))
            return
        push_page(ctx, ids)
        after = ids[-1]
        ctx.report("push")
