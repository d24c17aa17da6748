"""The store: migrations, the bulk upsert, the outbox, tenancy — on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

from sync import customers, organisations
from sync.customer import CustomerIn, CustomerPatch
from sync.store import repository
from sync.store.db import make_engine, transaction


def test_migration_creates_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {
        "organisations",
        "api_keys",
        "business_entities",
        "customers",
        "contacts",
        "connections",
        "links",
        "sync_runs",
        "record_failures",
        "conflicts",
        "inbound_events",
        "cursors",
        "outbox",
        "audit_events",
    } <= tables


def test_bulk_upsert_is_one_statement_per_batch_and_idempotent(engine: Engine) -> None:
    with transaction(engine) as s:
        org = organisations.create_organisation(s, "Org").id
    rows = [CustomerIn(customer_name=f"C {i}", external_id=f"E{i}") for i in range(2500)]
    with transaction(engine) as s:
        first = customers.import_customers(s, org, rows)
    with transaction(engine) as s:
        second = customers.import_customers(s, org, rows)
        assert repository.count_customers(s, org) == 2500
        assert repository.outbox_head(s, org) == 2500
    assert (first.created, first.updated, first.unchanged) == (2500, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2500)
    assert first.customer_ids == second.customer_ids


def test_update_writes_outbox_in_same_transaction(engine: Engine) -> None:
    with transaction(engine) as s:
        org = organisations.create_organisation(s, "Org").id
        c = customers.create_customer(s, org, CustomerIn(customer_name="Acme"))
    with transaction(engine) as s:
        head = repository.outbox_head(s, org)
        customers.update_customer(s, org, str(c.id), CustomerPatch(customer_name="Acme Ltd"))
        entries = repository.outbox_after(s, org, head, 10)
    assert [e.fields for e in entries] == [["customer_name"]]


def test_queries_are_scoped_by_organisation(engine: Engine) -> None:
    with transaction(engine) as s:
        a = organisations.create_organisation(s, "A").id
        b = organisations.create_organisation(s, "B").id
        c = customers.create_customer(s, a, CustomerIn(customer_name="Acme", external_id="X"))
        # the same external id is fine in another organisation
        customers.create_customer(s, b, CustomerIn(customer_name="Other", external_id="X"))
    with transaction(engine) as s:
        assert repository.get_customer(s, b, str(c.id)) is None
        assert repository.get_customer(s, a, str(c.id)) is not None


def test_new_ids_are_distinct_time_ordered_version_7_uuids() -> None:
    import time
    import uuid

    from sync.store.models import new_id

    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, value)
        # RFC 9562: the first 48 bits are the Unix time in milliseconds
        assert parsed.int >> 80 <= after
    # ids are made 1,024 at a time: past the ones an earlier test left, all are made now
    assert all(uuid.UUID(value).int >> 80 >= before for value in ids[1024:])
    # made in order: each block of a millisecond counts up, so ids sort as they were made
    # (an index on them takes each insert at its right-hand edge)
    assert ids == sorted(ids)


def test_outbox_ids_become_visible_in_order(postgres_url: str) -> None:
    """Readers move a position past the ids they saw: an id taken earlier must never
    commit after a later one (two concurrent billing edits on PostgreSQL)."""
    import pytest
    from sqlalchemy.exc import OperationalError

    from sync.store.db import make_engine

    engine = make_engine(postgres_url)
    try:
        with transaction(engine) as s:
            org = organisations.create_organisation(s, "Org").id
            a = customers.create_customer(s, org, CustomerIn(customer_name="A"))
            b = customers.create_customer(s, org, CustomerIn(customer_name="B"))
            head = repository.outbox_head(s, org)
        with transaction(engine) as first:
            customers.update_customer(first, org, str(a.id), CustomerPatch(customer_name="A2"))
            # a second writer of the same organisation's outbox waits for the first to commit
            with pytest.raises(OperationalError, match="lock timeout"), transaction(engine) as s:
                s.execute(text("SET LOCAL lock_timeout = '200ms'"))
                customers.update_customer(s, org, str(b.id), CustomerPatch(customer_name="B2"))
        with transaction(engine) as s:
            customers.update_customer(s, org, str(b.id), CustomerPatch(customer_name="B2"))
        with transaction(engine) as s:
            entries = repository.outbox_after(s, org, head, 10)
        assert [e.customer_id for e in entries] == [str(a.id), str(b.id)]
    finally:
        engine.dispose()


def test_bulk_insert_writes_every_value_as_given(engine: Engine) -> None:
    """A batch large enough for COPY on PostgreSQL (executemany on SQLite): values of every
    kind, rows that leave out a column the first row has (its default or NULL), and rows
    that give a column the first row leaves to its default, read back as written."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from sync.store.models import ContactRow

    with transaction(engine) as s:
        org = organisations.create_organisation(s, "Org").id
        ids = customers.import_customers(
            s, org, [CustomerIn(customer_name=f"C {i}") for i in range(3)]
        ).customer_ids
    now = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)
    created = now - timedelta(days=1)
    rows = []
    for i in range(120):
        row = {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "organisation_id": org,
            "customer_id": ids[i % 3],
            "name": f"Ann\\t{i}" if i % 7 else "Ann\tTab\nLine \\N",
            "email": None if i % 5 == 0 else f"ann{i}@example.com",
            "communications": ["billing", "legal"][: i % 3],
            "base": {"name": "x", "n": i, "ok": True} if i % 4 else None,
            "pending": i % 2 == 0,
            "version": i,
            "updated_at": now + timedelta(seconds=i % 3),
        }
        if i % 10 == 3:
            del row["base"], row["updated_at"]  # the first row has them: NULL here
        if i % 10 == 5:
            row["created_at"] = now  # a column the other rows leave to the default
        rows.append(row)
    with transaction(engine) as s:
        repository.bulk_insert(s, ContactRow, rows, {"created_at": created, "state": "active"})
    with transaction(engine) as s:
        got = {
            r.id: r for r in s.scalars(select(ContactRow).where(ContactRow.organisation_id == org))
        }
    assert len(got) == len(rows)
    for row in rows:
        back = got[row["id"]]
        expected = {"created_at": created, "state": "active", "base": None, "updated_at": None}
        expected.update(row)
        for key, value in expected.items():
            have = getattr(back, key)
            if isinstance(have, datetime) and have.tzinfo is None:  # SQLite
                have = have.replace(tzinfo=UTC)
            assert have == value, (key, have, value)


