"""Alerts, against a real local HTTP receiver that checks every signature itself: a streak
of failed runs, a digest of new conflicts (at most one per interval), a pause by the CRM's
daily limit, and deliveries that fail without touching a sync."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from sandbox.server import Sandbox
from sync import alerts, customers
from sync.customers import CustomerPatch
from sync.settings import Settings
from sync.store.db import transaction
from sync.store.models import ConnectionRow, utcnow
from tests.sync.conftest import World, make_world

ALERT_SECRET = "alert-signing-secret-0123456789"


class AlertReceiver:
    """A local HTTP endpoint standing in for Slack: it checks each request's signature with
    the shared secret (its own HMAC, not crmsync's code) and answers the next status of
    ``statuses`` (the last one repeats)."""

    def __init__(self, secret: str = ALERT_SECRET, statuses: tuple[int, ...] = (200,)) -> None:
        self.secret = secret
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        self.answered: list[int] = []
        outer = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stamp = self.headers.get("X-Crmsync-Timestamp", "")
                expected = hmac.new(
                    outer.secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256
                ).hexdigest()
                signed = hmac.compare_digest(
                    self.headers.get("X-Crmsync-Signature", ""), f"v1={expected}"
                )
                fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
                with lock:
                    status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                    if not (signed and fresh):
                        status = 401
                    outer.answered.append(status)
                    if status == 200:
                        outer.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/services/T000/B000/xyzzy"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> AlertReceiver:
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


def watch(world: World, url: str, **settings: Any) -> Settings:
    """Send the world's connection's alerts to ``url``; the settings to decide them with."""
    with transaction(world.engine) as session:
        row = session.get(ConnectionRow, world.connection_id)
        assert row is not None
        alerts.set_alert_webhook(world.settings, row, url, ALERT_SECRET)
    return world.settings.model_copy(
        update={"public_base_url": "https://crmsync.example", **settings}
    )


def due(world: World, settings: Settings) -> list[alerts.Alert]:
    with transaction(world.engine) as session:
        return alerts.collect(session, settings)


@pytest.fixture
def hubspot(engine: Engine, sandbox: Sandbox) -> World:
    return make_world(engine, sandbox, "hubspot")


def test_a_streak_of_failed_runs_alerts_once_with_the_failing_runs_page(
    hubspot: World, receiver: AlertReceiver
) -> None:
    settings = watch(hubspot, receiver.url, alert_failed_runs=3)
    with transaction(hubspot.engine) as session:
        row = session.get(ConnectionRow, hubspot.connection_id)
        assert row is not None
        # a CRM that is down: nothing listens on the connection's host any more
        row.settings = {**row.settings, "host": "http://127.0.0.1:9", "max_attempts": 1}
    for _ in range(3):
        assert due(hubspot, settings) == []  # not yet three in a row
        assert hubspot.sync().status == "failed"
    [alert] = due(hubspot, settings)
    assert due(hubspot, settings) == []  # once per streak
    alerts.deliver(hubspot.engine, settings, alert)
    [body] = receiver.received
    facts = body["crmsync"]
    assert facts["alert"] == "runs_failing"
    assert facts["connection_id"] == hubspot.connection_id
    assert facts["organisation_id"] == hubspot.organisation_id
    assert facts["url"] == f"https://crmsync.example/console/runs/{facts['run_id']}"
    assert facts["url"] in body["text"] and "3 runs failed" in body["text"]
    assert facts["failed_runs"] == 3


def test_new_conflicts_come_as_one_digest_per_interval(
    hubspot: World, receiver: AlertReceiver
) -> None:
    crm_ids = hubspot.harness.seed(3)
    hubspot.sync()
    settings = watch(hubspot, receiver.url, alert_digest_seconds=3600)
    assert due(hubspot, settings) == []  # nothing opened since alerts were set up

    def conflict_on(crm_id: str, field: str) -> None:
        customer = hubspot.customer_by_external_id(crm_id)
        hubspot.harness.edit(crm_id, {field: f"CRM {field} {crm_id}"})
        with transaction(hubspot.engine) as s:
            customers.update_customer(
                s,
                hubspot.organisation_id,
                customer["id"],
                CustomerPatch.model_validate({field: f"Billing {crm_id}"}),
            )

    conflict_on(crm_ids[0], "customer_name")
    conflict_on(crm_ids[1], "customer_name")
    hubspot.sync()
    [digest] = due(hubspot, settings)
    facts = digest.body["crmsync"]
    assert (facts["alert"], facts["conflicts"], facts["fields"]) == (
        "conflicts_opened",
        2,
        {"customer_name": 2},
    )
    assert facts["url"] == (
        f"https://crmsync.example/console/conflicts?connection={hubspot.connection_id}"
    )
    conflict_on(crm_ids[2], "customer_name")
    hubspot.sync()
    assert due(hubspot, settings) == []  # within the interval: it waits for the next digest
    later = settings.model_copy(update={"alert_digest_seconds": 0})
    [second] = due(hubspot, later)
    assert second.body["crmsync"]["conflicts"] == 1  # only the new one
    for alert in (digest, second):
        alerts.deliver(hubspot.engine, settings, alert)
    assert [b["crmsync"]["conflicts"] for b in receiver.received] == [2, 1]


def test_a_failed_delivery_raises_for_a_retry_and_never_names_the_url(
    hubspot: World, caplog: pytest.LogCaptureFixture
) -> None:
    with AlertReceiver(statuses=(503, 200)) as flaky:
        settings = watch(hubspot, flaky.url, alert_digest_seconds=0)
        alert = alerts.Alert(hubspot.connection_id, "conflicts_opened", {"text": "x"})
        with pytest.raises(alerts.AlertDeliveryFailed) as failed:
            alerts.deliver(hubspot.engine, settings, alert)
        assert "503" in str(failed.value) and flaky.url not in str(failed.value)
        alerts.deliver(hubspot.engine, settings, alert)  # the retry
        assert flaky.answered == [503, 200]
    unreachable = alerts.Alert(hubspot.connection_id, "conflicts_opened", {"text": "x"})
    with pytest.raises(alerts.AlertDeliveryFailed):
        alerts.deliver(hubspot.engine, settings, unreachable)  # the receiver is gone
    assert "xyzzy" not in caplog.text
    assert ALERT_SECRET not in caplog.text


def test_the_alert_webhook_is_stored_encrypted_and_checked(hubspot: World) -> None:
    with transaction(hubspot.engine) as session:
        row = session.get(ConnectionRow, hubspot.connection_id)
        assert row is not None
        with pytest.raises(alerts.AlertSetupError):
            alerts.set_alert_webhook(hubspot.settings, row, "ftp://x", ALERT_SECRET)
        with pytest.raises(alerts.AlertSetupError):
            alerts.set_alert_webhook(hubspot.settings, row, "https://hooks.example/x", "short")
        alerts.set_alert_webhook(
            hubspot.settings, row, "https://hooks.example/T1/B2/token", ALERT_SECRET
        )
        assert row.alert_webhook is not None
        assert "token" not in row.alert_webhook and ALERT_SECRET not in row.alert_webhook
        assert alerts.describe_target(row) == "https://hooks.example/… (signed)"
        target = alerts.alert_target(hubspot.settings, row)
        assert target == alerts.AlertTarget("https://hooks.example/T1/B2/token", ALERT_SECRET)


def test_verify_is_what_a_receiver_does() -> None:
    body = b'{"text":"x"}'
    stamp = str(int(time.time()))
    signature = alerts.sign(ALERT_SECRET, stamp, body)
    assert alerts.verify(ALERT_SECRET, stamp, body, signature)
    assert not alerts.verify("another-secret-0123456789", stamp, body, signature)
    assert not alerts.verify(ALERT_SECRET, stamp, body + b" ", signature)
    assert not alerts.verify(ALERT_SECRET, stamp, body, signature, now=int(stamp) + 301)


def test_a_pause_by_the_crms_daily_limit_alerts_once_per_pause(
    hubspot: World, receiver: AlertReceiver
) -> None:
    settings = watch(hubspot, receiver.url)
    until = utcnow() + timedelta(hours=3)

    def pause(moment: datetime) -> None:
        with transaction(hubspot.engine) as session:
            row = session.get(ConnectionRow, hubspot.connection_id)
            assert row is not None
            alerts.note_paused_by_limit(row, moment, "DAILY: daily limit reached")

    pause(until)
    [alert] = due(hubspot, settings)
    assert due(hubspot, settings) == []  # once per pause
    facts = alert.body["crmsync"]
    assert facts["alert"] == "paused_by_limit"
    assert facts["url"] == f"https://crmsync.example/console/connections/{hubspot.connection_id}"
    assert facts["paused_until"] == until.isoformat()
    assert "DAILY: daily limit reached" in alert.body["text"]
    pause(until + timedelta(hours=24))  # spent again the next day: a new pause
    assert [a.kind for a in due(hubspot, settings)] == ["paused_by_limit"]
    alerts.deliver(hubspot.engine, settings, alert)
    assert receiver.received[0]["crmsync"]["alert"] == "paused_by_limit"
