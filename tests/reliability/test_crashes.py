"""Crashes in the middle of a two-way sync lose nothing and double nothing.

A HubSpot portal of N companies (with their contacts) and a billing side with customers of
its own (some that the CRM lacks, some whose CRM record has another name) sync both ways
through a real Celery worker on Redis into PostgreSQL, while billing-side edits arrive
over the API and CRM users edit records. Meanwhile the test strikes at random moments:

- the worker is SIGKILLed (with its pool) and restarted, ``kills`` times;
- or Redis is restarted, losing every key: queues, locks (a private ``redis-server``);
- or every PostgreSQL connection of the worker is terminated (``pg_terminate_backend``).

After each strike the sync is asked for again, as the scheduler would. Once the strikes
and the edits stop and the sync settles, for every link each mapped field is equal on
both sides or an open conflict explains why; there is one customer per CRM record and one
CRM record per billing customer; every acknowledged billing edit is in the store and in
the CRM; every CRM edit reached the billing side.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from connectors.hubspot import mapping as hubspot_mapping
from sandbox.server import Sandbox
from sync import organisations
from sync.connections import ConnectionSpec, add_connection, open_connector
from sync.customer import CustomerIn, flatten
from sync.customers import create_customer, to_public
from sync.match import canonical
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import Conflict, CustomerRow, LinkRow, SyncRun
from tasks.enqueue import enqueue_sync
from tests.conftest import POSTGRES_URL, Figures
from tests.reliability.conftest import PrivateRedis
from tests.tasks.conftest import HUBSPOT_SECRET, Stack, open_stack, wait_for

SMALL = {"records": 500, "strikes": 2}
FULL = {"records": 20_000, "strikes": 10}
SIZES = [
    pytest.param(SMALL, id="small"),
    pytest.param(FULL, id="full", marks=pytest.mark.slow),
]


# --- the world: a portal, a billing side, a connection ---------------------------------------


@dataclass
class World:
    stack: Stack
    crm: Sandbox
    org: str
    api_key: str
    connection: str
    api: str
    seeded: list[str]
    billing_only: list[str]
    renamed: list[str]  # billing customers whose CRM record has another name


def build_world(stack: Stack, crm: Sandbox, records: int) -> World:
    seeded = crm.hubspot.seed_companies(records)
    with transaction(stack.engine) as session:
        new = organisations.create_organisation(session, "Crash Test Billing")
        billing_only = [
            create_customer(
                session,
                new.id,
                CustomerIn(customer_name=f"Billing Only {n}", email=f"only{n}@billing.example"),
            ).id
            for n in range(records // 10)
        ]
        # customers that exist on both sides already, matched by external id, one in ten
        # with another name in billing: a conflict on first link, never an overwrite
        renamed = []
        for crm_id in seeded[: records // 20]:
            name = crm.hubspot.read(crm_id)["properties"]["name"]
            differs = int(crm_id) % 10 == 0
            created = create_customer(
                session,
                new.id,
                CustomerIn(
                    customer_name=f"{name} (billing)" if differs else name,
                    external_id=crm_id,
                ),
            )
            if differs:
                renamed.append(created.id)
        spec_settings = {"host": crm.hubspot_url, "backoff_base_seconds": 0.01}
        connection = add_connection(
            session,
            stack.settings,
            new.id,
            ConnectionSpec(
                name="hs",
                kind="hubspot",
                credentials={"access_token": "token-crash", "client_secret": HUBSPOT_SECRET},
                settings=spec_settings,
                schedule_seconds=3600,
                push_creates=True,  # billing-only customers exist already: create them
            ),
        ).id
    api = stack.serve_api()
    return World(stack, crm, new.id, new.api_key, connection, api, seeded, billing_only, renamed)


# --- edits in flight ---------------------------------------------------------------------------


@dataclass
class Editors:
    """Billing users (over the API) and CRM users editing while the sync runs. Only what
    was acknowledged counts: a billing edit answered 200, a CRM edit made."""

    world: World
    billing: dict[str, str] = field(default_factory=dict)  # customer id -> last name
    crm: dict[str, str] = field(default_factory=dict)  # CRM id -> last city
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._billing, self._crm):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _billing(self) -> None:
        rng = random.Random(1)
        headers = {"organisation": self.world.org, "x-api-key": self.world.api_key}
        candidates: list[str] = []
        refreshed = 0.0
        with httpx.Client(base_url=self.world.api, headers=headers, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                if time.monotonic() - refreshed > 1:
                    with transaction(self.world.stack.engine) as session:
                        candidates = list(
                            session.scalars(
                                select(CustomerRow.id).where(
                                    CustomerRow.organisation_id == self.world.org
                                )
                            )
                        )
                    refreshed = time.monotonic()
                customer = rng.choice(candidates)
                n += 1
                name = f"Edited In Billing {n}"
                try:
                    answer = client.patch(f"/customers/{customer}", json={"customer_name": name})
                except httpx.HTTPError:
                    self.refused += 1
                    continue
                if answer.status_code == 200:
                    self.billing[customer] = name
                else:
                    self.refused += 1
                self.stop.wait(0.05)

    def _crm(self) -> None:
        rng = random.Random(2)
        # the records no billing user edits (edits of one record on both sides may
        # conflict, which is right but would make "lost" hard to tell from "held")
        ids = self.world.seeded[len(self.world.seeded) // 2 :]
        n = 0
        while not self.stop.is_set():
            crm_id = rng.choice(ids)
            n += 1
            city = f"Crm City {n}"
            self.world.crm.hubspot.edit(crm_id, {"city": city})
            self.crm[crm_id] = city
            self.stop.wait(0.05)


# --- driving runs --------------------------------------------------------------------------------


def runs(world: World) -> list[SyncRun]:
    with transaction(world.stack.engine) as session:
        return list(
            session.scalars(
                select(SyncRun)
                .where(SyncRun.connection_id == world.connection, SyncRun.scope == "connection")
                .order_by(SyncRun.started_at)
            )
        )


#: how long a sync may take to start once asked for: a run in progress holds the
#: connection's lock, and a sync asked for meanwhile is skipped ("busy") until it ends; at
#: 20,000 records on a busy machine that run lasts minutes
RUN_START_TIMEOUT_SECONDS = 900.0


def ask_for_sync(
    world: World, since: datetime, timeout: float = RUN_START_TIMEOUT_SECONDS
) -> SyncRun:
    """Enqueue a sync (as beat or an operator would) until a run starts after ``since``
    (a lock left by a killed run frees itself after its TTL; a live run's when it ends);
    that run."""
    deadline = time.monotonic() + timeout
    while True:
        enqueue_sync(world.stack.settings, world.connection, trigger="operator")
        polled = time.monotonic() + 5
        while time.monotonic() < polled:
            started = [r for r in runs(world) if r.started_at > since]
            if started:
                return started[0]
            time.sleep(0.1)
        if time.monotonic() > deadline:
            pytest.fail(f"no run started in {timeout}s")


def settle(world: World, settled_after: datetime) -> int:
    """Sync until two runs in a row that started after the last edit succeed; the runs."""
    succeeded = 0
    count = 0
    since = settled_after
    while succeeded < 2:
        run = ask_for_sync(world, since)
        count += 1
        since = run.started_at

        def ended(run_id: str = run.id) -> SyncRun | None:
            found = [r for r in runs(world) if r.id == run_id and r.status != "running"]
            return found[0] if found else None

        finished = wait_for(ended, 2 * RUN_START_TIMEOUT_SECONDS, "the settling run to end")
        succeeded = succeeded + 1 if finished.status == "succeeded" else 0
        if count > 8:
            pytest.fail(f"the sync does not settle: last run {finished.status} {finished.error}")
    return count


# --- what must hold afterwards ---------------------------------------------------------------


@dataclass
class Verdict:
    links: int = 0
    customers: int = 0
    crm_records: int = 0
    mismatches: list[str] = field(default_factory=list)
    explained: int = 0
    conflicts: Counter[str] = field(default_factory=Counter)
    duplicate_customers: int = 0
    duplicate_links: int = 0
    duplicate_crm_records: int = 0
    lost_billing_edits: list[str] = field(default_factory=list)
    lost_crm_edits: list[str] = field(default_factory=list)


def verify(world: World, editors: Editors) -> Verdict:
    verdict = Verdict()
    fmap = hubspot_mapping.field_map({})
    crm_ids = world.crm.hubspot.ids()
    crm_fields = {
        crm_id: hubspot_mapping.to_fields(world.crm.hubspot.read(crm_id)["properties"], fmap)
        for crm_id in crm_ids
    }
    verdict.crm_records = len(crm_ids)
    crmsync_ids = Counter(
        world.crm.hubspot.read(i)["properties"].get("crmsync_id") for i in crm_ids
    )
    verdict.duplicate_crm_records = sum(n - 1 for k, n in crmsync_ids.items() if k and n > 1)
    with transaction(world.stack.engine) as session:
        row = repo.get_connection(session, world.connection)
        assert row is not None
        fields = open_connector(world.stack.settings, row).mapped_fields
        customers = {
            c.id: c
            for c in session.scalars(
                select(CustomerRow).where(CustomerRow.organisation_id == world.org)
            )
        }
        links = list(
            session.scalars(select(LinkRow).where(LinkRow.connection_id == world.connection))
        )
        opened = list(
            session.scalars(
                select(Conflict).where(
                    Conflict.connection_id == world.connection, Conflict.status == "open"
                )
            )
        )
    open_conflicts = {(c.link_id, c.field) for c in opened}
    verdict.conflicts = Counter(c.field for c in opened)
    verdict.customers = len(customers)
    verdict.links = len(links)
    per_customer = Counter(link.customer_id for link in links)
    verdict.duplicate_links = sum(n - 1 for n in per_customer.values() if n > 1)
    external = Counter(c.external_id for c in customers.values() if c.external_id)
    verdict.duplicate_customers = sum(n - 1 for n in external.values() if n > 1)
    link_of_customer = {link.customer_id: link for link in links}
    for link in links:
        if link.state != "active":
            continue
        billing = flatten(to_public(customers[link.customer_id]))
        crm_side = crm_fields.get(link.crm_id)
        if crm_side is None:
            verdict.mismatches.append(f"link {link.id}: CRM record {link.crm_id} is gone")
            continue
        for name in fields:
            if canonical(billing.get(name)) == canonical(crm_side.get(name)):
                continue
            if (link.id, name) in open_conflicts:
                verdict.explained += 1
                continue
            verdict.mismatches.append(
                f"{link.crm_id} {name}: billing {billing.get(name)!r} CRM {crm_side.get(name)!r}"
            )
    for customer_id, name in editors.billing.items():
        customer = customers.get(customer_id)
        link = link_of_customer.get(customer_id)
        in_crm = crm_fields.get(link.crm_id, {}) if link is not None else {}
        held = link is not None and (link.id, "customer_name") in open_conflicts
        if customer is None or customer.customer_name != name:
            verdict.lost_billing_edits.append(f"{customer_id}: billing lost {name!r}")
        elif not held and in_crm.get("customer_name") != name:
            verdict.lost_billing_edits.append(f"{customer_id}: CRM never got {name!r}")
    by_crm_id = {link.crm_id: link for link in links}
    for crm_id, city in editors.crm.items():
        link = by_crm_id.get(crm_id)
        customer = customers.get(link.customer_id) if link is not None else None
        got = flatten(to_public(customer)).get("address.city") if customer else None
        held = link is not None and (link.id, "address.city") in open_conflicts
        if got != city and not held:
            verdict.lost_crm_edits.append(f"{crm_id}: billing has {got!r}, not {city!r}")
    return verdict


def assert_nothing_lost(world: World, editors: Editors, verdict: Verdict, records: int) -> None:
    expected = records + len(world.billing_only)
    assert verdict.mismatches == [], verdict.mismatches[:20]
    assert verdict.lost_billing_edits == [], verdict.lost_billing_edits[:20]
    assert verdict.lost_crm_edits == [], verdict.lost_crm_edits[:20]
    assert verdict.duplicate_customers == 0
    assert verdict.duplicate_links == 0
    assert verdict.duplicate_crm_records == 0
    assert verdict.customers == expected, "one customer per CRM record, no more"
    assert verdict.crm_records == expected, "one CRM record per billing customer, no more"
    assert verdict.links == expected
    assert verdict.explained >= len(world.renamed), "each renamed customer holds a conflict"
    assert editors.billing and editors.crm, "edits were in flight"


# --- the scenario, with three kinds of strike --------------------------------------------------


def strike_run(
    world: World,
    strikes: int,
    strike: Callable[[], None],
    after_strike: Callable[[], None],
    figures: Figures,
    kind: str,
    records: int,
) -> None:
    rng = random.Random(records + strikes)
    editors = Editors(world)
    editors.start()
    mid_run = 0
    try:
        run = ask_for_sync(world, datetime(2000, 1, 1, tzinfo=UTC))
        for _ in range(strikes):
            time.sleep(rng.uniform(0.2, 2.0))
            current = next(r for r in runs(world) if r.id == run.id)
            mid_run += current.status == "running"
            struck_at = datetime.now(UTC)
            strike()
            after_strike()
            run = ask_for_sync(world, struck_at)
    finally:
        editors.finish()
    settled_after = datetime.now(UTC)
    time.sleep(0.5)
    settling_runs = settle(world, settled_after)
    verdict = verify(world, editors)
    all_runs = runs(world)
    figures.report(
        strike=kind,
        records=records,
        strikes=strikes,
        strikes_mid_run=mid_run,
        runs=len(all_runs),
        runs_failed_or_interrupted=sum(r.status != "succeeded" for r in all_runs),
        settling_runs=settling_runs,
        customers=verdict.customers,
        crm_records=verdict.crm_records,
        links=verdict.links,
        billing_edits=len(editors.billing),
        billing_edits_refused=editors.refused,
        crm_edits=len(editors.crm),
        records_lost=len(verdict.mismatches),
        differences_held_as_conflicts=verdict.explained,
        open_conflicts_by_field=dict(verdict.conflicts),
        billing_edits_lost=len(verdict.lost_billing_edits),
        crm_edits_lost=len(verdict.lost_crm_edits),
        duplicates=verdict.duplicate_customers
        + verdict.duplicate_links
        + verdict.duplicate_crm_records,
    )
    assert_nothing_lost(world, editors, verdict, records)


@pytest.mark.parametrize("size", SIZES)
def test_worker_killed_mid_sync_loses_and_doubles_nothing(
    postgres_url: str,
    redis_url: str,
    crm: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
    size: dict[str, int],
) -> None:
    with open_stack(postgres_url, redis_url, tmp_path, monkeypatch, lock_ttl_seconds="3") as stack:
        world = build_world(stack, crm, size["records"])
        workers = [stack.worker("w0")]

        def kill() -> None:
            workers[-1].kill()

        def restart() -> None:
            workers.append(stack.worker(f"w{len(workers)}"))

        strike_run(world, size["strikes"], kill, restart, figures, "SIGKILL", size["records"])


class Supervisor:
    """Starts the worker again whenever it exits, as docker compose's ``restart:
    unless-stopped`` does: Celery's worker may exit on a lost broker connection (kombu fails
    to ack on the dead channel: "Unrecoverable error"), and may hang in its shutdown after
    that error (then it is killed). Watched all along: a single look two seconds after a
    strike missed a worker that a loaded machine let exit later, and no run started again."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.workers = [stack.worker("w0")]
        self.restarted: list[str] = []
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        if self._errors:
            raise self._errors[0]

    def _watch(self) -> None:
        try:
            while not self._stop.wait(0.2):
                worker = self.workers[-1]
                if worker.popen.poll() is None and "Unrecoverable error" not in worker.output():
                    continue
                try:
                    worker.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()
                self.restarted.append(worker.name)
                self.workers.append(self.stack.worker(f"w{len(self.workers)}"))
        except BaseException as error:  # handed to the test's thread
            self._errors.append(error)


