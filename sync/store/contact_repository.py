"""Queries on secondary contacts for the sync engine: every one lives here.

A contact syncs with one CRM contact in each connection that links its customer: the first
on its own row (``connection_id``, ``crm_id``, ``base``, ``link_version``), the others in
``contact_links`` (:class:`~sync.store.models.ContactRow`). A billing-side contact not yet
in any CRM has none, and is ``pending``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, case, exists, or_, select, update
from sqlalchemy.orm import Session

from sync.store.models import Conflict, ContactLinkRow, ContactRow, LinkRow, utcnow
from sync.store.repository import (
    _insert_for,
    bulk_insert,
    chunks,
    refresh_statistics,
    rows_among,
    scalars_among,
)

#: ids per statement in this module's chunked queries (``chunks`` defaults to 1000)
_CHUNK = 500
#: the Core table, for executemany UPDATEs (the ORM's bulk update wants every row's keys)
_TABLE: Table = ContactRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class LinkedContact:
    """A contact with its CRM contact in one connection: the CRM id, the base agreed on
    with it (None: the row's own values) and the contact's version it has; ``home``: kept
    on the contact's row (its first connection) rather than in ``contact_links``."""

    row: ContactRow
    crm_id: str
    base: dict[str, Any] | None
    version: int
    home: bool


def contacts_by_crm_ids(
    session: Session, connection_id: str, crm_ids: Sequence[str]
) -> dict[str, LinkedContact]:
    """This connection's contacts by CRM contact id (home links, then the others)."""
    found: dict[str, LinkedContact] = {}
    query = select(ContactRow).where(ContactRow.connection_id == connection_id)
    for row in scalars_among(session, query, ContactRow.crm_id, crm_ids):
        crm_id = str(row.crm_id)
        found[crm_id] = LinkedContact(row, crm_id, row.base, int(row.link_version), True)
    others = (
        select(ContactRow, ContactLinkRow)
        .join(ContactLinkRow, ContactLinkRow.contact_id == ContactRow.id)
        .where(ContactLinkRow.connection_id == connection_id)
    )
    for row, link in rows_among(session, others, ContactLinkRow.crm_id, crm_ids):
        found[link.crm_id] = LinkedContact(row, link.crm_id, link.base, link.version, False)
    return found


def _unlinked_in(connection_id: str) -> Any:
    """The contacts with no CRM contact in this connection."""
    return and_(
        or_(ContactRow.connection_id.is_(None), ContactRow.connection_id != connection_id),
        ~exists().where(
            ContactLinkRow.contact_id == ContactRow.id,
            ContactLinkRow.connection_id == connection_id,
        ),
    )


def unsynced_contacts_of(
    session: Session, organisation_id: str, connection_id: str, customer_ids: Sequence[str]
) -> list[ContactRow]:
    """The customers' contacts with an e-mail and no CRM contact in this connection yet
    (billing's own, or another CRM's): a CRM contact of this connection is matched with
    them by e-mail."""
    query = select(ContactRow).where(
        ContactRow.organisation_id == organisation_id,
        ContactRow.email.is_not(None),
        _unlinked_in(connection_id),
    )
    return list(scalars_among(session, query, ContactRow.customer_id, customer_ids))


@dataclass(frozen=True)
class PendingContact:
    """A contact to push to this connection, with the CRM account / company of its
    customer there, and its CRM contact there (None: none yet, so a create)."""

    row: ContactRow
    account_id: str
    link: LinkedContact | None


def pending_contacts(
    session: Session,
    organisation_id: str,
    connection_id: str,
    *,
    after: str = "",
    limit: int = 1000,
    customer_ids: Sequence[str] | None = None,
    unlinked: bool = False,
) -> list[PendingContact]:
    """Active contacts of customers linked in this connection (active links) whose CRM
    contact here is behind the contact's version, or who have none here yet; by contact id
    from ``after``. Only ``pending`` contacts are read (an index), unless ``unlinked``
    (other connections in the organisation): then every contact of the customers that has
    no CRM contact here is read too, so that a customer linked here after its contacts
    reached another CRM gets them as well."""
    query = (
        _contacts_of_linked_customers(connection_id)
        .where(
            ContactRow.organisation_id == organisation_id,
            ContactRow.state == "active",
            _to_push_here(connection_id, unlinked=unlinked),
            ContactRow.id > after,
        )
        .order_by(ContactRow.id)
        .limit(limit)
    )
    if customer_ids is not None:
        query = query.where(ContactRow.customer_id.in_(list(customer_ids)))
    return [
        _pending_contact(connection_id, row, account_id, other)
        for row, account_id, other in session.execute(query)
    ]


def _contacts_of_linked_customers(connection_id: str) -> Select[ContactRow, str, ContactLinkRow]:
    """Contacts whose customer has an active link in this connection, with the CRM
    account / company of that link and the contact's ``contact_links`` row here (None:
    none, its CRM contact here, if any, is on its own row)."""
    return (
        select(ContactRow, LinkRow.crm_id, ContactLinkRow)
        .join(
            LinkRow,
            and_(
                LinkRow.customer_id == ContactRow.customer_id,
                LinkRow.connection_id == connection_id,
                LinkRow.state == "active",
            ),
        )
        .outerjoin(
            ContactLinkRow,
            and_(
                ContactLinkRow.contact_id == ContactRow.id,
                ContactLinkRow.connection_id == connection_id,
            ),
        )
    )


def _to_push_here(connection_id: str, *, unlinked: bool) -> Any:
    """The condition of :func:`pending_contacts` over :func:`_contacts_of_linked_customers`:
    a pending contact with no CRM contact here or one behind its version; with
    ``unlinked``, any contact with no CRM contact here as well."""
    # never NULL (a NULL would make ``~linked`` NULL, not true, for a contact in no CRM)
    home = and_(ContactRow.connection_id.is_not(None), ContactRow.connection_id == connection_id)
    link_version = case((home, ContactRow.link_version), else_=ContactLinkRow.version)
    linked = or_(home, ContactLinkRow.contact_id.is_not(None))
    behind = and_(
        ContactRow.pending.is_(True),
        or_(~linked, link_version < ContactRow.version),
    )
    return or_(behind, ~linked) if unlinked else behind


def _pending_contact(
    connection_id: str, row: ContactRow, account_id: Any, other: ContactLinkRow | None
) -> PendingContact:
    """A contact to push, with its CRM contact here: on its own row (its home link) or in
    ``other`` (its ``contact_links`` row here); None if it has none here yet."""
    link: LinkedContact | None = None
    if row.connection_id == connection_id and row.crm_id is not None:
        link = LinkedContact(row, row.crm_id, row.base, int(row.link_version), True)
    elif other is not None:
        link = LinkedContact(row, other.crm_id, other.base, other.version, False)
    return PendingContact(row, str(account_id), link)


def pending_creates_of(
    session: Session,
    organisation_id: str,
    connection_id: str,
    customer_ids: Sequence[str],
    *,
    after: str = "",
    limit: int = 1000,
    unlinked: bool = False,
) -> list[ContactRow]:
    """What :func:`pending_contacts` would find for these customers once they are linked
    in this connection (a plan, which links none): their active contacts with no CRM
    contact here, ``pending`` ones only unless ``unlinked``; by contact id from
    ``after``. Customers with an active link here are left out (they are already
    :func:`pending_contacts`' own)."""
    linked_here = exists().where(
        LinkRow.customer_id == ContactRow.customer_id,
        LinkRow.connection_id == connection_id,
        LinkRow.state == "active",
    )
    query = (
        select(ContactRow)
        .where(
            ContactRow.organisation_id == organisation_id,
            ContactRow.customer_id.in_(list(customer_ids)),
            ContactRow.state == "active",
            ContactRow.id > after,
            _unlinked_in(connection_id),
            ~linked_here,
        )
        .order_by(ContactRow.id)
        .limit(limit)
    )
    if not unlinked:
        query = query.where(ContactRow.pending.is_(True))
    return list(session.scalars(query))


def insert_contacts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert contacts known to be new (COPY on PostgreSQL)."""
    bulk_insert(session, ContactRow, rows, {"created_at": utcnow()})
    refresh_statistics(session, ContactRow.__tablename__, len(rows))


def update_contacts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Update contacts by id, each row its own columns."""
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(tuple(sorted(row)), []).append(row)
    for keys, group in by_keys.items():
        values: dict[str, Any] = {k: bindparam(f"v_{k}") for k in keys if k != "id"}
        if not values:
            continue
        # the Core table: an executemany of one UPDATE, not the ORM's per-row bulk update
        table = _TABLE
        session.execute(
            update(table).where(table.c.id == bindparam("v_id")).values(**values),
            [{f"v_{k}": v for k, v in row.items()} for row in group],
        )


@dataclass(frozen=True)
class LinkWrite:
    """A contact's CRM contact in this connection, to write: its id there, the new base,
    and the contact's version it has now."""

    contact_id: str
    crm_id: str
    base: dict[str, Any]
    version: int
    #: on the contact's row (True) or in ``contact_links`` (False); None: a new link of a
    #: row without a home link, kept on the row unless another connection took it since
    home: bool | None


def write_links(
    session: Session, organisation_id: str, connection_id: str, links: Sequence[LinkWrite]
) -> None:
    """Write contacts' CRM contacts in this connection: on the contact's row (its home
    link), or in ``contact_links`` (inserted or updated)."""
    now = utcnow()
    _update_home_links(session, connection_id, [link for link in links if link.home])
    others = [link for link in links if link.home is False]
    new = {link.contact_id: link for link in links if link.home is None}
    if new:
        others.extend(_claim_homes(session, connection_id, new, now))
    if others:
        _upsert_contact_links(session, organisation_id, connection_id, others, now)


def _update_home_links(session: Session, connection_id: str, homes: Sequence[LinkWrite]) -> None:
    """The new base and version of links kept on the contact's own row."""
    if not homes:
        return
    table = _TABLE
    session.execute(
        update(table)
        .where(table.c.id == bindparam("v_id"), table.c.connection_id == connection_id)
        .values(base=bindparam("v_base"), link_version=bindparam("v_version"))
        .execution_options(synchronize_session=False),
        [{"v_id": h.contact_id, "v_base": h.base, "v_version": h.version} for h in homes],
    )


def _claim_homes(
    session: Session, connection_id: str, new: dict[str, LinkWrite], now: datetime
) -> list[LinkWrite]:
    """Keep new links on their contacts' rows where no connection has one there yet;
    returns those that must go to ``contact_links`` instead, because another connection
    made the row its home meanwhile."""
    table = _TABLE
    session.execute(
        update(table)
        .where(table.c.id == bindparam("v_id"), table.c.connection_id.is_(None))
        .values(
            connection_id=connection_id,
            crm_id=bindparam("v_crm_id"),
            base=bindparam("v_base"),
            link_version=bindparam("v_version"),
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
        [
            {"v_id": n.contact_id, "v_crm_id": n.crm_id, "v_base": n.base}
            | {"v_version": n.version}
            for n in new.values()
        ],
    )
    # the UPDATE cannot say which rows it skipped: read back who holds each row now
    apart: list[LinkWrite] = []
    query = select(ContactRow.id, ContactRow.connection_id, ContactRow.crm_id)
    for contact_id, home, crm_id in rows_among(session, query, ContactRow.id, list(new)):
        if (home, crm_id) != (connection_id, new[contact_id].crm_id):
            apart.append(new[contact_id])
    return apart


def _upsert_contact_links(
    session: Session,
    organisation_id: str,
    connection_id: str,
    links: Sequence[LinkWrite],
    now: datetime,
) -> None:
    """Insert links in ``contact_links``, or update the base and version of those there."""
    links_table: Table = ContactLinkRow.__table__  # type: ignore[assignment]
    values = [
        {
            "contact_id": link.contact_id,
            "connection_id": connection_id,
            "organisation_id": organisation_id,
            "crm_id": link.crm_id,
            "base": link.base,
            "version": link.version,
            "created_at": now,
            "updated_at": now,
        }
        for link in links
    ]
    insert = _insert_for(session)(links_table)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["contact_id", "connection_id"],
            set_={
                "crm_id": insert.excluded.crm_id,
                "base": insert.excluded.base,
                "version": insert.excluded.version,
                "updated_at": insert.excluded.updated_at,
            },
        ),
        values,
    )


