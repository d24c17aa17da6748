"""Deciding: CRM records and customers in, a typed decision out; nothing is read or written.

:func:`decide_page` decides a page of CRM accounts / companies: a deleted record marks its
link (a merged one re-points it), a linked record merges three ways against its link's
base, an unlinked one links to the customer with its external id (the match rule decides
name and address) or becomes a new customer. :func:`decide_pushes` decides the billing
side's own changes: fields to push for linked customers, CRM records to create for
unlinked ones. Contacts are decided in :mod:`sync.contact_sync`.

Every function here is pure: it is given what the page's bulk reads found
(:class:`PageState`, :class:`PushState`) and the connection's :class:`Policy`, and
returns :mod:`sync.decision` values. Tests call it without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from connectors.base import CrmCustomer
from sync.billing import InvalidRecord, validated, validated_new
from sync.customer import NO_CONTROL_CHARACTERS, crm_fields_problem
from sync.decision import (
    Audit,
    BillingCustomer,
    ConflictOpen,
    Count,
    CrmPush,
    CustomerChange,
    Failure,
    Fields,
    Link,
    LinkMove,
    LinkWrite,
    NewCustomer,
    RecordDecision,
)
from sync.match import MatchMode, canonical
from sync.merge import FieldConflict, MergeOutcome, merge_record
from sync.store.models import new_id


@dataclass(frozen=True)
class Policy:
    """How one connection syncs: the fields it maps, each field's direction (absent:
    ``both``), the match mode, and what becomes of a CRM record without a customer
    (``create_policy``) and of a customer without a CRM record (``push_creates``)."""

    organisation_id: str
    connection_id: str
    fields: tuple[str, ...]
    directions: Mapping[str, str] = field(default_factory=dict)
    match_mode: MatchMode = "exact"
    create_policy: str = "create"
    push_creates: bool = True

    def direction(self, name: str) -> str:
        return self.directions.get(name, "both")

    @cached_property
    def mapped(self) -> frozenset[str]:
        return frozenset(self.fields)

    @cached_property
    def unsynced(self) -> frozenset[str]:
        """The mapped fields whose direction is ``none``."""
        return frozenset(n for n in self.fields if self.direction(n) == "none")


@dataclass(frozen=True)
class PageState:
    """What the bulk reads of a page of CRM records found."""

    #: by CRM id: the links of the page's records and of merge survivors
    links: Mapping[str, Link] = field(default_factory=dict)
    #: by id: the linked customers, and the candidates of unlinked records
    customers: Mapping[str, BillingCustomer] = field(default_factory=dict)
    by_external_id: Mapping[str, BillingCustomer] = field(default_factory=dict)
    #: candidates that already have a link in this connection
    linked_customer_ids: frozenset[str] = frozenset()
    #: by link id: the fields with an open conflict
    conflicted: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: e-mail -> the customer that has it (unique in the organisation)
    email_owners: Mapping[str, str] = field(default_factory=dict)
    #: linked customers whose billing id the CRM refused to take (an open failure)
    write_back: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PushState:
    """What the bulk reads of a chunk of billing customers to push found."""

    customers: Sequence[BillingCustomer] = ()
    #: by customer id: the active or deleted link in this connection
    links: Mapping[str, Link] = field(default_factory=dict)
    conflicted: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: external ids that were found as records of this CRM (decided by decide_page)
    found: frozenset[str] = frozenset()
    #: customers whose CRM record was merged into another customer's (an open merge
    #: conflict): creating one for them would undo the CRM's merge, so they wait for it
    merged_away: frozenset[str] = frozenset()
    #: linked customers whose billing id the CRM refused to take (an open failure)
    write_back: frozenset[str] = frozenset()


class _Scratch:
    """What deciding one page has settled so far, on top of the state it was given: a
    merge re-points a link, a link claims a customer, a new or changed e-mail an owner."""

    def __init__(self, state: PageState) -> None:
        self.state = state
        self.links = dict(state.links)
        self.linked = set(state.linked_customer_ids)
        self.email_owners = dict(state.email_owners)
        #: survivor's CRM id -> the unlinked customer a record merged into it belonged to
        self.claims: dict[str, BillingCustomer] = {}

    def other_email_owner(self, customer_id: str, email: object) -> str | None:
        """The other customer that has ``email``, if any; else ``customer_id`` has it now."""
        if not isinstance(email, str) or not email:
            return None
        owner = self.email_owners.setdefault(email, customer_id)
        return None if owner == customer_id else owner


def decide_page(
    policy: Policy, state: PageState, records: Iterable[CrmCustomer]
) -> tuple[RecordDecision, ...]:
    """Decide a page of CRM records (the last version of each; deletes and merges first)."""
    scratch = _Scratch(state)
    decisions = (_decide_record(policy, scratch, record) for record in latest(records))
    return tuple(d for d in decisions if d is not None)


def latest(records: Iterable[CrmCustomer]) -> list[CrmCustomer]:
    """The last version of each record (a pull may overlap at its boundary), deletes and
    merges first, so that a merge's survivor finds the re-pointed link."""
    by_id = {record.id: record for record in records}
    return sorted(by_id.values(), key=lambda r: not r.deleted)


