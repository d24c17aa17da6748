"""The console's test world: the real app served by ``crmsync web`` (uvicorn on loopback)
over the real store, with data made by real syncs against the CRM sandbox.

One world per store, for the whole session (PostgreSQL with Redis as the broker; SQLite with the
embedded file queue): two organisations, each with operators whose passwords were set
through their one-time links. Organisation A has a HubSpot and a Salesforce connection;
its first syncs opened conflicts (billing names and cities that differ from the CRM) and
its last one left two failures in the dead letter (records the CRM refused). Organisation
B has its own connection, customers and run, for the 404 checks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, select, text

from sandbox.server import Sandbox, SandboxOptions
from sync import operators, organisations
from sync.connections import ConnectionSpec, add_connection
from sync.crypto import new_secret_key
from sync.customer import CustomerIn, CustomerPatch, country_from_name
from sync.customers import import_customers, update_customer
from sync.engine import sync_connection
from sync.settings import Settings
from sync.store.db import make_engine, transaction, upgrade
from sync.store.models import Conflict, CustomerRow, LinkRow, RecordFailure, SyncRun
from tests.conftest import POSTGRES_URL, service_missing

ROOT = Path(__file__).resolve().parents[2]
CRMSYNC = str(Path(sys.executable).parent / "crmsync")
ARTIFACTS = ROOT / "test-artifacts" / "console"
PASSWORD = "correct horse battery staple"
HUBSPOT_SECRET = "console-test-hubspot-secret"


@dataclass
class World:
    """What the tests may rely on."""

    base: str
    settings: Settings
    env: dict[str, str]
    backend: str
    sandbox: Sandbox
    org: str
    other_org: str
    hubspot: str
    salesforce: str
    other_connection: str
    companies: list[str]
    emails: dict[str, str] = field(default_factory=dict)
    redis: Any = None

    def engine(self) -> Any:
        return make_engine(self.settings.database_url)

    def rows(self, model: Any, **where: Any) -> list[Any]:
        engine = self.engine()
        try:
            with transaction(engine) as session:
                query = select(model).filter_by(**where)
                return list(session.scalars(query))
        finally:
            engine.dispose()

    def queued(self) -> int:
        """Messages waiting on the operator queue (Redis, or the embedded file queue)."""
        prefix = self.settings.redis_key_prefix
        if self.redis is not None:
            return int(self.redis.llen(f"{prefix}:{prefix}.operator"))
        folder = Path(self.settings.database_url.removeprefix("sqlite:///")).parent
        return len(list((folder / ".crmsync" / "queue" / "messages").glob("*.msg")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _operator(session: Any, org: str, email: str, role: str, name: str) -> None:
    new = operators.add_operator(session, org, email, role, name=name, by="test")
    operators.set_password(session, new.token, PASSWORD)


def seed(settings: Settings, sandbox: Sandbox) -> dict[str, Any]:
    """Two organisations, their connections and operators, and real syncs against the
    sandbox that leave conflicts, failures and runs."""
    sandbox.hubspot.reset()
    sandbox.salesforce.reset()
    companies = sandbox.hubspot.seed_companies(8)
    sandbox.salesforce.seed(5, seed=7)
    engine = make_engine(settings.database_url)
    try:
        with transaction(engine) as session:
            org = organisations.create_organisation(session, "Acme Billing").id
            other = organisations.create_organisation(session, "Globex Billing").id
            hubspot = add_connection(
                session,
                settings,
                org,
                ConnectionSpec(
                    name="acme-hubspot",
                    kind="hubspot",
                    credentials={"access_token": "token-a", "client_secret": HUBSPOT_SECRET},
                    settings={"host": sandbox.hubspot_url, "backoff_base_seconds": 0.01},
                ),
            ).id
            salesforce = add_connection(
                session,
                settings,
                org,
                ConnectionSpec(
                    name="acme-salesforce",
                    kind="salesforce",
                    credentials={
                        "client_id": sandbox.salesforce.client_id,
                        "client_secret": sandbox.salesforce.client_secret,
                    },
                    settings={
                        "instance_url": sandbox.salesforce_url,
                        "ca_bundle": str(sandbox.ca_file),
                        "organization_id": sandbox.salesforce.organization_id,
                        "backoff_base_seconds": 0.01,
                    },
                ),
            ).id
            other_connection = add_connection(
                session,
                settings,
                other,
                ConnectionSpec(
                    name="globex-hubspot",
                    kind="hubspot",
                    credentials={"access_token": "token-b"},
                    settings={"host": sandbox.hubspot_url, "backoff_base_seconds": 0.01},
                    push_creates=False,
                ),
            ).id
            # billing customers that differ from their CRM record: the first link opens
            # conflicts (three names in capitals, two cities)
            records = []
            for n, crm_id in enumerate(companies[:5]):
                company = sandbox.hubspot.read(crm_id)["properties"]
                name = str(company["name"])
                country = company.get("country") or None
                records.append(
                    CustomerIn.model_validate(
                        {
                            "customer_name": name.upper() if n < 3 else name,
                            "external_id": crm_id,
                            "address": {
                                "line1": company.get("address") or None,
                                "line2": company.get("address2") or None,
                                "city": "Springfield" if n >= 3 else company.get("city"),
                                "state": company.get("state") or None,
                                "zipCode": company.get("zip") or None,
                                "country": country,
                                "country_code": country_from_name(country) if country else None,
                            },
                        }
                    )
                )
            import_customers(session, org, records)
            emails = {
                "admin": "ada@acme.example",
                "operator": "otto@acme.example",
                "viewer": "vera@acme.example",
                "limited": "lena@acme.example",
                "other": "olga@globex.example",
            }
            _operator(session, org, emails["admin"], "admin", "Ada Admin")
            _operator(session, org, emails["operator"], "operator", "Otto Operator")
            _operator(session, org, emails["viewer"], "viewer", "Vera Viewer")
            _operator(session, org, emails["limited"], "operator", "Lena Limited")
            _operator(session, other, emails["other"], "admin", "Olga Other")
        for connection in (hubspot, salesforce, other_connection):
            result = sync_connection(engine, settings, connection, trigger="operator")
            assert result.status == "succeeded", result.error
        # billing edits that HubSpot refuses: two failures in the dead letter
        refused = companies[5:7]
        sandbox.hubspot.set_faults(record_errors={crm_id: "validation" for crm_id in refused})
        with transaction(engine) as session:
            linked = session.execute(
                select(LinkRow.crm_id, LinkRow.customer_id).where(
                    LinkRow.connection_id == hubspot, LinkRow.crm_id.in_(refused)
                )
            ).all()
            for n, (_crm_id, customer_id) in enumerate(linked):
                update_customer(
                    session, org, customer_id, CustomerPatch(phone_number=f"+1555010{n}")
                )
        result = sync_connection(engine, settings, hubspot, trigger="schedule")
        assert result.counters["failed"] == 2, result.counters
        sandbox.hubspot.clear_faults()
    finally:
        engine.dispose()
    return {
        "org": org,
        "other_org": other,
        "hubspot": hubspot,
        "salesforce": salesforce,
        "other_connection": other_connection,
        "companies": companies,
        "emails": emails,
    }


@pytest.fixture(scope="session")
def console_sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


@pytest.fixture(scope="session")
def console_postgres_url() -> Iterator[str]:
    """A PostgreSQL schema of the console tests' own, so that the other suites' emptying of
    the shared test schema never touches the served world."""
    schema = f"crmsync_console_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@contextmanager
def served_world(
    backend: str, database_url: str, broker: str, sandbox: Sandbox, workdir: Path
) -> Iterator[World]:
    """Seed the store, then serve it with ``crmsync web`` until the context ends."""
    prefix = f"crmsync-test-{uuid.uuid4().hex[:12]}"
    redis_client = None
    if broker:
        import redis

        redis_client = redis.Redis.from_url(broker)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=database_url,
        broker_url=broker,
        redis_key_prefix=prefix,
        secret_key=SecretStr(new_secret_key()),
        public_base_url=base,
    )
    data = seed(settings, sandbox)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(
        {
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_BROKER_URL": broker,
            "CRMSYNC_REDIS_KEY_PREFIX": prefix,
            "CRMSYNC_SECRET_KEY": settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
            "CRMSYNC_PUBLIC_BASE_URL": base,
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = workdir / "web.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [CRMSYNC, "web", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(base, server, log)
        yield World(
            base=base,
            settings=settings,
            env=env,
            backend=backend,
            sandbox=sandbox,
            redis=redis_client,
            **data,
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        if redis_client is not None:
            for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
                redis_client.delete(key)
            redis_client.close()


@pytest.fixture(scope="session")
def pg_world(
    console_postgres_url: str,
    redis_url: str,
    console_sandbox: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """The console on PostgreSQL, with Redis as the broker."""
    with served_world(
        "postgresql",
        console_postgres_url,
        redis_url,
        console_sandbox,
        tmp_path_factory.mktemp("console-postgresql"),
    ) as world:
        yield world


@pytest.fixture(scope="session")
def sqlite_world(
    console_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The console on the embedded default: SQLite and the file queue, no Redis."""
    workdir = tmp_path_factory.mktemp("console-sqlite")
    url = f"sqlite:///{workdir / 'crmsync.db'}"
    upgrade(url)
    with served_world("sqlite", url, "", console_sandbox, workdir) as world:
        yield world


@pytest.fixture(params=["postgresql", "sqlite"])
def world(request: pytest.FixtureRequest) -> World:
    """The same test on both served worlds."""
    found: World = request.getfixturevalue(
        f"{'pg' if request.param == 'postgresql' else 'sqlite'}_world"
    )
    return found


def _wait_until_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"crmsync web exited {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", trust_env=False, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"crmsync web did not start:\n{log.read_text()}")


def open_conflicts(world: World, **where: Any) -> list[Conflict]:
    return [
        c for c in world.rows(Conflict, organisation_id=world.org, **where) if c.status == "open"
    ]


def open_failures(world: World) -> list[RecordFailure]:
    return world.rows(RecordFailure, organisation_id=world.org, status="open")


def a_customer(world: World, org: str) -> CustomerRow:
    return world.rows(CustomerRow, organisation_id=org)[0]


def a_run(world: World, org: str) -> SyncRun:
    return world.rows(SyncRun, organisation_id=org)[0]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests' screenshots are."""
    shots = sorted(ARTIFACTS.glob("*.png")) if ARTIFACTS.exists() else []
    if shots:
        terminalreporter.write_line(f"console screenshots ({len(shots)}): {ARTIFACTS}")
