"""Every query on organisations, API keys, business entities, customers and the outbox.

All functions take the organisation explicitly and scope every query by it. Bulk paths are
one statement per batch (``INSERT ... ON CONFLICT`` on SQLite and PostgreSQL alike), never a
statement per row. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Row,
    Select,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from sync.store.models import (
    ApiKey,
    BusinessEntity,
    ContactRow,
    CustomerRow,
    Organisation,
    OutboxEntry,
    new_id,
    utcnow,
)

#: columns of ``customers`` that hold the public fields (everything but id / org / stamps)
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "customer_name",
    "external_id",
    "email",
    "phone_number",
    "address",
    "ship_to_address",
    "tax_info",
    "custom_data",
    "currency",
    "communications_enabled",
    "auto_charge_enabled",
    "business_entity_id",
)

# Rows per multi-row INSERT: stays under SQLite's 32,766 bound parameters at ~16 columns.
_BATCH = 1000


def json_text(value: Any) -> str:
    """JSON text for the store: orjson, several times faster than the standard library on
    the hot path of every bulk write."""
    return orjson.dumps(value).decode()


def among(session: Session, column: Any, values: Sequence[str]) -> Any:
    """``column IN (values)``; on PostgreSQL as ``column = ANY(:array)``, one bound array
    instead of a thousand parameters, so the statement stays cached and binds fast."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    return column.in_(values)


def chunks(items: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    """``items`` a thousand at a time (by default): one statement each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def scalars_among(
    session: Session, statement: Select[Any], column: Any, values: Iterable[str]
) -> Iterator[Any]:
    """The objects ``statement`` selects whose ``column`` is one of ``values`` (repeats
    dropped), in one query per thousand values."""
    for chunk in chunks(list(set(values))):
        yield from session.scalars(statement.where(among(session, column, chunk)))


def rows_among(
    session: Session, statement: Select[*tuple[Any, ...]], column: Any, values: Iterable[str]
) -> Iterator[Row[*tuple[Any, ...]]]:
    """The rows ``statement`` selects whose ``column`` is one of ``values`` (repeats
    dropped), in one query per thousand values."""
    for chunk in chunks(list(set(values))):
        yield from session.execute(statement.where(among(session, column, chunk)))


def hash_api_key(key: str) -> str:
    """SHA-256 of an API key; keys are 256-bit random, so no salt or stretching is needed."""
    return hashlib.sha256(key.encode()).hexdigest()


# --- organisations, keys, entities -------------------------------------------------------


def add_organisation(session: Session, name: str, api_key: str) -> Organisation:
    org = Organisation(id=new_id(), name=name)
    session.add(org)
    session.flush()  # no ORM relationships: the organisation must exist before its key
    session.add(ApiKey(organisation_id=org.id, key_hash=hash_api_key(api_key), prefix=api_key[:8]))
    session.flush()
    return org


def get_organisation(session: Session, organisation_id: str) -> Organisation | None:
    return session.get(Organisation, organisation_id)


def list_organisations(session: Session) -> Sequence[Organisation]:
    return session.scalars(select(Organisation).order_by(Organisation.created_at)).all()


def api_key_belongs_to(session: Session, organisation_id: str, api_key: str) -> bool:
    found = session.scalar(
        select(ApiKey.id).where(
            ApiKey.organisation_id == organisation_id, ApiKey.key_hash == hash_api_key(api_key)
        )
    )
    return found is not None


def add_business_entity(session: Session, organisation_id: str, name: str) -> BusinessEntity:
    entity = BusinessEntity(id=new_id(), organisation_id=organisation_id, name=name)
    session.add(entity)
    session.flush()
    return entity


def list_business_entities(session: Session, organisation_id: str) -> Sequence[BusinessEntity]:
    return session.scalars(
        select(BusinessEntity)
        .where(BusinessEntity.organisation_id == organisation_id)
        .order_by(BusinessEntity.created_at)
    ).all()


def business_entity_ids(session: Session, organisation_id: str, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are business entities of the organisation."""
    wanted = list(set(ids))
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(BusinessEntity.id).where(
                BusinessEntity.organisation_id == organisation_id, BusinessEntity.id.in_(wanted)
            )
        )
    )


