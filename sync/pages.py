"""The page step: load, decide, then push and write (or show), and commit with the cursor.

Every page of a run goes through :func:`_commit` in one transaction, and reads top to
bottom the same way:

1. **load**: what the page needs, in a handful of bulk reads, turned into plain values at
   the store's edge (:func:`load_page`, :func:`load_push`, :func:`load_owners`);
2. **decide**: a typed :class:`~sync.decision.PageDecision`, with no side effect
   (:mod:`sync.decide`);
3. **carry out**: push the CRM writes and write the rows, or in plan mode show them
   (:func:`sync.apply.carry_out`);
4. **commit**, with the page's cursor (the decision carries it).

    sync_page      a page of CRM accounts / companies
    push_page      a chunk of billing customers to bring up to date in the CRM
    contacts_page  a page of CRM contacts
    contact_push_page  a chunk of billing-side contact changes to push to the CRM
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from connectors.base import CrmContact, CrmCustomer
from sync.apply import STORE_REFUSALS, WRITE_BACK, PushesMade, carry_out
from sync.contact_sync import (
    decide_adoptions,
    decide_contact_pushes,
    decide_contacts,
    load_adoptions,
    load_contact_pushes,
    load_contacts,
)
from sync.context import RunContext
from sync.customer import crm_value_problem
from sync.decide import (
    PageState,
    PushState,
    decide_page,
    decide_pushes,
    latest,
)
from sync.decision import ContactsDecision, CursorMove, PageDecision
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.convert import billing_customer, link_value
from sync.store.db import asynchronous_commit, transaction


def sync_page(
    ctx: RunContext, records: Sequence[CrmCustomer], cursor: CursorMove | None = None
) -> None:
    """Sync one page of CRM accounts / companies and commit it with ``cursor``."""
    records = latest(records)

    def step(session: Session) -> PageDecision:
        state = load_page(session, ctx, records)
        return PageDecision(decide_page(ctx.policy, state, records), cursor=cursor)

    _commit(ctx, step)
    ctx.count("pulled", len(records))


def push_page(
    ctx: RunContext, customer_ids: Sequence[str], cursor: CursorMove | None = None
) -> None:
    """Bring the CRM up to date with these customers and commit it with ``cursor``. An
    unlinked customer whose external id may be a record of this CRM that the pull did not
    reach (it has not changed lately) is looked up by id and linked like a pulled one."""
    wanted = [c for c in customer_ids if c not in ctx.refused and c not in ctx.unapplied.customers]
    found: list[CrmCustomer] = []

    def step(session: Session) -> PageDecision:
        nonlocal found
        state, found = load_push(session, ctx, wanted)
        pulled = decide_page(ctx.policy, load_page(session, ctx, found), found)
        return PageDecision(pulled + decide_pushes(ctx.policy, state), cursor=cursor)

    if wanted or cursor is not None:
        _commit(ctx, step)
    ctx.count("pulled", len(found))


def contacts_page(
    ctx: RunContext, contacts: Sequence[CrmContact], cursor: CursorMove | None, *, fresh: bool
) -> None:
    """CRM contacts become their customers' secondary contacts; committed with ``cursor``."""

    def step(session: Session) -> PageDecision:
        owners = load_owners(session, ctx, contacts)
        state = load_contacts(session, ctx, contacts, owners, fresh=fresh)
        return PageDecision(contacts=decide_contacts(state, contacts, fresh=fresh), cursor=cursor)

    _commit(ctx, step)


