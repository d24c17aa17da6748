"""Secondary contacts both ways: CRM contacts into billing, billing contacts out to the CRM.

A billing contact syncs with one CRM contact of the customer's linked account / company.
Like a customer's link, a contact keeps the **base**: the values (``name``, ``email`` and,
where the connection maps a communications field, ``communications``) both sides agreed on
at the last sync. Per field, the three-way merge of :func:`sync.merge.merge_record`:

- only the CRM changed → the billing contact takes the CRM's value;
- only billing changed → the contact stays ``pending`` and is pushed;
- both changed differently → a ``contact`` conflict; neither side is written for that
  field until an operator resolves it.

A CRM contact without a billing contact is matched by e-mail (case-insensitive) among its
customer's contacts that no CRM has yet, else it becomes a new one. A pushed value joins
the base, so it does not come back as a change on the next pull (echo suppression). A
delete on either side is never carried over: a contact the CRM deleted (or moved to an
account that is not linked) is kept and flagged ``crm_deleted``, and never pushed again.

Deciding is pure (:func:`decide_contacts`, :func:`decide_contact_pushes`); loading and
applying are at the store's edge (:func:`load_contacts`, :func:`load_contact_pushes`,
:func:`apply_contacts`). A plan shows the same decision.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from connectors.base import (
    CONTACT_FIELDS,
    ContactFinder,
    ContactPush,
    ContactWriter,
    CrmContact,
    PushResult,
    RecordError,
)
from sync.context import RunContext
from sync.customer import NO_CONTROL_CHARACTERS, contact_problem
from sync.decision import (
    ContactAdoption,
    ContactChange,
    ContactConflict,
    ContactFields,
    ContactPushWrite,
    ContactRow,
    ContactsDecision,
    ContactTaken,
    Failure,
)
from sync.merge import merge_record
from sync.pushes_made import PushesMadeBy
from sync.store import contact_repository as contacts_repo
from sync.store import sync_repository as repo
from sync.store.convert import conflict_row
from sync.store.models import ContactRow as ContactTable
from sync.store.models import new_id, utcnow

log = logging.getLogger("crmsync.contacts")

#: the dead letter's direction for a contact the CRM refused
CONTACT_FAILURE = "contact"
_NO_RESULT = RecordError("other", "NO_RESULT", "the CRM returned no result for this contact")
#: the dead letter's code for a create whose e-mail another billing contact has in the CRM
CONTACT_EMAIL_TAKEN = "CONTACT_EMAIL_TAKEN"


@dataclass(frozen=True)
class BillingContact:
    """A billing contact as values, with its CRM contact in this connection: its synced
    fields, the CRM contact's id and base (None: none in this connection yet), the
    contact's ``version`` and the one that CRM contact has (``link_version``); ``home``:
    that link is (or is to be) kept on the contact's row, or in ``contact_links`` (None:
    the first link of a row that has none). ``restorable``: flagged by
    this connection (or not flagged), so a pull of this CRM can restore it."""

    id: str
    customer_id: str
    crm_id: str | None
    fields: ContactFields
    base: ContactFields | None
    state: str = "active"
    version: int = 0
    pending: bool = False
    link_version: int = 0
    home: bool | None = None
    restorable: bool = True


@dataclass(frozen=True)
class ContactsState:
    """What deciding a page of CRM contacts needs."""

    #: CRM account / company id -> its linked customer
    owners: Mapping[str, str] = field(default_factory=dict)
    #: this connection's contacts, by CRM contact id
    by_crm_id: Mapping[str, BillingContact] = field(default_factory=dict)
    #: billing contacts no CRM has yet, by (customer id, casefolded e-mail)
    unsynced: Mapping[tuple[str, str], BillingContact] = field(default_factory=dict)
    #: CRM contact id -> fields with an open conflict
    conflicted: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: the connection maps a communications field
    communications: bool = False
    #: customers linked in other connections too: a CRM change taken from this one is to
    #: be pushed to those
    linked_elsewhere: frozenset[str] = frozenset()


def communications_text(values: Iterable[str] | None) -> str:
    """A billing contact's communications in the canonical form the connectors speak
    (sorted, comma-separated)."""
    return ",".join(sorted(set(values or ())))


def billing_contact(
    row: ContactTable, link: contacts_repo.LinkedContact | None, connection_id: str
) -> BillingContact:
    """A contact row as values, with its CRM contact in ``connection_id`` (``link``)."""
    fields: ContactFields = {
        "name": row.name,
        "email": row.email,
        "communications": communications_text(row.communications),
    }
    base: ContactFields | None = None
    if link is not None:
        # None: pulled before bases were kept, when its values were the CRM's
        base = dict(link.base) if link.base is not None else dict(fields)
    return BillingContact(
        row.id,
        row.customer_id,
        link.crm_id if link is not None else None,
        fields,
        base,
        row.state,
        int(row.version or 0),
        bool(row.pending),
        link.version if link is not None else -1,
        # no link here yet: the row's home link if it has none, else one in contact_links
        link.home if link is not None else (None if row.connection_id is None else False),
        row.flagged_by in (None, connection_id),
    )


def _crm_fields(contact: CrmContact, communications: bool) -> ContactFields:
    fields: ContactFields = {
        "name": contact.name or contact.email or contact.id,
        "email": contact.email,
    }
    if communications and contact.communications is not None:
        fields["communications"] = contact.communications
    return fields


# --- CRM -> billing ------------------------------------------------------------------------


def load_contacts(
    session: Session,
    ctx: RunContext,
    contacts: Sequence[CrmContact],
    owners: Mapping[str, str],
    *,
    fresh: bool = False,
) -> ContactsState:
    """The page's contacts as the store has them, in a few bulk reads."""
    crm_ids = [c.id for c in contacts]
    found: dict[str, contacts_repo.LinkedContact] = {}
    conflicted: dict[str, set[str]] = {}
    if not fresh:  # a connection's first contacts: none of them is in the store yet
        found = contacts_repo.contacts_by_crm_ids(session, ctx.connection_id, crm_ids)
        conflicted = contacts_repo.open_contact_conflicts(session, ctx.connection_id, crm_ids)
    customer_ids = list(set(owners.values()))
    unsynced = contacts_repo.unsynced_contacts_of(
        session, ctx.organisation_id, ctx.connection_id, customer_ids
    )
    elsewhere: set[str] = set()
    if ctx.fan_out:
        elsewhere = contacts_repo.linked_elsewhere(session, ctx.connection_id, customer_ids)
    connection_id = ctx.connection_id
    return ContactsState(
        owners=owners,
        by_crm_id={
            crm_id: billing_contact(linked.row, linked, connection_id)
            for crm_id, linked in found.items()
        },
        unsynced={
            (row.customer_id, str(row.email).casefold()): billing_contact(row, None, connection_id)
            for row in unsynced
        },
        conflicted={k: frozenset(v) for k, v in conflicted.items()},
        communications=ctx.contacts.communications,
        linked_elsewhere=frozenset(elsewhere),
    )


