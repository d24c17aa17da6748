"""crmsync's full backfill beside the open extractors, on one sandbox, in one run.

For one CRM and N records: the sandbox starts seeded with N accounts / companies (and
their ~2.5 N contacts); each extractor extracts them (bench/extractors.py); then crmsync
backfills them twice, each time into a fresh PostgreSQL schema through a fresh Celery
worker on Redis, as ``crmsync sync --full`` sends it: once with the connection's contacts
switched off (``--setting contacts=false``: the same objects the extractors read) and
once as configured by default (accounts / companies *and* contacts: the full two-way
backfill). The ratio is crmsync's accounts / companies per second over the extractor's.

API calls are what the sandbox served during each run, so every tool is counted alike.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import extractors
from bench.common import (
    Bench,
    SandboxProcess,
    backend_cpu_seconds,
    bench,
    cpu_seconds,
    request_counts,
    reset_counts,
    start_sandbox,
)

#: an account / company page of the list API at its maximum
PULL_PAGE = {"salesforce": 2000, "hubspot": 100}
#: records per batch write at its maximum (sObject Collections; HubSpot batch update)
PUSH_BATCH = {"salesforce": 200, "hubspot": 100}


@dataclass
class Measured:
    """One tool's run, as the table shows it."""

    crm: str
    tool: str
    what: str
    seconds: float
    records: int
    calls: int
    peak_rss_mb: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def crmsync_backfill(
    crm: str,
    records: int,
    sandbox: SandboxProcess,
    *,
    contacts: bool,
    then: Callable[[Bench], None] | None = None,
    timeout: float = 3600,
) -> Measured:
    """A full backfill of ``records`` through the worker into an empty store."""
    settings = None if contacts else {"contacts": False}
    with bench(crm, records, sandbox=sandbox, connection_settings=settings) as b:
        reset_counts(sandbox, crm)
        assert b.worker is not None
        load_before = os.getloadavg()[0]
        before = _cpu(b, sandbox)
        run = b.sync(full=True, timeout=timeout, poll=0.2)
        cpu = {k: round(v - before.get(k, 0.0), 2) for k, v in _cpu(b, sandbox).items()}
        load = {"start": load_before, "end": os.getloadavg()[0]}
        if run.status != "succeeded":
            raise RuntimeError(f"crmsync's backfill failed: {run.error}")
        wall = b.last_wall_seconds  # before ``then``: its syncs set it again
        worker_start = b.worker_start_seconds
        calls = {k: v for k, v in request_counts(sandbox, crm).items() if v}
        peak = b.worker_peak_rss_mb()
        counters = dict(run.counters)
        if then is not None:
            then(b)
    linked = int(counters.get("linked", 0))
    pulled = int(counters.get("created", 0)) + linked
    n_contacts = int(counters.get("contacts", 0))
    what = (
        f"{_objects(crm)} and {n_contacts:,} contacts → PostgreSQL"
        if contacts
        else f"{_objects(crm)} only (contacts=false) → PostgreSQL"
    )
    return Measured(
        crm,
        "crmsync" if contacts else "crmsync, contacts=false",
        what,
        wall,
        pulled,
        sum(calls.values()),
        peak,
        {
            "run_seconds": float(run.duration_seconds or 0),
            # not in the wall time: the worker was answering before the task was sent
            "worker_start_seconds": round(worker_start, 2),
            "contacts": n_contacts,
            "calls_by_endpoint": calls,
            "counters": counters,
            "cpu_seconds": cpu,
            "load_average": load,
            "minimum_calls": _minimum_calls(
                crm, records, n_contacts if contacts else 0, linked=linked
            ),
        },
    )


def _cpu(b: Bench, sandbox: SandboxProcess) -> dict[str, float]:
    """CPU seconds so far of the worker, its PostgreSQL backends and the sandbox: the three
    a backfill runs on (a run's share is the difference over it)."""
    assert b.worker is not None
    backends = backend_cpu_seconds(b.engine, b.worker.pid)
    return {
        "worker": cpu_seconds(b.worker.pid),
        "postgres": sum(backends.values()),
        "sandbox": cpu_seconds(sandbox.process.pid),
    }


def _objects(crm: str) -> str:
    return "Accounts" if crm == "salesforce" else "companies"


def _minimum_calls(crm: str, records: int, contacts: int, *, linked: int = 0) -> int:
    """Pages of a full pull at the list API's maximum page size (contacts too, if any),
    and the batch writes of the billing id into the records linked to customers billing
    already had (records billing creates from the CRM cost no write)."""
    page = PULL_PAGE[crm]
    pulls = -(-records // page) + (-(-contacts // page) if contacts else 0)
    return pulls + -(-linked // PUSH_BATCH[crm])


def run_extractors(crm: str, sandbox: SandboxProcess, workdir: Path) -> list[Measured]:
    """Every extractor of this CRM that installs here, against ``sandbox``."""
    proxy = extractors.start_proxy(sandbox, workdir)
    runs: list[extractors.ExtractorRun] = []
    skipped: list[Measured] = []
    try:
        jobs: list[tuple[str, Callable[[], extractors.ExtractorRun]]]
        if crm == "hubspot":
            jobs = [
                ("meltano-tap-hubspot", lambda: extractors.tap_hubspot(sandbox, proxy, workdir)),
                ("dlt", lambda: extractors.dlt_hubspot(sandbox, workdir)),
            ]
        else:
            jobs = [("tap-salesforce", lambda: extractors.tap_salesforce(sandbox, proxy, workdir))]
        for name, job in jobs:
            try:
                runs.append(job())
            except extractors.NotInstalled as error:
                skipped.append(Measured(crm, name, f"not installed here: {error}", 0, 0, 0, 0))
        if proxy.refused:
            raise RuntimeError(f"an extractor tried to leave the machine: {proxy.refused}")
    finally:
        proxy.stop()
    return [
        Measured(
            r.crm,
            f"{r.tool} {r.version}",
            r.what,
            r.seconds,
            r.records,
            r.calls,
            r.peak_rss_mb,
            {"calls_by_endpoint": r.calls_by_endpoint, "proxy_cpu_seconds": r.proxy_cpu_seconds},
        )
        for r in runs
    ] + skipped


def side_by_side(
    crm: str,
    records: int,
    *,
    with_extractors: bool = True,
    then: Callable[[Bench], None] | None = None,
) -> list[Measured]:
    """The extractors, then crmsync with contacts off and on, on one seeded sandbox.
    ``then`` runs on the full backfill's store and worker afterwards (more figures)."""
    sandbox = start_sandbox(crm, records)
    try:
        with tempfile.TemporaryDirectory(prefix="crmsync-extractors-") as workdir:
            measured = run_extractors(crm, sandbox, Path(workdir)) if with_extractors else []
        measured.append(crmsync_backfill(crm, records, sandbox, contacts=False))
        measured.append(crmsync_backfill(crm, records, sandbox, contacts=True, then=then))
    finally:
        sandbox.stop()
    return measured


def ratio(crmsync: Measured, other: Measured) -> float:
    return crmsync.rate / other.rate if other.rate else 0.0
