"""The HubSpot connector against the sandbox, with the real hubspot-api-client over HTTP."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import registry
from connectors.base import (
    ConnectionConfig,
    ContactPush,
    CrmCustomer,
    CustomerPush,
    WebhookRequest,
)
from connectors.errors import (
    AuthError,
    ConfigError,
    RateLimited,
    RetriableError,
    WebhookRejected,
)
from connectors.hubspot import HubSpotConnector, webhooks
from connectors.hubspot.config import HubSpotSettings
from connectors.hubspot.cursor import HubSpotCursor
from connectors.hubspot.webhooks import signature_v2, signature_v3
from sandbox.hubspot import HubSpotSandbox
from sandbox.server import Sandbox, SandboxOptions
from tests.connectors.harness_hubspot import CLIENT_SECRET, HubSpotHarness, make_harness

LIST = "GET /crm/v3/objects/{object_type}"
SEARCH = "POST /crm/v3/objects/{object_type}/search"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture
def harness(sandbox: Sandbox) -> HubSpotHarness:
    h = make_harness(sandbox)
    h.reset()
    return h


@pytest.fixture
def hs(harness: HubSpotHarness) -> HubSpotSandbox:
    return harness.hs


def full_pull(connector: HubSpotConnector) -> tuple[list[CrmCustomer], str]:
    records: list[CrmCustomer] = []
    cursor = ""
    for page in connector.pull_customers(None, full=True):
        records += page.records
        assert page.cursor is not None
        cursor = page.cursor
    return records, cursor


def incremental(connector: HubSpotConnector, cursor: str | None) -> tuple[list[CrmCustomer], str]:
    records: list[CrmCustomer] = []
    last = cursor or ""
    for page in connector.pull_customers(cursor):
        records += page.records
        assert page.cursor is not None
        last = page.cursor
    return records, last


# -- full pulls ---------------------------------------------------------------------------


def test_full_pull_pages_of_100_with_exact_calls(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    ids = harness.seed(250)
    connector = harness.connector()
    records, _ = full_pull(connector)
    assert [r.id for r in records] == ids
    assert connector.api_calls == 3 == harness.api_calls()
    first = hs.read(ids[0])["properties"]
    assert records[0].fields["customer_name"] == first["name"]
    assert records[0].fields["address.line1"] == first["address"]
    assert records[0].fields["address.country_code"] is not None
    assert records[0].modified_at is not None and records[0].modified_at.tzinfo is not None


def test_full_pull_resumes_after_a_killed_page(harness: HubSpotHarness) -> None:
    ids = harness.seed(250)
    pages = harness.connector().pull_customers(None, full=True)
    first = next(pages)
    pages.close()  # the worker dies after committing page 1
    connector = harness.connector()
    rest = [
        r.id for page in connector.pull_customers(first.cursor, full=True) for r in page.records
    ]
    assert [r.id for r in first.records] + rest == ids
    assert connector.api_calls == 2


def test_empty_portal_full_pull_is_one_call(harness: HubSpotHarness) -> None:
    connector = harness.connector()
    records, _ = full_pull(connector)
    assert records == [] and connector.api_calls == 1


# -- incremental pulls --------------------------------------------------------------------


def test_incremental_with_nothing_changed_costs_two_calls(harness: HubSpotHarness) -> None:
    harness.seed(120)
    _, cursor = full_pull(harness.connector())
    connector = harness.connector()
    records, again = incremental(connector, cursor)
    assert records == [] and connector.api_calls == 2
    assert incremental(harness.connector(), again)[0] == []


# -- the search index lags behind writes ------------------------------------------------------

#: how long the sandbox's index takes to have a write, in the tests that make it late
INDEX_DELAY = 1.5


def test_a_record_indexed_late_is_read_by_the_next_pull_only_with_the_search_lag(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """A is modified before B, but the index has A only later: the pull after B's read
    skips A for good without the search lag; with it (the default), the next pull reads A."""
    a, b, c = harness.seed(3)
    _, cursor = full_pull(harness.connector())
    harness.set_faults(search_index_delay_seconds=INDEX_DELAY)
    harness.edit(a, {"address.city": "Late Indexed"})
    indexed = time.monotonic() + INDEX_DELAY
    harness.set_faults(search_index_delay_seconds=0)
    time.sleep(0.005)  # B in a later millisecond than A (one ms: the ids at it are kept)
    harness.edit(b, {"address.city": "Indexed At Once"})
    assert hs.read(b)["modifiedMs"] > hs.read(a)["modifiedMs"]
    # A is there for a read by id, not yet for search
    assert harness.connector().pull_customers_by_ids([a])[0].fields["address.city"] == (
        "Late Indexed"
    )
    trusting = harness.connector(search_lag_seconds=0)
    careful = harness.connector(search_lag_seconds=harness_default_lag())
    seen, trusted = incremental(trusting, cursor)
    assert [r.id for r in seen] == [b]
    seen, capped = incremental(careful, cursor)
    assert [r.id for r in seen] == [b]
    time.sleep(max(0.0, indexed - time.monotonic()) + 0.05)  # the index has A now
    assert incremental(harness.connector(search_lag_seconds=0), trusted)[0] == [], "A is lost"
    later = harness.connector()
    records, _ = incremental(later, capped)
    by_id = {r.id: r for r in records}
    assert by_id[a].fields["address.city"] == "Late Indexed"
    assert set(by_id) == {a, b, c}  # B (and C, seeded seconds ago) read again, unchanged
    assert later.api_calls == 2  # one search page, one archived list


def harness_default_lag() -> float:
    """The connector's default ``search_lag_seconds`` (the harness sets 0)."""
    return float(HubSpotSettings.model_fields["search_lag_seconds"].default)


