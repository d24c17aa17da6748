"""The store's tables (SQLAlchemy 2, ``Mapped[]`` style). Every row carries its organisation.

Customers hold the billing product's fields; address, tax IDs and custom data are JSON.
A *link* pairs a customer with one record in one connection's CRM and keeps the *base*:
the field values both sides agreed on at the last successful sync. The *outbox* is an
append-only log of billing-side changes; each connection keeps its own position in it (a
cursor with object ``outbox``), so one change reaches every connected CRM once.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, read back aware and in UTC on both stores: PostgreSQL's ``timestamptz``
    (given in the session's time zone) and SQLite's text (which keeps no time zone: it
    hands back naive datetimes) alike. Written as UTC; a naive value is taken as UTC. The
    column is ``DateTime(timezone=True)`` as before: nothing to migrate."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_ids = threading.local()


def _fresh_ids(count: int = 1024) -> list[str]:
    """``count`` time-ordered (version 7, RFC 9562) UUIDs as text, last-made first (the
    pool hands them out from its end): a 48-bit millisecond timestamp, then 12 bits that
    count up (RFC 9562's "fixed-length dedicated counter"), then 62 random bits from one
    ``urandom`` call. Each thread's ids only grow: a block made in the same millisecond as
    the last goes on counting, and a counter that runs out moves to the next millisecond.

    Why not version 4: every index on an id (the keys, and the customer / connection
    columns of links and contacts) then takes each insert at a random leaf, and a backfill
    writing hundreds of thousands of rows touches, splits and logs a full-page image of
    leaves all over the index; ids that grow with time go to its right-hand edge."""
    millis, counter = getattr(_ids, "last", (0, -1))
    now = time.time_ns() // 1_000_000
    if now > millis:
        millis, counter = now, -1
    tails = os.urandom(8 * count)
    ids = []
    head = ""
    for i in range(count):
        counter += 1
        if counter > 0xFFF or not head:
            if counter > 0xFFF:
                millis, counter = millis + 1, 0
            stamp = f"{millis & 0xFFFF_FFFF_FFFF:012x}"
            head = f"{stamp[:8]}-{stamp[8:]}-7"
        rand = int.from_bytes(tails[8 * i : 8 * i + 8]) & 0x3FFF_FFFF_FFFF_FFFF | (1 << 63)
        low = f"{rand:016x}"
        ids.append(f"{head}{counter:03x}-{low[:4]}-{low[4:]}")
    _ids.last = (millis, counter)
    ids.reverse()
    return ids


def new_id() -> str:
    """A time-ordered (version 7) UUID as text. Ids are made a thousand at a time: a
    backfill makes hundreds of thousands, and one ``uuid`` call each is measurable."""
    pool: list[str] | None = getattr(_ids, "pool", None)
    if not pool:
        pool = _ids.pool = _fresh_ids()
    return pool.pop()


# A forked worker (Celery's prefork pool) must not hand out its parent's unused bytes.
os.register_at_fork(after_in_child=lambda: _ids.__dict__.clear())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


UUID = String(36)


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    """An organisation's API key, stored as a SHA-256 hash (keys are 256-bit random)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class BusinessEntity(Base):
    __tablename__ = "business_entities"

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def _tenant_keys(table: str) -> tuple[ForeignKeyConstraint, ForeignKeyConstraint]:
    """A link's or contact's customer and connection, each with the row's organisation:
    two checks per inserted row (a backfill writes one per record) instead of three
    separate keys, and a row can never name another organisation's customer or connection
    (migration 0004)."""
    return (
        ForeignKeyConstraint(
            ["customer_id", "organisation_id"],
            ["customers.id", "customers.organisation_id"],
            name=f"fk_{table}_customer_org",
        ),
        ForeignKeyConstraint(
            ["connection_id", "organisation_id"],
            ["connections.id", "connections.organisation_id"],
            name=f"fk_{table}_connection_org",
        ),
    )


class CustomerRow(Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("organisation_id", "external_id", name="uq_customers_org_external_id"),
        UniqueConstraint("organisation_id", "email", name="uq_customers_org_email"),
        # the target of links' and contacts' (customer_id, organisation_id) keys
        UniqueConstraint("id", "organisation_id", name="uq_customers_id_org"),
    )

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    customer_name: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    phone_number: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[dict[str, Any] | None] = mapped_column(Json)
    ship_to_address: Mapped[dict[str, Any] | None] = mapped_column(Json)
    tax_info: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    custom_data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    currency: Mapped[str | None] = mapped_column(String(3))
    communications_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_charge_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    business_entity_id: Mapped[str | None] = mapped_column(ForeignKey("business_entities.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ContactRow(Base):
    """A customer's secondary contact, and its CRM contact in its first connection.

    A contact syncs with one CRM contact in each connection that links its customer. The
    first (its *home* link) is kept on the row: ``connection_id`` / ``crm_id`` name the CRM
    contact (set when it came from that CRM, or once it was first pushed to one), ``base``
    holds the values (``name``, ``email``, ``communications``) both sides agreed on at the
    last sync with it (None: the row's own values, a contact pulled before migration 0007),
    and ``link_version`` the ``version`` that CRM contact has. Its CRM contacts in other
    connections are :class:`ContactLinkRow` rows (migration 0008): a backfill writes one
    row per contact, not two.

    ``version`` counts changes to the contact's values (billing-side edits, and CRM changes
    taken from any connection); a connection whose CRM contact is at an older version is
    pushed the difference from its own base. ``pending``: some connection linking the
    customer may lack the contact's current version (set by a billing-side change, or by a
    CRM change when other connections link the customer; cleared once every one has it).
    ``state``: ``active`` or ``crm_deleted`` (a CRM deleted it, or moved it off the
    account: kept, flagged, never pushed again); ``flagged_by`` is the connection whose CRM
    did, the only one whose pull can restore it.
    """

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("connection_id", "crm_id", name="uq_contacts_connection_crm_id"),
        Index("ix_contacts_customer", "customer_id"),
        # the pending contacts only (what the pushes read): a pull's contacts are never
        # pending, and a backfill's COPY of them writes no entry here
        Index(
            "ix_contacts_org_pending",
            "organisation_id",
            postgresql_where=text("pending IS true"),
            sqlite_where=text("pending IS 1"),
        ),
        *_tenant_keys("contacts"),
    )

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(UUID)
    customer_id: Mapped[str] = mapped_column(UUID)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    communications: Mapped[list[str]] = mapped_column(Json, default=list)
    connection_id: Mapped[str | None] = mapped_column(UUID)
    crm_id: Mapped[str | None] = mapped_column(String(64))
    base: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    link_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    flagged_by: Mapped[str | None] = mapped_column(UUID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ContactLinkRow(Base):
    """A contact's CRM contact in a connection other than its home one (see
    :class:`ContactRow`): its id there, the base agreed on with it, and the contact's
    ``version`` it has."""

    __tablename__ = "contact_links"
    __table_args__ = (
        UniqueConstraint("connection_id", "crm_id", name="uq_contact_links_connection_crm_id"),
        ForeignKeyConstraint(
            ["connection_id", "organisation_id"],
            ["connections.id", "connections.organisation_id"],
            name="fk_contact_links_connection_org",
        ),
    )

    contact_id: Mapped[str] = mapped_column(
        UUID, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    connection_id: Mapped[str] = mapped_column(UUID, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(UUID)
    crm_id: Mapped[str] = mapped_column(String(64))
    base: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ConnectionRow(Base):
    """One organisation's link to one CRM account.

    ``directions`` maps a flat customer field to ``both`` / ``crm_to_billing`` /
    ``billing_to_crm`` / ``none`` (absent means ``both``). ``state`` is ``active`` or
    ``paused`` (the operator's choice); ``limit_until`` set in the future means paused by
    the CRM's daily limit as well. ``credentials`` is Fernet ciphertext, never plain text.
    """

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("organisation_id", "name", name="uq_connections_org_name"),
        # the target of links' and contacts' (connection_id, organisation_id) keys
        UniqueConstraint("id", "organisation_id", name="uq_connections_id_org"),
    )

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    credentials: Mapped[str] = mapped_column(Text, default="")
    field_map: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    directions: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    match_mode: Mapped[str] = mapped_column(String(16), default="exact")
    create_policy: Mapped[str] = mapped_column(String(16), default="create")
    push_creates: Mapped[bool] = mapped_column(Boolean, default=True)
    schedule_seconds: Mapped[int] = mapped_column(Integer, default=900)
    state: Mapped[str] = mapped_column(String(16), default="active")
    last_sync_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_sync_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: where alerts go: Fernet ciphertext of ``{"url", "secret"}`` (a Slack webhook URL is
    #: itself a credential), or None for no alerts (``sync.alerts``)
    alert_webhook: Mapped[str | None] = mapped_column(Text)
    #: what has been alerted already (``sync.alerts``: failing streak, limit pause, digest)
    alert_state: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default="{}")
    #: paused by the CRM's daily API allowance until then (None: not paused by a limit);
    #: the scheduler resumes the connection once it has passed (``sync.connections``)
    limit_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: the CRM's own words for that pause
    limit_reason: Mapped[str | None] = mapped_column(Text)
    #: the CRM's allowance as its last answer reported it: ``{used, limit, window, at}``
    api_usage: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default="{}")
    #: default fields of the connector's map that this CRM account lacks: field -> why
    #: (found by the CRM's describe when the connection was added or changed)
    unmapped_fields: Mapped[dict[str, str]] = mapped_column(Json, default=dict, server_default="{}")


class LinkRow(Base):
    """customer ↔ connection ↔ CRM record id, with the base both sides last agreed on.

    ``billing_last`` and ``crm_last`` are what each side last had, where that differs from
    the base; ``{}`` means "the base" (the steady state), so most links carry one dict.
    ``state``: ``active``, ``remote_deleted`` (the CRM record was deleted; the customer is
    kept) or ``merged`` (re-pointed to ``merged_into``, kept for the audit trail).
    """

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("connection_id", "crm_id", name="uq_links_connection_crm_id"),
        Index("ix_links_connection_customer", "connection_id", "customer_id"),
        *_tenant_keys("links"),
    )

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(UUID)
    connection_id: Mapped[str] = mapped_column(UUID)
    customer_id: Mapped[str] = mapped_column(UUID)
    crm_id: Mapped[str] = mapped_column(String(64))
    base: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    billing_last: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    crm_last: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    crm_modified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), default="active")
    merged_into: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_connection_started", "connection_id", "started_at"),)

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    trigger: Mapped[str] = mapped_column(String(32))  # schedule, webhook, operator, retry
    #: ``connection`` (a sync of the whole connection: one at a time, under its lock) or
    #: ``records`` (webhook, retry, resync: only the named records, may run beside it)
    scope: Mapped[str] = mapped_column(String(16), default="connection")
    status: Mapped[str] = mapped_column(String(16), default="running")
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    plan: Mapped[bool] = mapped_column(Boolean, default=False)
    counters: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_seconds: Mapped[float | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)


