"""``crmsync runs``: the record of each sync run (trigger, counters, duration, error)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.connections import require_connection
from cli.db import session
from cli.orgs import require_organisation
from cli.output import (
    ExitCode,
    JsonOption,
    OrgOption,
    fail,
    print_json,
    print_record,
    print_table,
)
from sync.health import describe_run
from sync.store import sync_repository as repo

app = typer.Typer(name="runs", help="Sync runs: what each did, how long it took, why it failed.")


@app.command("list")
def list_(
    org: OrgOption,
    connection: Annotated[
        str | None, typer.Option(help="Only this connection's runs (id or name).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many runs.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    with session() as opened:
        require_organisation(opened, org)
        connection_id = require_connection(opened, org, connection).id if connection else None
        names = {c.id: c.name for c in repo.list_connections(opened, org.strip())}
        rows = [
            describe_run(r, names.get(r.connection_id))
            for r in repo.list_runs(opened, org.strip(), connection_id, limit)
        ]
    if as_json:
        print_json(rows)
        return
    print_table(
        [
            "id",
            "connection",
            "trigger",
            "status",
            "pulled",
            "pushed",
            "CRM created",
            "failed",
            "started",
            "seconds",
        ],
        [
            (
                r["id"],
                r["connection"],
                r["trigger"],
                r["status_text"],
                r["counters"].get("pulled"),
                r["counters"].get("pushed"),
                r["crm_records_created"],
                r["counters"].get("failed"),
                r["started_at"],
                None if r["duration_seconds"] is None else f"{r['duration_seconds']:.1f}",
            )
            for r in rows
        ],
        title="Runs",
    )


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    org: OrgOption,
    as_json: JsonOption = False,
) -> None:
    """Show one run with all its counters."""
    with session() as opened:
        require_organisation(opened, org)
        run = repo.get_run(opened, org.strip(), run_id.strip())
        if run is None:
            fail(f"no run {run_id!r} in this organisation", ExitCode.NOT_FOUND)
        found = repo.get_connection(opened, run.connection_id)
        data = describe_run(run, found.name if found is not None else None)
    if as_json:
        print_json(data)
        return
    record = {k: v for k, v in data.items() if k != "counters"}
    record.update({f"counters.{k}": v for k, v in data["counters"].items()})
    print_record(record, title="Run")
