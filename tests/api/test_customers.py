"""The customer API over HTTP, on SQLite and PostgreSQL: every rule of issue 2."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Tenant

SEED = {"customer_name": "Acme Corporation", "email": "billing@acme.com"}


def create(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post("/customers", json={**SEED, **body}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def fields_of(response: Any) -> dict[str, str]:
    """The 4xx body's field errors as {field: message}."""
    return {e["field"]: e["msg"] for e in response.json()["detail"]}


def test_seed_example_creates_a_customer_with_defaults(client: TestClient, tenant: Tenant) -> None:
    response = client.post("/customers", json=SEED, headers=tenant.headers)
    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["id"])
    assert body["customer_name"] == "Acme Corporation"
    assert body["email"] == "billing@acme.com"
    assert body["communications_enabled"] is True
    assert body["auto_charge_enabled"] is True
    assert set(body) == {
        "id",
        "external_id",
        "customer_name",
        "email",
        "phone_number",
        "address",
        "ship_to_address",
        "tax_info",
        "custom_data",
        "currency",
        "communications_enabled",
        "auto_charge_enabled",
        "business_entity_id",
    }
    fetched = client.get(f"/customers/{body['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_full_body_round_trips(client: TestClient, tenant: Tenant, entity_id: str) -> None:
    address = {
        "line1": "1 Main St",
        "line2": "Suite 100",
        "line3": None,
        "city": "Paris",
        "state": None,
        "zipCode": "75001",
        "country": "France",
        "country_code": "FR",
    }
    body = create(
        client,
        tenant,
        external_id="001ABC",
        phone_number="+33 1 23 45 67 89",
        address=address,
        ship_to_address=address,
        tax_info=[{"jurisdiction": "FR", "tax_type": "VAT", "value": "FR123"}],
        custom_data={"exempt_tax": True, "users": [{"name": "a"}]},
        currency="eur",
        communications_enabled=False,
        business_entity_id=entity_id,
    )
    assert body["address"] == address
    assert body["currency"] == "EUR"
    assert body["custom_data"] == {"exempt_tax": True, "users": [{"name": "a"}]}
    assert body["communications_enabled"] is False
    assert body["business_entity_id"] == entity_id


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({"organisation": "ORG"}, id="no-key"),
        pytest.param({"x-api-key": "KEY"}, id="no-organisation"),
        pytest.param({"organisation": "ORG", "x-api-key": "crm_wrong"}, id="wrong-key"),
        pytest.param({"organisation": "OTHER", "x-api-key": "KEY"}, id="key-of-another-org"),
    ],
)
def test_missing_or_wrong_key_is_401(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, headers: dict[str, str]
) -> None:
    values = {"ORG": tenant.id, "KEY": tenant.api_key, "OTHER": other_tenant.id}
    sent = {name: values.get(value, value) for name, value in headers.items()}
    for method, path in [("POST", "/customers"), ("GET", "/customers")]:
        response = client.request(method, path, json=SEED, headers=sent)
        assert response.status_code == 401, response.text
        assert tenant.api_key not in response.text
        assert response.json()["detail"]


