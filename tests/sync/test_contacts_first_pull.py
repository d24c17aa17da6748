"""A connection's first pull of contacts, over several engine pages, on both CRMs and both
stores: each CRM contact is taken once, on the customer its account / company is linked
to; a billing contact of the same e-mail is matched once, even when a contact of that
e-mail comes again on the next page (a page must be decided on what the page before it
wrote: an engine that decides a page while the one before is still being written, to
overlap them, has to wait after a page that matched one); a run killed in the middle
resumes after its last committed page of contacts, losing and doubling nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from connectors.base import CrmContact
from sandbox.server import Sandbox
from sync import contacts
from sync.connections import update_connection
from sync.customer import Contact
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import ContactLinkRow, ContactRow, SyncRun
from tests.sync.conftest import CRMS, World, make_world

ROOT = Path(__file__).resolve().parents[2]
#: companies / accounts to seed: their 2-3 contacts each make several engine pages of
#: 1,000 contacts (an incremental run's page; a full run's is 5,000)
RECORDS = 1000


def _contacts_on(world: World, on: bool) -> None:
    with transaction(world.engine) as s:
        row = repo.get_connection(s, world.connection_id)
        assert row is not None
        update_connection(s, world.settings, row, {"settings": {"contacts": on}}, check=False)


def _in_crm(world: World) -> list[CrmContact]:
    """The CRM's live contacts in the order a pull reads them."""
    connector = world.harness.connector()
    pulled = [c for page in connector.pull_contacts(None, full=True) for c in page.records]
    return [c for c in pulled if not c.deleted]


def _stored(world: World) -> list[ContactRow]:
    with transaction(world.engine) as s:
        return list(
            s.scalars(select(ContactRow).where(ContactRow.organisation_id == world.organisation_id))
        )


def _customers_by_crm_id(world: World) -> dict[str, str]:
    return {link.crm_id: link.customer_id for link in world.links()}


def _add(world: World, customer_id: str, name: str, email: str) -> str:
    with transaction(world.engine) as s:
        added = contacts.add_contact(
            s, world.organisation_id, customer_id, Contact(name=name, email=email)
        )
    return str(added.id)


def _each_once_on_its_customer(world: World, crm: list[CrmContact]) -> list[ContactRow]:
    stored = _stored(world)
    crm_ids = Counter(row.crm_id for row in stored)
    assert crm_ids == Counter(c.id for c in crm)  # each exactly once
    owners = _customers_by_crm_id(world)
    by_crm_id = {row.crm_id: row for row in stored}
    for contact in crm:
        assert by_crm_id[contact.id].customer_id == owners[str(contact.customer_id)]
    return stored


