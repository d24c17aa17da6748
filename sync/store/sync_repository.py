"""Every query of the sync engine: connections, links, conflicts, cursors, runs, failures,
the webhook inbox and the audit trail. Bulk where it runs per page; nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.orm import Session, aliased

from sync import telemetry
from sync.store.models import (
    AuditEvent,
    Conflict,
    ConnectionRow,
    ContactLinkRow,
    ContactRow,
    Cursor,
    CustomerRow,
    InboundEvent,
    LinkRow,
    RecordFailure,
    SyncRun,
    new_id,
    utcnow,
)
from sync.store.repository import (
    _insert_for,
    among,
    bulk_insert,
    chunks,
    copy_rows,
    refresh_statistics,
    rows_among,
    scalars_among,
)

# --- connections ---------------------------------------------------------------------------


def get_connection(session: Session, connection_id: str) -> ConnectionRow | None:
    return session.get(ConnectionRow, connection_id)


def find_connection(session: Session, organisation_id: str, ref: str) -> ConnectionRow | None:
    """A connection of the organisation by id or by name."""
    return session.scalar(
        select(ConnectionRow).where(
            ConnectionRow.organisation_id == organisation_id,
            (ConnectionRow.id == ref) | (ConnectionRow.name == ref),
        )
    )


def list_connections(
    session: Session, organisation_id: str | None = None
) -> Sequence[ConnectionRow]:
    query = select(ConnectionRow).order_by(ConnectionRow.created_at)
    if organisation_id is not None:
        query = query.where(ConnectionRow.organisation_id == organisation_id)
    return session.scalars(query).all()


def lock_all_connections(session: Session) -> Sequence[ConnectionRow]:
    """Every connection of every organisation, rows locked until the transaction ends
    (re-encrypting credentials under a new key)."""
    return session.scalars(select(ConnectionRow).order_by(ConnectionRow.id).with_for_update()).all()


def due_connections(session: Session, now: datetime) -> Sequence[ConnectionRow]:
    """Active connections whose next scheduled sync is due (or never ran)."""
    return session.scalars(
        select(ConnectionRow).where(
            ConnectionRow.state == "active",
            (ConnectionRow.next_sync_at.is_(None)) | (ConnectionRow.next_sync_at <= now),
        )
    ).all()


def limit_pauses_ended(session: Session, now: datetime) -> Sequence[ConnectionRow]:
    """Connections paused by a CRM limit whose ``limit_until`` has passed (row-locked, so
    two dispatchers resume each once)."""
    return session.scalars(
        select(ConnectionRow)
        .where(ConnectionRow.limit_until.is_not(None), ConnectionRow.limit_until <= now)
        .with_for_update(skip_locked=True)
    ).all()


# --- links ---------------------------------------------------------------------------------


def links_by_crm_ids(
    session: Session, connection_id: str, crm_ids: Iterable[str]
) -> dict[str, LinkRow]:
    query = select(LinkRow).where(LinkRow.connection_id == connection_id)
    return {link.crm_id: link for link in scalars_among(session, query, LinkRow.crm_id, crm_ids)}


def customer_ids_by_crm_ids(
    session: Session, connection_id: str, crm_ids: Iterable[str]
) -> dict[str, str]:
    """CRM id -> linked customer id, for active links (two columns, no JSON)."""
    query = select(LinkRow.crm_id, LinkRow.customer_id).where(
        LinkRow.connection_id == connection_id, LinkRow.state == "active"
    )
    return {
        crm_id: customer_id
        for crm_id, customer_id in rows_among(session, query, LinkRow.crm_id, crm_ids)
    }


def links_by_customer_ids(
    session: Session, connection_id: str, customer_ids: Iterable[str]
) -> dict[str, LinkRow]:
    """The active-or-deleted link of each customer in this connection (merged ones skipped)."""
    query = select(LinkRow).where(LinkRow.connection_id == connection_id, LinkRow.state != "merged")
    found = scalars_among(session, query, LinkRow.customer_id, customer_ids)
    return {link.customer_id: link for link in found}


def links_of_customer(
    session: Session, organisation_id: str, customer_id: str
) -> Sequence[LinkRow]:
    return session.scalars(
        select(LinkRow).where(
            LinkRow.organisation_id == organisation_id, LinkRow.customer_id == customer_id
        )
    ).all()


_LINK_DEFAULTS: dict[str, Any] = {
    "base": {},
    "billing_last": {},
    "crm_last": {},
    "crm_modified_at": None,
    "state": "active",
    "merged_into": None,
}


def insert_links(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    now = utcnow()
    bulk_insert(session, LinkRow, rows, {**_LINK_DEFAULTS, "created_at": now, "updated_at": now})
    # the contacts' owners and every page's links are looked up by CRM id: without
    # statistics PostgreSQL scans the connection's links for each lookup
    refresh_statistics(session, LinkRow.__tablename__, len(rows))


def update_links(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Update many links by id; rows are grouped by the set of columns they set."""
    if not rows:
        return
    now = utcnow()
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(k for k in row if k != "id"))
        groups.setdefault(columns, []).append(
            {"b_id": row["id"], "updated_at": now, **{c: row[c] for c in columns}}
        )
    for columns, params in groups.items():
        stmt = (
            update(LinkRow)
            .where(LinkRow.id == bindparam("b_id"))
            .values({c: bindparam(c) for c in (*columns, "updated_at")})
        )
        session.connection().execute(stmt, params)