def _decide_record(policy: Policy, scratch: _Scratch, record: CrmCustomer) -> RecordDecision | None:
    if record.deleted:
        return _removed(scratch, record)
    link = scratch.links.get(record.id)
    problem = crm_fields_problem(crm_fields(policy, record))
    if problem is not None:
        # refused whole (its base would keep the value), and the rest of the page goes on
        owner = link.customer_id if link is not None else None
        return pull_failure(record, "validation", problem, owner, code=NO_CONTROL_CHARACTERS)
    if link is not None:
        return _linked(policy, scratch, record, link)
    return _unlinked(policy, scratch, record)


def crm_fields(policy: Policy, record: CrmCustomer) -> Fields:
    """The record's values of the fields this connection maps."""
    if record.fields.keys() <= policy.mapped:  # as a connector reads them: a plain copy
        return dict(record.fields)
    return {name: record.fields[name] for name in policy.fields if name in record.fields}


# --- deletes and merges --------------------------------------------------------------------


def _removed(scratch: _Scratch, record: CrmCustomer) -> RecordDecision | None:
    """A CRM delete marks the link; a merge re-points it. A customer is never deleted."""
    link = scratch.links.get(record.id)
    if link is None and record.merged_into:
        return _merged_unlinked(scratch, record, record.merged_into)
    if link is None or link.state != "active":
        return None
    if record.merged_into:
        return _merged(scratch, record, link, record.merged_into)
    detail = {"crm_id": record.id, "customer_id": link.customer_id}
    return RecordDecision(
        record.id,
        link.customer_id,
        counts=("deleted",),
        move=LinkMove(link.id, "remote_deleted"),
        audits=(Audit("crm_deleted", link.customer_id, detail),),
    )


def _merged(scratch: _Scratch, record: CrmCustomer, link: Link, winner: str) -> RecordDecision:
    survivor = scratch.links.get(winner)
    detail = {"crm_id": record.id, "merged_into": winner, "customer_id": link.customer_id}
    conflicts: tuple[ConflictOpen, ...] = ()
    if survivor is not None and survivor.customer_id != link.customer_id:
        # Two billing customers now point at one CRM record: never merge billing
        # customers automatically; an operator decides.
        conflict = ConflictOpen(
            new_id(),
            link.id,
            link.customer_id,
            winner,
            "customer",
            base=record.id,
            billing=link.customer_id,
            crm=survivor.customer_id,
            kind="merge",
        )
        conflicts = (conflict,)
        move = LinkMove(link.id, "merged", merged_into=winner)
    elif survivor is not None:
        move = LinkMove(link.id, "merged", merged_into=winner)
    else:
        # re-point the link at the survivor; it keeps its base, so the survivor's values
        # merge against what the two sides last agreed on
        move = LinkMove(link.id, "active", crm_id=winner)
        scratch.links[winner] = replace(link, crm_id=winner)
    return RecordDecision(
        record.id,
        link.customer_id,
        counts=("merged",),
        move=move,
        conflicts=conflicts,
        audits=(Audit("crm_merged", link.customer_id, detail),),
    )


def _merged_unlinked(scratch: _Scratch, record: CrmCustomer, winner: str) -> RecordDecision | None:
    """A record merged away before it was linked, whose id is an unlinked customer's
    external id (billing made it from the CRM, or imported it): the survivor belongs to
    that customer, found by the CRM's merge list instead of becoming a new customer. When
    the survivor has a customer already, the two meet in a merge conflict, as linked ones
    do, and this customer's link is kept as merged (so it is never pushed as a create)."""
    customer = scratch.state.by_external_id.get(record.id)
    if customer is None or customer.id in scratch.linked:
        return None
    owner = _survivor_owner(scratch, winner)
    if owner is None:
        scratch.claims[winner] = customer
        return None
    if owner == customer.id:
        return None
    scratch.linked.add(customer.id)
    link_id = new_id()
    link = LinkWrite(link_id, customer.id, record.id, base={}, new=True, state="merged")
    conflict = ConflictOpen(
        new_id(),
        link_id,
        customer.id,
        winner,
        "customer",
        base=record.id,
        billing=customer.id,
        crm=owner,
        kind="merge",
    )
    detail = {"crm_id": record.id, "merged_into": winner, "customer_id": customer.id}
    return RecordDecision(
        record.id,
        customer.id,
        counts=("merged",),
        link=link,
        move=LinkMove(link_id, "merged", merged_into=winner),
        conflicts=(conflict,),
        audits=(Audit("crm_merged", customer.id, detail),),
    )