def test_a_first_pull_takes_every_contact_once_with_billing_ones_matched(world: World) -> None:
    _contacts_on(world, False)
    world.harness.seed(RECORDS)
    assert world.sync(full=True).status == "succeeded"
    crm = _in_crm(world)
    assert len(crm) > 2000  # three pages or more
    owners = _customers_by_crm_id(world)
    # billing's own contacts of the same e-mails (another case), on the first, a middle
    # and the last page of the pull
    picked = [crm[10], crm[len(crm) // 2], crm[-3]]
    billing = {
        c.id: _add(world, owners[str(c.customer_id)], f"Billing {c.name}", str(c.email).upper())
        for c in picked
    }
    _contacts_on(world, True)

    result = world.sync()

    assert result.status == "succeeded", result.error
    stored = _each_once_on_its_customer(world, crm)
    assert len(stored) == len(crm)  # the billing contacts were matched, not doubled
    by_crm_id = {row.crm_id: row for row in stored}
    for crm_id, contact_id in billing.items():
        assert by_crm_id[crm_id].id == contact_id
    with transaction(world.engine) as s:
        assert repo.get_cursor(s, world.connection_id, "contacts") is not None


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_a_billing_contact_is_matched_once_when_its_email_comes_again_on_the_next_page(
    engine: Engine, sandbox: Sandbox, full: bool
) -> None:
    # Salesforce lets two contacts of an account share an e-mail (HubSpot refuses it)
    world = make_world(engine, sandbox, "salesforce")
    _contacts_on(world, False)
    world.harness.seed(RECORDS if not full else 2 * RECORDS + 100)
    assert world.sync(full=True).status == "succeeded"
    crm = _in_crm(world)
    page = 5000 if full else 1000
    assert len(crm) > page + 1
    # a contact on the last page but one; one of its e-mail is created now (the last page)
    first = crm[(len(crm) // page - 1) * page + page // 2]
    harness: Any = world.harness
    again = harness.sf.create(
        "Contact",
        {"LastName": "Again", "Email": first.email, "AccountId": first.customer_id},
    )
    owner = _customers_by_crm_id(world)[str(first.customer_id)]
    billing = _add(world, owner, "Billing Contact", str(first.email))
    _contacts_on(world, True)

    result = world.sync(full=full)

    assert result.status == "succeeded", result.error
    stored = _each_once_on_its_customer(world, _in_crm(world))
    by_crm_id = {row.crm_id: row for row in stored}
    assert by_crm_id[first.id].id == billing  # matched with the first one read
    assert by_crm_id[again].id != billing  # the second is a contact of its own
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(ContactLinkRow)) == 0


RUNNER = (
    "import sys\n"
    "from sync.engine import sync_connection\n"
    "from sync.settings import Settings\n"
    "from sync.store.db import make_engine\n"
    "s = Settings()\n"
    "sync_connection(make_engine(s.database_url), s, sys.argv[1], trigger='schedule')\n"
)
#: per CRM: the CRM stops answering part-way through the contacts, for good, so the kill
#: lands between contact pages however slow the machine is (a latency fault only made it
#: likely). Answered first: the connector's two describe / properties calls and the
#: accounts (Salesforce: three query pages of 500) / companies (HubSpot: eight search pages
#: of 200 and the archived list); then three query pages of 500 contacts / seven search
#: pages of 200: one engine page of contacts and part of the next.
STALL: dict[str, dict[str, int]] = {
    "salesforce": {"query_batch_size": 500, "hang_after": 2 + 3 + 3},
    "hubspot": {"hang_after": 2 + 8 + 1 + 7},
}
#: the stalled requests outlast the test: the worker must still be waiting when killed
HANG_SECONDS = 600


@pytest.mark.parametrize("crm", CRMS)
def test_a_first_pull_of_contacts_killed_resumes_after_its_last_page(
    crm: str, engine: Engine, sandbox: Sandbox
) -> None:
    world = make_world(
        engine, sandbox, crm, connector_settings={"request_timeout": float(HANG_SECONDS)}
    )
    world.harness.seed(RECORDS + RECORDS // 2)
    world.harness.set_faults(**STALL[crm], hang_seconds=HANG_SECONDS)
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "CRMSYNC_SECRET_KEY": world.settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", RUNNER, world.connection_id], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with transaction(engine) as s:
                if repo.get_cursor(s, world.connection_id, "contacts") is not None:
                    break
            assert worker.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no page of contacts was committed within 120 s")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    committed = len(_stored(world))
    world.harness.set_faults(hang_after=None)
    crm_contacts = _in_crm(world)
    assert 0 < committed < len(crm_contacts), "the kill should land mid-pull"

    result = world.sync()

    assert result.status == "succeeded", result.error
    _each_once_on_its_customer(world, crm_contacts)
    with transaction(engine) as s:
        statuses = [r.status for r in s.scalars(select(SyncRun).order_by(SyncRun.started_at))]
    assert statuses == ["interrupted", "succeeded"]
    # it resumed: the second run read again at most the page the kill interrupted
    assert result.counters["contacts"] <= len(crm_contacts) - committed + 1000
