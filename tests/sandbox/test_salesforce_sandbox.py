"""The Salesforce sandbox against the facts in CRM_API_NOTES, through the real
simple-salesforce over real HTTPS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sandbox.server import Sandbox
from tests.connectors.harness_salesforce import running_sandbox, track


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _clean(sb: Sandbox) -> None:
    sb.salesforce.reset()
    sb.salesforce.freeze_clock(None)
    sb.salesforce.configure_outbound(url=None)


def session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.verify = str(sb.ca_file)
    s.trust_env = False
    track(s.close)
    return s


@pytest.fixture
def sf(sb: Sandbox) -> Salesforce:
    return Salesforce(
        session_id=sb.salesforce.issue_token(),
        instance_url=sb.salesforce_url,
        session=session(sb),
        version="59.0",
    )


# -- errors as simple-salesforce sees them --------------------------------------------------


def test_each_status_raises_the_documented_exception(sb: Sandbox, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.query("SELECT Nope FROM Account")
    assert bad.value.status == 400
    assert bad.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nope'" in bad.value.content[0]["message"]

    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Account.get("001000000000000AAA")
    assert missing.value.content == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]

    sb.salesforce.set_faults(limit_exceeded_next=1)
    with pytest.raises(SalesforceRefusedRequest) as limited:
        sf.query("SELECT Id FROM Account")
    assert limited.value.status == 403
    assert limited.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"

    sb.salesforce.set_faults(server_errors_next=1, server_error_status=500)
    with pytest.raises(SalesforceGeneralError) as broken:
        sf.query("SELECT Id FROM Account")
    assert broken.value.status == 500

    sb.salesforce.set_faults(server_errors_next=1, server_error_status=503)
    with pytest.raises(SalesforceGeneralError) as unavailable:
        sf.query("SELECT Id FROM Account")
    assert unavailable.value.status == 503

    sb.salesforce.expire_tokens()
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.query("SELECT Id FROM Account")
    assert expired.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_every_api_answer_carries_limit_info(sb: Sandbox, sf: Salesforce) -> None:
    sf.query("SELECT Id FROM Account")
    sf.query("SELECT Id FROM Account")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, 5_000_000)
    sb.salesforce.set_faults(daily_limit=3)
    sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.content[0]["message"] == "TotalRequests Limit exceeded."
    raw = session(sb).get(
        f"{sb.salesforce_url}/services/data/v59.0/limits/",
        headers={"Authorization": f"Bearer {sb.salesforce.issue_token()}"},
    )
    assert raw.headers["Sforce-Limit-Info"] == "api-usage=5/3"


def test_the_allowance_is_a_rolling_window_and_the_concurrent_limit_is_distinct(
    sb: Sandbox, sf: Salesforce
) -> None:
    # REQUEST_LIMIT_EXCEEDED names two limits: concurrent long-running requests (free again
    # at once) and the total over a rolling 24 hours (back as calls age out)
    sb.salesforce.set_faults(limit_exceeded_next=1)
    with pytest.raises(SalesforceRefusedRequest) as busy:
        sf.query("SELECT Id FROM Account")
    assert busy.value.content[0]["message"].startswith("ConcurrentRequests")
    sf.query("SELECT Id FROM Account")
    sb.salesforce.set_faults(usage_window_seconds=1.0, daily_limit=sb.salesforce.api_usage + 1)
    sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as spent:
        sf.query("SELECT Id FROM Account")
    assert spent.value.content[0]["message"] == "TotalRequests Limit exceeded."
    deadline = time.monotonic() + 5
    while sb.salesforce.api_usage and time.monotonic() < deadline:
        time.sleep(0.1)  # the window rolls on: the calls age out
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_request_counts_per_endpoint_exclude_the_control_api(sb: Sandbox, sf: Salesforce) -> None:
    sb.salesforce.seed(3)
    http = session(sb)
    base = f"{sb.salesforce_url}/_sandbox"
    created = http.post(f"{base}/records/Account", json={"fields": {"Name": "Ctl"}}).json()
    sf.query("SELECT Id FROM Account")
    sf.Account.get(created["id"])
    assert http.get(f"{base}/counts").json() == {"query": 1, "get": 1}
    assert http.get(f"{base}/records/Account/{created['id']}").json()["Name"] == "Ctl"
    http.delete(f"{base}/counts")
    assert sb.salesforce.api_requests() == 0


# -- queries --------------------------------------------------------------------------------


def test_paging_follows_root_relative_next_records_url_with_batch_size(
    sb: Sandbox, sf: Salesforce
) -> None:
    sb.salesforce.seed(450)
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query("SELECT Id, Name FROM Account", headers=headers)
    assert first["totalSize"] == 450 and not first["done"] and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["records"][0]["attributes"]["type"] == "Account"
    assert first["records"][0]["attributes"]["url"].startswith("/services/data/v59.0/sobjects/")
    sizes = [len(first["records"])]
    page = first
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
        sizes.append(len(page["records"]))
    assert sizes == [200, 200, 50]
    # default and maximum 2000, minimum 200
    assert len(sf.query("SELECT Id FROM Account")["records"]) == 450
    small = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=10"})
    assert len(small["records"]) == 200
    ids = [r["Id"] for r in sf.query_all_iter("SELECT Id FROM Account", headers=headers)]
    assert len(ids) == len(set(ids)) == 450


def test_query_excludes_deleted_query_all_includes_deleted_and_merged(
    sb: Sandbox, sf: Salesforce
) -> None:
    a, b, c = sb.salesforce.seed(3)
    sb.salesforce.delete("Account", a)
    sb.salesforce.merge("Account", b, c)
    live = sf.query("SELECT Id FROM Account")["records"]
    assert [r["Id"] for r in live] == [b]
    everything = sf.query_all(
        "SELECT Id, IsDeleted, MasterRecordId FROM Account ORDER BY Id", include_deleted=True
    )["records"]
    got = {r["Id"]: (r["IsDeleted"], r["MasterRecordId"]) for r in everything}
    assert got == {a: (True, None), b: (False, None), c: (True, b)}
    merged = sf.query_all(
        "SELECT Id FROM Account WHERE IsDeleted = true AND MasterRecordId != null",
        include_deleted=True,
    )["records"]
    assert [r["Id"] for r in merged] == [c]
    # the loser's contacts moved to the winner
    contacts = sf.query(f"SELECT Id FROM Contact WHERE AccountId = '{c}'")["records"]
    assert contacts == []


def _names(sf: Salesforce, where: str, order: str = "Name") -> list[str]:
    soql = f"SELECT Name FROM Account WHERE {where} ORDER BY {order}"
    return [r["Name"] for r in sf.query(soql)["records"]]


def test_soql_subset_semantics(sb: Sandbox, sf: Salesforce) -> None:
    s = sb.salesforce
    s.create("Account", {"Name": "Alpha", "BillingCity": "Paris", "Phone": "1"})
    s.create("Account", {"Name": "beta", "BillingCity": "Berlin"})
    s.create("Account", {"Name": "Gamma O'Neil", "BillingCity": "paris", "Phone": "3"})
    s.create("Account", {"Name": "Delta_1", "BillingCity": None})
    assert _names(sf, "BillingCity = 'PARIS'") == ["Alpha", "Gamma O'Neil"]
    assert _names(sf, "BillingCity != 'Paris'") == ["beta", "Delta_1"]
    assert _names(sf, "BillingCity = null") == ["Delta_1"]
    assert _names(sf, "Name LIKE 'B%'") == ["beta"]
    assert _names(sf, "Name LIKE '%o\\'n%'") == ["Gamma O'Neil"]
    assert _names(sf, "Name LIKE 'Delta\\_%'") == ["Delta_1"]
    assert _names(sf, "Name IN ('alpha', 'BETA')") == ["Alpha", "beta"]
    assert _names(sf, "Name NOT IN ('alpha', 'BETA')") == ["Delta_1", "Gamma O'Neil"]
    assert _names(sf, "(BillingCity = 'Berlin' OR Phone = '3') AND Name != 'x'") == [
        "beta",
        "Gamma O'Neil",
    ]
    assert _names(sf, "BillingCity = 'Berlin' OR (Phone = '3' AND Name LIKE 'G%')") == [
        "beta",
        "Gamma O'Neil",
    ]
    assert _names(sf, "NOT (BillingCity = 'Paris')") == ["beta", "Delta_1"]
    assert _names(sf, "Name != null", "BillingCity DESC NULLS LAST, Name DESC") == [
        "Gamma O'Neil",
        "Alpha",
        "beta",
        "Delta_1",
    ]
    limited = sf.query("SELECT Name FROM Account ORDER BY Name DESC LIMIT 2")
    assert [r["Name"] for r in limited["records"]] == ["Gamma O'Neil", "Delta_1"]
    with pytest.raises(SalesforceMalformedRequest) as quoted:
        sf.query("SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01T00:00:00Z'")
    assert quoted.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as typo:
        sf.query("SELECT Id FROM Acount")
    assert typo.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_soql_datetime_literals_and_millisecond_stamps(sb: Sandbox, sf: Salesforce) -> None:
    s = sb.salesforce
    s.freeze_clock("2024-03-01T10:00:00.250Z")
    early = s.create("Account", {"Name": "early"})
    s.freeze_clock("2024-03-01T10:00:00.251Z")
    late = s.create("Account", {"Name": "late"})
    record = sf.Account.get(late)
    assert record["SystemModstamp"] == "2024-03-01T10:00:00.251+0000"
    assert record["LastModifiedById"] != record["Id"]
    for literal in (
        "2024-03-01T10:00:00.250Z",
        "2024-03-01T10:00:00.250+0000",
        "2024-03-01T11:00:00.250+01:00",
    ):
        got = sf.query(f"SELECT Id FROM Account WHERE SystemModstamp > {literal}")["records"]
        assert [r["Id"] for r in got] == [late], literal
    both = sf.query("SELECT Id FROM Account WHERE SystemModstamp >= 2024-03-01T10:00:00Z")
    assert {r["Id"] for r in both["records"]} == {early, late}


def test_soql_documented_datetime_formats_only_when_asked(sb: Sandbox, sf: Salesforce) -> None:
    """The WHERE reference lists whole-second dateTime literals only (Z, +hh:mm, -hh:mm);
    ``whole_second_literals`` makes the sandbox refuse a fraction as such a server would."""
    s = sb.salesforce
    s.freeze_clock("2024-03-01T10:00:00.250Z")
    rec = s.create("Account", {"Name": "a"})
    s.set_faults(whole_second_literals=True)
    for literal in (
        "2024-03-01T10:00:00Z",
        "2024-03-01T11:00:00+01:00",
        "2024-03-01T02:00:00-08:00",
    ):
        got = sf.query(f"SELECT Id FROM Account WHERE SystemModstamp >= {literal}")["records"]
        assert [r["Id"] for r in got] == [rec], literal
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query("SELECT Id FROM Account WHERE SystemModstamp >= 2024-03-01T10:00:00.000Z")
    assert refused.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_replication_deleted_and_updated(sb: Sandbox, sf: Salesforce) -> None:
    a, b = sb.salesforce.seed(2)
    sb.salesforce.delete("Account", a)
    now = datetime.now(UTC)
    deleted = sf.Account.deleted(now - timedelta(minutes=5), now + timedelta(minutes=1))
    assert [d["id"] for d in deleted["deletedRecords"]] == [a]
    assert "earliestDateAvailable" in deleted and "latestDateCovered" in deleted
    updated = sf.Account.updated(now - timedelta(minutes=5), now + timedelta(minutes=1))
    assert updated["ids"] == [b]


# -- writes ---------------------------------------------------------------------------------


def test_create_get_update_delete(sb: Sandbox, sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Zürich Müller AG", "BillingStreet": "1 A\n2 B"})
    assert created["success"] and created["id"].startswith("001") and len(created["id"]) == 18
    assert sf.Account.update(created["id"], {"Phone": "", "Name": "Renamed"}) == 204
    record = sf.Account.get(created["id"])
    assert (record["Name"], record["Phone"], record["BillingStreet"]) == (
        "Renamed",
        None,
        "1 A\n2 B",
    )
    with pytest.raises(SalesforceMalformedRequest) as required:
        sf.Account.create({"Phone": "1"})
    assert required.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as readonly:
        sf.Account.update(created["id"], {"SystemModstamp": "2024-01-01T00:00:00Z"})
    assert readonly.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(created["id"])
    assert sb.salesforce.get("Account", created["id"])["IsDeleted"] is True  # type: ignore[index]


def test_upsert_by_external_id_status_codes(sb: Sandbox, sf: Salesforce) -> None:
    value = quote("cust 42/ä", safe="")
    assert sf.Account.upsert(f"crmsync_id__c/{value}", {"Name": "First"}) == 201
    assert sf.Account.upsert(f"crmsync_id__c/{value}", {"Name": "Second"}) == 200
    [record] = sb.salesforce.find("Account", "crmsync_id__c", "cust 42/ä")
    assert record["Name"] == "Second"
    raw = sf.restful(f"sobjects/Account/crmsync_id__c/{value}", method="PATCH", json={"Phone": "9"})
    assert raw == {"id": record["Id"], "success": True, "errors": [], "created": False}
    with pytest.raises(SalesforceMalformedRequest) as dup:
        sf.Account.create({"Name": "Dup", "crmsync_id__c": "CUST 42/Ä"})
    assert dup.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    # Legacy_Id__c is an external id that is not unique: two matches answer 300
    sb.salesforce.create("Account", {"Name": "L1", "Legacy_Id__c": "L"})
    sb.salesforce.create("Account", {"Name": "L2", "Legacy_Id__c": "L"})
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        sf.Account.upsert("Legacy_Id__c/L", {"Name": "L3"})
    assert many.value.status == 300 and len(many.value.content) == 2


def test_collections_answer_per_record_results(sb: Sandbox, sf: Salesforce) -> None:
    a, b = sb.salesforce.seed(2)
    sb.salesforce.delete("Account", b)
    acc = {"type": "Account"}
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": [{"attributes": acc, "Name": "N1"}, {"attributes": acc, "Phone": "1"}]},
    )
    assert created[0]["success"] and created[0]["id"].startswith("001")
    assert created[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Name]",
                "fields": ["Name"],
            }
        ],
    }
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": acc, "id": a, "Name": "U"},
                {"attributes": acc, "id": b, "Name": "U"},
                {"attributes": acc, "id": "001000000000000AAA", "Name": "U"},
            ]
        },
    )
    assert updated[0] == {"id": a, "success": True, "errors": []}
    assert updated[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert updated[2]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    upserted = sf.restful(
        "composite/sobjects/Account/crmsync_id__c",
        method="PATCH",
        json={
            "records": [
                {"attributes": acc, "crmsync_id__c": "c-1", "Name": "C1"},
                {"attributes": acc, "crmsync_id__c": "c-1", "Name": "C1 again"},
            ]
        },
    )
    assert [r["created"] for r in upserted] == [True, False]
    assert upserted[0]["id"] == upserted[1]["id"]
    rolled = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [{"attributes": acc, "Name": "kept?"}, {"attributes": acc}],
        },
    )
    assert [r["success"] for r in rolled] == [False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sb.salesforce.find("Account", "Name", "kept?") == []
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": [{"attributes": acc, "Name": str(i)} for i in range(201)]},
        )
    assert too_many.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_injected_record_errors(sb: Sandbox, sf: Salesforce) -> None:
    [a] = sb.salesforce.seed(1)
    sb.salesforce.set_faults(
        record_errors={
            a: {"code": "UNABLE_TO_LOCK_ROW", "times": 1},
            "Invalid Co": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        }
    )
    acc = {"type": "Account"}
    body = {"records": [{"attributes": acc, "id": a, "Phone": "1"}]}
    first = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert first[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    second = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert second[0]["success"]
    with pytest.raises(SalesforceMalformedRequest) as invalid:
        sf.Account.create({"Name": "Invalid Co"})
    assert invalid.value.content[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"


def test_describe_lists_fields(sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
    assert fields["crmsync_id__c"]["externalId"] and fields["crmsync_id__c"]["unique"]
    assert fields["BillingStreet"]["type"] == "textarea"
    assert not fields["SystemModstamp"]["updateable"]


def test_billing_address_is_a_read_only_compound_of_its_parts(sb: Sandbox, sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
    compound = fields["BillingAddress"]
    assert compound["type"] == "address"
    assert not compound["createable"] and not compound["updateable"]
    assert fields["BillingStreet"]["updateable"] and fields["BillingPostalCode"]["updateable"]
    rec = sf.Account.create({"Name": "A", "BillingStreet": "1 Main St", "BillingCity": "Oslo"})
    got = sf.query(f"SELECT BillingAddress, ShippingAddress FROM Account WHERE Id = '{rec['id']}'")
    address = got["records"][0]["BillingAddress"]
    assert (address["street"], address["city"], address["postalCode"]) == (
        "1 Main St",
        "Oslo",
        None,
    )
    assert got["records"][0]["ShippingAddress"] is None
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Account.update(rec["id"], {"BillingAddress": {"city": "Bergen"}})
    assert refused.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Id FROM Account WHERE BillingAddress = null")


def test_state_and_country_codes_only_with_the_picklists_on(sb: Sandbox, sf: Salesforce) -> None:
    """Billing/ShippingStateCode and ...CountryCode exist only where State and Country/
    Territory Picklists are on (the sandbox's default); off, they leave the describe, the
    records and the compound address, and a query naming one is refused."""
    (on,) = sb.salesforce.seed(1)
    assert (
        "BillingCountryCode"
        in sf.query(f"SELECT BillingCountryCode FROM Account WHERE Id = '{on}'")["records"][0]
    )
    sb.salesforce.set_state_country_picklists(False)
    try:
        names = {f["name"] for f in sf.Account.describe()["fields"]}
        assert not names & {"BillingStateCode", "BillingCountryCode", "ShippingCountryCode"}
        assert "BillingCountry" in names
        (off,) = sb.salesforce.seed(1)
        address = sf.query(f"SELECT BillingAddress FROM Account WHERE Id = '{off}'")["records"][0]
        assert (
            address["BillingAddress"]["country"] and "countryCode" not in address["BillingAddress"]
        )
        with pytest.raises(SalesforceMalformedRequest) as refused:
            sf.query("SELECT BillingCountryCode FROM Account")
        assert refused.value.content[0]["errorCode"] == "INVALID_FIELD"
    finally:
        sb.salesforce.set_state_country_picklists(True)


def test_a_new_org_has_no_currency_iso_code_until_multi_currency_is_on(
    sb: Sandbox, sf: Salesforce
) -> None:
    def names() -> set[str]:
        return {f["name"] for f in sf.Account.describe()["fields"]}

    assert "CurrencyIsoCode" not in names()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query("SELECT Id, CurrencyIsoCode FROM Account")
    assert refused.value.content[0]["errorCode"] == "INVALID_FIELD"
    (seeded,) = sb.salesforce.seed(1)
    assert "CurrencyIsoCode" not in (sb.salesforce.get("Account", seeded) or {})
    answer = session(sb).put(
        f"{sb.salesforce_url}/_sandbox/settings", json={"multi_currency": True}
    )
    assert answer.status_code == 200 and "CurrencyIsoCode" in names()
    created = sf.Account.create({"Name": "Euro AG", "CurrencyIsoCode": "EUR"})
    assert sf.Account.get(created["id"])["CurrencyIsoCode"] == "EUR"
    sb.salesforce.reset()  # as the sandbox was made: single currency
    assert "CurrencyIsoCode" not in names()


# -- OAuth and faults -------------------------------------------------------------------------


def test_oauth_grants_and_expiry(sb: Sandbox) -> None:
    http = session(sb)
    url = f"{sb.salesforce_url}/services/oauth2/token"
    s = sb.salesforce
    bad = http.post(url, data={"grant_type": "client_credentials", "client_id": "x"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    good = http.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
        },
    ).json()
    assert good["instance_url"] == sb.salesforce_url and good["token_type"] == "Bearer"
    sf = Salesforce(
        session_id=good["access_token"], instance_url=good["instance_url"], session=http
    )
    sf.query("SELECT Id FROM Account")
    s.set_faults(expire_tokens=True)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account")
    refreshed = http.post(
        url, data={"grant_type": "refresh_token", "refresh_token": "sandbox-refresh-token"}
    ).json()
    sf2 = Salesforce(
        session_id=refreshed["access_token"], instance_url=sb.salesforce_url, session=http
    )
    assert sf2.query("SELECT Id FROM Account")["totalSize"] == 0
    wrong = http.post(url, data={"grant_type": "refresh_token", "refresh_token": "nope"})
    assert wrong.json()["error"] == "invalid_grant"
    assert s.request_counts()["oauth_token"] == 4


def test_hang_outlasts_a_client_timeout(sb: Sandbox, sf: Salesforce) -> None:
    sb.salesforce.set_faults(hang_next=1, hang_seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.query("SELECT Id FROM Account", timeout=0.2)
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_hang_after_answers_some_then_stalls_until_lifted(sb: Sandbox, sf: Salesforce) -> None:
    sb.salesforce.set_faults(hang_after=1, hang_seconds=600)
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
    refused: list[SalesforceGeneralError] = []

    def stalled_query() -> None:
        try:
            sf.query("SELECT Id FROM Account")
        except SalesforceGeneralError as error:
            refused.append(error)

    caller = threading.Thread(target=stalled_query)
    caller.start()
    deadline = time.monotonic() + 30
    while sb.salesforce.fault_counts().get("hang", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sb.salesforce.fault_counts().get("hang") == 1
    assert caller.is_alive() and not refused  # it waits for the fault to be lifted, not for time
    sb.salesforce.set_faults(hang_after=None)
    caller.join(timeout=30)
    assert [e.status for e in refused] == [503]
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_error_rate_is_a_fraction(sb: Sandbox, sf: Salesforce) -> None:
    sb.salesforce.set_faults(server_error_rate=0.5)
    failures = 0
    for _ in range(40):
        try:
            sf.query("SELECT Id FROM Account")
        except SalesforceGeneralError:
            failures += 1
    assert 5 < failures < 35


# -- Outbound Messages -----------------------------------------------------------------------


class Receiver:
    """A listener that refuses the first ``fail`` messages, then acknowledges."""

    ACK = (
        b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
        b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
    )

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.path, dict(self.headers), body))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(outer.ACK)))
                self.end_headers()
                self.wfile.write(outer.ACK)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/salesforce"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_outbound_messages_retried_until_acked(sb: Sandbox, receiver: Receiver) -> None:
    s = sb.salesforce
    receiver.fail = 2
    s.configure_outbound(url=receiver.url, secret="s3cret", retry_seconds=0.01)
    ids = s.seed(3)
    assert s.wait_for_delivery(10)
    assert len(receiver.received) == 3  # two refused, then one message with three
    path, headers, body = receiver.received[-1]
    assert path == "/hooks/salesforce?secret=s3cret"
    assert headers["Content-Type"].startswith("text/xml")
    assert b"<OrganizationId>" + s.organization_id.encode() + b"</OrganizationId>" in body
    assert body.count(b"<Notification>") == 3
    for record_id in ids:
        assert f"<sf:Id>{record_id}</sf:Id>".encode() in body
    assert s.outbound_stats()["delivered_notifications"] == 3


def test_outbound_batches_at_most_100_and_secret_in_header(sb: Sandbox, receiver: Receiver) -> None:
    s = sb.salesforce
    s.configure_outbound(url=receiver.url, secret="h", secret_mode="header", enabled=False)
    s.seed(150)
    s.configure_outbound(enabled=True)
    assert s.wait_for_delivery(10)
    counts = [body.count(b"<Notification>") for _, _, body in receiver.received]
    assert sum(counts) == 150 and max(counts) <= 100
    assert all(h["X-Crmsync-Secret"] == "h" for _, h, _ in receiver.received)


def test_a_merge_sends_an_outbound_message_for_the_master_only(
    sb: Sandbox, sf: Salesforce, receiver: Receiver
) -> None:
    """Workflow rules (and so Outbound Messages) run on create and edit, never on delete: a
    merge is an update of the master ("a single update event for the winning record only")
    and a delete of the losers, which queryAll finds by their MasterRecordId."""
    s = sb.salesforce
    master, loser, deleted = s.seed(3)
    before = s.get("Account", master)
    assert before is not None
    s.configure_outbound(url=receiver.url, retry_seconds=0.01)
    s.freeze_clock(int(time.time() * 1000) + 60_000)  # the merge is a minute later
    s.merge("Account", master, loser)
    s.delete("Account", deleted)
    assert s.wait_for_delivery(10)
    bodies = b"".join(body for _, _, body in receiver.received)
    assert bodies.count(b"<Notification>") == 1
    assert f"<sf:Id>{master}</sf:Id>".encode() in bodies
    after = s.get("Account", master)
    assert after is not None and after["LastModifiedDate"] > before["LastModifiedDate"]
    found = sf.query_all(
        f"SELECT Id, MasterRecordId FROM Account WHERE Id IN ('{master}') "
        f"OR (MasterRecordId IN ('{master}') AND IsDeleted = true)",
        include_deleted=True,
    )["records"]
    assert {r["Id"]: r["MasterRecordId"] for r in found} == {master: None, loser: master}
