"""``make bench``: crmsync's figures against the sandbox, into PostgreSQL, through the worker.

Prints two tables (figures with their targets; the backfill side by side with the open
extractors) and writes ``bench/results/latest.json`` with the machine, the load and every
number. ``--quick`` runs small variants (a smoke run); ``--big`` is ``make bench-big``;
``--side-by-side N`` runs only the backfills beside the extractors (HubSpot, then
Salesforce, N records each) and ``crmsync --help`` (``bench/results/side_by_side.json``);
``--many`` runs only the 200 connections through 1 and 2 workers and the webhook sync beside
a long backfill (``bench/results/many.json``).

| figure | target |
|---|---|
| backfill of 100k beside meltano-tap-hubspot, tap-salesforce, dlt | >= 1x, >= 1x, >= 3x |
|   | API calls = the pages of a full pull at the maximum size |
|   | peak RSS <= 200 MB |
| peak memory of a backfill | 100k <= 1.2 x 10k (and 1M <= 1.2 x 100k: ``--big``) |
| incremental sync with nothing changed, at 100k | <= 2 API calls and < 1 s |
| incremental sync with 1% changed, at 100k | API calls = ceil(changed / page max) + at most 1 |
| push of 10k billing-side changes | API calls = ceil(M / 200) Salesforce, ceil(M / 100) HubSpot |
| webhook to database, 1,000 events | p50 and p99; p99 < 1 s |
| 200 connections x 500 records, 1 and 2 workers | records/s |
| webhook sync beside a long backfill | < 1 s (a worker on the webhook queue) |
| ``crmsync --help`` | <= 0.3 s |
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
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select, update

from bench import many
from bench.common import (
    CRMSYNC,
    HUBSPOT_SECRET,
    ROOT,
    Bench,
    bench,
    reset_counts,
    start_sandbox,
    start_web,
    stop_process,
)
from bench.side_by_side import Measured, crmsync_backfill, ratio, side_by_side
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


def incremental_nothing(b: Bench, records: int) -> None:
    reset_counts(b.sandbox, b.crm)
    run = b.sync()
    assert run.status == "succeeded", run.error
    calls = int(run.counters.get("calls_pull", 0))
    seconds = float(run.duration_seconds or 0)
    record(
        f"incremental, nothing changed, {records // 1000}k",
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
        f"incremental, 1% changed, {records // 1000}k",
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
    web = start_web(b.settings, b.env)
    try:
        target = f"{b.settings.public_base_url}/webhooks/{b.crm}/{b.connection_id}"
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
        stop_process(web)
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

#: crmsync's backfill against each extractor: at least this many times its records/s
RATIO_TARGETS = {"meltano-tap-hubspot": 1.0, "tap-salesforce": 1.0, "dlt": 3.0}
PEAK_RSS_TARGET_MB = 200

side_rows: list[Measured] = []


def backfill_side_by_side(crm: str, records: int, then: Any = None) -> Measured:
    """The extractors and crmsync's backfill (contacts off, then on) on one sandbox."""
    measured = side_by_side(crm, records, then=then)
    side_rows.extend(measured)
    full = next(m for m in measured if m.tool == "crmsync")
    lean = next(m for m in measured if m.tool == "crmsync, contacts=false")
    size = f"{records // 1000}k"
    for other in measured:
        key = other.tool.split(" ")[0]
        if key not in RATIO_TARGETS or not other.rate:
            continue
        target = RATIO_TARGETS[key]
        r_full, r_lean = ratio(full, other), ratio(lean, other)
        record(
            f"backfill {size} vs {key}",
            crm,
            f"{r_full:.2f}x ({full.rate:,.0f} vs {other.rate:,.0f}/s); "
            f"contacts=false {r_lean:.2f}x",
            f">= {target:g}x",
            r_full >= target,
            ratio=r_full,
            ratio_contacts_off=r_lean,
        )
    for m in (lean, full):
        minimum = int(m.detail["minimum_calls"])
        record(
            f"backfill {size}: API calls ({m.tool})",
            crm,
            f"{m.calls:,} ({m.detail['calls_by_endpoint']})",
            f"= {minimum:,} (pages at the maximum size)",
            m.calls == minimum,
            calls=m.calls,
        )
    record(
        f"backfill {size}: peak RSS",
        crm,
        f"{full.peak_rss_mb:.0f} MB (contacts=false {lean.peak_rss_mb:.0f} MB)",
        f"<= {PEAK_RSS_TARGET_MB} MB",
        full.peak_rss_mb <= PEAK_RSS_TARGET_MB,
        peak_rss_mb=full.peak_rss_mb,
    )
    return full


