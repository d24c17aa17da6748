"""The webhook intake over HTTP (TestClient) on SQLite and PostgreSQL: good deliveries go
into the inbox once and enqueue one sync; every kind of bad request gets its status, stores
nothing and enqueues nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from api import webhooks
from api.app import create_app
from connectors.hubspot.webhooks import signature_v2, signature_v3
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import engine_for, transaction
from sync.store.models import InboundEvent
from tests.api.conftest import TestClient

BASE = "https://hooks.example.com"
HS_SECRET = "hs-client-secret"
SF_SECRET = "sf-webhook-secret"
SF_ORG = "00D000000000001AAA"


@dataclass
class Intake:
    client: TestClient
    settings: Settings
    hubspot_id: str
    hubspot_legacy_id: str
    salesforce_id: str
    enqueued: list[str]

    def inbox(self) -> int:
        with transaction(engine_for(self.settings.database_url)) as session:
            return int(session.scalar(select(func.count()).select_from(InboundEvent)) or 0)


@pytest.fixture
def intake(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Intake]:
    settings = Settings(
        database_url=database_url,
        secret_key=SecretStr(new_secret_key()),
        public_base_url=BASE,
        webhook_max_bytes=20_000,
    )
    enqueued: list[str] = []
    monkeypatch.setattr(webhooks, "enqueue_inbox", lambda _s, cid: enqueued.append(cid))
    with transaction(engine_for(database_url)) as session:
        org = organisations.create_organisation(session, "Acme")

        def add(name: str, kind: str, creds: dict[str, str], options: dict[str, object]) -> str:
            spec = ConnectionSpec(name=name, kind=kind, credentials=creds, settings=options)
            return add_connection(session, settings, org.id, spec, check=False).id

        hubspot_id = add(
            "hs", "hubspot", {"access_token": "t", "client_secret": HS_SECRET}, {"host": BASE}
        )
        legacy_id = add(
            "hs-legacy",
            "hubspot",
            {"access_token": "t", "client_secret": HS_SECRET},
            {"host": BASE, "accept_signature_v1_v2": True},
        )
        salesforce_id = add(
            "sf",
            "salesforce",
            {"access_token": "t", "webhook_secret": SF_SECRET},
            {"instance_url": "https://sf.example.com", "organization_id": SF_ORG},
        )
    with TestClient(create_app(settings)) as client:
        yield Intake(client, settings, hubspot_id, legacy_id, salesforce_id, enqueued)
    engine_for(database_url).dispose()
    engine_for.cache_clear()


def hubspot_events(*ids: int) -> bytes:
    return json.dumps(
        [
            {
                "eventId": 1000 + i,
                "subscriptionId": 1,
                "portalId": 62515,
                "appId": 1,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": "company.propertyChange",
                "attemptNumber": 0,
                "objectId": i,
                "changeSource": "CRM_UI",
                "propertyName": "name",
                "propertyValue": "x",
            }
            for i in ids
        ]
    ).encode()


def signed(
    path: str, body: bytes, *, secret: str = HS_SECRET, age_ms: int = 0, method: str = "POST"
) -> dict[str, str]:
    stamp = str(int(time.time() * 1000) - age_ms)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature_v3(secret, method, BASE + path, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }


def outbound(organization_id: str = SF_ORG, *notification_ids: str) -> bytes:
    ids = notification_ids or ("04l000000000001AAA",)
    notes = "".join(
        f"<Notification><Id>{n}</Id>"
        '<sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>001000000000{i:03d}AAA</sf:Id><sf:Name>Acme</sf:Name></sObject></Notification>"
        for i, n in enumerate(ids)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization_id}</OrganizationId><ActionId>04k</ActionId>"
        f"{notes}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


# --- good deliveries -----------------------------------------------------------------------


def test_hubspot_webhook_is_stored_once_and_enqueued_once(intake: Intake) -> None:
    path = f"/webhooks/hubspot/{intake.hubspot_id}"
    body = hubspot_events(1, 2, 3)
    for _ in range(10):  # HubSpot delivers at least once: the same events ten times
        response = intake.client.post(path, content=body, headers=signed(path, body))
        assert response.status_code == 200, response.text
    assert intake.inbox() == 3
    assert intake.enqueued == [intake.hubspot_id]


def test_hubspot_signature_covers_the_query_string(intake: Intake) -> None:
    path = f"/webhooks/hubspot/{intake.hubspot_id}?source=hubspot"
    body = hubspot_events(7)
    response = intake.client.post(path, content=body, headers=signed(path, body))
    assert response.status_code == 200, response.text
    assert response.json() == {"events": 1, "new_events": 1}


def test_hubspot_v2_signature_only_where_enabled(intake: Intake) -> None:
    body = hubspot_events(4)
    for connection_id, expected in ((intake.hubspot_id, 401), (intake.hubspot_legacy_id, 200)):
        path = f"/webhooks/hubspot/{connection_id}"
        headers = {
            "X-HubSpot-Signature": signature_v2(HS_SECRET, "POST", BASE + path, body),
            "X-HubSpot-Signature-Version": "v2",
        }
        response = intake.client.post(path, content=body, headers=headers)
        assert response.status_code == expected, response.text
    assert intake.enqueued == [intake.hubspot_legacy_id]


def test_salesforce_outbound_message_is_acknowledged(intake: Intake) -> None:
    path = f"/webhooks/salesforce/{intake.salesforce_id}?secret={SF_SECRET}"
    body = outbound(SF_ORG, "04l000000000001AAA", "04l000000000002AAA")
    for _ in range(3):
        response = intake.client.post(path, content=body, headers={"Content-Type": "text/xml"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        assert b"<Ack>true</Ack>" in response.content
    header_path = f"/webhooks/salesforce/{intake.salesforce_id}"
    response = intake.client.post(
        header_path, content=body, headers={"X-Crmsync-Secret": SF_SECRET}
    )
    assert response.status_code == 200
    assert intake.inbox() == 2
    assert intake.enqueued == [intake.salesforce_id]


# --- bad requests: the right status, nothing stored, nothing enqueued ---------------------


def _hubspot_cases(intake: Intake) -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    hs = f"/webhooks/hubspot/{intake.hubspot_id}"
    body = hubspot_events(1)
    bad_json = b"{not json"
    big = hubspot_events(*range(400))
    assert len(big) > intake.settings.webhook_max_bytes
    unknown = f"/webhooks/hubspot/{uuid.uuid4()}"
    wrong_kind = f"/webhooks/hubspot/{intake.salesforce_id}"
    return [
        ("bad signature", hs, body, signed(hs, body, secret="wrong"), 401, "signature"),
        ("no signature", hs, body, {}, 401, "unsigned"),
        ("stale timestamp", hs, body, signed(hs, body, age_ms=6 * 60 * 1000), 401, "stale"),
        ("signed for another URL", hs, body, signed(hs + "x", body), 401, "signature"),
        ("unknown connection", unknown, body, signed(unknown, body), 404, "no hubspot"),
        ("not a connection id", "/webhooks/hubspot/nope", body, {}, 404, "no hubspot"),
        ("a Salesforce connection", wrong_kind, body, signed(wrong_kind, body), 404, "no hub"),
        ("malformed body", hs, bad_json, signed(hs, bad_json), 400, "not JSON"),
        ("oversized body", hs, big, signed(hs, big), 413, "body over"),
    ]


def _salesforce_cases(intake: Intake) -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    sf = f"/webhooks/salesforce/{intake.salesforce_id}"
    good = outbound()
    big = outbound(SF_ORG, *(f"04l{i:015d}" for i in range(200)))
    assert len(big) > intake.settings.webhook_max_bytes
    unknown = f"/webhooks/salesforce/{uuid.uuid4()}?secret={SF_SECRET}"
    return [
        ("wrong secret", sf + "?secret=nope", good, {}, 401, "secret"),
        ("no secret", sf, good, {}, 401, "secret"),
        (
            "wrong organisation",
            sf + f"?secret={SF_SECRET}",
            outbound("00Dother0000001"),
            {},
            401,
            "organisation",
        ),
        ("malformed XML", sf + f"?secret={SF_SECRET}", b"<soapenv:Envelope", {}, 400, "XML"),
        (
            "a DTD",
            sf + f"?secret={SF_SECRET}",
            b'<!DOCTYPE x [<!ENTITY a "b">]><x/>',
            {},
            400,
            "DTD",
        ),
        ("unknown connection", unknown, good, {}, 404, "no salesforce"),
        ("oversized body", sf + f"?secret={SF_SECRET}", big, {}, 413, "body over"),
    ]


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_bad_requests_get_their_status_and_enqueue_nothing(intake: Intake, crm: str) -> None:
    cases = _hubspot_cases(intake) if crm == "hubspot" else _salesforce_cases(intake)
    for name, path, body, headers, status, words in cases:
        response = intake.client.post(path, content=body, headers=headers)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        detail = response.json()["detail"]
        assert words.lower() in detail.lower(), f"{name}: {detail!r}"
    assert intake.inbox() == 0
    assert intake.enqueued == []


def test_declared_oversized_body_is_refused_before_reading(intake: Intake) -> None:
    path = f"/webhooks/hubspot/{intake.hubspot_id}"
    response = intake.client.post(
        path, content=b"[]", headers={"Content-Length": "999999999", **signed(path, b"[]")}
    )
    assert response.status_code == 413
    assert intake.enqueued == []
