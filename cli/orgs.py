"""``crmsync orgs``: organisations (tenants) and their API keys."""

from __future__ import annotations

import typer
from sqlalchemy.orm import Session

from cli.db import session
from cli.output import ExitCode, JsonOption, fail, print_json, print_table, say, when
from sync import organisations
from sync.store.models import Organisation

app = typer.Typer(name="orgs", help="Organisations (tenants) and their API keys.")


def require_organisation(opened: Session, organisation_id: str) -> Organisation:
    """The organisation named by ``--org``, or exit 3 (not found)."""
    found = organisations.get_organisation(opened, organisation_id.strip())
    if found is None:
        fail(f"no organisation {organisation_id!r} (see `crmsync orgs list`)", ExitCode.NOT_FOUND)
    return found


@app.command()
def create(
    name: str = typer.Argument(..., help="The organisation's name."),
    as_json: JsonOption = False,
) -> None:
    """Create an organisation; print its id and a new API key, which is shown only once."""
    if not name.strip():
        fail("the organisation name must not be blank", ExitCode.INVALID)
    with session() as opened:
        new = organisations.create_organisation(opened, name)
    if as_json:
        print_json({"id": new.id, "api_key": new.api_key})
        return
    say(f"Created organisation [bold]{new.name}[/].")
    say(f"  id:      {new.id}")
    say(f"  API key: {new.api_key}")
    say("The API key is shown only this once: store it now.")


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the organisations."""
    with session() as opened:
        found = organisations.list_organisations(opened)
        rows = [{"id": o.id, "name": o.name, "created_at": when(o.created_at)} for o in found]
    if as_json:
        print_json(rows)
        return
    print_table(["id", "name", "created"], [r.values() for r in rows], title="Organisations")
