"""The HubSpot emulator against CRM_API_NOTES, through the real hubspot-api-client 12.

The SDK returns ``None`` for an unexpected success status (trap 3), so every call below
checks that it got a model back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import hubspot
import pytest
from hubspot.crm.companies import ApiException
from hubspot.crm.companies.exceptions import NotFoundException
from urllib3.util.retry import Retry

from connectors.base import WebhookRequest
from connectors.hubspot import webhooks
from sandbox.hubspot import HubSpotSandbox
from sandbox.server import Sandbox, SandboxOptions

TOKEN = "test-token"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture
def hs(sandbox: Sandbox) -> HubSpotSandbox:
    sandbox.hubspot.reset()
    return sandbox.hubspot


@pytest.fixture
def client(sandbox: Sandbox, hs: HubSpotSandbox) -> Any:
    # no SDK retries: a fault must surface as one answer
    return hubspot.Client.create(access_token=TOKEN, host=sandbox.hubspot_url, retry=Retry(False))


def test_crud_gets_models_back(client: Any, hs: HubSpotSandbox) -> None:
    api = client.crm.companies.basic_api
    created = api.create({"properties": {"name": "Zoë Müller GmbH", "city": "Köln"}})
    assert created is not None and created.properties["name"] == "Zoë Müller GmbH"
    got = api.get_by_id(created.id, properties=["name", "city", "address2"])
    assert got is not None and got.properties["city"] == "Köln"
    assert got.properties["address2"] is None  # unset property: null
    updated = api.update(created.id, {"properties": {"city": "", "phone": "+49 1"}})
    assert updated is not None
    assert api.get_by_id(created.id, properties=["city"]).properties["city"] == ""
    page = api.get_page(limit=10, properties=["name"], archived=False)
    assert page is not None and [r.id for r in page.results] == [created.id]
    assert api.archive(created.id) is None  # 204
    assert api.get_page(limit=10).results == []
    archived = api.get_page(limit=10, archived=True)
    assert archived.results[0].id == created.id and archived.results[0].archived_at is not None
    with pytest.raises(NotFoundException):
        api.get_by_id(created.id)


def test_hang_after_answers_some_then_stalls_until_lifted(client: Any, hs: HubSpotSandbox) -> None:
    cid = hs.create("companies", {"name": "A"})
    api = client.crm.companies.basic_api
    hs.set_faults(hang_after=1, hang_seconds=600)
    assert api.get_by_id(cid).id == cid
    answered: list[str] = []
    caller = threading.Thread(target=lambda: answered.append(api.get_by_id(cid).id))
    caller.start()
    deadline = time.monotonic() + 30
    while hs.fault_counts().get("hang", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hs.fault_counts().get("hang") == 1
    assert caller.is_alive() and not answered  # it waits for the fault to be lifted, not for time
    hs.set_faults(hang_after=None)
    caller.join(timeout=30)
    assert answered == [cid]  # answered late, as a slow portal does


def test_get_by_unique_property(client: Any, hs: HubSpotSandbox) -> None:
    cid = hs.create("companies", {"name": "A", "crmsync_id": "bill-1"})
    got = client.crm.companies.basic_api.get_by_id("bill-1", id_property="crmsync_id")
    assert got.id == cid


def test_list_pages_by_after(client: Any, hs: HubSpotSandbox) -> None:
    ids = hs.seed_companies(250)
    api = client.crm.companies.basic_api
    seen, after, calls = [], None, 0
    while True:
        page = api.get_page(limit=100, after=after, properties=["name", "address"])
        calls += 1
        seen += [r.id for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == ids and calls == 3
    with pytest.raises(ApiException) as err:
        api.get_page(limit=101)
    assert err.value.status == 400


def test_seed_splits_streets_and_links_contacts(client: Any, hs: HubSpotSandbox) -> None:
    hs.set_address3(True)  # a portal where someone created it
    ids = hs.seed_companies(40)
    records = [hs.read(i) for i in ids]
    assert any(r["properties"].get("address3") for r in records)  # some 3-line streets
    assert all("\n" not in (r["properties"].get("address") or "") for r in records)
    page = client.crm.contacts.basic_api.get_page(limit=5, associations=["companies"])
    contact = page.results[0]
    company_id = contact.associations["companies"].results[0].id
    assert company_id in ids


def test_batch_statuses_and_207(client: Any, hs: HubSpotSandbox) -> None:
    batch = client.crm.companies.batch_api
    created = batch.create({"inputs": [{"properties": {"name": f"C{i}"}} for i in range(3)]})
    assert type(created).__name__ == "BatchResponseSimplePublicObject"
    ids = [r.id for r in created.results]
    read = batch.read({"inputs": [{"id": i} for i in [*ids, "999"]], "properties": ["name"]})
    assert type(read).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert read.num_errors == 1 and read.errors[0].context["ids"] == ["999"]
    assert read.errors[0].category == "OBJECT_NOT_FOUND"
    updated = batch.update({"inputs": [{"id": i, "properties": {"city": "Lyon"}} for i in ids]})
    assert type(updated).__name__ == "BatchResponseSimplePublicObject"
    hs.set_faults(record_errors={ids[1]: "validation"})
    partial = batch.update({"inputs": [{"id": i, "properties": {"city": "Paris"}} for i in ids]})
    assert partial.num_errors == 1 and partial.errors[0].context["ids"] == [ids[1]]
    assert "not valid" in partial.errors[0].message
    upsert = batch.upsert(
        {"inputs": [{"idProperty": "crmsync_id", "id": "b-1", "properties": {"name": "U"}}]}
    )
    assert upsert.results[0].new is True
    again = batch.upsert(
        {"inputs": [{"idProperty": "crmsync_id", "id": "b-1", "properties": {"name": "U2"}}]}
    )
    assert again.results[0].new is False and again.results[0].id == upsert.results[0].id
    assert batch.archive({"inputs": [{"id": ids[0]}]}) is None


def test_batch_limits_and_error_shape(client: Any, hs: HubSpotSandbox) -> None:
    with pytest.raises(ApiException) as err:
        client.crm.companies.batch_api.read({"inputs": [{"id": str(i)} for i in range(101)]})
    body = json.loads(err.value.body)
    assert err.value.status == 400
    assert {"status", "message", "correlationId", "category", "errors"} <= set(body)
    with pytest.raises(ApiException) as err:
        client.crm.companies.basic_api.create({"properties": {"nope": "x"}})
    assert json.loads(err.value.body)["category"] == "VALIDATION_ERROR"


def test_search_filters_sorts_and_cap(client: Any, hs: HubSpotSandbox) -> None:
    hs.set_faults(search_per_second=None)  # many searches at once (the limit: below)
    a = hs.create("companies", {"name": "Acme Robotics", "city": "Berlin"})
    b = hs.create("companies", {"name": "Globex Foods", "city": "Paris"})
    c = hs.create("companies", {"name": "Acme Foods"})
    search = client.crm.companies.search_api

    def ids(filters: list[dict[str, Any]], **extra: Any) -> list[str]:
        body = {"filterGroups": [{"filters": filters}], "limit": 10, **extra}
        result = search.do_search(body)
        assert result is not None
        return [r.id for r in result.results]

    assert ids([{"propertyName": "name", "operator": "CONTAINS_TOKEN", "value": "acme"}]) == [a, c]
    assert ids([{"propertyName": "city", "operator": "IN", "values": ["Paris", "Rome"]}]) == [b]
    assert ids([{"propertyName": "city", "operator": "NOT_HAS_PROPERTY"}]) == [c]
    assert ids(
        [{"propertyName": "hs_object_id", "operator": "BETWEEN", "value": a, "highValue": b}]
    ) == [a, b]
    desc = ids([], sorts=[{"propertyName": "name", "direction": "DESCENDING"}])
    assert desc == [b, a, c]
    hs.archive(c)
    assert ids([{"propertyName": "name", "operator": "CONTAINS_TOKEN", "value": "acme"}]) == [a]
    with pytest.raises(ApiException) as err:
        search.do_search({"filterGroups": [], "after": "10000", "limit": 10})
    assert err.value.status == 400
    with pytest.raises(ApiException):
        search.do_search({"filterGroups": [{"filters": []}] * 6})
    # at most six filters in a group and 18 in all (the search guide)
    has = {"propertyName": "name", "operator": "HAS_PROPERTY"}
    assert search.do_search({"filterGroups": [{"filters": [has] * 6}] * 3}) is not None
    for groups in ([{"filters": [has] * 7}], [{"filters": [has] * 5}] * 4):
        with pytest.raises(ApiException) as many:
            search.do_search({"filterGroups": groups})
        assert many.value.status == 400
    with pytest.raises(ApiException):
        search.do_search({"limit": 201})


def test_search_on_modification_stamp_is_indexed_and_paged(client: Any, hs: HubSpotSandbox) -> None:
    ids = hs.seed_companies(30)
    hs.touch(ids[10:20], ms=1_700_000_000_000)
    body = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "hs_lastmodifieddate",
                        "operator": "EQ",
                        "value": "1700000000000",
                    },
                    {"propertyName": "hs_object_id", "operator": "GT", "value": ids[14]},
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "limit": 3,
    }
    first = client.crm.companies.search_api.do_search(body)
    assert first.total == 5 and [r.id for r in first.results] == ids[15:18]
    second = client.crm.companies.search_api.do_search({**body, "after": first.paging.next.after})
    assert [r.id for r in second.results] == ids[18:20] and second.paging is None
    assert second.results[0].properties["hs_lastmodifieddate"] == "2023-11-14T22:13:20.000Z"


def test_a_write_reaches_search_late_under_an_index_delay(client: Any, hs: HubSpotSandbox) -> None:
    """``search_index_delay_seconds``: a write made while it is set is left out of search
    until the delay has passed (HubSpot's search guide: new or updated objects may take a
    few moments to appear in search results); reads by id and the list have it."""
    hs.set_faults(search_per_second=None)
    early, other = hs.seed_companies(2)
    search = client.crm.companies.search_api
    since = {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}
    by_stamp = {
        "filterGroups": [{"filters": [since]}],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
    }
    by_name = {"filterGroups": [{"filters": [
        {"propertyName": "name", "operator": "CONTAINS_TOKEN", "value": "Later"}
    ]}]}  # fmt: skip
    hs.set_faults(search_index_delay_seconds=1.0)
    hs.edit(early, {"name": "Later Indexed"})
    made = hs.create("companies", {"name": "Later Created"})
    visible = time.monotonic() + 1.0
    hs.set_faults(search_index_delay_seconds=0)
    hs.edit(other, {"city": "Bergen"})  # written after: searchable at once
    found = search.do_search(by_stamp)
    assert [r.id for r in found.results] == [other] and found.total == 1
    assert search.do_search(by_name).total == 0
    # the record itself is there at once for a read by id, a batch read and the list
    basic = client.crm.companies.basic_api
    assert basic.get_by_id(made, properties=["name"]).properties["name"] == "Later Created"
    batch = client.crm.companies.batch_api.read(
        {"inputs": [{"id": early}], "properties": ["name"], "propertiesWithHistory": []}
    )
    assert batch.results[0].properties["name"] == "Later Indexed"
    assert {r.id for r in basic.get_page(limit=10).results} == {early, other, made}
    time.sleep(max(0.0, visible - time.monotonic()) + 0.05)
    found = search.do_search(by_stamp)
    assert sorted(r.id for r in found.results) == sorted([early, other, made])
    assert search.do_search(by_name).total == 2


def test_rate_limit_headers_and_faults(client: Any, hs: HubSpotSandbox) -> None:
    api = client.crm.companies.basic_api
    _, status, headers = api.get_page_with_http_info(limit=1)
    assert status == 200
    for name in (
        "Max",
        "Remaining",
        "Interval-Milliseconds",
        "Secondly",
        "Secondly-Remaining",
        "Daily",
        "Daily-Remaining",
    ):
        assert f"X-HubSpot-RateLimit-{name}" in headers
    hs.set_faults(rate_limit_next=1, retry_after=2)
    with pytest.raises(ApiException) as err:
        api.get_page(limit=1)
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "2"
    assert err.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert json.loads(err.value.body)["category"] == "RATE_LIMITS"
    hs.set_faults(server_error_next=1, server_error_status=503)
    with pytest.raises(ApiException) as err:
        api.get_page(limit=1)
    assert err.value.status == 503
    hs.set_faults(expired_token=True)
    with pytest.raises(ApiException) as err:
        api.get_page(limit=1)
    assert err.value.status == 401
    hs.clear_faults()
    assert api.get_page(limit=1) is not None
    assert hs.request_counts()["GET /crm/v3/objects/{object_type}"] == 5


def _refusal(call: Any) -> tuple[str, Any]:
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == 429
    body = json.loads(err.value.body)
    assert body["errorType"] == "RATE_LIMIT" and body["status"] == "error"
    assert "Retry-After" not in err.value.headers  # HubSpot often sends none
    return str(body["policyName"]), err.value.headers


def test_documented_limits_are_enforced_by_default(client: Any, hs: HubSpotSandbox) -> None:
    """Search: 5 a second, answered without rate-limit headers (SECONDLY); the burst: 190
    per rolling window (TEN_SECONDLY_ROLLING); the day: DAILY until the portal's midnight,
    which the usage endpoint names."""
    search = client.crm.companies.search_api
    body = {"filterGroups": [], "limit": 1}
    answers = []
    for _ in range(5):
        answers.append(search.do_search_with_http_info(body)[2])
    assert all(not any(k.startswith("X-HubSpot-RateLimit") for k in h) for h in answers)
    policy, headers = _refusal(lambda: search.do_search(body))
    assert policy == "SECONDLY" and not any(k.startswith("X-HubSpot-RateLimit") for k in headers)

    api = client.crm.companies.basic_api
    hs.set_faults(rate_limit_interval_ms=60_000)  # a window the test cannot outlast
    for _ in range(190 - 5):  # the five searches count too
        api.get_page(limit=1)
    policy, headers = _refusal(lambda: api.get_page(limit=1))
    assert policy == "TEN_SECONDLY_ROLLING" and headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert headers["X-HubSpot-RateLimit-Max"] == "190"

    hs.set_faults(rate_limit_interval_ms=10, daily_limit=hs.api.limits.used_today() + 2)
    api.get_page(limit=1)
    usage = httpx.get(
        f"{hs.public_url}/account-info/v3/api-usage/daily/private-apps",
        headers={"Authorization": f"Bearer {TOKEN}"},
        trust_env=False,
    ).json()["results"][0]
    assert usage["currentUsage"] == usage["usageLimit"] and usage["resetsAt"].endswith("Z")
    policy, headers = _refusal(lambda: api.get_page(limit=1))
    assert policy == "DAILY" and headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    hs.new_day()
    hs.set_faults(daily_limit=None)
    assert api.get_page(limit=1) is not None


def test_merge_makes_a_new_record_the_old_ids_resolve_to(client: Any, hs: HubSpotSandbox) -> None:
    primary = hs.create("companies", {"name": "Primary", "crmsync_id": "bill-1"})
    other = hs.create("companies", {"name": "Other", "city": "Oslo", "crmsync_id": "bill-2"})
    contact = hs.create("contacts", {"firstname": "Ada", "email": "ada@x.example"})
    hs.associate(contact, other)
    api = client.crm.companies.basic_api
    merged = api.merge({"objectIdToMerge": other, "primaryObjectId": primary})
    assert merged is not None and merged.id not in (primary, other)
    for old in (primary, other):  # GET by either old id answers the new record
        got = api.get_by_id(old, properties=["hs_merged_object_ids", "city", "name"])
        assert got.id == merged.id
        assert set(got.properties["hs_merged_object_ids"].split(";")) == {primary, other}
        assert got.properties["name"] == "Primary"  # the primary's values win
        assert got.properties["city"] == "Oslo"  # empty ones are filled from the other
    read = client.crm.companies.batch_api.read(
        {"inputs": [{"id": primary}], "properties": ["name"]}
    )
    assert [r.id for r in read.results] == [merged.id]
    patched = api.update(primary, {"properties": {"phone": "+47 1"}})
    assert patched.id == merged.id and hs.read(merged.id)["properties"]["phone"] == "+47 1"
    # neither old id is listed, archived or not
    assert set(hs.ids()) == {merged.id}
    assert hs.ids(archived=True) == []
    assert hs.read(merged.id)["properties"]["crmsync_id"] == "bill-1"
    assert hs.read(contact, "contacts")["associations"] == [merged.id]


def test_merge_keeping_the_primary_id_archives_the_other(client: Any, hs: HubSpotSandbox) -> None:
    hs.set_merges_keep_primary_id(True)  # HubSpot's behaviour before 2024
    try:
        winner = hs.create("companies", {"name": "Winner"})
        loser = hs.create("companies", {"name": "Loser", "city": "Oslo"})
        contact = hs.create("contacts", {"firstname": "Ada", "email": "ada@x.example"})
        hs.associate(contact, loser)
        merged = client.crm.companies.basic_api.merge(
            {"objectIdToMerge": loser, "primaryObjectId": winner}
        )
        assert merged is not None and merged.id == winner
        got = client.crm.companies.basic_api.get_by_id(
            loser, properties=["hs_merged_object_ids", "city"]
        )
        assert got.id == winner and got.properties["hs_merged_object_ids"] == loser
        assert got.properties["city"] == "Oslo"  # empty fields filled from the loser
        assert hs.read(loser)["archived"] and hs.read(loser)["mergedInto"] == winner
        assert hs.read(contact, "contacts")["associations"] == [winner]
    finally:
        hs.set_merges_keep_primary_id(False)


def test_associations_v4_and_properties(client: Any, hs: HubSpotSandbox) -> None:
    company = hs.create("companies", {"name": "A"})
    contact = hs.create("contacts", {"firstname": "B"})
    v4 = client.crm.associations.v4
    assert v4.basic_api.create_default("contacts", contact, "companies", company) is not None
    page = v4.basic_api.get_page("contacts", contact, "companies")
    assert [str(r.to_object_id) for r in page.results] == [company]
    read = v4.batch_api.get_page("contacts", "companies", {"inputs": [{"id": contact}]})
    assert str(read.results[0].to[0].to_object_id) == company
    props = client.crm.properties.core_api.get_all("companies")
    names = {p.name for p in props.results}
    assert {"name", "address", "address2", "billing_email", "crmsync_id"} <= names
    assert client.crm.properties.core_api.get_by_name("companies", "crmsync_id").has_unique_value


def test_a_new_portal_has_no_address3_until_someone_creates_it(
    client: Any, sandbox: Sandbox, hs: HubSpotSandbox
) -> None:
    def names() -> set[str]:
        return {p.name for p in client.crm.properties.core_api.get_all("companies").results}

    assert "address3" not in names()  # HubSpot has no third address line by default
    api = client.crm.companies.basic_api
    with pytest.raises(ApiException) as refused:
        api.create({"properties": {"name": "Three Lines Ltd", "address3": "Floor 3"}})
    assert refused.value.status == 400 and b"PROPERTY_DOESNT_EXIST" in refused.value.body.encode()
    (seeded,) = hs.seed_companies(1)
    assert "address3" not in hs.read(seeded)["properties"]
    with httpx.Client() as http:
        answer = http.put(f"{sandbox.hubspot_url}/_sandbox/settings", json={"address3": True})
    assert answer.json()["address3"] is True and "address3" in names()
    created = api.create({"properties": {"name": "Three Lines Ltd", "address3": "Floor 3"}})
    assert api.get_by_id(created.id, properties=["address3"]).properties["address3"] == "Floor 3"
    hs.reset()  # as the sandbox was made: without it
    assert "address3" not in names()


def test_control_api_over_http(sandbox: Sandbox, hs: HubSpotSandbox) -> None:
    base = f"{sandbox.hubspot_url}/_sandbox"
    with httpx.Client() as http:
        ids = http.post(f"{base}/seed", json={"count": 3}).json()["ids"]
        assert len(ids) == 3
        http.patch(f"{base}/objects/companies/{ids[0]}", json={"properties": {"city": "Łódź"}})
        assert http.get(f"{base}/objects/companies/{ids[0]}").json()["properties"]["city"] == "Łódź"
        http.request("DELETE", f"{base}/objects/companies/{ids[1]}")
        http.post(f"{base}/objects/companies/{ids[1]}/restore")
        survivor = http.post(
            f"{base}/objects/companies/merge", json={"winner": ids[0], "loser": ids[2]}
        )
        assert survivor.json()["id"] not in ids  # a merged record gets a new id
        assert http.post(f"{base}/objects/companies/touch", json={"ms": 5}).json()["touched"] == 2
        assert http.put(f"{base}/settings", json={"merge_keeps_primary_id": True}).json() == {
            "merge_keeps_primary_id": True,
            "address3": False,
        }
        assert hs.portal.merge_keeps_primary_id
        hs.set_merges_keep_primary_id(False)
        http.put(f"{base}/faults", json={"rate_limit_next": 1})
        assert http.get(f"{base}/faults").json()["rate_limit_next"] == 1
        http.request("DELETE", f"{base}/faults")
        assert http.get(f"{base}/requests").json()["total"] == 0  # control calls are not counted


class _Receiver:
    """A webhook endpoint that fails the first ``fail`` deliveries."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                status = 500 if outer.fail > 0 else 204
                outer.fail -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hubspot?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_signed_v3_batched_and_retried(hs: HubSpotSandbox) -> None:
    receiver = _Receiver(fail=1)
    try:
        hs.configure_webhooks(
            url=receiver.url, client_secret="s3cret", enabled=True, retry_delay=0.01
        )
        cid = hs.create("companies", {"name": "Hooked"})
        hs.edit(cid, {"city": "Kraków"})
        other = hs.create("companies", {"name": "Other"})
        merged = hs.merge(cid, other)
        hs.archive(merged)
        assert hs.flush_webhooks(10)
    finally:
        hs.configure_webhooks(enabled=False, url=None)
        receiver.close()
    attempts = [json.loads(body) for _, body in receiver.received]
    assert attempts[0][0]["attemptNumber"] == 0 and attempts[1][0]["attemptNumber"] == 1
    assert [e["eventId"] for e in attempts[0]] == [e["eventId"] for e in attempts[1]]
    events = [e for batch in attempts[1:] for e in batch]
    types = [e["subscriptionType"] for e in events]
    assert "company.creation" in types and "company.deletion" in types
    change = next(e for e in events if e.get("propertyName") == "city")
    assert change["propertyValue"] == "Kraków" and change["changeSource"] == "CRM_UI"
    merge = next(e for e in events if e["subscriptionType"] == "company.merge")
    assert merge["primaryObjectId"] == int(cid)
    # as documented: the secondary records, and the record the merge made (a new one)
    assert merge["mergedObjectIds"] == [int(other)]
    assert merge["newObjectId"] == merge["objectId"] == int(merged) != int(cid)
    assert merge["numberOfPropertiesMoved"] == 0  # "Other" had nothing "Hooked" lacked
    for headers, body in receiver.received:
        request = WebhookRequest("POST", receiver.url, headers, body)
        webhooks.verify(request, "s3cret")  # v3, fresh: no exception