def settle_pushed(session: Session, settled: Sequence[tuple[str, int]]) -> None:
    """Contacts pushed at ``version`` are no longer pending once every connection that
    links their customer has a CRM contact at that version (none changed it again since
    it was read for the push)."""
    if not settled:
        return
    table = _TABLE
    others: Table = ContactLinkRow.__table__  # type: ignore[assignment]
    links: Table = LinkRow.__table__  # type: ignore[assignment]
    has_it = or_(
        and_(
            links.c.connection_id == table.c.connection_id,
            table.c.link_version >= table.c.version,
        ),
        exists().where(
            others.c.contact_id == table.c.id,
            others.c.connection_id == links.c.connection_id,
            others.c.version >= table.c.version,
        ),
    )
    lacking = exists().where(
        links.c.customer_id == table.c.customer_id,
        links.c.state == "active",
        ~has_it,
    )
    session.execute(
        update(table)
        .where(
            table.c.id == bindparam("v_id"),
            table.c.version == bindparam("v_version"),
            ~lacking,
        )
        .values(pending=False)
        .execution_options(synchronize_session=False),
        [{"v_id": contact_id, "v_version": version} for contact_id, version in settled],
    )


def flag_contacts(session: Session, connection_id: str, contact_ids: Sequence[str]) -> None:
    """Contacts this connection's CRM deleted (or moved off the account): kept, flagged."""
    for chunk in chunks(list(contact_ids), _CHUNK):
        session.execute(
            update(ContactRow)
            .where(ContactRow.id.in_(chunk))
            .values(state="crm_deleted", flagged_by=connection_id, updated_at=utcnow())
        )