def test_by_default_a_pull_right_after_another_reads_its_last_seconds_again_at_no_call(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """The default lag: records modified in the seconds before a pull began are read again
    by the next one (unchanged), in the same search page: nothing changed is still 2 calls;
    the watermark stored never passes the pull's start less the lag."""
    ids = harness.seed(120)
    settings = {k: v for k, v in harness.settings().items() if k != "search_lag_seconds"}
    default = HubSpotConnector(ConnectionConfig("hubspot-test", harness.credentials(), settings))
    assert harness_default_lag() > 0
    _, cursor = full_pull(harness.connector())
    harness.edit(ids[5], {"address.city": "Oslo"})
    began = int(time.time() * 1000)
    records, cursor = incremental(default, cursor)
    ended = int(time.time() * 1000)
    assert [r.id for r in records] == [ids[5]]
    stored = HubSpotCursor.from_json(cursor)
    lag_ms = round(harness_default_lag() * 1000)
    # the pull's start, less the lag (the harness has no clock skew): before the edit
    assert began - lag_ms <= stored.watermark_ms <= ended - lag_ms
    assert (stored.at_watermark, stored.strict) == ((), False)
    again = HubSpotConnector(ConnectionConfig("hubspot-test", harness.credentials(), settings))
    records, _ = incremental(again, cursor)
    assert ids[5] in [r.id for r in records]  # read again
    assert again.api_calls == 2


def test_incremental_sees_edits_in_pages_of_200(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    ids = harness.seed(600)
    _, cursor = full_pull(harness.connector())
    changed = ids[100:550]
    for n, cid in enumerate(changed):
        hs.touch([cid], ms=hs.read(cid)["modifiedMs"] + 10_000 + n)  # distinct stamps
    harness.edit(ids[3], {"address.city": "Zürich"})
    connector = harness.connector()
    hs.reset_counts()
    records, cursor = incremental(connector, cursor)
    assert sorted(r.id for r in records) == sorted([*changed, ids[3]])
    assert hs.request_counts()[SEARCH] == math.ceil(451 / 200)
    assert connector.api_calls == math.ceil(451 / 200) + 1  # + the archived list
    assert next(r for r in records if r.id == ids[3]).fields["address.city"] == "Zürich"
    assert incremental(harness.connector(), cursor)[0] == []


def test_records_sharing_the_watermark_millisecond(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    ids = harness.seed(20)
    _, cursor = full_pull(harness.connector())
    stamp = int(time.time() * 1000) + 60_000
    hs.touch(ids[:5], ms=stamp)
    records, cursor = incremental(harness.connector(), cursor)
    assert sorted(r.id for r in records) == sorted(ids[:5])
    assert json.loads(cursor)["wm"] == stamp
    # three more records change in the very millisecond of the watermark
    hs.touch(ids[10:13], ms=stamp)
    records, cursor = incremental(harness.connector(), cursor)
    assert sorted(r.id for r in records) == sorted(ids[10:13])
    assert incremental(harness.connector(), cursor)[0] == []


def test_more_than_10000_records_in_one_millisecond(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    ids = harness.seed(10_450)
    _, cursor = full_pull(harness.connector())
    hs.touch(None, ms=int(time.time() * 1000) + 60_000)  # every company, same ms
    hs.reset_counts()
    connector = harness.connector()
    seen: list[str] = []
    pages = connector.pull_customers(cursor)
    for n, page in enumerate(pages):
        seen += [r.id for r in page.records]
        if n == 20:  # kill the worker mid-way (in the tie walk), resume from the cursor
            pages.close()
            assert json.loads(page.cursor or "{}")["mode"] == "ties"
            for rest in harness.connector().pull_customers(page.cursor):
                seen += [r.id for r in rest.records]
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(ids)  # none lost, none twice
    counts = hs.request_counts()
    assert set(counts) == {SEARCH, LIST}  # a search past the cap would have raised (400)
    # 1 range page, the tie walk by id (its first page re-reads the range page), GT T, archived
    assert counts[SEARCH] <= math.ceil(len(ids) / 200) + 3


@pytest.mark.parametrize("keep_primary_id", [False, True], ids=["new-id", "primary-id"])
def test_deletes_merges_and_restores(
    harness: HubSpotHarness, hs: HubSpotSandbox, keep_primary_id: bool
) -> None:
    hs.set_merges_keep_primary_id(keep_primary_id)
    ids = harness.seed(10)
    _, cursor = full_pull(harness.connector())
    harness.delete(ids[1])
    survivor = harness.merge(ids[2], ids[3])
    assert (survivor == ids[2]) is keep_primary_id  # since 2024 a merge mints a new id
    harness.delete(ids[4])
    harness.restore(ids[4])
    records, cursor = incremental(harness.connector(), cursor)
    by_id = {r.id: r for r in records}
    assert by_id[ids[1]].deleted and by_id[ids[1]].merged_into is None
    assert by_id[ids[3]].deleted and by_id[ids[3]].merged_into == survivor
    assert not by_id[survivor].deleted
    assert set(by_id[survivor].merged_from) == {ids[2], ids[3]} - {survivor}
    if not keep_primary_id:  # the primary's old id is gone as well
        assert by_id[ids[2]].deleted and by_id[ids[2]].merged_into == survivor
        assert ids[2] not in hs.ids() and ids[2] not in hs.ids(archived=True)
    assert not by_id[ids[4]].deleted  # restored: a plain change
    assert set(by_id) == {ids[1], ids[2], ids[3], ids[4], survivor}
    assert incremental(harness.connector(), cursor)[0] == []
    hs.set_merges_keep_primary_id(False)


def test_a_deletion_without_archived_at_is_still_reported(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """``archivedAt`` is optional on a record (only id, properties, createdAt and
    updatedAt are required): an archived company listed without it is a deletion all the
    same (reported again by each pull, as when it happened is unknown), not skipped."""
    hs.set_faults(omit_archived_at=True)
    ids = harness.seed(3)
    _, cursor = full_pull(harness.connector())
    harness.delete(ids[0])
    records, cursor = incremental(harness.connector(), cursor)
    assert [(r.id, r.deleted) for r in records] == [(ids[0], True)]
    again, _ = incremental(harness.connector(), cursor)
    assert [(r.id, r.deleted) for r in again] == [(ids[0], True)]


def test_a_merged_away_id_still_reads_and_writes_the_new_record(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    a, b = harness.seed(2)
    survivor = harness.merge(a, b)
    connector = harness.connector()
    found = {r.id: r for r in connector.pull_customers_by_ids([a, b])}
    assert found[a].merged_into == survivor and found[b].merged_into == survivor
    push = CustomerPush("bill-a", a, {"address.city": "Bergen"}, write_billing_id=True)
    [result] = connector.push_customers([push])
    # matched by the trace id HubSpot echoes, under the survivor's id
    assert result.ok and result.crm_id == survivor, result.error
    stored = hs.read(survivor)["properties"]
    assert stored["city"] == "Bergen" and stored["crmsync_id"] == "bill-a"
    assert hs.read(a)["mergedAway"] and not hs.read(a)["archived"]


def test_pull_by_ids_batches_and_marks_missing(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    ids = harness.seed(150)
    harness.delete(ids[7])
    survivor = harness.merge(ids[0], ids[9])
    connector = harness.connector()
    wanted = [*ids, "404404"]
    found = connector.pull_customers_by_ids(wanted)
    assert [r.id for r in found] == wanted and connector.api_calls == 2
    by_id = {r.id: r for r in found}
    assert by_id[ids[7]].deleted and by_id["404404"].deleted
    assert by_id[ids[9]].deleted and by_id[ids[9]].merged_into == survivor
    assert by_id[ids[0]].deleted and by_id[ids[0]].merged_into == survivor
    assert not by_id[ids[8]].deleted and by_id[ids[8]].fields["customer_name"]


def test_contacts_with_their_company(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    ids = harness.seed(30)
    connector = harness.connector()
    contacts = [c for page in connector.pull_contacts(None, full=True) for c in page.records]
    assert len(contacts) >= 60 and all(c.customer_id in ids for c in contacts)
    assert connector.api_calls == math.ceil(len(contacts) / 100)
    cursor = [p.cursor for p in harness.connector().pull_contacts(None, full=True)][-1]
    hs.edit(contacts[0].id, {"firstname": "Zoë"}, object_type="contacts")
    changed = [c for page in harness.connector().pull_contacts(cursor) for c in page.records]
    assert [c.id for c in changed] == [contacts[0].id]
    assert changed[0].name.startswith("Zoë") and changed[0].customer_id == contacts[0].customer_id


# -- pushes -------------------------------------------------------------------------------


def test_push_250_updates_is_3_calls(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    ids = harness.seed(250)
    connector = harness.connector()
    pushes = [
        CustomerPush(f"b{n}", cid, {"address.city": f"City {n}"}) for n, cid in enumerate(ids)
    ]
    results = connector.push_customers(pushes)
    assert connector.api_calls == 3
    assert [r.billing_id for r in results] == [p.billing_id for p in pushes]
    assert all(r.ok and r.crm_id == p.crm_id for r, p in zip(results, pushes, strict=True))
    assert harness.read(ids[249])["address.city"] == "City 249"


def test_creates_are_idempotent_upserts(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    push = CustomerPush("bill-42", None, {"customer_name": "Ångström AB", "address.line3": "c/o X"})
    first = harness.connector().push_customers([push])
    second = harness.connector().push_customers([push])
    assert first[0].ok and first[0].crm_id == second[0].crm_id
    assert hs.count() == 1
    stored = hs.read(first[0].crm_id or "")["properties"]
    assert stored["crmsync_id"] == "bill-42" and stored["address3"] == "c/o X"
    pulled = harness.connector().pull_customers_by_ids([first[0].crm_id or ""])[0]
    assert pulled.billing_id == "bill-42"


def test_creates_whose_results_name_no_input_are_found_by_their_key(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """Batch results need not echo ``objectWriteTraceId`` nor hold the properties written
    (the upsert reference's example: ``"properties": {}``): the creates are then read
    back, companies by the external-id property and contacts by e-mail, one batch read
    each, and only records the batch's results hold are taken (a refused input's older
    record is not)."""
    company = harness.create({"customer_name": "Parent"})
    older = hs.create("companies", {"name": "Older", "crmsync_id": "bill-refused"})
    harness.set_faults(bare_write_results=True, record_errors={"bill-refused": "validation"})
    connector = harness.connector()
    pushes = [
        CustomerPush("bill-a", None, {"customer_name": "A"}),
        CustomerPush("bill-b", None, {"customer_name": "B"}),
        CustomerPush("bill-refused", None, {"customer_name": "Refused"}),
    ]
    results = {r.billing_id: r for r in connector.push_customers(pushes)}
    assert connector.api_calls == 2  # the upsert, one read back
    for billing_id in ("bill-a", "bill-b"):
        crm_id = results[billing_id].crm_id
        assert results[billing_id].ok and crm_id is not None
        assert hs.read(crm_id)["properties"]["crmsync_id"] == billing_id
    refused = results["bill-refused"]
    assert refused.error is not None and refused.error.kind == "validation"
    assert refused.crm_id != older
    contacts = [
        ContactPush("c1", None, company, {"name": "Ann One", "email": "Ann.One@x.io"}),
        ContactPush("c2", None, company, {"name": "Bob Two", "email": "bob@x.io"}),
    ]
    contact_results = {r.billing_id: r for r in connector.push_contacts(contacts)}
    assert connector.api_calls == 4  # the create, one read back
    for contact_id, email in (("c1", "ann.one@x.io"), ("c2", "bob@x.io")):
        crm_id = contact_results[contact_id].crm_id
        assert contact_results[contact_id].ok and crm_id is not None
        stored = hs.read(crm_id, "contacts")["properties"]["email"]
        assert stored.lower() == email


@pytest.mark.parametrize("by_id", [False, True])
def test_partial_batch_failures_come_back_per_record(
    harness: HubSpotHarness, hs: HubSpotSandbox, by_id: bool
) -> None:
    """Per-input errors of a 207, named in ``context.ids`` or (``by_id``) in the error's
    own ``id`` with an empty ``context``, as the batch references' schema allows."""
    ids = harness.seed(3)
    harness.set_faults(
        record_errors={ids[1]: "validation", "bill-dup": "duplicate"}, batch_errors_by_id=by_id
    )
    pushes = [
        CustomerPush("b0", ids[0], {"phone_number": "+1 555"}),
        CustomerPush("b1", ids[1], {"phone_number": "not a phone"}),
        CustomerPush("b2", "999999", {"phone_number": "+1 555"}),
        CustomerPush("bill-new", None, {"customer_name": "New Co"}),
        CustomerPush("bill-dup", None, {"customer_name": "Dup Co"}),
    ]
    connector = harness.connector()
    results = {r.billing_id: r for r in connector.push_customers(pushes)}
    assert connector.api_calls == 2
    assert results["b0"].ok and results["bill-new"].ok
    assert results["b1"].error is not None and results["b1"].error.kind == "validation"
    assert "not valid" in results["b1"].error.message
    assert results["b2"].error is not None and results["b2"].error.kind == "not_found"
    assert results["bill-dup"].error is not None and results["bill-dup"].error.kind == "duplicate"


@pytest.mark.parametrize("multi_status", [True, False])
def test_a_contact_create_with_a_taken_email_is_a_duplicate_the_others_are_made(
    harness: HubSpotHarness, hs: HubSpotSandbox, multi_status: bool
) -> None:
    """Contact creates carry trace ids, so HubSpot answers a taken e-mail with a 207 error
    for that input; a server that refuses the whole batch instead (409) has it split until
    the refused contact is found."""
    hs.set_faults(multi_status=multi_status)
    (company,) = harness.seed(1)
    hs.create("contacts", {"email": "Taken@X.io", "firstname": "Old"})
    before = hs.count("contacts")
    pushes = [
        ContactPush(f"c{i}", None, company, {"name": f"Ann {i}", "email": f"a{i}@x.io"})
        for i in range(8)
    ]
    pushes[5] = ContactPush("c5", None, company, {"name": "Ann 5", "email": "taken@x.io"})
    connector = harness.connector()
    results = {r.billing_id: r for r in connector.push_contacts(pushes)}
    refused = results["c5"].error
    assert refused is not None and refused.kind == "duplicate"
    assert "already exists" in refused.message
    assert all(results[p.contact_id].ok for p in pushes if p.contact_id != "c5")
    # one call; or 8, then 4 + 4, then 2 + 2 of the refused 4, then 1 + 1
    assert connector.api_calls == (1 if multi_status else 7)
    assert hs.count("contacts") == before + 7


def test_a_contact_update_to_a_taken_email_is_a_duplicate(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    (company,) = harness.seed(1)
    hs.create("contacts", {"email": "taken@x.io"})
    a = hs.create("contacts", {"email": "a@x.io"})
    b = hs.create("contacts", {"email": "b@x.io"})
    pushes = [
        ContactPush("ca", a, company, {"email": "TAKEN@x.io"}),
        ContactPush("cb", b, company, {"name": "Bo Lee"}),
    ]
    results = {r.billing_id: r for r in harness.connector().push_contacts(pushes)}
    refused = results["ca"].error
    assert refused is not None and refused.kind == "duplicate" and results["cb"].ok
    assert hs.read(b, "contacts")["properties"]["lastname"] == "Lee"


def test_a_batch_refused_for_one_value_is_split_to_find_it(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """HubSpot refuses a whole batch update for one e-mail it does not take (400); the
    connector splits it until that contact is found and writes the others; when both
    halves of a batch are refused, each of their contacts is (calls stay bounded)."""
    (company,) = harness.seed(1)
    ids = [hs.create("contacts", {"email": f"c{i}@x.io"}) for i in range(8)]
    pushes = [
        ContactPush(f"c{i}", crm_id, company, {"name": f"New Name{i}"})
        for i, crm_id in enumerate(ids)
    ]
    pushes[2] = ContactPush("c2", ids[2], company, {"email": "not-an-address"})
    connector = harness.connector()
    results = {r.billing_id: r for r in connector.push_contacts(pushes)}
    refused = results["c2"].error
    assert refused is not None and refused.kind == "validation"
    assert "INVALID_EMAIL" in refused.message
    assert all(results[f"c{i}"].ok for i in range(8) if i != 2)
    assert connector.api_calls == 7  # 8; 4 + 4; 2 + 2 of the refused 4; 1 + 1
    assert hs.read(ids[7], "contacts")["properties"]["lastname"] == "Name7"
    bad = [ContactPush(f"b{i}", ids[i], company, {"email": f"bad{i}"}) for i in range(4)]
    connector = harness.connector()
    assert all(r.error is not None for r in connector.push_contacts(bad))
    assert connector.api_calls == 3  # 4; 2 + 2 both refused: each of them refused


def test_non_ascii_round_trip_and_empty_values(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    fields: dict[str, Any] = {
        "customer_name": "Société Générale 東京 Ñandú",
        "address.line1": "Königsallee 1",
        "address.line2": None,
        "address.city": "Łódź",
        "address.country_code": "PL",
    }
    crm_id = harness.connector().push_customers([CustomerPush("b-utf", None, fields)])[0].crm_id
    assert crm_id is not None
    stored = hs.read(crm_id)["properties"]
    assert stored["address2"] == "" and stored["country"] == "Poland"
    hs.edit(crm_id, {"zip": ""})  # "" and null (never set) both mean None
    got = harness.connector().pull_customers_by_ids([crm_id])[0].fields
    assert got["customer_name"] == "Société Générale 東京 Ñandú" and got["address.city"] == "Łódź"
    assert got["address.line2"] is None and got["address.zipCode"] is None
    assert got["address.state"] is None and got["address.country_code"] == "PL"


# -- errors and retries -------------------------------------------------------------------


def test_sdk_retries_are_off(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    connector = harness.connector(max_attempts=1)
    assert all(r.total is False and r.status == 0 for r in connector.apis.pool_retries())
    harness.seed(5)
    # a GET 429 with Retry-After is what urllib3 would retry by default
    harness.set_faults(rate_limit_next=1, retry_after=0.01)
    connector = harness.connector(rate_limit_budget_seconds=0)  # no waiting at all
    with pytest.raises(RateLimited) as err:
        full_pull(connector)
    assert err.value.status == 429 and err.value.wait_seconds == pytest.approx(0.01)
    assert harness.api_calls() == 1 and connector.api_calls == 1


def test_a_retry_after_http_date_is_the_wait_it_names(harness: HubSpotHarness) -> None:
    """``Retry-After`` may be an HTTP-date (RFC 9110): the wait is until then, not the
    default second a 429 without one waits."""
    harness.seed(2)
    harness.set_faults(rate_limit_next=1, retry_after=30, retry_after_http_date=True)
    connector = harness.connector(rate_limit_budget_seconds=0)  # raise instead of waiting
    with pytest.raises(RateLimited) as err:
        full_pull(connector)
    assert 28 <= err.value.wait_seconds <= 30  # the date has whole seconds


@pytest.mark.parametrize("retry_after", [None, 0.02])
def test_429_then_success(harness: HubSpotHarness, retry_after: float | None) -> None:
    harness.seed(5)
    harness.set_faults(rate_limit_next=2, retry_after=retry_after)
    connector = harness.connector()
    records, _ = full_pull(connector)
    assert len(records) == 5 and connector.api_calls == 3 == harness.api_calls()


def test_5xx_then_success_and_time_out(harness: HubSpotHarness) -> None:
    harness.seed(5)
    harness.set_faults(server_error_next=2, server_error_status=502)
    connector = harness.connector()
    assert len(full_pull(connector)[0]) == 5 and connector.api_calls == 3
    harness.set_faults(hang_next=1, hang_seconds=3)
    connector = harness.connector(request_timeout=0.2)
    assert len(full_pull(connector)[0]) == 5 and connector.api_calls == 2
    harness.set_faults(server_error_next=10)
    with pytest.raises(RetriableError, match="HubSpot 502"):
        full_pull(harness.connector(max_attempts=3))


def test_expired_token_is_auth_error(harness: HubSpotHarness) -> None:
    harness.set_faults(expired_token=True)
    connector = harness.connector()
    with pytest.raises(AuthError, match="expired"):
        connector.check()
    assert connector.api_calls == 1


def test_check_and_field_map_overrides(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    harness.connector().check()
    names = {f.name for f in harness.connector().describe_fields()}
    assert {"name", "address3", "crmsync_id"} <= names
    with pytest.raises(ConfigError, match="'vat_number'"):
        harness.connector(field_map={"custom_data.vat": "vat_number"}).check()
    connector = harness.connector(
        field_map={"custom_data.segment": "segment", "phone_number": None}
    )
    connector.check()
    assert "custom_data.segment" in connector.mapped_fields
    assert "phone_number" not in connector.mapped_fields
    cid = hs.create("companies", {"name": "Seg", "segment": "enterprise", "phone": "+1"})
    got = connector.pull_customers_by_ids([cid])[0].fields
    assert got["custom_data.segment"] == "enterprise" and "phone_number" not in got


def test_registry_builds_the_connector(harness: HubSpotHarness) -> None:
    config = ConnectionConfig("c", {"access_token": "t"}, harness.settings())
    assert isinstance(registry.create("hubspot", config), HubSpotConnector)


# -- webhooks -----------------------------------------------------------------------------

EXAMPLE_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
EXAMPLE_BODY = b"{'example_field':'example_value'}"
EXAMPLE_TS = "1693657560000"
EXAMPLE_SIG = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="


def _signed(
    body: bytes, url: str = "https://crmsync.example/hooks/hubspot", **extra: str
) -> WebhookRequest:
    ts = str(int(time.time() * 1000))
    headers = {
        "X-HubSpot-Signature-v3": signature_v3(CLIENT_SECRET, "POST", url, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
        **extra,
    }
    return WebhookRequest("POST", url, headers, body)


def test_webhook_v3_published_example() -> None:
    request = WebhookRequest(
        "POST",
        "https://www.example.com/webhook_uri",
        {"X-HubSpot-Signature-v3": EXAMPLE_SIG, "X-HubSpot-Request-Timestamp": EXAMPLE_TS},
        EXAMPLE_BODY,
    )
    webhooks.verify(request, EXAMPLE_SECRET, now_ms=int(EXAMPLE_TS) + 1000)
    with pytest.raises(WebhookRejected, match="stale"):
        webhooks.verify(request, EXAMPLE_SECRET)  # it is from 2023
    with pytest.raises(WebhookRejected):
        webhooks.verify(request, "another-secret", now_ms=int(EXAMPLE_TS))


def test_webhook_verify_through_the_connector(harness: HubSpotHarness) -> None:
    connector = harness.connector()
    body = b'[{"eventId": 1}]'
    connector.verify_webhook(_signed(body))
    tampered = _signed(body)
    with pytest.raises(WebhookRejected) as err:
        connector.verify_webhook(WebhookRequest("POST", tampered.url, tampered.headers, b"[]"))
    assert err.value.status == 401
    with pytest.raises(WebhookRejected, match="bad"):  # signed for another URL
        connector.verify_webhook(
            WebhookRequest("POST", "https://evil.example/x", tampered.headers, body)
        )
    old = str(int(time.time() * 1000) - 6 * 60 * 1000)
    stale = {
        "X-HubSpot-Signature-v3": signature_v3(CLIENT_SECRET, "POST", tampered.url, body, old),
        "X-HubSpot-Request-Timestamp": old,
    }
    with pytest.raises(WebhookRejected, match="stale"):
        connector.verify_webhook(WebhookRequest("POST", tampered.url, stale, body))
    v2 = {
        "X-HubSpot-Signature": signature_v2(CLIENT_SECRET, "POST", tampered.url, body),
        "X-HubSpot-Signature-Version": "v2",
    }
    legacy = WebhookRequest("POST", tampered.url, v2, body)
    with pytest.raises(WebhookRejected, match="v1/v2"):
        connector.verify_webhook(legacy)
    harness.connector(accept_signature_v1_v2=True).verify_webhook(legacy)


def test_webhook_parse(harness: HubSpotHarness) -> None:
    connector = harness.connector()
    body = json.dumps(
        [
            {
                "eventId": 10,
                "subscriptionType": "company.propertyChange",
                "objectId": 5,
                "occurredAt": 1700000000000,
                "propertyName": "city",
                "propertyValue": "Köln",
                "attemptNumber": 0,
            },
            {
                "eventId": 11,
                "subscriptionType": "company.merge",
                "objectId": 5,
                "primaryObjectId": 5,
                "mergedObjectIds": [6],
                "newObjectId": 5,
            },
            {"eventId": 12, "subscriptionType": "contact.deletion", "objectId": 7},
            {"eventId": 13, "subscriptionType": "company.restore", "objectId": 8},
            {"eventId": 14, "subscriptionType": "company.creation", "objectId": 9},
            {  # a merge since 2024: the merged record is new, and the primary merged into it
                "eventId": 15,
                "subscriptionType": "company.merge",
                "objectId": 20,
                "primaryObjectId": 5,
                "mergedObjectIds": [6],
                "newObjectId": 20,
                "numberOfPropertiesMoved": 2,
            },
        ]
    ).encode()
    events = connector.parse_webhook(body)
    assert [(e.key, e.kind, e.object_type, e.crm_id) for e in events] == [
        ("10", "changed", "customer", "5"),
        ("11", "merged", "customer", "5"),
        ("12", "deleted", "contact", "7"),
        ("13", "restored", "customer", "8"),
        ("14", "created", "customer", "9"),
        ("15", "merged", "customer", "20"),
    ]
    assert events[1].merged_into == "5" and events[1].merged_ids == ("6",)
    assert events[5].merged_into == "20" and events[5].merged_ids == ("5", "6")
    assert events[0].occurred_at is not None and events[0].payload["propertyValue"] == "Köln"
    for bad in (
        b"{",
        b'{"eventId": 1}',
        b'[{"eventId": 1}]',
        b'[{"eventId": 1, "subscriptionType": "company.creation"}]',
        b'[{"eventId": 1, "subscriptionType": "contact.associationChange", "objectId": 1}]',
    ):
        with pytest.raises(WebhookRejected) as err:
            connector.parse_webhook(bad)
        assert err.value.status == 400


def test_webhook_parse_documented_variants(harness: HubSpotHarness) -> None:
    """The generic ``object.*`` form (the object in ``objectTypeId``), association changes
    (``fromObjectId``, no ``objectId``), a GDPR delete; a deal's event in the same batch is
    left out instead of refusing the batch (HubSpot would resend it whole)."""
    body = json.dumps(
        [
            {"eventId": 1, "subscriptionType": "deal.creation", "objectId": 3},
            {"eventId": 2, "subscriptionType": "object.creation", "objectTypeId": "0-2",
             "objectId": 40},
            {"eventId": 3, "subscriptionType": "object.propertyChange", "objectTypeId": "0-1",
             "objectId": 41, "propertyName": "email", "propertyValue": "a@b.example"},
            {"eventId": 4, "subscriptionType": "object.deletion", "objectTypeId": "0-3",
             "objectId": 42},
            {"eventId": 5, "subscriptionType": "contact.associationChange",
             "associationType": "CONTACT_TO_COMPANY", "fromObjectId": 43, "toObjectId": 40,
             "associationRemoved": False, "isPrimaryAssociation": True},
            {"eventId": 6, "subscriptionType": "company.associationChange",
             "associationType": "COMPANY_TO_CONTACT", "fromObjectId": 40, "toObjectId": 43,
             "associationRemoved": False, "isPrimaryAssociation": True},
            {"eventId": 7, "subscriptionType": "contact.privacyDeletion", "objectId": 44},
            {"eventId": 8, "subscriptionType": "object.merge", "objectTypeId": "0-2",
             "objectId": 50, "primaryObjectId": 40, "mergedObjectIds": [45],
             "newObjectId": 50},
        ]
    ).encode()  # fmt: skip
    events = harness.connector().parse_webhook(body)
    assert [(e.key, e.kind, e.object_type, e.crm_id) for e in events] == [
        ("2", "created", "customer", "40"),
        ("3", "changed", "contact", "41"),
        ("5", "changed", "contact", "43"),
        ("6", "changed", "customer", "40"),
        ("7", "deleted", "contact", "44"),
        ("8", "merged", "customer", "50"),
    ]
    assert events[-1].merged_ids == ("40", "45")


def test_sandbox_webhooks_verify_and_parse(harness: HubSpotHarness, hs: HubSpotSandbox) -> None:
    """End to end: the sandbox's signed delivery passes the connector's verify + parse."""
    from tests.sandbox.test_hubspot_sandbox import _Receiver

    receiver = _Receiver()
    try:
        hs.configure_webhooks(url=receiver.url, enabled=True, client_secret=CLIENT_SECRET)
        cid = harness.create({"customer_name": "Hooked"})
        assert hs.flush_webhooks(10)
    finally:
        hs.configure_webhooks(enabled=False, url=None)
        receiver.close()
    connector = harness.connector()
    headers, body = receiver.received[0]
    connector.verify_webhook(WebhookRequest("POST", receiver.url, headers, body))
    events = connector.parse_webhook(body)
    assert events[0].kind == "created" and events[0].crm_id == cid


def test_sandbox_generic_and_association_webhooks_parse(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """End to end: the sandbox's generic-form events and association changes (subscribed
    by name), signed and delivered, pass the connector's verify + parse."""
    from tests.sandbox.test_hubspot_sandbox import _Receiver

    receiver = _Receiver()
    subscriptions = ["object.creation", "contact.associationChange", "company.associationChange"]
    try:
        hs.configure_webhooks(
            url=receiver.url,
            enabled=True,
            client_secret=CLIENT_SECRET,
            generic=True,
            subscriptions=subscriptions,
        )
        cid = hs.create("companies", {"name": "Generic Co"})
        person = hs.create("contacts", {"firstname": "Ada", "email": "ada@generic.example"})
        hs.associate(person, cid)
        assert hs.flush_webhooks(10)
    finally:
        hs.configure_webhooks(enabled=False, url=None, generic=False, subscriptions=[])
        receiver.close()
    connector = harness.connector()
    events = []
    for headers, body in receiver.received:
        connector.verify_webhook(WebhookRequest("POST", receiver.url, headers, body))
        events += connector.parse_webhook(body)
    assert {(e.kind, e.object_type, e.crm_id) for e in events} == {
        ("created", "customer", cid),
        ("created", "contact", person),
        ("changed", "contact", person),
        ("changed", "customer", cid),
    }


def test_the_default_map_leaves_out_line3_in_a_portal_without_address3(
    harness: HubSpotHarness,
) -> None:
    harness.hs.set_address3(False)  # as a new portal is
    connector = harness.connector()
    unavailable = connector.unavailable_fields()
    assert list(unavailable) == ["address.line3"]
    assert "custom company property" in unavailable["address.line3"]
    with pytest.raises(ConfigError, match=r"address\.line3"):
        connector.check()
    harness.connector(field_map={"address.line3": None}).check()
    explicit = harness.connector(field_map={"address.line3": "address3"})
    with pytest.raises(ConfigError, match=r"--map address\.line3="):
        explicit.unavailable_fields()
    harness.hs.set_address3(True)
    assert harness.connector().unavailable_fields() == {}


def test_a_missing_external_id_property_is_an_error_with_how_to_fix_it(
    harness: HubSpotHarness,
) -> None:
    with pytest.raises(ConfigError, match=r"'nope' does not exist.*unique values"):
        harness.connector(external_id_property="nope").unavailable_fields()


def test_taken_emails_refused_with_their_whole_batch_name_no_one_elses_contact(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """A server that refuses a whole batch names the first taken e-mail's contact; when
    both halves of a split are refused, each push says it was refused with its batch rather
    than carrying that one contact's "Existing ID" as its own."""
    hs.set_faults(multi_status=False)
    (company,) = harness.seed(1)
    taken = {i: hs.create("contacts", {"email": f"t{i}@x.io"}) for i in range(4)}
    pushes = [ContactPush(f"c{i}", None, company, {"email": f"t{i}@x.io"}) for i in range(4)]
    results = harness.connector().push_contacts(pushes)  # 4, then 2 + 2: all refused
    for result in results:
        assert result.error is not None and result.error.kind == "duplicate"
        message = result.error.message
        assert message.startswith("refused with a batch of 2 (HubSpot named one of them)")
        assert any(f"Existing ID: {taken[i]}" in message for i in range(4))


def test_find_contacts_by_email_and_associate_an_adopted_one(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """find_contacts: one batch read by idProperty=email per 100 (any case; ones no contact
    has are left out), each contact with its primary company. An adopting update associates
    the contact: as its primary company, or beside the one it keeps; with no fields, only
    the association is written (one call per 100)."""
    first, second = harness.seed(2)
    nameless = hs.create("contacts", {"email": "ann@x.io"})
    placed = hs.create("contacts", {"email": "bo@x.io", "firstname": "Bo", "lastname": "Chen"})
    hs.associate(placed, first)
    emails = ["ANN@x.io", "bo@x.io", "nobody@x.io", *(f"n{i}@x.io" for i in range(120))]
    connector = harness.connector()
    found = {c.email: c for c in connector.find_contacts(emails)}
    assert connector.api_calls == 2
    assert set(found) == {"ann@x.io", "bo@x.io"}
    assert found["ann@x.io"].id == nameless and found["ann@x.io"].customer_id is None
    assert found["bo@x.io"].customer_id == first and found["bo@x.io"].name == "Bo Chen"

    connector = harness.connector()
    pushes = [
        ContactPush("ca", nameless, second, {"name": "Ann Lee"}, associate="primary"),
        ContactPush("cb", placed, second, {}, associate="other"),
    ]
    results = {r.billing_id: r for r in connector.push_contacts(pushes)}
    assert results["ca"].ok and results["ca"].crm_id == nameless
    assert results["cb"].ok and results["cb"].crm_id == placed
    assert connector.api_calls == 2  # one update, one association batch
    assert hs.read(nameless, "contacts")["associations"] == [second]
    assert hs.read(nameless, "contacts")["properties"]["lastname"] == "Lee"
    assert hs.read(placed, "contacts")["associations"] == [first, second]


def test_a_connector_builds_the_sdk_apis_only_as_it_uses_them(
    harness: HubSpotHarness, hs: HubSpotSandbox
) -> None:
    """The web server opens a connector for each webhook delivery only to check its
    signature: that builds none of the SDK's API clients (each reads the SDK's package
    metadata and makes a connection pool; under a burst of deliveries on many threads the
    metadata read failed and a delivery answered 500). A pull builds what it uses, once."""
    connector = harness.connector()
    body = json.dumps(
        [{"eventId": 1, "subscriptionType": "company.propertyChange", "objectId": 5}]
    ).encode()
    connector.verify_webhook(_signed(body))
    assert [e.crm_id for e in connector.parse_webhook(body)] == ["5"]
    assert connector.apis.built() == []
    harness.seed(3)
    assert len([r for page in connector.pull_customers(None, full=True) for r in page.records])
    assert connector.apis.built() == ["companies"]
    first = connector.apis.companies
    list(connector.pull_customers(None, full=True))
    assert connector.apis.companies is first