def test_webhooks_in_the_generic_form_and_association_changes_by_name(
    hs: HubSpotSandbox,
) -> None:
    receiver = _Receiver()
    try:
        hs.configure_webhooks(url=receiver.url, enabled=True, generic=True)
        cid = hs.create("companies", {"name": "Generic"})
        person = hs.create("contacts", {"firstname": "Ada"})
        hs.associate(person, cid)  # not subscribed by name: no event
        assert hs.flush_webhooks(10)
        hs.configure_webhooks(
            subscriptions=["contact.associationChange", "company.associationChange"]
        )
        other = hs.create("companies", {"name": "Second"})
        hs.associate(person, other)
        assert hs.flush_webhooks(10)
    finally:
        hs.configure_webhooks(enabled=False, url=None, generic=False, subscriptions=[])
        receiver.close()
    events = [e for _, body in receiver.received for e in json.loads(body)]
    creations = [e for e in events if e["subscriptionType"] == "object.creation"]
    assert {(e["objectTypeId"], str(e["objectId"])) for e in creations} == {
        ("0-2", cid),
        ("0-1", person),
    }
    changes = [e for e in events if e["subscriptionType"].endswith(".associationChange")]
    assert len(changes) == 2 and all("objectId" not in e for e in changes)
    by_side = {e["associationType"]: e for e in changes}
    contact_side = by_side["CONTACT_TO_COMPANY"]
    assert (str(contact_side["fromObjectId"]), str(contact_side["toObjectId"])) == (person, other)
    assert contact_side["associationRemoved"] is False
    assert contact_side["isPrimaryAssociation"] is False  # the first company stays primary
    assert str(by_side["COMPANY_TO_CONTACT"]["fromObjectId"]) == other