# --- customers -----------------------------------------------------------------------------


def _customers(organisation_id: str) -> Select[CustomerRow]:
    return select(CustomerRow).where(CustomerRow.organisation_id == organisation_id)


def get_customer(session: Session, organisation_id: str, customer_id: str) -> CustomerRow | None:
    return session.scalar(_customers(organisation_id).where(CustomerRow.id == customer_id))


def _customers_keyed(
    session: Session, organisation_id: str, column: Any, values: Iterable[str]
) -> dict[str, CustomerRow]:
    """Customers whose ``column`` is one of ``values``, keyed by that value, in one query
    per thousand values."""
    found = scalars_among(session, _customers(organisation_id), column, values)
    return {getattr(row, column.key): row for row in found}


def get_customers(
    session: Session, organisation_id: str, customer_ids: Iterable[str]
) -> dict[str, CustomerRow]:
    """Customers by id."""
    return _customers_keyed(session, organisation_id, CustomerRow.id, customer_ids)


def find_customers_by_external_ids(
    session: Session, organisation_id: str, external_ids: Iterable[str]
) -> dict[str, CustomerRow]:
    """Customers by external id."""
    return _customers_keyed(session, organisation_id, CustomerRow.external_id, external_ids)


def find_customers_by_emails(
    session: Session, organisation_id: str, emails: Iterable[str]
) -> dict[str, CustomerRow]:
    """Customers by e-mail."""
    return _customers_keyed(session, organisation_id, CustomerRow.email, emails)


def list_customers(
    session: Session,
    organisation_id: str,
    *,
    external_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[CustomerRow]:
    query = _customers(organisation_id)
    if external_id is not None:
        query = query.where(CustomerRow.external_id == external_id)
    query = query.order_by(CustomerRow.created_at, CustomerRow.id).limit(limit).offset(offset)
    return session.scalars(query).all()


def count_customers(session: Session, organisation_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(CustomerRow)
            .where(CustomerRow.organisation_id == organisation_id)
        )
        or 0
    )


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT (with ``on_conflict_*``) for the session's database."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"bulk upsert is not supported on {name}")


def upsert_customers(
    session: Session, organisation_id: str, rows: Sequence[dict[str, Any]]
) -> list[str]:
    """Insert or update many customers keyed by ``(organisation, external_id)``, one
    statement per thousand rows. Each row holds ``id`` and the :data:`CUSTOMER_COLUMNS`;
    an existing customer keeps its ``id`` and ``business_entity_id`` (immutable once set).
    Returns the ids, in input order.
    """
    dialect_insert = _insert_for(session)
    now = utcnow()
    ids: list[str] = []
    for start in range(0, len(rows), _BATCH):
        chunk = [
            {**row, "organisation_id": organisation_id, "created_at": now, "updated_at": now}
            for row in rows[start : start + _BATCH]
        ]
        stmt = dialect_insert(CustomerRow)
        updated = {
            column: stmt.excluded[column]
            for column in CUSTOMER_COLUMNS
            if column not in ("external_id", "business_entity_id")
        }
        updated["business_entity_id"] = func.coalesce(
            CustomerRow.business_entity_id, stmt.excluded.business_entity_id
        )
        updated["updated_at"] = stmt.excluded.updated_at
        stmt = stmt.on_conflict_do_update(
            index_elements=["organisation_id", "external_id"], set_=updated
        ).returning(CustomerRow.id, CustomerRow.external_id)
        result = session.execute(stmt.values(chunk))
        by_external = {ext: cid for cid, ext in result.all()}
        ids.extend(by_external[row["external_id"]] for row in chunk)
    return ids


def bulk_insert(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], defaults: dict[str, Any]
) -> None:
    """Insert many rows at once. Rows may leave out columns that have a value in
    ``defaults``. On PostgreSQL a large batch goes through ``COPY`` (several times faster
    than any INSERT); otherwise one executemany, which the driver batches."""
    if not rows:
        return
    keys = sorted(set(defaults).union(*(row.keys() for row in rows)))
    if len(rows) >= _COPY_FROM and session.get_bind().dialect.name == "postgresql":
        table = model.__table__
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        copy_rows(session, table.name, keys, rows, json_columns=json_columns, defaults=defaults)
        return
    session.execute(insert(model), [{k: row.get(k, defaults.get(k)) for k in keys} for row in rows])


