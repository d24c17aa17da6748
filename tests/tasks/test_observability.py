"""Operating crmsync, with real worker and beat processes on Redis: task events for Flower,
the worker's metrics port (its prefork children's figures added up), beat's heartbeat."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sandbox.server import Sandbox
from sync import alerts
from sync.engine import RunResult
from sync.store.db import transaction
from sync.store.models import ConnectionRow
from tasks import work
from tasks.app import SYNC_CONNECTION, celery
from tasks.beat import heartbeat_age
from tasks.enqueue import enqueue_sync
from tasks.locks import held
from tests.tasks.conftest import Stack, wait_for
from tests.tasks.test_worker import runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: an event type of the test's own, sent until the capture receives it
PROBE = "crmsync-test-probe"


class EventCapture:
    """Celery's event receiver on the stack's broker, on a thread (what Flower does)."""

    def __init__(self, stack: Stack) -> None:
        self.app = celery(stack.settings)
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            self._receiver = self.app.events.Receiver(
                connection, handlers={"*": self.events.append}
            )
            self.ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventCapture:
        self._thread.start()
        assert self.ready.wait(60), "the event receiver did not start"
        # The receiver's queue is bound only once it consumes (Redis subscribes on its first
        # poll), and an event sent before is lost: probe until one comes back (a fixed
        # pause could be outlasted on a loaded machine, and task-sent went missing).
        with self.app.connection_for_write() as connection:
            probe = self.app.events.Dispatcher(connection, hostname="probe@events-capture")
            wait_for(lambda: self._heard(probe), 60, "the event receiver to hear a probe")
        return self

    def _heard(self, probe: Any) -> bool:
        probe.send(PROBE)
        return any(e.get("type") == PROBE for e in self.events)

    def __exit__(self, *_: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("uuid") == task_id]


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and set(labels.items()) <= set(sample.labels.items()):
                total += sample.value
    return total


def test_worker_sends_task_events_and_serves_its_metrics(stack: Stack, crm: Sandbox) -> None:
    org = stack.organisation()
    crm.hubspot.seed_companies(5)
    connection = stack.hubspot(crm, org)
    port = free_port()
    stack.start(
        "w1",
        "worker",
        "--concurrency",
        "2",
        "--metrics-port",
        str(port),
        "--hostname",
        "w1@%h-events",
        "--loglevel",
        "info",
        ready="ready.",
    )
    with EventCapture(stack) as capture:
        task_id = enqueue_sync(stack.settings, connection)
        wait_for(
            lambda: any(e["type"] == "task-succeeded" for e in capture.of(task_id)),
            60,
            "the task's events",
        )
    kinds = [e["type"] for e in capture.of(task_id)]
    assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= set(kinds)
    named = [e for e in capture.of(task_id) if e["type"] in ("task-sent", "task-received")]
    assert {e["name"] for e in named} == {SYNC_CONNECTION}
    assert [r.status for r in runs(stack, connection)] == ["succeeded"]
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    # the run happened in a prefork child: the worker's port adds up its children's files
    ran = metric_value(text, "crmsync_runs_total", connection_id=connection, status="succeeded")
    assert ran == 1
    made = metric_value(text, "crmsync_records_total", connection_id=connection, outcome="created")
    assert made == 5
    called = {"organisation_id": org, "connection_id": connection, "crm": "hubspot"}
    assert metric_value(text, "crmsync_api_calls_total", status="ok", **called) > 0


def test_beat_keeps_a_heartbeat_that_its_healthcheck_reads(stack: Stack) -> None:
    beat = stack.beat()
    wait_for(lambda: (age := heartbeat_age(stack.settings)) is not None and age < 5, 30, "beat")
    healthy = stack.cli("health", "beat")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "last dispatch" in healthy.stdout
    beat.stop()
    time.sleep(1.5)
    stale = stack.cli("health", "beat", "--max-age", "1")
    assert stale.returncode == 1
    assert "ago" in stale.stderr


def test_a_spent_daily_allowance_pauses_the_connection_and_alerts_once(
    stack: Stack, crm: Sandbox
) -> None:
    org = stack.organisation()
    crm.hubspot.seed_companies(5)
    connection = stack.hubspot(crm, org)
    with transaction(stack.engine) as session:
        row = session.get(ConnectionRow, connection)
        assert row is not None
        alerts.set_alert_webhook(stack.settings, row, "https://hooks.example/T/B/x", "s" * 32)
    crm.hubspot.set_faults(daily_limit=crm.hubspot.api.limits.used_today())
    try:
        outcome = work.run_sync(stack.settings, stack.engine, connection)
        assert isinstance(outcome, RunResult) and outcome.status == "paused"
        assert "paused by the CRM's daily limit until" in (outcome.error or "")
        with transaction(stack.engine) as session:
            due = alerts.collect(session, stack.settings)
            again = alerts.collect(session, stack.settings)
    finally:
        crm.hubspot.set_faults(daily_limit=None)
    assert [a.kind for a in due] == ["paused_by_limit"]
    assert due[0].body["crmsync"]["url"].endswith(f"/console/connections/{connection}")
    assert again == []


def test_a_sync_that_finds_its_connections_lock_held_is_a_lock_wait(
    stack: Stack, crm: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Another worker holds the connection's lock: the sync is skipped (nothing runs, no CRM
    call), counted in crmsync_lock_waits_total and logged with the connection's id."""
    org = stack.organisation()
    connection = stack.hubspot(crm, org)
    labels = {"organisation_id": org, "connection_id": connection, "crm": "hubspot", "lock": "sync"}
    before = REGISTRY.get_sample_value("crmsync_lock_waits_total", labels) or 0.0
    calls = crm.hubspot.api_calls()
    with held(stack.settings, f"sync:{connection}") as lock, caplog.at_level(logging.INFO):
        assert lock is not None
        outcome = work.run_sync(stack.settings, stack.engine, connection)
    assert isinstance(outcome, work.Skipped) and outcome.reason == "busy"
    assert REGISTRY.get_sample_value("crmsync_lock_waits_total", labels) == before + 1
    assert runs(stack, connection) == [] and crm.hubspot.api_calls() == calls
    waited = [r for r in caplog.records if r.getMessage() == "lock held by another worker"]
    assert [(r.organisation_id, r.connection_id, r.lock) for r in waited] == [  # type: ignore[attr-defined]
        (org, connection, "sync")
    ]
    # with the lock free again, the sync runs
    done = work.run_sync(stack.settings, stack.engine, connection)
    assert isinstance(done, RunResult) and done.status == "succeeded"
