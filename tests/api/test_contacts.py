"""``GET/POST /customers/{id}/contacts`` and ``PATCH /customers/{id}/contacts/{contact_id}``
over HTTP, on both stores."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import Tenant


def _customer(client: TestClient, tenant: Tenant, name: str = "Acme") -> str:
    made = client.post("/customers", json={"customer_name": name}, headers=tenant.headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _add(client: TestClient, tenant: Tenant, customer: str, **body: Any) -> Any:
    return client.post(f"/customers/{customer}/contacts", json=body, headers=tenant.headers)


def test_add_list_and_change_a_contact(client: TestClient, tenant: Tenant) -> None:
    customer = _customer(client, tenant)
    added = _add(client, tenant, customer, name="Ann Lee", email="ann@example.com")
    assert added.status_code == 201, added.text
    contact = added.json()
    assert contact["communications"] == ["billing"]  # the default
    assert (contact["crm_id"], contact["state"], contact["pending"]) == (None, "active", True)
    _add(client, tenant, customer, name="Bo Park", communications=["legal", "updates"])
    listed = client.get(f"/customers/{customer}/contacts", headers=tenant.headers)
    assert [c["name"] for c in listed.json()] == ["Ann Lee", "Bo Park"]
    url = f"/customers/{customer}/contacts/{contact['id']}"
    wanted = {"communications": ["billing", "legal"]}
    changed = client.patch(url, json=wanted, headers=tenant.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["communications"] == ["billing", "legal"]
    assert (changed.json()["name"], changed.json()["email"]) == ("Ann Lee", "ann@example.com")
    cleared = client.patch(url, json={"email": None}, headers=tenant.headers)
    assert cleared.json()["email"] is None
    # one space between words, as a CRM joins first and last names
    spaced = client.patch(url, json={"name": "Ann   Marie  Lee"}, headers=tenant.headers)
    assert spaced.json()["name"] == "Ann Marie Lee"


def test_bad_input_is_422_naming_the_field(client: TestClient, tenant: Tenant) -> None:
    customer = _customer(client, tenant)
    for body, field in [
        ({"email": "a@example.com"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "A", "email": "not-an-email"}, "email"),
        ({"name": "A", "communications": ["spam"]}, "communications"),
        ({"name": "A", "phone": "1"}, "phone"),
    ]:
        answer = _add(client, tenant, customer, **body)
        assert answer.status_code == 422, body
        assert field in answer.text
    contact = _add(client, tenant, customer, name="Ann").json()
    url = f"/customers/{customer}/contacts/{contact['id']}"
    assert client.patch(url, json={"name": None}, headers=tenant.headers).status_code == 422
    assert client.get(f"/customers/{customer}/contacts", headers=tenant.headers).json() == [contact]


def test_an_email_is_used_once_per_customer(client: TestClient, tenant: Tenant) -> None:
    customer, other = _customer(client, tenant), _customer(client, tenant, "Other")
    assert _add(client, tenant, customer, name="A", email="a@example.com").status_code == 201
    twice = _add(client, tenant, customer, name="B", email="A@example.com")
    assert twice.status_code == 409 and "email" in twice.text
    assert _add(client, tenant, other, name="A", email="a@example.com").status_code == 201


def test_another_organisations_customer_is_404(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = _customer(client, other_tenant)
    contact = _add(client, other_tenant, theirs, name="Secret Person").json()
    base = f"/customers/{theirs}/contacts"
    assert client.get(base, headers=tenant.headers).status_code == 404
    assert _add(client, tenant, theirs, name="Intruder").status_code == 404
    patched = client.patch(f"{base}/{contact['id']}", json={"name": "X"}, headers=tenant.headers)
    assert patched.status_code == 404 and "Secret" not in patched.text
    unknown = f"/customers/{uuid.uuid4()}/contacts"
    assert client.get(unknown, headers=tenant.headers).status_code == 404
    mine = _customer(client, tenant)
    # a contact of another customer is not found through this one
    moved = client.patch(
        f"/customers/{mine}/contacts/{contact['id']}", json={"name": "X"}, headers=tenant.headers
    )
    assert moved.status_code == 404
    assert client.get(base, headers=other_tenant.headers).json()[0]["name"] == "Secret Person"