def test_webhook_duplicates_on_purpose(hs: HubSpotSandbox) -> None:
    receiver = _Receiver()
    try:
        hs.configure_webhooks(url=receiver.url, enabled=True, duplicate=True)
        hs.create("companies", {"name": "Twice"})
        assert hs.flush_webhooks(10)
    finally:
        hs.configure_webhooks(enabled=False, url=None, duplicate=False)
        receiver.close()
    bodies = [json.loads(body) for _, body in receiver.received]
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_properties_of_an_ungranted_object_type_are_403_missing_scopes(client: Any) -> None:
    """The portal's token has the companies and contacts scopes only: HubSpot answers a
    call about another standard object type 403 MISSING_SCOPES (an unknown type is 400)."""
    from hubspot.crm.properties import ApiException as PropertiesApiException

    names = {p.name for p in client.crm.properties.core_api.get_all("companies").results}
    assert {"name", "city", "zip"} <= names
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.get_all("deals")
    assert err.value.status == 403
    body = json.loads(err.value.body)
    assert body["category"] == "MISSING_SCOPES"
    assert body["context"]["requiredGranularScopes"] == ["crm.schemas.deals.read"]
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.get_all("widgets")
    assert err.value.status == 400


def test_a_taken_contact_email_refuses_an_api_create_and_its_batch(
    client: Any, hs: HubSpotSandbox
) -> None:
    """E-mail is a contact's identity: an API create of a taken one (any case) answers 409
    CONFLICT "Contact already exists. Existing ID: ..."; a batch create with one is refused
    whole, nothing made; an archived contact's e-mail is free again."""
    from hubspot.crm.contacts import ApiException as ContactsApiException

    old = hs.create("contacts", {"email": "ann@x.io", "firstname": "Ann"})
    with pytest.raises(ContactsApiException) as one:
        client.crm.contacts.basic_api.create({"properties": {"email": "ANN@x.io"}})
    assert one.value.status == 409
    body = json.loads(one.value.body)
    assert body["category"] == "CONFLICT" and body["message"].endswith(f"Existing ID: {old}")
    inputs = [{"properties": {"email": "bo@x.io"}}, {"properties": {"email": "ann@x.io"}}]
    with pytest.raises(ContactsApiException) as batch:
        client.crm.contacts.batch_api.create({"inputs": inputs})
    assert batch.value.status == 409
    assert hs.count("contacts") == 1
    other = hs.create("contacts", {"email": "cy@x.io"})
    with pytest.raises(ContactsApiException) as patched:
        client.crm.contacts.basic_api.update(other, {"properties": {"email": "Ann@X.io"}})
    assert patched.value.status == 409
    updated = client.crm.contacts.batch_api.update(
        {"inputs": [{"id": other, "properties": {"email": "ann@x.io"}}]}
    )
    assert updated.num_errors == 1 and updated.errors[0].category == "CONFLICT"
    assert updated.errors[0].context["ids"] == [other]
    hs.archive(old, object_type="contacts")
    made = client.crm.contacts.batch_api.create({"inputs": inputs})
    assert made is not None and len(made.results) == 2