def decide_contacts(
    state: ContactsState, contacts: Iterable[CrmContact], *, fresh: bool = False
) -> ContactsDecision:
    """CRM contacts against the billing contacts (see the module docstring)."""
    attach: list[ContactRow] = []
    changes: list[ContactChange] = []
    flags: list[str] = []
    conflicts: list[ContactConflict] = []
    refused: dict[str, list[tuple[CrmContact, str]]] = {}
    matched: set[str] = set()
    for contact in {c.id: c for c in contacts}.values():
        owner = state.owners.get(contact.customer_id or "")
        existing = state.by_crm_id.get(contact.id)
        if contact.deleted or owner is None:
            if existing is not None and existing.state != "crm_deleted":
                flags.append(existing.id)
            continue
        problem = contact_problem(contact.name, contact.email)
        if problem is not None:
            # the contact model's rule: refused, and the customer's other contacts go on
            refused.setdefault(owner, []).append((contact, problem))
            continue
        crm = _crm_fields(contact, state.communications)
        base: ContactFields | None
        if existing is not None:
            base = existing.base
        else:
            key = (owner, (contact.email or "").casefold())
            existing = state.unsynced.get(key) if contact.email else None
            if existing is None or existing.id in matched:
                attach.append(_attached(contact, owner, crm))
                continue
            matched.add(existing.id)
            base = None  # linked now: the first link's rules
        change, opened = _merged(existing, owner, contact.id, crm, base, state)
        if _changes_anything(existing, change):
            changes.append(change)
        conflicts += opened
    return ContactsDecision(
        attach=tuple(attach),
        change=tuple(changes),
        flag=tuple(flags),
        conflicts=tuple(conflicts),
        fresh=fresh,
        failures=tuple(_refused_contacts(c, items) for c, items in refused.items()),
    )