def links_of(session: Session, contact_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Contact id -> connection id -> its CRM contact id there (home links included)."""
    found: dict[str, dict[str, str]] = {}
    for chunk in chunks(list(dict.fromkeys(contact_ids)), _CHUNK):
        for contact_id, connection_id, crm_id in session.execute(
            select(ContactRow.id, ContactRow.connection_id, ContactRow.crm_id).where(
                ContactRow.id.in_(chunk), ContactRow.crm_id.is_not(None)
            )
        ):
            found.setdefault(contact_id, {})[str(connection_id)] = str(crm_id)
        for link in session.scalars(
            select(ContactLinkRow).where(ContactLinkRow.contact_id.in_(chunk))
        ):
            found.setdefault(link.contact_id, {})[link.connection_id] = link.crm_id
    return found


def open_contact_conflicts(
    session: Session, connection_id: str, crm_ids: Sequence[str]
) -> dict[str, set[str]]:
    """CRM contact id -> the contact fields with an open conflict (not merged until an
    operator resolves them)."""
    query = select(Conflict.crm_id, Conflict.field).where(
        Conflict.connection_id == connection_id,
        Conflict.kind == "contact",
        Conflict.status == "open",
    )
    found: dict[str, set[str]] = {}
    for crm_id, name in rows_among(session, query, Conflict.crm_id, crm_ids):
        found.setdefault(str(crm_id), set()).add(str(name).removeprefix("contact."))
    return found


def contacts_of_customers(
    session: Session, organisation_id: str, customer_ids: Sequence[str]
) -> list[ContactRow]:
    """Every contact of these customers, in one query per chunk."""
    found: list[ContactRow] = []
    for chunk in chunks(list(dict.fromkeys(customer_ids)), _CHUNK):
        found += session.scalars(
            select(ContactRow).where(
                ContactRow.organisation_id == organisation_id, ContactRow.customer_id.in_(chunk)
            )
        )
    return found


def linked_elsewhere(session: Session, connection_id: str, customer_ids: Sequence[str]) -> set[str]:
    """The customers (of these) linked in another connection too (active links)."""
    found: set[str] = set()
    for chunk in chunks(list(dict.fromkeys(customer_ids)), _CHUNK):
        found.update(
            session.scalars(
                select(LinkRow.customer_id).where(
                    LinkRow.customer_id.in_(chunk),
                    LinkRow.connection_id != connection_id,
                    LinkRow.state == "active",
                )
            )
        )
    return found
