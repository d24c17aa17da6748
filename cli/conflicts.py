"""``crmsync conflicts``: fields that changed on both sides, for an operator to resolve."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from cli.connections import require_connection, settings_and_engine
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
    say,
)
from sync.conflicts import Keep, Resolution, describe_conflict, resolve_conflict
from sync.store import sync_repository as repo
from tasks.work import connection_gate

app = typer.Typer(name="conflicts", help="Conflicts: a field changed differently on both sides.")

ConflictArg = Annotated[str, typer.Argument(help="The conflict's id.", show_default=False)]


def _show(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


@app.command("list")
def list_(
    org: OrgOption,
    connection: Annotated[
        str | None, typer.Option(help="Only this connection (id or name).")
    ] = None,
    status: Annotated[str, typer.Option(help="open, resolved, or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List conflicts (open ones by default), oldest first."""
    if status not in ("open", "resolved", "all"):
        fail("--status must be open, resolved or all", ExitCode.USAGE)
    with session() as opened:
        require_organisation(opened, org)
        connection_id = require_connection(opened, org, connection).id if connection else None
        found = repo.list_conflicts(
            opened,
            org.strip(),
            connection_id=connection_id,
            status=None if status == "all" else status,
            limit=limit,
        )
        rows = [describe_conflict(c) for c in found]
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "customer_id", "field", "base", "billing", "crm", "status"],
        [
            (
                r["id"],
                r["customer_id"],
                r["field"],
                _show(r["base"]),
                _show(r["billing"]),
                _show(r["crm"]),
                r["status"],
            )
            for r in rows
        ],
        title="Conflicts",
    )


@app.command()
def show(conflict_id: ConflictArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Show one conflict: the field's base, billing and CRM values."""
    with session() as opened:
        require_organisation(opened, org)
        conflict = repo.get_conflict(opened, org.strip(), conflict_id.strip())
        if conflict is None:
            fail(f"no conflict {conflict_id!r} in this organisation", ExitCode.NOT_FOUND)
        data = describe_conflict(conflict)
    if as_json:
        print_json(data)
        return
    print_record({k: _show(v) for k, v in data.items()}, title="Conflict")


@app.command()
def resolve(
    conflict_id: ConflictArg,
    org: OrgOption,
    keep: Annotated[
        str | None, typer.Option("--keep", help="Keep the billing or the crm value.")
    ] = None,
    set_value: Annotated[
        str | None, typer.Option("--set", help="Write this value on both sides.")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who resolves it, for the audit trail.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Resolve a conflict with --keep billing|crm or --set VALUE: the value is written on
    the side that lacks it and audited. Exit 4 when it cannot be (the CRM refused it)."""
    _require_one_choice(keep, set_value)
    settings, engine = settings_and_engine()
    connection_id = _conflict_connection(org, conflict_id)
    chosen: Keep | None = "billing" if keep == "billing" else "crm" if keep == "crm" else None
    resolution = resolve_conflict(
        engine,
        settings,
        org.strip(),
        conflict_id.strip(),
        keep=chosen,
        value=set_value,
        set_value=set_value is not None,
        actor=actor or f"cli:{getpass.getuser()}",
        gate=connection_gate(settings, engine, connection_id),
    )
    _print_resolution(resolution, as_json)


def _require_one_choice(keep: str | None, set_value: str | None) -> None:
    """Exit 2 unless exactly one of --keep billing|crm and --set VALUE is given."""
    if (keep is None) == (set_value is None):
        fail("choose one: --keep billing|crm or --set VALUE", ExitCode.USAGE)
    if keep is not None and keep not in ("billing", "crm"):
        fail("--keep must be billing or crm", ExitCode.USAGE)


def _conflict_connection(org: str, conflict_id: str) -> str:
    """The connection of the organisation's conflict; exit 3 when it has no such conflict
    (another organisation's is not found either)."""
    with session() as opened:
        require_organisation(opened, org)
        conflict = repo.get_conflict(opened, org.strip(), conflict_id.strip())
        if conflict is None:
            fail(f"no conflict {conflict_id!r} in this organisation", ExitCode.NOT_FOUND)
        return conflict.connection_id


def _print_resolution(resolution: Resolution, as_json: bool) -> None:
    """What was written, and to which side (neither: both sides already agreed)."""
    data = {
        "conflict_id": resolution.conflict_id,
        "field": resolution.field,
        "value": resolution.value,
        "billing_written": resolution.billing_written,
        "crm_written": resolution.crm_written,
    }
    if as_json:
        print_json(data)
        return
    sides = [
        s
        for s, w in (("billing", resolution.billing_written), ("CRM", resolution.crm_written))
        if w
    ]
    say(
        f"Resolved {resolution.field} = {resolution.value!r}"
        + (f" (written to {' and '.join(sides)})." if sides else " (both sides already agree).")
    )