def _attached(contact: CrmContact, owner: str, crm: ContactFields) -> ContactRow:
    """A CRM contact no billing contact matches, as a new contact of its customer."""
    communications: tuple[str, ...] | None = None
    if "communications" in crm:
        communications = tuple(c for c in (crm["communications"] or "").split(",") if c)
    return ContactRow(contact.id, owner, str(crm["name"]), contact.email, communications)


def _refused_contacts(customer_id: str, refused: list[tuple[CrmContact, str]]) -> Failure:
    """One dead-letter row for a customer's refused contacts (the dead letter holds one open
    row per record). No CRM id on it: a retry syncs the customer, not an account of that
    id."""
    payload = {
        "contacts": [
            {"contact_id": c.id, "name": c.name, "email": c.email, "problem": problem}
            for c, problem in refused
        ]
    }
    message = "; ".join(f"contact {c.id}: {problem}" for c, problem in refused)
    by_rule = any(NO_CONTROL_CHARACTERS in problem for _, problem in refused)
    code = NO_CONTROL_CHARACTERS if by_rule else "too_long"
    return Failure("pull", None, customer_id, payload, "validation", message, code)


def _merged(
    existing: BillingContact,
    owner: str,
    crm_id: str,
    crm: ContactFields,
    base: ContactFields | None,
    state: ContactsState,
) -> tuple[ContactChange, list[ContactConflict]]:
    crm = _same_case(crm, base)
    outcome = merge_record(
        fields=CONTACT_FIELDS,
        billing=existing.fields,
        crm=crm,
        base=base,
        directions={},
        conflicted=state.conflicted.get(crm_id, frozenset()),
    )
    to_billing: ContactFields = {
        k: _text(v) for k, v in outcome.to_billing.items() if _text(v) != existing.fields.get(k)
    }
    new_base: ContactFields = {**(base or {}), **{k: _text(v) for k, v in outcome.base.items()}}
    after = {**existing.fields, **to_billing}
    conflicts = [
        ContactConflict(new_id(), existing.id, owner, crm_id, c.field, c.base, c.billing, c.crm)
        for c in outcome.conflicts
    ]
    # the CRM's values make a new version of the contact, which this CRM contact has (unless
    # billing holds a change it lacks); the other connections linking the customer lack it
    version = existing.version + 1 if to_billing else existing.version
    to_push = any(after.get(k) != new_base.get(k) for k in crm)
    elsewhere = owner in state.linked_elsewhere
    pending: bool | None = None
    if to_push or (to_billing and elsewhere):
        pending = True
    elif not elsewhere:
        pending = False
    return (
        ContactChange(
            id=existing.id,
            customer_id=owner,
            crm_id=crm_id,
            base=new_base,
            changes=to_billing,
            pending=pending,
            state="active" if existing.state != "active" and existing.restorable else None,
            version=version if to_billing else None,
            link_version=existing.link_version if to_push else version,
            home=existing.home,
        ),
        conflicts,
    )


def _same_case(crm: ContactFields, base: ContactFields | None) -> ContactFields:
    """The CRM's e-mail as the base has it when they differ only in case: HubSpot stores
    e-mail addresses in lower case, and a pushed ``Ann@Example.com`` must not come back as
    a change."""
    email, agreed = crm.get("email"), (base or {}).get("email")
    if email and agreed and email != agreed and email.casefold() == agreed.casefold():
        return {**crm, "email": agreed}
    return crm


