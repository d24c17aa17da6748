"""Optional fields differ from org to org (issue 12, part 3), through the CLI against the
sandbox as a new org / portal is by default, on SQLite and PostgreSQL: ``connections add``
as the README writes it succeeds, leaves out what the CRM lacks and says why (so does
``connections show``); an explicit map to a missing field and a missing external-id field
are refused with how to fix them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
from tests.cli.conftest import Run, as_json


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:  # the defaults: no multi-currency, no address3
        yield sb


@pytest.fixture
def crm(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    sandbox.hubspot.reset()
    sandbox.salesforce.reset()
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", new_secret_key())
    return sandbox


def _add_salesforce(run: Run, sb: Sandbox, org: str, *extra: str, code: int = 0) -> str:
    result = run(
        "connections", "add", "salesforce", "sf", "--org", org,
        "--instance-url", sb.salesforce_url, "--organization-id", sb.salesforce.organization_id,
        "--ca-bundle", str(sb.ca_file), "--client-id", sb.salesforce.client_id,
        "--client-secret", sb.salesforce.client_secret, "--webhook-secret", "w" * 16,
        *extra, code=code,
    )  # fmt: skip
    return result.stdout + result.stderr


def _add_hubspot(run: Run, sb: Sandbox, org: str, *extra: str, code: int = 0) -> str:
    result = run(
        "connections", "add", "hubspot", "hs", "--org", org, "--host", sb.hubspot_url,
        "--access-token", "pat-token", "--client-secret", "hs-secret",
        *extra, code=code,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_salesforce_without_multi_currency(run: Run, org: str, crm: Sandbox) -> None:
    said = " ".join(_add_salesforce(run, crm, org).split())
    assert "Added salesforce connection" in said
    assert "currency: the CRM lacks it: Account.CurrencyIsoCode exists only in orgs with" in said
    assert "email: salesforce has no default field for it: map one with --map" in said
    shown = as_json(run("connections", "show", "sf", "--org", org, "--json"))
    assert "currency" in shown["fields_the_crm_lacks"]
    assert shown["unmapped_fields"]["currency"].startswith("the CRM lacks it")
    table = " ".join(run("connections", "show", "sf", "--org", org).stdout.split())
    assert "Not mapped" in table and "multi-currency" in table
    # the connection syncs: the unmapped field is never asked of the org
    crm.salesforce.seed(3)
    assert as_json(run("sync", "sf", "--org", org, "--wait", "--json"))["status"] == "succeeded"


def test_an_explicit_map_to_a_missing_field_is_refused_with_how_to_fix_it(
    run: Run, org: str, crm: Sandbox
) -> None:
    said = _add_salesforce(run, crm, org, "--map", "currency=CurrencyIsoCode", code=4)
    assert "currency is mapped to CurrencyIsoCode" in said and "--map currency=" in said
    said = _add_salesforce(run, crm, org, "--external-id-field", "Billing_Id__c", code=4)
    assert "Account.Billing_Id__c does not exist" in said and "External ID" in said
    assert as_json(run("connections", "list", "--org", org, "--json")) == []
    # once the org has the field, the default map keeps it
    crm.salesforce.set_multi_currency(True)
    _add_salesforce(run, crm, org)
    shown = as_json(run("connections", "show", "sf", "--org", org, "--json"))
    assert shown["fields_the_crm_lacks"] == {} and "currency" not in shown["unmapped_fields"]


def test_hubspot_without_address3(run: Run, org: str, crm: Sandbox) -> None:
    said = _add_hubspot(run, crm, org, "--map", "address.line3=address3", code=4)
    assert "--map address.line3=" in said
    said = " ".join(_add_hubspot(run, crm, org).split())
    assert "address.line3: the CRM lacks it: address3 is a custom company property" in said
    crm.hubspot.set_address3(True)  # someone created it: `connections set` maps it again
    run("connections", "set", "hs", "--org", org, "--schedule", "600")
    shown = as_json(run("connections", "show", "hs", "--org", org, "--json"))
    assert shown["fields_the_crm_lacks"] == {}
