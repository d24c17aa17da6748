"""The connector contract: what EVERY connector must do, as cases any connector's tests run.

A connector's own tests subclass :class:`ContractSuite` once, name the harness class and
provide a ``harness`` fixture (a :class:`~connectors.testing.harness.Harness` on a running
emulator of the CRM); pytest then runs every case against that connector:

    class TestAcmeContract(ContractSuite):
        harness_class = AcmeHarness

        @pytest.fixture
        def harness(self, emulator: AcmeEmulator) -> AcmeHarness:
            return AcmeHarness(emulator)

The suite resets the harness before each case. Cases that need something only some CRMs
have (a ``Retry-After`` on rate limits, tokens that can be refreshed) are left out for
connectors whose harness class says it lacks it, rather than skipped. What differs between
CRMs (fault names, token expiry, how a webhook is authenticated, page and batch sizes) comes
from the harness; the assertions do not.

API-call counts are the minimum the CRMs allow: a full pull of N records costs
``ceil(N / pull_page_max)`` calls and a push of M changes of one kind (updates, or creates)
``ceil(M / push_batch_max)``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, ClassVar, TypeVar

import pytest

from connectors import registry
from connectors.base import (
    Capabilities,
    ConnectionConfig,
    Connector,
    ContactFinder,
    ContactPush,
    ContactWriter,
    CrmContact,
    CrmCustomer,
    CrmField,
    CustomerFields,
    CustomerPush,
    WebhookRequest,
)
from connectors.calls import LocalRateGate
from connectors.errors import (
    AuthError,
    ConfigError,
    DailyLimitExceeded,
    RateLimited,
    RetriableError,
    WebhookRejected,
)
from connectors.setup import check_config
from connectors.testing.harness import Harness

Case = TypeVar("Case", bound=Callable[..., None])


def needs(capability: str, value: object = True) -> Callable[[Case], Case]:
    """Mark a case as needing ``capability`` to be ``value``: an attribute of the harness
    class (``sends_retry_after``), else of the connector's declared ``Capabilities``
    (``webhooks``, ``merges``, ``contacts``, ``field_describe``, ``contact_push``)."""

    def mark(case: Case) -> Case:
        needed = [*getattr(case, "contract_needs", []), (capability, value)]
        case.contract_needs = needed  # type: ignore[attr-defined]
        return case

    return mark


def capability_of(harness_class: type[Any], capability: str) -> object:
    """What the harness class, or else the connector it tests, says of ``capability``."""
    if hasattr(harness_class, capability):
        return getattr(harness_class, capability)
    declared = registry.connector_class(harness_class.key).capabilities
    return getattr(declared, capability)


class RecordingGate(LocalRateGate):
    """The in-process gate, remembering every wait the connector was asked to share."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        super().pause(seconds)


def pull(
    connector: Connector, cursor: str | None = None, *, full: bool = False
) -> tuple[list[CrmCustomer], str | None]:
    """Every record of one pull, and the cursor the next pull starts from."""
    records: list[CrmCustomer] = []
    for page in connector.pull_customers(cursor, full=full):
        records += page.records
        cursor = page.cursor
    return records, cursor


def ids_of(records: list[CrmCustomer]) -> list[str]:
    return [r.id for r in records]


def three_batches(size: int) -> int:
    """A count that needs three pages / batches of ``size``, the last a partial one."""
    return 2 * size + size // 4


def _rate_limited_then_served(harness: Harness, retry_after: float | None) -> None:
    harness.seed(3)
    fault = harness.rate_limit(2, retry_after)
    gate = RecordingGate()
    connector = harness.connector(gate=gate)
    records, _ = pull(connector, full=True)
    assert len(records) == 3
    assert connector.api_calls == 3 == harness.api_calls()  # two refused, one served
    assert fault.wait_seconds is not None
    assert gate.pauses == pytest.approx([fault.wait_seconds] * 2)  # shared with every worker