def _changes_anything(existing: BillingContact, change: ContactChange) -> bool:
    """Whether a change writes anything (a pulled echo of our own push does not)."""
    return bool(
        change.changes
        or existing.crm_id is None
        or change.state is not None
        or change.customer_id != existing.customer_id
        or (change.pending is not None and change.pending != existing.pending)
        or change.link_version != existing.link_version
        or dict(change.base) != dict(existing.base or {})
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# --- billing -> CRM ------------------------------------------------------------------------


def load_contact_pushes(
    session: Session,
    ctx: RunContext,
    *,
    after: str,
    limit: int,
    customer_ids: Sequence[str] | None = None,
) -> tuple[list[tuple[BillingContact, str]], dict[str, frozenset[str]]]:
    """Pending billing contacts with their CRM account / company, and their fields with
    an open conflict. A plan's, with the contacts of the customers it would link or create
    in the CRM (its pull and push linked none: a run's next step finds them linked)."""
    pending = contacts_repo.pending_contacts(
        session,
        ctx.organisation_id,
        ctx.connection_id,
        after=after,
        limit=limit,
        customer_ids=customer_ids,
        unlinked=ctx.fan_out,
    )
    crm_ids = [p.link.crm_id for p in pending if p.link is not None]
    conflicted = contacts_repo.open_contact_conflicts(session, ctx.connection_id, crm_ids)
    planned = ctx.unapplied.accounts()  # empty in a run
    found = [
        (
            billing_contact(p.row, p.link, ctx.connection_id),
            planned.get(p.row.customer_id, p.account_id),
        )
        for p in pending
    ]
    if customer_ids is not None:
        planned = {c: a for c, a in planned.items() if c in set(customer_ids)}
    if planned:
        found = _with_planned(session, ctx, found, planned, after=after, limit=limit)
    return found, {k: frozenset(v) for k, v in conflicted.items()}


def _with_planned(
    session: Session,
    ctx: RunContext,
    found: list[tuple[BillingContact, str]],
    planned: Mapping[str, str],
    *,
    after: str,
    limit: int,
) -> list[tuple[BillingContact, str]]:
    """``found`` and the contacts a run would push once the ``planned`` customers are
    linked, as one chunk by contact id (of at most ``limit``)."""
    rows = contacts_repo.pending_creates_of(
        session,
        ctx.organisation_id,
        ctx.connection_id,
        list(planned),
        after=after,
        limit=limit,
        unlinked=ctx.fan_out,
    )
    creates = [
        (billing_contact(row, None, ctx.connection_id), planned[row.customer_id]) for row in rows
    ]
    return sorted([*found, *creates], key=lambda pair: pair[0].id)[:limit]


def decide_contact_pushes(
    pending: Sequence[tuple[BillingContact, str]],
    conflicted: Mapping[str, frozenset[str]],
    *,
    communications: bool,
    unlinked: Collection[str] = (),
) -> tuple[ContactPushWrite, ...]:
    """A push per pending contact: a create with every field it has, or the fields that
    differ from its base (none: it only stops being pending). A field with an open
    conflict is not pushed, nor a contact of a customer whose link is ``unlinked`` (the
    CRM deleted or merged its record away)."""
    names = [f for f in CONTACT_FIELDS if communications or f != "communications"]
    pushes = []
    for contact, account_id in pending:
        if contact.customer_id in unlinked:
            continue
        values = {k: contact.fields.get(k) for k in names}
        base = contact.base or {}
        fields: ContactFields
        if contact.crm_id is None:
            fields = {k: v for k, v in values.items() if v not in (None, "")}
        else:
            held = conflicted.get(contact.crm_id, frozenset())
            fields = {k: v for k, v in values.items() if v != base.get(k) and k not in held}
        pushes.append(
            ContactPushWrite(
                contact.id,
                contact.customer_id,
                contact.crm_id,
                account_id,
                fields,
                dict(base),
                contact.version,
                before={k: base.get(k) for k in fields},
                home=contact.home,
            )
        )
    return tuple(pushes)


# --- applying ------------------------------------------------------------------------------


class ContactPushesMade(PushesMadeBy[ContactPushWrite]):
    """The contact pushes one page has made: when the store refuses the page and it is
    decided again, a contact already created is not created again, and the same change is
    not written twice (its earlier result is taken)."""

    def __init__(self) -> None:
        super().__init__(lambda push: push.contact_id)


def apply_contacts(
    ctx: RunContext,
    session: Session,
    decision: ContactsDecision,
    made: ContactPushesMade | None = None,
) -> None:
    """Write a contacts decision: push its contacts first, then write every row. Pushes in
    ``made`` (this page's, from an attempt the store refused) are not made again."""
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "organisation_id": ctx.organisation_id,
            "customer_id": c.customer_id,
            "name": c.name,
            "email": c.email,
            "communications": list(c.communications or ("billing",)),
            "connection_id": ctx.connection_id,
            "crm_id": c.crm_id,
            "base": _base_of(c),
            "link_version": 0,
            "pending": False,
            "version": 0,
            "state": "active",
            "updated_at": now,
        }
        for c in decision.attach
    ]
    contacts_repo.insert_contacts(session, rows)
    ctx.count("contacts", len(rows) + len(decision.change))
    contacts_repo.update_contacts(session, [_change_row(c, now) for c in decision.change])
    contacts_repo.write_links(
        session,
        ctx.organisation_id,
        ctx.connection_id,
        [
            contacts_repo.LinkWrite(c.id, c.crm_id, dict(c.base), c.link_version, c.home)
            for c in decision.change
            if c.crm_id is not None
        ],
    )
    contacts_repo.flag_contacts(session, ctx.connection_id, list(decision.flag))
    ctx.count("contacts_flagged", len(decision.flag))
    repo.insert_conflicts(session, [_conflict_row(ctx, c) for c in decision.conflicts])
    ctx.count("conflicts_opened", len(decision.conflicts))
    if decision.pushes:
        _push(ctx, session, decision, made or ContactPushesMade())


