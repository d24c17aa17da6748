"""Engine fixtures: a running sandbox, a harness per CRM, an organisation and a connection."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from connectors.testing.harness import Harness
from sandbox.server import Sandbox, SandboxOptions
from sync import organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.customers import to_public
from sync.engine import RunResult, sync_connection, sync_records
from sync.settings import Settings
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import Conflict, CustomerRow, LinkRow, RecordFailure

CRMS = ("salesforce", "hubspot")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def harness_for(crm: str, sandbox: Sandbox) -> Any:
    module = importlib.import_module(f"tests.connectors.harness_{crm}")
    return module.make_harness(sandbox)


@dataclass
class World:
    """One organisation with one connection to one sandbox CRM, on one store."""

    engine: Engine
    settings: Settings
    harness: Harness
    organisation_id: str
    connection_id: str

    def sync(self, **options: Any) -> RunResult:
        return sync_connection(self.engine, self.settings, self.connection_id, **options)

    def sync_records(self, **options: Any) -> RunResult:
        return sync_records(self.engine, self.settings, self.connection_id, **options)

    def customers(self) -> list[dict[str, Any]]:
        with transaction(self.engine) as s:
            rows = s.scalars(
                select(CustomerRow).where(CustomerRow.organisation_id == self.organisation_id)
            ).all()
            return [to_public(r) for r in rows]

    def customer_by_external_id(self, external_id: str) -> dict[str, Any]:
        matches = [c for c in self.customers() if c["external_id"] == external_id]
        assert len(matches) == 1, f"{len(matches)} customers with external id {external_id}"
        return matches[0]

    def link(self, crm_id: str) -> LinkRow | None:
        with transaction(self.engine) as s:
            return repo.links_by_crm_ids(s, self.connection_id, [crm_id]).get(crm_id)

    def links(self) -> list[LinkRow]:
        with transaction(self.engine) as s:
            return list(
                s.scalars(select(LinkRow).where(LinkRow.connection_id == self.connection_id))
            )

    def conflicts(self, status: str = "open") -> list[Conflict]:
        with transaction(self.engine) as s:
            return list(repo.list_conflicts(s, self.organisation_id, status=status, limit=10_000))

    def failures(self) -> list[RecordFailure]:
        with transaction(self.engine) as s:
            return list(repo.open_failures(s, self.organisation_id))

    def count_customers(self) -> int:
        with transaction(self.engine) as s:
            return s.scalar(select(func.count()).select_from(CustomerRow)) or 0


def make_world(
    engine: Engine,
    sandbox: Sandbox,
    crm: str,
    *,
    connector_settings: dict[str, Any] | None = None,
    **spec: Any,
) -> World:
    """``connector_settings`` override the harness's connection settings."""
    harness = harness_for(crm, sandbox)
    harness.reset()
    settings = Settings(database_url=str(engine.url), secret_key=new_secret_key())
    with transaction(engine) as s:
        org = organisations.create_organisation(s, f"{crm} org").id
        connection = add_connection(
            s,
            settings,
            org,
            ConnectionSpec(
                name=crm,
                kind=crm,
                credentials=harness.credentials()
                if hasattr(harness, "credentials")
                else harness.connector().config.credentials,
                settings=harness.settings(**(connector_settings or {})),
                field_map=dict(harness.field_map),
                **spec,
            ),
        )
    return World(engine, settings, harness, org, connection.id)


@pytest.fixture(params=CRMS)
def world(request: pytest.FixtureRequest, engine: Engine, sandbox: Sandbox) -> World:
    return make_world(engine, sandbox, request.param)
