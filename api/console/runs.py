"""Runs: the list, and one run with its counters, API calls per step, error and failures."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.base import EngineDep, MeDep, not_found, reading, render
from sync import health
from sync.plan import COUNTERS
from sync.store import review_repository, sync_repository

router = APIRouter()

#: the counters that count API calls, by the step that made them
CALL_STEPS: tuple[tuple[str, str], ...] = (
    ("calls_pull", "reading accounts / companies"),
    ("calls_contacts", "reading contacts"),
    ("calls_push", "writing to the CRM"),
)


@router.get("/runs")
def runs_page(
    request: Request, me: MeDep, engine: EngineDep, connection: str | None = None
) -> Response:
    with reading(engine) as db:
        connections = list(sync_repository.list_connections(db, me.organisation_id))
        if connection and connection not in {c.id for c in connections}:
            raise not_found("connection")
        runs = [
            health.summarise_run(r)
            for r in sync_repository.list_runs(db, me.organisation_id, connection or None, 100)
        ]
    return render(
        request,
        "runs.html",
        {
            "me": me,
            "runs": runs,
            "names": {c.id: c.name for c in connections},
            "connections": connections,
            "connection": connection or "",
        },
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, me: MeDep, engine: EngineDep) -> Response:
    with reading(engine) as db:
        found = sync_repository.get_run(db, me.organisation_id, run_id)
        if found is None:
            raise not_found("run")
        run = health.summarise_run(found)
        connection = sync_repository.get_connection(db, run.connection_id)
        failures = list(
            review_repository.failures(db, me.organisation_id, run_id=run_id, status=None)
        )
    counters = [
        (name, run.counters.get(name, 0)) for name in COUNTERS if not name.startswith("calls_")
    ]
    counters += [(k, v) for k, v in run.counters.items() if k not in COUNTERS]
    steps = [(label, run.counters.get(key, 0)) for key, label in CALL_STEPS]
    return render(
        request,
        "run.html",
        {
            "me": me,
            "run": run,
            "connection": connection.name if connection else run.connection_id,
            "counters": counters,
            "steps": steps,
            "failures": failures,
        },
    )