def contact_push_page(
    ctx: RunContext, *, after: str, limit: int, customer_ids: Sequence[str] | None = None
) -> str | None:
    """Push a chunk of the billing side's pending contacts (by id after ``after``) and
    commit it; the last contact id of the chunk, or None when there were none."""
    last: str | None = None
    made = PushesMade()

    def step(session: Session) -> PageDecision:
        nonlocal last
        pending, conflicted = load_contact_pushes(
            session, ctx, after=after, limit=limit, customer_ids=customer_ids
        )
        last = pending[-1][0].id if pending else None
        pushes = decide_contact_pushes(
            pending,
            conflicted,
            communications=ctx.contacts.communications,
            unlinked=ctx.unapplied.unlinked,  # a plan's: a run's pull has ended those links
        )
        # a create an earlier attempt made is not one to adopt: it is that create's contact
        unmade = [p for p in pushes if made.contacts.result(p) is None]
        adoptions, taken = decide_adoptions(load_adoptions(session, ctx, unmade))
        contacts = ContactsDecision(pushes=pushes, adoptions=adoptions, taken=taken)
        return PageDecision(contacts=contacts)

    _commit(ctx, step, made)
    return last


def _commit(
    ctx: RunContext, step: Callable[[Session], PageDecision], made: PushesMade | None = None
) -> None:
    """Decide and carry out one page in one transaction. When the store refuses the page
    (:data:`~sync.apply.STORE_REFUSALS`), it is decided again on what is there now (a sync
    of the same connection beside this one, a webhook's, may have linked or created one of
    these records first), and this time the records the store still refuses are narrowed
    down by bisection and go to the dead letter, so the rest of the page commits with its
    cursor. Pushes made by the first attempt (kept in ``made``) are not made again."""
    made = made if made is not None else PushesMade()
    for attempt in (1, 2):
        counters = dict(ctx.counters)
        try:
            with transaction(ctx.engine) as session:
                if ctx.bulk:
                    asynchronous_commit(session)
                if ctx.fence is not None:
                    # first: a run that lost its lock pushes and writes nothing more, and
                    # the fence row stays locked until this commit
                    ctx.fence.check(session)
                carry_out(ctx, session, step(session), made, isolate=attempt == 2)
            return
        except STORE_REFUSALS:
            # the calls were made all the same (and are not made again)
            ctx.counters = {**counters, "calls_push": ctx.counters["calls_push"]}
            if attempt == 2:
                raise


# --- loading -------------------------------------------------------------------------------


def load_page(session: Session, ctx: RunContext, records: Sequence[CrmCustomer]) -> PageState:
    """What deciding a page of CRM records needs: their links (and merge survivors'), the
    linked customers, the candidates of unlinked records (by the billing id crmsync wrote
    into the record, or by external id), open conflicts, and e-mail owners."""
    if not records:
        return PageState()
    organisation_id, connection_id = ctx.organisation_id, ctx.connection_id
    winners = [r.merged_into for r in records if r.merged_into]
    links = repo.links_by_crm_ids(session, connection_id, [r.id for r in records] + winners)
    # a record merged away unlinked may be a customer's external id: its survivor is theirs
    unlinked = [r for r in records if r.id not in links and (r.merged_into or not r.deleted)]
    by_external = repository.find_customers_by_external_ids(
        session, organisation_id, [r.id for r in unlinked]
    )
    billing_ids = [
        r.billing_id for r in unlinked if r.billing_id and crm_value_problem(r.billing_id) is None
    ]
    wanted = [link.customer_id for link in links.values()] + billing_ids
    rows = repository.get_customers(session, organisation_id, wanted)
    rows.update({row.id: row for row in by_external.values()})
    candidates = [row.id for row in by_external.values()] + billing_ids
    linked = repo.links_by_customer_ids(session, connection_id, candidates)
    conflicted = repo.open_conflict_fields(session, [link.id for link in links.values()])
    # values the store cannot even compare with (a NUL) are not looked up: the rule refuses
    # their records (sync.decide)
    emails = [
        email
        for r in records
        if isinstance(email := r.fields.get("email"), str)
        and email
        and crm_value_problem(email) is None
    ]
    owners = repository.find_customers_by_emails(session, organisation_id, emails)
    email_owners = {email: row.id for email, row in owners.items()}
    email_owners.update({row.email: row.id for row in rows.values() if row.email})
    customers = {row.id: billing_customer(row) for row in rows.values()}
    linked_ids = [link.customer_id for link in links.values()]
    return PageState(
        links={crm_id: link_value(link) for crm_id, link in links.items()},
        customers=customers,
        by_external_id={external: customers[row.id] for external, row in by_external.items()},
        linked_customer_ids=frozenset(linked),
        conflicted={link_id: frozenset(names) for link_id, names in conflicted.items()},
        email_owners=email_owners,
        write_back=_write_backs_refused(session, ctx, linked_ids),
    )