def _survivor_owner(scratch: _Scratch, winner: str) -> str | None:
    """The customer a merge survivor belongs to so far: its link's, a claim's, or the
    unlinked customer whose external id it is (a merge that kept the primary's id)."""
    link = scratch.links.get(winner)
    if link is not None:
        return link.customer_id
    claim = scratch.claims.get(winner)
    if claim is not None:
        return claim.id
    own = scratch.state.by_external_id.get(winner)
    if own is not None and own.id not in scratch.linked:
        return own.id
    return None


# --- linked and unlinked records -----------------------------------------------------------


def _linked(
    policy: Policy, scratch: _Scratch, record: CrmCustomer, link: Link
) -> RecordDecision | None:
    customer = scratch.state.customers.get(link.customer_id)
    if customer is None or link.state == "merged":
        return None
    crm = crm_fields(policy, record)
    outcome = merge_record(
        fields=policy.fields,
        billing=customer.fields,
        crm=crm,
        base=link.base,
        directions=policy.directions,
        conflicted=scratch.state.conflicted.get(link.id, frozenset()),
        mode=policy.match_mode,
    )
    return _merged_record(policy, scratch, record, customer, crm, outcome, link)


def _unlinked(policy: Policy, scratch: _Scratch, record: CrmCustomer) -> RecordDecision:
    customer = (
        (scratch.state.customers.get(record.billing_id) if record.billing_id else None)
        or scratch.state.by_external_id.get(record.id)
        or scratch.claims.get(record.id)
    )
    if customer is None:
        return _new_customer(policy, scratch, record)
    if customer.id in scratch.linked:
        # a customer has one record per connection: this one is reported, not linked
        message = f"customer {customer.id} is already linked to another record of this CRM"
        return pull_failure(record, "duplicate", message, customer.id)
    # first link to an existing customer: the match rule decides name and address
    scratch.linked.add(customer.id)
    crm = crm_fields(policy, record)
    outcome = merge_record(
        fields=policy.fields,
        billing=customer.fields,
        crm=crm,
        base=None,
        directions=policy.directions,
        mode=policy.match_mode,
    )
    return _merged_record(policy, scratch, record, customer, crm, outcome, None)


def _new_customer(policy: Policy, scratch: _Scratch, record: CrmCustomer) -> RecordDecision:
    crm = crm_fields(policy, record)
    name = crm.get("customer_name")
    if policy.create_policy == "ignore":
        return RecordDecision(record.id, None, counts=("ignored",), name=name)
    values = (
        dict(crm)
        if not policy.unsynced
        else {k: v for k, v in crm.items() if k not in policy.unsynced}
    )
    values["external_id"] = record.id
    try:
        fields = validated_new(values)
    except InvalidRecord as error:
        return pull_failure(record, "validation", str(error))
    customer_id = new_id()
    owner = scratch.other_email_owner(customer_id, fields.get("email"))
    if owner is not None:
        # the record goes to the dead letter, and the rest of the page goes on
        message = f"email {fields.get('email')!r} belongs to another customer ({owner})"
        return pull_failure(record, "duplicate", message, customer_id)
    link = LinkWrite(
        new_id(),
        customer_id,
        record.id,
        base=crm,
        new=True,
        crm_last={},
        billing_last={},
        crm_modified_at=record.modified_at,
        state="active",
    )
    return RecordDecision(
        record.id,
        customer_id,
        counts=("created",),
        name=fields.get("customer_name"),
        new_customer=NewCustomer(customer_id, fields),
        link=link,
        synced=True,
    )


