"""The Celery tasks: ids in, one call into :mod:`tasks.work`, a summary out.

Each has an explicit name (:mod:`tasks.app`). None retries a whole run: CRM calls are
retried per request in ``connectors/calls.py``, a run that still fails is recorded failed
with its reason and resumes from its cursor on the next schedule, and record-level failures
wait in the dead letter for ``crmsync retry``.
"""

from __future__ import annotations

import random
from typing import Any

from celery import Task, shared_task

from sync import alerts
from tasks import work
from tasks.app import DISPATCH, PROCESS_INBOX, SEND_ALERT, SYNC_CONNECTION
from tasks.runtime import runtime


@shared_task(name=SYNC_CONNECTION)  # type: ignore[untyped-decorator]
def sync_connection(connection_id: str, trigger: str = "schedule", full: bool = False) -> Any:
    """Sync one connection (skipped when another worker is syncing it, or it is paused)."""
    rt = runtime()
    outcome = work.run_sync(rt.settings, rt.engine, connection_id, trigger=trigger, full=full)
    return work.summary(outcome)


@shared_task(name=PROCESS_INBOX, bind=True, max_retries=60)  # type: ignore[untyped-decorator]
def process_inbox(self: Task, connection_id: str) -> Any:
    """Sync the records the connection's pending webhook events name."""
    rt = runtime()
    outcome = work.run_inbox(rt.settings, rt.engine, connection_id)
    if isinstance(outcome, work.Skipped) and outcome.reason == "busy":
        # another worker is on this inbox; come back for what it may not have read
        raise self.retry(countdown=1 + random.random())
    return work.summary(outcome)


@shared_task(name=DISPATCH)  # type: ignore[untyped-decorator]
def dispatch() -> Any:
    """Beat's dispatcher: enqueue the connections that are due."""
    rt = runtime()
    return work.dispatch(rt.settings, rt.engine)


#: a failed delivery is tried again after 1, 2, 4 ... seconds, at most 10 minutes apart
ALERT_RETRIES = 14


@shared_task(name=SEND_ALERT, bind=True, max_retries=ALERT_RETRIES)  # type: ignore[untyped-decorator]
def send_alert(self: Task, connection_id: str, kind: str, body: dict[str, Any]) -> Any:
    """Deliver one alert to the connection's webhook; retried with back-off while the
    receiver fails (a sync never waits for it)."""
    rt = runtime()
    try:
        alerts.deliver(rt.engine, rt.settings, alerts.Alert(connection_id, kind, body))
    except alerts.AlertDeliveryFailed as error:
        raise self.retry(countdown=min(600, 2**self.request.retries), exc=error) from None
    return {"alert": kind, "connection_id": connection_id}