def test_batch_create_is_multi_status_with_trace_ids_on_every_input(
    client: Any, hs: HubSpotSandbox
) -> None:
    """With a unique objectWriteTraceId on each input a refused input is a 207 error naming
    its trace id and the others are made; without, it refuses the whole batch."""
    from hubspot.crm.contacts import ApiException as ContactsApiException

    hs.create("contacts", {"email": "ann@x.io"})
    batch = client.crm.contacts.batch_api
    bad = [{"properties": {"email": "bo@x.io"}}, {"properties": {"missing": "1"}}]
    with pytest.raises(ContactsApiException) as whole:
        batch.create({"inputs": bad})
    assert whole.value.status == 400 and hs.count("contacts") == 1
    traced = [
        {"objectWriteTraceId": "t1", "properties": {"email": "bo@x.io"}},
        {"objectWriteTraceId": "t2", "properties": {"missing": "1"}},
        {"objectWriteTraceId": "t3", "properties": {"email": "ANN@x.io"}},
    ]
    answer = batch.create({"inputs": traced})
    assert answer is not None and answer.num_errors == 2  # 207: the SDK's ...WithErrors
    assert [r.properties["email"] for r in answer.results] == ["bo@x.io"]
    contexts = {e.context["objectWriteTraceId"][0]: e.category for e in answer.errors}
    assert contexts == {"t2": "VALIDATION_ERROR", "t3": "CONFLICT"}
    assert hs.count("contacts") == 2


