"""The security suite runs the real system (the worker tests' stack: PostgreSQL, Redis, the
sandbox over HTTP, the web API over HTTP) with two organisations, each with a HubSpot and a
Salesforce connection whose secrets all differ."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import func, select

from connectors.hubspot.webhooks import signature_v3
from sandbox.server import Sandbox
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.store.db import transaction
from sync.store.models import InboundEvent
from tests.tasks.conftest import Stack, crm, sandbox, stack

__all__ = ["Tenant", "World", "crm", "sandbox", "stack", "world"]


@dataclass
class Tenant:
    """One organisation: its API key and its two connections, with their secrets."""

    id: str
    api_key: str
    hubspot: str
    hubspot_secret: str
    salesforce: str
    salesforce_secret: str
    salesforce_org: str
    access_token: str
    salesforce_client_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"organisation": self.id, "x-api-key": self.api_key}

    def secrets(self) -> dict[str, str]:
        """Every secret of this organisation, by what it is."""
        return {
            "api_key": self.api_key,
            "hubspot access token": self.access_token,
            "hubspot client secret": self.hubspot_secret,
            "salesforce webhook secret": self.salesforce_secret,
            "salesforce client secret": self.salesforce_client_secret,
        }


@dataclass
class World:
    stack: Stack
    crm: Sandbox
    api: str
    a: Tenant
    b: Tenant
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    # -- webhooks as the CRMs send them
    def hubspot_body(self, *object_ids: str, event_id: int = 1) -> bytes:
        now = int(time.time() * 1000)
        return json.dumps(
            [
                {
                    "eventId": event_id + n,
                    "subscriptionId": 1,
                    "portalId": 62515,
                    "appId": 1,
                    "occurredAt": now,
                    "subscriptionType": "company.propertyChange",
                    "attemptNumber": 0,
                    "objectId": int(oid),
                    "changeSource": "CRM_UI",
                    "propertyName": "name",
                    "propertyValue": "x",
                }
                for n, oid in enumerate(object_ids)
            ]
        ).encode()

    def hubspot_headers(
        self, path: str, body: bytes, secret: str, *, age_ms: int = 0
    ) -> dict[str, str]:
        stamp = str(int(time.time() * 1000) - age_ms)
        return {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature_v3(secret, "POST", self.api + path, body, stamp),
            "X-HubSpot-Request-Timestamp": stamp,
        }

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(self.api + path, content=body, headers=headers)

    # -- what a request left behind
    def inbox(self) -> int:
        with transaction(self.stack.engine) as session:
            return int(session.scalar(select(func.count()).select_from(InboundEvent)) or 0)

    def enqueued(self) -> int:
        return self.stack.queue_length("webhook")


def outbound_message(organization_id: str, *records: tuple[str, str]) -> str:
    """A Salesforce Outbound Message (text) with one Notification per (notification id,
    Account id)."""
    notes = "".join(
        f"<Notification><Id>{note}</Id>"
        '<sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{account}</sf:Id></sObject></Notification>"
        for note, account in records
    )
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization_id}</OrganizationId><ActionId>04k000000000001</ActionId>"
        '<SessionId xsi:nil="true"/><EnterpriseUrl>https://x</EnterpriseUrl>'
        f"<PartnerUrl>https://x</PartnerUrl>{notes}</notifications></soapenv:Body>"
        "</soapenv:Envelope>"
    )


def _tenant(stack: Stack, crm: Sandbox, name: str, salesforce_org: str) -> Tenant:
    hubspot_secret = f"hs-secret-{secrets.token_hex(12)}"
    salesforce_secret = f"sf-secret-{secrets.token_hex(12)}"
    access_token = f"pat-{secrets.token_hex(12)}"
    with transaction(stack.engine) as session:
        org = organisations.create_organisation(session, name)
        hubspot = add_connection(
            session,
            stack.settings,
            org.id,
            ConnectionSpec(
                name="hs",
                kind="hubspot",
                credentials={"access_token": access_token, "client_secret": hubspot_secret},
                settings={"host": crm.hubspot_url, "backoff_base_seconds": 0.01},
            ),
            check=False,
        ).id
        salesforce = add_connection(
            session,
            stack.settings,
            org.id,
            ConnectionSpec(
                name="sf",
                kind="salesforce",
                credentials={
                    "client_id": crm.salesforce.client_id,
                    "client_secret": crm.salesforce.client_secret,
                    "webhook_secret": salesforce_secret,
                },
                settings={
                    "instance_url": crm.salesforce_url,
                    "ca_bundle": str(crm.ca_file),
                    "organization_id": salesforce_org,
                    "backoff_base_seconds": 0.01,
                },
                # unchecked: a new org (the sandbox's default) has no CurrencyIsoCode
                field_map={"email": "Billing_Email__c", "currency": None},
            ),
            check=False,
        ).id
    return Tenant(
        org.id,
        org.api_key,
        hubspot,
        hubspot_secret,
        salesforce,
        salesforce_secret,
        salesforce_org,
        access_token,
        crm.salesforce.client_secret,
    )


@pytest.fixture
def world(stack: Stack, crm: Sandbox) -> Iterator[World]:
    api = stack.serve_api()
    a = _tenant(stack, crm, "Org A", crm.salesforce.organization_id)
    b = _tenant(stack, crm, "Org B", "00D0000000000BBAAA")
    world = World(stack, crm, api, a, b)
    yield world
    world.http.close()