class RecordFailure(Base):
    """The dead letter: one record that failed, with the CRM's error, retried later."""

    __tablename__ = "record_failures"
    __table_args__ = (Index("ix_record_failures_connection_status", "connection_id", "status"),)

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("sync_runs.id"))
    direction: Mapped[str] = mapped_column(String(16))  # pull (CRM → billing) or push
    crm_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(UUID)
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    error_kind: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, resolved
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Conflict(Base):
    """A field the two sides disagree on, waiting for an operator.

    ``kind``: ``field`` (both sides changed, or a first link that does not match) or
    ``merge`` (the CRM merged records linked to two different customers).
    """

    __tablename__ = "conflicts"
    __table_args__ = (
        Index("ix_conflicts_connection_status", "connection_id", "status"),
        Index("ix_conflicts_link", "link_id"),
    )

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    link_id: Mapped[str | None] = mapped_column(ForeignKey("links.id"))
    customer_id: Mapped[str] = mapped_column(UUID)
    crm_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="field")
    field: Mapped[str] = mapped_column(String(255))
    base_value: Mapped[Any] = mapped_column(Json, nullable=True)
    billing_value: Mapped[Any] = mapped_column(Json, nullable=True)
    crm_value: Mapped[Any] = mapped_column(Json, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution: Mapped[str | None] = mapped_column(String(16))  # billing, crm, value
    resolved_value: Mapped[Any] = mapped_column(Json, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what to which record, and when (conflict resolutions, CRM deletes, merges)."""

    __tablename__ = "audit_events"
    # a customer's (or a connection's) trail is read by its subject
    __table_args__ = (Index("ix_audit_events_org_subject", "organisation_id", "subject"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class InboundEvent(Base):
    """The webhook inbox: one row per CRM event, unique by the CRM's event key."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("connection_id", "event_key", name="uq_inbound_events_key"),
        Index("ix_inbound_events_connection_status", "connection_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    event_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(16))
    crm_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, handled
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Cursor(Base):
    """Where a connection's pull of one CRM object (or its outbox position) stands."""

    __tablename__ = "cursors"

    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"), primary_key=True)
    object: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OutboxEntry(Base):
    """A billing-side change to a customer, written in the transaction that made it.

    ``origin_connection_id`` is set when the change came from a CRM through sync, so that
    connection does not push it back to where it came from."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_org_id", "organisation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    customer_id: Mapped[str] = mapped_column(UUID)
    origin_connection_id: Mapped[str | None] = mapped_column(UUID)
    fields: Mapped[list[str]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Operator(Base):
    """A person who signs in to the console for one organisation.

    ``role``: ``viewer`` (reads), ``operator`` (also resolves, retries, pauses and syncs) or
    ``admin`` (also manages connections and operators). ``password_hash`` is argon2, None
    until the operator sets one through a one-time link. ``session_epoch`` is part of every
    session cookie: bumping it (a new password, removal) ends every session at once.
    """

    __tablename__ = "operators"
    __table_args__ = (
        UniqueConstraint("organisation_id", "email", name="uq_operators_org_email"),
        Index("ix_operators_email", "email"),
    )

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OperatorToken(Base):
    """A one-time link to set an operator's password; only the token's SHA-256 is stored."""

    __tablename__ = "operator_tokens"

    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SignInAttempt(Base):
    """One console sign-in attempt, kept for the rate limit (by e-mail and by client
    address). In the store rather than Redis, so the limit holds on the embedded default
    and across every web process."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_email_at", "email", "at"),
        Index("ix_sign_in_attempts_client_at", "client", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    client: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LockFence(Base):
    """The newest fencing token issued for a lock name (``sync:<connection id>``): each
    holder of the lock claims the next one, and a page commits only while its run's token
    is still the newest, so a run that lost its lock can no longer write."""

    __tablename__ = "lock_fences"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
