"""The ``no_control_characters`` rule over HTTP, on SQLite and PostgreSQL: a control
character is a 422 naming the field and the rule (never a 500); newlines are kept in the
address lines."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sync.customer import NO_CONTROL_CHARACTERS
from tests.api.conftest import Tenant

SEED = {"customer_name": "Acme Corporation", "email": "billing@acme.com"}


def rules_of(response: Any) -> dict[str, str]:
    """{field: type} of a 422's field errors."""
    return {e["field"]: e["type"] for e in response.json()["detail"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"customer_name": "Acme\x00Corp"}, "customer_name", id="nul-name"),
        pytest.param({"customer_name": "Acme\nCorp"}, "customer_name", id="newline-name"),
        pytest.param({"external_id": "A\x1b1"}, "external_id", id="escape-external-id"),
        pytest.param({"address": {"city": "Par\x7fis"}}, "address.city", id="del-city"),
        pytest.param({"address": {"line1": "1 Main\x00"}}, "address.line1", id="nul-line1"),
        pytest.param({"custom_data": {"k": "v\x00"}}, "custom_data", id="nul-custom-data"),
        pytest.param({"contacts": [{"name": "Ann\x00"}]}, "contacts.0.name", id="nul-contact"),
    ],
)
def test_a_control_character_is_422_naming_field_and_rule(
    client: TestClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = client.post("/customers", json={**SEED, **body}, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert rules_of(response) == {field: NO_CONTROL_CHARACTERS}
    assert client.get("/customers", headers=tenant.headers).json() == []


def test_an_update_follows_the_same_rule(client: TestClient, tenant: Tenant) -> None:
    created = client.post("/customers", json=SEED, headers=tenant.headers).json()
    url = f"/customers/{created['id']}"
    refused = client.patch(url, json={"customer_name": "A\x00"}, headers=tenant.headers)
    assert refused.status_code == 422, refused.text
    assert rules_of(refused) == {"customer_name": NO_CONTROL_CHARACTERS}
    assert client.get(url, headers=tenant.headers).json()["customer_name"] == SEED["customer_name"]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_newlines_are_kept_in_the_address_lines(
    client: TestClient, tenant: Tenant, newline: str
) -> None:
    line1 = f"1 Main Street{newline}Floor 2"
    response = client.post(
        "/customers", json={**SEED, "address": {"line1": line1}}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    got = client.get(f"/customers/{response.json()['id']}", headers=tenant.headers).json()
    assert got["address"]["line1"] == line1


def test_a_control_character_in_the_query_is_refused(client: TestClient, tenant: Tenant) -> None:
    refused = client.get("/customers?external_id=A%011", headers=tenant.headers)
    assert refused.status_code == 422, refused.text
    assert rules_of(refused) == {"external_id": NO_CONTROL_CHARACTERS}
    # a NUL in a URL is refused before any route (no id, search or filter holds one)
    nul = client.get("/customers?external_id=A%001", headers=tenant.headers)
    assert nul.status_code == 400, nul.text
    assert "NUL" in nul.json()["detail"]
    assert client.get("/customers/%00", headers=tenant.headers).status_code == 400
