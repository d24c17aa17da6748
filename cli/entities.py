"""``crmsync entities``: the business entities of an organisation."""

from __future__ import annotations

import typer

from cli.db import session
from cli.orgs import require_organisation
from cli.output import ExitCode, JsonOption, OrgOption, fail, print_json, print_table, say, when
from sync import organisations

app = typer.Typer(name="entities", help="Business entities of an organisation.")


@app.command()
def create(
    org: OrgOption,
    name: str = typer.Argument(..., help="The business entity's name."),
    as_json: JsonOption = False,
) -> None:
    """Create a business entity of the organisation; print its id."""
    if not name.strip():
        fail("the business entity name must not be blank", ExitCode.INVALID)
    with session() as opened:
        require_organisation(opened, org)
        entity = organisations.create_business_entity(opened, org.strip(), name)
        created = {"id": entity.id, "name": entity.name, "organisation_id": entity.organisation_id}
    if as_json:
        print_json(created)
        return
    say(f"Created business entity [bold]{created['name']}[/]: {created['id']}")


@app.command("list")
def list_(org: OrgOption, as_json: JsonOption = False) -> None:
    """List the organisation's business entities."""
    with session() as opened:
        require_organisation(opened, org)
        rows = [
            {"id": e.id, "name": e.name, "created_at": when(e.created_at)}
            for e in organisations.list_business_entities(opened, org.strip())
        ]
    if as_json:
        print_json(rows)
        return
    print_table(["id", "name", "created"], [r.values() for r in rows], title="Business entities")