def _merged_record(
    policy: Policy,
    scratch: _Scratch,
    record: CrmCustomer,
    customer: BillingCustomer,
    crm: Fields,
    outcome: MergeOutcome,
    link: Link | None,
) -> RecordDecision:
    """One merged record as a decision: billing changes, conflicts, link and push."""
    try:
        change, outcome = _billing_change(scratch, customer, outcome, link)
    except InvalidRecord as error:
        return pull_failure(record, "validation", str(error), customer.id)
    link_id = link.id if link is not None else new_id()
    conflicts = tuple(
        ConflictOpen(new_id(), link_id, customer.id, record.id, c.field, c.base, c.billing, c.crm)
        for c in outcome.conflicts
    )
    write = _link_write(policy, record, customer, crm, outcome, change, link, link_id)
    push = _crm_push(scratch, record, customer, crm, outcome, link, write)
    restored = link is not None and link.state == "remote_deleted"
    counts: list[Count] = ["linked"] if link is None else ["restored"] if restored else []
    if change is not None:
        counts.append("updated")
    elif link is not None and push is None and not outcome.conflicts:
        counts.append("unchanged")
    audits = (Audit("crm_restored", customer.id, {"crm_id": record.id}),) if restored else ()
    return RecordDecision(
        record.id,
        customer.id,
        counts=tuple(counts),
        name=customer.fields.get("customer_name"),
        change=change,
        link=write if link is None or restored or _link_changed(link, write) else None,
        conflicts=conflicts,
        push=push,
        audits=audits,
        outbox=tuple(sorted(change.changes)) if change is not None else (),
        synced=True,
    )


def _crm_push(
    scratch: _Scratch,
    record: CrmCustomer,
    customer: BillingCustomer,
    crm: Fields,
    outcome: MergeOutcome,
    link: Link | None,
    write: LinkWrite,
) -> CrmPush | None:
    """What a merged record pushes to the CRM: the merge's values for it, and the
    customer's id when the record is to take it."""
    # a record linked to a customer billing already had takes the customer's id in its
    # external-id field, with the page's other pushes (one batch), so that it is found
    # again whatever becomes of its CRM id; a record billing made from it is found by its
    # CRM id (the customer's external id) and the CRM's merge lists, at no call. A write
    # the CRM refused is made again whenever the record comes by, until it takes.
    write_back = record.billing_id != customer.id and (
        link is None or customer.id in scratch.state.write_back
    )
    if not outcome.to_crm and not write_back:
        return None
    before = {name: crm.get(name) for name in outcome.to_crm}
    return CrmPush(
        customer.id,
        record.id,
        dict(outcome.to_crm),
        write.id,
        write.base,
        before,
        write_billing_id=write_back,
    )


def _billing_change(
    scratch: _Scratch, customer: BillingCustomer, outcome: MergeOutcome, link: Link | None
) -> tuple[CustomerChange | None, MergeOutcome]:
    """The validated billing side of a merge outcome (raises :class:`InvalidRecord`).

    E-mails are unique per organisation (after a CRM merge, say, the survivor may carry the
    other customer's): such an e-mail is held as a conflict for the operator, and the rest
    of the record syncs."""
    if not outcome.to_billing:
        return None, outcome
    changes = validated(customer.fields, outcome.to_billing)
    if "email" in changes and scratch.other_email_owner(customer.id, changes["email"]):
        outcome = _email_held(outcome, customer, link)
        changes = validated(customer.fields, outcome.to_billing) if outcome.to_billing else {}
    effective = {k: v for k, v in changes.items() if customer.fields.get(k) != v}
    return (CustomerChange(customer, effective) if effective else None), outcome


def _email_held(
    outcome: MergeOutcome, customer: BillingCustomer, link: Link | None
) -> MergeOutcome:
    previous = link.base if link is not None else {}
    to_billing = dict(outcome.to_billing)
    crm_email = to_billing.pop("email")
    base = {k: v for k, v in outcome.base.items() if k != "email"}
    if "email" in previous:
        base["email"] = previous["email"]
    conflict = FieldConflict(
        "email", previous.get("email"), customer.fields.get("email"), crm_email
    )
    return MergeOutcome(to_billing, dict(outcome.to_crm), base, [*outcome.conflicts, conflict])


def _link_write(
    policy: Policy,
    record: CrmCustomer,
    customer: BillingCustomer,
    crm: Fields,
    outcome: MergeOutcome,
    change: CustomerChange | None,
    link: Link | None,
    link_id: str,
) -> LinkWrite:
    base = dict(outcome.base)
    after = {**customer.fields, **change.changes} if change is not None else customer.fields
    billing = {name: after.get(name) for name in policy.fields}
    return LinkWrite(
        link_id,
        customer.id,
        record.id,
        base=base,
        new=link is None,
        crm_last=unless_base(crm, base),
        billing_last=unless_base(billing, base),
        crm_modified_at=record.modified_at,
        state="active" if link is None or link.state != "active" else None,
    )


