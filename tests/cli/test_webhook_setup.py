"""``connections add`` ends by saying how to point the CRM's webhooks at crmsync, in each
connector's own words (``webhook_setup``), with the connection's webhook URL, never a
secret; a Salesforce connection without a webhook secret is told every webhook is refused
until it has one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.server import Sandbox, SandboxOptions
from sync.crypto import new_secret_key
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


def _said(run: Run, *args: str) -> str:
    result = run(*args)
    return " ".join((result.stdout + result.stderr).split())


def _url(run: Run, org: str, name: str, kind: str) -> str:
    shown = as_json(run("connections", "show", name, "--org", org, "--json"))
    return f"/webhooks/{kind}/{shown['id']}"


def test_hubspot_says_where_and_what_to_subscribe(run: Run, org: str, crm: Sandbox) -> None:
    said = _said(
        run, "connections", "add", "hubspot", "hs", "--org", org, "--host", crm.hubspot_url,
        "--access-token", "pat-token", "--client-secret", "hs-secret",
    )  # fmt: skip
    assert _url(run, org, "hs", "hubspot") in said
    assert "company.merge" in said and "v3 signature" in said
    assert "pat-token" not in said and "hs-secret" not in said


def test_salesforce_says_the_outbound_message_url_and_a_missing_secret(
    run: Run, org: str, crm: Sandbox
) -> None:
    common = (
        "--instance-url", crm.salesforce_url,
        "--organization-id", crm.salesforce.organization_id,
        "--ca-bundle", str(crm.ca_file), "--client-id", crm.salesforce.client_id,
        "--client-secret", crm.salesforce.client_secret,
    )  # fmt: skip
    with_secret = _said(
        run, "connections", "add", "salesforce", "sf", "--org", org, *common,
        "--webhook-secret", "w" * 16,
    )  # fmt: skip
    url = _url(run, org, "sf", "salesforce")
    assert "Outbound Message URL: http" in with_secret and f"{url}?secret=WEBHOOK_SECRET" in (
        with_secret
    )
    assert "w" * 16 not in with_secret and "no webhook secret yet" not in with_secret
    without = _said(run, "connections", "add", "salesforce", "sf2", "--org", org, *common)
    assert "no webhook secret yet" in without and "--credential webhook_secret" in without
