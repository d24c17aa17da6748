"""The API over HTTP (TestClient) on the test store: an app, organisations and their keys."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from api.app import create_app
from sync import organisations
from sync.settings import Settings
from sync.store.db import engine_for, transaction

with warnings.catch_warnings():
    # Starlette asks for httpx2 over httpx; the test client works the same on either.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient


@dataclass(frozen=True)
class Tenant:
    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"organisation": self.id, "x-api-key": self.api_key}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client
    engine_for(database_url).dispose()
    engine_for.cache_clear()


def make_tenant(database_url: str, name: str) -> Tenant:
    with transaction(engine_for(database_url)) as session:
        new = organisations.create_organisation(session, name)
    return Tenant(new.id, new.api_key)


@pytest.fixture
def tenant(client: TestClient, database_url: str) -> Tenant:
    return make_tenant(database_url, "Acme Billing")


@pytest.fixture
def other_tenant(client: TestClient, database_url: str) -> Tenant:
    return make_tenant(database_url, "Other Billing")


@pytest.fixture
def entity_id(tenant: Tenant, database_url: str) -> str:
    with transaction(engine_for(database_url)) as session:
        return organisations.create_business_entity(session, tenant.id, "Acme EU").id
