"""Fuzz: whatever a CRM sends, no run crashes, and every record either syncs or becomes a
failure with a readable reason (issue 13 §2).

Hypothesis draws CRM records as JSON (any text, control characters, huge values, wrong
types, nulls) and their contacts. They are loaded into the sandbox as a CRM user would
enter them (the CRM's own refusals, such as Salesforce's field lengths, stand: a record it
refuses is not in the CRM), pulled through the real client libraries (simple-salesforce,
hubspot-api-client) and synced into PostgreSQL; then some of them are edited in the CRM and
synced again. Both CRMs. ``make test`` runs a few examples per CRM; ``make test-slow``
(``CRMSYNC_HYPOTHESIS_PROFILE=slow``) many more.
"""

from __future__ import annotations

import importlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from sandbox.hubspot.store import StoreError
from sandbox.salesforce.errors import ApiError
from sandbox.server import Sandbox
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.customer import NO_CONTROL_CHARACTERS
from sync.settings import Settings
from sync.store.db import make_engine, transaction
from sync.store.models import ContactRow, RecordFailure
from tests.conftest import Figures
from tests.sync.conftest import CRMS, World

SLOW = os.environ.get("CRMSYNC_HYPOTHESIS_PROFILE") == "slow"

#: the CRM's fields a record is drawn over (the connection maps all but the last one)
ACCOUNT_FIELDS = {
    "salesforce": [
        "Name",
        "BillingStreet",
        "BillingCity",
        "BillingState",
        "BillingPostalCode",
        "BillingCountry",
        "ShippingCity",
        "Phone",
        "Billing_Email__c",
        "Segment__c",
        "Description",
    ],
    "hubspot": [
        "name",
        "address",
        "address2",
        "address3",
        "city",
        "state",
        "zip",
        "country",
        "phone",
        "billing_email",
        "segment",
        "description",
    ],
}
SEGMENT = {"salesforce": "Segment__c", "hubspot": "segment"}
CONTACT_FIELDS = {
    "salesforce": ("FirstName", "LastName", "Email"),
    "hubspot": ("firstname", "lastname", "email"),
}

