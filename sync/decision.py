"""What deciding a page yields: a typed value, which is then applied, or shown as a plan.

Deciding (:mod:`sync.decide`) reads nothing and writes nothing: it turns what a page's bulk
reads found (:class:`BillingCustomer`, :class:`Link`, CRM records) into a
:class:`PageDecision`. Applying it (:mod:`sync.apply`) pushes and writes exactly that; plan
mode shows exactly that (:class:`sync.plan.Plan`). Everything is flat customer fields
(``customer_name``, ``address.city``, ``custom_data.tier``), as the connectors speak them.

These are values: nothing changes one once it is made. (The per-record classes are slotted
but not frozen: a backfill makes hundreds of thousands, and a frozen dataclass costs several
times as much to build.)

    PageDecision          one page: a RecordDecision per record, contacts, the cursor
    ├── RecordDecision    one CRM record or one customer, all that is done about it:
    │   ├── NewCustomer       a billing customer to create
    │   ├── CustomerChange    billing fields to change
    │   ├── LinkWrite         a link to make, or its base and last-seen values to write
    │   ├── LinkMove          a CRM delete, merge or restore on a link
    │   ├── ConflictOpen      a conflict to open (a field, or a merge)
    │   ├── CrmPush           fields to write to the CRM, or a CRM record to create
    │   ├── Failure           why the record goes to the dead letter instead
    │   └── Audit             a line for the audit trail
    ├── ContactsDecision  contacts: CRM ones to attach or merge, flags, conflicts, pushes
    └── CursorMove        where the pull (or the outbox walk) stands once the page commits
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sync.customer import FieldValue

Fields = dict[str, FieldValue]

# --- what the page's reads found -----------------------------------------------------------


@dataclass(slots=True)
class BillingCustomer:
    """A billing customer as flat fields. ``custom_data`` is the whole object as stored
    (flat fields hold only its scalar keys), so that writing one key keeps the others."""

    id: str
    fields: Fields
    custom_data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Link:
    """A customer's link to one CRM record, with the base both sides last agreed on.
    ``crm_last`` / ``billing_last`` are ``{}`` where they equal the base."""

    id: str
    customer_id: str
    crm_id: str
    state: str = "active"
    base: Fields = field(default_factory=dict)
    crm_last: Fields = field(default_factory=dict)
    billing_last: Fields = field(default_factory=dict)


# --- what to do ----------------------------------------------------------------------------


@dataclass(slots=True)
class NewCustomer:
    """A billing customer to create, from validated fields (``external_id`` included)."""

    id: str
    fields: Fields


@dataclass(slots=True)
class CustomerChange:
    """Validated billing fields to change; each differs from ``customer.fields``."""

    customer: BillingCustomer
    changes: Fields


@dataclass(slots=True)
class LinkWrite:
    """A new link (``new``), or what to write on an existing one. ``None`` leaves a column
    as it is; a push that succeeds adds its fields to ``base`` (see :class:`CrmPush`)."""

    id: str
    customer_id: str
    crm_id: str | None
    base: Fields
    new: bool = False
    crm_last: Fields | None = None
    billing_last: Fields | None = None
    crm_modified_at: datetime | None = None
    state: str | None = None


@dataclass(slots=True)
class LinkMove:
    """A CRM delete (``remote_deleted``), merge (``merged``, or ``active`` re-pointed at
    the survivor ``crm_id``) or restore (``active``) on a link."""

    id: str
    state: str
    crm_id: str | None = None
    merged_into: str | None = None


@dataclass(slots=True)
class ConflictOpen:
    """A conflict to open: a ``field`` both sides changed differently, or a ``merge`` of
    CRM records linked to two customers (``field`` is then ``customer``)."""

    id: str
    link_id: str
    customer_id: str
    crm_id: str
    field: str
    base: Any
    billing: Any
    crm: Any
    kind: Literal["field", "merge"] = "field"


@dataclass(slots=True)
class CrmPush:
    """Fields to write to the CRM record ``crm_id``, or (``crm_id`` None) a CRM record to
    create keyed by ``customer_id``. On success the fields join the base of link
    ``link_id`` (for a create, a new link to that record); ``before`` is what the CRM was
    last known to hold, for showing. ``set_external_id``: the customer has no external id
    yet and takes the new record's id. ``write_billing_id``: the record is being linked to
    a customer billing already had, so the customer's id is written into the record's
    external-id field too (in the same batch as any fields), and the record can always be
    found again (a create carries it anyway: it is keyed by it)."""

    customer_id: str
    crm_id: str | None
    fields: Fields
    link_id: str
    base: Fields
    before: Fields = field(default_factory=dict)
    set_external_id: bool = False
    write_billing_id: bool = False


@dataclass(slots=True)
class Failure:
    """A record that goes to the dead letter, with the reason in the CRM's or our words."""

    direction: Literal["pull", "push"]
    crm_id: str | None
    customer_id: str | None
    payload: dict[str, Any]
    kind: str
    message: str
    code: str = ""


