"""``crmsync audit``: the organisation's audit trail, as the console's audit page and ``GET
/audit`` show it (one read, :func:`sync.audit.audit_page`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from cli.connections import require_connection
from cli.db import session
from cli.orgs import require_organisation
from cli.output import ExitCode, JsonOption, OrgOption, fail, print_json, print_table
from sync import audit
from sync.store import repository

app = typer.Typer(name="audit", help="The audit trail: who did what, to which record, when.")

#: dates, or moments, on the command line (taken as UTC by sync.audit)
MOMENT_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


@app.command("list")
def list_(
    org: OrgOption,
    actor: Annotated[
        str | None,
        typer.Option(help="Only this actor's, as recorded: 'console:Name <e-mail>', 'cli:user'."),
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (conflict_resolved, ...).")
    ] = None,
    connection: Annotated[
        str | None, typer.Option(help="Only what concerns this connection (id or name).")
    ] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's (id).")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(formats=MOMENT_FORMATS, help="At or after this moment (UTC)."),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=MOMENT_FORMATS, help="Before this moment (UTC).")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=audit.MAX_PAGE, help="At most this many events.")
    ] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many newest first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List the organisation's audit events, newest first."""
    with session() as opened:
        require_organisation(opened, org)
        organisation_id = org.strip()
        connection_id = (
            require_connection(opened, organisation_id, connection).id if connection else None
        )
        customer_id = customer.strip() if customer else None
        if customer_id and repository.get_customer(opened, organisation_id, customer_id) is None:
            fail(f"no customer {customer!r} in this organisation", ExitCode.NOT_FOUND)
        filters = audit.AuditFilter(
            actor=actor,
            action=action,
            connection_id=connection_id,
            customer_id=customer_id,
            since=since,
            until=until,
        )
        page = audit.audit_page(opened, organisation_id, filters, limit=limit, offset=offset)
    events = [e.to_json() for e in page.events]
    if as_json:
        print_json(events)
        return
    print_table(
        ["when", "who", "what", "on what", "detail"],
        [
            (
                e["at"],
                e["who"],
                e["what"],
                ", ".join(f"{t['kind']} {t['label']}" for t in e["targets"]),
                ", ".join(f"{k}={v}" for k, v in e["detail"].items()),
            )
            for e in events
        ],
        title="Audit trail" + (" (more: --offset)" if page.more else ""),
    )
