"""``crmsync resync``: pull and push one customer now, on each connection it is linked to."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.connections import connection_option, settings_and_engine
from cli.output import ExitCode, JsonOption, OrgOption, print_json, print_table
from sync import operator_actions
from sync.engine import RunResult
from tasks.work import connection_gate


def resync(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.", show_default=False)],
    org: OrgOption,
    connection: Annotated[
        str | None, typer.Option(help="Only this connection (id or name).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pull and push one customer now, on each of its connections.

    Its linked CRM records are pulled and its billing side pushed (on the active connections
    when it has no link yet). Exit 1 when a run fails, 3 when the customer is not found."""
    settings, engine = settings_and_engine()
    only = connection_option(org, connection)
    runs = operator_actions.resync_customer(
        engine,
        settings,
        org.strip(),
        customer_id,
        connection_id=only,
        gate_for=lambda connection_id: connection_gate(settings, engine, connection_id),
    )
    if as_json:
        print_json([_described(connection_id, run) for connection_id, run in runs.items()])
    else:
        print_table(
            ["connection_id", "run_id", "status", "counters", "error"],
            [
                (
                    connection_id,
                    run.run_id,
                    run.status,
                    ", ".join(f"{k} {v}" for k, v in run.counters.items() if v),
                    run.error,
                )
                for connection_id, run in runs.items()
            ],
            title="Resync",
        )
    if any(run.status != "succeeded" for run in runs.values()):
        raise typer.Exit(int(ExitCode.ERROR))


def _described(connection_id: str, run: RunResult) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "run_id": run.run_id,
        "status": run.status,
        "counters": {k: v for k, v in run.counters.items() if v},
        "error": run.error,
    }