@dataclass(slots=True)
class Audit:
    action: str
    customer_id: str
    detail: dict[str, Any]


#: what a record decision adds to the run's counters (``pushed`` and ``crm_created`` are
#: counted when the push succeeds)
Count = Literal[
    "created",
    "linked",
    "updated",
    "unchanged",
    "deleted",
    "merged",
    "restored",
    "ignored",
    "failed",
]


@dataclass(slots=True)
class RecordDecision:
    """Everything to do about one CRM record (``crm_id``) or one customer (``customer_id``).

    ``synced`` closes the record's open dead-letter rows: its pull failure (by CRM id)
    now, its push failure (by customer id) once a push succeeds. ``outbox`` names the
    billing fields changed, logged for the organisation's other connections (a new
    customer logs every field it has). ``name`` is the record's name, for showing."""

    crm_id: str | None
    customer_id: str | None
    counts: tuple[Count, ...] = ()
    name: FieldValue = None
    new_customer: NewCustomer | None = None
    change: CustomerChange | None = None
    link: LinkWrite | None = None
    move: LinkMove | None = None
    conflicts: tuple[ConflictOpen, ...] = ()
    push: CrmPush | None = None
    failure: Failure | None = None
    audits: tuple[Audit, ...] = ()
    outbox: tuple[str, ...] = ()
    synced: bool = False


@dataclass(slots=True)
class ContactRow:
    """A CRM contact as a new secondary contact of ``customer_id`` (its values the base)."""

    crm_id: str
    customer_id: str
    name: str
    email: str | None
    communications: tuple[str, ...] | None = None


#: a contact's synced fields: name, email, communications (sorted, comma-separated)
ContactFields = dict[str, str | None]


@dataclass(slots=True)
class ContactChange:
    """What to write on an existing billing contact ``id`` and its CRM contact ``crm_id``
    in this connection: values the CRM changed (``changes``, billing columns, which make
    the contact's ``version``), the new ``base`` and the contact's version this CRM
    contact has (``link_version``); ``home`` as the link was read (None: a billing contact
    found by e-mail, linked now). ``pending``: set (True) when another CRM is to be pushed
    the contact, cleared (False) when none is, else unchanged. ``customer_id`` moves it to
    another customer; ``state`` restores it."""

    id: str
    customer_id: str
    crm_id: str | None
    base: ContactFields
    changes: ContactFields = field(default_factory=dict)
    pending: bool | None = None
    state: str | None = None
    version: int | None = None
    link_version: int = 0
    home: bool | None = None


@dataclass(slots=True)
class ContactConflict:
    """A contact field both sides changed differently since the base: opened as a
    ``contact`` conflict on the customer, and written on neither side meanwhile."""

    id: str
    contact_id: str
    customer_id: str
    crm_id: str
    field: str
    base: Any
    billing: Any
    crm: Any


