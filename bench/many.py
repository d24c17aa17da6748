"""Many connections on many workers, and webhook syncs beside a long backfill.

- **Throughput**: ``connections`` connections (half Salesforce, half HubSpot, each in an
  organisation of its own) of ``records`` accounts / companies each, all queued at once as
  full syncs, through 1 and then 2 ``crmsync worker`` processes on Redis into PostgreSQL:
  the wall time from the first task sent to the last run finished.
- **Webhook wait**: while one connection's long backfill runs on a worker, CRM edits of
  another connection arrive as signed webhooks at ``crmsync web``; a worker on the
  webhook queue (``crmsync worker --queues webhook``) syncs them. The figure is the time
  from each edit in the CRM to its customer row being written (the goal: under 1 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from bench.common import (
    HUBSPOT_SECRET,
    SandboxProcess,
    connection_spec,
    fresh_schema,
    start_sandbox,
    start_web,
    start_worker,
    stop_process,
    store_settings,
    wait_for_workers,
)
from sync import organisations
from sync.connections import add_connection
from sync.settings import Settings
from sync.store.db import make_engine, transaction
from sync.store.models import CustomerRow, InboundEvent, LinkRow, SyncRun
from tasks.enqueue import enqueue_sync


@dataclass
class Throughput:
    workers: int
    connections: int
    records: int
    contacts: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def _connect(engine: Engine, settings: Settings, sandbox: SandboxProcess, crm: str, n: int) -> str:
    with transaction(engine) as session:
        org = organisations.create_organisation(session, f"bench {crm} {n}").id
        spec = connection_spec(crm, sandbox, f"{crm}-{n}")
        return add_connection(session, settings, org, spec, check=False).id


def throughput(sandbox: SandboxProcess, connections: int, records: int, workers: int) -> Throughput:
    with fresh_schema() as url:
        settings, env = store_settings(url)
        engine = make_engine(url)
        ids = [
            _connect(engine, settings, sandbox, "salesforce" if n % 2 else "hubspot", n)
            for n in range(connections)
        ]
        processes = [start_worker(env, "--hostname", f"bench{n}@%h") for n in range(workers)]
        try:
            wait_for_workers(settings, workers)
            started = time.time()
            for connection_id in ids:
                enqueue_sync(settings, connection_id, trigger="operator", full=True)
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                with transaction(engine) as session:
                    done = session.scalar(select(func.count()).where(SyncRun.status != "running"))
                if (done or 0) >= connections:
                    break
                time.sleep(0.5)
            with transaction(engine) as session:
                runs = list(session.scalars(select(SyncRun)))
        finally:
            for process in processes:
                stop_process(process)
            engine.dispose()
    failed = [r.error for r in runs if r.status != "succeeded"]
    if failed or len(runs) < connections:
        raise RuntimeError(f"{len(failed)} runs failed, {len(runs)} ran: {failed[:3]}")
    finished = max(r.finished_at for r in runs if r.finished_at is not None).timestamp()
    return Throughput(
        workers,
        connections,
        sum(int(r.counters.get("created", 0)) for r in runs),
        sum(int(r.counters.get("contacts", 0)) for r in runs),
        finished - started,
    )


@dataclass
class WebhookWait:
    #: from each edit in the CRM to its customer row written
    latencies: list[float]
    during_backfill: bool
    backfill_seconds: float
    #: how the long backfill ended (or "running") and what it wrote, so that a backfill
    #: that failed early is not taken for a long one
    backfill_status: str
    backfill_counters: dict[str, int]
    #: from each edit to its webhook stored in crmsync's inbox (delivery and intake)
    delivered: list[float]
    #: from the inbox to the start of the webhook sync that took it (the queue's wait)
    queued: list[float]


def webhook_behind_backfill(records: int, edits: int) -> WebhookWait:
    """Webhook syncs of one connection while another connection's backfill of ``records``
    companies runs (one worker on every queue, one on the webhook queue)."""
    sandbox = start_sandbox("hubspot", records)
    try:
        with fresh_schema() as url:
            settings, env = store_settings(url)
            engine = make_engine(url)
            long = _connect(engine, settings, sandbox, "hubspot", 0)
            target = _connect(engine, settings, sandbox, "hubspot", 1)
            processes = [
                start_worker(env, "--hostname", "general@%h"),
                start_worker(env, "--hostname", "webhook@%h", "--queues", "webhook"),
            ]
            web = None
            try:
                wait_for_workers(settings, 2)
                web = start_web(settings, env)
                with sandbox.control("hubspot") as control:
                    control.put(
                        "/webhooks",
                        json={
                            "url": f"{settings.public_base_url}/webhooks/hubspot/{target}",
                            "enabled": True,
                            "client_secret": HUBSPOT_SECRET,
                        },
                    )
                crm_ids = _first_company_ids(sandbox, edits)
                enqueue_sync(settings, long, trigger="operator", full=True)
                _wait_for_run(engine, long)
                time.sleep(1.0)  # the backfill is well under way
                edited: dict[str, float] = {}
                with sandbox.control("hubspot") as control:
                    for crm_id in crm_ids:
                        control.patch(
                            f"/objects/companies/{crm_id}",
                            json={"properties": {"city": "Webhook City"}},
                        )
                        edited[crm_id] = time.time()
                        time.sleep(0.25)
                seen = _wait_for_city(engine, target, edited, "Webhook City")
                with transaction(engine) as session:
                    received = {
                        crm_id: at.timestamp()
                        for crm_id, at in session.execute(
                            select(InboundEvent.crm_id, func.min(InboundEvent.received_at))
                            .where(InboundEvent.connection_id == target)
                            .group_by(InboundEvent.crm_id)
                        )
                    }
                    starts = sorted(
                        at.timestamp()
                        for at in session.scalars(
                            select(SyncRun.started_at).where(SyncRun.connection_id == target)
                        )
                    )
                with transaction(engine) as session:
                    run = session.scalars(
                        select(SyncRun).where(SyncRun.connection_id == long)
                    ).one()
                    running_then = run.status == "running" or (
                        run.finished_at is not None
                        and run.finished_at.timestamp() > max(seen.values())
                    )
                    backfill = (
                        float(run.duration_seconds or 0)
                        if run.status != "running"
                        else time.time() - run.started_at.timestamp()
                    )
                    backfill_status = run.status
                    backfill_counters = {k: int(v) for k, v in (run.counters or {}).items()}
            finally:
                if web is not None:
                    stop_process(web)
                for process in processes:
                    stop_process(process)
                engine.dispose()
    finally:
        sandbox.stop()
    return WebhookWait(
        [seen[i] - edited[i] for i in edited],
        running_then,
        backfill,
        backfill_status,
        backfill_counters,
        [received.get(i, seen[i]) - edited[i] for i in edited],
        [_queued(received.get(i, seen[i]), starts) for i in edited],
    )


def _queued(received: float, starts: list[float]) -> float:
    """From an event stored in the inbox to the start of the first sync after it."""
    return next((s for s in starts if s >= received), received) - received


def _first_company_ids(sandbox: SandboxProcess, count: int) -> list[str]:
    answer = httpx.get(
        f"{sandbox.hubspot_url}/crm/v3/objects/companies",
        params={"limit": count},
        headers={"Authorization": "Bearer bench-token"},
        trust_env=False,
    ).json()
    return [str(r["id"]) for r in answer["results"]]


def _wait_for_run(engine: Engine, connection_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with transaction(engine) as session:
            if session.scalar(select(SyncRun.id).where(SyncRun.connection_id == connection_id)):
                return
        time.sleep(0.05)
    raise TimeoutError("the backfill did not start")


def _wait_for_city(
    engine: Engine, connection_id: str, edited: dict[str, float], city: str
) -> dict[str, float]:
    """When each edited record's customer row got ``city`` (its ``updated_at``)."""
    deadline = time.monotonic() + 120
    seen: dict[str, float] = {}
    while time.monotonic() < deadline and len(seen) < len(edited):
        with transaction(engine) as session:
            query = (
                select(LinkRow.crm_id, CustomerRow.updated_at, CustomerRow.address)
                .join(CustomerRow, CustomerRow.id == LinkRow.customer_id)
                .where(LinkRow.connection_id == connection_id, LinkRow.crm_id.in_(list(edited)))
            )
            for crm_id, updated_at, address in session.execute(query):
                if (address or {}).get("city") == city and crm_id not in seen:
                    seen[crm_id] = updated_at.timestamp()
        time.sleep(0.05)
    if len(seen) < len(edited):
        raise TimeoutError(f"only {len(seen)} of {len(edited)} webhook edits arrived")
    return seen


def summary(results: list[Throughput], wait: WebhookWait | None) -> dict[str, Any]:
    return {
        "throughput": [r.__dict__ | {"rate": r.rate} for r in results],
        "webhook_wait": None if wait is None else wait.__dict__,
    }
