"""Billing-side changes out to the CRM: the outbox since this connection's position (or,
on a full run, every customer), in chunks, with creates for customers the CRM lacks."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from sync.context import RunContext
from sync.decision import CursorMove
from sync.pages import push_page
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.db import transaction

log = logging.getLogger(__name__)

OUTBOX = "outbox"
#: where the first push reads the outbox from, pinned until its walk sets :data:`OUTBOX`
WALK_FROM = "outbox_walk_from"
#: customers per push transaction: five Salesforce batches, ten HubSpot ones
CHUNK = 1000


def push_billing_changes(ctx: RunContext, *, full: bool, outbox_at_start: int) -> None:
    """Push what changed on the billing side since this connection last looked (the
    outbox). A first or full run first walks every customer this connection has not
    linked, or that changed since its link was written (the full pull has just compared
    every linked record with its customer), then reads the outbox from where it stood when
    the pull began (``outbox_at_start``, from :func:`outbox_start`): a billing edit that
    raced the pull of its record (read before the edit, linked after it) is logged there,
    whatever the clocks said. Commits its position per chunk."""
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


def outbox_start(ctx: RunContext) -> int:
    """Where this run's first push reads the outbox from once its walk is done (read
    before the run pulls anything).

    Until a first push has walked every customer and set the connection's position, the
    answer is pinned (cursor :data:`WALK_FROM`, by :func:`pin_outbox_start` as a run is
    recorded) by the first run that began without a position, and every later run uses
    it: the walk passes by a customer whose link was written after its last edit, yet
    the page that wrote the link may have read the customer before that edit committed
    (and taken its old name as the base). Only the
    outbox still holds such an edit, and a run that stopped after its pull (a lost lock,
    a failed call) leaves the walk to a run that did not pull that record, so that run
    must read the outbox from where the pull began, not from where it began itself.
    Once a position is set, a run's own head is enough: an incremental run reads from the
    position, and a full run's pull compares every linked record with its customer again.
    """
    with transaction(ctx.engine) as session:
        head = repository.outbox_head(session, ctx.organisation_id)
        if repo.get_cursor(session, ctx.connection_id, OUTBOX) is not None:
            return head
        # a plan records no run and so pins nothing: it reads from a run's pin, if any
        pinned = repo.get_cursor(session, ctx.connection_id, WALK_FROM)
        return head if pinned is None else int(pinned)


def pin_outbox_start(session: Session, organisation_id: str, connection_id: str) -> None:
    """As a run is recorded: while the connection has no outbox position, keep where the
    outbox stands now as the first push's starting point, unless an earlier run kept one
    (see :func:`outbox_start`). An earlier pin is always the safe one: reading the outbox
    from further back only compares more customers again."""
    if repo.get_cursor(session, connection_id, OUTBOX) is not None:
        return
    head = repository.outbox_head(session, organisation_id)
    repo.keep_first_cursor(session, connection_id, WALK_FROM, str(head))


def _walk_customers(ctx: RunContext, head: int) -> None:
    """Walk the billing side by customer id; the outbox position then becomes ``head``
    (the changes logged before the walk began are covered by it)."""
    with transaction(ctx.engine) as session:
        # the walk joins customers to links: plan it on statistics the pull kept up with
        stale = repository.refresh_stale_statistics(session, ["customers", "links"])
    if stale:
        log.info("statistics refreshed before the first push", extra={"tables": stale})
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
