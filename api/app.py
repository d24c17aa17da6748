"""The FastAPI application: ``create_app()`` (``crmsync web`` serves it as a factory)."""

from __future__ import annotations

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api import (
    audit,
    bad_input,
    conflicts,
    connections,
    console,
    contacts,
    customers,
    errors,
    failures,
    health,
    metrics,
    runs,
    webhooks,
)
from connectors import registry
from sync.settings import Settings, get_settings
from sync.store.db import engine_for

DESCRIPTION = """\
The billing platform's customers, as its Create Customer API defines them; and what an
operator does with the sync: the conflict queue, the runs, the dead letter (failures) and
the connections.

Every request names its organisation in the `organisation` header and proves it with the
`x-api-key` header. Errors are JSON: `{"detail": ...}`, a list of field errors for 409/422.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (read from the environment when not given)."""
    app = FastAPI(title="crmsync", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings or get_settings()
    errors.install(app)
    bad_input.install(app)
    app.include_router(customers.router)
    app.include_router(contacts.router)
    # what the CLI and the console do to conflicts, runs, the dead letter and connections
    app.include_router(conflicts.router)
    app.include_router(runs.router)
    app.include_router(failures.router)
    app.include_router(connections.router)
    app.include_router(audit.router)
    app.include_router(webhooks.router)
    console.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # a webhook's intake verifies it with its connector: import them all now, not in the
    # first webhook's request
    registry.load_all()

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """200 when the store answers, 503 when it does not (for container healthchecks)."""
        try:
            with engine_for(app.state.settings.database_url).connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"},
                status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    return app