def run(quick: bool) -> None:
    sizes = (10_000,) if quick else (10_000, 100_000)
    for crm in ("salesforce", "hubspot"):
        if not quick:
            sandbox_is_not_the_limit(crm, sizes[-1])
        peaks: dict[int, float] = {}

        def more_figures(b: Bench, crm: str = crm) -> None:
            incremental_nothing(b, sizes[-1])
            incremental_one_percent(b, sizes[-1])
            push_billing_changes(b, min(10_000, sizes[-1]))

        Console().print(f"[bold]{crm}: {sizes[-1]:,} records, side by side[/bold]")
        peaks[sizes[-1]] = backfill_side_by_side(crm, sizes[-1], then=more_figures).peak_rss_mb
        if len(sizes) == 2:
            with bench(crm, sizes[0]) as b:
                peaks[sizes[0]] = backfill(b, sizes[0])
            ratio_ = peaks[sizes[1]] / peaks[sizes[0]]
            record(
                "peak memory, backfill 100k vs 10k",
                crm,
                f"{peaks[sizes[1]]:.0f} MB vs {peaks[sizes[0]]:.0f} MB (x{ratio_:.2f})",
                "<= x1.2",
                ratio_ <= 1.2,
                peak_10k_mb=peaks[sizes[0]],
                peak_100k_mb=peaks[sizes[1]],
            )
        with bench(crm, 2_000) as b:
            _enable_webhooks(b)
            backfill_run = b.sync(full=True)
            assert backfill_run.status == "succeeded", backfill_run.error
            webhook_latency(b, 200 if quick else 1_000)
    many_connections(quick)
    help_time()


def many_connections(quick: bool) -> None:
    """200 connections x 500 records through 1 and 2 workers; webhook syncs beside a long
    backfill (see bench/many.py)."""
    connections, records = (20, 100) if quick else (200, 500)
    Console().print(f"[bold]{connections} connections x {records} records[/bold]")
    sandbox = start_sandbox("both", records)
    try:
        results = [many.throughput(sandbox, connections, records, n) for n in (1, 2)]
    finally:
        sandbox.stop()
    for r in results:
        record(
            f"{connections} connections x {records}: {r.workers} worker(s)",
            "both",
            f"{r.rate:,.0f} records/s ({r.records:,} + {r.contacts:,} contacts in "
            f"{r.seconds:.1f} s)",
            "2 workers faster than 1" if r.workers == 2 else "all runs succeed",
            r.workers == 1 or r.rate > results[0].rate,
            seconds=r.seconds,
            rate=r.rate,
        )
    wait = many.webhook_behind_backfill(5_000 if quick else 50_000, 5 if quick else 20)
    worst = max(wait.queued)
    so_far = (
        f"{wait.backfill_counters.get('created', 0):,} customers and "
        f"{wait.backfill_counters.get('contacts', 0):,} contacts"
    )
    backfill = (
        f"{wait.backfill_seconds:.0f} s in and still running when the last edit was synced, "
        f"{so_far} written so far"
        if wait.backfill_status == "running"
        else f"it {wait.backfill_status} in {wait.backfill_seconds:.0f} s, {so_far}"
    )
    record(
        "webhook sync beside a long backfill",
        "hubspot",
        f"waits in the queue p50 {statistics.median(wait.queued) * 1000:.0f} ms, max "
        f"{worst * 1000:.0f} ms; edit to row p50 {statistics.median(wait.latencies):.1f} s "
        f"(to the inbox {statistics.median(wait.delivered):.1f} s); during the backfill: "
        f"{'yes' if wait.during_backfill else 'NO'} ({backfill})",
        "< 1 s on the webhook queue",
        worst < 1 and wait.during_backfill and wait.backfill_status in ("running", "succeeded"),
        latencies=wait.latencies,
        delivered=wait.delivered,
        queued=wait.queued,
        backfill_status=wait.backfill_status,
        backfill_counters=wait.backfill_counters,
    )


