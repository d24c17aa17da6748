"""crmsync's log set-up: JSON or readable lines carrying the run's ids, and the redaction
that keeps secrets out of every line (ours, uvicorn's access log, a library's exception)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import Engine, select

from sandbox.server import Sandbox
from sync import logs
from sync.crypto import decrypt_credentials, encrypt_credentials, new_secret_key
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.settings import Settings
from sync.store.db import transaction
from sync.store.models import LinkRow
from tests.sync.conftest import make_world


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "crmsync":
            root.removeHandler(handler)
    root.setLevel(level)


def lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_json_lines_carry_the_bound_ids_and_extras(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(Settings(log_format="json", log_level="DEBUG"), service="worker")
    with logs.bound(organisation_id="org-1", connection_id="conn-1", run_id="run-1"):
        logging.getLogger("crmsync.sync").info("run started", extra={"trigger": "webhook"})
    logging.getLogger("crmsync.sync").info("after the run")
    first, second = (json.loads(line) for line in lines(capsys.readouterr().err)[-2:])
    assert first["event"] == "run started"
    assert first["level"] == "info"
    assert first["service"] == "worker"
    assert (first["organisation_id"], first["connection_id"], first["run_id"]) == (
        "org-1",
        "conn-1",
        "run-1",
    )
    assert first["trigger"] == "webhook"
    assert "timestamp" in first
    assert "run_id" not in second


def test_console_lines_are_readable(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(Settings(log_format="console", log_level="INFO"))
    with logs.bound(connection_id="conn-2"):
        logging.getLogger("crmsync.sync").warning("record failed", extra={"error_code": "X1"})
    line = lines(capsys.readouterr().err)[-1]
    assert not line.startswith("{")
    assert "record failed" in line
    assert "connection_id=conn-2" in line
    assert "error_code=X1" in line


def test_alembic_says_which_migrations_ran_without_its_plug_in_set_up(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(Settings(log_format="json", log_level="INFO"), service="up")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.types")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0001 -> 0002")
    err = capsys.readouterr().err
    assert "setup plugin" not in err
    assert "Running upgrade 0001 -> 0002" in err


def test_level_filters_lines(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(Settings(log_format="json", log_level="warning"))
    logging.getLogger("crmsync.sync").info("not shown")
    logging.getLogger("crmsync.sync").warning("shown")
    err = capsys.readouterr().err
    assert "not shown" not in err
    assert "shown" in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_line_holds_a_known_secret_wherever_it_hides(
    configured: None, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    key = new_secret_key()
    settings = Settings(log_format=fmt, log_level="DEBUG", secret_key=SecretStr(key))
    token = "pat-na1-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    stored = encrypt_credentials(settings, {"access_token": token})
    logs.configure(settings)
    decrypt_credentials(settings, stored)  # a worker reading the connection
    log = logging.getLogger("some.library")
    log.debug("calling https://crm.example/api?x=1 with %s", token)
    log.info("headers", extra={"headers": {"Authorization": f"Bearer {token}"}})
    try:
        raise RuntimeError(f"the CRM refused token {token}")
    except RuntimeError:
        log.exception("request failed")
    log.warning("key is %s", key)
    err = capsys.readouterr().err
    assert token not in err
    assert key not in err
    assert err.count(logs.MASK) >= 4
    assert "request failed" in err and "RuntimeError" in err


def test_credential_looking_parameters_are_masked_even_when_unknown() -> None:
    text = logs.redact(
        'GET https://x/y?access_token=abc123&page=2 {"client_secret": "s e c"} '
        "Authorization: Bearer eyJhbGciOi.x.y secret=hunter22 error_code=INVALID_FIELD"
    )
    for secret in ("abc123", "s e c", "eyJhbGciOi", "hunter22"):
        assert secret not in text
    assert "page=2" in text
    assert "error_code=INVALID_FIELD" in text


def test_access_log_drops_the_query_of_webhook_routes(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(Settings(log_format="json", log_level="INFO"))
    access = logging.getLogger("uvicorn.access")
    path = "/webhooks/salesforce/5d0c0b5e-0000-4000-8000-000000000000?secret=not-yet-known-xyz"
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "POST", path, "1.1", 200)
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", "/customers?external_id=001", "1.1", 200
    )
    webhook, customers = (json.loads(line) for line in lines(capsys.readouterr().err)[-2:])
    assert "not-yet-known-xyz" not in webhook["event"]
    assert (
        "POST /webhooks/salesforce/5d0c0b5e-0000-4000-8000-000000000000?[redacted]"
        in (webhook["event"])
    )
    assert webhook["logger"] == "uvicorn.access"
    assert "/customers?external_id=001" in customers["event"]


def test_a_real_sync_logs_each_failure_and_retry_with_the_runs_ids(
    configured: None, capsys: pytest.CaptureFixture[str], engine: Engine, sandbox: Sandbox
) -> None:
    """A sync against the HubSpot sandbox that meets a 500 (retried) and a record HubSpot
    refuses: one line each, carrying the organisation, connection and run ids, and the
    CRM's own reason for the failure."""
    world = make_world(engine, sandbox, "hubspot")
    companies = sandbox.hubspot.seed_companies(3)
    assert world.sync().status == "succeeded"
    refused = companies[0]
    with transaction(engine) as session:
        customer_id = session.scalar(
            select(LinkRow.customer_id).where(
                LinkRow.connection_id == world.connection_id, LinkRow.crm_id == refused
            )
        )
        assert customer_id is not None
        update_customer(
            session, world.organisation_id, customer_id, CustomerPatch(phone_number="+15550100")
        )
    logs.configure(Settings(log_format="json", log_level="DEBUG"), service="worker")
    sandbox.hubspot.set_faults(
        record_errors={refused: "validation"}, server_error_next=1, server_error_status=503
    )
    try:
        result = world.sync()
    finally:
        sandbox.hubspot.clear_faults()
    assert result.counters["failed"] == 1, result.counters
    events = [json.loads(line) for line in lines(capsys.readouterr().err) if line.startswith("{")]
    ids = {
        "organisation_id": world.organisation_id,
        "connection_id": world.connection_id,
        "run_id": result.run_id,
    }
    failed = [e for e in events if e["event"] == "record failed"]
    assert len(failed) == 1
    assert ids.items() <= failed[0].items()
    assert failed[0]["crm_id"] == refused and failed[0]["level"] == "warning"
    assert failed[0]["error_message"]  # the CRM's words
    retried = [e for e in events if e["event"] == "retrying CRM call"]
    assert retried and all(ids.items() <= e.items() for e in retried)
    assert {e["event"] for e in events} >= {"run started", "run finished"}


def test_the_crm_edges_metrics_carry_the_organisation_of_the_connection(
    engine: Engine, sandbox: Sandbox
) -> None:
    """API calls and rate-limit waits are labelled with the organisation, the connection and
    the CRM, as every other family is (an operator filters a tenant's calls by it)."""
    world = make_world(engine, sandbox, "hubspot")
    sandbox.hubspot.seed_companies(3)
    labels = {
        "crm": "hubspot",
        "organisation_id": world.organisation_id,
        "connection_id": world.connection_id,
    }
    sandbox.hubspot.set_faults(rate_limit_next=1)
    try:
        assert world.sync().status == "succeeded"
    finally:
        sandbox.hubspot.clear_faults()
    calls = [
        sample
        for metric in REGISTRY.collect()
        if metric.name == "crmsync_api_calls"
        for sample in metric.samples
        if sample.name == "crmsync_api_calls_total" and labels.items() <= sample.labels.items()
    ]
    assert {s.labels["status"] for s in calls} >= {"ok", "429"}
    waits = REGISTRY.get_sample_value("crmsync_rate_limit_waits_total", {**labels, "reason": "crm"})
    assert waits == 1