def count_links(session: Session, connection_id: str, state: str | None = None) -> int:
    query = select(func.count()).select_from(LinkRow).where(LinkRow.connection_id == connection_id)
    if state is not None:
        query = query.where(LinkRow.state == state)
    return session.scalar(query) or 0


# --- conflicts -----------------------------------------------------------------------------


def open_conflict_fields(session: Session, link_ids: Iterable[str]) -> dict[str, set[str]]:
    """For each link, the fields with an open conflict (one query per thousand links)."""
    query = select(Conflict.link_id, Conflict.field).where(Conflict.status == "open")
    found: dict[str, set[str]] = {}
    for link_id, field in rows_among(session, query, Conflict.link_id, link_ids):
        found.setdefault(link_id, set()).add(field)
    return found


def customers_in_open_merges(
    session: Session, connection_id: str, customer_ids: Iterable[str]
) -> set[str]:
    """The customers whose CRM record this connection saw merged into another customer's,
    with the merge conflict still open."""
    query = select(Conflict.customer_id).where(
        Conflict.connection_id == connection_id,
        Conflict.kind == "merge",
        Conflict.status == "open",
    )
    return set(scalars_among(session, query, Conflict.customer_id, customer_ids))


def insert_conflicts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    bulk_insert(session, Conflict, rows, {"created_at": utcnow(), "link_id": None})
    telemetry.conflicts_opened(rows)


def get_conflict(session: Session, organisation_id: str, conflict_id: str) -> Conflict | None:
    return session.scalar(
        select(Conflict).where(
            Conflict.organisation_id == organisation_id, Conflict.id == conflict_id
        )
    )


def list_conflicts(
    session: Session,
    organisation_id: str,
    *,
    connection_id: str | None = None,
    status: str | None = "open",
    limit: int = 100,
) -> Sequence[Conflict]:
    query = select(Conflict).where(Conflict.organisation_id == organisation_id)
    if connection_id is not None:
        query = query.where(Conflict.connection_id == connection_id)
    if status is not None:
        query = query.where(Conflict.status == status)
    return session.scalars(query.order_by(Conflict.created_at, Conflict.field).limit(limit)).all()


def count_conflicts(session: Session, connection_id: str, status: str = "open") -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Conflict)
            .where(Conflict.connection_id == connection_id, Conflict.status == status)
        )
        or 0
    )


# --- cursors -------------------------------------------------------------------------------


