"""``/readyz`` (database, migrations, broker) and ``/metrics`` (Prometheus text) over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.app import create_app
from connectors.hubspot.webhooks import signature_v3
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.settings import Settings
from sync.store.db import engine_for, transaction
from tests.api.conftest import TestClient
from tests.api.test_webhooks import BASE, HS_SECRET, hubspot_events


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.chdir(tmp_path)  # the embedded queue lives here
    yield Settings(
        database_url=database_url, secret_key=SecretStr(new_secret_key()), public_base_url=BASE
    )
    engine_for(database_url).dispose()
    engine_for.cache_clear()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and wanted <= ls)


def test_readyz_is_ready_on_a_migrated_store_with_its_broker(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {"database": "ok", "migrations": "ok", "broker": "ok"}


def test_readyz_names_migrations_not_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    with TestClient(create_app(Settings(database_url=url))) as client:
        answer = client.get("/readyz")
        alive = client.get("/healthz")
    engine_for(url).dispose()
    assert answer.status_code == 503
    assert answer.json()["failed"] == ["migrations"]
    assert "crmsync db upgrade" in answer.json()["checks"]["migrations"]
    assert alive.status_code == 200  # liveness does not depend on the migrations


def test_readyz_names_an_unreachable_broker(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(unreachable)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["failed"] == ["broker"]
    assert answer.json()["checks"]["database"] == "ok"
    # the public answer names the error's class only (crmsync health ready says more)
    assert "127.0.0.1" not in answer.text


def test_readyz_names_an_unreachable_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    with TestClient(create_app(Settings(database_url=url))) as client:
        answer = client.get("/readyz")
    engine_for(url).dispose()
    assert answer.status_code == 503
    assert "database" in answer.json()["failed"]


def test_metrics_show_webhook_intake_refusals_and_the_stores_gauges(settings: Settings) -> None:
    with transaction(engine_for(settings.database_url)) as session:
        org = organisations.create_organisation(session, "Acme").id
        spec = ConnectionSpec(
            name="hs",
            kind="hubspot",
            credentials={"access_token": "t", "client_secret": HS_SECRET},
            settings={"host": BASE},
        )
        connection = add_connection(session, settings, org, spec, check=False).id
    path = f"/webhooks/hubspot/{connection}"
    body = hubspot_events(1, 2)
    stamp = str(int(time.time() * 1000))
    good = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature_v3(HS_SECRET, "POST", BASE + path, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }
    labels = {"connection_id": connection, "crm": "hubspot"}
    with TestClient(create_app(settings)) as client:
        before = client.get("/metrics").text
        assert client.post(path, content=body, headers=good).status_code == 200
        bad = {**good, "X-HubSpot-Signature-v3": "bm90IGl0"}
        assert client.post(path, content=body, headers=bad).status_code == 401
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    after = answer.text
    intake = "crmsync_webhook_intake_seconds_count"
    assert value(after, intake, organisation_id=org, **labels) == 1
    refused = "crmsync_webhooks_refused_total"
    assert (
        value(after, refused, status="401", organisation_id=org, **labels)
        - value(before, refused, status="401", organisation_id=org, **labels)
        == 1
    )
    assert value(after, "crmsync_open_conflicts", organisation_id=org, **labels) == 0
    assert (("crmsync_open_failures", frozenset({("organisation_id", org), *labels.items()}))) in (
        samples(after)
    )
    queues = {dict(ls)["queue"] for n, ls in samples(after) if n == "crmsync_queue_depth"}
    assert queues == {"scheduled", "webhook", "operator"}
    families = {f.name for f in text_string_to_metric_families(after)}
    assert {"crmsync_webhook_intake_seconds", "crmsync_open_conflicts"} <= families
    # every family is crmsync's own, even in a process that is not a prefork worker
    assert {name for name in families if not name.startswith("crmsync_")} == set()
