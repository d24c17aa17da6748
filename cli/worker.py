"""``crmsync worker``, ``crmsync beat`` and ``crmsync up``: the Celery side.

``worker`` consumes the scheduled, webhook and operator queues (or some of them: give
webhook syncs their own workers with ``--queues webhook``) and serves its metrics on its own
port; ``beat`` runs the dispatcher every ``CRMSYNC_DISPATCH_INTERVAL_SECONDS``; ``up`` runs a
worker, beat and the web API in one process on the embedded default, for one machine with
no set-up. All of them log through :mod:`sync.logs` (``CRMSYNC_LOG_FORMAT``, level from
``--loglevel`` or ``CRMSYNC_LOG_LEVEL``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import ExitCode, fail, say
from cli.web import UNSERVED, public_url_warning
from sync.settings import get_settings
from tasks.app import QUEUES, celery, queue_name

if TYPE_CHECKING:
    import uvicorn
    from celery import Celery
    from celery.beat import EmbeddedService

QueuesOption = Annotated[
    str,
    typer.Option("--queues", "-Q", help=f"Comma-separated queues to consume: {', '.join(QUEUES)}."),
]
#: the worker pools crmsync runs on (Celery's others need packages it does not install)
POOLS = ("prefork", "threads", "solo")
LogLevelOption = Annotated[
    str | None,
    typer.Option("--loglevel", "-l", help="Log level (default: CRMSYNC_LOG_LEVEL, else info)."),
]


def _level(loglevel: str | None) -> str:
    return (loglevel or get_settings().log_level).lower()


def _queues(queues: str) -> str:
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        fail(f"unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}", ExitCode.USAGE)
    settings = get_settings()
    return ",".join(queue_name(settings, q) for q in names)


def worker(
    queues: QueuesOption = ",".join(QUEUES),
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Worker processes / threads.")
    ] = None,
    pool: Annotated[
        str, typer.Option("--pool", "-P", help="prefork, threads or solo.")
    ] = "prefork",
    hostname: Annotated[
        str | None, typer.Option("--hostname", "-n", help="This worker's node name.")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (default: CRMSYNC_WORKER_METRICS_PORT; "
            "0: none).",
        ),
    ] = None,
    loglevel: LogLevelOption = None,
) -> None:
    """Run a Celery worker for crmsync's tasks (syncs, webhook syncs, the dispatcher), with
    its metrics at http://HOST:METRICS_PORT/metrics."""
    from sync import logs
    from sync.schema import check_at_start
    from tasks import metrics

    # options first: a bad one is a usage error before anything starts (a bad --pool was
    # Celery's own traceback; a bad --queues came after the metrics port was taken)
    if pool not in POOLS:
        fail(f"unknown pool {pool!r}; choose from {', '.join(POOLS)}", ExitCode.USAGE)
    consumed = _queues(queues)
    settings = get_settings()
    # a store behind this code's migrations: refused here, before any task is taken
    check_at_start(settings.database_url)
    logs.configure(settings, level=_level(loglevel), service="worker")
    if pool == "prefork" and not os.environ.get(metrics.MULTIPROCESS_ENV):
        # the tasks run in child processes: each writes its figures where this one reads them
        metrics.use_multiprocess()
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        metrics.serve_worker_metrics(port)
    argv = ["worker", "-Q", consumed, "-P", pool, "-l", _level(loglevel)]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    celery(settings).start(argv)


def beat(loglevel: LogLevelOption = None) -> None:
    """Run Celery beat, which enqueues the connections that are due.

    It runs the dispatcher every CRMSYNC_DISPATCH_INTERVAL_SECONDS, and renews a heartbeat
    each time (`crmsync health beat` checks it). Run exactly one beat per deployment."""
    from sync import logs

    logs.configure(get_settings(), level=_level(loglevel), service="beat")
    app = celery(get_settings())
    schedule = Path(app.conf.beat_schedule_filename)
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "-l", _level(loglevel), "-s", str(schedule)])


def up(
    host: Annotated[str, typer.Option(help="The interface the web API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The web API's port.")] = 8000,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 4,
    loglevel: LogLevelOption = None,
) -> None:
    """Run the web API, beat and a worker in one process (one machine, no set-up).

    The store is migrated first; on the embedded default (SQLite and a file queue) no Redis
    is needed. Metrics of all three are at http://HOST:PORT/metrics."""
    from sync import logs
    from sync.store.db import upgrade

    settings = get_settings()
    level = _level(loglevel)
    logs.configure(settings, level=level, service="up")
    if warning := public_url_warning(settings, port):
        logging.getLogger("crmsync.cli").warning(warning)
    upgrade(settings.database_url)
    app = celery(settings)
    server, web = _serve_api(host, port, level)
    scheduler = _start_beat(app)
    say(f"crmsync is up: API on http://{host}:{port}, beat and a worker ({concurrency} threads).")
    try:
        queues = ",".join(queue_name(settings, q) for q in QUEUES)
        app.start(["worker", "-Q", queues, "-P", "threads", "-c", str(concurrency), "-l", level])
    finally:
        scheduler.stop()
        server.should_exit = True
        web.join(timeout=10)


def _serve_api(host: str, port: int, level: str) -> tuple[uvicorn.Server, threading.Thread]:
    """The web API, served on a thread of its own: the server and its thread, once it
    listens (or the command fails: it cannot listen)."""
    import uvicorn

    server = uvicorn.Server(
        # log_config=None: uvicorn logs through crmsync's set-up (see `crmsync web`)
        uvicorn.Config(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=level,
            log_config=None,
        )
    )
    # uvicorn installs signal handlers only on the main thread: the worker keeps them
    web = threading.Thread(target=server.run, name="crmsync-web", daemon=True)
    web.start()
    # uvicorn ends its thread when it cannot listen (a port in use): stop here, before the
    # worker and beat start, rather than run on without the API
    while not server.started and web.is_alive():
        time.sleep(0.05)
    if not server.started:
        fail(f"the web API could not listen on {host}:{port} ({UNSERVED})", ExitCode.ERROR)
    return server, web


def _start_beat(app: Celery) -> EmbeddedService:
    """Beat on a thread, with its own scheduler (Celery's default here would be the plain
    PersistentScheduler): it renews the heartbeat that `crmsync health beat` reads, as
    `crmsync beat` does."""
    from celery.beat import EmbeddedService

    Path(app.conf.beat_schedule_filename).parent.mkdir(parents=True, exist_ok=True)
    scheduler = EmbeddedService(
        app,
        thread=True,
        schedule_filename=str(app.conf.beat_schedule_filename),
        scheduler_cls=app.conf.beat_scheduler,
    )
    scheduler.start()
    return scheduler