#: a name and address in many scripts, as a CRM user may type them
NON_ASCII: CustomerFields = {
    "customer_name": "Zoë Søndergård & Fils — 東京支店 🥐",
    "address.line1": "Rue de l'Église 12",
    "address.line2": "Bâtiment Ω, 3ᵉ étage",
    "address.line3": "c/o Ñandú «Łódź»",
    "address.city": "Grand-Bassam",
    "address.state": "Comoé",
    "address.zipCode": "01 BP 1234",
    "address.country": "Côte d'Ivoire",
    "address.country_code": "CI",
    "phone_number": "+225 27 22 00 00 00",
}


class ContractSuite:
    """Every contract case; subclass it as ``Test<Crm>Contract`` (see the module docstring).

    ``harness_class`` decides at collection which capability-dependent cases apply."""

    harness_class: ClassVar[type[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(ContractSuite):
            needed = getattr(getattr(ContractSuite, name), "contract_needs", [])
            if any(capability_of(cls.harness_class, c) != v for c, v in needed):
                setattr(cls, name, None)  # pytest collects only callables: left out

    @pytest.fixture(autouse=True)
    def _fresh_crm(self, harness: Harness) -> Iterator[None]:
        harness.reset()
        yield

    # -- discovery and configuration ------------------------------------------------------------

    def test_connector_is_found_through_the_entry_point_group(self, harness: Harness) -> None:
        assert harness.key in {ep.name for ep in entry_points(group=registry.GROUP)}
        assert registry.GROUP == "crmsync.connectors"
        assert harness.key in registry.available()
        cls = registry.connector_class(harness.key)
        assert cls.key == harness.key
        config = ConnectionConfig(
            f"{harness.key}-contract",
            harness.credentials(),
            harness.settings(),
            harness.field_map,
        )
        connector = registry.create(harness.key, config)
        assert isinstance(connector, cls)
        assert isinstance(connector, Connector)
        assert type(harness.connector()) is cls
        assert connector.api_calls == 0
        mapped = set(connector.mapped_fields)
        assert {"customer_name", "address.line1", "address.city"} <= mapped
        # what a connection is set up with, the connector's own models accept
        settings, credentials = harness.settings(), harness.credentials()
        assert check_config(cls, settings, credentials) == (settings, credentials)
        assert isinstance(cls.capabilities, Capabilities)

    def test_an_unknown_connector_key_is_a_clear_config_error(self, harness: Harness) -> None:
        with pytest.raises(ConfigError) as err:
            registry.create("pipedrive-nope", ConnectionConfig("c", {}))
        message = str(err.value)
        assert "'pipedrive-nope'" in message
        assert harness.key in message  # what is installed

    @needs("field_describe")
    def test_check_accepts_the_map_and_names_a_crm_field_that_does_not_exist(
        self,
        harness: Harness,
    ) -> None:
        harness.connector().check()
        described = harness.connector().describe_fields()
        names = {f.name for f in described}
        assert names, "describe_fields is empty"
        assert all(isinstance(f, CrmField) and f.label and f.type for f in described)
        wrong = harness.connector(
            field_map={**harness.field_map, "custom_data.segment": "No_Such_Field_Zz9"}
        )
        with pytest.raises(ConfigError, match="No_Such_Field_Zz9"):
            wrong.check()

    # -- pulls ----------------------------------------------------------------------------------

    def test_full_pull_pages_at_the_maximum_with_the_minimum_of_calls(
        self, harness: Harness
    ) -> None:
        size = harness.pull_page_max
        n = three_batches(size)
        ids = harness.seed(n)
        connector = harness.connector()
        pages = list(connector.pull_customers(None, full=True))
        got = [r.id for page in pages for r in page.records]
        assert sorted(got) == sorted(ids) and len(got) == n  # all of them, none twice
        assert connector.api_calls == math.ceil(n / size) == harness.api_calls()
        assert max(len(page.records) for page in pages) == size
        assert all(r.fields["customer_name"] and r.modified_at for p in pages for r in p.records)
        # a worker killed after the first page resumes from its cursor and reads the rest once
        resumed = harness.connector()
        rest, _ = pull(resumed, pages[0].cursor, full=True)
        assert sorted(ids_of(rest) + ids_of(pages[0].records)) == sorted(ids)
        assert resumed.api_calls == math.ceil((n - len(pages[0].records)) / size)

    def test_full_pull_of_an_empty_crm_is_one_call(self, harness: Harness) -> None:
        connector = harness.connector()
        records, cursor = pull(connector, full=True)
        assert records == [] and connector.api_calls == 1
        assert pull(harness.connector(), cursor)[0] == []

    def test_incremental_boundary_with_records_modified_in_the_watermark_millisecond(
        self,
        harness: Harness,
    ) -> None:
        ids = harness.seed(10)
        _, cursor = pull(harness.connector(), full=True)
        stamp = int(time.time() * 1000) + 60_000  # one millisecond ahead of everything so far
        first = [ids[3], ids[5], ids[7]]
        harness.change_at(first, stamp)
        records, cursor = pull(harness.connector(), cursor)
        assert sorted(ids_of(records)) == sorted(first)
        # other records change in the very millisecond of the watermark, after the pull that
        # set it: ids below, between and above the ones already read at that millisecond
        late = [ids[1], ids[4], ids[9]]
        harness.change_at(late, stamp)
        records, cursor = pull(harness.connector(), cursor)
        assert sorted(ids_of(records)) == sorted(late), "lost or repeated at the boundary"
        assert pull(harness.connector(), cursor)[0] == []
        harness.change_at([ids[0]], stamp + 1)
        records, cursor = pull(harness.connector(), cursor)
        assert ids_of(records) == [ids[0]]
        assert pull(harness.connector(), cursor)[0] == []

    def test_deletes_merges_and_restores_come_through_the_incremental(
        self, harness: Harness
    ) -> None:
        a, b, c, d = harness.seed(4)
        _, cursor = pull(harness.connector(), full=True)
        harness.delete(a)
        survivor = harness.merge(b, c)  # HubSpot: a new id; Salesforce: b's
        records, cursor = pull(harness.connector(), cursor)
        got = {r.id: (r.deleted, r.merged_into) for r in records}
        assert got[a] == (True, None)
        merges_on_pulls = capability_of(type(harness), "merges") == "pulls"
        for merged_away in {b, c} - {survivor}:  # every id that is gone names the survivor
            # (where merges show only in webhooks, a pull sees the merged-away one deleted)
            assert got[merged_away] == (True, survivor if merges_on_pulls else None)
        assert got[survivor] == (False, None)
        assert d not in got
        harness.restore(a)
        records, cursor = pull(harness.connector(), cursor)
        assert [(r.id, r.deleted) for r in records] == [(a, False)]
        assert records[0].fields["customer_name"]
        assert pull(harness.connector(), cursor)[0] == []

    def test_a_full_pull_names_where_merged_records_went(self, harness: Harness) -> None:
        a, b, _ = harness.seed(3)
        survivor = harness.merge(a, b)
        records, _ = pull(harness.connector(), full=True)
        live = [r for r in records if not r.deleted]
        assert survivor in ids_of(live) and len(live) == 2
        merged = {r.id: r.merged_into for r in records if r.deleted}
        # Salesforce lists no deleted record in a full pull; HubSpot names the ids merged away
        assert set(merged) <= {a, b} - {survivor}
        assert set(merged.values()) <= {survivor}

    def test_pull_by_ids_returns_missing_ones_as_deleted(self, harness: Harness) -> None:
        live, deleted, winner, loser = harness.seed(4)
        harness.delete(deleted)
        survivor = harness.merge(winner, loser)
        wanted = [live, deleted, harness.missing_id, loser]
        found = harness.connector().pull_customers_by_ids(wanted)
        assert [r.id for r in found] == wanted
        by_id = {r.id: r for r in found}
        assert not by_id[live].deleted and by_id[live].fields["customer_name"]
        assert by_id[deleted].deleted
        assert by_id[harness.missing_id].deleted
        assert by_id[loser].deleted
        if capability_of(type(harness), "merges") == "pulls":
            assert by_id[loser].merged_into == survivor

    @needs("contacts")
    def test_contacts_come_with_the_record_they_belong_to(self, harness: Harness) -> None:
        ids = harness.seed(3)
        contacts: list[CrmContact] = []
        cursor = None
        for page in harness.connector().pull_contacts(None, full=True):
            contacts += page.records
            cursor = page.cursor
        assert contacts, "seeded records have contacts"
        assert {c.customer_id for c in contacts} <= set(ids)
        assert all(c.name and not c.deleted for c in contacts)
        assert len({c.id for c in contacts}) == len(contacts)
        again = [r for p in harness.connector().pull_contacts(cursor) for r in p.records]
        assert again == [], "nothing changed since the full pull"

    @needs("contact_push")
    def test_pushed_contacts_are_batched_and_come_back_with_their_account(
        self, harness: Harness
    ) -> None:
        """Contacts created from the billing side belong to their account / company, cost
        one call per batch, and read back as written; an update changes only what it
        names."""
        (account,) = harness.seed(1)
        connector = harness.connector()
        assert isinstance(connector, ContactWriter)
        size = harness.push_batch_max
        count = size + 1
        pushes = [
            ContactPush(f"c{i}", None, account, {"name": f"Ann Contact{i}", "email": f"a{i}@x.io"})
            for i in range(count)
        ]
        before = connector.api_calls
        results = connector.push_contacts(pushes)
        assert connector.api_calls - before == 2  # a full batch and a batch of one
        assert [r.billing_id for r in results] == [p.contact_id for p in pushes]
        assert all(r.ok and r.crm_id for r in results)
        created = {r.crm_id: r.billing_id for r in results}
        pulled = {
            c.id: c
            for page in harness.connector().pull_contacts(None, full=True)
            for c in page.records
        }
        for crm_id, contact_id in created.items():
            contact = pulled[str(crm_id)]
            index = contact_id[1:]
            assert (contact.customer_id, contact.name, contact.email) == (
                account,
                f"Ann Contact{index}",
                f"a{index}@x.io",
            )
        first = str(results[0].crm_id)
        (changed,) = connector.push_contacts(
            [ContactPush("c0", first, account, {"name": "Bo Lee"})]
        )
        assert changed.ok and changed.crm_id == first
        again = {
            c.id: c
            for page in harness.connector().pull_contacts(None, full=True)
            for c in page.records
        }
        assert (again[first].name, again[first].email) == ("Bo Lee", "a0@x.io")

    @needs("contact_find")
    def test_contacts_are_found_by_email_and_an_adopting_update_associates_them(
        self, harness: Harness
    ) -> None:
        """A CRM that keeps one contact per e-mail finds its contacts by e-mail (any case;
        e-mails none holds are left out), with their account / company, in one call per
        batch; an update that adopts one (no fields: only the association) succeeds under
        the contact's id."""
        first, second = harness.seed(2)
        connector = harness.connector()
        assert isinstance(connector, ContactWriter) and isinstance(connector, ContactFinder)
        (made,) = connector.push_contacts(
            [ContactPush("c1", None, first, {"name": "Ann Lee", "email": "ann@find.example"})]
        )
        assert made.ok and made.crm_id
        before = connector.api_calls
        found = connector.find_contacts(["ANN@find.example", "nobody@find.example"])
        assert connector.api_calls - before == 1
        assert [(c.id, c.customer_id, c.email) for c in found] == [
            (made.crm_id, first, "ann@find.example")
        ]
        (adopted,) = connector.push_contacts(
            [ContactPush("c2", made.crm_id, second, {}, associate="other")]
        )
        assert adopted.ok and adopted.crm_id == made.crm_id

    # -- pushes ---------------------------------------------------------------------------------

    def test_push_of_updates_costs_the_minimum_and_results_match_by_billing_id(
        self,
        harness: Harness,
    ) -> None:
        size = harness.push_batch_max
        m = three_batches(size)
        ids = harness.seed(m)
        pushes = [
            CustomerPush(f"bill-{n}", crm_id, {"phone_number": f"+1 555 {n:04d}"})
            for n, crm_id in enumerate(ids)
        ]
        connector = harness.connector()
        results = connector.push_customers(pushes)
        assert connector.api_calls == harness.push_calls(m, 0) == harness.api_calls()
        assert [r.billing_id for r in results] == [p.billing_id for p in pushes]
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        assert [r.crm_id for r in results] == ids
        assert all(
            harness.read(crm_id)["phone_number"] == f"+1 555 {n:04d}"
            for n, crm_id in enumerate(ids)
        )

    def test_push_of_creates_costs_the_minimum_and_results_match_by_billing_id(
        self,
        harness: Harness,
    ) -> None:
        size = harness.push_batch_max
        m = three_batches(size)
        pushes = [
            CustomerPush(str(uuid.uuid4()), None, {"customer_name": f"Contract Co {n}"})
            for n in range(m)
        ]
        connector = harness.connector()
        results = connector.push_customers(pushes)
        assert connector.api_calls == harness.push_calls(0, m) == harness.api_calls()
        assert [r.billing_id for r in results] == [p.billing_id for p in pushes]
        assert all(r.ok and r.crm_id for r in results), [r.error for r in results if not r.ok][:3]
        assert len({r.crm_id for r in results}) == m
        for push, result in zip(pushes, results, strict=True):
            assert result.crm_id is not None
            assert harness.read(result.crm_id)["customer_name"] == push.fields["customer_name"]

    def test_a_mixed_push_matches_every_result_to_its_billing_id(self, harness: Harness) -> None:
        ids = harness.seed(6)
        pushes: list[CustomerPush] = []
        for n, crm_id in enumerate(ids):  # updates and creates interleaved
            pushes.append(CustomerPush(f"upd-{n}", crm_id, {"customer_name": f"Updated {n}"}))
            pushes.append(CustomerPush(f"new-{n}", None, {"customer_name": f"Created {n}"}))
        connector = harness.connector()
        results = connector.push_customers(pushes)
        # in batches per kind: creates are keyed by the billing id, updates by CRM id
        assert connector.api_calls == harness.push_calls(6, 6)
        assert [r.billing_id for r in results] == [p.billing_id for p in pushes]
        for push, result in zip(pushes, results, strict=True):
            assert result.ok and result.crm_id, result.error
            if push.crm_id is not None:
                assert result.crm_id == push.crm_id
            assert harness.read(result.crm_id)["customer_name"] == push.fields["customer_name"]

    def test_pushing_the_same_create_twice_makes_one_record(self, harness: Harness) -> None:
        billing_id = str(uuid.uuid4())
        push = CustomerPush(billing_id, None, {"customer_name": "Once Only Ltd"})
        [first] = harness.connector().push_customers([push])
        [second] = harness.connector().push_customers([push])  # e.g. after a lost commit
        assert first.ok and second.ok and first.crm_id
        assert second.crm_id == first.crm_id
        records, _ = pull(harness.connector(), full=True)
        assert [r.id for r in records if r.billing_id == billing_id] == [first.crm_id]
        assert len(records) == 1

    def test_partial_batch_failures_come_back_per_record_with_the_crms_words(
        self,
        harness: Harness,
    ) -> None:
        ok_id, bad_id = harness.seed(2)
        invalid = harness.reject_record(bad_id, "validation")
        pushes = [
            CustomerPush("bill-ok", ok_id, {"phone_number": "+1 555 0100"}),
            CustomerPush("bill-bad", bad_id, {"phone_number": "+1 555 0101"}),
            CustomerPush("bill-gone", harness.missing_id, {"phone_number": "+1 555 0102"}),
            CustomerPush("bill-new", None, {"customer_name": "New Co"}),
        ]
        # a CRM that enforces a unique field refuses a duplicate too (not every CRM can)
        duplicates = "duplicate" in harness.rejectable
        if duplicates:
            duplicate = harness.reject_record("bill-dup", "duplicate")
            pushes.append(CustomerPush("bill-dup", None, {"customer_name": "Dup Co"}))
        connector = harness.connector()
        results = connector.push_customers(pushes)
        # nothing raised: the calls of the batches alone
        assert connector.api_calls == harness.push_calls(3, 2 if duplicates else 1)
        assert [r.billing_id for r in results] == [p.billing_id for p in pushes]
        by_id = {r.billing_id: r for r in results}
        assert by_id["bill-ok"].ok and by_id["bill-ok"].crm_id == ok_id
        assert by_id["bill-new"].ok and by_id["bill-new"].crm_id
        bad, gone = by_id["bill-bad"].error, by_id["bill-gone"].error
        assert bad is not None and bad.kind == "validation" and invalid.message in bad.message
        assert gone is not None and gone.kind == "not_found" and gone.message
        if duplicates:
            dup = by_id["bill-dup"].error
            assert dup is not None and dup.kind == "duplicate" and duplicate.message in dup.message
        assert harness.read(ok_id)["phone_number"] == "+1 555 0100"
        assert harness.read(bad_id)["phone_number"] != "+1 555 0101"

    def test_a_write_of_the_billing_id_marks_the_record(self, harness: Harness) -> None:
        [crm_id] = harness.seed(1)
        connector = harness.connector()
        [before] = connector.pull_customers_by_ids([crm_id])
        assert before.billing_id is None  # made by a CRM user
        push = CustomerPush("bill-linked-1", crm_id, {}, write_billing_id=True)
        [result] = connector.push_customers([push])
        assert result.ok and result.crm_id == crm_id, result.error
        assert connector.api_calls == 2  # the read, and one batch
        [after] = connector.pull_customers_by_ids([crm_id])
        assert after.billing_id == "bill-linked-1"
        assert after.fields == before.fields  # nothing else was written

    # -- values ---------------------------------------------------------------------------------

    def test_non_ascii_names_and_addresses_round_trip(self, harness: Harness) -> None:
        connector = harness.connector()
        values = {k: v for k, v in NON_ASCII.items() if k in connector.mapped_fields}
        assert len(values) >= 7, "too few of the name and address fields are mapped"
        [created] = connector.push_customers([CustomerPush("bill-utf8", None, dict(values))])
        assert created.ok and created.crm_id, created.error
        stored = harness.read(created.crm_id)
        assert {k: stored[k] for k in values} == values  # as the CRM holds it
        [by_id] = connector.pull_customers_by_ids([created.crm_id])
        assert {k: by_id.fields[k] for k in values} == values
        assert by_id.billing_id == "bill-utf8"
        # a record a CRM user typed comes through a pull unchanged too
        typed = harness.create(dict(values))
        records, _ = pull(harness.connector(), full=True)
        pulled = {r.id: r for r in records}
        assert {k: pulled[typed].fields[k] for k in values} == values
        assert {k: pulled[created.crm_id].fields[k] for k in values} == values

    def test_empty_versus_missing_fields(self, harness: Harness) -> None:
        full = harness.create(dict(NON_ASCII))
        bare = harness.create({"customer_name": "Bare Name Only"})
        connector = harness.connector()
        mapped = set(connector.mapped_fields)
        # a pulled record names every mapped field; an empty one is None (never "" or absent)
        [bare_record] = connector.pull_customers_by_ids([bare])
        assert set(bare_record.fields) == mapped
        assert {k for k, v in bare_record.fields.items() if v is not None} == {"customer_name"}
        # a CRM user blanking a field ("") reads as None too
        harness.edit(full, {"address.zipCode": ""})
        [record] = connector.pull_customers_by_ids([full])
        assert set(record.fields) == mapped and record.fields["address.zipCode"] is None
        # pushing None clears a field; a field not in the push is left alone
        [result] = connector.push_customers(
            [CustomerPush("bill-empty", full, {"phone_number": None, "address.line2": None})]
        )
        assert result.ok, result.error
        after = harness.read(full)
        assert after["phone_number"] is None and after["address.line2"] is None
        untouched = {
            k: v
            for k, v in NON_ASCII.items()
            if k in mapped and k not in {"phone_number", "address.line2", "address.zipCode"}
        }
        assert {k: after[k] for k in untouched} == untouched
        [pulled] = connector.pull_customers_by_ids([full])
        assert pulled.fields["phone_number"] is None and pulled.fields["address.line2"] is None
        assert {k: pulled.fields[k] for k in untouched} == untouched

    # -- rate limits, failures, time-outs ----------------------------------------------------------

    def test_rate_limited_calls_wait_the_crms_interval_then_succeed(self, harness: Harness) -> None:
        _rate_limited_then_served(harness, None)

    @needs("sends_retry_after")
    def test_rate_limited_calls_wait_as_long_as_retry_after_says(self, harness: Harness) -> None:
        _rate_limited_then_served(harness, 0.05)

    def test_thirty_rate_limits_in_a_row_are_traffic_not_failures(self, harness: Harness) -> None:
        """A burst of 30 short-window refusals without Retry-After, more than the tries a
        failure gets: each is waited out for the CRM's window, and the pull completes."""
        ids = harness.seed(three_batches(harness.pull_page_max))
        fault = harness.rate_limit(30)
        gate = RecordingGate()
        connector = harness.connector(gate=gate, max_attempts=2)
        records, _ = pull(connector, full=True)
        assert sorted(ids_of(records)) == sorted(ids)  # nothing lost
        pages = math.ceil(len(ids) / harness.pull_page_max)
        assert connector.api_calls == 30 + pages == harness.api_calls()
        assert fault.wait_seconds is not None
        assert gate.pauses == pytest.approx([fault.wait_seconds] * 30)
        assert connector.calls.rate_limit_waits == 30 and connector.calls.retries == 0

    def test_rate_limit_waits_are_bounded_by_the_runs_time_budget(self, harness: Harness) -> None:
        harness.seed(3)
        fault = harness.rate_limit(10_000)
        assert fault.wait_seconds is not None
        connector = harness.connector(rate_limit_budget_seconds=10 * fault.wait_seconds)
        with pytest.raises(RateLimited) as err:
            pull(connector, full=True)
        assert fault.message in str(err.value)
        # each wait lasts at least what was asked, so the budget allows at most ten of them
        assert 2 <= connector.api_calls <= 11
        assert connector.api_calls == harness.api_calls()

    def test_a_spent_daily_allowance_stops_every_call_until_it_returns(
        self, harness: Harness
    ) -> None:
        ids = harness.seed(three_batches(harness.pull_page_max))
        fault = harness.spend_allowance(after=1)
        gate = LocalRateGate()  # shared by the two connectors, as by two workers
        connector = harness.connector(gate=gate)
        before = time.time()
        with pytest.raises(DailyLimitExceeded) as err:
            pull(connector, full=True)
        assert fault.message in str(err.value)
        assert err.value.until.timestamp() > before  # it says when the allowance returns
        assert connector.api_calls == 2 == harness.api_calls()  # one served, one refused
        assert connector.calls.retries == 0
        # another worker of the connection burns no call while the allowance is spent
        other = harness.connector(gate=gate)
        with pytest.raises(DailyLimitExceeded):
            pull(other, full=True)
        assert other.api_calls == 0 and harness.api_calls() == 2
        harness.restore_allowance()
        records, _ = pull(harness.connector(), full=True)  # a gate whose suspension ended
        assert sorted(ids_of(records)) == sorted(ids)

    def test_the_connector_reports_the_allowance_the_crm_says_is_used(
        self, harness: Harness
    ) -> None:
        harness.seed(1)
        connector = harness.connector()
        assert connector.api_usage is None
        pull(connector, full=True)
        usage = connector.api_usage
        assert usage is not None and 0 < usage.used < usage.limit and usage.window

    def test_server_errors_are_retried_then_exhausted_into_a_retriable_error(
        self,
        harness: Harness,
    ) -> None:
        harness.seed(3)
        harness.server_errors(2)
        connector = harness.connector()
        assert len(pull(connector, full=True)[0]) == 3
        assert connector.api_calls == 3 == harness.api_calls()
        fault = harness.server_errors(10)
        connector = harness.connector(max_attempts=3)
        with pytest.raises(RetriableError) as err:
            pull(connector, full=True)
        assert fault.message in str(err.value)
        assert err.value.status is not None and err.value.status >= 500
        assert connector.api_calls == 3

    def test_a_push_is_retried_after_a_server_error(self, harness: Harness) -> None:
        [crm_id] = harness.seed(1)
        harness.server_errors(1)
        connector = harness.connector()
        results = connector.push_customers(
            [
                CustomerPush("bill-upd", crm_id, {"phone_number": "+1 555 0199"}),
                CustomerPush("bill-create", None, {"customer_name": "Retried Create"}),
            ]
        )
        assert all(r.ok for r in results), [r.error for r in results]
        assert connector.api_calls == 1 + harness.push_calls(1, 1)  # one refused, then the rest
        assert harness.read(crm_id)["phone_number"] == "+1 555 0199"
        records, _ = pull(harness.connector(), full=True)
        assert [r.fields["customer_name"] for r in records].count("Retried Create") == 1

    def test_a_request_that_times_out_is_retried(self, harness: Harness) -> None:
        harness.seed(2)
        harness.hang(1, 3.0)
        connector = harness.connector(request_timeout=0.3)
        assert len(pull(connector, full=True)[0]) == 2
        assert connector.api_calls == 2

    # -- authentication -------------------------------------------------------------------------

    @needs("can_refresh_tokens")
    def test_an_expired_token_is_refreshed_once_and_the_pull_goes_on(
        self, harness: Harness
    ) -> None:
        harness.seed(2)
        connector = harness.connector()
        first, _ = pull(connector, full=True)
        before = connector.api_calls
        harness.expire_tokens()
        again, _ = pull(connector, full=True)
        assert ids_of(again) == ids_of(first)
        assert connector.api_calls - before == 3  # refused, new token, the page again
        harness.expire_tokens()
        assert len(pull(connector, full=True)[0]) == 2  # and again, later

    def test_a_401_without_a_way_to_refresh_is_an_auth_error(self, harness: Harness) -> None:
        harness.seed(1)
        connector = harness.connector(credentials=harness.static_credentials())
        assert len(pull(connector, full=True)[0]) == 1
        fault = harness.expire_tokens()
        with pytest.raises(AuthError) as err:
            pull(connector, full=True)
        assert fault.message in str(err.value)
        assert connector.api_calls == 2  # not retried

    # -- webhooks -------------------------------------------------------------------------------

    @needs("webhooks")
    def test_the_crms_own_webhook_verifies_and_parses_into_keyed_events(
        self, harness: Harness
    ) -> None:
        made: list[str] = []

        def change() -> None:
            made.append(harness.create({"customer_name": "Hooked Ünïcødé"}))
            harness.edit(made[0], {"phone_number": "+1 555 0123"})

        requests = harness.webhook_requests(change)
        assert requests, "the sandbox delivered nothing"
        connector = harness.connector()
        events = []
        for request in requests:
            connector.verify_webhook(request)
            events += connector.parse_webhook(request.body)
        assert events and all(e.key and e.object_type == "customer" for e in events)
        assert len({e.key for e in events}) == len(events)  # keys tell deliveries apart
        assert {e.crm_id for e in events} == {made[0]}
        assert {e.kind for e in events} <= {"created", "changed"}

    @needs("webhooks")
    @needs("merges", "webhooks")
    def test_a_merge_reaches_the_webhook_naming_both_records(self, harness: Harness) -> None:
        winner, loser = harness.seed(2)
        survivor: list[str] = []
        requests = harness.webhook_requests(lambda: survivor.append(harness.merge(winner, loser)))
        connector = harness.connector()
        events = []
        for request in requests:
            connector.verify_webhook(request)
            events += connector.parse_webhook(request.body)
        merges = [e for e in events if e.kind == "merged"]
        assert merges, [e.kind for e in events]
        assert merges[0].merged_into == survivor[0] and loser in merges[0].merged_ids
        if survivor[0] != winner:  # a merge into a new record merged the winner away too
            assert winner in merges[0].merged_ids

    @needs("webhooks")
    def test_a_tampered_webhook_is_rejected(self, harness: Harness) -> None:
        [genuine] = harness.webhook_requests(lambda: harness.create({"customer_name": "Hooked"}))
        connector = harness.connector()
        connector.verify_webhook(genuine)
        stripped = WebhookRequest("POST", genuine.url.split("?")[0], {}, genuine.body)
        forgeries = [stripped, *harness.tampered_webhooks(genuine)]
        assert len(forgeries) >= 3
        for forged in forgeries:
            with pytest.raises(WebhookRejected) as err:
                connector.verify_webhook(forged)
            assert err.value.status in (400, 401), forged
        for malformed in (b"", b"not a webhook <", b"{]"):
            with pytest.raises(WebhookRejected) as bad:
                connector.parse_webhook(malformed)
            assert bad.value.status == 400
