"""``crmsync operators``: the people who sign in to the console, per organisation.

``add`` prints a one-time link on which the operator sets their password (argon2-hashed);
the link is printed once and only its hash is stored. The store's modules are imported
inside the commands, so that ``crmsync --help`` stays fast.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from cli.output import JsonOption, OrgOption, print_json, print_table, say

app = typer.Typer(name="operators", help="Console operators (sign-in per organisation).")

EmailArg = Annotated[str, typer.Argument(help="The operator's e-mail address.", show_default=False)]


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@app.command()
def add(
    email: EmailArg,
    org: OrgOption,
    role: Annotated[
        str, typer.Option("--role", help="viewer, operator or admin.", show_default=False)
    ],
    name: Annotated[
        str | None, typer.Option(help="Their name, as the audit trail shows it.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add an operator and print a one-time link to set their password.

    Viewers read; operators also resolve conflicts, retry failures, pause, resume and sync;
    admins also manage connections and operators. Exit 4 on a bad e-mail or role, or when
    the e-mail is already an operator of the organisation."""
    from cli.db import session
    from cli.orgs import require_organisation
    from sync import operators
    from sync.settings import get_settings

    with session() as opened:
        require_organisation(opened, org)
        new = operators.add_operator(opened, org.strip(), email, role, name=name, by=_actor())
    link = operators.password_link(get_settings().public_base_url, new.token)
    if as_json:
        print_json({"id": new.id, "email": new.email, "role": new.role, "link": link})
        return
    say(f"Added [bold]{new.email}[/] as {new.role}.")
    hours = int(operators.LINK_LIFETIME.total_seconds() // 3600)
    say(f"One-time link to set the password (valid {hours} hours):")
    typer.echo(link)


@app.command()
def link(email: EmailArg, org: OrgOption, as_json: JsonOption = False) -> None:
    """Print a new one-time link for an operator (a forgotten password); older links stop
    working."""
    from cli.db import session
    from cli.orgs import require_organisation
    from sync import operators
    from sync.settings import get_settings

    with session() as opened:
        require_organisation(opened, org)
        token = operators.new_password_link(opened, org.strip(), email, by=_actor())
    url = operators.password_link(get_settings().public_base_url, token)
    if as_json:
        print_json({"email": email.strip().lower(), "link": url})
        return
    typer.echo(url)


@app.command("list")
def list_(org: OrgOption, as_json: JsonOption = False) -> None:
    """List the organisation's operators (removed ones too, marked)."""
    from cli.db import session
    from cli.orgs import require_organisation
    from cli.output import when
    from sync import operators

    with session() as opened:
        require_organisation(opened, org)
        rows = [
            {
                "id": o.id,
                "email": o.email,
                "name": o.name,
                "role": o.role,
                "active": o.active,
                "password_set": o.password_hash is not None,
                "last_sign_in_at": when(o.last_sign_in_at),
            }
            for o in operators.list_operators(opened, org.strip())
        ]
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "email", "name", "role", "active", "password set", "last sign-in"],
        [list(r.values()) for r in rows],
        title="Operators",
    )


@app.command()
def remove(email: EmailArg, org: OrgOption) -> None:
    """Remove an operator: their sessions end and their links stop working."""
    from cli.db import session
    from cli.orgs import require_organisation
    from sync import operators

    with session() as opened:
        require_organisation(opened, org)
        operator = operators.require_operator_by_email(opened, org.strip(), email)
        operators.remove_operator(opened, org.strip(), operator.id, by=_actor())
    say(f"Removed {email.strip().lower()}.")
