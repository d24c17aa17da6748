"""A backfill's pages, written behind: page N commits while page N+1 is decided.

On PostgreSQL a page of new rows costs the worker its ``COPY`` and then a wait while
PostgreSQL checks their keys and fills the indexes. In a full run, a page that only
*adds* (new customers and their links; on the connection's first pull of its contacts,
new contacts) is written and committed, with its cursor, on a thread of its own while
the next page is loaded and decided on the run's thread. Pages still commit one after
the other, in order, so a killed run resumes after the last page whose cursor committed.

Why the next page may be decided without the writes in flight:

- *contacts* (``fresh``: none of the connection's is in the store yet): a page's owners
  are the links the accounts / companies wrote before it, and the billing contacts it may
  match are those with no CRM contact here, which a page of added (linked) contacts never
  is;
- *accounts / companies*: a record of the next page that a page in flight would have
  changed the decision for (the same e-mail, the same external id, the same CRM id) is
  one whose new customer or link the store refuses (its unique keys), and a page the
  store refused behind is decided and written again as every page is, after the page
  before it committed (:func:`sync.pages.sync_page`), and so is the page decided beside
  it.

The same keys let a run whose organisation had no customer when it began (a first
backfill into an empty store) decide its pages of accounts / companies without reading
the store at all: what the reads could find is only what this run's earlier pages (or a
sync beside it) wrote — a CRM id linked, a new customer's external id (its CRM id) or
e-mail — and a record that would match one is one whose new customer or link the store
refuses, so its page is decided again, with the reads, as above.

Any other page (one that links or changes an existing customer or billing contact, pushes,
refuses a record, opens a conflict) is written as every page is, after the page in flight
has committed. Errors of the writer surface in the run's thread, at the next page or at
the end.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from connectors.base import CrmContact, CrmCustomer
from sync.apply import STORE_REFUSALS, carry_out
from sync.contact_sync import decide_contacts, load_contacts
from sync.context import RunContext
from sync.decide import PageState, decide_page, latest
from sync.decision import CursorMove, PageDecision
from sync.pages import contacts_page, load_owners, load_page, sync_page
from sync.store.db import asynchronous_commit, transaction

Item = TypeVar("Item", CrmCustomer, CrmContact)


def writes_behind(ctx: RunContext) -> bool:
    """Whether a run's pages may be written behind: a full run, applied (not planned),
    on PostgreSQL."""
    return ctx.bulk and ctx.plan is None and ctx.engine.dialect.name == "postgresql"


class PageWriter(Generic[Item]):
    """Decides each page on the run's thread and hands the ones that only add to one
    writer thread; use as a context manager (leaving it waits for the last page)."""

    def __init__(
        self,
        ctx: RunContext,
        decide: Callable[[Session, Sequence[Item]], PageDecision],
        adds_only: Callable[[PageDecision], bool],
        write_now: Callable[[Sequence[Item], CursorMove | None], None],
        written: Callable[[Sequence[Item]], None] = lambda items: None,
    ) -> None:
        self._ctx = ctx
        self._decide: Callable[[Session, Sequence[Item]], PageDecision] = decide
        self._adds_only: Callable[[PageDecision], bool] = adds_only
        self._write_now: Callable[[Sequence[Item], CursorMove | None], None] = write_now
        self._written: Callable[[Sequence[Item]], None] = written
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="crmsync-write")
        self._in_flight: tuple[Future[None], Sequence[Item], CursorMove | None] | None = None

    def __enter__(self) -> PageWriter[Item]:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._settle()
        finally:
            self._thread.shutdown(wait=True)

    def page(self, items: Sequence[Item], cursor: CursorMove | None) -> None:
        """Decide a page, then write it behind (or, for a page that does more than add,
        as every page is written) once the page before it has committed."""
        with transaction(self._ctx.engine) as session:
            decision = self._decide(session, items)
        if not self._settle() or not self._adds_only(decision):
            # decided beside a page that had to be written again, or more than adds
            self._write_now(items, cursor)
            return
        decision = replace(decision, cursor=cursor)
        # the writer's log lines carry the run's ids, as the run's own do
        context = contextvars.copy_context()
        future = self._thread.submit(context.run, self._write, decision)
        self._in_flight = (future, items, cursor)

    def _write(self, decision: PageDecision) -> None:
        ctx = self._ctx
        with transaction(ctx.engine) as session:
            asynchronous_commit(session)
            if ctx.fence is not None:
                ctx.fence.check(session)  # first, as in every page's commit
            carry_out(ctx, session, decision)

    def _settle(self) -> bool:
        """Wait for the page in flight. False when the store refused it: it has then been
        decided and written again as every page is (what the store still refuses goes to
        the dead letter)."""
        if self._in_flight is None:
            return True
        future, items, cursor = self._in_flight
        self._in_flight = None
        try:
            future.result()
        except STORE_REFUSALS:
            self._write_now(items, cursor)
            return False
        self._written(items)
        return True


# --- accounts / companies ------------------------------------------------------------------


def customers_writer(ctx: RunContext, *, empty_store: bool = False) -> PageWriter[CrmCustomer]:
    """A full run's pages of accounts / companies (see the module docstring).
    ``empty_store``: the organisation had no customer when the run began, so its pages
    are decided without reading the store."""

    def decide(session: Session, records: Sequence[CrmCustomer]) -> PageDecision:
        page = latest(records)
        state = PageState() if empty_store else load_page(session, ctx, page)
        return PageDecision(decide_page(ctx.policy, state, page))

    def written(records: Sequence[CrmCustomer]) -> None:
        ctx.count("pulled", len(latest(records)))

    return PageWriter(ctx, decide, _adds_customers_only, lambda r, c: sync_page(ctx, r, c), written)


def _adds_customers_only(decision: PageDecision) -> bool:
    """Whether every record of a page is a new customer with its new link, and no more."""
    return all(
        r.new_customer is not None
        and r.link is not None
        and r.change is None
        and r.move is None
        and r.push is None
        and r.failure is None
        and not r.conflicts
        for r in decision.records
    )


# --- contacts ------------------------------------------------------------------------------


def contacts_writer(ctx: RunContext) -> PageWriter[CrmContact]:
    """A first pull's pages of contacts (see the module docstring)."""

    def decide(session: Session, contacts: Sequence[CrmContact]) -> PageDecision:
        owners = load_owners(session, ctx, contacts)
        state = load_contacts(session, ctx, contacts, owners, fresh=True)
        return PageDecision(contacts=decide_contacts(state, contacts, fresh=True))

    def write_now(contacts: Sequence[CrmContact], cursor: CursorMove | None) -> None:
        contacts_page(ctx, contacts, cursor, fresh=True)

    return PageWriter(ctx, decide, _adds_contacts_only, write_now)


def _adds_contacts_only(decision: PageDecision) -> bool:
    """Whether a page only adds new contacts (what the next page never reads)."""
    contacts = decision.contacts
    return contacts is not None and not (
        contacts.change
        or contacts.flag
        or contacts.conflicts
        or contacts.pushes
        or contacts.failures
        or contacts.adoptions
        or contacts.taken
    )