def _base_of(contact: ContactRow) -> dict[str, Any]:
    base: dict[str, Any] = {"name": contact.name, "email": contact.email}
    if contact.communications is not None:
        base["communications"] = ",".join(contact.communications)
    return base


def _change_row(change: ContactChange, now: Any) -> dict[str, Any]:
    """The contact row's own columns (its CRM contact here is written by ``write_links``)."""
    row: dict[str, Any] = {
        "id": change.id,
        "customer_id": change.customer_id,
        "updated_at": now,
    }
    for name, value in change.changes.items():
        if name == "communications":
            row[name] = [c for c in (value or "").split(",") if c]
        else:
            row[name] = value
    if change.version is not None:
        row["version"] = change.version
    if change.pending is not None:
        row["pending"] = change.pending
    if change.state is not None:
        row["state"] = change.state
    return row


def _conflict_row(ctx: RunContext, conflict: ContactConflict) -> dict[str, Any]:
    return conflict_row(ctx.organisation_id, ctx.connection_id, conflict)


def _push(
    ctx: RunContext,
    session: Session,
    decision: ContactsDecision,
    made: ContactPushesMade,
) -> None:
    """Push in batches; on success the pushed values join the base (and a new contact
    takes its CRM id, or links the CRM contact it adopts); a contact the CRM refuses goes
    to the dead letter and stays pending, so it is pushed again."""
    pushes = decision.pushes
    results = {p.contact_id: r for p in pushes if (r := made.result(p)) is not None}
    results.update(_taken_results(decision.taken))
    adopted = {a.contact_id: a for a in decision.adoptions}
    to_send = [p for p in pushes if p.fields and p.contact_id not in results]
    results.update(_send(ctx, to_send, adopted, made))
    pushed = _PushesWritten()
    for push in pushes:
        pushed.add(ctx, push, results.get(push.contact_id), adopted.get(push.contact_id))
    _write_adoptions(ctx, session, pushed.adoptions)
    contacts_repo.write_links(session, ctx.organisation_id, ctx.connection_id, pushed.links)
    contacts_repo.settle_pushed(session, pushed.settled)
    refused = pushed.refused
    repo.record_failures(session, [_failure_row(ctx, c, items) for c, items in refused.items()])
    ctx.count("failed", sum(len(items) for items in refused.values()))
    if ctx.has_failures:
        done = {p.customer_id for p in pushes} - refused.keys()
        repo.resolve_failures_for(session, ctx.connection_id, CONTACT_FAILURE, done)


def _taken_results(taken: Iterable[ContactTaken]) -> dict[str, PushResult]:
    """A refusal per create whose e-mail another billing contact has in the CRM."""
    return {
        t.contact_id: PushResult(
            t.contact_id, None, RecordError("duplicate", CONTACT_EMAIL_TAKEN, t.message)
        )
        for t in taken
    }


def _send(
    ctx: RunContext,
    to_send: Sequence[ContactPushWrite],
    adopted: Mapping[str, ContactAdoption],
    made: ContactPushesMade,
) -> dict[str, PushResult]:
    """The CRM's answers to these pushes (an adoption sends its update instead of the
    create), by billing contact id; nothing without pushes or a connector that writes
    contacts."""
    connector = ctx.connector
    if not to_send or not isinstance(connector, ContactWriter):
        return {}
    before = connector.api_calls
    answers = connector.push_contacts(
        [
            _adopting_push(adopted[p.contact_id])
            if p.contact_id in adopted
            else ContactPush(p.contact_id, p.crm_id, p.account_id, dict(p.fields))
            for p in to_send
        ]
    )
    ctx.count("calls_push", connector.api_calls - before)
    by_contact = {r.billing_id: r for r in answers}
    results: dict[str, PushResult] = {}
    for push in to_send:
        answer = by_contact.get(push.contact_id)
        if answer is None:
            continue
        if push.contact_id not in adopted:
            # an adoption is decided and written again when the store refused the page:
            # its merge and conflicts are written with the link, not here
            made.add(push, answer)
        results[push.contact_id] = answer
    return results