def help_time() -> None:
    """``crmsync --help``: the best of five runs, wall clock, process start included."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([CRMSYNC, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    record(
        "crmsync --help",
        "-",
        f"{min(times):.2f} s (median {statistics.median(times):.2f} s)",
        "<= 0.3 s",
        min(times) <= 0.3,
        seconds=min(times),
    )


def run_big() -> None:
    """``make bench-big``: crmsync's full backfill at 100k and at 1,000,000 records: peak
    memory stays flat and the time grows in proportion."""
    for crm in ("salesforce", "hubspot"):
        runs: dict[int, Measured] = {}
        for size in (100_000, 1_000_000):
            Console().print(f"[bold]{crm}: {size:,} records[/bold]")
            sandbox = start_sandbox(crm, size)
            try:
                runs[size] = crmsync_backfill(crm, size, sandbox, contacts=True, timeout=7200)
            finally:
                sandbox.stop()
            side_rows.append(runs[size])
        small, big = runs[100_000], runs[1_000_000]
        memory = big.peak_rss_mb / small.peak_rss_mb
        time_ratio = big.seconds / small.seconds
        record(
            "peak memory, backfill 1M vs 100k",
            crm,
            f"{big.peak_rss_mb:.0f} MB vs {small.peak_rss_mb:.0f} MB (x{memory:.2f})",
            "<= x1.2",
            memory <= 1.2,
        )
        record(
            "time, backfill 1M vs 100k",
            crm,
            f"{big.seconds:.0f} s vs {small.seconds:.1f} s (x{time_ratio:.1f}; "
            f"{big.rate:,.0f} vs {small.rate:,.0f}/s)",
            "about x10 (proportional)",
            time_ratio <= 12,
        )


def side_by_side_table() -> Table:
    table = Table(title="full backfill, side by side (same sandbox, same run)")
    for column in (
        "CRM",
        "tool",
        "what",
        "wall s",
        "records/s",
        "crmsync ÷ it",
        "API calls",
        "peak RSS",
    ):
        table.add_column(column)
    for m in side_rows:
        crmsync = next((r for r in side_rows if r.crm == m.crm and r.tool == "crmsync"), None)
        lean = next(
            (r for r in side_rows if r.crm == m.crm and r.tool == "crmsync, contacts=false"),
            None,
        )
        shown = ""
        if crmsync and lean and m.rate and not m.tool.startswith("crmsync"):
            shown = f"{ratio(crmsync, m):.2f}x (contacts=false {ratio(lean, m):.2f}x)"
        table.add_row(
            m.crm,
            m.tool,
            m.what,
            f"{m.seconds:.1f}" if m.seconds else "",
            f"{m.rate:,.0f}" if m.rate else "",
            shown,
            f"{m.calls:,}" if m.calls else "",
            f"{m.peak_rss_mb:.0f} MB" if m.peak_rss_mb else "",
        )
    return table


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
    parser.add_argument("--big", action="store_true", help="the 1,000,000-record backfill")
    parser.add_argument(
        "--side-by-side",
        type=int,
        metavar="N",
        help="only the backfills of N records beside the extractors, and crmsync --help",
    )
    parser.add_argument(
        "--many",
        action="store_true",
        help="only the 200 connections through 1 and 2 workers, and the webhook beside a backfill",
    )
    args = parser.parse_args()
    started = datetime.now(UTC)
    load = os.getloadavg()
    if args.side_by_side:
        for crm in ("hubspot", "salesforce"):
            Console().print(f"[bold]{crm}: {args.side_by_side:,} records, side by side[/bold]")
            backfill_side_by_side(crm, args.side_by_side)
        help_time()
    elif args.big:
        run_big()
    elif args.many:
        many_connections(args.quick)
    else:
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
    if side_rows:
        Console().print(side_by_side_table())
    seconds = (datetime.now(UTC) - started).total_seconds()
    Console().print(
        f"load average at the start {load[0]:.2f}, at the end {os.getloadavg()[0]:.2f}; "
        f"the bench took {seconds / 60:.1f} min"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "started": started.isoformat(),
        "seconds": seconds,
        "load_average": {"start": load, "end": os.getloadavg()},
        "machine": machine(),
        "figures": rows,
        "side_by_side": [asdict(m) | {"rate": m.rate} for m in side_rows],
    }
    name = (
        "side_by_side.json"
        if args.side_by_side
        else "big.json"
        if args.big
        else "many.json"
        if args.many
        else "latest.json"
    )
    (RESULTS / name).write_text(json.dumps(out, indent=2, default=str))
    Console().print(f"written {RESULTS / name}")


if __name__ == "__main__":
    main()