def get_cursor(session: Session, connection_id: str, obj: str) -> str | None:
    row = session.get(Cursor, (connection_id, obj))
    return row.value if row else None


def set_cursor(session: Session, connection_id: str, obj: str, value: str) -> None:
    stmt = _insert_for(session)(Cursor).values(
        connection_id=connection_id, object=obj, value=value, updated_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["connection_id", "object"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt)


def keep_first_cursor(session: Session, connection_id: str, obj: str, value: str) -> str:
    """Set the cursor ``obj`` to ``value`` unless it is set already; the cursor's value
    (the first one written wins when two transactions race)."""
    stmt = _insert_for(session)(Cursor).values(
        connection_id=connection_id, object=obj, value=value, updated_at=utcnow()
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["connection_id", "object"]))
    return session.scalars(
        select(Cursor.value).where(Cursor.connection_id == connection_id, Cursor.object == obj)
    ).one()


def get_run(session: Session, organisation_id: str, run_id: str) -> SyncRun | None:
    return session.scalar(
        select(SyncRun).where(SyncRun.organisation_id == organisation_id, SyncRun.id == run_id)
    )


def list_runs(
    session: Session,
    organisation_id: str,
    connection_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Sequence[SyncRun]:
    """Runs, newest first; a page of ``limit`` from ``offset``."""
    query = select(SyncRun).where(SyncRun.organisation_id == organisation_id)
    if connection_id is not None:
        query = query.where(SyncRun.connection_id == connection_id)
    query = query.order_by(SyncRun.started_at.desc(), SyncRun.id).limit(limit).offset(offset)
    return session.scalars(query).all()


def add_run(
    session: Session, row: ConnectionRow, *, trigger: str, scope: str, full: bool, plan: bool
) -> SyncRun:
    """A run of ``row``'s connection, recorded as running (its id flushed)."""
    run = SyncRun(
        id=new_id(),
        organisation_id=row.organisation_id,
        connection_id=row.id,
        trigger=trigger,
        scope=scope,
        status="running",
        full=full,
        plan=plan,
        counters={},
    )
    session.add(run)
    session.flush()
    return run


def mark_interrupted_runs(session: Session, connection_id: str, scope: str) -> int:
    """Runs of the connection and scope still marked running: their worker died (the lock
    of that scope says no other run is alive). They end ``interrupted``; the new run
    resumes from the cursor."""
    result = session.execute(
        update(SyncRun)
        .where(
            SyncRun.connection_id == connection_id,
            SyncRun.scope == scope,
            SyncRun.status == "running",
        )
        .values(status="interrupted", finished_at=utcnow(), error="the worker stopped mid-run")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def record_failures(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Put failed records in the dead letter, one open row per record and direction: a
    record that fails again updates its open row (error, attempts) instead of adding one."""
    if not rows:
        return
    telemetry.records_failed(rows)
    now = utcnow()
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        latest[_failure_key(row)] = row
    connection_id = rows[0]["connection_id"]
    keys = [key for _, _, key in latest]
    existing: dict[tuple[str, str, str], RecordFailure] = {}
    for chunk in chunks(keys):
        query = select(RecordFailure).where(
            RecordFailure.connection_id == connection_id,
            RecordFailure.status == "open",
            among(session, RecordFailure.crm_id, chunk)
            | among(session, RecordFailure.customer_id, chunk),
        )
        for failure in session.scalars(query):
            existing[_failure_key(failure.__dict__)] = failure
    new: list[dict[str, Any]] = []
    for key, row in latest.items():
        found = existing.get(key)
        if found is None:
            new.append(row)
            continue
        failure = found
        failure.attempts += 1
        failure.run_id = row["run_id"]
        failure.payload = row["payload"]
        failure.error_kind = row["error_kind"]
        failure.error_code = row["error_code"]
        failure.error_message = row["error_message"]
        failure.updated_at = now
    bulk_insert(
        session, RecordFailure, new, {"created_at": now, "updated_at": now, "next_retry_at": None}
    )


def _failure_key(row: dict[str, Any]) -> tuple[str, str, str]:
    key = row["crm_id"] if row["direction"] == "pull" and row.get("crm_id") else row["customer_id"]
    return (row["connection_id"], row["direction"], key or "")


def open_failures(
    session: Session,
    organisation_id: str,
    *,
    connection_id: str | None = None,
    run_id: str | None = None,
    failure_ids: Sequence[str] | None = None,
    limit: int = 10_000,
) -> Sequence[RecordFailure]:
    query = select(RecordFailure).where(
        RecordFailure.organisation_id == organisation_id, RecordFailure.status == "open"
    )
    if connection_id is not None:
        query = query.where(RecordFailure.connection_id == connection_id)
    if run_id is not None:
        query = query.where(RecordFailure.run_id == run_id)
    if failure_ids is not None:
        query = query.where(RecordFailure.id.in_(list(failure_ids)))
    return session.scalars(query.order_by(RecordFailure.created_at).limit(limit)).all()


def list_failures(
    session: Session, organisation_id: str, *, status: str | None = "open", limit: int = 100
) -> Sequence[RecordFailure]:
    query = select(RecordFailure).where(RecordFailure.organisation_id == organisation_id)
    if status is not None:
        query = query.where(RecordFailure.status == status)
    return session.scalars(query.order_by(RecordFailure.created_at.desc()).limit(limit)).all()


def get_failure(session: Session, organisation_id: str, failure_id: str) -> RecordFailure | None:
    return session.scalar(
        select(RecordFailure).where(
            RecordFailure.organisation_id == organisation_id, RecordFailure.id == failure_id
        )
    )


def has_customers(session: Session, organisation_id: str) -> bool:
    """Whether the organisation has any customer (so any link, in any connection)."""
    found = session.scalar(
        select(CustomerRow.id).where(CustomerRow.organisation_id == organisation_id).limit(1)
    )
    return found is not None


def has_open_failures(session: Session, connection_id: str) -> bool:
    return (
        session.scalar(
            select(RecordFailure.id)
            .where(RecordFailure.connection_id == connection_id, RecordFailure.status == "open")
            .limit(1)
        )
        is not None
    )


def open_push_failure_payloads(
    session: Session, connection_id: str, customer_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Customer id -> the payload of its open push failure, for these customers."""
    statement = select(RecordFailure.customer_id, RecordFailure.payload).where(
        RecordFailure.connection_id == connection_id,
        RecordFailure.direction == "push",
        RecordFailure.status == "open",
    )
    return {
        customer_id: dict(payload or {})
        for customer_id, payload in rows_among(
            session, statement, RecordFailure.customer_id, customer_ids
        )
    }


def resolve_failures_for(
    session: Session, connection_id: str, direction: str, keys: Iterable[str]
) -> None:
    """Close the open failures of records that have now synced (by CRM or customer id)."""
    ids = list(set(keys))
    column = RecordFailure.crm_id if direction == "pull" else RecordFailure.customer_id
    for chunk in chunks(ids):
        session.execute(
            update(RecordFailure)
            .where(
                RecordFailure.connection_id == connection_id,
                RecordFailure.direction == direction,
                RecordFailure.status == "open",
                column.in_(chunk),
            )
            .values(status="resolved", updated_at=utcnow())
        )


#: the ``direction`` of a connection's own failure: a run that failed as a whole (no record
#: of its own: ``crm_id`` and ``customer_id`` are null); one open row per connection
CONNECTION_FAILURE = "connection"


def open_connection_failure(
    session: Session, connection_id: str, *, lock: bool = False
) -> RecordFailure | None:
    """The connection's open failure (a run that failed as a whole), if any. With ``lock``
    the connection's row is locked first (PostgreSQL), so two runs that fail at once (a
    sync and a webhook run) find or open the same row; SQLite writes one at a time."""
    if lock:
        session.execute(
            select(ConnectionRow.id).where(ConnectionRow.id == connection_id).with_for_update()
        )
    return session.scalar(
        select(RecordFailure)
        .where(
            RecordFailure.connection_id == connection_id,
            RecordFailure.direction == CONNECTION_FAILURE,
            RecordFailure.status == "open",
        )
        .order_by(RecordFailure.created_at)
        .limit(1)
    )


def record_connection_failure(
    session: Session,
    *,
    organisation_id: str,
    connection_id: str,
    run_id: str,
    error_kind: str,
    error_code: str,
    error_message: str,
    payload: dict[str, Any],
) -> tuple[RecordFailure, bool]:
    """Open the connection's failure for the run that failed, or, when one is open already,
    update it in place (same id; ``attempts`` counted on; the newest run, error and
    payload). The row, and whether it was opened now."""
    now = utcnow()
    found = open_connection_failure(session, connection_id, lock=True)
    if found is not None:
        found.attempts += 1
        found.run_id = run_id
        found.error_kind = error_kind
        found.error_code = error_code
        found.error_message = error_message
        found.payload = payload
        found.updated_at = now
        return found, False
    row = RecordFailure(
        organisation_id=organisation_id,
        connection_id=connection_id,
        run_id=run_id,
        direction=CONNECTION_FAILURE,
        crm_id=None,
        customer_id=None,
        payload=payload,
        error_kind=error_kind,
        error_code=error_code,
        error_message=error_message,
        attempts=1,
        status="open",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row, True


def resolve_connection_failure(session: Session, connection_id: str) -> RecordFailure | None:
    """Close the connection's open failure (a run of the whole connection succeeded: the
    fault is gone); the row closed, or None when none was open."""
    found = open_connection_failure(session, connection_id, lock=True)
    if found is not None:
        found.status = "resolved"
        found.updated_at = utcnow()
    return found


# --- contacts from the CRM -----------------------------------------------------------------


def has_crm_contacts(session: Session, connection_id: str) -> bool:
    """Whether any contact has a CRM contact in this connection (on its row, or in
    ``contact_links``)."""
    found = session.scalar(
        select(ContactRow.id).where(ContactRow.connection_id == connection_id).limit(1)
    )
    if found is not None:
        return True
    other = select(ContactLinkRow.contact_id).where(ContactLinkRow.connection_id == connection_id)
    return session.scalar(other.limit(1)) is not None


def insert_crm_contacts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert CRM contacts known to be new (COPY on PostgreSQL)."""
    bulk_insert(session, ContactRow, rows, {"created_at": utcnow()})


def upsert_crm_contacts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update CRM contacts keyed by (connection, crm_id), changing only rows
    whose values differ. PostgreSQL: COPY into a temporary table and one INSERT ... ON
    CONFLICT from it; SQLite: one executemany."""
    if not rows:
        return
    now = utcnow()
    rows = [{**r, "created_at": now} for r in rows]
    if session.get_bind().dialect.name == "postgresql":
        columns = sorted(rows[0])
        session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS contacts_in "
                "(LIKE contacts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
        )
        copy_rows(session, "contacts_in", columns, rows, json_columns={"communications"})
        names = ", ".join(columns)
        session.execute(
            text(
                f"INSERT INTO contacts ({names}) SELECT {names} FROM contacts_in "
                "ON CONFLICT (connection_id, crm_id) DO UPDATE SET "
                "customer_id = EXCLUDED.customer_id, name = EXCLUDED.name, email = EXCLUDED.email "
                "WHERE (contacts.customer_id, contacts.name, contacts.email) IS DISTINCT FROM "
                "(EXCLUDED.customer_id, EXCLUDED.name, EXCLUDED.email)"
            )
        )
        session.execute(text("TRUNCATE contacts_in"))
        return
    stmt = _insert_for(session)(ContactRow)
    stmt = stmt.on_conflict_do_update(
        index_elements=["connection_id", "crm_id"],
        set_={
            "customer_id": stmt.excluded.customer_id,
            "name": stmt.excluded.name,
            "email": stmt.excluded.email,
        },
    )
    session.execute(stmt, rows)


def delete_crm_contacts(session: Session, connection_id: str, crm_ids: Sequence[str]) -> None:
    for chunk in chunks(crm_ids):
        session.execute(
            delete(ContactRow).where(
                ContactRow.connection_id == connection_id, ContactRow.crm_id.in_(chunk)
            )
        )


# --- inbox and audit -----------------------------------------------------------------------


def add_inbound_events(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert webhook events, ignoring ones already in the inbox (same connection and event
    key). Returns the ids of the rows that are new."""
    if not rows:
        return []
    stmt = _insert_for(session)(InboundEvent).values(
        [{**r, "received_at": utcnow(), "status": "pending"} for r in rows]
    )
    stmt = stmt.on_conflict_do_nothing(index_elements=["connection_id", "event_key"]).returning(
        InboundEvent.id
    )
    return [row[0] for row in session.execute(stmt)]


def pending_events(
    session: Session, connection_id: str, limit: int = 1000
) -> Sequence[InboundEvent]:
    return session.scalars(
        select(InboundEvent)
        .where(InboundEvent.connection_id == connection_id, InboundEvent.status == "pending")
        .order_by(InboundEvent.id)
        .limit(limit)
    ).all()


def connections_with_pending_events(session: Session, received_before: datetime) -> list[str]:
    """Active connections holding inbox events still pending since before the given time
    (whose sync was lost or failed): the scheduler enqueues their inbox again."""
    query = (
        select(InboundEvent.connection_id)
        .join(ConnectionRow, ConnectionRow.id == InboundEvent.connection_id)
        .where(
            InboundEvent.status == "pending",
            InboundEvent.received_at <= received_before,
            ConnectionRow.state == "active",
        )
        .distinct()
    )
    return list(session.scalars(query))


def mark_events_handled(session: Session, event_ids: Sequence[int]) -> None:
    for chunk in chunks(event_ids):
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(chunk))
            .values(status="handled", handled_at=utcnow())
        )


def add_audit(
    session: Session,
    organisation_id: str,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
) -> None:
    session.add(
        AuditEvent(
            organisation_id=organisation_id,
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
        )
    )


def add_audits(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    bulk_insert(session, AuditEvent, rows, {"at": utcnow()})


def customers_to_push(
    session: Session, organisation_id: str, connection_id: str, after_id: str, limit: int
) -> Sequence[str]:
    """Ids of customers (ordered, after ``after_id``) that this connection has not linked
    yet or that changed since their link was last written: what a first sync must push."""
    link = aliased(LinkRow)
    query = (
        select(CustomerRow.id)
        .outerjoin(
            link,
            (link.customer_id == CustomerRow.id)
            & (link.connection_id == connection_id)
            & (link.state != "merged"),
        )
        .where(
            CustomerRow.organisation_id == organisation_id,
            CustomerRow.id > after_id,
            link.id.is_(None) | (CustomerRow.updated_at > link.updated_at),
        )
        .order_by(CustomerRow.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def count_connections(session: Session, organisation_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ConnectionRow)
            .where(ConnectionRow.organisation_id == organisation_id)
        )
        or 0
    )


def crm_ids_of_customers(
    session: Session, organisation_id: str, customer_ids: Iterable[str]
) -> dict[str, set[str]]:
    """Every CRM id each customer is linked to, in any connection (its aliases)."""
    query = select(LinkRow.customer_id, LinkRow.crm_id).where(
        LinkRow.organisation_id == organisation_id
    )
    found: dict[str, set[str]] = {}
    for customer_id, crm_id in rows_among(session, query, LinkRow.customer_id, customer_ids):
        found.setdefault(customer_id, set()).add(crm_id)
    return found