# Any text a CRM can hold (real CRMs store and send UTF-8: no lone surrogates, which the
# sync refuses all the same, see tests/sync/test_control_characters.py), with control
# characters, newlines and other odd ones made likely.
ODD = st.sampled_from(
    ["\x00", "\x01", "\t", "\n", "\r\n", "\r", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", " "]
)
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
SALTED = st.builds(lambda a, odd, b: a + odd + b, TEXT, ODD, TEXT)
HUGE = st.builds(
    lambda char, size: char * size,
    st.characters(codec="utf-8"),
    st.sampled_from([256, 1001, 40_000]),
)
WORDS = st.sampled_from(["Acme", "Globex", "Initech", "Germany", "US", "a@b.co", "+1 415 555 0100"])
VALUE = st.one_of(
    st.none(),
    st.just(""),
    WORDS,
    TEXT,
    SALTED,
    HUGE,
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


@dataclass
class Draw:
    """Records as JSON (CRM field -> value), each with its contacts, and edits of them."""

    records: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    edits: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def draws(crm: str) -> st.SearchStrategy[Draw]:
    fields = ACCOUNT_FIELDS[crm]
    # a name is usually there (Salesforce requires one), and usually ordinary
    record = st.builds(
        lambda name, rest: {fields[0]: name, **rest},
        st.one_of(WORDS, WORDS, VALUE),
        st.dictionaries(st.sampled_from(fields[1:]), VALUE, max_size=5),
    )
    contact = st.fixed_dictionaries({}, optional=dict.fromkeys(CONTACT_FIELDS[crm], VALUE))
    records = st.lists(st.tuples(record, st.lists(contact, max_size=2)), min_size=1, max_size=6)
    edit = st.dictionaries(st.sampled_from(fields), VALUE, min_size=1, max_size=3)

    @st.composite
    def draw(data: st.DrawFn) -> Draw:
        drawn = data(records)
        edits = data(st.lists(st.tuples(st.integers(0, len(drawn) - 1), edit), max_size=3))
        return Draw(drawn, edits)

    return draw()


class FuzzCrm:
    """The sandbox CRM as its users fill it: vendor field names, JSON values."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.key = world.harness.key

    def create(self, values: dict[str, Any]) -> str | None:
        """The new record's id, or None when the CRM refuses it (as it would a user). A
        value Salesforce refuses is left out, as a user would leave it, unless it is the
        name."""
        values = dict(values)
        while True:
            try:
                if self.key == "salesforce":
                    return str(self.world.harness.sf.create("Account", values))
                return str(self.world.harness.hs.create("companies", values))
            except ApiError as error:
                refused = [name for name in error.fields if name in values and name != "Name"]
                if not refused:
                    return None
                for name in refused:
                    del values[name]
            except StoreError:
                return None

    def edit(self, crm_id: str, values: dict[str, Any]) -> bool:
        try:
            if self.key == "salesforce":
                self.world.harness.sf.edit("Account", crm_id, values)
            else:
                self.world.harness.hs.edit(crm_id, values)
        except (ApiError, StoreError):
            return False
        return True

    def add_contact(self, crm_id: str, values: dict[str, Any]) -> str | None:
        try:
            if self.key == "salesforce":
                return str(self.world.harness.sf.create("Contact", {**values, "AccountId": crm_id}))
            contact = self.world.harness.hs.create("contacts", values)
            self.world.harness.hs.associate(contact, crm_id)
            return str(contact)
        except (ApiError, StoreError):
            return None


def fuzz_world(engine: Engine, sandbox: Sandbox, crm: str) -> World:
    """An organisation with one connection to the sandbox CRM, mapping ``custom_data.segment``
    too (a custom field: values of any type)."""
    module = importlib.import_module(f"tests.connectors.harness_{crm}")
    default = module.make_harness(sandbox)
    harness = type(default)(
        sandbox, field_map={**default.field_map, "custom_data.segment": SEGMENT[crm]}
    )
    harness.reset()
    settings = Settings(database_url=str(engine.url), secret_key=new_secret_key())
    with transaction(engine) as session:
        org = organisations.create_organisation(session, f"fuzz {crm}").id
        connection = add_connection(
            session,
            settings,
            org,
            ConnectionSpec(
                name=crm,
                kind=crm,
                credentials=harness.credentials(),
                settings=harness.settings(),
                field_map=dict(harness.field_map),
            ),
        )
    return World(engine, settings, harness, org, connection.id)


@pytest.fixture(scope="module")
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, Counter[str]]]:
    """Figures per CRM, reported once the module's examples have run."""
    counts: dict[str, Counter[str]] = {crm: Counter() for crm in CRMS}
    yield counts
    for crm, figures in counts.items():
        if figures:
            Figures(f"tests/sync/test_fuzz.py::{crm}").report(**dict(sorted(figures.items())))


def _assert_readable(failure: RecordFailure) -> None:
    message = failure.error_message
    assert isinstance(message, str) and message.strip(), failure.error_kind
    assert "\x00" not in message and "Traceback" not in message, message
    assert failure.error_kind in ("validation", "duplicate", "store"), failure.error_kind


def _check(world: World, crm_ids: list[str], contacts: list[tuple[str, str]]) -> None:
    """Every record is a customer, or an open failure that says why; so is every contact
    (its id, its record's) of a record that synced."""
    failures = world.failures()
    for failure in failures:
        _assert_readable(failure)
    failed = {f.crm_id for f in failures if f.crm_id}
    customers = {c["external_id"] for c in world.customers()}
    for crm_id in crm_ids:
        assert crm_id in customers or crm_id in failed, f"record {crm_id} neither synced nor failed"
    with transaction(world.engine) as session:
        attached = set(
            session.scalars(
                select(ContactRow.crm_id).where(ContactRow.connection_id == world.connection_id)
            )
        )
    refused = {
        str(contact["contact_id"])
        for f in failures
        if f.crm_id is None
        for contact in f.payload.get("contacts", [])
    }
    for contact_id, crm_id in contacts:
        if crm_id in customers:
            assert contact_id in attached | refused, (
                f"contact {contact_id} neither synced nor failed"
            )


def _count_failures(world: World, figures: Counter[str]) -> None:
    for failure in world.failures():
        if failure.error_code == NO_CONTROL_CHARACTERS:
            figures["failures_no_control_characters"] += 1
        else:
            figures[f"failures_{failure.error_kind}"] += 1


def _run(world: World, figures: Counter[str]) -> None:
    result = world.sync()
    figures["runs"] += 1
    assert result.status == "succeeded", result.error


@pytest.mark.parametrize("crm", CRMS)
def test_no_crm_record_crashes_a_run(
    crm: str, pg_engine: Engine, sandbox: Sandbox, tally: dict[str, Counter[str]]
) -> None:
    figures = tally[crm]

    @settings(max_examples=200 if SLOW else 4, deadline=None)
    @given(draw=draws(crm))
    def fuzz(draw: Draw) -> None:
        figures["examples"] += 1
        world = fuzz_world(pg_engine, sandbox, crm)
        fuzz_crm = FuzzCrm(world)
        crm_ids: list[str] = []
        contacts: list[tuple[str, str]] = []
        for values, drawn_contacts in draw.records:
            crm_id = fuzz_crm.create(values)
            figures["records_drawn"] += 1
            if crm_id is None:
                figures["records_refused_by_the_crm"] += 1
                continue
            crm_ids.append(crm_id)
            for contact in drawn_contacts:
                contact_id = fuzz_crm.add_contact(crm_id, contact)
                if contact_id is not None:
                    contacts.append((contact_id, crm_id))
        figures["records_loaded"] += len(crm_ids)
        figures["contacts_loaded"] += len(contacts)

        _run(world, figures)
        _check(world, crm_ids, contacts)
        synced = {c["external_id"] for c in world.customers()}
        figures["records_synced"] += len(synced)

        for index, values in draw.edits:
            if index < len(crm_ids) and fuzz_crm.edit(crm_ids[index], values):
                figures["records_edited"] += 1
        _run(world, figures)
        # the contacts of the records the first run synced (a record that syncs only now,
        # once edited, finds its unchanged contacts on their next change or a full run)
        _check(world, crm_ids, [c for c in contacts if c[1] in synced])
        _run(world, figures)  # and a run right after is clean too
        _count_failures(world, figures)

    fuzz()
