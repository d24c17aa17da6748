"""The Celery application, built from the settings.

- JSON only (``task_serializer``, ``accept_content``): tasks take ids, never pickled objects;
- ``acks_late`` with ``reject_on_worker_lost``: a task whose worker dies is delivered again
  (the engine resumes from the last committed page, so a re-run loses and doubles nothing);
- soft and hard time limits from the settings; one task at a time per worker process
  (``prefetch_multiplier=1``) so a long run never holds other messages hostage;
- three queues, so that a long backfill never delays webhook syncs: start workers on all of
  them, or dedicate workers to :data:`WEBHOOK` (``crmsync worker --queues webhook``);
- task events on (``worker_send_task_events``, ``task_send_sent_event``) wherever the broker
  can broadcast them, so Flower shows crmsync's tasks by name;
- logging is crmsync's own (:mod:`sync.logs`: JSON or readable lines, secrets redacted),
  for the worker and beat alike (Celery's ``setup_logging`` signal);
- beat's scheduler renews a heartbeat (:mod:`tasks.beat`) for its healthcheck.

Broker: ``CRMSYNC_BROKER_URL`` (Redis; every key under ``CRMSYNC_REDIS_KEY_PREFIX``). With
none configured, the **embedded default** is kombu's filesystem transport in a directory
beside the SQLite store: a real queue that the worker, beat and web processes of one
machine share, with no set-up.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from celery import Celery, signals
from kombu.entity import Exchange, Queue

from sync import logs
from sync.settings import Settings, get_settings
from tasks import file_queue

SCHEDULED = "scheduled"
WEBHOOK = "webhook"
OPERATOR = "operator"
QUEUES = (SCHEDULED, WEBHOOK, OPERATOR)

#: explicit task names (the routes below and every ``send_task`` use them)
DISPATCH = "crmsync.dispatch"
SYNC_CONNECTION = "crmsync.sync_connection"
PROCESS_INBOX = "crmsync.process_inbox"
SEND_ALERT = "crmsync.send_alert"


def state_dir(settings: Settings) -> Path:
    """Where the embedded default keeps its queue, locks and beat schedule: beside the
    SQLite store, else in the working directory."""
    url = settings.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).resolve().parent / ".crmsync"
    return Path.cwd() / ".crmsync"


def queue_name(settings: Settings, queue: str) -> str:
    """The broker's name for one of :data:`QUEUES` (namespaced like every Redis key)."""
    return f"{settings.redis_key_prefix}.{queue}"


def uses_redis(settings: Settings) -> bool:
    return settings.broker_url.startswith(("redis://", "rediss://", "unix://"))


def _broker(settings: Settings) -> tuple[str, dict[str, Any]]:
    if settings.broker_url:
        options: dict[str, Any] = {}
        if uses_redis(settings):
            options = {
                "global_keyprefix": f"{settings.redis_key_prefix}:",
                # acks_late on Redis: an unacknowledged message comes back after this long,
                # so it must outlive the longest task or a live run would be delivered twice
                "visibility_timeout": settings.task_time_limit + 300,
            }
        return settings.broker_url, options
    folder = state_dir(settings) / "queue"
    for sub in ("messages", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport, with whole-message writes (tasks/file_queue.py); the
    # processed folder sits beside the messages, so a reader claims one by renaming it. The
    # host is a placeholder: without one, kombu warned "No hostname was supplied" on every
    # `crmsync sync` that queued a run
    return f"{file_queue.ALIAS}://localhost//", {
        "data_folder_in": str(folder / "messages"),
        "data_folder_out": str(folder / "messages"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings`` (the worker's tasks register on every app made here)."""
    broker, transport_options = _broker(settings)
    app = Celery("crmsync", broker=broker, set_as_current=False)
    exchange = Exchange(settings.redis_key_prefix, type="direct")  # type: ignore[no-untyped-call]
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        task_queues=[
            Queue(  # type: ignore[no-untyped-call]
                queue_name(settings, q), exchange, routing_key=queue_name(settings, q)
            )
            for q in QUEUES
        ],
        task_default_queue=queue_name(settings, OPERATOR),
        task_default_exchange=exchange.name,
        task_default_routing_key=queue_name(settings, OPERATOR),
        task_routes={
            DISPATCH: {"queue": queue_name(settings, SCHEDULED)},
            PROCESS_INBOX: {"queue": queue_name(settings, WEBHOOK)},
        },
        beat_schedule={
            "dispatch-due-connections": {
                "task": DISPATCH,
                "schedule": settings.dispatch_interval_seconds,
                # a dispatch that waited longer than its interval is superseded by the next
                "options": {"expires": max(settings.dispatch_interval_seconds, 1.0)},
            }
        },
        beat_schedule_filename=str(state_dir(settings) / "beat-schedule"),
        beat_scheduler="tasks.beat:HeartbeatScheduler",
        timezone="UTC",
    )
    if uses_redis(settings):
        # task events for Flower (and ``celery events``): what each worker received,
        # started, finished or failed, and what every sender sent, by task name
        app.conf.worker_send_task_events = True
        app.conf.task_send_sent_event = True
    else:
        # the filesystem transport has no broadcast worth using: no remote control, and no
        # events (no one could watch them)
        app.conf.worker_enable_remote_control = False
    app.conf.imports = ("tasks.jobs",)
    return app


@signals.setup_logging.connect  # type: ignore[untyped-decorator]
def _logging(loglevel: int | str | None = None, **_: Any) -> None:
    # With a receiver here, Celery installs none of its own handlers: the worker and beat
    # log through crmsync's set-up, level from ``--loglevel`` (else CRMSYNC_LOG_LEVEL).
    logs.configure(get_settings(), level=loglevel)


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _load_connectors(**_: Any) -> None:
    # before the worker takes a task: a webhook sync must not wait for a CRM client
    # library's import (prefork children inherit the imports)
    from connectors import registry

    registry.load_all()


_APPS: dict[tuple[Any, ...], Celery] = {}
_APPS_LOCK = threading.Lock()


def celery(settings: Settings) -> Celery:
    """The app that sends tasks for ``settings``: one per broker configuration and
    process (the faces send through it; the worker runs :data:`app`)."""
    key = tuple(getattr(settings, name) for name in _APP_FIELDS)
    with _APPS_LOCK:
        if key not in _APPS:
            _APPS[key] = create_celery(settings)
        return _APPS[key]


_APP_FIELDS = (
    "broker_url",
    "redis_key_prefix",
    "database_url",
    "task_soft_time_limit",
    "task_time_limit",
    "dispatch_interval_seconds",
)


def __getattr__(name: str) -> Any:
    # ``celery -A tasks.app`` (and ``crmsync worker``) read ``app``; it is built on first use
    # from the environment of that moment, so importing this module has no side effect.
    if name == "app":
        return celery(get_settings())
    raise AttributeError(name)