def test_another_organisations_customer_is_404(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    customer = create(client, tenant, external_id="X1")
    path = f"/customers/{customer['id']}"
    assert client.get(path, headers=other_tenant.headers).status_code == 404
    patched = client.patch(path, json={"customer_name": "Stolen"}, headers=other_tenant.headers)
    assert patched.status_code == 404
    listed = client.get("/customers", params={"external_id": "X1"}, headers=other_tenant.headers)
    assert listed.json() == []
    assert client.get(path, headers=tenant.headers).json()["customer_name"] == SEED["customer_name"]


def test_unknown_customer_is_404(client: TestClient, tenant: Tenant) -> None:
    response = client.get(f"/customers/{uuid.uuid4()}", headers=tenant.headers)
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        pytest.param({"customer_name": "   "}, "customer_name", "blank", id="blank-name"),
        pytest.param({"customer_name": None}, "customer_name", "valid string", id="null-name"),
        pytest.param({"external_id": "x" * 256}, "external_id", "255", id="external-id-too-long"),
        pytest.param({"email": "not-an-email"}, "email", "email", id="bad-email"),
        pytest.param({"phone_number": "555-0100"}, "phone_number", "country code", id="bad-phone"),
        pytest.param(
            {"address": {"country_code": "XX"}}, "address.country_code", "ISO 3166", id="bad-cc"
        ),
        pytest.param(
            {"address": {"country": "France", "country_code": "DE"}},
            "address",
            "does not match",
            id="country-mismatch",
        ),
        pytest.param(
            {"tax_info": [{"jurisdiction": "USA", "tax_type": "GST", "value": "1"}]},
            "tax_info.0",
            "not accepted",
            id="bad-tax-pair",
        ),
        pytest.param({"currency": "XYZ"}, "currency", "ISO 4217", id="bad-currency"),
        pytest.param({"custom_data": [1, 2]}, "custom_data", "dictionary", id="custom-data-list"),
        pytest.param({"business_entity_id": "nope"}, "business_entity_id", "UUID", id="bad-uuid"),
        pytest.param({"colour": "red"}, "colour", "Extra inputs", id="unknown-field"),
    ],
)
def test_model_rules_are_422_naming_field_and_rule(
    client: TestClient, tenant: Tenant, body: dict[str, Any], field: str, rule: str
) -> None:
    response = client.post("/customers", json={**SEED, **body}, headers=tenant.headers)
    assert response.status_code == 422, response.text
    errors = fields_of(response)
    assert field in errors, errors
    assert rule in errors[field]
    assert client.get("/customers", headers=tenant.headers).json() == []


def test_every_field_error_is_reported_at_once(client: TestClient, tenant: Tenant) -> None:
    body = {"customer_name": "", "email": "bad", "currency": "ZZZ"}
    response = client.post("/customers", json=body, headers=tenant.headers)
    assert response.status_code == 422
    assert {"customer_name", "email", "currency"} <= set(fields_of(response))


