"""``make bench``: crmsync's figures against the sandbox, into PostgreSQL, through the worker.

Prints a table (figure, CRM, measured, target, met?) and writes ``bench/results/latest.json``
with the machine and every number. ``--quick`` runs 10k-record variants only (a smoke run).

| figure | target |
|---|---|
| full backfill of 10k and of 100k records, each CRM | >= 5,000 records/s; |
|   | API calls = ceil(N / page max) |
| incremental sync with nothing changed, at 100k | <= 2 API calls and < 1 s |
| incremental sync with 1% changed, at 100k | API calls = ceil(changed / page max) + at most 1 |
| push of 10k billing-side changes | API calls = ceil(M / 200) Salesforce, ceil(M / 100) HubSpot |
| webhook to database, 1,000 events | p50 and p99; p99 < 1 s |
| peak memory of a backfill | 100k <= 1.2 x 10k |
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select, update

from bench.common import CRMSYNC, HUBSPOT_SECRET, ROOT, Bench, bench, reset_counts
from sync.store import repository
from sync.store import sync_repository as repo
from sync.store.db import transaction
from sync.store.models import CustomerRow, LinkRow, utcnow

PULL_PAGE = {"salesforce": 2000, "hubspot": 100}  # full pull page maximum
SEARCH_PAGE = {"salesforce": 2000, "hubspot": 200}  # incremental page maximum
PUSH_BATCH = {"salesforce": 200, "hubspot": 100}
RESULTS = ROOT / "bench" / "results"

rows: list[dict[str, Any]] = []


def record(figure: str, crm: str, measured: str, target: str, met: bool, **data: Any) -> None:
    rows.append(
        {"figure": figure, "crm": crm, "measured": measured, "target": target, "met": met, **data}
    )
    Console().print(f"  {figure} [{crm}]: {measured} (target {target}) {'ok' if met else 'MISSED'}")


# --- figures -------------------------------------------------------------------------------


def backfill(b: Bench, records: int) -> float:
    """A first, full sync of ``records`` CRM records into an empty store."""
    run = b.sync(full=True)
    assert run.status == "succeeded", run.error
    seconds = float(run.duration_seconds or 0)
    rate = records / seconds
    calls = int(run.counters.get("calls_pull", 0))
    expected = math.ceil(records / PULL_PAGE[b.crm])
    peak = b.worker_peak_rss_mb()
    record(
        f"backfill {records // 1000}k: records/s",
        b.crm,
        f"{rate:,.0f}/s ({seconds:.1f} s; {run.counters.get('contacts', 0):,} contacts too)",
        ">= 5,000/s",
        rate >= 5000,
        seconds=seconds,
        records=records,
        contacts=run.counters.get("contacts"),
    )
    record(
        f"backfill {records // 1000}k: API calls",
        b.crm,
        f"{calls} for accounts/companies (+{run.counters.get('calls_contacts', 0)} for contacts)",
        f"= {expected}",
        calls == expected,
        calls=calls,
        contact_calls=run.counters.get("calls_contacts"),
    )
    b.extra[f"peak_{records}"] = peak
    return peak


def incremental_nothing(b: Bench) -> None:
    reset_counts(b.sandbox, b.crm)
    run = b.sync()
    assert run.status == "succeeded", run.error
    calls = int(run.counters.get("calls_pull", 0))
    seconds = float(run.duration_seconds or 0)
    record(
        "incremental, nothing changed, 100k",
        b.crm,
        f"{calls} calls for accounts/companies (+{run.counters.get('calls_contacts', 0)} for "
        f"contacts), {seconds:.3f} s",
        "<= 2 calls, < 1 s",
        calls <= 2 and seconds < 1,
        calls=calls,
        seconds=seconds,
    )


def _crm_ids(b: Bench, count: int) -> list[str]:
    with transaction(b.engine) as session:
        return list(
            session.scalars(
                select(LinkRow.crm_id)
                .where(LinkRow.connection_id == b.connection_id)
                .order_by(LinkRow.crm_id)
                .limit(count)
            )
        )


def _edit_in_crm(b: Bench, crm_ids: list[str], city: str) -> dict[str, float]:
    """Edit records as a CRM user would; the wall-clock time of each edit."""
    edited: dict[str, float] = {}
    with b.sandbox.control(b.crm) as client:
        for crm_id in crm_ids:
            if b.crm == "salesforce":
                client.patch(f"/records/Account/{crm_id}", json={"fields": {"BillingCity": city}})
            else:
                client.patch(f"/objects/companies/{crm_id}", json={"properties": {"city": city}})
            edited[crm_id] = time.time()
    return edited


def incremental_one_percent(b: Bench, records: int) -> None:
    changed = records // 100
    _edit_in_crm(b, _crm_ids(b, changed), "Incremental City")
    reset_counts(b.sandbox, b.crm)
    run = b.sync()
    assert run.status == "succeeded", run.error
    calls = int(run.counters.get("calls_pull", 0))
    expected = math.ceil(changed / SEARCH_PAGE[b.crm])
    seconds = float(run.duration_seconds or 0)
    record(
        "incremental, 1% changed, 100k",
        b.crm,
        f"{calls} calls, {run.counters.get('updated', 0):,} updated, {seconds:.2f} s",
        f"<= {expected} + 1",
        calls <= expected + 1 and run.counters.get("updated") == changed,
        calls=calls,
        seconds=seconds,
        changed=changed,
    )


def push_billing_changes(b: Bench, count: int) -> None:
    """``count`` billing-side edits (as the API would make them: row and outbox entry in one
    transaction), then one sync pushes them."""
    with transaction(b.engine) as session:
        ids = list(
            session.scalars(
                select(CustomerRow.id)
                .where(CustomerRow.organisation_id == b.organisation_id)
                .order_by(CustomerRow.id)
                .limit(count)
            )
        )
        session.execute(
            update(CustomerRow)
            .where(CustomerRow.id.in_(ids))
            .values(phone_number="+1 415 555 0199", updated_at=utcnow())
        )
        repository.add_outbox_entries(
            session, b.organisation_id, [(i, ["phone_number"]) for i in ids]
        )
    reset_counts(b.sandbox, b.crm)
    run = b.sync()
    assert run.status == "succeeded", run.error
    calls = int(run.counters.get("calls_push", 0))
    expected = math.ceil(count / PUSH_BATCH[b.crm])
    record(
        f"push of {count // 1000}k billing-side changes",
        b.crm,
        f"{calls} calls, {run.counters.get('pushed', 0):,} pushed, "
        f"{float(run.duration_seconds or 0):.1f} s",
        f"= {expected}",
        calls == expected and run.counters.get("pushed") == count,
        calls=calls,
    )


def webhook_latency(b: Bench, events: int) -> None:
    """CRM edits delivered as webhooks to ``crmsync web``, synced by the worker: the time
    from each edit to its customer row being updated."""
    web = subprocess.Popen(
        [CRMSYNC, "web", "--port", "8765"],
        env=b.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_web()
        target = f"http://127.0.0.1:8765/webhooks/{b.crm}/{b.connection_id}"
        with b.sandbox.control(b.crm) as client:
            if b.crm == "hubspot":
                client.put(
                    "/webhooks",
                    json={"url": target, "enabled": True, "client_secret": HUBSPOT_SECRET},
                )
            else:
                secret = b.extra["webhook_secret"]
                client.put("/outbound", json={"url": f"{target}?secret={secret}", "enabled": True})
        crm_ids = _crm_ids(b, events)
        city = "Webhook City"
        edited: dict[str, float] = {}
        for start in range(0, len(crm_ids), 50):  # a steady stream: 50 edits every 100 ms
            edited.update(_edit_in_crm(b, crm_ids[start : start + 50], city))
            time.sleep(0.1)
        latencies = _wait_for_updates(b, edited, city)
    finally:
        web.terminate()
        web.wait(timeout=20)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    record(
        f"webhook to database, {events} events",
        b.crm,
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms",
        "p99 < 1 s",
        p99 < 1,
        p50=p50,
        p99=p99,
    )


def _wait_for_web() -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get("http://127.0.0.1:8765/healthz", trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("crmsync web did not start")


def _wait_for_updates(b: Bench, edited: dict[str, float], city: str) -> list[float]:
    deadline = time.monotonic() + 120
    seen: dict[str, float] = {}
    while time.monotonic() < deadline and len(seen) < len(edited):
        with transaction(b.engine) as session:
            query = (
                select(LinkRow.crm_id, CustomerRow.updated_at, CustomerRow.address)
                .join(CustomerRow, CustomerRow.id == LinkRow.customer_id)
                .where(LinkRow.connection_id == b.connection_id, LinkRow.crm_id.in_(list(edited)))
            )
            for crm_id, updated_at, address in session.execute(query):
                if (address or {}).get("city") == city and crm_id not in seen:
                    seen[crm_id] = updated_at.timestamp()
        time.sleep(0.05)
    if len(seen) < len(edited):
        raise TimeoutError(f"only {len(seen)} of {len(edited)} webhook edits arrived")
    return [seen[i] - edited[i] for i in edited]


def sandbox_is_not_the_limit(crm: str, records: int) -> None:
    """A full pull of ``records`` through the connector (client library, mapping) against
    the same pages fetched raw (bytes only): the sandbox must not be what limits a pull."""

    from bench.common import start_sandbox
    from connectors import registry
    from connectors.base import ConnectionConfig

    sandbox = start_sandbox(crm, records)
    try:
        if crm == "salesforce":
            with sandbox.control(crm) as client:
                token = client.post("/tokens").json()["access_token"]
            config = ConnectionConfig(
                "bench",
                {"access_token": token},
                {
                    "instance_url": sandbox.salesforce_url,
                    "ca_bundle": sandbox.info["salesforce"]["ca_bundle"],
                },
            )
        else:
            token = "bench-token"
            config = ConnectionConfig(
                "bench", {"access_token": token}, {"host": sandbox.hubspot_url}
            )
        connector = registry.create(crm, config)
        _fetch_raw(crm, sandbox, token)  # warm-up: both passes then read served pages
        started = time.perf_counter()
        pulled = sum(len(page.records) for page in connector.pull_customers(None, full=True))
        through_connector = time.perf_counter() - started
        started = time.perf_counter()
        raw_pages = _fetch_raw(crm, sandbox, token)
        raw = time.perf_counter() - started
    finally:
        sandbox.stop()
    record(
        f"sandbox vs client, full pull of {records // 1000}k",
        crm,
        f"connector {pulled / through_connector:,.0f}/s; sandbox alone serves the same "
        f"{raw_pages} pages at {records / raw:,.0f}/s",
        "the client is the limit",
        raw < through_connector,
        connector_seconds=through_connector,
        raw_seconds=raw,
    )


def _fetch_raw(crm: str, sandbox: Any, token: str) -> int:
    """Every page of a full pull, as bytes (no JSON parsing): the sandbox's own speed."""
    import httpx

    pages = 0
    headers = {"Authorization": f"Bearer {token}"}
    if crm == "salesforce":
        with httpx.Client(
            base_url=sandbox.salesforce_url,
            verify=sandbox.info["salesforce"]["ca_bundle"],
            trust_env=False,
            headers={**headers, "Sforce-Query-Options": "batchSize=2000"},
            timeout=120,
        ) as client:
            url = "/services/data/v59.0/queryAll/"
            params: dict[str, Any] | None = {
                "q": "SELECT Id, Name, BillingStreet, BillingCity, BillingState, "
                "BillingPostalCode, BillingCountry, Phone, SystemModstamp FROM Account "
                "ORDER BY SystemModstamp ASC, Id ASC"
            }
            while url:
                body = client.get(url, params=params).content
                pages += 1
                params = None
                # only the paging link is read; the records are left unparsed
                url = _link(body, '"nextRecordsUrl":"') or ""
        return pages
    with httpx.Client(
        base_url=sandbox.hubspot_url, trust_env=False, headers=headers, timeout=120
    ) as client:
        after: str | None = None
        while True:
            params = {"limit": 100, "properties": ["name", "address", "city", "zip", "country"]}
            if after:
                params["after"] = after
            body = client.get("/crm/v3/objects/companies", params=params).content
            pages += 1
            after = _link(body, '"after":"')
            if not after:
                return pages


