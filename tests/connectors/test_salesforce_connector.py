"""The Salesforce connector against the sandbox, with the real simple-salesforce over HTTPS."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connectors import registry
from connectors.base import Connector, CrmCustomer, CustomerPush, WebhookRequest
from connectors.errors import AuthError, ConfigError, RetriableError, WebhookRejected
from connectors.salesforce import SalesforceConnector, ack_response
from connectors.salesforce.mapping import build_mapping, join_street, split_street
from sandbox.salesforce.outbound import envelope
from sandbox.server import Sandbox
from tests.connectors.harness_salesforce import (
    WEBHOOK_SECRET,
    SalesforceHarness,
    make_harness,
    running_sandbox,
)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def h(sb: Sandbox) -> SalesforceHarness:
    harness = make_harness(sb)
    harness.reset()
    sb.salesforce.configure_outbound(url=None)
    return harness


def pull_all(
    connector: SalesforceConnector, cursor: str | None = None, *, full: bool = False
) -> tuple[list[CrmCustomer], str | None]:
    records: list[CrmCustomer] = []
    for page in connector.pull_customers(cursor, full=full):
        records += page.records
        cursor = page.cursor
    return records, cursor


def test_registry_builds_a_connector_that_satisfies_the_protocol(h: SalesforceHarness) -> None:
    connector = registry.create("salesforce", h.connector().config)
    assert isinstance(connector, Connector)
    assert isinstance(connector, SalesforceConnector)
    assert "customer_name" in connector.mapped_fields
    assert "address.line3" in connector.mapped_fields


# -- pulls ------------------------------------------------------------------------------------


def test_full_pull_pages_with_exact_call_counts_and_resumes(h: SalesforceHarness) -> None:
    ids = h.seed(4500)
    connector = h.connector()
    pages = list(connector.pull_customers(None, full=True))
    assert [len(p.records) for p in pages] == [2000, 2000, 500]
    assert connector.api_calls == 3 == h.api_calls()
    assert sorted(r.id for p in pages for r in p.records) == sorted(ids)
    first = pages[0].records[0]
    assert first.fields["customer_name"] and first.modified_at is not None
    # a pull killed after its first page resumes from that page's cursor
    resumed = h.connector()
    rest, _ = pull_all(resumed, pages[0].cursor, full=True)
    assert [r.id for r in rest] == [r.id for p in pages[1:] for r in p.records]
    assert resumed.api_calls == 2


def test_incremental_with_nothing_changed_is_one_call(h: SalesforceHarness) -> None:
    h.seed(10)
    _, cursor = pull_all(h.connector())
    connector = h.connector()
    pages = list(connector.pull_customers(cursor))
    assert [p.records for p in pages] == [[]]
    assert pages[0].cursor == cursor
    assert connector.api_calls == 1


def test_incremental_boundary_with_records_in_the_same_millisecond(
    h: SalesforceHarness,
) -> None:
    h.sf.freeze_clock("2024-05-01T12:00:00.123Z")
    first = [h.create({"customer_name": f"same ms {i}"}) for i in range(3)]
    records, cursor = pull_all(h.connector())
    assert [r.id for r in records] == first
    later = [h.create({"customer_name": f"same ms later {i}"}) for i in range(3)]
    again, cursor2 = pull_all(h.connector(), cursor)
    assert [r.id for r in again] == later  # none lost, none repeated
    h.sf.freeze_clock("2024-05-01T12:00:00.124Z")
    h.edit(first[0], {"phone_number": "+1 555"})
    third, _ = pull_all(h.connector(), cursor2)
    assert [(r.id, r.fields["phone_number"]) for r in third] == [(first[0], "+1 555")]


def test_incremental_boundary_where_only_whole_second_literals_are_taken(
    h: SalesforceHarness,
) -> None:
    """A server holding to the documented SOQL dateTime formats (whole seconds) refuses the
    millisecond literal once; the connector then reads the watermark's second again and
    leaves out what it read, to the millisecond."""
    h.set_faults(whole_second_literals=True)
    h.sf.freeze_clock("2024-05-01T12:00:00.123Z")
    first = [h.create({"customer_name": f"same ms {i}"}) for i in range(3)]
    records, cursor = pull_all(h.connector())
    assert [r.id for r in records] == first
    later = [h.create({"customer_name": f"same ms later {i}"}) for i in range(3)]
    connector = h.connector()
    calls = h.api_calls()
    again, cursor2 = pull_all(connector, cursor)
    assert [r.id for r in again] == later  # none lost, none repeated
    assert h.api_calls() - calls == connector.api_calls == 2  # one refused, one answered
    h.sf.freeze_clock("2024-05-01T12:00:00.124Z")
    h.edit(first[0], {"phone_number": "+1 555"})
    third, cursor3 = pull_all(connector, cursor2)
    assert [(r.id, r.fields["phone_number"]) for r in third] == [(first[0], "+1 555")]
    assert connector.api_calls == 3  # the connector remembers: no second refusal
    h.sf.freeze_clock("2024-05-01T12:00:01.000Z")
    nothing, _ = pull_all(connector, cursor3)
    assert nothing == []


def test_resume_inside_a_millisecond_shared_by_more_than_a_page(h: SalesforceHarness) -> None:
    h.sf.freeze_clock("2024-05-01T00:00:00.000Z")
    ids = h.seed(2300)
    connector = h.connector()
    first_page = next(iter(connector.pull_customers(None, full=True)))
    rest, _ = pull_all(h.connector(), first_page.cursor, full=True)
    assert [r.id for r in first_page.records] + [r.id for r in rest] == ids


def test_overlap_window_rereads_the_recent_past(h: SalesforceHarness) -> None:
    h.sf.freeze_clock("2024-05-01T00:00:00.000Z")
    a = h.create({"customer_name": "a"})
    h.sf.freeze_clock("2024-05-01T00:00:10.000Z")
    b = h.create({"customer_name": "b"})
    _, cursor = pull_all(h.connector())
    records, _ = pull_all(h.connector(overlap_seconds=5), cursor)
    assert [r.id for r in records] == [b]
    records, _ = pull_all(h.connector(overlap_seconds=60), cursor)
    assert [r.id for r in records] == [a, b]


def test_deletes_merges_and_restores_come_through_the_incremental(h: SalesforceHarness) -> None:
    a, b, c, d = h.seed(4)
    _, cursor = pull_all(h.connector())
    h.delete(a)
    assert h.merge(b, c) == b
    records, cursor = pull_all(h.connector(), cursor)
    got = {r.id: (r.deleted, r.merged_into) for r in records}
    assert got == {a: (True, None), b: (False, None), c: (True, b)}
    h.restore(a)
    records, _ = pull_all(h.connector(), cursor)
    assert [(r.id, r.deleted) for r in records] == [(a, False)]
    assert d not in got


def test_pull_by_ids_reports_missing_as_deleted(h: SalesforceHarness) -> None:
    a, b = h.seed(2)
    h.delete(b)
    missing = "001000000000000AAA"
    got = h.connector().pull_customers_by_ids([a, b, missing, a[:15]])
    assert [(c.id, c.deleted) for c in got] == [(a, False), (b, True), (missing, True), (a, False)]


def test_pull_contacts_with_their_accounts(h: SalesforceHarness) -> None:
    [a] = h.seed(1)
    connector = h.connector()
    contacts = [c for p in connector.pull_contacts(None, full=True) for c in p.records]
    assert 2 <= len(contacts) <= 3
    assert {c.customer_id for c in contacts} == {a}
    assert all(c.name and c.email and "@" in c.email for c in contacts)
    h.delete(a)  # the account's contacts go to the recycle bin with it
    cursor = json.dumps({"stamp": "2000-01-01T00:00:00.000+0000", "id": ""})
    again = [c for p in connector.pull_contacts(cursor) for c in p.records]
    assert all(c.deleted for c in again) and len(again) == len(contacts)


# -- mapping ----------------------------------------------------------------------------------


def test_street_lines() -> None:
    assert split_street("1 Main St\nSuite 5\nc/o A\nFloor 2") == (
        "1 Main St",
        "Suite 5",
        "c/o A, Floor 2",
    )
    assert split_street("1 Main St") == ("1 Main St", None, None)
    assert split_street("\nSuite 5") == (None, "Suite 5", None)
    assert split_street("") == (None, None, None)
    assert join_street("1 Main St", None, None) == "1 Main St"
    assert join_street(None, "Suite 5", None) == "\nSuite 5"
    assert join_street(None, None, None) is None


def test_field_map_overrides_and_unmapping() -> None:
    mapping = build_mapping({"custom_data.segment": "Segment__c", "phone_number": None})
    assert "phone_number" not in mapping.mapped_fields
    assert "Segment__c" in mapping.sf_fields
    record = {"Name": "X", "Segment__c": "", "BillingState": None, "BillingStateCode": "CA"}
    fields = mapping.to_customer()(record)
    assert fields["custom_data.segment"] is None
    assert fields["address.state"] == "CA"
    assert mapping.to_salesforce({"custom_data.segment": "smb", "phone_number": "1"}) == {
        "Segment__c": "smb"
    }


def test_non_ascii_round_trip_and_empty_vs_missing(h: SalesforceHarness) -> None:
    connector = h.connector()
    fields = {
        "customer_name": "Müller & Söhne 東京 Łódź",
        "address.line1": "銀座通り 1-2-3",
        "address.line2": "Étage 4",
        "address.line3": None,
        "address.city": "Köln",
        "address.zipCode": "50667",
        "address.country": "Deutschland",
        "address.country_code": "DE",
        "phone_number": "+49 221 000",
        "email": "rechnung@müller.example",
    }
    [created] = connector.push_customers([CustomerPush("b-1", None, fields)])
    assert created.ok and created.crm_id
    read = h.read(created.crm_id)
    assert {k: read[k] for k in fields} == fields
    pulled = connector.pull_customers_by_ids([created.crm_id])[0]
    assert {k: pulled.fields[k] for k in fields} == fields
    assert pulled.billing_id == "b-1"
    # an empty string clears a field (read back as None); a field not pushed is untouched
    [cleared] = connector.push_customers(
        [CustomerPush("b-1", created.crm_id, {"phone_number": ""})]
    )
    assert cleared.ok
    after = h.read(created.crm_id)
    assert after["phone_number"] is None
    assert after["customer_name"] == fields["customer_name"]


def test_pushing_some_address_lines_keeps_the_others(h: SalesforceHarness) -> None:
    crm_id = h.create({"customer_name": "Lines", "address.line1": "1 A", "address.line2": "2 B"})
    connector = h.connector()
    [result] = connector.push_customers([CustomerPush("b", crm_id, {"address.line2": "Suite 9"})])
    assert result.ok
    assert h.sf.get("Account", crm_id)["BillingStreet"] == "1 A\nSuite 9"  # type: ignore[index]
    assert connector.api_calls == 2  # one read of the current street, one write


# -- pushes -----------------------------------------------------------------------------------


def test_push_450_changes_is_three_calls(h: SalesforceHarness) -> None:
    ids = h.seed(450)
    connector = h.connector()
    pushes = [
        CustomerPush(f"b-{i}", crm_id, {"phone_number": f"+1 {i}"}) for i, crm_id in enumerate(ids)
    ]
    results = connector.push_customers(pushes)
    assert all(r.ok for r in results)
    assert [r.billing_id for r in results] == [p.billing_id for p in pushes]
    assert [r.crm_id for r in results] == ids
    assert connector.api_calls == 3
    assert h.read(ids[321])["phone_number"] == "+1 321"


def test_create_is_idempotent(h: SalesforceHarness) -> None:
    push = CustomerPush("billing-77", None, {"customer_name": "Once Only Ltd"})
    first = h.connector().push_customers([push])
    second = h.connector().push_customers([push])
    assert first[0].ok and second[0].ok
    assert first[0].crm_id == second[0].crm_id
    assert len(h.sf.find("Account", "crmsync_id__c", "billing-77")) == 1


def test_partial_batch_failures_are_per_record(h: SalesforceHarness) -> None:
    a, b, c = h.seed(3)
    h.set_faults(
        record_errors={
            b: "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            c: {"code": "UNABLE_TO_LOCK_ROW", "times": 2},
            "Dup Create": "DUPLICATE_VALUE",
        }
    )
    connector = h.connector()
    results = connector.push_customers(
        [
            CustomerPush("1", a, {"phone_number": "1"}),
            CustomerPush("2", b, {"phone_number": "2"}),
            CustomerPush("3", c, {"phone_number": "3"}),
            CustomerPush("4", None, {"customer_name": "Dup Create"}),
            CustomerPush("5", None, {"customer_name": None}),
        ]
    )
    by_id = {r.billing_id: r for r in results}
    assert by_id["1"].ok and by_id["3"].ok  # the locked row was retried inside the connector
    assert by_id["2"].error is not None and by_id["2"].error.kind == "validation"
    assert by_id["2"].error.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "Billing address is not valid" in by_id["2"].error.message
    assert by_id["4"].error is not None and by_id["4"].error.kind == "duplicate"
    assert by_id["5"].error is not None and by_id["5"].error.code == "REQUIRED_FIELD_MISSING"
    assert h.read(c)["phone_number"] == "3"


def test_a_row_locked_for_good_comes_back_retriable(h: SalesforceHarness) -> None:
    [a] = h.seed(1)
    h.set_faults(record_errors={a: "UNABLE_TO_LOCK_ROW"})
    connector = h.connector(lock_retries=2)
    [result] = connector.push_customers([CustomerPush("1", a, {"phone_number": "1"})])
    assert result.error is not None and result.error.kind == "retriable"
    assert connector.api_calls == 3


def test_updates_to_deleted_records_are_not_found(h: SalesforceHarness) -> None:
    [a] = h.seed(1)
    h.delete(a)
    [result] = h.connector().push_customers([CustomerPush("1", a, {"phone_number": "1"})])
    assert result.error is not None and result.error.kind == "not_found"


# -- retries, limits, auth --------------------------------------------------------------------


def test_request_limit_exceeded_then_success(h: SalesforceHarness) -> None:
    h.seed(5)
    h.set_faults(limit_exceeded_next=2)
    connector = h.connector()
    records, _ = pull_all(connector)
    assert len(records) == 5
    assert connector.api_calls == 3 == h.api_calls()


def test_server_errors_then_success_and_then_give_up(h: SalesforceHarness) -> None:
    h.seed(5)
    h.set_faults(server_errors_next=2)
    connector = h.connector()
    assert len(pull_all(connector)[0]) == 5
    assert connector.api_calls == 3
    h.set_faults(server_errors_next=10)
    with pytest.raises(RetriableError) as exc:
        pull_all(h.connector(max_attempts=3))
    assert "SERVER_UNAVAILABLE" in str(exc.value)


def test_a_hung_request_times_out_and_is_retried(h: SalesforceHarness) -> None:
    h.seed(1)
    h.set_faults(hang_next=1, hang_seconds=2.0)
    connector = h.connector(request_timeout=0.3)
    assert len(pull_all(connector)[0]) == 1
    assert connector.api_calls == 2


def test_expired_token_is_refreshed_by_client_credentials(h: SalesforceHarness) -> None:
    h.seed(2)
    connector = h.connector()
    assert len(pull_all(connector)[0]) == 2
    h.set_faults(expire_tokens=True)
    assert len(pull_all(connector)[0]) == 2
    assert connector.api_calls == 4  # query, refused query, token, query
    assert h.sf.request_counts()["oauth_token"] == 1


def test_refresh_token_grant_and_token_less_start(h: SalesforceHarness) -> None:
    h.seed(1)
    connector = h.connector(credentials={"refresh_token": "sandbox-refresh-token"})
    assert len(pull_all(connector)[0]) == 1
    assert connector.api_calls == 2  # token, query


def test_expired_token_without_oauth_credentials_is_an_auth_error(h: SalesforceHarness) -> None:
    connector = h.connector(credentials={"access_token": h.sf.issue_token()})
    h.sf.expire_tokens()
    with pytest.raises(AuthError):
        pull_all(connector)
    bad = h.connector(credentials={"client_id": "x", "client_secret": "y"})
    with pytest.raises(AuthError, match="invalid_client"):
        pull_all(bad)


def test_check_and_describe(h: SalesforceHarness) -> None:
    connector = h.connector()
    connector.check()
    names = {f.name for f in connector.describe_fields()}
    assert {"Name", "BillingStreet", "crmsync_id__c"} <= names
    wrong = h.connector(field_map={"custom_data.segment": "Nope__c", "email": "Also_Nope__c"})
    with pytest.raises(ConfigError, match=r"Nope__c.*Also_Nope__c"):
        wrong.check()
    not_external = h.connector(external_id_field="Segment__c")
    with pytest.raises(ConfigError, match="External ID"):
        not_external.check()


def test_a_wrong_ca_bundle_is_a_config_error(h: SalesforceHarness, tmp_path: object) -> None:
    import certifi

    connector = h.connector(ca_bundle=certifi.where())
    with pytest.raises(ConfigError, match="TLS"):
        pull_all(connector)


# -- webhooks ---------------------------------------------------------------------------------


def _message(
    h: SalesforceHarness, records: list[dict[str, object]], types: list[str] | None = None
) -> bytes:
    kinds = types or ["Account"] * len(records)
    notifications = [
        (f"04l00000000000{i}AAA", kind, r)
        for i, (r, kind) in enumerate(zip(records, kinds, strict=True))
    ]
    return envelope(
        h.sf.organization_id,
        "04k000000000001AAA",
        "https://x",
        notifications,
        ("Id", "Name", "IsDeleted", "SystemModstamp"),
    )


def test_webhook_verify_and_parse(h: SalesforceHarness) -> None:
    connector = h.connector()
    body = _message(
        h,
        [
            {
                "Id": "001A",
                "Name": "Ä & <b>",
                "IsDeleted": False,
                "SystemModstamp": "2024-05-01T00:00:00.000+0000",
            },
            {"Id": "001B", "Name": "Gone", "IsDeleted": True},
        ],
    )
    url = f"https://crmsync.example/hooks/salesforce/conn-1?secret={WEBHOOK_SECRET}"
    connector.verify_webhook(WebhookRequest("POST", url, {}, body))
    connector.verify_webhook(
        WebhookRequest("POST", "https://x/h", {"x-crmsync-secret": WEBHOOK_SECRET}, body)
    )
    events = connector.parse_webhook(body)
    assert [(e.key, e.kind, e.crm_id, e.object_type) for e in events] == [
        ("04l00000000000" + "0AAA", "changed", "001A", "customer"),
        ("04l00000000000" + "1AAA", "deleted", "001B", "customer"),
    ]
    assert events[0].payload["Name"] == "Ä & <b>"
    assert events[0].occurred_at is not None
    assert b"<Ack>true</Ack>" in ack_response()


def test_webhook_notifications_of_other_objects_are_left_out(h: SalesforceHarness) -> None:
    """An Outbound Message may be defined on any object: a Lead's notification is not a
    customer's (it was read as one), a Contact's is a contact's."""
    body = _message(
        h,
        [{"Id": "00Q000000000001AAA"}, {"Id": "003000000000001AAA"}, {"Id": "001A"}],
        ["Lead", "Contact", "Account"],
    )
    events = h.connector().parse_webhook(body)
    assert [(e.crm_id, e.object_type) for e in events] == [
        ("003000000000001AAA", "contact"),
        ("001A", "customer"),
    ]