def _adopting_push(adoption: ContactAdoption) -> ContactPush:
    """The update that fills the CRM contact's empty fields and associates it."""
    return ContactPush(
        adoption.contact_id,
        adoption.crm_id,
        adoption.account_id,
        dict(adoption.fill),
        associate=adoption.associate,
    )


@dataclass
class _PushesWritten:
    """What a chunk's push results write: the links (with their new base), the contacts
    no longer pending at their version (``settled``), the adoptions made, and the refused
    pushes by customer (for the dead letter)."""

    links: list[contacts_repo.LinkWrite] = field(default_factory=list)
    settled: list[tuple[str, int]] = field(default_factory=list)
    adoptions: list[ContactAdoption] = field(default_factory=list)
    refused: dict[str, list[tuple[ContactPushWrite, RecordError]]] = field(default_factory=dict)

    def add(
        self,
        ctx: RunContext,
        push: ContactPushWrite,
        result: PushResult | None,
        adoption: ContactAdoption | None,
    ) -> None:
        """One push and its result (None: not sent, or the CRM gave none)."""
        if not push.fields:
            self._unchanged(push)
            return
        if result is None or (result.error is None and result.crm_id is None):
            result = PushResult(push.contact_id, push.crm_id, _NO_RESULT)
        if result.error is not None:
            self.refused.setdefault(push.customer_id, []).append((push, result.error))
            _log_refused(ctx, push, result.error)
        elif adoption is not None:
            self.adoptions.append(adoption)
            self.links.append(_adopted_link(adoption))
            self.settled.append((push.contact_id, adoption.version))
        else:
            ctx.count("contacts_crm_created" if push.crm_id is None else "contacts_pushed")
            crm_id = str(push.crm_id or result.crm_id)
            base = {**push.base, **push.fields}
            self.links.append(
                contacts_repo.LinkWrite(push.contact_id, crm_id, base, push.version, push.home)
            )
            self.settled.append((push.contact_id, push.version))

    def _unchanged(self, push: ContactPushWrite) -> None:
        """Nothing this CRM lacks: its contact has this version."""
        if push.crm_id is not None:
            self.links.append(
                contacts_repo.LinkWrite(
                    push.contact_id, push.crm_id, dict(push.base), push.version, push.home
                )
            )
        self.settled.append((push.contact_id, push.version))


def _log_refused(ctx: RunContext, push: ContactPushWrite, error: RecordError) -> None:
    log.warning(
        "contact push refused",
        extra={
            "connection_id": ctx.connection_id,
            "contact_id": push.contact_id,
            "error_code": error.code,
            "error_kind": error.kind,
        },
    )


def _adopted_link(adoption: ContactAdoption) -> contacts_repo.LinkWrite:
    return contacts_repo.LinkWrite(
        adoption.contact_id, adoption.crm_id, dict(adoption.base), adoption.version, adoption.home
    )


def _write_adoptions(
    ctx: RunContext, session: Session, adoptions: Sequence[ContactAdoption]
) -> None:
    """The billing contacts that adopted a CRM contact take the values the CRM filled in
    (and stay pending for the other connections), and their conflicts are opened."""
    if not adoptions:
        return
    now = utcnow()
    contacts_repo.update_contacts(
        session,
        [
            {**_change_row(a.change, now), "pending": True}
            for a in adoptions
            if a.change.version is not None
        ],
    )
    opened = [c for a in adoptions for c in a.conflicts]
    repo.insert_conflicts(session, [_conflict_row(ctx, c) for c in opened])
    ctx.count("conflicts_opened", len(opened))
    ctx.count("contacts_adopted", len(adoptions))


# --- adopting the CRM's contact of an e-mail -------------------------------------------------


@dataclass(frozen=True)
class AdoptionState:
    """What deciding a chunk's adoptions needs: its creates with an e-mail, the CRM
    contacts holding those e-mails (by casefolded e-mail), the billing contacts linked to
    those here (CRM contact id -> billing contact id, customer id), the customers linked
    here to their accounts / companies (CRM id -> customer id), the customers linked in
    other connections too, and whether the connection maps a communications field."""

    creates: tuple[ContactPushWrite, ...] = ()
    found: Mapping[str, CrmContact] = field(default_factory=dict)
    holders: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    companies: Mapping[str, str] = field(default_factory=dict)
    elsewhere: frozenset[str] = frozenset()
    communications: bool = False