_COPY_FROM = 50


def copy_rows(
    session: Session,
    table: str,
    keys: Sequence[str],
    rows: Sequence[dict[str, Any]],
    *,
    json_columns: set[str],
    defaults: dict[str, Any] | None = None,
) -> None:
    """PostgreSQL ``COPY table (keys) FROM STDIN`` of ``rows`` on the session's connection."""
    order, values = _copy_values(keys, rows, json_columns, defaults or {})
    columns = ", ".join(f'"{k}"' for k in order)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    import psycopg  # only ever on PostgreSQL, where the dialect has loaded it

    statement = f'COPY "{table}" ({columns}) FROM STDIN'
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in values:
                copy.write_row(row)
    except (psycopg.IntegrityError, psycopg.DataError) as error:
        # the driver's own error, raw: raised as SQLAlchemy raises it for any statement,
        # so that a refused COPY is a store refusal like a refused INSERT
        # (sync.apply.STORE_REFUSALS: the page is decided again, then narrowed down)
        refusal = IntegrityError if isinstance(error, psycopg.IntegrityError) else DataError
        raise refusal(statement, None, error) from error


def _copy_values(
    keys: Sequence[str],
    rows: Sequence[dict[str, Any]],
    json_columns: set[str],
    defaults: dict[str, Any],
) -> tuple[list[str], Iterator[list[Any]]]:
    """The column order and each row's values for ``COPY``. The columns every row has are
    read in one ``itemgetter`` call; JSON columns become JSON text, and timestamps (mostly
    one ``now`` for the whole page), booleans and integers the text PostgreSQL reads, where
    psycopg would adapt each value on its own: a string costs it a third of a timestamp or
    a boolean, on the hot path of every bulk write. A column with a default is written in
    one text for every row that leaves it out."""
    text_of = _copy_text()
    first = rows[0] if rows else {}
    common = [k for k in keys if k in first]
    left_out = _left_out_columns(keys, first, json_columns, defaults, text_of)
    convert = _columns_to_convert(common, first, json_columns)
    values = _copy_row_values(rows, common, convert, left_out, json_columns, defaults, text_of)
    return common + [k for k, _, _ in left_out], values


def _copy_text() -> Callable[[Any, bool], Any]:
    """A converter of one value to the text ``COPY`` reads (``is_json``: the column holds
    JSON). Each distinct timestamp is formatted once: a page mostly shares one ``now``."""
    texts: dict[Any, str] = {}

    def text_of(value: Any, is_json: bool) -> Any:
        if is_json:
            return json_text(value)
        kind = type(value)
        if kind is bool:
            return "t" if value else "f"
        if kind is int:
            return str(value)
        if kind is datetime:
            found = texts.get(value)
            if found is None:
                found = texts[value] = str(value)  # as psycopg writes it
            return found
        return value

    return text_of


def _left_out_columns(
    keys: Sequence[str],
    first: dict[str, Any],
    json_columns: set[str],
    defaults: dict[str, Any],
    text_of: Callable[[Any, bool], Any],
) -> list[tuple[str, bool, Any]]:
    """The columns the first row leaves out: each with whether it holds JSON and its
    default already as text, converted once for every row that leaves it out too."""
    return [
        (
            k,
            k in json_columns,
            None if (d := defaults.get(k)) is None else text_of(d, k in json_columns),
        )
        for k in keys
        if k not in first
    ]


def _columns_to_convert(
    common: Sequence[str], first: dict[str, Any], json_columns: set[str]
) -> list[tuple[int, bool]]:
    """The positions (in ``common``) of the columns whose values may need converting, with
    whether each holds JSON. The first row's values tell; any other value psycopg adapts
    itself."""
    return [
        (i, k in json_columns)
        for i, k in enumerate(common)
        if k in json_columns or type(first[k]) in (bool, int, datetime)
    ]


