"""Load: signed HubSpot webhooks at 50 requests a second against ``crmsync web`` (its own
process, on loopback) with one worker: none is lost; the answer time and the time from
request to database (the event synced and marked handled) are reported, p50 and p99.

``make test`` runs 3 seconds of it; ``make test-slow`` the full 60 seconds.

The sender is HubSpot's: a delivery whose connection fails is sent again (HubSpot retries
on a failed connection, a time-out or a 5xx), at most ``TRIES`` times; retries are
reported. Its idle connections expire before the server's (uvicorn closes a connection
idle for 5 s, httpx's default expiry is also 5 s: a request sent on a connection as the
server closes it is reset, which no server can prevent).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from connectors.hubspot.webhooks import signature_v3
from sandbox.server import Sandbox
from sync.engine import sync_connection
from sync.store.db import transaction
from sync.store.models import InboundEvent
from tests.conftest import Figures
from tests.reliability.conftest import free_port
from tests.tasks.conftest import HUBSPOT_SECRET, Stack, wait_for

RATE = 50
#: tries per delivery when its connection fails (HubSpot retries a failed connection)
TRIES = 3
#: the sender's idle connections expire well before uvicorn's 5 s keep-alive time-out
KEEPALIVE_EXPIRY_SECONDS = 1.0
DURATIONS = [
    pytest.param(3, id="3s"),
    pytest.param(60, id="60s", marks=pytest.mark.slow),
]


class Signer:
    """HubSpot deliveries as HubSpot signs them (v3), for ``api``."""

    def __init__(self, api: str) -> None:
        self.api = api

    def delivery(self, path: str, company: str, event_id: int) -> tuple[bytes, dict[str, str]]:
        now = int(time.time() * 1000)
        event = {
            "eventId": event_id,
            "subscriptionId": 1,
            "portalId": 62515,
            "appId": 1,
            "occurredAt": now,
            "subscriptionType": "company.propertyChange",
            "attemptNumber": 0,
            "objectId": int(company),
            "changeSource": "CRM_UI",
            "propertyName": "name",
            "propertyValue": "x",
        }
        body = json.dumps([event]).encode()
        stamp = str(now)
        signature = signature_v3(HUBSPOT_SECRET, "POST", self.api + path, body, stamp)
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": stamp,
        }
        return body, headers


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.parametrize("seconds", DURATIONS)
def test_webhooks_at_50_per_second_are_all_synced(
    stack: Stack, crm: Sandbox, figures: Figures, seconds: int
) -> None:
    org = stack.organisation()
    companies = crm.hubspot.seed_companies(200)
    connection = stack.hubspot(crm, org)
    assert sync_connection(stack.engine, stack.settings, connection).status == "succeeded"
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    stack.env["CRMSYNC_PUBLIC_BASE_URL"] = api
    stack.start("web", "web", "--port", str(port), ready="Uvicorn running")
    stack.worker(queues="webhook")
    signer = Signer(api)
    path = f"/webhooks/hubspot/{connection}"

    total = RATE * seconds
    sent_at: dict[int, datetime] = {}
    answers: list[float] = []
    failures: list[str] = []
    retried: list[str] = []
    ok: list[int] = []
    lock = threading.Lock()

    def send(n: int, client: httpx.Client) -> None:
        event_id = 10_000 + n
        body, headers = signer.delivery(path, companies[n % len(companies)], event_id)
        started = time.perf_counter()
        stamp = datetime.now(UTC)
        for attempt in range(1, TRIES + 1):
            try:
                answer = client.post(api + path, content=body, headers=headers)
                break
            except httpx.TransportError as error:
                with lock:
                    (retried if attempt < TRIES else failures).append(f"{n}: {error!r}")
        else:
            return
        took = time.perf_counter() - started
        with lock:
            sent_at[event_id] = stamp
            answers.append(took)
            if answer.status_code == 200:
                ok.append(n)
            else:
                failures.append(f"{n}: {answer.status_code} {answer.text}")

    began = time.monotonic()
    limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS)
    with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(16) as pool:
        for n in range(total):
            # paced: request n leaves at n / RATE seconds, whatever the answers do
            delay = began + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, n, client)
    offered = time.monotonic() - began

    def all_handled() -> list[InboundEvent] | None:
        with transaction(stack.engine) as session:
            events = list(
                session.scalars(
                    select(InboundEvent).where(InboundEvent.connection_id == connection)
                )
            )
        done = [e for e in events if e.status == "handled"]
        return events if len(done) == len(sent_at) == len(events) else None

    events = wait_for(all_handled, 120 + seconds, "every webhook event to be synced")
    to_database = [
        (e.handled_at - sent_at[int(e.event_key)]).total_seconds()
        for e in events
        if e.handled_at is not None and int(e.event_key) in sent_at
    ]
    figures.report(
        rate_per_second=RATE,
        seconds=seconds,
        requests=total,
        answered_200=len(ok),
        retried_after_a_failed_connection=len(retried),
        failed=len(failures),
        events_stored=len(events),
        events_lost=total - len(events),
        seconds_until_all_answered=round(offered, 1),
        answer_p50_ms=round(statistics.median(answers) * 1000, 1),
        answer_p99_ms=round(percentile(answers, 0.99) * 1000, 1),
        to_database_p50_ms=round(statistics.median(to_database) * 1000, 1),
        to_database_p99_ms=round(percentile(to_database, 0.99) * 1000, 1),
    )
    assert failures == []
    assert len(events) == total
