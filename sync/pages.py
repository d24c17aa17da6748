"""One page of CRM records: link, merge, decide; then push and write, in one transaction.

``sync_customer_page`` is the heart of a run. For a page it reads everything it needs in a
handful of bulk queries (links, customers, open conflicts), decides each record in memory,
pushes the billing-side winners to the CRM in batches, and writes the page with its cursor.
A record that cannot be synced goes to the dead letter; the rest of the page goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from connectors.base import CrmCustomer, CustomerPush, RecordError
from sync.billing import InvalidRecord, apply_fields
from sync.context import PageWork, RunContext
from sync.customer import FieldValue, flatten
from sync.customers import to_public
from sync.merge import FieldConflict, MergeOutcome, merge_record
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.models import CustomerRow, LinkRow, new_id


@dataclass
class PendingPush:
    """A push waiting for its result: on success the pushed values join ``base`` (the
    dict that will be written as the link's base); a create also inserts ``new_link``."""

    push: CustomerPush
    base: dict[str, FieldValue] = field(default_factory=dict)
    new_link: dict[str, Any] | None = None
    set_external_id: bool = False


@dataclass
class PageState:
    """What a page's bulk reads found."""

    links: dict[str, LinkRow]
    customers: dict[str, CustomerRow]
    by_external_id: dict[str, CustomerRow]
    linked_customer_ids: set[str]
    conflicted: dict[str, set[str]]
    #: email -> the customer that has it (unique per organisation)
    email_owners: dict[str, str]


def _dedupe(records: Sequence[CrmCustomer]) -> list[CrmCustomer]:
    """The last version of each record (a pull may overlap at its boundary)."""
    latest: dict[str, CrmCustomer] = {}
    for record in records:
        latest[record.id] = record
    # merges and deletes first, so a merge's survivor finds the re-pointed link
    return sorted(latest.values(), key=lambda r: not r.deleted)


def _load(ctx: RunContext, session: Session, records: list[CrmCustomer]) -> PageState:
    ids = [r.id for r in records]
    winners = [r.merged_into for r in records if r.merged_into]
    links = repo.links_by_crm_ids(session, ctx.connection_id, ids + winners)
    unlinked = [r for r in records if r.id not in links and not r.deleted]
    by_external = repository.find_customers_by_external_ids(
        session, ctx.organisation_id, [r.id for r in unlinked]
    )
    billing_ids = [r.billing_id for r in unlinked if r.billing_id]
    wanted = [link.customer_id for link in links.values()] + billing_ids
    customers = repository.get_customers(session, ctx.organisation_id, wanted)
    customers.update({c.id: c for c in by_external.values()})
    candidates = [c.id for c in by_external.values()] + billing_ids
    linked = set(repo.links_by_customer_ids(session, ctx.connection_id, candidates))
    conflicted = repo.open_conflict_fields(session, [link.id for link in links.values()])
    emails = [str(r.fields["email"]) for r in records if r.fields.get("email")]
    owners = repository.find_customers_by_emails(session, ctx.organisation_id, emails)
    email_owners = {email: c.id for email, c in owners.items()}
    email_owners.update({c.email: c.id for c in customers.values() if c.email})
    return PageState(links, customers, by_external, linked, conflicted, email_owners)


def sync_customer_page(ctx: RunContext, session: Session, page: Sequence[CrmCustomer]) -> None:
    """Decide, push and write one page of CRM accounts / companies (not committed here)."""
    records = _dedupe(page)
    ctx.count("pulled", len(records))
    state = _load(ctx, session, records)
    work = PageWork()
    pushes: list[PendingPush] = []
    for record in records:
        if record.deleted:
            _removed(ctx, state, work, record)
            continue
        link = state.links.get(record.id)
        if link is not None:
            _linked(ctx, state, work, pushes, record, link)
        else:
            _unlinked(ctx, state, work, pushes, record)
    execute_pushes(ctx, work, pushes)
    write_page(ctx, session, work)


# --- deciding ------------------------------------------------------------------------------


def _crm_fields(ctx: RunContext, record: CrmCustomer) -> dict[str, FieldValue]:
    return {name: record.fields[name] for name in ctx.fields if name in record.fields}


def _removed(ctx: RunContext, state: PageState, work: PageWork, record: CrmCustomer) -> None:
    """A CRM delete marks the link; a merge re-points it. A customer is never deleted."""
    link = state.links.get(record.id)
    if link is None or link.state != "active":
        return
    if record.merged_into:
        _merged(ctx, state, work, record, link)
        return
    ctx.count("deleted")
    audit = {"crm_id": record.id, "customer_id": link.customer_id}
    if ctx.plan is not None:
        ctx.plan.removals.append({"kind": "deleted", **audit})
        return
    work.link_updates.append({"id": link.id, "state": "remote_deleted"})
    work.audits.append(_audit(ctx, "crm_deleted", link.customer_id, audit))
    link.state = "remote_deleted"


def _merged(
    ctx: RunContext, state: PageState, work: PageWork, record: CrmCustomer, link: LinkRow
) -> None:
    winner = str(record.merged_into)
    ctx.count("merged")
    survivor = state.links.get(winner)
    detail = {"crm_id": record.id, "merged_into": winner, "customer_id": link.customer_id}
    if survivor is not None and survivor.customer_id != link.customer_id:
        # Two billing customers now point at one CRM record: never merge billing
        # customers automatically; an operator decides.
        conflict = {
            "id": new_id(),
            "organisation_id": ctx.organisation_id,
            "connection_id": ctx.connection_id,
            "link_id": link.id,
            "customer_id": link.customer_id,
            "crm_id": winner,
            "kind": "merge",
            "field": "customer",
            "base_value": record.id,
            "billing_value": link.customer_id,
            "crm_value": survivor.customer_id,
            "status": "open",
        }
        ctx.count("conflicts_opened")
        if ctx.plan is not None:
            ctx.plan.conflicts.append(conflict)
            return
        work.conflicts.append(conflict)
        work.link_updates.append({"id": link.id, "state": "merged", "merged_into": winner})
    elif survivor is not None:
        if ctx.plan is not None:
            ctx.plan.removals.append({"kind": "merged", **detail})
            return
        work.link_updates.append({"id": link.id, "state": "merged", "merged_into": winner})
    else:
        if ctx.plan is not None:
            ctx.plan.removals.append({"kind": "merged", **detail})
            return
        # re-point the link at the survivor; it keeps its base, so the survivor's values
        # merge against what the two sides last agreed on
        work.link_updates.append({"id": link.id, "crm_id": winner, "state": "active"})
        state.links[winner] = link
        link.crm_id = winner
    work.audits.append(_audit(ctx, "crm_merged", link.customer_id, detail))


def _linked(
    ctx: RunContext,
    state: PageState,
    work: PageWork,
    pushes: list[PendingPush],
    record: CrmCustomer,
    link: LinkRow,
) -> None:
    customer = state.customers.get(link.customer_id)
    if customer is None or link.state == "merged":
        return
    update: dict[str, Any] = {"id": link.id}
    if link.state == "remote_deleted":
        ctx.count("restored")
        update["state"] = "active"
        work.audits.append(_audit(ctx, "crm_restored", link.customer_id, {"crm_id": record.id}))
        if ctx.plan is not None:
            ctx.plan.removals.append(
                {"kind": "restored", "crm_id": record.id, "customer_id": link.customer_id}
            )
    crm = _crm_fields(ctx, record)
    public = to_public(customer)
    outcome = merge_record(
        fields=ctx.fields,
        billing=flatten(public),
        crm=crm,
        base=link.base,
        directions=ctx.directions,
        conflicted=state.conflicted.get(link.id, set()),
        mode=ctx.match_mode,
    )
    _apply_outcome(ctx, state, work, pushes, record, customer, public, outcome, update, first=False)


def _unlinked(
    ctx: RunContext,
    state: PageState,
    work: PageWork,
    pushes: list[PendingPush],
    record: CrmCustomer,
) -> None:
    customer = (
        state.customers.get(record.billing_id) if record.billing_id else None
    ) or state.by_external_id.get(record.id)
    if customer is not None and customer.id in state.linked_customer_ids:
        # a customer has one record per connection: this one is reported, not linked
        work.failures.append(
            ctx.failure(
                "pull",
                crm_id=record.id,
                customer_id=customer.id,
                payload={"fields": dict(record.fields)},
                kind="duplicate",
                message=f"customer {customer.id} is already linked to another record of this CRM",
            )
        )
        return
    if customer is None:
        _create_customer(ctx, state, work, record)
        return
    # first link to an existing customer: the match rule decides name and address
    ctx.count("linked")
    crm = _crm_fields(ctx, record)
    public = to_public(customer)
    outcome = merge_record(
        fields=ctx.fields,
        billing=flatten(public),
        crm=crm,
        base=None,
        directions=ctx.directions,
        mode=ctx.match_mode,
    )
    link_id = new_id()
    state.linked_customer_ids.add(customer.id)
    new_link = {
        "id": link_id,
        "organisation_id": ctx.organisation_id,
        "connection_id": ctx.connection_id,
        "customer_id": customer.id,
        "crm_id": record.id,
        "state": "active",
        "merged_into": None,
    }
    if ctx.plan is not None:
        ctx.plan.links.append(
            {"crm_id": record.id, "customer_id": customer.id, "name": public["customer_name"]}
        )
    _apply_outcome(
        ctx, state, work, pushes, record, customer, public, outcome, new_link, first=True
    )


def _create_customer(
    ctx: RunContext, state: PageState, work: PageWork, record: CrmCustomer
) -> None:
    crm = _crm_fields(ctx, record)
    if ctx.create_policy == "ignore":
        ctx.count("ignored")
        if ctx.plan is not None:
            ctx.plan.ignored.append({"crm_id": record.id, "name": crm.get("customer_name")})
        return
    values = {k: v for k, v in crm.items() if ctx.directions.get(k, "both") != "none"}
    try:
        columns = apply_fields({"external_id": record.id}, values)
    except InvalidRecord as error:
        _pull_failure(ctx, work, record, "validation", str(error))
        return
    customer_id = new_id()
    if _email_taken(ctx, state, work, record, customer_id, columns):
        return
    ctx.count("created")
    if ctx.plan is not None:
        ctx.plan.billing_creates.append(
            {"crm_id": record.id, "customer_name": columns["customer_name"]}
        )
        return
    work.new_customers.append({"id": customer_id, **columns})
    work.new_links.append(
        {
            "id": new_id(),
            "organisation_id": ctx.organisation_id,
            "connection_id": ctx.connection_id,
            "customer_id": customer_id,
            "crm_id": record.id,
            "base": crm,
            "crm_last": {},
            "billing_last": {},
            "crm_modified_at": record.modified_at,
            "state": "active",
        }
    )
    work.outbox.append((customer_id, sorted(k for k, v in crm.items() if v not in (None, ""))))
    work.synced_crm_ids.append(record.id)


def _apply_outcome(
    ctx: RunContext,
    state: PageState,
    work: PageWork,
    pushes: list[PendingPush],
    record: CrmCustomer,
    customer: CustomerRow,
    public: dict[str, Any],
    outcome: MergeOutcome,
    link_row: dict[str, Any],
    *,
    first: bool,
) -> None:
    """Turn one record's merge outcome into writes, pushes and conflicts (or plan lines)."""
    crm = _crm_fields(ctx, record)
    billing_columns: dict[str, Any] | None = None
    if outcome.to_billing:
        try:
            billing_columns = apply_fields(public, outcome.to_billing)
        except InvalidRecord as error:
            _pull_failure(ctx, work, record, "validation", str(error), customer.id)
            return
        taken = "email" in outcome.to_billing and _other_email_owner(
            state, customer.id, billing_columns.get("email")
        )
        if taken:
            # E-mails are unique per organisation (after a CRM merge, say, the survivor
            # may carry the other customer's): hold the field as a conflict for the
            # operator and sync the rest of the record.
            crm_email = outcome.to_billing.pop("email")
            previous = {} if first else state.links[record.id].base
            outcome.base.pop("email", None)
            if "email" in previous:
                outcome.base["email"] = previous["email"]
            outcome.conflicts.append(
                FieldConflict("email", previous.get("email"), public.get("email"), crm_email)
            )
            billing_columns = (
                apply_fields(public, outcome.to_billing) if outcome.to_billing else None
            )
    for conflict in outcome.conflicts:
        ctx.count("conflicts_opened")
        row = {
            "id": new_id(),
            "organisation_id": ctx.organisation_id,
            "connection_id": ctx.connection_id,
            "link_id": link_row["id"],
            "customer_id": customer.id,
            "crm_id": record.id,
            "kind": "field",
            "field": conflict.field,
            "base_value": conflict.base,
            "billing_value": conflict.billing,
            "crm_value": conflict.crm,
            "status": "open",
        }
        (ctx.plan.conflicts if ctx.plan is not None else work.conflicts).append(row)
    if ctx.plan is not None:
        for name, value in outcome.to_billing.items():
            ctx.plan.billing_update(customer.id, record.id, name, public_value(public, name), value)
        for name, value in outcome.to_crm.items():
            ctx.plan.crm_update(customer.id, record.id, name, crm.get(name), value)
        if not (outcome.to_billing or outcome.to_crm or outcome.conflicts):
            ctx.count("unchanged")
        return

    base = dict(outcome.base)
    billing_after = flatten({**public, **billing_columns}) if billing_columns else flatten(public)
    if billing_columns is not None:
        changed = {k: v for k, v in billing_columns.items() if public.get(k) != v}
        if changed:
            ctx.count("updated")
            work.customer_updates.append({"id": customer.id, **changed})
            work.outbox.append((customer.id, sorted(outcome.to_billing)))
    elif not (outcome.to_crm or outcome.conflicts) and not first:
        ctx.count("unchanged")
    link_row.update(
        base=base,
        crm_last=_unless_base(crm, base),
        billing_last=_unless_base({k: billing_after.get(k) for k in ctx.fields}, base),
        crm_modified_at=record.modified_at,
    )
    if first:
        work.new_links.append(link_row)
    elif _link_changed(state.links[record.id], link_row):
        work.link_updates.append(link_row)
    if outcome.to_crm:
        push = CustomerPush(billing_id=customer.id, crm_id=record.id, fields=dict(outcome.to_crm))
        pushes.append(PendingPush(push=push, base=base))
    work.synced_crm_ids.append(record.id)


def _unless_base(
    values: dict[str, FieldValue], base: dict[str, FieldValue]
) -> dict[str, FieldValue]:
    """What a side last had, stored only where it differs from the base ({} = the base):
    in the steady state both sides equal the base, and a link is written with one dict
    instead of three."""
    return {} if values == base else values


def public_value(public: dict[str, Any], name: str) -> FieldValue:
    return flatten(public).get(name)


def _link_changed(link: LinkRow, row: dict[str, Any]) -> bool:
    """Skip rewriting a link that would not change (the common case on an echo)."""
    if set(row) - {"id", "base", "crm_last", "billing_last", "crm_modified_at"}:
        return True
    return bool(
        row["base"] != link.base
        or row["crm_last"] != link.crm_last
        or row["billing_last"] != link.billing_last
    )


def _pull_failure(
    ctx: RunContext,
    work: PageWork,
    record: CrmCustomer,
    kind: str,
    message: str,
    customer_id: str | None = None,
) -> None:
    row = ctx.failure(
        "pull",
        crm_id=record.id,
        customer_id=customer_id,
        payload={"fields": dict(record.fields)},
        kind=kind,
        message=message,
    )
    if ctx.plan is not None:
        ctx.plan.failures.append(row)
    else:
        work.failures.append(row)


def _other_email_owner(state: PageState, customer_id: str, email: Any) -> str | None:
    """The other customer that already has ``email`` (unique per organisation), if any;
    otherwise ``customer_id`` now owns it for the rest of the page."""
    if not email:
        return None
    owner = state.email_owners.setdefault(email, customer_id)
    return None if owner == customer_id else owner


def _email_taken(
    ctx: RunContext,
    state: PageState,
    work: PageWork,
    record: CrmCustomer,
    customer_id: str,
    columns: dict[str, Any],
) -> bool:
    """A new customer whose CRM e-mail another customer already has is not created: the
    record goes to the dead letter, and the rest of the page goes on."""
    owner = _other_email_owner(state, customer_id, columns.get("email"))
    if owner is None:
        return False
    email = columns.get("email")
    _pull_failure(
        ctx,
        work,
        record,
        "duplicate",
        f"email {email!r} belongs to another customer ({owner})",
        customer_id,
    )
    return True


# --- pushing and writing -------------------------------------------------------------------


def execute_pushes(ctx: RunContext, work: PageWork, pushes: list[PendingPush]) -> None:
    """Push billing-side winners to the CRM in batches; results are matched by billing id.
    A record the CRM refuses goes to the dead letter; its base stays, so it is retried."""
    if not pushes or ctx.plan is not None:
        return
    before = ctx.connector.api_calls
    results = {r.billing_id: r for r in ctx.connector.push_customers([p.push for p in pushes])}
    ctx.count("calls_push", ctx.connector.api_calls - before)
    for pending in pushes:
        push = pending.push
        result = results.get(push.billing_id)
        if result is None or result.error is not None or result.crm_id is None:
            error = (
                result.error
                if result is not None and result.error is not None
                else RecordError("other", "NO_RESULT", "the CRM returned no result for this record")
            )
            work.failures.append(
                ctx.push_failure(push.billing_id, push.crm_id, dict(push.fields), error)
            )
            continue
        pending.base.update(push.fields)
        work.synced_customer_ids.append(push.billing_id)
        if push.crm_id is None:
            ctx.count("crm_created")
        else:
            ctx.count("pushed")
        if pending.new_link is not None:
            pending.new_link.update(crm_id=result.crm_id, base=pending.base, crm_last={})
            work.new_links.append(pending.new_link)
        if pending.set_external_id:
            work.customer_updates.append({"id": push.billing_id, "external_id": result.crm_id})


def write_page(ctx: RunContext, session: Session, work: PageWork) -> None:
    """Write a page's decisions in bulk (the caller commits with the cursor)."""
    if ctx.plan is not None:
        return
    repository.insert_customers(session, ctx.organisation_id, work.new_customers)
    repository.update_customers(session, ctx.organisation_id, work.customer_updates)
    repo.insert_links(session, work.new_links)
    repo.update_links(session, work.link_updates)
    repo.insert_conflicts(session, work.conflicts)
    repo.record_failures(session, work.failures)
    if ctx.fan_out:
        repository.add_outbox_entries(
            session, ctx.organisation_id, work.outbox, origin_connection_id=ctx.connection_id
        )
    repo.add_audits(session, work.audits)
    if ctx.has_failures:
        repo.resolve_failures_for(session, ctx.connection_id, "pull", work.synced_crm_ids)
        repo.resolve_failures_for(session, ctx.connection_id, "push", work.synced_customer_ids)


def _audit(
    ctx: RunContext, action: str, customer_id: str, detail: dict[str, Any]
) -> dict[str, Any]:
    return {
        "organisation_id": ctx.organisation_id,
        "actor": f"sync:{ctx.connection_id}",
        "action": action,
        "subject": customer_id,
        "detail": detail,
    }