def load_adoptions(
    session: Session, ctx: RunContext, pushes: Sequence[ContactPushWrite]
) -> AdoptionState:
    """The CRM contacts holding the e-mails of these pushes' creates (one read per 100
    creates, none without creates or where the CRM finds no contacts by e-mail), and
    what the store knows of them. A read only: a plan makes it too."""
    creates = tuple(p for p in pushes if p.crm_id is None and p.fields.get("email"))
    connector = ctx.connector
    if not creates or not isinstance(connector, ContactFinder):
        return AdoptionState()
    if not isinstance(connector, ContactWriter):
        return AdoptionState()
    before = connector.api_calls
    emails = [str(p.fields["email"]) for p in creates]
    found = {str(c.email).casefold(): c for c in connector.find_contacts(emails)}
    ctx.count("calls_push", connector.api_calls - before)
    if not found:
        return AdoptionState()
    return _known_to_the_store(session, ctx, creates, found)


def _known_to_the_store(
    session: Session,
    ctx: RunContext,
    creates: tuple[ContactPushWrite, ...],
    found: Mapping[str, CrmContact],
) -> AdoptionState:
    holders = contacts_repo.contacts_by_crm_ids(
        session, ctx.connection_id, [c.id for c in found.values()]
    )
    companies = repo.links_by_crm_ids(
        session, ctx.connection_id, list({c.customer_id for c in found.values() if c.customer_id})
    )
    elsewhere: set[str] = set()
    if ctx.fan_out:
        customers = list({p.customer_id for p in creates})
        elsewhere = contacts_repo.linked_elsewhere(session, ctx.connection_id, customers)
    return AdoptionState(
        creates=creates,
        found=found,
        holders={k: (h.row.id, h.row.customer_id) for k, h in holders.items()},
        companies={k: link.customer_id for k, link in companies.items()},
        elsewhere=frozenset(elsewhere),
        communications=ctx.contacts.communications,
    )


def decide_adoptions(
    state: AdoptionState,
) -> tuple[tuple[ContactAdoption, ...], tuple[ContactTaken, ...]]:
    """Creates whose e-mail a CRM contact already holds: each adopts that contact, with the
    first link's rules of a contact matched by e-mail (:func:`_merged`, base None: each
    side's empty fields are filled from the other), except that a name which differs is a
    ``contact`` conflict rather than an overwrite, as this CRM contact was not made for this
    billing contact. A CRM contact linked (in this connection) to another billing contact,
    adopted by an earlier create of the same push, or whose primary account / company is
    another customer's is taken instead (a real conflict: two billing contacts with one
    e-mail, e.g. of two customers) and names both. No side effect."""
    names = [f for f in CONTACT_FIELDS if state.communications or f != "communications"]
    claimed: dict[str, ContactPushWrite] = {}
    adopted: list[ContactAdoption] = []
    taken: list[ContactTaken] = []
    for push in state.creates:
        crm = state.found.get(str(push.fields["email"]).casefold())
        if crm is None:
            continue
        whose = _whose(push, crm, state, claimed.get(crm.id))
        if whose is not None:
            taken.append(_taken(push, crm, whose))
            continue
        claimed[crm.id] = push
        # the customer's company becomes the contact's primary one unless it has a primary
        # company linked here: a contact whose primary company is linked to no customer is
        # read by the next pull as moved off its account (and flagged)
        linked = (crm.customer_id or "") in state.companies
        mode: Literal["primary", "other"] = "other" if linked else "primary"
        adopted.append(_adopt(push, crm, names, push.customer_id in state.elsewhere, mode))
    return tuple(adopted), tuple(taken)


def _whose(
    push: ContactPushWrite,
    crm: CrmContact,
    state: AdoptionState,
    claimed: ContactPushWrite | None,
) -> str | None:
    """Whose the CRM contact is, when it is not this billing contact's to adopt."""
    holder = state.holders.get(crm.id)
    if holder is not None and holder[0] != push.contact_id:
        return f"is linked to billing contact {holder[0]} (customer {holder[1]})"
    if claimed is not None:
        return (
            f"is adopted by billing contact {claimed.contact_id} (customer {claimed.customer_id})"
        )
    owner = state.companies.get(crm.customer_id or "")
    if owner is not None and owner != push.customer_id:
        return f"has primary account / company {crm.customer_id}, linked to customer {owner}"
    return None