def _link(body: bytes, marker: str) -> str | None:
    """The string value after ``marker`` in the first or last 500 bytes of a body."""
    for part in (body[:500], body[-500:]):
        text = part.decode(errors="ignore").replace('": "', '":"')
        if marker in text:
            return text.rsplit(marker, 1)[1].split('"', 1)[0]
    return None


# --- the run -------------------------------------------------------------------------------


def run(quick: bool) -> None:
    sizes = (10_000,) if quick else (10_000, 100_000)
    for crm in ("salesforce", "hubspot"):
        sandbox_is_not_the_limit(crm, sizes[-1])
        peaks: dict[int, float] = {}
        for size in sizes:
            Console().print(f"[bold]{crm}: {size:,} records[/bold]")
            with bench(crm, size) as b:
                peaks[size] = backfill(b, size)
                if size == sizes[-1]:
                    incremental_nothing(b)
                    incremental_one_percent(b, size)
                    push_billing_changes(b, 10_000)
        if len(peaks) == 2:
            ratio = peaks[100_000] / peaks[10_000]
            record(
                "peak memory, backfill 100k vs 10k",
                crm,
                f"{peaks[100_000]:.0f} MB vs {peaks[10_000]:.0f} MB (x{ratio:.2f})",
                "<= x1.2",
                ratio <= 1.2,
                peak_10k_mb=peaks[10_000],
                peak_100k_mb=peaks[100_000],
            )
        with bench(crm, 2_000) as b:
            _enable_webhooks(b)
            backfill_run = b.sync(full=True)
            assert backfill_run.status == "succeeded", backfill_run.error
            webhook_latency(b, 1_000)


def _enable_webhooks(b: Bench) -> None:
    """Salesforce Outbound Messages carry the connection's secret in the URL."""
    if b.crm != "salesforce":
        return
    from sync.connections import update_connection

    secret = "bench-outbound-secret"
    with transaction(b.engine) as session:
        row = repo.get_connection(session, b.connection_id)
        assert row is not None
        update_connection(
            session, b.settings, row, {"credentials": {"webhook_secret": secret}}, check=False
        )
    b.extra["webhook_secret"] = secret


def machine() -> dict[str, Any]:
    memory = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "0",
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k variants only")
    args = parser.parse_args()
    started = datetime.now(UTC)
    run(args.quick)
    table = Table(title=f"crmsync benchmarks ({machine()['cpus']} cores)")
    for column in ("figure", "CRM", "measured", "target", "met"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["figure"],
            row["crm"],
            row["measured"],
            row["target"],
            "yes" if row["met"] else "[red]no[/red]",
        )
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"started": started.isoformat(), "machine": machine(), "figures": rows}
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=2, default=str))
    Console().print(f"written {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
