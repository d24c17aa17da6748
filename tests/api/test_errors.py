"""Every error of the domain's tree answers its one HTTP status, through the app's handler."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.errors import status_for
from sync import errors
from sync.errors import SyncError, all_errors
from sync.settings import Settings
from sync.store.db import engine_for
from tests.api.conftest import Tenant, TestClient


def _example(cls: type[SyncError]) -> SyncError:
    """An instance of ``cls`` as the domain raises it."""
    if issubclass(cls, errors.CustomerNotFound):
        return cls("c-1")
    if issubclass(cls, errors.DuplicateCustomer | errors.CustomerRuleBroken):
        return cls("email", "taken")
    if issubclass(cls, errors.SignInLimited):
        return cls(90)
    if issubclass(cls, errors.ChooseOrganisation):
        return cls([errors.OrganisationChoice("o-1", "Acme")])
    if issubclass(cls, errors.StoreNotCurrent):
        return cls(["old"], ["new"])
    return cls(f"a {cls.__name__} happened")


def test_each_error_answers_its_status(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url))
    raised: dict[str, SyncError] = {c.__name__: _example(c) for c in all_errors()[1:]}

    @app.get("/raise/{name}")
    def raise_(name: str) -> None:
        raise raised[name]

    with TestClient(app) as client:
        for name, error in raised.items():
            response = client.get(f"/raise/{name}")
            assert response.status_code == status_for(type(error)), name
            assert response.json()["detail"], name
    assert {status_for(type(e)) for e in raised.values()} >= {401, 404, 409, 422, 429}


def test_the_customer_api_answers_through_the_table(client: TestClient, tenant: Tenant) -> None:
    body = {"customer_name": "Acme", "external_id": "X1"}
    assert client.post("/customers", json=body, headers=tenant.headers).status_code == 201
    again = client.post("/customers", json=body, headers=tenant.headers)
    assert again.status_code == status_for(errors.DuplicateCustomer) == 409
    assert again.json()["detail"][0]["field"] == "external_id"
    entity = {"customer_name": "Beta", "business_entity_id": "00000000-0000-0000-0000-000000000000"}
    refused = client.post("/customers", json=entity, headers=tenant.headers)
    assert refused.status_code == status_for(errors.CustomerRuleBroken) == 422
    assert refused.json()["detail"][0]["field"] == "business_entity_id"
    missing = client.get(f"/customers/{uuid.uuid4()}", headers=tenant.headers)
    assert missing.status_code == status_for(errors.CustomerNotFound) == 404


def test_a_limited_sign_in_says_when_to_come_back(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url))

    @app.get("/limited")
    def limited() -> None:
        raise errors.SignInLimited(90)

    with TestClient(app) as client:
        response = client.get("/limited")
    assert response.status_code == 429 and response.headers["retry-after"] == "90"


def test_a_store_without_its_tables_says_to_migrate_it(tmp_path: Path) -> None:
    # `crmsync web` started before `crmsync db upgrade`: every request was a bare 500
    url = f"sqlite:///{tmp_path / 'not-migrated.db'}"
    app = create_app(Settings(database_url=url))
    headers = {"organisation": str(uuid.uuid4()), "x-api-key": "crm_x"}
    with TestClient(app) as client:
        response = client.get("/customers", headers=headers)
    engine_for(url).dispose()
    assert response.status_code == 503
    assert response.json() == {"detail": "the store is not set up: run `crmsync db upgrade`"}


def test_any_other_store_error_stays_an_internal_error(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url))

    @app.get("/broken")
    def broken() -> None:
        raise OperationalError("SELECT 1", {}, Exception("disk I/O error"))

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/broken").status_code == 500
