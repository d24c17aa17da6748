"""Sending tasks: what the faces (API, CLI) and the dispatcher call.

Tasks are sent by name with ids only. Callers send after the transaction that asked for the
work has committed (``receive_webhook`` commits the inbox before the API enqueues; the
dispatcher commits its claim first), so a worker never looks for rows that are not there.

Webhook syncs are coalesced: while a connection's inbox task is queued and not started, a
flag in Redis (``<prefix>:inbox-queued:<id>``) stops a burst of deliveries from queueing
more; the task clears the flag when it starts, and then takes every pending event at once.
"""

from __future__ import annotations

import logging

from sync.alerts import Alert
from sync.settings import Settings
from tasks.app import (
    OPERATOR,
    PROCESS_INBOX,
    SCHEDULED,
    SEND_ALERT,
    SYNC_CONNECTION,
    celery,
    queue_name,
)
from tasks.runtime import redis_client

log = logging.getLogger(__name__)

#: seconds a webhook sync waits before it starts, gathering the rest of a burst
INBOX_DELAY_SECONDS = 0.25
#: the flag outlives a lost task by at most this long (the dispatcher sweeps after that)
INBOX_FLAG_SECONDS = 60


def enqueue_sync(
    settings: Settings, connection_id: str, *, trigger: str = "operator", full: bool = False
) -> str:
    """Queue a sync of the connection (scheduled queue for ``schedule``, else operator);
    the task id."""
    queue = SCHEDULED if trigger == "schedule" else OPERATOR
    result = celery(settings).send_task(
        SYNC_CONNECTION,
        args=[connection_id],
        kwargs={"trigger": trigger, "full": full},
        queue=queue_name(settings, queue),
        routing_key=queue_name(settings, queue),
    )
    return str(result.id)


def _flag(settings: Settings, connection_id: str) -> str:
    return f"{settings.redis_key_prefix}:inbox-queued:{connection_id}"


def enqueue_inbox(settings: Settings, connection_id: str) -> bool:
    """Queue a sync of the connection's pending webhook events, unless one is queued and
    not yet started; True when a task was sent."""
    client = redis_client(settings)
    if client is not None and not client.set(
        _flag(settings, connection_id), "1", nx=True, ex=INBOX_FLAG_SECONDS
    ):
        return False
    queue = queue_name(settings, "webhook")
    try:
        celery(settings).send_task(
            PROCESS_INBOX,
            args=[connection_id],
            queue=queue,
            routing_key=queue,
            countdown=INBOX_DELAY_SECONDS,
        )
    except Exception:
        if client is not None:
            client.delete(_flag(settings, connection_id))
        raise
    return True


def clear_inbox_flag(settings: Settings, connection_id: str) -> None:
    client = redis_client(settings)
    if client is not None:
        client.delete(_flag(settings, connection_id))


def enqueue_alert(settings: Settings, alert: Alert) -> None:
    """Queue the delivery of one alert (on the operator queue)."""
    celery(settings).send_task(
        SEND_ALERT,
        args=[alert.connection_id, alert.kind, alert.body],
        queue=queue_name(settings, OPERATOR),
        routing_key=queue_name(settings, OPERATOR),
    )
