"""``crmsync web``: serve the customer API with uvicorn."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from cli.output import ExitCode, fail

if TYPE_CHECKING:
    from sync.settings import Settings

#: why a server could not start, and what to do
UNSERVED = "the error is logged above: a port in use? choose another with --port"

LogLevelOption = Annotated[
    str | None,
    typer.Option("--loglevel", "-l", help="Log level (default: CRMSYNC_LOG_LEVEL, else info)."),
]


def public_url_warning(settings: Settings, port: int) -> str | None:
    """A warning when ``CRMSYNC_PUBLIC_BASE_URL`` is left at its default but the API
    listens on another port: the URLs crmsync prints for webhooks, the console's links and
    the HubSpot signatures it checks would all name a port nothing listens on."""
    if "public_base_url" in settings.model_fields_set:
        return None
    default = urlsplit(settings.public_base_url)
    if default.port == port:
        return None
    return (
        f"CRMSYNC_PUBLIC_BASE_URL is not set: webhook URLs, console links and HubSpot "
        f"signatures use {settings.public_base_url}, but this API listens on port {port}; "
        "set it to the URL CRMs and browsers reach this API at"
    )


def web(
    host: str = typer.Option("127.0.0.1", help="The interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8000, min=1, max=65535, help="The TCP port to listen on."),
    loglevel: LogLevelOption = None,
) -> None:
    """Serve the customer API (and its OpenAPI document at /docs) on HOST:PORT.

    Metrics at /metrics, readiness at /readyz, liveness at /healthz."""
    import uvicorn

    from sync import logs
    from sync.errors import StoreNotCurrent
    from sync.schema import check_at_start
    from sync.settings import get_settings

    settings = get_settings()
    logs.configure(settings, level=loglevel, service="web")
    if warning := public_url_warning(settings, port):
        logging.getLogger("crmsync.cli").warning(warning)
    try:
        check_at_start(settings.database_url)
    except StoreNotCurrent as behind:
        # served all the same, as a store without its tables: each request answers 503
        # with this until `crmsync db upgrade` has run (no restart needed)
        logging.getLogger("crmsync.cli").warning(f"{behind} (the API answers 503 until then)")
    # By name, as a factory: the faces (cli, api) do not import each other, and each worker
    # process builds its app from the settings of its own environment. log_config=None:
    # uvicorn's lines (the access log too) go through crmsync's logging, which keeps the
    # query string of webhook routes out of the access log (it can carry ?secret=).
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            proxy_headers=True,
            log_config=None,
            log_level=(loglevel or settings.log_level).lower(),
        )
    except SystemExit as stopped:
        # uvicorn exits 3 when it cannot start, which is crmsync's "not found"
        if stopped.code not in (None, 0):
            fail(f"could not serve on {host}:{port} ({UNSERVED})", ExitCode.ERROR)
        raise