@dataclass(slots=True)
class ContactPushWrite:
    """A billing contact to write to the CRM: created (``crm_id`` None) under the account /
    company ``account_id``, or its changed ``fields`` updated. On success the fields join
    ``base`` and, if the contact is still at ``version``, it is no longer pending."""

    contact_id: str
    customer_id: str
    crm_id: str | None
    account_id: str
    fields: ContactFields
    base: ContactFields
    version: int
    before: ContactFields = field(default_factory=dict)
    #: where the CRM contact's link is kept: on the contact's row (True), in
    #: ``contact_links`` (False), or new (None, a create)
    home: bool | None = None


#: a contact's CRM account / company in a plan, when it is the one the run creates first
NEW_ACCOUNT = ""


@dataclass(frozen=True)
class ContactAdoption:
    """A billing contact about to be created that links the CRM's contact ``crm_id`` of its
    e-mail instead (the CRM keeps one contact per e-mail: the create would be refused on
    every push). The CRM contact is updated with ``fill`` (its empty fields, from billing)
    and associated with the customer's account / company ``account_id`` (``associate``:
    as its primary one or not); once that is written, the billing contact takes the first
    link's ``change`` and ``conflicts``, and its link the ``base`` at ``version``."""

    contact_id: str
    customer_id: str
    crm_id: str
    account_id: str
    fill: ContactFields
    associate: Literal["primary", "other"]
    change: ContactChange
    conflicts: tuple[ContactConflict, ...]
    base: ContactFields
    version: int
    home: bool | None = None


@dataclass(frozen=True)
class ContactTaken:
    """A billing contact about to be created whose e-mail the CRM's contact holds for
    another billing contact (linked to it, adopting it, or of another customer's account /
    company): a dead letter whose ``message`` names both, never a silent re-link."""

    contact_id: str
    customer_id: str
    message: str


@dataclass(frozen=True)
class ContactsDecision:
    """Contacts: CRM contacts to insert as new billing contacts (``fresh``: the connection
    has none yet, so plain inserts), billing contacts to change from the CRM (three-way
    merge per field), contacts to flag as deleted in the CRM (by billing id; a delete is
    never carried to the other side), conflicts (both sides changed a field),
    billing-side contacts to push, and CRM contacts the contact model refuses
    (``failures``, for the dead letter). Among the pushes' creates, those that adopt the
    CRM's contact of their e-mail (``adoptions``) and those whose e-mail another billing
    contact has there (``taken``)."""

    attach: tuple[ContactRow, ...] = ()
    change: tuple[ContactChange, ...] = ()
    flag: tuple[str, ...] = ()
    conflicts: tuple[ContactConflict, ...] = ()
    pushes: tuple[ContactPushWrite, ...] = ()
    fresh: bool = False
    failures: tuple[Failure, ...] = ()
    adoptions: tuple[ContactAdoption, ...] = ()
    taken: tuple[ContactTaken, ...] = ()

    def plain_pushes(self) -> list[ContactPushWrite]:
        """The pushes that create or update a CRM contact as they are (neither adopting
        one nor refused for a taken e-mail)."""
        other = {a.contact_id for a in self.adoptions} | {t.contact_id for t in self.taken}
        return [p for p in self.pushes if p.contact_id not in other]

    def is_empty(self) -> bool:
        return not (
            self.attach
            or self.change
            or self.flag
            or self.conflicts
            or self.pushes
            or self.failures
        )


@dataclass(slots=True)
class CursorMove:
    """Where a pull (``customers``, ``contacts``) or the outbox walk (``outbox``) stands
    once the page commits."""

    object: str
    value: str


@dataclass(frozen=True)
class PageDecision:
    """One page's decision, applied (or shown) as one unit and committed with its cursor."""

    records: tuple[RecordDecision, ...] = ()
    contacts: ContactsDecision | None = None
    cursor: CursorMove | None = None

    def pushes(self) -> list[CrmPush]:
        return [r.push for r in self.records if r.push is not None]
