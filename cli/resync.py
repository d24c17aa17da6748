"""``crmsync resync``: pull and push one customer now, on each connection it is linked to."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.connections import require_connection, settings_and_engine
from cli.db import session
from cli.orgs import require_organisation
from cli.output import ExitCode, JsonOption, OrgOption, print_json, print_table
from sync import customers
from sync.engine import sync_records
from sync.store import sync_repository as repo
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
    with session() as opened:
        require_organisation(opened, org)
        wanted = str(customers.get_customer(opened, org.strip(), customer_id).id)
        only = require_connection(opened, org, connection).id if connection else None
        crm_ids: dict[str, list[str]] = {}
        for link in repo.links_of_customer(opened, org.strip(), wanted):
            if link.state != "merged":
                crm_ids.setdefault(link.connection_id, []).append(link.crm_id)
        if not crm_ids:
            crm_ids = {
                c.id: [] for c in repo.list_connections(opened, org.strip()) if c.state == "active"
            }
        targets = {k: v for k, v in crm_ids.items() if only is None or k == only}
    results: list[dict[str, Any]] = []
    for connection_id, ids in targets.items():
        result = sync_records(
            engine,
            settings,
            connection_id,
            crm_ids=ids,
            customer_ids=[wanted],
            trigger="operator",
            gate=connection_gate(settings, engine, connection_id),
        )
        results.append(
            {
                "connection_id": connection_id,
                "run_id": result.run_id,
                "status": result.status,
                "counters": {k: v for k, v in result.counters.items() if v},
                "error": result.error,
            }
        )
    if as_json:
        print_json(results)
    else:
        print_table(
            ["connection_id", "run_id", "status", "counters", "error"],
            [
                (
                    r["connection_id"],
                    r["run_id"],
                    r["status"],
                    ", ".join(f"{k} {v}" for k, v in r["counters"].items()),
                    r["error"],
                )
                for r in results
            ],
            title="Resync",
        )
    if any(r["status"] != "succeeded" for r in results):
        raise typer.Exit(int(ExitCode.ERROR))
