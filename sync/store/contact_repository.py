"""Queries on secondary contacts for the sync engine: every one lives here.

A contact syncs with one CRM contact (``connection_id``, ``crm_id``); a billing-side
contact not yet in any CRM has neither, and is ``pending``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from sync.store.models import Conflict, ContactRow, LinkRow, utcnow
from sync.store.repository import bulk_insert, refresh_statistics, rows_among, scalars_among

_CHUNK = 500
#: the Core table, for executemany UPDATEs (the ORM's bulk update wants every row's keys)
_TABLE: Table = ContactRow.__table__  # type: ignore[assignment]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def contacts_by_crm_ids(
    session: Session, connection_id: str, crm_ids: Sequence[str]
) -> dict[str, ContactRow]:
    """This connection's contacts by CRM contact id."""
    query = select(ContactRow).where(ContactRow.connection_id == connection_id)
    return {
        str(row.crm_id): row for row in scalars_among(session, query, ContactRow.crm_id, crm_ids)
    }


def unsynced_contacts_of(
    session: Session, organisation_id: str, customer_ids: Sequence[str]
) -> list[ContactRow]:
    """The customers' billing-side contacts that no CRM has yet (matched by e-mail)."""
    query = select(ContactRow).where(
        ContactRow.organisation_id == organisation_id,
        ContactRow.crm_id.is_(None),
        ContactRow.email.is_not(None),
    )
    return list(scalars_among(session, query, ContactRow.customer_id, customer_ids))


@dataclass(frozen=True)
class PendingContact:
    """A billing-side contact change to push, with the CRM account / company of its
    customer in this connection."""

    row: ContactRow
    account_id: str


def pending_contacts(
    session: Session,
    organisation_id: str,
    connection_id: str,
    *,
    after: str = "",
    limit: int = 1000,
    customer_ids: Sequence[str] | None = None,
) -> list[PendingContact]:
    """Contacts changed on the billing side and not yet pushed, of customers linked in this
    connection (active links), that are this connection's or in no CRM yet; by contact id
    from ``after``."""
    query = (
        select(ContactRow, LinkRow.crm_id)
        .join(
            LinkRow,
            and_(
                LinkRow.customer_id == ContactRow.customer_id,
                LinkRow.connection_id == connection_id,
                LinkRow.state == "active",
            ),
        )
        .where(
            ContactRow.organisation_id == organisation_id,
            ContactRow.pending.is_(True),
            ContactRow.state == "active",
            or_(ContactRow.connection_id.is_(None), ContactRow.connection_id == connection_id),
            ContactRow.id > after,
        )
        .order_by(ContactRow.id)
        .limit(limit)
    )
    if customer_ids is not None:
        query = query.where(ContactRow.customer_id.in_(list(customer_ids)))
    return [PendingContact(row, str(crm_id)) for row, crm_id in session.execute(query)]


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


def settle_pushed(session: Session, pushed: Sequence[tuple[str, int]]) -> None:
    """Pushed contacts are no longer pending, unless changed again (a newer ``version``)
    since they were read for the push."""
    if not pushed:
        return
    table = _TABLE
    session.execute(
        update(table)
        .where(table.c.id == bindparam("v_id"), table.c.version == bindparam("v_version"))
        .values(pending=False),
        [{"v_id": contact_id, "v_version": version} for contact_id, version in pushed],
    )


def flag_contacts(session: Session, contact_ids: Sequence[str]) -> None:
    """Contacts the CRM deleted (or moved off the account): kept, flagged."""
    for chunk in _chunks(list(contact_ids)):
        session.execute(
            update(ContactRow)
            .where(ContactRow.id.in_(chunk))
            .values(state="crm_deleted", updated_at=utcnow())
        )


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
    for chunk in _chunks(list(dict.fromkeys(customer_ids))):
        found += session.scalars(
            select(ContactRow).where(
                ContactRow.organisation_id == organisation_id, ContactRow.customer_id.in_(chunk)
            )
        )
    return found