def _copy_row_values(
    rows: Sequence[dict[str, Any]],
    common: Sequence[str],
    convert: Sequence[tuple[int, bool]],
    left_out: Sequence[tuple[str, bool, Any]],
    json_columns: set[str],
    defaults: dict[str, Any],
    text_of: Callable[[Any, bool], Any],
) -> Iterator[list[Any]]:
    """Each row's values in ``COPY`` order: the first row's columns, then the ones it left
    out (their default where this row leaves them out too)."""
    getter = itemgetter(*common) if len(common) > 1 else None
    missing = object()
    for row in rows:
        try:
            out = list(getter(row)) if getter is not None else [row[k] for k in common]
        except KeyError:  # a row without one of the first row's columns
            out = _irregular_row_values(row, common, json_columns, defaults, text_of)
        else:
            for i, is_json in convert:
                value = out[i]
                if value is not None:
                    out[i] = text_of(value, is_json)
        for key, is_json, default in left_out:
            value = row.get(key, missing)
            out.append(
                default if value is missing else None if value is None else text_of(value, is_json)
            )
        yield out


def _irregular_row_values(
    row: dict[str, Any],
    common: Sequence[str],
    json_columns: set[str],
    defaults: dict[str, Any],
    text_of: Callable[[Any, bool], Any],
) -> list[Any]:
    """The first row's columns of a row that lacks some of them: each missing one takes
    its default, and every JSON or defaulted value is converted (the first row's types do
    not tell for this row)."""
    out = [row.get(k, defaults.get(k)) for k in common]
    for i, k in enumerate(common):
        if out[i] is not None and (k in json_columns or k not in row):
            out[i] = text_of(out[i], k in json_columns)
    return out


def insert_customers(
    session: Session, organisation_id: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert many new customers (each row with its ``id``) in one executemany."""
    now = utcnow()
    defaults = {"organisation_id": organisation_id, "created_at": now, "updated_at": now}
    bulk_insert(session, CustomerRow, rows, defaults)
    refresh_statistics(session, CustomerRow.__tablename__, len(rows))


def refresh_statistics(session: Session, table: str, added: int) -> None:
    """``ANALYZE`` a PostgreSQL table that ``added`` rows made much larger than its
    statistics say (the first pages of a backfill into an empty store).

    Every link and contact row checks its customer through a foreign key, and PostgreSQL
    keeps one generic plan for that check per connection. Planned while ``customers``
    was empty, it is a sequential scan, run once per inserted row as the table grows:
    the checks cost 5x more than with an index scan. Fresh statistics make the plan an
    index scan (and ``ANALYZE`` invalidates the cached one). It runs once, on the first
    page of a first backfill: autovacuum keeps up with later growth."""
    if added < _COPY_FROM or session.get_bind().dialect.name != "postgresql":
        return
    known = session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"), {"table": table}
    ).scalar()
    if known is not None and known < added:
        session.execute(text(f'ANALYZE "{table}"'))


#: a table whose rows changed this much since its last ``ANALYZE`` (a share of its rows,
#: and at least ``_STALE_MIN``) has statistics a plan cannot trust
_STALE_SHARE = 0.2
_STALE_MIN = 1_000


def refresh_stale_statistics(session: Session, tables: Sequence[str]) -> list[str]:
    """``ANALYZE`` each PostgreSQL table whose statistics are stale, and name them.

    A backfill grows ``customers`` and ``links`` by every page, and autovacuum can lag well
    behind it (a busy server, a run killed and resumed). A join planned on statistics that
    still say "a few rows" is a nested loop over every link per customer: the first push's
    walk took minutes a page at 20,000 customers. One catalog read tells whether the
    statistics are stale; ``ANALYZE`` samples, so it costs well under a second even at 1M."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    rows = session.execute(
        text(
            "SELECT relname, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
            "WHERE relid = ANY(CAST(:tables AS regclass[]))"
        ),
        {"tables": list(tables)},
    ).all()
    stale = [
        name
        for name, changed, live in rows
        if changed >= _STALE_MIN and changed > _STALE_SHARE * max(live - changed, 0)
    ]
    for name in stale:
        session.execute(text(f'ANALYZE "{name}"'))
    return stale