def test_stale_statistics_are_refreshed_before_a_join_relies_on_them(engine: Engine) -> None:
    """The first push joins customers to links; planned on statistics from before the
    backfill it is a nested loop over every link per customer (minutes a page at 20k)."""
    postgres = engine.dialect.name == "postgresql"
    with transaction(engine) as s:
        org = organisations.create_organisation(s, "Org").id
    rows = [CustomerIn(customer_name=f"C {i}", external_id=f"E{i}") for i in range(2500)]
    with transaction(engine) as s:
        customers.import_customers(s, org, rows)
    with transaction(engine) as s:  # every row changed since the import's statistics
        s.execute(text("UPDATE customers SET updated_at = updated_at"))
        if postgres:  # counted now, not at the server's next idle flush
            s.execute(text("SELECT pg_stat_force_next_flush()"))
    with transaction(engine) as s:
        refreshed = repository.refresh_stale_statistics(s, ["customers", "links"])
    if not postgres:
        assert refreshed == []  # SQLite plans without them
        return
    assert "customers" in refreshed
    with transaction(engine) as s:  # fresh now: nothing to do
        assert repository.refresh_stale_statistics(s, ["customers", "links"]) == []


def test_page_lookups_use_the_index_unless_the_server_was_tuned(postgres_url: str) -> None:
    """A backfill's page looks up a thousand external ids (e-mails, CRM ids) at a time.
    At PostgreSQL's default ``random_page_cost`` (4, a spinning disk's) that is planned as
    a scan of the whole table up to some 50,000 rows; crmsync's sessions plan for pages in
    memory or on SSD (1.1) and use the index. A value the operator set is kept."""
    lookup = (
        "EXPLAIN (FORMAT JSON) SELECT * FROM customers "
        "WHERE organisation_id = :org AND external_id = ANY(:ids)"
    )
    engine = make_engine(postgres_url)
    # the operator's own value, as a connection option (as in the server's configuration,
    # or ALTER DATABASE / ROLE ... SET): the source is then not "default"
    tuned = make_engine(f"{postgres_url}%20-crandom_page_cost%3D4")
    with transaction(engine) as s:
        org = organisations.create_organisation(s, "Lookups").id
    try:
        with transaction(engine) as s:
            s.execute(
                text(
                    # rows as wide as a CRM's companies (an address, an e-mail, a phone)
                    "INSERT INTO customers (id, organisation_id, customer_name, external_id, "
                    "email, phone_number, address, tax_info, custom_data, "
                    "communications_enabled, auto_charge_enabled, created_at, updated_at) "
                    "SELECT gen_random_uuid()::text, :org, 'Customer Holdings ' || n, 'E' || n, "
                    "'billing' || n || '@customer-holdings.example.com', '+15550100' || n, "
                    "jsonb_build_object('line1', n || ' Long Street Name', 'line2', 'Suite ' || n, "
                    "'city', 'Springfield', 'state', 'Illinois', 'zipCode', '62701', "
                    "'country', 'United States', 'country_code', 'US'), '[]', "
                    '\'{"segment": "enterprise", "region": "north-america"}\', '
                    "true, true, now(), now() FROM generate_series(1, 30000) AS n"
                ),
                {"org": org},
            )
            s.execute(text("ANALYZE customers"))
        ids = [f"X{n}" for n in range(1000)]
        plans = {}
        for name, which in (("ours", engine), ("tuned", tuned)):
            with which.connect() as conn:
                cost = conn.execute(text("SHOW random_page_cost")).scalar()
                plan = conn.execute(text(lookup), {"org": org, "ids": ids}).scalar()
                plans[name] = (cost, plan[0]["Plan"]["Node Type"])
        assert plans["ours"] == ("1.1", "Index Scan")
        assert plans["tuned"] == ("4", "Seq Scan")
    finally:
        with transaction(engine) as s:
            # the organisation stays (its key, its entity): the next test truncates the store
            s.execute(text("DELETE FROM customers WHERE organisation_id = :org"), {"org": org})
        engine.dispose()
        tuned.dispose()
