"""A plug-in connector's connection in the console, as an admin adds and edits one: the
Pipedrive plug-in (``plugins/crmsync-pipedrive``, installed by ``make install``) against its
own emulator, through forms made from its own settings and credentials models (secrets in
password fields, never shown again), with nothing in crmsync knowing Pipedrive."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.setup import option_fields
from sync.crypto import decrypt_credentials
from sync.store.models import AuditEvent, ConnectionRow
from tests.conftest import service_missing
from tests.console.conftest import World
from tests.console.test_http import Visitor

TOKEN = "console-pipedrive-token-never-shown"
HOOK_PASSWORD = "console-hook-password-never-shown"
FORM = re.compile(r'<details class="connector-fields" id="fields-pipedrive">(.*?)</details>', re.S)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    try:
        module = importlib.import_module("crmsync_pipedrive.emulator")
    except ImportError as error:
        service_missing("the crmsync-pipedrive plug-in (make install)", error)
    with module.PipedriveEmulator(api_token=TOKEN) as running:
        yield running


@pytest.fixture
def admin(world: World) -> Iterator[Visitor]:
    visitor = Visitor(world)
    assert visitor.sign_in("admin").status_code == 303
    yield visitor
    visitor.close()


def _stored(world: World, name: str) -> ConnectionRow:
    [row] = [r for r in world.rows(ConnectionRow, organisation_id=world.org) if r.name == name]
    return row


def test_the_add_form_of_a_plugin_is_made_from_its_models(admin: Visitor, emulator: Any) -> None:
    from crmsync_pipedrive import PipedriveConnector

    page = admin.http.get("/console/connections").text
    found = FORM.search(page)
    assert found, "no form for the pipedrive plug-in"
    form = found.group(1)
    for field in option_fields(PipedriveConnector):
        prefix = "credential." if field.credential else "setting."
        assert f'name="{prefix}{field.name}"' in form, field.name
    # secrets are password fields; a setting's default is shown, a required one required
    assert re.search(r'type="password" name="credential\.api_token"[^>]*required', form)
    assert 'type="password" name="credential.webhook_password"' in form
    assert re.search(r'type="text" name="setting\.company_url"[^>]*required', form)
    assert re.search(
        r'type="number"[^>]*name="setting\.max_attempts"[^>]*placeholder="default 5"', form
    )


def test_an_admin_adds_and_edits_a_pipedrive_connection(
    world: World, admin: Visitor, emulator: Any
) -> None:
    from crmsync_pipedrive.emulator import CRMSYNC_ID_KEY, PHONE_KEY

    emulator.reset()
    name = f"pd-console-{world.backend}"
    form = {
        "csrf_token": admin.csrf("/console/connections"),
        "kind": "pipedrive",
        "name": name,
        "setting.company_url": emulator.url,
        "setting.external_id_key": CRMSYNC_ID_KEY,
        "setting.max_attempts": "2",
        "setting.request_timeout": "",  # blank: the model's default applies
        "credential.api_token": TOKEN,
        "credential.webhook_user": "crmsync",
        "credential.webhook_password": HOOK_PASSWORD,
        "check": "true",
    }
    # the model's own words for a bad setting; nothing stored, nothing typed echoed
    refused = admin.http.post(
        "/console/connections", data={**form, "setting.company_url": "pipedrive.example"}
    )
    assert refused.status_code == 303
    shown = admin.http.get("/console/connections").text
    assert "--company-url: not an http(s) URL" in shown and TOKEN not in shown
    assert name not in {r.name for r in world.rows(ConnectionRow, organisation_id=world.org)}
    # checked with the emulator, then stored: settings typed, secrets encrypted
    added = admin.http.post("/console/connections", data=form)
    assert added.status_code == 303
    page = admin.http.get(added.headers["location"]).text
    assert name in page and "pipedrive" in page and emulator.url in page
    assert TOKEN not in page and HOOK_PASSWORD not in page
    row = _stored(world, name)
    assert row.settings == {
        "company_url": emulator.url,
        "external_id_key": CRMSYNC_ID_KEY,
        "max_attempts": 2,
    }
    assert TOKEN not in row.credentials
    assert decrypt_credentials(world.settings, row.credentials) == {
        "api_token": TOKEN,
        "webhook_user": "crmsync",
        "webhook_password": HOOK_PASSWORD,
    }
    assert emulator.api_calls() > 0  # the check asked Pipedrive
    # the connection's page edits the same fields: settings filled in, secrets never
    assert 'id="connector-settings"' in page
    assert f'name="setting.company_url" value="{emulator.url}"' in page
    assert re.search(r'name="credential.api_token"[^>]*placeholder="unchanged"', page)
    edit = {
        "csrf_token": admin.csrf(added.headers["location"]),
        "setting.max_attempts": "4",
        "credential.webhook_password": "a-new-hook-password",
        "check": "true",
    }
    path = added.headers["location"] + "/connector"
    assert admin.http.post(path, data={**edit, "setting.max_attempts": "0"}).status_code == 303
    shown = admin.http.get(added.headers["location"]).text
    assert "Connector settings not changed" in shown and "greater than or equal to 1" in shown
    assert _stored(world, name).settings["max_attempts"] == 2
    assert admin.http.post(path, data=edit).status_code == 303
    shown = admin.http.get(added.headers["location"]).text
    assert "max_attempts, webhook_password changed" in shown
    assert "a-new-hook-password" not in shown
    row = _stored(world, name)
    assert row.settings["max_attempts"] == 4 and row.settings["company_url"] == emulator.url
    stored = decrypt_credentials(world.settings, row.credentials)
    assert stored["webhook_password"] == "a-new-hook-password" and stored["api_token"] == TOKEN
    # a field the emulated company does not have is refused by the check with Pipedrive
    wrong = {
        **edit,
        "csrf_token": admin.csrf(added.headers["location"]),
        "setting.max_attempts": "",
    }
    wrong["setting.external_id_key"] = "no_such_field_key"
    assert admin.http.post(path, data=wrong).status_code == 303
    assert "no_such_field_key" in admin.http.get(added.headers["location"]).text
    assert _stored(world, name).settings["external_id_key"] == CRMSYNC_ID_KEY
    # the audit trail names what changed, never a credential's value
    trail = [(a.action, a.detail) for a in world.rows(AuditEvent, subject=row.id)]
    assert (
        "connection_changed",
        {"settings": {"max_attempts": 4}, "credentials": ["webhook_password"]},
    ) in trail
    assert all("a-new-hook-password" not in str(detail) for _, detail in trail)
    assert PHONE_KEY  # the emulated company's custom fields exist for --map


def test_operators_cannot_change_a_connector(world: World, emulator: Any) -> None:
    operator = Visitor(world)
    try:
        assert operator.sign_in("operator").status_code == 303
        page = operator.http.get(f"/console/connections/{world.hubspot}").text
        assert 'id="connector-settings"' not in page
        token = operator.csrf("/console/connections")
        answer = operator.http.post(
            f"/console/connections/{world.hubspot}/connector",
            data={"csrf_token": token, "setting.max_attempts": "9"},
        )
        assert answer.status_code == 403
    finally:
        operator.close()