def test_webhook_rejections(h: SalesforceHarness) -> None:
    connector = h.connector()
    body = _message(h, [{"Id": "001A"}])
    with pytest.raises(WebhookRejected) as bad_secret:
        connector.verify_webhook(WebhookRequest("POST", "https://x/h?secret=nope", {}, body))
    assert bad_secret.value.status == 401
    with pytest.raises(WebhookRejected):
        connector.verify_webhook(WebhookRequest("POST", "https://x/h", {}, body))
    other_org = body.replace(h.sf.organization_id.encode(), b"00D000000000099AAA")
    with pytest.raises(WebhookRejected, match="another organisation"):
        connector.verify_webhook(
            WebhookRequest("POST", f"https://x/h?secret={WEBHOOK_SECRET}", {}, other_org)
        )
    for malformed in (b"<notifications", b"not xml", b"<a/>"):
        with pytest.raises(WebhookRejected) as exc:
            connector.parse_webhook(malformed)
        assert exc.value.status == 400
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(WebhookRejected, match="DTD"):
        connector.parse_webhook(bomb)


def test_outbound_messages_end_to_end(h: SalesforceHarness) -> None:
    """The sandbox delivers to a receiver that verifies with the connector and acks."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    connector = h.connector()
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = WebhookRequest(
                "POST", f"https://receiver{self.path}", dict(self.headers), body
            )
            try:
                connector.verify_webhook(request)
                seen.extend((e.crm_id, e.object_type) for e in connector.parse_webhook(body))
            except WebhookRejected as exc:
                self.send_response(exc.status)
                self.end_headers()
                return
            answer = ack_response()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        h.sf.configure_outbound(
            url=url, secret=WEBHOOK_SECRET, retry_seconds=0.01, objects=("Account", "Contact")
        )
        crm_id = h.create({"customer_name": "Hooked"})
        h.edit(crm_id, {"phone_number": "+1"})
        contact_id = h.sf.create("Contact", {"LastName": "Hook", "AccountId": crm_id})
        assert h.sf.wait_for_delivery(10)
        assert seen == [
            (crm_id, "customer"),
            (crm_id, "customer"),
            (contact_id, "contact"),
        ]
    finally:
        h.sf.configure_outbound(url=None)
        server.shutdown()
        server.server_close()


def test_the_default_map_leaves_out_currency_in_an_org_without_multi_currency(
    h: SalesforceHarness,
) -> None:
    h.sf.set_multi_currency(False)  # as a new org is
    connector = h.connector()
    unavailable = connector.unavailable_fields()
    assert list(unavailable) == ["currency"]
    assert "multi-currency" in unavailable["currency"]
    with pytest.raises(ConfigError, match=r"currency .*--map FIELD="):
        connector.check()  # the full default map would fail its queries: say how to fix
    without = h.connector(field_map={**h.field_map, "currency": None})
    without.check()
    assert without.unavailable_fields() == {}
    crm_id = h.create({"customer_name": "Single-currency GmbH"})
    (pulled,) = without.pull_customers_by_ids([crm_id])
    assert (
        "currency" not in pulled.fields and pulled.fields["customer_name"] == "Single-currency GmbH"
    )
    # an explicit map to a field the org lacks is an error, with how to fix it
    explicit = h.connector(field_map={**h.field_map, "currency": "CurrencyIsoCode"})
    with pytest.raises(
        ConfigError, match=r"currency is mapped to CurrencyIsoCode.*--map currency="
    ):
        explicit.unavailable_fields()
    h.sf.set_multi_currency(True)
    assert h.connector().unavailable_fields() == {}


def test_the_default_map_leaves_out_country_codes_without_state_and_country_picklists(
    h: SalesforceHarness,
) -> None:
    h.sf.set_state_country_picklists(False)
    try:
        unavailable = h.connector().unavailable_fields()
        assert set(unavailable) == {"address.country_code", "ship_to_address.country_code"}
        without = h.connector(field_map={**h.field_map, **dict.fromkeys(unavailable)})
        without.check()
        crm_id = h.create({"customer_name": "No Picklists Ltd", "address.country": "Norway"})
        (pulled,) = without.pull_customers_by_ids([crm_id])
        assert pulled.fields["address.country"] == "Norway"
        assert "address.country_code" not in pulled.fields
    finally:
        h.sf.set_state_country_picklists(True)


def test_a_field_named_in_another_case_is_refused_with_its_api_name(h: SalesforceHarness) -> None:
    """SOQL takes a field in any case, but records come back under its API name: a map
    written ``segment__c`` for ``Segment__c`` would read None for every record."""
    h.seed(1)
    cased = h.connector(field_map={"custom_data.segment": "segment__c"})
    with pytest.raises(ConfigError, match=r"segment__c: its API name is Segment__c.*--map"):
        cased.check()
    ext = h.connector(external_id_field="CRMSYNC_ID__C")
    with pytest.raises(ConfigError, match=r"its API name is crmsync_id__c.*--external-id-field"):
        ext.check()
    right = h.connector(field_map={"custom_data.segment": "Segment__c"})
    right.check()


def test_a_missing_external_id_field_is_an_error_with_how_to_fix_it(h: SalesforceHarness) -> None:
    with pytest.raises(ConfigError, match=r"Account\.Nope__c does not exist.*External ID"):
        h.connector(external_id_field="Nope__c").unavailable_fields()


def test_request_refusals_that_pass_are_retriable() -> None:
    from simple_salesforce.exceptions import SalesforceMalformedRequest

    from connectors.salesforce.errors import classify

    def refusal(code: str) -> SalesforceMalformedRequest:
        return SalesforceMalformedRequest(
            "url", 400, "query", [{"errorCode": code, "message": "m"}]
        )

    for code in ("INVALID_QUERY_LOCATOR", "QUERY_TIMEOUT", "REQUEST_RUNNING_TOO_LONG"):
        assert isinstance(classify(refusal(code)), RetriableError), code
    assert isinstance(classify(refusal("UNABLE_TO_LOCK_ROW")), RetriableError)
    assert isinstance(classify(refusal("INVALID_FIELD")), ConfigError)
