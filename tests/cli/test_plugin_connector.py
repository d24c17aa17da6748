"""A connector from another package, end to end through the CLI: the Pipedrive plug-in
(``plugins/crmsync-pipedrive``, installed by ``make install``) against its own emulator.

Listed by ``crmsync connectors list``, added with ``crmsync connections add pipedrive``
(options made from its models, the token at a hidden prompt), synced with ``--wait``, and a
conflict opened and resolved -- with nothing in crmsync knowing Pipedrive.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from sync.crypto import decrypt_credentials, new_secret_key
from sync.customer import CustomerPatch
from sync.customers import update_customer
from sync.settings import get_settings
from sync.store.db import engine_for, transaction
from sync.store.models import ConnectionRow
from tests.cli.conftest import Run, as_json
from tests.conftest import service_missing

TOKEN = "pipedrive-api-token-that-must-never-print"
HOOK_PASSWORD = "hook-password-that-must-never-print"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    try:
        module = importlib.import_module("crmsync_pipedrive.emulator")
    except ImportError as error:
        service_missing("the crmsync-pipedrive plug-in (make install)", error)
    with module.PipedriveEmulator(api_token=TOKEN) as running:
        yield running


@pytest.fixture
def pipedrive(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    emulator.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    return emulator


def add_pipedrive(run: Run, emulator: Any, org: str, *extra: str, code: int = 0) -> str:
    from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY

    result = run(
        "connections", "add", "pipedrive", "pd", "--org", org,
        "--company-url", emulator.url, "--external-id-key", CRMSYNC_ID_KEY,
        "--webhook-user", "crmsync",
        "--backoff-base-seconds", "0.01", "--setting", "clock_skew_seconds=0",
        "--json", *extra,
        # the API token, then the webhook password (a webhook user was given), are asked
        # at hidden prompts
        input=f"{TOKEN}\n{HOOK_PASSWORD}\n",
        code=code,
    )  # fmt: skip
    assert TOKEN not in result.stdout + result.stderr
    assert HOOK_PASSWORD not in result.stdout + result.stderr
    return str(as_json(result)["id"]) if code == 0 else result.stderr


def test_the_plugin_is_listed_with_its_package_and_capabilities(
    run: Run, pipedrive: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # option names unfolded in the help
    listed = {c["key"]: c for c in as_json(run("connectors", "list", "--json"))}
    assert {"salesforce", "hubspot", "pipedrive"} <= set(listed)
    assert listed["pipedrive"]["package"] == "crmsync-pipedrive"
    assert listed["pipedrive"]["capabilities"] == {
        "webhooks": True,
        "merges": "webhooks",
        "contacts": True,
        "field_describe": True,
        "contact_push": False,
        "contact_find": False,
    }
    assert listed["salesforce"]["package"] == "crmsync"
    assert listed["salesforce"]["capabilities"]["contact_push"] is True
    table = run("connectors", "list").stdout
    assert "pipedrive" in table and "crmsync-pipedrive" in table
    help_text = run("connections", "add", "pipedrive", "--help").stdout
    assert "--company-url" in help_text and "--external-id-key" in help_text
    assert "PIPEDRIVE_API_TOKEN" in help_text and "PIPEDRIVE_WEBHOOK_PASSWORD" in help_text


def test_bad_options_get_the_models_own_words(run: Run, org: str, pipedrive: Any) -> None:
    refused = add_pipedrive(run, pipedrive, org, "--company-url", "pipedrive.example", code=4)
    assert "--company-url" in refused and "not an http(s) URL" in refused
    refused = add_pipedrive(run, pipedrive, org, "--max-attempts", "0", code=4)
    assert "--max-attempts" in refused and "greater than or equal to 1" in refused
    # a field the company does not have is refused by the check against Pipedrive
    refused = add_pipedrive(run, pipedrive, org, "--map", "phone_number=no_such_key", code=4)
    assert "no_such_key" in refused
    run("connections", "add", "pipedrive", "pd", "--org", org, code=2)  # --company-url missing
    assert as_json(run("connections", "list", "--org", org, "--json")) == []


def test_add_sync_conflict_and_resolution_against_the_emulator(
    run: Run, org: str, pipedrive: Any, settings_env: str
) -> None:
    ids = pipedrive.seed(3)
    connection = add_pipedrive(run, pipedrive, org)
    shown = as_json(run("connections", "show", "pd", "--org", org, "--json"))
    assert shown["id"] == connection and shown["kind"] == "pipedrive"
    assert shown["credentials"] == "(stored encrypted)"
    assert as_json(run("connections", "test", "pd", "--org", org, "--json"))["ok"] is True
    with transaction(engine_for(settings_env)) as session:
        row = session.get(ConnectionRow, connection)
        assert row is not None and TOKEN not in row.credentials  # stored encrypted
        stored = decrypt_credentials(get_settings(), row.credentials)
    assert stored == {
        "api_token": TOKEN,
        "webhook_user": "crmsync",
        "webhook_password": HOOK_PASSWORD,
    }

    result = as_json(run("sync", "pd", "--org", org, "--wait", "--json"))
    assert result["status"] == "succeeded" and result["counters"]["created"] == 3
    customers = as_json(run("customers", "list", "--org", org, "--json"))
    by_crm = {c["external_id"]: c for c in customers}
    assert set(by_crm) == set(ids)
    assert by_crm[ids[0]]["address"]["city"] == "Springfield"
    # Pipedrive holds a country name only: the code is derived from it
    assert by_crm[ids[0]]["address"]["country"] == "United States"
    assert by_crm[ids[0]]["address"]["country_code"] == "US"

    # the same field changed differently on both sides: a conflict for the operator
    with transaction(engine_for(settings_env)) as session:
        for crm_id in ids[:2]:
            patch = CustomerPatch(customer_name=f"Billing {crm_id}")
            update_customer(session, org, by_crm[crm_id]["id"], patch)
    for crm_id in ids[:2]:
        pipedrive.edit(crm_id, name=f"CRM {crm_id}")
    run("sync", "pd", "--org", org, "--wait")
    conflicts = as_json(run("conflicts", "list", "--org", org, "--json"))
    assert {c["crm"] for c in conflicts} == {f"CRM {i}" for i in ids[:2]}
    first, second = sorted(conflicts, key=lambda c: c["crm_id"])
    resolved = as_json(
        run("conflicts", "resolve", first["id"], "--org", org, "--keep", "crm", "--json")
    )
    assert resolved["billing_written"] and not resolved["crm_written"]
    run("conflicts", "resolve", second["id"], "--org", org, "--set", "Agreed Name Ltd")
    assert pipedrive.read(second["crm_id"]).name == "Agreed Name Ltd"
    assert as_json(run("conflicts", "list", "--org", org, "--json")) == []
    names = {c["customer_name"] for c in as_json(run("customers", "list", "--org", org, "--json"))}
    assert {f"CRM {first['crm_id']}", "Agreed Name Ltd"} <= names

    # a billing-side edit is pushed to Pipedrive by the next sync; nothing else changes
    with transaction(engine_for(settings_env)) as session:
        patch = CustomerPatch(customer_name="Pushed From Billing")
        update_customer(session, org, by_crm[ids[2]]["id"], patch)
    again = as_json(run("sync", "pd", "--org", org, "--wait", "--json"))
    assert again["status"] == "succeeded"
    assert pipedrive.read(ids[2]).name == "Pushed From Billing"


def test_a_plugin_that_cannot_be_loaded_is_listed_with_why_and_hides_nothing(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import EntryPoint

    from connectors import registry

    real = registry._entry_points()
    broken = EntryPoint("acme", "crmsync_acme_not_installed:AcmeConnector", registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: {**real, "acme": broken})
    listed = {c["key"]: c for c in as_json(run("connectors", "list", "--json"))}
    assert listed["acme"]["package"] == "crmsync_acme_not_installed"
    assert "cannot be loaded: ModuleNotFoundError" in listed["acme"]["error"]
    assert listed["hubspot"]["error"] is None and listed["hubspot"]["capabilities"]["webhooks"]
    monkeypatch.setenv("COLUMNS", "250")
    table = run("connectors", "list").stdout
    assert "acme" in table and "cannot be loaded" in table and "hubspot" in table
    assert "contacts found by e-mail" in table  # HubSpot's contact_find, in words
    # `connections add` lists the connectors that load, and names a broken one's error
    listing = run("connections", "add", "--help").stdout
    assert "hubspot" in listing and "acme" not in listing
    refused = run("connections", "add", "acme", "x", "--org", "o", code=1)
    assert "the acme connector cannot be loaded: ModuleNotFoundError" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr


def test_adding_it_says_how_to_create_its_webhooks_in_its_own_words(
    run: Run, org: str, pipedrive: Any
) -> None:
    from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY

    result = run(
        "connections", "add", "pipedrive", "pd", "--org", org,
        "--company-url", pipedrive.url, "--external-id-key", CRMSYNC_ID_KEY,
        "--webhook-user", "crmsync", "--no-check",
        input=f"{TOKEN}\n{HOOK_PASSWORD}\n",
    )  # fmt: skip
    said = " ".join((result.stdout + result.stderr).split())
    shown = as_json(run("connections", "show", "pd", "--org", org, "--json"))
    assert "subscription_url http" in said and f"/webhooks/pipedrive/{shown['id']}" in said
    assert "POST /v1/webhooks" in said and "http_auth_password" in said
    assert TOKEN not in said and HOOK_PASSWORD not in said