def test_a_contacts_primary_company_is_labelled_and_every_association_unlabeled(
    client: Any, hs: HubSpotSandbox
) -> None:
    """The first company a contact is associated with is its primary one (associatedcompanyid):
    v3 lists it as contact_to_company and every association as contact_to_company_unlabeled;
    v4 gives the primary pair typeIds 1 (contact to company) and 2, every pair 279 / 280."""
    first = hs.create("companies", {"name": "First"})
    second = hs.create("companies", {"name": "Second"})
    contact = hs.create("contacts", {"firstname": "B"})
    hs.associate(contact, first)
    hs.associate(contact, second)
    page = client.crm.contacts.basic_api.get_page(limit=10, associations=["companies"])
    listed = {(a.id, a.type) for a in page.results[0].associations["companies"].results}
    assert listed == {
        (first, "contact_to_company"),
        (first, "contact_to_company_unlabeled"),
        (second, "contact_to_company_unlabeled"),
    }
    v4 = client.crm.associations.v4.basic_api
    types = {
        str(r.to_object_id): sorted(t.type_id for t in r.association_types)
        for r in v4.get_page("contacts", contact, "companies").results
    }
    assert types == {first: [1, 279], second: [279]}
    back = {
        str(r.to_object_id): sorted(t.type_id for t in r.association_types)
        for r in v4.get_page("companies", second, "contacts").results
    }
    assert back == {contact: [280]}
    assert hs.read(contact, "contacts")["properties"]["associatedcompanyid"] == first