def load_push(
    session: Session, ctx: RunContext, customer_ids: Sequence[str]
) -> tuple[PushState, list[CrmCustomer]]:
    """What deciding a chunk of billing customers needs, and the CRM records of the
    unlinked ones' external ids (read from the CRM by id)."""
    if not customer_ids:
        return PushState(), []
    rows = repository.get_customers(session, ctx.organisation_id, customer_ids)
    links = repo.links_by_customer_ids(session, ctx.connection_id, customer_ids)
    conflicted = repo.open_conflict_fields(session, [link.id for link in links.values()])
    aliases = repo.crm_ids_of_customers(session, ctx.organisation_id, customer_ids)
    customers = [billing_customer(rows[c]) for c in customer_ids if c in rows]
    lookups = [
        row.external_id
        for row in rows.values()
        if row.id not in links
        and row.external_id
        and row.external_id not in aliases.get(row.id, set())
    ]
    found: list[CrmCustomer] = []
    if lookups:
        found = _with_survivors(ctx, ctx.connector.pull_customers_by_ids(lookups))
    unlinked = [c.id for c in customers if c.id not in links]
    held = repo.customers_in_open_merges(session, ctx.connection_id, unlinked)
    state = PushState(
        customers=customers,
        links={customer_id: link_value(link) for customer_id, link in links.items()},
        conflicted={link_id: frozenset(names) for link_id, names in conflicted.items()},
        found=frozenset(r.id for r in found),
        merged_away=frozenset(held),
        write_back=_write_backs_refused(
            session, ctx, [link.customer_id for link in links.values()]
        ),
    )
    return state, found


def _write_backs_refused(
    session: Session, ctx: RunContext, customer_ids: Sequence[str]
) -> frozenset[str]:
    """The customers among these whose billing id the CRM refused in the external-id
    field of their record (an open push failure says so): read only when the connection
    has open failures, so a run without any costs no query."""
    if not ctx.has_failures or not customer_ids:
        return frozenset()
    payloads = repo.open_push_failure_payloads(session, ctx.connection_id, customer_ids)
    return frozenset(c for c, payload in payloads.items() if payload.get(WRITE_BACK))


def _with_survivors(ctx: RunContext, records: Sequence[CrmCustomer]) -> list[CrmCustomer]:
    """The records found by id, and for those merged away since, the survivors (read by
    id: one more call, only when there are merges), so that an external id merged away is
    found in its survivor instead of pushed as a new record."""
    kept = [r for r in records if not r.deleted or r.merged_into]
    survivors = [r.merged_into for r in kept if r.merged_into]
    if survivors:
        kept += [r for r in ctx.connector.pull_customers_by_ids(survivors) if not r.deleted]
    return kept


def load_owners(
    session: Session, ctx: RunContext, contacts: Sequence[CrmContact]
) -> dict[str, str]:
    """CRM account / company id -> its linked customer, for the contacts' owners (and the
    links a plan would have made)."""
    wanted = {c.customer_id for c in contacts if c.customer_id}
    owners = repo.customer_ids_by_crm_ids(session, ctx.connection_id, wanted)
    for crm_id in wanted - owners.keys():
        if crm_id in ctx.unapplied.links:
            owners[crm_id] = ctx.unapplied.links[crm_id]
    return owners