def _taken(push: ContactPushWrite, crm: CrmContact, whose: str) -> ContactTaken:
    message = (
        f"the CRM's contact {crm.id} with e-mail {crm.email} {whose}; billing contact "
        f"{push.contact_id} (customer {push.customer_id}) has the same e-mail, and the "
        "CRM keeps one contact per e-mail: change one of the e-mails"
    )
    return ContactTaken(push.contact_id, push.customer_id, message)


def _adopt(
    push: ContactPushWrite,
    crm: CrmContact,
    names: Sequence[str],
    elsewhere: bool,
    mode: Literal["primary", "other"],
) -> ContactAdoption:
    """One adoption (see :func:`decide_adoptions`)."""
    billing_fields: ContactFields = {k: push.fields.get(k) for k in names}
    crm_fields = _crm_fields(crm, "communications" in names)
    crm_fields["name"] = crm.name or None  # a nameless contact takes billing's name
    if str(crm.email).casefold() == str(billing_fields.get("email")).casefold():
        crm_fields["email"] = billing_fields.get("email")  # HubSpot keeps e-mails lower case
    billing_name, crm_name = billing_fields.get("name"), crm.name
    names_differ = bool(crm_name and billing_name and " ".join(crm_name.split()) != billing_name)
    held = frozenset({"name"} if names_differ else ())
    change = _first_link(push, crm.id, billing_fields, crm_fields, held, elsewhere)
    conflicts = tuple(
        ContactConflict(new_id(), push.contact_id, push.customer_id, crm.id, name, None, b, c)
        for name, b, c in (("name", billing_name, crm_name),)
        if name in held
    )
    after = {**billing_fields, **change.changes}
    fill = {
        k: after.get(k)
        for k in crm_fields
        if k not in held and after.get(k) not in (None, "") and after.get(k) != change.base.get(k)
    }
    return ContactAdoption(
        contact_id=push.contact_id,
        customer_id=push.customer_id,
        crm_id=crm.id,
        account_id=push.account_id,
        fill=fill,
        associate=mode,
        change=change,
        conflicts=conflicts,
        base={**change.base, **fill},
        version=change.version if change.version is not None else push.version,
        home=push.home,
    )


def _first_link(
    push: ContactPushWrite,
    crm_id: str,
    billing_fields: ContactFields,
    crm_fields: ContactFields,
    held: frozenset[str],
    elsewhere: bool,
) -> ContactChange:
    """The billing contact merged with the CRM contact it adopts by the first link's rules
    (:func:`_merged`, base None), the ``held`` fields left to their conflict."""
    existing = BillingContact(
        push.contact_id,
        push.customer_id,
        None,
        billing_fields,
        None,
        version=push.version,
        pending=True,
        home=push.home,
    )
    state = ContactsState(
        conflicted={crm_id: held},
        communications="communications" in billing_fields,
        linked_elsewhere=frozenset({push.customer_id} if elsewhere else ()),
    )
    change, _ = _merged(existing, push.customer_id, crm_id, crm_fields, None, state)
    return change


def _failure_row(
    ctx: RunContext, customer_id: str, refused: list[tuple[ContactPushWrite, RecordError]]
) -> dict[str, Any]:
    """One dead-letter row for a customer's contacts the CRM refused (the dead letter holds
    one open row per record and direction), each with the CRM's words."""
    first = refused[0][1]
    return {
        "id": new_id(),
        "organisation_id": ctx.organisation_id,
        "connection_id": ctx.connection_id,
        "run_id": ctx.run_id,
        "direction": CONTACT_FAILURE,
        "crm_id": None,
        "customer_id": customer_id,
        "payload": {
            "contacts": [
                {
                    "contact_id": push.contact_id,
                    "crm_id": push.crm_id,
                    "fields": dict(push.fields),
                    "code": error.code,
                    "message": error.message,
                }
                for push, error in refused
            ]
        },
        "error_kind": first.kind,
        "error_code": first.code,
        "error_message": "; ".join(
            f"contact {push.contact_id}: {error.message}" for push, error in refused
        ),
        "attempts": 1,
        "status": "open",
    }
