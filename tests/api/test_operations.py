"""The operations routes: the conflict queue, runs, the dead letter and connections, over
HTTP with the organisation's API key, against a HubSpot sandbox and the real store."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.app import create_app
from sandbox.server import Sandbox, SandboxOptions
from sync import customers
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.customer import CustomerPatch
from sync.engine import sync_connection
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import engine_for, transaction
from sync.store.models import AuditEvent, RecordFailure
from tests.api.conftest import Tenant, make_tenant
from tests.connectors.harness_hubspot import HubSpotHarness
from tests.sync.conftest import harness_for

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@dataclass
class Ops:
    """An organisation with a HubSpot connection, one synced record in conflict on its
    name, and the API."""

    client: TestClient
    settings: Settings
    tenant: Tenant
    other: Tenant
    harness: HubSpotHarness
    connection_id: str
    crm_id: str
    customer_id: str

    def get(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, headers=self.tenant.headers, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def ops(
    database_url: str, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Ops]:
    monkeypatch.chdir(tmp_path)  # the embedded queue's files
    monkeypatch.delenv("CRMSYNC_BROKER_URL", raising=False)
    settings = Settings(database_url=database_url, secret_key=new_secret_key())
    harness = harness_for("hubspot", sandbox)
    harness.reset()
    engine = engine_for(database_url)
    with TestClient(create_app(settings)) as client:
        tenant = make_tenant(database_url, "Acme Billing")
        other = make_tenant(database_url, "Other Billing")
        with transaction(engine) as session:
            connection = add_connection(
                session,
                settings,
                tenant.id,
                ConnectionSpec(
                    name="hubspot",
                    kind="hubspot",
                    credentials=harness.credentials(),
                    settings=harness.settings(),
                    field_map=dict(harness.field_map),
                ),
            ).id
        (crm_id,) = harness.seed(1)
        assert sync_connection(engine, settings, connection).status == "succeeded"
        with transaction(engine) as session:
            customer = customers.list_customers(session, tenant.id, external_id=crm_id)[0]
            customers.update_customer(
                session, tenant.id, str(customer.id), CustomerPatch(customer_name="Billing Name")
            )
        harness.edit(crm_id, {"customer_name": "CRM Name"})
        assert sync_connection(engine, settings, connection).status == "succeeded"
        yield Ops(client, settings, tenant, other, harness, connection, crm_id, str(customer.id))
    engine.dispose()
    engine_for.cache_clear()


def test_conflicts_list_filter_show_and_resolve_audited_as_the_key(ops: Ops) -> None:
    (conflict,) = ops.get("/conflicts")
    assert conflict["field"] == "customer_name"
    assert (conflict["billing"], conflict["crm"]) == ("Billing Name", "CRM Name")
    assert any("Both sides changed customer_name" in line for line in conflict["why"])
    # the filters, as the CLI has them (a connection by id or name)
    assert ops.get("/conflicts", connection="hubspot", customer=ops.customer_id) == [conflict]
    assert ops.get("/conflicts", field="email") == []
    assert ops.get("/conflicts", status="resolved") == []
    assert ops.get("/conflicts", offset=1) == []
    assert ops.get(f"/conflicts/{conflict['id']}") == conflict

    url = f"/conflicts/{conflict['id']}/resolve"
    for bad in ({}, {"keep": "both"}, {"keep": "crm", "value": "X"}, {"keep": None}):
        refused = ops.client.post(url, json=bad, headers=ops.tenant.headers)
        assert refused.status_code == 422, (bad, refused.text)
    done = ops.client.post(url, json={"keep": "crm"}, headers=ops.tenant.headers)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "conflict_id": conflict["id"],
        "field": "customer_name",
        "value": "CRM Name",
        "billing_written": True,
        "crm_written": False,
    }
    again = ops.client.post(url, json={"value": "Other"}, headers=ops.tenant.headers)
    assert again.status_code == 409, again.text
    (resolved,) = ops.get("/conflicts", status="all")
    assert resolved["status"] == "resolved" and resolved["resolved_by"].startswith("api:key ")
    assert ops.tenant.api_key not in resolved["resolved_by"]
    with transaction(engine_for(ops.settings.database_url)) as session:
        actors = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "conflict_resolved")
        ).all()
    assert actors == [resolved["resolved_by"]]
    customer = ops.client.get(f"/customers/{ops.customer_id}", headers=ops.tenant.headers)
    assert customer.json()["customer_name"] == "CRM Name"


def test_a_set_value_is_written_on_both_sides_once_the_customer_model_takes_it(
    ops: Ops,
) -> None:
    (conflict,) = ops.get("/conflicts")
    url = f"/conflicts/{conflict['id']}/resolve"
    # a value the customer model refuses (a blank name) is 422, and the conflict stays open
    refused = ops.client.post(url, json={"value": " "}, headers=ops.tenant.headers)
    assert refused.status_code == 422, refused.text
    assert ops.get(f"/conflicts/{conflict['id']}")["status"] == "open"
    done = ops.client.post(url, json={"value": "Agreed Name"}, headers=ops.tenant.headers)
    assert done.status_code == 200, done.text
    assert done.json()["billing_written"] and done.json()["crm_written"]
    assert done.json()["value"] == "Agreed Name"


def test_runs_and_failures_list_show_and_retry(ops: Ops) -> None:
    runs = ops.get("/runs")
    assert len(runs) == 2 and all(r["status"] == "succeeded" for r in runs)
    assert runs[0]["connection"] == "hubspot" and runs[0]["started_at"] >= runs[1]["started_at"]
    assert ops.get("/runs", limit=1, offset=1) == [runs[1]]
    assert ops.get("/runs", connection=ops.connection_id) == runs
    assert ops.get(f"/runs/{runs[0]['id']}") == runs[0]

    # a record the CRM gives with a blank name fails the customer model: a record failure
    ops.harness.create({"customer_name": ""})
    engine = engine_for(ops.settings.database_url)
    sync_connection(engine, ops.settings, ops.connection_id)
    (failure,) = ops.get("/failures")
    assert failure["level"] == "record" and failure["direction"] == "pull"
    assert ops.get(f"/failures/{failure['id']}") == failure
    assert ops.get("/failures", run_id=failure["run_id"]) == [failure]
    retried = ops.client.post(f"/failures/{failure['id']}/retry", headers=ops.tenant.headers)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert (body["retried"], body["recovered"], body["still_failing"]) == (1, 0, 1)
    assert ops.get(f"/failures/{failure['id']}")["attempts"] == failure["attempts"] + 1
    with transaction(engine) as session:
        actors = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "failure_retried")
        ).all()
    assert len(actors) == 1 and actors[0].startswith("api:key ")
    everything = ops.client.post(
        "/failures/retry", json={"connection": "hubspot"}, headers=ops.tenant.headers
    )
    assert everything.status_code == 200 and everything.json()["retried"] == 1
    nothing = ops.client.post("/failures/retry", headers=ops.tenant.headers)
    assert nothing.status_code == 200, nothing.text
    with transaction(engine) as session:
        row = session.scalars(select(RecordFailure)).one()
        row.status = "resolved"
    closed = ops.client.post(f"/failures/{failure['id']}/retry", headers=ops.tenant.headers)
    assert closed.status_code == 404, closed.text
    assert ops.get("/failures") == [] and len(ops.get("/failures", status="all")) == 1


def test_connections_show_health_never_a_secret_and_queue_a_sync(ops: Ops) -> None:
    (listed,) = ops.get("/connections")
    one = ops.get(f"/connections/{ops.connection_id}")
    assert listed["name"] == one["name"] == "hubspot"
    assert one["health"]["open_conflicts"] == 1 and one["links"] == 1
    assert one["health"]["last_run"]["status"] == "succeeded"
    assert isinstance(one["unmapped_fields"], dict)
    text = str(one) + str(listed)
    for secret in ops.harness.credentials().values():
        assert secret not in text
    queued = ops.client.post(
        f"/connections/{ops.connection_id}/sync", json={"full": True}, headers=ops.tenant.headers
    )
    assert queued.status_code == 202, queued.text
    assert queued.json()["queued"] and queued.json()["full"] and queued.json()["task_id"]
    with transaction(engine_for(ops.settings.database_url)) as session:
        row = repo.get_connection(session, ops.connection_id)
        assert row is not None
        row.state = "paused"
    paused = ops.client.post(f"/connections/{ops.connection_id}/sync", headers=ops.tenant.headers)
    assert paused.status_code == 409, paused.text


def test_another_organisation_sees_none_of_it(ops: Ops) -> None:
    (conflict,) = ops.get("/conflicts")
    (run, *_) = ops.get("/runs")
    headers = ops.other.headers
    for path in ("/conflicts", "/runs", "/failures", "/connections"):
        answer = ops.client.get(path, headers=headers, params={})
        assert answer.status_code == 200 and answer.json() == [], path
    for path in (
        f"/conflicts/{conflict['id']}",
        f"/runs/{run['id']}",
        f"/connections/{ops.connection_id}",
    ):
        assert ops.client.get(path, headers=headers).status_code == 404, path
    for path, body in (
        (f"/conflicts/{conflict['id']}/resolve", {"keep": "crm"}),
        (f"/connections/{ops.connection_id}/sync", None),
        ("/failures/retry", {"connection": ops.connection_id}),
    ):
        assert ops.client.post(path, json=body, headers=headers).status_code == 404, path
    for path in ("/conflicts", "/runs", "/failures"):
        filtered = ops.client.get(path, headers=headers, params={"connection": "hubspot"})
        assert filtered.status_code == 404, path
    assert ops.client.get("/conflicts").status_code == 401
    assert ops.get("/conflicts")[0]["status"] == "open"  # untouched


def test_openapi_documents_the_routes_with_their_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    expected = {
        ("get", "/conflicts"): "Conflict",
        ("get", "/conflicts/{conflict_id}"): "Conflict",
        ("post", "/conflicts/{conflict_id}/resolve"): "Resolution",
        ("get", "/runs"): "Run",
        ("get", "/runs/{run_id}"): "Run",
        ("get", "/failures"): "Failure",
        ("get", "/failures/{failure_id}"): "Failure",
        ("post", "/failures/{failure_id}/retry"): "Retried",
        ("post", "/failures/retry"): "Retried",
        ("get", "/connections"): "Connection",
        ("get", "/connections/{connection_id}"): "ConnectionDetail",
        ("post", "/connections/{connection_id}/sync"): "SyncQueued",
    }
    for (method, path), model in expected.items():
        operation = spec["paths"][path][method]
        ok = "202" if path.endswith("/sync") else "200"
        assert model in str(operation["responses"][ok]), (method, path)
        assert {"401", "404", "422"} <= set(operation["responses"]), (method, path)
    assert "Resolve" in spec["components"]["schemas"]
