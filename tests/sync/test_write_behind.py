"""A backfill on PostgreSQL writes its pages behind (sync.write_behind): page N commits on
a thread of its own while page N+1 is decided. It must end where a run that writes each
page before deciding the next ends: here the same CRM data, with records of a later page
that depend on an earlier one's writes (the same e-mail, a billing contact of the same
e-mail twice), is synced both ways and the stores compared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from sandbox.server import Sandbox
from sync import contacts, customers
from sync.customer import Contact, CustomerIn
from sync.store.db import make_engine, transaction
from sync.store.models import Conflict, ContactRow, CustomerRow, LinkRow, RecordFailure
from sync.write_behind import PageWriter
from tests.conftest import _truncate_all
from tests.sync.conftest import CRMS, World, make_world

#: three engine pages of accounts / companies (1,000 a page) and two of their ~5,500
#: contacts (5,000 a page in a full run)
RECORDS = 2200


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    _truncate_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def written_behind(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pages the writer thread wrote (so the test knows the path ran)."""
    pages: list[int] = []
    write = PageWriter._write

    def counted(self: Any, decision: Any) -> None:
        write(self, decision)
        pages.append(len(decision.records) or len(decision.contacts.attach))

    monkeypatch.setattr(PageWriter, "_write", counted)
    return pages


def _prepared(engine: Engine, sandbox: Sandbox, crm: str, store: str = "empty") -> World:
    """The CRM seeded with three pages of records, a record on the second page with the
    e-mail of one on the first. ``store``: "empty", or "with a customer" — a billing
    customer whose external id is a record of the third page (matched to it by the rule)."""
    world = make_world(engine, sandbox, crm)
    ids = world.harness.seed(RECORDS)
    first, later = ids[10], ids[1200]  # on the first and the second page
    world.harness.edit(later, {"email": world.harness.read(first)["email"]})
    if store == "with a customer":
        with transaction(engine) as s:
            customers.create_customer(
                s,
                world.organisation_id,
                CustomerIn(customer_name="Billing Side Ltd", external_id=ids[2100]),
            )
    return world


@pytest.fixture
def external_id_lookups(pg_engine: Engine) -> Iterator[list[str]]:
    """The statements that looked customers up by external id (a page's reads)."""
    found: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "external_id = ANY" in statement:
            found.append(statement)

    event.listen(pg_engine, "before_cursor_execute", seen)
    yield found
    event.remove(pg_engine, "before_cursor_execute", seen)


def _outcome(world: World) -> dict[str, Any]:
    with transaction(world.engine) as s:
        org = world.organisation_id
        customers = s.scalars(select(CustomerRow).where(CustomerRow.organisation_id == org))
        by_id = {c.id: (c.customer_name, c.email, c.external_id) for c in customers}
        links = s.scalars(select(LinkRow).where(LinkRow.organisation_id == org))
        contact_rows = s.scalars(select(ContactRow).where(ContactRow.organisation_id == org))
        failures = s.scalars(select(RecordFailure).where(RecordFailure.organisation_id == org))
        conflicts = s.scalars(select(Conflict).where(Conflict.organisation_id == org))
        return {
            "customers": sorted(by_id.values(), key=repr),
            "links": sorted((link.crm_id, by_id[link.customer_id]) for link in links),
            "contacts": sorted(
                (c.crm_id or "", c.name, c.email or "", repr(by_id[c.customer_id]))
                for c in contact_rows
            ),
            "failures": sorted(
                (f.crm_id or "", f.direction, f.error_kind, f.error_code, f.status)
                for f in failures
            ),
            "conflicts": sorted((c.field, c.status) for c in conflicts),
        }


@pytest.mark.parametrize("store", ["empty", "with a customer"])
@pytest.mark.parametrize("crm", CRMS)
def test_a_backfill_written_behind_ends_as_one_written_page_by_page(
    crm: str,
    store: str,
    pg_engine: Engine,
    sandbox: Sandbox,
    written_behind: list[int],
    external_id_lookups: list[str],
) -> None:
    """Into an empty store the backfill's pages are decided without reading the store
    (only a page the store refused, and the one decided beside it, are decided again with
    the reads); into a store with customers every page reads them. Both end as a run that
    writes each page before deciding the next."""
    world = _prepared(pg_engine, sandbox, crm, store)
    page_by_page = world.sync()  # not full: each page written before the next is decided
    assert page_by_page.status == "succeeded", page_by_page.error
    assert written_behind == []
    expected = _outcome(world)

    _truncate_all(pg_engine)
    world = _prepared(pg_engine, sandbox, crm, store)
    external_id_lookups.clear()
    behind = world.sync(full=True)
    assert behind.status == "succeeded", behind.error
    assert written_behind, "the backfill wrote no page behind"
    assert _outcome(world) == expected
    # the first page's e-mail came again on the second: both ways refuse that record
    assert len(expected["failures"]) == 1
    assert behind.counters["pulled"] == page_by_page.counters["pulled"] == RECORDS
    if store == "empty":
        # only the page the store refused (the first page's e-mail again) and the one
        # decided beside it were decided again, with the reads; the pages written behind
        # never read
        assert len(external_id_lookups) <= 2
    else:
        # every page read, the ones written behind too
        assert len(external_id_lookups) >= len(written_behind) + 1
        assert behind.counters["linked"] == page_by_page.counters["linked"] == 1


@pytest.mark.parametrize("crm", CRMS)
def test_a_billing_contact_matched_behind_is_matched_once(
    crm: str, pg_engine: Engine, sandbox: Sandbox, written_behind: list[int]
) -> None:
    """A billing contact whose e-mail a CRM contact of its customer has is linked to it,
    once, though the run decides pages while others are written."""
    world = make_world(pg_engine, sandbox, crm, connector_settings={"contacts": False})
    world.harness.seed(3000)  # ~7,500 contacts: two engine pages of them in a full run
    assert world.sync(full=True).status == "succeeded"
    crm_contacts = [
        c
        for page in world.harness.connector().pull_contacts(None, full=True)
        for c in page.records
        if not c.deleted and c.email
    ]
    owners = {link.crm_id: link.customer_id for link in world.links()}
    wanted = crm_contacts[-1]  # on the second engine page: the first is written behind
    customer = owners[str(wanted.customer_id)]
    with transaction(pg_engine) as s:
        billing = contacts.add_contact(
            s, world.organisation_id, customer, Contact(name="Billing Side", email=wanted.email)
        ).id
    with transaction(pg_engine) as s:
        from sync.connections import update_connection
        from sync.store import sync_repository as repo

        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        update_connection(s, world.settings, row, {"settings": {"contacts": True}}, check=False)
    written_behind.clear()
    run = world.sync(full=True)
    assert run.status == "succeeded", run.error
    assert written_behind, "the backfill wrote no page of contacts behind"
    with transaction(pg_engine) as s:
        rows = list(s.scalars(select(ContactRow).where(ContactRow.customer_id == customer)))
    matched = [r for r in rows if r.crm_id == wanted.id]
    assert [r.id for r in matched] == [str(billing)]
    assert len({r.crm_id for r in rows}) == len(rows)
