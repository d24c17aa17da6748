"""The operator's commands through the CLI, against the sandbox, on SQLite and PostgreSQL:
connections, sync (plan, foreground, queued), runs, conflicts, failures and retry, resync,
secret-key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.store.db import engine_for, transaction
from tests.cli.conftest import Run, as_json

TOKEN = "hubspot-token-that-must-never-print"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture
def crm(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    sandbox.hubspot.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    return sandbox


def add_hubspot(run: Run, crm: Sandbox, org: str, *extra: str, code: int = 0) -> str:
    result = run(
        "connections",
        "add",
        "hubspot",
        "hs",
        "--org",
        org,
        "--host",
        crm.hubspot_url,
        "--client-secret",
        "sandbox-client-secret",
        "--setting",
        "backoff_base_seconds=0.01",
        "--json",
        *extra,
        input=f"{TOKEN}\n",  # the token is asked at a hidden prompt
        code=code,
    )
    assert TOKEN not in result.stdout + result.stderr
    return str(json.loads(result.stdout)["id"]) if code == 0 else ""


def test_secret_key_prints_a_new_key(run: Run) -> None:
    key = run("secret-key").stdout.strip()
    Fernet(key.encode())  # a valid key
    assert run("secret-key").stdout.strip() != key


def test_adding_a_connection_without_a_secret_key_says_what_to_do(
    run: Run, org: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMSYNC_SECRET_KEY", raising=False)
    result = run(
        "connections", "add", "hubspot", "hs", "--org", org, "--host", sandbox.hubspot_url,
        input=f"{TOKEN}\n", code=1,
    )  # fmt: skip
    assert "CRMSYNC_SECRET_KEY" in result.stderr and "crmsync secret-key" in result.stderr


def test_connections_add_list_show_test_pause_resume_set(run: Run, org: str, crm: Sandbox) -> None:
    connection = add_hubspot(run, crm, org, "--schedule", "60")
    listed = as_json(run("connections", "list", "--org", org, "--json"))
    assert [c["id"] for c in listed] == [connection]
    shown = run("connections", "show", "hs", "--org", org, "--json")
    assert as_json(shown)["credentials"] == "(stored encrypted)"
    assert TOKEN not in shown.stdout and "sandbox-client-secret" not in shown.stdout
    table = run("connections", "show", connection, "--org", org)
    assert "hs" in table.stdout and TOKEN not in table.stdout
    assert as_json(run("connections", "test", "hs", "--org", org, "--json")) == {
        "connection": "hs",
        "ok": True,
    }
    assert as_json(run("connections", "pause", "hs", "--org", org, "--json"))["state"] == "paused"
    assert run("sync", "hs", "--org", org, "--wait", code=4).stderr.count("paused")
    assert as_json(run("connections", "resume", "hs", "--org", org, "--json"))["state"] == "active"
    changed = run(
        "connections", "set", "hs", "--org", org, "--schedule", "120",
        "--credential", "client_secret", "--json", input="rotated-secret\n",
    )  # fmt: skip
    assert as_json(changed)["schedule_seconds"] == 120
    assert "rotated-secret" not in changed.stdout
    # clear refusals with the documented exit codes
    run("connections", "show", "nope", "--org", org, code=3)
    run("connections", "set", "hs", "--org", org, "--match", "fuzzy", code=4)
    run("connections", "set", "hs", "--org", org, code=2)
    bad_map = add_hubspot(run, crm, org, "--map", "customer_name=no_such_property", code=4)
    assert bad_map == ""


def test_sync_plan_wait_runs_conflicts_and_resync(
    run: Run, org: str, crm: Sandbox, settings_env: str, tmp_path: Path
) -> None:
    ids = crm.hubspot.seed_companies(3)
    add_hubspot(run, crm, org)

    plan = as_json(run("sync", "hs", "--org", org, "--plan", "--json"))
    assert len(plan["plan"]["billing_creates"]) == 3
    assert as_json(run("customers", "list", "--org", org, "--json")) == []
    assert "Billing: customers to create" in run("sync", "hs", "--org", org, "--plan").stdout

    result = as_json(run("sync", "hs", "--org", org, "--wait", "--json"))
    assert result["status"] == "succeeded" and result["counters"]["created"] == 3
    runs = as_json(run("runs", "list", "--org", org, "--json"))
    assert [r["id"] for r in runs] == [result["run_id"]]
    shown = as_json(run("runs", "show", result["run_id"], "--org", org, "--json"))
    assert shown["trigger"] == "operator" and shown["status"] == "succeeded"
    run("runs", "show", "nope", "--org", org, code=3)

    # the same field changed differently on both sides: a conflict for the operator
    customers = as_json(run("customers", "list", "--org", org, "--json"))
    by_crm = {c["external_id"]: c["id"] for c in customers}
    with transaction(engine_for(settings_env)) as session:
        for crm_id in ids[:2]:
            patch = CustomerPatch(customer_name=f"Billing {crm_id}")
            update_customer(session, org, by_crm[crm_id], patch)
    for crm_id in ids[:2]:
        crm.hubspot.edit(crm_id, {"name": f"CRM {crm_id}"})
    run("sync", "hs", "--org", org, "--wait")
    conflicts = as_json(run("conflicts", "list", "--org", org, "--json"))
    assert {c["crm"] for c in conflicts} == {f"CRM {i}" for i in ids[:2]}
    first, second = sorted(conflicts, key=lambda c: c["crm_id"])
    shown = as_json(run("conflicts", "show", first["id"], "--org", org, "--json"))
    assert shown["billing"] == f"Billing {first['crm_id']}"
    run("conflicts", "resolve", first["id"], "--org", org, code=2)
    resolved = as_json(
        run("conflicts", "resolve", first["id"], "--org", org, "--keep", "crm", "--json")
    )
    assert resolved["billing_written"] and not resolved["crm_written"]
    run("conflicts", "resolve", first["id"], "--org", org, "--keep", "crm", code=4)
    agreed = "Agreed Name Ltd"
    run("conflicts", "resolve", second["id"], "--org", org, "--set", agreed)
    assert crm.hubspot.read(second["crm_id"])["properties"]["name"] == agreed
    assert as_json(run("conflicts", "list", "--org", org, "--json")) == []
    names = {c["customer_name"] for c in as_json(run("customers", "list", "--org", org, "--json"))}
    assert {f"CRM {first['crm_id']}", agreed} <= names

    # resync pulls one customer's CRM record now
    crm.hubspot.edit(ids[2], {"name": "Resynced Name"})
    done = as_json(run("resync", by_crm[ids[2]], "--org", org, "--json"))
    assert [r["status"] for r in done] == ["succeeded"]
    customer = as_json(run("customers", "show", by_crm[ids[2]], "--org", org, "--json"))
    assert customer["customer_name"] == "Resynced Name"
    # --json carries what the table shows: the links (aliases) and the contacts
    assert customer["links"] == [{"connection": "hs", "crm_id": ids[2], "state": "active"}]
    assert customer["contacts"] and all(c["crm_id"] for c in customer["contacts"])
    run("resync", "00000000-0000-0000-0000-000000000000", "--org", org, code=3)

    # without --wait the sync is queued (the embedded default: a file queue beside the store)
    queued = as_json(run("sync", "hs", "--org", org, "--full", "--json"))
    assert queued["queued"] is True
    said = " ".join(run("sync", "hs", "--org", org).stdout.split())
    assert "A worker runs it (`crmsync worker`, or `crmsync up` on one machine)" in said
    folders = [tmp_path / ".crmsync" / "queue" / "messages", Path.cwd() / ".crmsync"]
    if settings_env.startswith("sqlite"):
        assert any(folders[0].glob("*.msg"))


def test_failures_show_and_retry_by_id_and_by_run(run: Run, org: str, crm: Sandbox) -> None:
    ids = crm.hubspot.seed_companies(2)
    add_hubspot(run, crm, org)
    run("sync", "hs", "--org", org, "--wait")
    crm.hubspot.set_faults(record_errors={crm_id: "validation" for crm_id in ids})
    customers = as_json(run("customers", "list", "--org", org, "--json"))
    for customer in customers:
        crm.hubspot.edit(customer["external_id"], {"name": "changed in crm"})
    # the CRM edits pull fine; push a billing edit so the CRM refuses records
    from sync.settings import get_settings

    with transaction(engine_for(get_settings().database_url)) as session:
        for n, customer in enumerate(customers):
            update_customer(
                session, org, customer["id"], CustomerPatch(phone_number=f"+1555000{n}")
            )
    run("sync", "hs", "--org", org, "--wait", code=None)
    failures = as_json(run("failures", "list", "--org", org, "--json"))
    assert {f["crm_id"] for f in failures} == set(ids)
    shown = as_json(run("failures", "show", failures[0]["id"], "--org", org, "--json"))
    assert shown["error_kind"] == "validation"
    run("failures", "show", "nope", "--org", org, code=3)
    run("retry", "--org", org, code=2)  # choose what to retry
    run("retry", "nope", "--org", org, code=3)
    run("retry", "--run", "nope", "--org", org, code=3)  # no such run: not "nothing to retry"
    crm.hubspot.clear_faults()
    one = as_json(run("retry", failures[0]["id"], "--org", org, "--json"))
    assert one["recovered"] == 1
    by_run = as_json(run("retry", "--run", failures[1]["run_id"], "--org", org, "--json"))
    assert by_run["recovered"] >= 1 and by_run["still_failing"] == 0
    assert as_json(run("failures", "list", "--org", org, "--json")) == []
    assert len(as_json(run("failures", "list", "--org", org, "--all", "--json"))) >= 2
    assert {crm.hubspot.read(i)["properties"]["phone"] for i in ids} == {"+15550000", "+15550001"}