def unless_base(values: Fields, base: Fields) -> Fields:
    """What a side last had, stored only where it differs from the base ({} = the base):
    in the steady state both sides equal the base, and a link is written with one dict
    instead of three."""
    return {} if values == base else values


def _link_changed(link: Link, write: LinkWrite) -> bool:
    """Skip rewriting a link that would not change (the common case on an echo)."""
    return (write.base, write.crm_last, write.billing_last) != (
        link.base,
        link.crm_last,
        link.billing_last,
    )


def pull_failure(
    record: CrmCustomer,
    kind: str,
    message: str,
    customer_id: str | None = None,
    *,
    code: str = "",
) -> RecordDecision:
    """A CRM record that goes to the dead letter; the rest of its page goes on."""
    failure = Failure(
        "pull", record.id, customer_id, {"fields": dict(record.fields)}, kind, message, code
    )
    return RecordDecision(record.id, customer_id, counts=("failed",), failure=failure)


# --- the billing side's own changes --------------------------------------------------------


def decide_pushes(policy: Policy, state: PushState) -> tuple[RecordDecision, ...]:
    """Decide billing customers: push what changed since the base (linked ones), create a
    CRM record (unlinked ones whose external id is not a record of this CRM)."""
    decisions: list[RecordDecision | None] = []
    for customer in state.customers:
        link = state.links.get(customer.id)
        if link is not None:
            conflicted = state.conflicted.get(link.id, frozenset())
            write_back = customer.id in state.write_back
            decisions.append(_push_linked(policy, customer, link, conflicted, write_back))
        elif (
            customer.fields.get("external_id") not in state.found
            and customer.id not in state.merged_away
        ):
            decisions.append(_create_in_crm(policy, customer))
    return tuple(d for d in decisions if d is not None)


def _push_linked(
    policy: Policy,
    customer: BillingCustomer,
    link: Link,
    conflicted: frozenset[str],
    write_back: bool = False,
) -> RecordDecision | None:
    """``write_back``: the CRM refused the customer's id in the record's external-id field
    (a dead-letter failure): it goes with the push, or alone."""
    if link.state != "active":
        return None
    to_crm: Fields = {}
    to_billing: Fields = {}
    for name in policy.fields:
        direction = policy.direction(name)
        value, agreed = customer.fields.get(name), link.base.get(name)
        if direction == "none" or name in conflicted:
            continue
        if canonical(value, policy.match_mode, name) == canonical(agreed, policy.match_mode, name):
            continue
        if direction == "crm_to_billing":
            to_billing[name] = agreed  # billing may not change a CRM-owned field: put it back
        else:
            to_crm[name] = value
    change, failure = _reset_billing(customer, link, to_billing)
    push = None
    if to_crm or write_back:
        before = {name: link.base.get(name) for name in to_crm}
        push = CrmPush(
            customer.id,
            link.crm_id,
            to_crm,
            link.id,
            dict(link.base),
            before,
            write_billing_id=write_back,
        )
    if change is None and failure is None and push is None:
        return None
    counts: list[Count] = ["updated"] if change else []
    if failure is not None:
        counts.append("failed")
    return RecordDecision(
        link.crm_id,
        customer.id,
        counts=tuple(counts),
        name=customer.fields.get("customer_name"),
        change=change,
        push=push,
        failure=failure,
    )


def _reset_billing(
    customer: BillingCustomer, link: Link, to_billing: Fields
) -> tuple[CustomerChange | None, Failure | None]:
    if not to_billing:
        return None, None
    try:
        changes = validated(customer.fields, to_billing)
    except InvalidRecord as error:
        # the CRM's value (the base) no longer passes the customer model: say so
        payload = {"fields": dict(to_billing)}
        return None, Failure("pull", link.crm_id, customer.id, payload, "validation", str(error))
    effective = {k: v for k, v in changes.items() if customer.fields.get(k) != v}
    return (CustomerChange(customer, effective) if effective else None), None


def _create_in_crm(policy: Policy, customer: BillingCustomer) -> RecordDecision | None:
    if not policy.push_creates:
        return None
    fields = {
        name: customer.fields.get(name)
        for name in policy.fields
        if policy.direction(name) in ("both", "billing_to_crm")
        and customer.fields.get(name) not in (None, "")
    }
    push = CrmPush(
        customer.id,
        None,
        fields,
        new_id(),
        {},
        set_external_id=customer.fields.get("external_id") is None,
    )
    return RecordDecision(None, customer.id, name=customer.fields.get("customer_name"), push=push)