@pytest.mark.parametrize("size", SIZES)
def test_redis_restarted_mid_sync_loses_and_doubles_nothing(
    postgres_url: str,
    private_redis: PrivateRedis,
    crm: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
    size: dict[str, int],
) -> None:
    strikes = max(1, size["strikes"] // 3)
    with open_stack(
        postgres_url, private_redis.url, tmp_path, monkeypatch, lock_ttl_seconds="3"
    ) as stack:
        world = build_world(stack, crm, size["records"])
        with Supervisor(stack) as supervisor:
            strike_run(
                world,
                strikes,
                private_redis.restart,
                lambda: None,
                figures,
                "Redis restart",
                size["records"],
            )
        figures.report(workers_exited_on_redis_restart=len(supervisor.restarted))


@pytest.mark.parametrize("size", SIZES)
def test_database_connections_killed_mid_sync_lose_and_double_nothing(
    postgres_url: str,
    redis_url: str,
    crm: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
    size: dict[str, int],
) -> None:
    strikes = max(1, size["strikes"] // 2)
    application = f"crmsync-worker-{uuid.uuid4().hex[:12]}"
    with open_stack(postgres_url, redis_url, tmp_path, monkeypatch, lock_ttl_seconds="3") as stack:
        world = build_world(stack, crm, size["records"])
        # only the worker's connections carry this name: only they are terminated
        stack.env["CRMSYNC_DATABASE_URL"] = f"{postgres_url}&application_name={application}"
        stack.worker("w0")
        admin = create_engine(POSTGRES_URL)
        terminated: list[int] = []

        def terminate() -> None:
            with admin.begin() as conn:
                killed = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": application},
                ).all()
            terminated.append(len(killed))

        try:
            strike_run(
                world,
                strikes,
                terminate,
                lambda: None,
                figures,
                "pg_terminate_backend",
                size["records"],
            )
        finally:
            admin.dispose()
        figures.report(database_connections_terminated=sum(terminated))
        assert sum(terminated) >= strikes
