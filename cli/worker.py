"""``crmsync worker``, ``crmsync beat`` and ``crmsync up``: the Celery side.

``worker`` consumes the scheduled, webhook and operator queues (or some of them: give
webhook syncs their own workers with ``--queues webhook``); ``beat`` runs the dispatcher
every ``CRMSYNC_DISPATCH_INTERVAL_SECONDS``; ``up`` runs a worker, beat and the web API in
one process on the embedded default, for one machine with no set-up.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from cli.output import ExitCode, fail, say
from sync.settings import get_settings
from tasks.app import QUEUES, celery, queue_name

QueuesOption = Annotated[
    str,
    typer.Option("--queues", "-Q", help=f"Comma-separated queues to consume: {', '.join(QUEUES)}."),
]
LogLevelOption = Annotated[str, typer.Option("--loglevel", "-l", help="Log level.")]


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
    loglevel: LogLevelOption = "info",
) -> None:
    """Run a Celery worker for crmsync's tasks (syncs, webhook syncs, the dispatcher)."""
    argv = ["worker", "-Q", _queues(queues), "-P", pool, "-l", loglevel]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    celery(get_settings()).start(argv)


def beat(loglevel: LogLevelOption = "info") -> None:
    """Run Celery beat, which enqueues the connections that are due.

    It runs the dispatcher every CRMSYNC_DISPATCH_INTERVAL_SECONDS. Run exactly one beat per
    deployment."""
    app = celery(get_settings())
    schedule = Path(app.conf.beat_schedule_filename)
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "-l", loglevel, "-s", str(schedule)])


def up(
    host: Annotated[str, typer.Option(help="The interface the web API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The web API's port.")] = 8000,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 4,
    loglevel: LogLevelOption = "info",
) -> None:
    """Run the web API, beat and a worker in one process (one machine, no set-up).

    The store is migrated first; on the embedded default (SQLite and a file queue) no Redis
    is needed."""
    import uvicorn
    from celery.beat import EmbeddedService

    from sync.store.db import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    app = celery(settings)
    server = uvicorn.Server(
        uvicorn.Config("api.app:create_app", factory=True, host=host, port=port, log_level=loglevel)
    )
    # uvicorn installs signal handlers only on the main thread: the worker keeps them
    web = threading.Thread(target=server.run, name="crmsync-web", daemon=True)
    web.start()
    Path(app.conf.beat_schedule_filename).parent.mkdir(parents=True, exist_ok=True)
    scheduler = EmbeddedService(
        app, thread=True, schedule_filename=str(app.conf.beat_schedule_filename)
    )
    scheduler.start()
    say(f"crmsync is up: API on http://{host}:{port}, beat and a worker ({concurrency} threads).")
    try:
        app.start(
            [
                "worker",
                "-Q",
                ",".join(queue_name(settings, q) for q in QUEUES),
                "-P",
                "threads",
                "-c",
                str(concurrency),
                "-l",
                loglevel,
            ]
        )
    finally:
        scheduler.stop()
        server.should_exit = True
        web.join(timeout=10)
