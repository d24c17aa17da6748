"""A plug-in connector's webhooks through the generic intake, ``POST /webhooks/{kind}/{id}``:
deliveries made by the Pipedrive plug-in's emulator (basic auth, v1 payloads) go into the
inbox once; a wrong password, a connection of another kind or an unknown kind store
nothing."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from api import webhooks
from api.app import create_app
from connectors.testing import WebhookReceiver
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import engine_for, transaction
from sync.store.models import InboundEvent
from tests.api.conftest import TestClient
from tests.conftest import service_missing

PASSWORD = "hook-password"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    try:
        module = importlib.import_module("crmsync_pipedrive.emulator")
    except ImportError as error:
        service_missing("the crmsync-pipedrive plug-in (make install)", error)
    with module.PipedriveEmulator() as running:
        yield running


def test_pipedrive_deliveries_reach_the_inbox_once(
    database_url: str, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY

    emulator.reset()
    settings = Settings(database_url=database_url, secret_key=SecretStr(new_secret_key()))
    enqueued: list[str] = []
    monkeypatch.setattr(webhooks, "enqueue_inbox", lambda _s, cid: enqueued.append(cid))
    with transaction(engine_for(database_url)) as session:
        org = organisations.create_organisation(session, "Acme")
        spec = ConnectionSpec(
            name="pd",
            kind="pipedrive",
            credentials={"api_token": "t", "webhook_user": "crmsync", "webhook_password": PASSWORD},
            settings={"company_url": emulator.url, "external_id_key": CRMSYNC_ID_KEY},
        )
        connection = add_connection(session, settings, org.id, spec, check=False).id
    org_id = emulator.create("Hooked GmbH")
    with WebhookReceiver("/hooks", status=200) as receiver:
        emulator.add_webhook(receiver.url, "*", "organization", "crmsync", PASSWORD)
        emulator.edit(org_id, name="Hooked AG")
        emulator.merge(org_id, emulator.create("Hooked Dup"))
        assert emulator.flush_webhooks(10)
        deliveries = list(receiver.requests)
    assert len(deliveries) == 3  # added (the duplicate), updated, merged
    with TestClient(create_app(settings)) as client:
        path = f"/webhooks/pipedrive/{connection}"
        for delivery in deliveries:
            answer = client.post(path, content=delivery.body, headers=dict(delivery.headers))
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"events": 1, "new_events": 1}
        again = client.post(path, content=deliveries[0].body, headers=dict(deliveries[0].headers))
        assert again.json() == {"events": 1, "new_events": 0}  # a retry is no new event
        wrong = {**dict(deliveries[0].headers), "Authorization": "Basic Y3Jtc3luYzpndWVzcw=="}
        assert client.post(path, content=deliveries[0].body, headers=wrong).status_code == 401
        assert client.post(f"/webhooks/hubspot/{connection}", content=b"[]").status_code == 404
        assert client.post(f"/webhooks/nope/{connection}", content=b"{}").status_code == 404
    with transaction(engine_for(database_url)) as session:
        stored = session.scalars(select(InboundEvent)).all()
        assert sorted(e.kind for e in stored) == ["changed", "created", "merged"]
        merged = next(e for e in stored if e.kind == "merged")
        assert merged.payload["merged_into"] == org_id
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 3
    assert enqueued and set(enqueued) == {connection}
    engine_for(database_url).dispose()
    engine_for.cache_clear()
