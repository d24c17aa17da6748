"""Smaller things an operator meets (issue 12, part 6), through the CLI against the sandbox,
on SQLite and PostgreSQL: a connection added to an organisation with customers creates no
CRM records on its first sync unless asked; ``connections set --schedule`` re-arms the next
sync; ``--ca-bundle`` is stored absolute; ``runs list`` names the connection and the CRM
records created, and a run that left failures says so; ``customers show --json`` carries
links and contacts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.store.db import engine_for, transaction
from tests.cli.conftest import Run, as_json


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture
def crm(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    sandbox.hubspot.reset()
    sandbox.salesforce.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    return sandbox


def _add_hubspot(run: Run, sb: Sandbox, org: str, *extra: str) -> str:
    result = run(
        "connections", "add", "hubspot", "hs", "--org", org, "--host", sb.hubspot_url,
        "--access-token", "pat-token", "--client-secret", "hs-secret",
        "--setting", "backoff_base_seconds=0.01", *extra,
    )  # fmt: skip
    return " ".join((result.stdout + result.stderr).split())


def _import(run: Run, org: str, tmp_path: Path, count: int) -> None:
    path = tmp_path / "customers.csv"
    rows = "".join(f"Billing Customer {n}\n" for n in range(count))
    path.write_text("customer_name\n" + rows)
    run("customers", "import", str(path), "--org", org)


def test_a_first_sync_creates_no_crm_records_for_existing_customers_unless_asked(
    run: Run, org: str, crm: Sandbox, tmp_path: Path
) -> None:
    _import(run, org, tmp_path, 3)
    said = _add_hubspot(run, crm, org)
    assert "The organisation has 3 billing customers: the first sync creates no CRM" in said
    assert "--push-creates" in said
    assert (
        as_json(run("connections", "show", "hs", "--org", org, "--json"))["push_creates"] is False
    )
    done = as_json(run("sync", "hs", "--org", org, "--wait", "--json"))
    assert done["status"] == "succeeded" and done["counters"].get("crm_created", 0) == 0
    assert crm.hubspot.portal.companies.active == []  # nothing was created in the CRM

    # asked for: the operator's flag, with what it will do
    run("connections", "set", "hs", "--org", org, "--push-creates")
    done = as_json(run("sync", "hs", "--org", org, "--wait", "--full", "--json"))
    assert done["counters"].get("crm_created") == 3
    runs = as_json(run("runs", "list", "--org", org, "--json"))
    assert runs[0]["connection"] == "hs" and runs[0]["crm_records_created"] == 3
    table = " ".join(run("runs", "list", "--org", org).stdout.split())
    assert "hs" in table and "CRM created" in table


def test_an_empty_organisation_pushes_creates_and_the_flag_is_announced(
    run: Run, org: str, crm: Sandbox, tmp_path: Path
) -> None:
    _add_hubspot(run, crm, org)
    assert as_json(run("connections", "show", "hs", "--org", org, "--json"))["push_creates"]
    other = as_json(run("orgs", "create", "Globex", "--json"))["id"]
    _import(run, other, tmp_path, 2)
    said = _add_hubspot(run, crm, other, "--push-creates")
    assert "The first sync may create up to 2 CRM records" in said


def test_set_schedule_rearms_the_next_sync(run: Run, org: str, crm: Sandbox) -> None:
    _add_hubspot(run, crm, org, "--schedule", "900")
    run("sync", "hs", "--org", org, "--wait")
    before = as_json(run("connections", "show", "hs", "--org", org, "--json"))
    last = datetime.fromisoformat(before["last_sync_at"])
    assert datetime.fromisoformat(before["next_sync_at"]) - last == timedelta(seconds=900)
    after = as_json(run("connections", "set", "hs", "--org", org, "--schedule", "60", "--json"))
    assert datetime.fromisoformat(after["next_sync_at"]) - last == timedelta(seconds=60)


def test_ca_bundle_is_stored_as_an_absolute_path(
    run: Run, org: str, crm: Sandbox, tmp_path: Path
) -> None:
    shutil.copy(crm.ca_file, tmp_path / "sandbox-ca.pem")  # the CLI runs in tmp_path
    run(
        "connections", "add", "salesforce", "sf", "--org", org,
        "--instance-url", crm.salesforce_url, "--organization-id", crm.salesforce.organization_id,
        "--ca-bundle", "sandbox-ca.pem", "--client-id", crm.salesforce.client_id,
        "--client-secret", crm.salesforce.client_secret, "--webhook-secret", "w" * 16,
    )  # fmt: skip
    shown = as_json(run("connections", "show", "sf", "--org", org, "--json"))
    assert shown["settings"]["ca_bundle"] == str((tmp_path / "sandbox-ca.pem").resolve())
    run("connections", "set", "sf", "--org", org, "--ca-bundle", "./sandbox-ca.pem")
    shown = as_json(run("connections", "show", "sf", "--org", org, "--json"))
    assert Path(shown["settings"]["ca_bundle"]).is_absolute()


def test_a_run_that_left_failures_says_so(
    run: Run, org: str, crm: Sandbox, settings_env: str
) -> None:
    ids = crm.hubspot.seed_companies(3)
    _add_hubspot(run, crm, org)
    run("sync", "hs", "--org", org, "--wait")
    customers = as_json(run("customers", "list", "--org", org, "--json"))
    crm.hubspot.set_faults(record_errors={crm_id: "validation" for crm_id in ids[:2]})
    with transaction(engine_for(settings_env)) as session:
        for customer in customers:
            patch = CustomerPatch(phone_number="+15550100")
            update_customer(session, org, customer["id"], patch)
    run("sync", "hs", "--org", org, "--wait", code=None)
    (latest, *_) = as_json(run("runs", "list", "--org", org, "--json"))
    assert latest["status"] == "succeeded" and latest["failures"] == 2
    assert latest["status_text"] == "succeeded with 2 failures"
    assert "succeeded with 2 failures" in " ".join(run("runs", "list", "--org", org).stdout.split())
    shown = as_json(run("customers", "show", customers[0]["id"], "--org", org, "--json"))
    assert shown["links"][0]["connection"] == "hs" and shown["links"][0]["state"] == "active"
    assert {"name", "email", "communications", "crm_id"} <= set(shown["contacts"][0])