def test_malformed_json_is_422(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/customers",
        content=b"{not json",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("field", ["external_id", "email"])
def test_duplicate_external_id_or_email_is_409(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, field: str
) -> None:
    first = create(client, tenant, external_id="E1", email="a@example.com")
    duplicate = {"external_id": "E2", "email": "b@example.com", field: first[field]}
    response = client.post("/customers", json={**SEED, **duplicate}, headers=tenant.headers)
    assert response.status_code == 409
    assert field in fields_of(response)
    assert "already exists" in fields_of(response)[field]
    # ... also when a PATCH would make it a duplicate
    second = create(client, tenant, external_id="E3", email="c@example.com")
    patched = client.patch(
        f"/customers/{second['id']}", json={field: first[field]}, headers=tenant.headers
    )
    assert patched.status_code == 409
    # ... but another organisation may use the same value
    create(client, other_tenant, **{**duplicate, field: first[field]})


def test_unknown_business_entity_is_422(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/customers", json={**SEED, "business_entity_id": str(uuid.uuid4())}, headers=tenant.headers
    )
    assert response.status_code == 422
    errors = fields_of(response)
    assert "not a business entity of this organisation" in errors["business_entity_id"]


def test_another_organisations_business_entity_is_422(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, entity_id: str
) -> None:
    response = client.post(
        "/customers", json={**SEED, "business_entity_id": entity_id}, headers=other_tenant.headers
    )
    assert response.status_code == 422
    assert "business_entity_id" in fields_of(response)


def test_business_entity_can_be_set_once_then_never_changed(
    client: TestClient, tenant: Tenant, entity_id: str, database_url: str
) -> None:
    from sync import organisations
    from sync.store.db import engine_for, transaction

    with transaction(engine_for(database_url)) as session:
        second_entity = organisations.create_business_entity(session, tenant.id, "Acme US").id
    customer = create(client, tenant)
    path = f"/customers/{customer['id']}"
    first = client.patch(path, json={"business_entity_id": entity_id}, headers=tenant.headers)
    assert first.status_code == 200
    assert first.json()["business_entity_id"] == entity_id
    for change in (second_entity, None):
        refused = client.patch(path, json={"business_entity_id": change}, headers=tenant.headers)
        assert refused.status_code == 422, refused.text
        assert "cannot be changed once set" in fields_of(refused)["business_entity_id"]
    same = client.patch(path, json={"business_entity_id": entity_id}, headers=tenant.headers)
    assert same.status_code == 200
    assert client.get(path, headers=tenant.headers).json()["business_entity_id"] == entity_id


def test_patch_changes_only_the_fields_given(client: TestClient, tenant: Tenant) -> None:
    customer = create(
        client,
        tenant,
        external_id="P1",
        phone_number="+1 415 555 0100",
        address={"line1": "1 Main St", "city": "Springfield", "country_code": "US"},
    )
    path = f"/customers/{customer['id']}"
    response = client.patch(
        path, json={"customer_name": "Acme Corp Ltd", "phone_number": None}, headers=tenant.headers
    )
    assert response.status_code == 200
    after = response.json()
    assert after == {**customer, "customer_name": "Acme Corp Ltd", "phone_number": None}
    assert client.get(path, headers=tenant.headers).json() == after


def test_patch_replaces_an_address_whole(client: TestClient, tenant: Tenant) -> None:
    # as the README and the OpenAPI description say: an address is one field
    customer = create(
        client,
        tenant,
        address={"line1": "1 Main St", "city": "Springfield", "country_code": "US"},
    )
    path = f"/customers/{customer['id']}"
    response = client.patch(path, json={"address": {"line1": "2 Elm St"}}, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["address"] == {**dict.fromkeys(customer["address"]), "line1": "2 Elm St"}
    document = client.get("/openapi.json").json()
    assert "replaced whole" in document["paths"]["/customers/{customer_id}"]["patch"]["description"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_name": None}, None),
        ({"customer_name": ""}, "customer_name"),
        ({"email": "nope"}, "email"),
        ({"id": str(uuid.uuid4())}, "id"),
    ],
)
def test_patch_validates_like_create(
    client: TestClient, tenant: Tenant, body: dict[str, Any], field: str | None
) -> None:
    customer = create(client, tenant)
    response = client.patch(f"/customers/{customer['id']}", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert field in fields_of(response)
    if field is None:
        assert "customer_name" in fields_of(response)[None]


def test_get_by_external_id(client: TestClient, tenant: Tenant) -> None:
    wanted = create(client, tenant, external_id="0015g00000XyZ")
    create(client, tenant, external_id="other", email="other@acme.com")
    response = client.get(
        "/customers", params={"external_id": "0015g00000XyZ"}, headers=tenant.headers
    )
    assert response.status_code == 200
    assert response.json() == [wanted]
    missing = client.get("/customers", params={"external_id": "nope"}, headers=tenant.headers)
    assert missing.json() == []


def test_list_pages_by_limit_and_offset(client: TestClient, tenant: Tenant) -> None:
    made = [create(client, tenant, email=f"c{i}@acme.com")["id"] for i in range(5)]
    pages = [
        [c["id"] for c in client.get("/customers", params=p, headers=tenant.headers).json()]
        for p in ({"limit": 2}, {"limit": 2, "offset": 2}, {"limit": 2, "offset": 4})
    ]
    assert sorted(c for page in pages for c in page) == sorted(made)
    assert [len(p) for p in pages] == [2, 2, 1]
    bad = client.get("/customers", params={"limit": 0}, headers=tenant.headers)
    assert bad.status_code == 422
    assert "limit" in fields_of(bad)
    # an offset past SQL's 64-bit OFFSET is bad input (it was a 500); the largest one is
    # an empty page
    huge = client.get("/customers", params={"offset": 2**63}, headers=tenant.headers)
    assert huge.status_code == 422
    assert "offset" in fields_of(huge)
    last = client.get("/customers", params={"offset": 2**63 - 1}, headers=tenant.headers)
    assert (last.status_code, last.json()) == (200, [])


def test_openapi_is_served(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["info"]["title"] == "crmsync"
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/customers"])
    assert {"get", "patch"} <= set(paths["/customers/{customer_id}"])
    assert paths["/customers"]["post"]["responses"].keys() >= {"201", "401", "409", "422"}
    assert "APIKeyHeader" in document["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


def test_healthz_checks_the_store(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_healthz_is_503_without_a_store(tmp_path: Any) -> None:
    from api.app import create_app
    from sync.settings import Settings
    from sync.store.db import engine_for

    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"
    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/healthz").status_code == 503
    engine_for(url).dispose()


def test_empty_external_id_and_email_mean_none(client: TestClient, tenant: Tenant) -> None:
    body = create(client, tenant, external_id="", email="")
    assert (body["external_id"], body["email"]) == (None, None)