def test_an_email_hubspot_does_not_take_is_refused(client: Any, hs: HubSpotSandbox) -> None:
    """Contact e-mails are validated: an invalid one is a 400 naming INVALID_EMAIL, for the
    whole batch update; a traced batch create refuses only that input."""
    from hubspot.crm.contacts import ApiException as ContactsApiException

    with pytest.raises(ContactsApiException) as one:
        client.crm.contacts.basic_api.create({"properties": {"email": "ann@x"}})
    assert one.value.status == 400 and "INVALID_EMAIL" in json.loads(one.value.body)["message"]
    good = hs.create("contacts", {"email": "bo@x.io"})
    inputs = [{"id": good, "properties": {"email": "bo at x.io"}}]
    with pytest.raises(ContactsApiException) as whole:
        client.crm.contacts.batch_api.update({"inputs": inputs})
    assert whole.value.status == 400
    traced = [
        {"objectWriteTraceId": "t1", "properties": {"email": "cy@x.io"}},
        {"objectWriteTraceId": "t2", "properties": {"email": "cy@"}},
    ]
    made = client.crm.contacts.batch_api.create({"inputs": traced})
    assert made.num_errors == 1 and made.errors[0].context["objectWriteTraceId"] == ["t2"]


def test_a_taken_emails_existing_id_is_that_emails_contact(client: Any, hs: HubSpotSandbox) -> None:
    """Each 409 names the contact holding that e-mail: per input of a traced batch, for a
    single create, and for a batch refused whole (the first taken input's contact). A
    contact is found by its e-mail (idProperty=email, any case); one no contact has is a
    207 OBJECT_NOT_FOUND."""
    from hubspot.crm.contacts import ApiException as ContactsApiException

    ann = hs.create("contacts", {"email": "ann@x.io"})
    bo = hs.create("contacts", {"email": "bo@x.io"})
    batch = client.crm.contacts.batch_api
    traced = [
        {"objectWriteTraceId": "a", "properties": {"email": "ANN@x.io"}},
        {"objectWriteTraceId": "b", "properties": {"email": "bo@x.io"}},
    ]
    answer = batch.create({"inputs": traced})
    named = {e.context["objectWriteTraceId"][0]: e.message for e in answer.errors}
    assert named == {
        "a": f"Contact already exists. Existing ID: {ann}",
        "b": f"Contact already exists. Existing ID: {bo}",
    }
    with pytest.raises(ContactsApiException) as one:
        client.crm.contacts.basic_api.create({"properties": {"email": "bo@x.io"}})
    assert json.loads(one.value.body)["message"].endswith(f"Existing ID: {bo}")
    untraced = [{"properties": {"email": "new@x.io"}}, {"properties": {"email": "bo@x.io"}}]
    with pytest.raises(ContactsApiException) as whole:
        batch.create({"inputs": untraced})
    assert json.loads(whole.value.body)["message"].endswith(f"Existing ID: {bo}")

    read = batch.read(
        {
            "inputs": [{"id": "Bo@X.io"}, {"id": "ann@x.io"}, {"id": "nobody@x.io"}],
            "idProperty": "email",
            "properties": ["email"],
            "propertiesWithHistory": [],
        }
    )
    assert sorted(r.id for r in read.results) == sorted([ann, bo])
    assert read.num_errors == 1 and read.errors[0].category == "OBJECT_NOT_FOUND"
    got = client.crm.contacts.basic_api.get_by_id("ANN@x.io", id_property="email")
    assert got.id == ann


def test_a_v4_association_of_the_primary_type_makes_the_company_primary(
    client: Any, hs: HubSpotSandbox
) -> None:
    """A contact has one primary company: a v4 create with type 1 makes the company it
    names the primary one, the earlier primary staying associated (unlabeled); type 279
    alone adds an unlabeled association."""
    first, second, third = (hs.create("companies", {"name": n}) for n in ("A", "B", "C"))
    contact = hs.create("contacts", {"email": "cy@x.io"})
    hs.associate(contact, first)

    def associate(company: str, types: list[int]) -> None:
        spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t} for t in types]
        made = client.crm.associations.v4.batch_api.create(
            "contacts",
            "companies",
            {"inputs": [{"from": {"id": contact}, "to": {"id": company}, "types": spec}]},
        )
        assert made is not None

    associate(second, [279])
    assert hs.read(contact, "contacts")["associations"] == [first, second]
    associate(third, [1, 279])
    record = hs.read(contact, "contacts")
    assert record["associations"] == [third, first, second]
    assert record["properties"]["associatedcompanyid"] == third