def update_customers(
    session: Session, organisation_id: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Update many customers by id (each row: ``id`` plus the columns to set), as one
    executemany per set of columns. ``business_entity_id`` is never in ``rows``."""
    if not rows:
        return
    now = utcnow()
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        assert "business_entity_id" not in row, "sync never changes business_entity_id"
        columns = tuple(sorted(k for k in row if k != "id"))
        by_columns.setdefault(columns, []).append(
            {"b_id": row["id"], **{k: row[k] for k in columns}, "updated_at": now}
        )
    for columns, params in by_columns.items():
        stmt = (
            update(CustomerRow)
            .where(CustomerRow.organisation_id == organisation_id)
            .where(CustomerRow.id == bindparam("b_id"))
            .values({c: bindparam(c) for c in (*columns, "updated_at")})
        )
        session.connection().execute(stmt, params)


# --- contacts ------------------------------------------------------------------------------


def replace_contacts(
    session: Session, organisation_id: str, customer_id: str, contacts: Sequence[dict[str, Any]]
) -> None:
    """Set a customer's billing-side (non-CRM) secondary contacts."""
    session.execute(
        delete(ContactRow).where(
            ContactRow.organisation_id == organisation_id,
            ContactRow.customer_id == customer_id,
            ContactRow.crm_id.is_(None),
        )
    )
    for contact in contacts:
        # new on the billing side: pushed to each linked CRM on its next sync
        session.add(
            ContactRow(
                organisation_id=organisation_id,
                customer_id=customer_id,
                pending=True,
                version=1,
                **contact,
            )
        )


def list_contacts(session: Session, organisation_id: str, customer_id: str) -> Sequence[ContactRow]:
    return session.scalars(
        select(ContactRow)
        .where(ContactRow.organisation_id == organisation_id, ContactRow.customer_id == customer_id)
        .order_by(ContactRow.name)
    ).all()


# --- outbox --------------------------------------------------------------------------------


def add_outbox_entries(
    session: Session,
    organisation_id: str,
    changes: Sequence[tuple[str, Sequence[str]]],
    origin_connection_id: str | None = None,
) -> None:
    """Log billing-side changes ``(customer_id, changed fields)`` in the caller's
    transaction, in one executemany."""
    now = utcnow()
    rows = [
        {
            "organisation_id": organisation_id,
            "customer_id": customer_id,
            "origin_connection_id": origin_connection_id,
            "fields": list(fields),
            "created_at": now,
        }
        for customer_id, fields in changes
    ]
    if not rows:
        return
    _serialise_outbox(session, organisation_id)
    session.execute(insert(OutboxEntry), rows)


def _serialise_outbox(session: Session, organisation_id: str) -> None:
    """Make an organisation's outbox ids become visible in the order they were taken.

    Readers keep a position (the last id they handled). On PostgreSQL two transactions may
    take ids 100 and 101 and commit 101 first: a reader would move past 100 before it
    commits and never see it. A transaction-scoped advisory lock per organisation, taken
    before the ids and held until commit, closes that gap (SQLite serialises writers
    already). Only writers of the same organisation's outbox wait for each other."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.blake2b(organisation_id.encode(), digest_size=8).digest(), "big")
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key - (1 << 63)})


def outbox_after(
    session: Session, organisation_id: str, after_id: int, limit: int
) -> Sequence[OutboxEntry]:
    """Outbox entries after position ``after_id``, oldest first."""
    return session.scalars(
        select(OutboxEntry)
        .where(OutboxEntry.organisation_id == organisation_id, OutboxEntry.id > after_id)
        .order_by(OutboxEntry.id)
        .limit(limit)
    ).all()


def outbox_head(session: Session, organisation_id: str) -> int:
    """The newest outbox position of the organisation (0 when empty)."""
    return (
        session.scalar(
            select(func.max(OutboxEntry.id)).where(OutboxEntry.organisation_id == organisation_id)
        )
        or 0
    )
